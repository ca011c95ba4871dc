/**
 * Paging: the weights a plan leaves off the device come from a host store through a device cache
 * bounded by the plan's cache bytes, as llama.cpp's partial offload, accelerate's disk offload and
 * MoE-Infinity's expert cache do.
 *
 * - UnitCache holds units (an expert, a layer's attention, a dense MLP, an lm_head chunk) on the
 *   device, evicting by LRU or by routing frequency (LFU with decay, recency breaking ties), and
 *   prefetches the next sparse layer's likely experts (predicted from the current hidden state
 *   with that layer's router) where the backend reads back synchronously.
 * - pagedWeights() is the Weights source a forward reads: resident tensors as they are, paged
 *   matrices through the cache (paged in again for the backward pass instead of being held on
 *   the tape: they are frozen), lm_head chunk by chunk, embedding rows gathered on the host.
 *   Results are the resident model's: the same values go through the same operations.
 */
import * as tf from '@tensorflow/tfjs'
import type { EvictionPolicy, ExpertStorage, LayerCacheStats, OffloadStats } from '../../shared/chat'
import { moePrefix, sparseLayers, type MoeConfig } from '../../shared/modelConfig'
import { readsSync } from './device'
import type { HostStore } from './hostStore'
import { chunkedLinear, linear, linearInputGrad, plainWeights, type Weights } from './ops'
import type { Placement } from './plan'
import { headChunkRows, headTensor, unitIndex, type Unit } from './units'

interface Entry {
  unit: Unit
  tensors: tf.Tensor2D[]
  lastUse: number
  uses: number
  prefetched: boolean
}

/** Paged units on the device within a byte budget. */
export class UnitCache {
  private readonly entries = new Map<string, Entry>()
  private clock = 0
  private held = 0
  private peak = 0
  private moved = 0
  private prefetched = 0
  private prefetchUsed = 0
  private prefetchUnused = 0
  private hits = 0
  private misses = 0
  private otherHits = 0
  private otherMisses = 0
  private readonly perLayer = new Map<number, LayerCacheStats>()
  /** Routing frequency per expert unit (decayed), for the LFU policy. */
  private readonly freq = new Map<string, number>()

  constructor(
    readonly store: HostStore,
    /** The cache's bytes on the device. */
    readonly budgetBytes: number,
    readonly policy: EvictionPolicy = 'lfu',
    /** The whole device budget the plan was made for (reported in stats). */
    readonly deviceBudgetBytes = budgetBytes,
  ) {}

  get residentBytes(): number {
    return this.held
  }

  /** How many units of `bytes` each the cache holds at once. */
  capacityFor(bytes: number): number {
    return bytes > 0 ? Math.floor(this.budgetBytes / bytes) : 0
  }

  private layerStats(layer: number): LayerCacheStats {
    let s = this.perLayer.get(layer)
    if (!s) this.perLayer.set(layer, (s = { layer, hits: 0, misses: 0 }))
    return s
  }

  private evictOne(protect: Set<string>): void {
    let victim: string | undefined
    let best = Infinity
    for (const [k, e] of this.entries) {
      if (protect.has(k)) continue
      const score = this.policy === 'lru' ? e.lastUse : (this.freq.get(k) ?? 0) * 1e6 + e.lastUse
      if (score < best) {
        best = score
        victim = k
      }
    }
    if (victim === undefined) throw new Error('paging: nothing left to evict within the cache budget')
    const e = this.entries.get(victim)!
    if (e.prefetched && e.uses === 0) this.prefetchUnused++
    for (const t of e.tensors) t.dispose()
    this.held -= e.unit.bytes
    this.entries.delete(victim)
  }

  private insert(unit: Unit, prefetched: boolean, protect: Set<string>): Entry {
    if (unit.bytes > this.budgetBytes)
      throw new Error(`paging: ${unit.id} takes ${unit.bytes} bytes, more than the cache's ${this.budgetBytes}; raise the budget`)
    while (this.held + unit.bytes > this.budgetBytes) this.evictOne(protect)
    const mats = unit.parts.map((p) => this.store.matrix(p.name, p.rows))
    const tensors = tf.tidy(() => mats.map((m, i) => tf.keep(tf.tensor2d(m, unit.parts[i].shape))))
    this.moved += unit.bytes
    this.held += unit.bytes
    this.peak = Math.max(this.peak, this.held)
    const e: Entry = { unit, tensors, lastUse: ++this.clock, uses: 0, prefetched }
    this.entries.set(unit.id, e)
    return e
  }

  /**
   * The device tensors of a unit, paged in on a miss. `count`: a use in the forward pass (counted
   * once per unit use: the caller counts on its first matrix), not a backward re-fetch.
   */
  get(unit: Unit, count: boolean): tf.Tensor2D[] {
    let e = this.entries.get(unit.id)
    if (count) {
      const expert = unit.kind === 'expert'
      if (e) {
        if (expert) this.hits++
        else this.otherHits++
        if (expert) this.layerStats(unit.layer!).hits++
        if (e.prefetched && e.uses === 0) this.prefetchUsed++
      } else {
        if (expert) this.misses++
        else this.otherMisses++
        if (expert) this.layerStats(unit.layer!).misses++
      }
    }
    e ??= this.insert(unit, false, new Set([unit.id]))
    if (count) e.uses++
    e.lastUse = ++this.clock
    return e.tensors
  }

  /** Records a sparse layer's routing (for the frequency-aware policy). */
  observe(layer: number, counts: ArrayLike<number>): void {
    for (const [k, v] of this.freq) this.freq.set(k, v * 0.9)
    for (let e = 0; e < counts.length; e++)
      if (counts[e] > 0) this.freq.set(`expert:${layer}:${e}`, (this.freq.get(`expert:${layer}:${e}`) ?? 0) + counts[e])
  }

  /** Loads units expected next, without evicting each other (at most the cache's room). */
  prefetch(units: Unit[]): void {
    let room = this.budgetBytes - (units[0]?.bytes ?? 0)
    const want: Unit[] = []
    for (const u of units) {
      if (u.bytes > room) break
      room -= u.bytes
      want.push(u)
    }
    const protect = new Set(want.map((u) => u.id))
    for (const u of want) {
      if (this.entries.has(u.id)) continue
      this.insert(u, true, protect)
      this.prefetched++
    }
  }

  stats(storage: ExpertStorage): OffloadStats {
    const layers = [...this.perLayer.values()].sort((a, b) => a.layer - b.layer)
    return {
      budgetBytes: this.deviceBudgetBytes,
      cacheBytes: this.budgetBytes,
      residentBytes: this.held,
      peakBytes: this.peak,
      bytesMoved: this.moved,
      bytesRead: this.store.bytesRead,
      hits: this.hits,
      misses: this.misses,
      hitRate: this.hits + this.misses ? this.hits / (this.hits + this.misses) : 0,
      otherHits: this.otherHits,
      otherMisses: this.otherMisses,
      layers: layers.map((l) => ({ ...l })),
      prefetched: this.prefetched,
      prefetchUsed: this.prefetchUsed,
      prefetchUnused: this.prefetchUnused,
      prefetchAccuracy: this.prefetched ? this.prefetchUsed / this.prefetched : 0,
      storage,
      policy: this.policy,
    }
  }

  dispose(): void {
    for (const e of this.entries.values()) for (const t of e.tensors) t.dispose()
    this.entries.clear()
    this.held = 0
  }
}

/**
 * x · Wᵀ with W paged in, and paged in again for the backward pass (dx = dy · W): W is frozen,
 * so it takes no gradient and is never held by the tape.
 */
function pagedLinear(x: tf.Tensor2D, forward: () => tf.Tensor2D, backward: () => tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((input: tf.Tensor) => {
    const value = linear(input as tf.Tensor2D, forward())
    const gradFunc = (dy: tf.Tensor): tf.Tensor => linearInputGrad(dy as tf.Tensor2D, backward())
    return { value, gradFunc }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return f(x) as tf.Tensor2D
}

/** What a paged model carries: its plan, host store and cache. */
export interface Paging {
  placement: Placement
  store: HostStore
  cache: UnitCache
  prefetch: boolean
}

/** The Weights a paged model's forward reads: resident tensors, paged units, host-gathered embedding rows. */
export function pagedWeights(config: MoeConfig, resident: (name: string) => tf.Tensor | undefined, paging: Paging): Weights {
  const { placement, store, cache } = paging
  const byName = unitIndex(placement.paged)
  const headChunks = placement.paged.filter((u) => u.kind === 'head')
  const head = headTensor(config)
  const sparse = sparseLayers(config)
  const expertUnits = new Map(placement.paged.filter((u) => u.kind === 'expert').map((u) => [u.id, u]))
  const get = (name: string): tf.Tensor => {
    const t = resident(name)
    if (t) return t
    throw new Error(`paging: ${name} is paged; it is only read through linear()`)
  }
  const plain = plainWeights(get, new Map([[head, headChunkRows(config)]]))
  return {
    get,
    embed: placement.embedOnHost
      ? (ids) => tf.tensor2d(store.gather('model.embed_tokens.weight', ids), [ids.length, config.hiddenSize])
      : undefined,
    linear: (x, name, bias) => {
      const b = bias === undefined ? undefined : get(bias)
      if (name === head && headChunks.length > 0) {
        // lm_head chunk by chunk along the vocabulary, as the resident model computes it.
        const rows = headChunkRows(config)
        const y = chunkedLinear(x, config.vocabSize, rows, (from, _count, forward) => ({
          w: cache.get(headChunks[from / rows], forward)[0] as tf.Tensor2D,
          owned: false,
        }))
        return b ? (tf.add(y, b) as tf.Tensor2D) : y
      }
      const at = byName.get(name)
      // Resident: as the resident model computes it (lm_head in the same vocabulary chunks).
      if (!at) return plain.linear(x, name, bias)
      const y = pagedLinear(
        x,
        () => cache.get(at.unit, at.part === 0)[at.part],
        () => cache.get(at.unit, false)[at.part],
      )
      return b ? (tf.add(y, b) as tf.Tensor2D) : y
    },
    matrix: (name) => (name === head || byName.has(name) ? undefined : plain.matrix!(name)),
    afterMoe: (layer, h, counts) => {
      cache.observe(layer, counts)
      // The prediction reads the next router's scores back: only where reads are synchronous.
      if (!paging.prefetch || !readsSync()) return
      const next = sparse[sparse.indexOf(layer) + 1]
      if (next === undefined) return
      // Predict the next layer's experts from this hidden state with the next layer's router.
      const scores = tf.tidy(() => tf.sum(tf.softmax(linear(h, get(`${moePrefix(config, next)}.gate.weight`))), 0).dataSync())
      const order = Array.from(scores, (v, e) => [v, e] as const)
        .sort((a, b) => b[0] - a[0])
        .map(([, e]) => e)
      const needed = Math.min(config.numExperts, Math.max(config.topK, Math.ceil(config.topK * Math.sqrt(h.shape[0]))))
      const units = order
        .slice(0, needed)
        .map((e) => expertUnits.get(`expert:${next}:${e}`))
        .filter((u): u is Unit => u !== undefined)
      cache.prefetch(units)
    },
  }
}
