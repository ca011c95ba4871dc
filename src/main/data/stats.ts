/**
 * Statistics kept while streaming: length distributions (compact typed storage), exact-duplicate
 * detection through 64-bit hashes of the normalised rows (8 bytes a row), and the seeded
 * train/validation split.
 */
import { createHash } from 'node:crypto'
import { type HistogramBin, type LengthStats, validationCount } from '../../shared/dataset'

export { validationCount }

/** Collects lengths (non-negative integers) and summarises them. */
export class LengthAccumulator {
  private values = new Uint32Array(1024)
  private n = 0
  private sum = 0

  add(length: number): void {
    if (this.n === this.values.length) {
      const grown = new Uint32Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    this.values[this.n++] = Math.min(length, 0xffffffff)
    this.sum += length
  }

  get count(): number {
    return this.n
  }

  /**
   * min, median (of an even count, the mean of the middle two: rows of 6 and 10 characters read
   * "median 6", nearest-rank, which users took for a mistake), nearest-rank 95th percentile, max,
   * mean, and a histogram of at most `bins` bins.
   */
  summary(bins = 20): LengthStats {
    if (this.n === 0) return { count: 0, min: 0, median: 0, p95: 0, max: 0, mean: 0, histogram: [] }
    const sorted = this.values.slice(0, this.n).sort()
    const rank = (p: number) => sorted[Math.max(0, Math.ceil(p * this.n) - 1)]
    const min = sorted[0]
    const max = sorted[this.n - 1]
    const mid = this.n >> 1
    const median = this.n % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    return { count: this.n, min, median, p95: rank(0.95), max, mean: this.sum / this.n, histogram: histogram(sorted, bins) }
  }
}

/** A "nice" bin width (1, 2 or 5 times a power of ten) giving at most `bins` bins over [min, max]. */
export function binWidth(min: number, max: number, bins: number): number {
  const raw = Math.max(1, (max - min + 1) / bins)
  const pow = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 5, 10]) {
    const w = m * pow
    if (w >= raw && Math.floor(max / w) - Math.floor(min / w) + 1 <= bins) return Math.max(1, Math.round(w))
  }
  return Math.max(1, Math.round(20 * pow))
}

/** Histogram of ascending values, bins aligned to multiples of a nice width. */
export function histogram(sorted: ArrayLike<number>, bins = 20): HistogramBin[] {
  if (sorted.length === 0) return []
  const min = sorted[0]
  const max = sorted[sorted.length - 1]
  const width = binWidth(min, max, bins)
  const first = Math.floor(min / width) * width
  const out: HistogramBin[] = []
  for (let from = first; from <= max; from += width) out.push({ from, to: from + width, count: 0 })
  for (let i = 0; i < sorted.length; i++) out[Math.floor((sorted[i] - first) / width)].count++
  return out
}

/**
 * Which group of equal rows each row is in (a row seen before is a duplicate): the group its
 * first copy was given, by a 64-bit hash of the row's text (open addressing over a Uint32Array,
 * 12 bytes a row plus slack). Two different rows colliding needs a 64-bit hash collision, about 1
 * in 10^8 for a billion rows.
 */
export class HashGroups {
  private table = new Uint32Array(3 * 1024)
  private used = 0

  /** The group of `key`: `next` when it is new (remembered as its group), else the group it had. */
  group(key: string, next: number): number {
    const h = createHash('sha1').update(key).digest()
    const a = h.readUInt32LE(0)
    const b = h.readUInt32LE(4) || 1 // b = 0 marks an empty slot: nudge the one hash that would look empty
    if ((this.used + 1) * 2 > this.table.length / 3) this.grow()
    const slots = this.table.length / 3
    let i = a % slots
    for (;;) {
      if (this.table[3 * i + 1] === 0) break
      if (this.table[3 * i] === a && this.table[3 * i + 1] === b) return this.table[3 * i + 2]
      i = (i + 1) % slots
    }
    this.table.set([a, b, next], 3 * i)
    this.used++
    return next
  }

  private grow(): void {
    const old = this.table
    this.table = new Uint32Array(old.length * 2)
    const slots = this.table.length / 3
    for (let j = 0; j < old.length; j += 3) {
      if (old[j + 1] === 0) continue
      let i = old[j] % slots
      while (this.table[3 * i + 1] !== 0) i = (i + 1) % slots
      this.table.set(old.subarray(j, j + 3), 3 * i)
    }
  }
}

/** mulberry32: a small, fast, seeded 32-bit generator (deterministic across platforms). */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * The validation rows of a split: validationCount(n, ratio) distinct indices in [0, n), chosen
 * by a seeded partial Fisher-Yates shuffle, returned ascending. Same (n, ratio, seed), same rows.
 */
export function validationIndices(n: number, ratio: number, seed: number, groups?: ArrayLike<number>): Uint32Array {
  const k = validationCount(n, ratio)
  if (k === 0) return new Uint32Array(0)
  const random = mulberry32(seed)
  const order = new Uint32Array(n)
  for (let i = 0; i < n; i++) order[i] = i
  const pick = (i: number): number => {
    const j = i + Math.floor(random() * (n - i))
    const t = order[i]
    order[i] = order[j]
    order[j] = t
    return order[i]
  }
  if (groups === undefined) {
    for (let i = 0; i < k; i++) pick(i)
    return order.slice(0, k).sort()
  }
  // Rows that are copies of each other go to one side together: a copy on each side scores the
  // model on rows it trained on. Picked in the same order, so rows without copies split as above.
  const members = new Map<number, number[]>()
  for (let i = 0; i < n; i++) {
    const g = members.get(groups[i])
    if (g) g.push(i)
    else members.set(groups[i], [i])
  }
  const chosen: number[] = []
  const taken = new Set<number>()
  for (let i = 0; i < n && chosen.length < k; i++) {
    const g = groups[pick(i)]
    if (taken.has(g)) continue
    const rows = members.get(g)!
    if (chosen.length + rows.length >= n) continue // training keeps a row
    taken.add(g)
    chosen.push(...rows)
  }
  return Uint32Array.from(chosen).sort()
}
