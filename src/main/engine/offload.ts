/**
 * Expert offloading: run models whose experts do not all fit in the memory budget, as
 * mixtral-offloading, MoE-Infinity and llama.cpp's expert offload do.
 *
 * - ExpertStore keeps every expert off the device: in host memory as F32, F16, BF16 or 8-bit
 *   (per-output-channel scales), or not at all ('lazy': read from the safetensors file by offset
 *   when needed, without loading the whole file).
 * - ExpertCache holds experts on the device within a byte budget, evicting by LRU or by routing
 *   frequency (LFU with decay, recency breaking ties), and prefetches the next sparse layer's
 *   likely experts, predicted from the current hidden state with that layer's router.
 * - offloadedWeights() is the Weights source a forward pass reads: non-expert weights stay
 *   resident, expert weights are paged in. In training, expert matmuls page the (frozen) weights
 *   in again for the backward pass instead of holding them for the whole step.
 */
import * as tf from '@tensorflow/tfjs'
import {
  EXPERT_STORAGES,
  type EvictionPolicy,
  type ExpertStorage,
  type FitPlan,
  type LayerCacheStats,
  type OffloadOptions,
  type OffloadStats,
} from '../../shared/chat'
import { expertProjNames, moePrefix, paramSpecs, sparseLayers, type MoeConfig } from '../../shared/modelConfig'
import { readsSync } from './device'
import { linear, mm, type Weights } from './ops'
import { decodeToFloat32, encodeFromFloat32, type SafetensorsHeader } from './safetensors'
import { readWeight } from './weights'

export { EXPERT_STORAGES }
export type { EvictionPolicy, ExpertStorage, FitPlan, LayerCacheStats, OffloadOptions, OffloadStats }

type Quantized = { q: Int8Array; scale: Float32Array }
type HostMatrix = Float32Array | Uint8Array | Quantized | { header: SafetensorsHeader; name: string }

/** Symmetric 8-bit quantisation per output channel (row of W (out, in)). */
export function quantizeInt8(w: Float32Array, rows: number, cols: number): Quantized {
  const q = new Int8Array(rows * cols)
  const scale = new Float32Array(rows)
  for (let r = 0; r < rows; r++) {
    let max = 0
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]))
    const s = max > 0 ? max / 127 : 1
    scale[r] = s
    for (let c = 0; c < cols; c++) q[r * cols + c] = Math.round(w[r * cols + c] / s)
  }
  return { q, scale }
}

export function dequantizeInt8({ q, scale }: Quantized, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = q[r * cols + c] * scale[r]
  return out
}

const key = (layer: number, expert: number): string => `${layer}:${expert}`

/** Every expert of a model, off the device. */
export class ExpertStore {
  /** (layer:expert) → [gate, up, down] host matrices. */
  private readonly experts = new Map<string, HostMatrix[]>()
  readonly shapes: [number, number][]
  /** Bytes one expert takes on the device (float32). */
  readonly deviceBytesPerExpert: number

  constructor(
    readonly config: MoeConfig,
    readonly storage: ExpertStorage,
    source: { weights: Map<string, Float32Array> } | { index: Map<string, SafetensorsHeader> },
  ) {
    const H = config.hiddenSize
    const I = config.expertIntermediateSize
    this.shapes = [
      [I, H],
      [I, H],
      [H, I],
    ]
    this.deviceBytesPerExpert = 3 * H * I * 4
    for (const l of sparseLayers(config))
      for (let e = 0; e < config.numExperts; e++) {
        const mats = expertProjNames(config, l, e).map((name, i): HostMatrix => {
          if ('index' in source) {
            const header = source.index.get(name)
            if (!header) throw new Error(`offload: tensor ${name} is not in the checkpoint`)
            return { header, name }
          }
          const w = source.weights.get(name)
          if (!w) throw new Error(`offload: no weights for ${name}`)
          const [rows, cols] = this.shapes[i]
          if (storage === 'int8') return quantizeInt8(w, rows, cols)
          if (storage === 'f16' || storage === 'bf16') return encodeFromFloat32(storage === 'f16' ? 'F16' : 'BF16', w)
          if (storage === 'lazy') throw new Error('offload: lazy storage reads from the checkpoint file; open it with an index')
          return w
        })
        this.experts.set(key(l, e), mats)
      }
  }

  /** Decoded float32 matrices [gate, up, down] of an expert. */
  load(layer: number, expert: number): Float32Array[] {
    const mats = this.experts.get(key(layer, expert))
    if (!mats) throw new Error(`offload: layer ${layer} has no expert ${expert}`)
    return mats.map((m, i) => {
      if (m instanceof Float32Array) return m
      if (m instanceof Uint8Array) return decodeToFloat32(this.storage === 'f16' ? 'F16' : 'BF16', m)
      if ('q' in m) return dequantizeInt8(m, this.shapes[i][0], this.shapes[i][1])
      return readWeight(m.header, m.name)
    })
  }

  /** Host bytes the store holds (0 for lazy storage). */
  get hostBytes(): number {
    let n = 0
    for (const mats of this.experts.values())
      for (const m of mats) {
        if (m instanceof Float32Array || m instanceof Uint8Array) n += m.byteLength
        else if ('q' in m) n += m.q.byteLength + m.scale.byteLength
      }
    return n
  }
}

interface Entry {
  tensors: tf.Tensor2D[]
  lastUse: number
  uses: number
  prefetched: boolean
}

/** Experts on the device within a byte budget. */
export class ExpertCache {
  private readonly entries = new Map<string, Entry>()
  private clock = 0
  private peak = 0
  private moved = 0
  private prefetched = 0
  private prefetchUsed = 0
  private readonly perLayer = new Map<number, LayerCacheStats>()
  /** Routing frequency per expert (decayed), for the LFU policy. */
  private readonly freq = new Map<string, number>()
  readonly policy: EvictionPolicy

  constructor(
    readonly store: ExpertStore,
    readonly budgetBytes: number,
    policy: EvictionPolicy = 'lfu',
  ) {
    this.policy = policy
    if (budgetBytes < store.deviceBytesPerExpert)
      throw new Error(
        `offload: a budget of ${budgetBytes} bytes cannot hold one expert (${store.deviceBytesPerExpert} bytes); raise it to at least that`,
      )
  }

  get capacity(): number {
    return Math.floor(this.budgetBytes / this.store.deviceBytesPerExpert)
  }

  get residentBytes(): number {
    return this.entries.size * this.store.deviceBytesPerExpert
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
    if (victim === undefined) throw new Error('offload: nothing left to evict within the budget')
    for (const t of this.entries.get(victim)!.tensors) t.dispose()
    this.entries.delete(victim)
  }

  private insert(layer: number, expert: number, prefetched: boolean, protect: Set<string>): Entry {
    const k = key(layer, expert)
    while (this.entries.size >= this.capacity) this.evictOne(protect)
    const mats = this.store.load(layer, expert)
    const tensors = tf.tidy(() => mats.map((m, i) => tf.keep(tf.tensor2d(m, this.store.shapes[i]))))
    this.moved += this.store.deviceBytesPerExpert
    const e: Entry = { tensors, lastUse: ++this.clock, uses: 0, prefetched }
    this.entries.set(k, e)
    this.peak = Math.max(this.peak, this.residentBytes)
    return e
  }

  /** The device tensors [gate, up, down] of an expert, paged in on a miss. */
  get(layer: number, expert: number): tf.Tensor2D[] {
    const k = key(layer, expert)
    const s = this.layerStats(layer)
    let e = this.entries.get(k)
    if (e) {
      s.hits++
      if (e.prefetched && e.uses === 0) this.prefetchUsed++
    } else {
      s.misses++
      e = this.insert(layer, expert, false, new Set())
    }
    e.uses++
    e.lastUse = ++this.clock
    return e.tensors
  }

  /** Records the routing of a layer (for the frequency-aware policy). */
  observe(layer: number, counts: ArrayLike<number>): void {
    for (const [k, v] of this.freq) this.freq.set(k, v * 0.9)
    for (let e = 0; e < counts.length; e++) if (counts[e] > 0) this.freq.set(key(layer, e), (this.freq.get(key(layer, e)) ?? 0) + counts[e])
  }

  /** Loads experts expected next, without evicting each other or experts in `keep`. */
  prefetch(layer: number, experts: number[]): void {
    const want = experts.slice(0, Math.max(0, this.capacity - 1))
    const protect = new Set(want.map((e) => key(layer, e)))
    for (const e of want) {
      if (this.entries.has(key(layer, e))) continue
      this.insert(layer, e, true, protect)
      this.prefetched++
    }
  }

  stats(): OffloadStats {
    const layers = [...this.perLayer.values()].sort((a, b) => a.layer - b.layer)
    const hits = layers.reduce((a, l) => a + l.hits, 0)
    const misses = layers.reduce((a, l) => a + l.misses, 0)
    return {
      budgetBytes: this.budgetBytes,
      residentBytes: this.residentBytes,
      peakBytes: this.peak,
      bytesMoved: this.moved,
      hits,
      misses,
      hitRate: hits + misses ? hits / (hits + misses) : 0,
      layers: layers.map((l) => ({ ...l })),
      prefetched: this.prefetched,
      prefetchUsed: this.prefetchUsed,
      prefetchAccuracy: this.prefetched ? this.prefetchUsed / this.prefetched : 0,
      storage: this.store.storage,
      policy: this.policy,
    }
  }

  dispose(): void {
    for (const e of this.entries.values()) for (const t of e.tensors) t.dispose()
    this.entries.clear()
  }
}

/**
 * x · Wᵀ with W paged in from the cache, and paged in again for the backward pass (dx = dy · W);
 * W is frozen, so it takes no gradient and is never held by the tape.
 */
function pagedLinear(x: tf.Tensor2D, fetch: () => tf.Tensor2D): tf.Tensor2D {
  const f = tf.customGrad(((input: tf.Tensor) => {
    const value = linear(input as tf.Tensor2D, fetch())
    const gradFunc = (dy: tf.Tensor): tf.Tensor =>
      tf.getBackend() === 'wasm' ? mm(dy as tf.Tensor2D, fetch()) : tf.matMul(dy as tf.Tensor2D, fetch())
    return { value, gradFunc }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return f(x) as tf.Tensor2D
}

/** The Weights a forward reads with offloaded experts: resident tensors, paged experts. */
export function offloadedWeights(
  config: MoeConfig,
  resident: (name: string) => tf.Tensor,
  cache: ExpertCache,
  opts: { prefetch: boolean },
): Weights {
  const where = new Map<string, [number, number, number]>()
  for (const s of paramSpecs(config))
    if (s.kind === 'expert') where.set(s.name, [s.layer!, s.expert!, expertProjNames(config, s.layer!, s.expert!).indexOf(s.name)])
  const sparse = sparseLayers(config)
  const get = (name: string): tf.Tensor => {
    const w = where.get(name)
    return w ? cache.get(w[0], w[1])[w[2]] : resident(name)
  }
  return {
    get,
    linear: (x, name, bias) => {
      const w = where.get(name)
      if (!w) return linear(x, resident(name), bias === undefined ? undefined : resident(bias))
      return pagedLinear(x, () => cache.get(w[0], w[1])[w[2]])
    },
    afterMoe: (layer, h, counts) => {
      cache.observe(layer, counts)
      // The prediction reads the next router's scores back: only where reads are synchronous.
      if (!opts.prefetch || !readsSync()) return
      const next = sparse[sparse.indexOf(layer) + 1]
      if (next === undefined) return
      // Predict the next layer's experts from this hidden state with the next layer's router.
      const prefix = moePrefix(config, next)
      const scores = tf.tidy(() => tf.sum(tf.softmax(linear(h, resident(`${prefix}.gate.weight`))), 0).dataSync())
      const order = Array.from(scores, (v, e) => [v, e] as const)
        .sort((a, b) => b[0] - a[0])
        .map(([, e]) => e)
      const needed = Math.min(config.numExperts, Math.max(config.topK, Math.ceil(config.topK * Math.sqrt(h.shape[0]))))
      cache.prefetch(next, order.slice(0, needed))
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Fit planner

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`

/**
 * How a model fits a device byte budget, before loading it: what stays resident, what the experts
 * get, and a clear refusal when even one expert per layer does not fit.
 */
export function planFit(config: MoeConfig, budgetBytes: number, opts: { contextTokens?: number } = {}): FitPlan {
  let resident = 0
  let experts = 0
  for (const s of paramSpecs(config)) {
    const bytes = s.shape.reduce((a, b) => a * b, 1) * 4
    if (s.kind === 'expert') experts += bytes
    else resident += bytes
  }
  const layers = sparseLayers(config).length
  const totalExperts = layers * config.numExperts
  const expertBytes = totalExperts ? experts / totalExperts : 0
  const ctx = opts.contextTokens ?? Math.min(2048, config.maxPositionEmbeddings)
  const kvCacheBytes = 2 * config.numLayers * config.numKvHeads * config.headDim * ctx * 4
  const expertBudgetBytes = Math.max(0, budgetBytes - resident - kvCacheBytes)
  const cachedExperts = Math.min(totalExperts, Math.floor(expertBudgetBytes / Math.max(1, expertBytes)))
  const fitsResident = cachedExperts >= totalExperts
  const fits = totalExperts === 0 ? expertBudgetBytes >= 0 && budgetBytes >= resident + kvCacheBytes : cachedExperts >= 1
  const predictedBytes = resident + cachedExperts * expertBytes
  const message = !fits
    ? `does not fit: ${mib(resident)} of non-expert weights and ${mib(kvCacheBytes)} of KV cache (${ctx} tokens) leave ${mib(expertBudgetBytes)}, less than one expert (${mib(expertBytes)}); raise the budget to at least ${mib(resident + kvCacheBytes + expertBytes)}`
    : fitsResident
      ? `fits resident: ${mib(resident + experts)} of weights and ${mib(kvCacheBytes)} of KV cache within ${mib(budgetBytes)}`
      : `fits with offloading: ${mib(resident)} resident, ${cachedExperts} of ${totalExperts} experts (${mib(cachedExperts * expertBytes)}) cached on the device, the rest paged in from the host`
  return {
    residentBytes: resident,
    expertBytes,
    totalExpertBytes: experts,
    kvCacheBytes,
    expertBudgetBytes,
    cachedExperts,
    totalExperts,
    fitsResident,
    fits,
    predictedBytes,
    message,
  }
}
