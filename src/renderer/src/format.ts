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

/** 3725 -> "1 h 2 min", 75 -> "1 min 15 s", 9 -> "9 s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '–'
  const s = Math.round(seconds)
  if (s < 60) return `${s} s`
  const m = Math.floor(s / 60)
  if (m < 60) return `${m} min ${s % 60} s`
  const h = Math.floor(m / 60)
  return `${h} h ${m % 60} min`
}

/** A metric in a few significant digits: 0.000123 -> "1.23e-4", 2.3456 -> "2.346". */
/**
 * Significant digits an axis over `values` needs for its tick labels to differ (a learning rate
 * between 2.95e-4 and 3e-4 read "3.0e-4" on every tick at 3): two more than the orders of magnitude
 * between the largest value and the range, 3 to 8.
 */
export function axisDigits(values: readonly number[]): number {
  let lo = Infinity
  let hi = -Infinity
  for (const v of values) {
    if (v < lo) lo = v
    if (v > hi) hi = v
  }
  const range = hi - lo
  if (!(range > 0)) return 3
  const big = Math.max(Math.abs(lo), Math.abs(hi))
  return Math.min(8, Math.max(3, Math.ceil(Math.log10(big / range)) + 2))
}

export function formatMetric(x: number | null | undefined, digits = 4): string {
  if (x === null || x === undefined || Number.isNaN(x)) return '–'
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '−∞'
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(digits - 2)
  return Number(x.toPrecision(digits)).toString()
}

export { parseBytes } from '../../shared/bytes'

/** ISO time -> "2025-03-01 14:02" in the local zone. */
export function formatTime(iso: string): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  const pad = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
}

/** A token's text with its whitespace made visible: " the" -> "·the", "\n" -> "↵". */
export function visibleToken(text: string): string {
  if (text === '') return '∅'
  return text.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '→')
}
