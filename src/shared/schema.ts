/**
 * Payload schemas of the API (one per method), used by every host before a payload reaches the
 * service or the engine. A failed validation becomes an ApiError('invalid_argument') whose message
 * and `field` name the offending field.
 */
import { z } from 'zod'
import { ApiError, type ArgsOf, type Method, isMethod } from './api'
import { DATASET_FORMATS, DATASET_LAYOUTS } from './dataset'

/** A non-empty string without NUL bytes (which the file system APIs reject with odd messages). */
const path = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(4096, 'is too long')
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters')

/** What datasets.inspect and datasets.import share: the file and how to read it. */
const datasetRead = {
  file: path,
  layout: z.enum(DATASET_LAYOUTS).optional(),
  mapping: z.record(z.string().min(1, 'must not be empty'), z.string().min(1, 'must name a column')).optional(),
  model: path.optional(),
  maxLength: z.number().int().positive().optional(),
  format: z.enum(DATASET_FORMATS).optional(),
  textUnit: z.enum(['line', 'paragraph']).optional(),
  preview: z.strictObject({ offset: z.number().int().min(0).optional(), limit: z.number().int().min(0).max(1000).optional() }).optional(),
}

export const apiSchemas = {
  'system.info': z.undefined({ error: 'takes no arguments' }),
  'models.inspect': z.strictObject({ dir: path }),
  'datasets.inspect': z.strictObject(datasetRead),
  'datasets.import': z.strictObject({
    ...datasetRead,
    name: z.string().trim().min(1, 'must not be empty').max(200, 'is too long').optional(),
    acceptInvalid: z.boolean().optional(),
    split: z
      .strictObject({
        validation: z.number().min(0, 'must be at least 0').lt(1, 'must be below 1').optional(),
        seed: z.number().int().optional(),
      })
      .optional(),
    dedupe: z.boolean().optional(),
  }),
  'datasets.list': z.undefined({ error: 'takes no arguments' }),
} satisfies { [M in Method]: z.ZodType<ArgsOf<M>> }

function fieldOf(issue: z.core.$ZodIssue): string {
  return issue.path.map(String).join('.')
}

function describe(issue: z.core.$ZodIssue): string {
  // zod's unrecognized_keys issues sit at the object's path and list the keys.
  if (issue.code === 'unrecognized_keys') return `unknown field ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`
  return issue.message
}

/**
 * Validates `args` for `method`. Returns the parsed (trimmed, typed) arguments or throws an
 * ApiError naming the method and the field: `models.inspect: dir: must not be empty`.
 */
export function validateArgs<M extends Method>(method: M, args: unknown): ArgsOf<M> {
  if (!isMethod(method)) throw new ApiError('unknown_method', `unknown method ${JSON.stringify(method)}`)
  const schema = apiSchemas[method] as z.ZodType<ArgsOf<M>>
  const r = schema.safeParse(args)
  if (r.success) return r.data
  const issue = r.error.issues[0]
  let field = fieldOf(issue)
  if (issue.code === 'unrecognized_keys' && issue.keys.length > 0) field = [field, issue.keys[0]].filter(Boolean).join('.')
  const where = field === '' ? '' : `${field}: `
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more)` : ''
  throw new ApiError('invalid_argument', `${method}: ${where}${describe(issue)}${more}`, field === '' ? undefined : field)
}
