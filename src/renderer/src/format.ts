/** Number formatting for the UI: fixed locale, so the same model reads the same everywhere. */
const exact = new Intl.NumberFormat('en-US')

export function formatCount(n: number): string {
  return exact.format(n)
}

/** 72816 -> "72.8 K", 46_700_000_000 -> "46.7 B". */
export function formatShortCount(n: number): string {
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K'],
  ]
  for (const [size, unit] of units) if (Math.abs(n) >= size) return `${(n / size).toFixed(1)} ${unit}`
  return String(n)
}

/** Binary units: 291264 -> "284.4 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let i = 0
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024
    i++
  }
  return i === 0 ? `${value} B` : `${value.toFixed(1)} ${units[i]}`
}

export function formatPercent(part: number, whole: number): string {
  return whole === 0 ? '–' : `${((100 * part) / whole).toFixed(1)} %`
}
