/**
 * An import or inspection that cannot go on: the message says why and what to do. `field` names
 * the argument at fault where one is (file, layout, mapping.output, split.validation, maxLength):
 * the API answers it as an invalid argument naming that field, as its own schema checks do.
 */
export class DatasetError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message)
    this.name = 'DatasetError'
  }
}

export function typeName(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') return 'a string'
  if (typeof value === 'number') return 'a number'
  if (typeof value === 'boolean') return 'a boolean'
  return typeof value
}

/** Megabytes with one decimal, for messages. */
export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`
}
