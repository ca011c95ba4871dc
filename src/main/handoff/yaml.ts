/**
 * A small YAML writer for the trainer configs a handoff writes: maps, lists and scalars, comments
 * above keys. Strings are quoted whenever YAML could read them as anything but that string.
 */
export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue }

/** A key of a YAML map with an optional comment line above it. */
export interface YamlEntry {
  key: string
  value: YamlValue
  comment?: string
}

/** Plain strings YAML 1.1/1.2 would turn into something else (booleans, null, numbers...). */
const RESERVED = /^(?:true|false|yes|no|on|off|y|n|null|~|[-+]?(?:\.inf|\.nan)|[-+]?[0-9][0-9_.:eExXoO+-]*)$/i

function scalar(v: string | number | boolean | null): string {
  if (v === null) return 'null'
  if (typeof v === 'boolean') return v ? 'true' : 'false'
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`YAML: ${v} is not a finite number`)
    // Keep floats recognisable as floats (1e-4, not 0.0001 as a string) and whole numbers plain.
    return Number.isInteger(v) ? String(v) : String(v).replace(/^(-?\d+)e/, '$1.0e')
  }
  if (
    v === '' ||
    RESERVED.test(v) ||
    /^[\s\-?:,[\]{}#&*!|>'"%@`]/.test(v) ||
    /[:#]\s|\s$|[\n\t]|: *$/.test(v) ||
    v.includes(': ') ||
    v.endsWith(':')
  )
    return JSON.stringify(v)
  return v
}

function isMap(v: YamlValue): v is { [key: string]: YamlValue } {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function emit(value: YamlValue, indent: number, lines: string[], prefix: string): void {
  const pad = ' '.repeat(indent)
  if (Array.isArray(value)) {
    if (value.length === 0) {
      lines.push(`${prefix} []`)
      return
    }
    lines.push(prefix)
    for (const item of value) {
      if (isMap(item) && Object.keys(item).length > 0) {
        const entries = Object.entries(item)
        const [k0, v0] = entries[0]
        const first: string[] = []
        emit(v0, indent + 4, first, `${pad}  - ${key(k0)}:`)
        lines.push(...first)
        for (const [k, v] of entries.slice(1)) emit(v, indent + 4, lines, `${pad}    ${key(k)}:`)
      } else emit(item, indent + 2, lines, `${pad}  -`)
    }
    return
  }
  if (isMap(value)) {
    const entries = Object.entries(value)
    if (entries.length === 0) {
      lines.push(`${prefix} {}`)
      return
    }
    lines.push(prefix)
    for (const [k, v] of entries) emit(v, indent + 2, lines, `${pad}  ${key(k)}:`)
    return
  }
  lines.push(`${prefix} ${scalar(value)}`)
}

function key(k: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.-]*$/.test(k) && !RESERVED.test(k) ? k : JSON.stringify(k)
}

/** A YAML document from top-level entries (a section comment before a group: an entry with key ''). */
export function toYaml(entries: YamlEntry[], header?: string): string {
  const lines: string[] = []
  if (header) for (const l of header.split('\n')) lines.push(`# ${l}`.trimEnd())
  for (const e of entries) {
    // A comment starting with '#' is a section heading: "### model", as LLaMA-Factory's examples write them.
    if (e.comment !== undefined) for (const l of e.comment.split('\n')) lines.push((l.startsWith('#') ? `#${l}` : `# ${l}`).trimEnd())
    if (e.key === '') continue
    emit(e.value, 0, lines, `${key(e.key)}:`)
  }
  return lines.join('\n') + '\n'
}
