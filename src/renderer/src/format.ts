/** Number formatting for the UI: fixed locale, so the same model reads the same everywhere. */
const exact = new Intl.NumberFormat('en-US')

export function formatCount(n: number): string {
  return exact.format(n)
}

/** A count and its noun, plural but for one: "1 row", "1,200 rows", "0 rows". */
export function countOf(n: number, noun: string): string {
  return `${formatCount(n)} ${noun}${n === 1 ? '' : 's'}`
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

export { parseBytes, sizeProblem } from '../../shared/bytes'

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
  return visibleText(text.replace(/ /g, '·').replace(/\n/g, '↵').replace(/\t/g, '→'))
}

/**
 * Generated text with its control characters shown as their symbols (U+2400 block): a model's
 * stray U+0002 drew as an empty box. Newlines and tabs stay.
 */
export function visibleText(text: string): string {
  // eslint-disable-next-line no-control-regex -- showing control characters is the point
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) =>
    c === '\u007f' ? '\u2421' : String.fromCharCode(0x2400 + c.charCodeAt(0)),
  )
}

/** The scores a before/after verdict compares (one split of a run's evaluation). */
export interface EvalScores {
  exactMatch: number
  f1: number
  loss: number | null
  /** Rows scored (where known). */
  n?: number
}

/** Fewer rows scored than this and a verdict says it is not sure (4 validation rows read as a red "further from"). */
export const FEW_EVAL_ROWS = 10

/**
 * Did it learn, in a few words and a tone: exact answers first; where they did not move, whether
 * the answers came closer (F1 up 0.1, or the answer loss down a tenth) or went further. A run
 * whose F1 went 0.06 → 0.75 and loss 1.73 → 0.62 read "no clear change" while none was exact yet.
 */
export function evalVerdict(before: EvalScores, after: EvalScores): { tone: 'ok' | 'warn' | 'danger'; words: string } {
  const v = verdictOf(before, after)
  if (after.n === undefined || after.n >= FEW_EVAL_ROWS) return v
  return {
    tone: v.tone === 'danger' ? 'warn' : v.tone,
    words: `${v.words}; only ${after.n} row${after.n === 1 ? '' : 's'} scored, too few to be sure`,
  }
}

function verdictOf(before: EvalScores, after: EvalScores): { tone: 'ok' | 'warn' | 'danger'; words: string } {
  const pct = (x: number): string => `${Math.round(100 * x)}%`
  const gain = after.exactMatch - before.exactMatch
  if (gain > 0.05) return { tone: 'ok', words: `answers ${pct(after.exactMatch)} exactly, up from ${pct(before.exactMatch)}` }
  if (gain < -0.05)
    return { tone: 'danger', words: `answers worse than before (${pct(after.exactMatch)} exactly, from ${pct(before.exactMatch)})` }
  const f1 = after.f1 - before.f1
  const lossRatio = before.loss !== null && after.loss !== null && before.loss > 0 ? after.loss / before.loss : 1
  const exact = after.exactMatch > 0 ? `${pct(after.exactMatch)} exact` : 'none exact yet'
  if (f1 >= 0.1)
    return { tone: 'ok', words: `closer to the expected answers (F1 ${before.f1.toFixed(2)} → ${after.f1.toFixed(2)}), ${exact}` }
  if (f1 > -0.05 && lossRatio <= 0.9)
    return {
      tone: 'ok',
      words: `closer to the expected answers (answer loss ${formatMetric(before.loss)} → ${formatMetric(after.loss)}), ${exact}`,
    }
  const lossChange = `answer loss ${formatMetric(before.loss)} → ${formatMetric(after.loss)}`
  if (f1 <= -0.1)
    return { tone: 'danger', words: `further from the expected answers (F1 ${before.f1.toFixed(2)} → ${after.f1.toFixed(2)}), ${exact}` }
  if (lossRatio >= 1.1) return { tone: 'danger', words: `further from the expected answers (${lossChange}), ${exact}` }
  // The loss, where there is one: a rise under a tenth is still one (it said "no clear change" alone).
  const loss = before.loss !== null && after.loss !== null ? `, ${lossChange}` : ''
  return { tone: 'warn', words: `no clear change (${pct(after.exactMatch)} exact, F1 ${after.f1.toFixed(2)}${loss})` }
}

/**
 * A length histogram bin [from, to) of whole numbers as the lengths it holds: "20" for a bin of
 * one length, "20–23" for several (labelled "20–21" under a bar of length 20 alone, it read as two).
 */
export function binLabel(b: { from: number; to: number }): string {
  return b.to - b.from <= 1 ? String(b.from) : `${b.from}–${b.to - 1}`
}

/** The first `max` names, then how many more: "a, b and 3 more" (not "a, b…." in a sentence). */
export function namesList(names: readonly string[], max: number): string {
  const shown = names.slice(0, max).join(', ')
  return names.length > max ? `${shown} and ${names.length - max} more` : shown
}

/**
 * The sparse layers to colour chat tokens by, of the models in view (side by side: both), each
 * with its label: a layer only some of them have says whose it is (the others' tokens stay
 * uncoloured there).
 */
export function colourLayerChoices(
  models: readonly { name: string; sparseLayers: readonly number[] }[],
): { layer: number; label: string }[] {
  const all = [...new Set(models.flatMap((m) => m.sparseLayers))].sort((a, b) => a - b)
  return all.map((layer) => {
    const have = models.filter((m) => m.sparseLayers.includes(layer))
    return { layer, label: have.length === models.length ? String(layer) : `${layer} (${have.map((m) => m.name).join(', ')} only)` }
  })
}

/**
 * What is wrong with a typed context length (tokens a device budget is planned for), or null:
 * blank (the default) or a whole number from 1 to `max`.
 */
export function contextProblem(text: string, max: number, defaultTokens: number): string | null {
  const t = text.trim()
  if (!t) return null
  const tail = `write e.g. 8192 (blank: ${defaultTokens})`
  if (!/^[+-]?\d+$/.test(t)) return `“${t}” is not a whole number of tokens; ${tail}`
  const n = Number(t)
  if (n < 1) return `“${t}”: a context holds at least 1 token; ${tail}`
  if (n > max) return `“${t}” is more than ${max} tokens; ${tail}`
  return null
}
