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

/**
 * A size the user types: "8 GiB", "512MB", "1.5g" (bare k/m/g/t are binary), or a plain number
 * of bytes. null when it does not read as a positive size.
 */
export function parseBytes(text: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$/i.exec(text)
  if (!m) return null
  const unit = m[2].toLowerCase() || 'b'
  const scale = BYTE_UNITS[unit]
  if (scale === undefined) return null
  const bytes = Math.round(Number(m[1]) * scale)
  return bytes > 0 ? bytes : null
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
