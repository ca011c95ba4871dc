/**
 * Byte sizes as people type them, one reading for every place that takes one (the app's budget
 * fields, the CLI's --budget and --offload-budget): the CLI refused "1TB" the app took, and took
 * "0" the app refused.
 */

const BYTE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
  k: 1024,
  m: 1024 ** 2,
  g: 1024 ** 3,
  t: 1024 ** 4,
}

const SIZE = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i

/** Below this a number without a unit is a slip for GB ("80" meant 80 GB, not 80 bytes), not a size. */
const BARE_MIN = 2 ** 20

/** A number typed without a unit that would be under 1 MiB as bytes ("80"): almost surely GB meant. */
export function unitless(text: string): boolean {
  const m = SIZE.exec(text)
  return m !== null && m[2] === '' && Number(m[1]) > 0 && Number(m[1]) < BARE_MIN
}

/**
 * A size the user types: "8 GiB", "512MB", "1.5g" (bare k/m/g/t are binary), "4096 B", or a plain
 * number of bytes from 1 MiB up. null when it does not read as a positive size, and for a plain
 * number under 1 MiB ("80": the GPU form's "GiB per GPU" habit; as bytes it planned a run that fits
 * nowhere and said "does not fit").
 */
export function parseBytes(text: string): number | null {
  if (unitless(text)) return null
  const bytes = bytesOf(text)
  return bytes !== null && bytes > 0 && !tooLarge(text) ? bytes : null
}

/** The bytes `text` reads as, whatever their count; null where it is no number and unit. */
function bytesOf(text: string): number | null {
  const m = SIZE.exec(text)
  const scale = m ? BYTE_UNITS[m[2].toLowerCase() || 'b'] : undefined
  return m && scale !== undefined ? Math.round(Number(m[1]) * scale) : null
}

/** Past 2^53 bytes (8 PiB): a count of bytes no longer exact, and more than any machine holds. */
export function tooLarge(text: string): boolean {
  return (bytesOf(text) ?? 0) > Number.MAX_SAFE_INTEGER
}

/**
 * What is wrong with a size that parseBytes refused, in words, with an example to follow
 * (`like`: "8 GiB"); a plain number under 1 MiB is asked for its unit.
 */
export function sizeProblem(text: string, like = '8 GiB'): string {
  const t = text.trim()
  if (unitless(t)) return `“${t}” has no unit (as bytes it is ${t} B): write e.g. ${t} GB or ${t} GiB`
  // A number that is not above 0 ("-5", "0 GB"): said so ("is not a size" read as a typing slip).
  if (/^-|^\+?(0+(\.0*)?|\.0+)\s*[a-z]*$/i.test(t))
    return `“${t}” is not above 0: a size is more than 0 bytes; write e.g. ${like} or 512 MB`
  if (tooLarge(t)) return `“${t}” is more than any machine holds (8 PiB at most); write e.g. ${like} or 512 MB`
  return `“${t}” is not a size; write e.g. ${like} or 512 MB`
}

/** A size for people: "900 B", "12.5 MiB", "1.5 GiB" (binary units, one decimal). */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024
    i++
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`
}

/**
 * A size rounded up (a need: a budget of the size it names fits) or down (the budget it exceeds), so
 * a refusal never reads "need 8.1 MiB, more than the budget of 8.1 MiB" (8.14 against 8.1).
 */
function formatRounded(n: number, round: (x: number) => number): string {
  const [KiB, MiB, GiB] = [BYTE_UNITS.kib, BYTE_UNITS.mib, BYTE_UNITS.gib]
  if (n < KiB) return `${round(n)} B`
  const [unit, name, scale] = n >= GiB ? [GiB, 'GiB', 100] : n >= MiB ? [MiB, 'MiB', 10] : [KiB, 'KiB', 10]
  return `${(round((n / unit) * scale) / scale).toFixed(scale === 100 ? 2 : 1)} ${name}`
}
/** What something needs, rounded up. */
export const formatNeed = (n: number): string => formatRounded(n, (x) => Math.ceil(x - 1e-9))
/**
 * A device budget as the planner's messages write it, rounded down: wherever a budget is shown
 * (a refusal, the paging statistics), 3 MB reads 2.8 MiB, never 2.8 in one place and 2.9 in another.
 */
export const formatBudget = (n: number): string => formatRounded(n, (x) => Math.floor(x + 1e-9))
