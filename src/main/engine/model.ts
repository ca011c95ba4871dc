/**
 * The decoder: embeddings, attention (RoPE, grouped-query, optional q/k/v biases and q/k norm),
 * dense or sparse MLP per layer, final norm and lm_head, following HF transformers' Mixtral,
 * Qwen2-MoE, OLMoE and Qwen3-MoE modelling code. All compute is float32.
 *
 * Weights are tf.Variables keyed by their hub tensor names, so checkpoints, optimiser state,
 * freeze policies and gradients all speak the same names.
 */
import * as tf from '@tensorflow/tfjs'
import { isSparseLayer, paramSpecs, validateMoeConfig, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'
import { dropout, embedLookup, mm, ownedVariable, plainWeights, recordingGradients, Rng, rmsNorm, swiglu, type Weights } from './ops'
import { moeBlockSteps, runAsync, runSync, type LayerRouting, type RoutingReplay, type Steps } from './moe'
import type { OffloadStats } from '../../shared/chat'
import { pagedWeights, type Paging } from './paging'
import { headChunkRows, headTensor } from './units'
import { custom, runKernel } from './kernelCall'
import { fusedWasmKernels, MASKED_SOFTMAX, ROPE, SCALE_ADD, SOFTMAX_GRAD } from './wasmKernels'

export interface KvCache {
  /** Number of positions already in the cache. */
  length: number
  /** Per layer: keys and values (B, kvHeads, length, headDim). */
  keys: tf.Tensor4D[]
  values: tf.Tensor4D[]
}

/** Shapes, tables and mode one forward shares across its layers (see MoeModel.context). */
export interface LayerContext {
  B: number
  T: number
  N: number
  H: number
  /** Positions attended to: cached ones plus this forward's. */
  S: number
  start: number
  training: boolean
  rng?: Rng
  capacityFactor: number | null
  w: Weights
  ids: Int32Array
  /** (N) 1 for a real token, 0 for padding; undefined when every position is real. */
  valid?: Uint8Array
  cos: tf.Tensor2D
  sin: tf.Tensor2D
  fullMask: tf.Tensor2D
  windowMask: tf.Tensor2D
  cache?: KvCache
  /** Filled per layer: keys and values (B, kvHeads, S, headDim). */
  keys: tf.Tensor4D[]
  values: tf.Tensor4D[]
}

/**
 * Watches a forward layer by layer (a layer-by-layer backward recomputes each layer from its
 * input): called with each layer's input (and the final hidden state, as layer numLayers) and
 * the rng before the layer runs; `replay` gives a layer's routing decided earlier.
 */
export interface ForwardTrace {
  onLayer(layer: number, input: tf.Tensor2D, rng: Rng | undefined): void
  replay?(layer: number): RoutingReplay | undefined
}

export interface ForwardOptions {
  /** Training mode: dropout, expert dropout, router jitter and noise, training capacity factor. */
  training?: boolean
  /** Seeded randomness for training-mode noise. */
  rng?: Rng
  /** Overrides the capacity factor of the mode (null = dropless). */
  capacityFactor?: number | null
  /** Attend to these cached positions first; the output carries the extended cache. */
  cache?: KvCache
  /** Only compute logits for the last position (generation). */
  lastOnly?: boolean
  /** Where weights come from (default: the model's own tensors); LoRA and offloading wrap it. */
  weights?: Weights
  /** Layer-by-layer observation (and routing replay) of this forward. */
  trace?: ForwardTrace
  /**
   * Real tokens per row (right padding after them): padding positions are not routed, so they
   * take no expert's capacity. Default: every position is real.
   */
  lengths?: number[]
}

export interface ForwardOutput {
  /** (B, T, V), or (B, 1, V) with lastOnly. */
  logits: tf.Tensor3D
  /** One entry per sparse layer, in layer order. */
  routing: LayerRouting[]
  /** The cache extended by this forward's positions (when a cache was given or wanted). */
  cache: KvCache
}

export class ModelError extends Error {}

/** (B·T) 1 where position t of row b is one of the row's first lengths[b] tokens. */
export function validMask(lengths: number[], B: number, T: number): Uint8Array {
  if (lengths.length !== B) throw new ModelError(`lengths: ${lengths.length} rows given for a batch of ${B}`)
  const out = new Uint8Array(B * T)
  lengths.forEach((n, b) => out.fill(1, b * T, b * T + Math.max(0, Math.min(T, n))))
  return out
}

/** Cos and sin tables (T, headDim) for positions start..start+T-1, HF layout (freqs repeated twice). */
export function ropeTables(theta: number, headDim: number, start: number, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = headDim / 2
  const invFreq = new Float32Array(half)
  for (let i = 0; i < half; i++) invFreq[i] = 1 / Math.pow(theta, (2 * i) / headDim)
  const cos = new Float32Array(T * headDim)
  const sin = new Float32Array(T * headDim)
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < half; i++) {
      const a = Math.fround((start + t) * invFreq[i])
      cos[t * headDim + i] = cos[t * headDim + i + half] = Math.cos(a)
      sin[t * headDim + i] = sin[t * headDim + i + half] = Math.sin(a)
    }
  }
  return { cos: tf.tensor2d(cos, [T, headDim]), sin: tf.tensor2d(sin, [T, headDim]) }
}

/**
 * softmax(scores·scale + mask) over the last axis, the mask (rep·T, S) added to every (batch,
 * head) block. On wasm: the scale, the mask and the softmax in one pass (S a multiple of 4), and
 * the gradient (TF.js's softmax gradient, then the scale) in one kernel where TF.js makes five
 * over (B, heads, T, S) floats; the same operations in the same order, so the same bits as the
 * composition on the same backend (tested).
 */
export function maskedSoftmax(scores: tf.Tensor, scale: number, mask: tf.Tensor2D): tf.Tensor {
  const [R, S] = scores.shape.slice(-2)
  if (!fusedWasmKernels() || scores.dtype !== 'float32' || mask.shape[0] !== R || mask.shape[1] !== S)
    return tf.softmax(tf.add(tf.mul(scores, scale), mask))
  return custom(([x], save) => {
    // one pass where the SIMD softmax takes the rows (4k wide), else the scaled scores, then softmax
    const y =
      S % 4 === 0
        ? (runKernel(MASKED_SOFTMAX, { x, mask }, { scale }) as tf.Tensor)
        : tf.softmax(runKernel(SCALE_ADD, { x, mask }, { scale }) as tf.Tensor)
    save([y])
    return { value: y, gradFunc: (dy, [y2]) => runKernel(SOFTMAX_GRAD, { y: y2, dy }, { scale }) as tf.Tensor }
  }, scores)
}

/** x·cos + rotate_half(x)·sin on the last axis of x (B, heads, T, headDim). */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D): tf.Tensor4D {
  if (tf.getBackend() === 'wasm' && tf.getKernel(ROPE, 'wasm')) {
    // One pass forward and one backward (wasmKernels.ts); the same bits as the ops below.
    const rope = (t: tf.Tensor, c: tf.Tensor, s: tf.Tensor, transpose: boolean): tf.Tensor =>
      runKernel(ROPE, { x: t, cos: c, sin: s }, { transpose }) as tf.Tensor
    return custom(([xx], save) => {
      save([cos, sin]) // kept for the gradient (the caller disposes its tables after the forward)
      return { value: rope(xx, cos, sin, false), gradFunc: (dy, [c, s]) => rope(dy, c, s, true) }
    }, x) as tf.Tensor4D
  }
  const [x1, x2] = tf.split(x, 2, -1)
  const rotated = tf.concat([tf.neg(x2), x1], -1) // (B, heads, T, headDim)
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D
}

/**
 * Additive causal mask (rep·T, S) for queries at positions start..start+T-1, repeated rep times;
 * with a window, a query at position q sees keys k with q − window < k ≤ q (HF sliding window).
 */
function causalMask(T: number, S: number, start: number, rep: number, window: number | null): tf.Tensor2D {
  const m = new Float32Array(rep * T * S)
  for (let r = 0; r < rep; r++)
    for (let t = 0; t < T; t++) {
      const q = start + t
      for (let s = 0; s < S; s++) if (s > q || (window !== null && q - s >= window)) m[(r * T + t) * S + s] = -1e30
    }
  return tf.tensor2d(m, [rep * T, S])
}

/** Config fields a run may change without changing any tensor shape. */
export type TrainingKnobs = Partial<
  Pick<
    MoeConfig,
    | 'routerAuxLossCoef'
    | 'routerZLossCoef'
    | 'routerImportanceLossCoef'
    | 'routerLoadLossCoef'
    | 'attentionDropout'
    | 'hiddenDropout'
    | 'expertDropout'
    | 'tokenDrop'
    | 'topK'
  >
> & {
  router?: Partial<Pick<MoeConfig['router'], 'capacityFactorTrain' | 'capacityFactorEval' | 'jitter'>>
}

/** A config with a run's knobs applied (validated; shapes never change). */
export function withKnobs(c: MoeConfig, k: TrainingKnobs): MoeConfig {
  return validateMoeConfig({ ...c, ...k, router: { ...c.router, ...k.router } })
}

export class MoeModel {
  config: MoeConfig
  readonly specs: ParamSpec[]
  readonly params: Map<string, tf.Variable>
  private disposed = false

  /** The plan, host store and device cache of a model that runs within a device budget (see attachPaging). */
  paging?: Paging

  /**
   * Takes ownership of `weights` (float32 arrays by hub name); shapes must match the config.
   * With `resident`, only those tensors get device variables (a paged model: attachPaging
   * provides the rest); `weights` may then be filled later, tensor by tensor, with addParam.
   */
  constructor(config: MoeConfig, weights: Map<string, Float32Array>, opts: { resident?: ReadonlySet<string>; deferred?: boolean } = {}) {
    this.config = config
    this.specs = paramSpecs(config)
    this.params = new Map()
    this.resident = opts.resident
    this.weightSource = plainWeights(this.p, new Map([[headTensor(config), headChunkRows(config)]]))
    if (opts.deferred) return
    const problems: string[] = []
    for (const s of this.specs) {
      if (!this.isResident(s.name)) continue
      const w = weights.get(s.name)
      const n = s.shape.reduce((a, b) => a * b, 1)
      if (!w) problems.push(`missing tensor ${s.name} [${s.shape}]`)
      else if (w.length !== n) problems.push(`tensor ${s.name} has ${w.length} values, expected [${s.shape}] = ${n}`)
    }
    if (problems.length) throw new ModelError(problems.join('; '))
    for (const s of this.specs) if (this.isResident(s.name)) this.addParam(s.name, weights.get(s.name)!)
  }

  private readonly resident?: ReadonlySet<string>

  /** Whether tensor `name` lives on the device (always, unless the model is paged). */
  isResident(name: string): boolean {
    return this.resident === undefined || this.resident.has(name)
  }

  /** Puts one tensor on the device (a deferred model is assembled this way, tensor by tensor). */
  addParam(name: string, data: Float32Array): void {
    const s = this.specs.find((x) => x.name === name)
    if (!s) throw new ModelError(`no tensor ${name} in this ${this.config.family} model`)
    const n = s.shape.reduce((a, b) => a * b, 1)
    if (data.length !== n) throw new ModelError(`tensor ${name} has ${data.length} values, expected [${s.shape}] = ${n}`)
    this.params.get(name)?.dispose()
    this.params.set(name, ownedVariable(tf.tensor(data, s.shape), true, name))
  }

  /** The paging cache's statistics (undefined for a resident model). */
  pagingStats(): OffloadStats | undefined {
    return this.paging?.cache.stats(this.paging.store.storage)
  }

  /** Runs the tensors a plan leaves off the device through paging (host store, device cache). */
  attachPaging(paging: Paging): void {
    this.paging?.cache.dispose()
    this.paging = paging
    this.weightSource = pagedWeights(this.config, (name) => this.params.get(name), paging)
  }

  /** The weight tensor of a hub name. */
  p = (name: string): tf.Tensor => {
    const t = this.params.get(name)
    if (!t) throw new ModelError(`no parameter named ${name}`)
    return t
  }

  /** The model's own weights as a forward pass reads them (paging replaces it); lm_head in its vocabulary chunks. */
  weightSource: Weights

  /** Applies a run's MoE knobs (validated; shapes never change). */
  setKnobs(k: TrainingKnobs): void {
    this.config = withKnobs(this.config, k)
  }

  /**
   * This model with a run's knobs (its top-k, capacity...), sharing its weights and everything else:
   * a LoRA run's checkpoint evaluated on the cached base model, which others (chat) keep using as
   * it is. The view's own state (its config, what it sets later) stays its own.
   */
  withKnobs(k: TrainingKnobs): MoeModel {
    const view = Object.create(this) as MoeModel
    view.config = withKnobs(this.config, k)
    return view
  }

  /** Capacity factor in force for a mode. */
  capacityFactor(training: boolean): number | null {
    return training ? this.config.router.capacityFactorTrain : this.config.router.capacityFactorEval
  }

  /**
   * Forward pass over token ids (B rows of equal length T), reading back synchronously. Call
   * inside tf.tidy or a gradient function: the returned tensors are ordinary intermediates.
   */
  forward(inputIds: number[][], opts: ForwardOptions = {}): ForwardOutput {
    return runSync(this.forwardSteps(inputIds, opts))
  }

  /**
   * The forward pass reading back asynchronously (every backend; the only way on webgpu). Tensors
   * of the result live in the caller's scope: run it inside scopedAsync, holding deviceLock.
   */
  forwardAsync(inputIds: number[][], opts: ForwardOptions = {}): Promise<ForwardOutput> {
    return runAsync(this.forwardSteps(inputIds, opts))
  }

  /**
   * The forward pass as steps that yield the tensors it must read back (each sparse layer's
   * router scores), so it runs with synchronous reads (forward) or asynchronous ones
   * (runAsync: webgpu cannot read synchronously).
   */
  *forwardSteps(inputIds: number[][], opts: ForwardOptions = {}): Steps<ForwardOutput> {
    const ctx = this.context(inputIds, opts)
    const { B, T, w } = ctx
    let x = w.embed ? w.embed(ctx.ids) : embedLookup(w.get('model.embed_tokens.weight') as tf.Tensor2D, ctx.ids) // (N, H)
    const routing: LayerRouting[] = []
    // Without a tape to feed, each layer's intermediates go when the layer is done: a forward
    // held every layer's until its end (3 GB for 128 tokens through a paged OLMoE-1B-7B).
    const engine = tf.engine()
    const scoped = !recordingGradients()
    for (let i = 0; i < this.config.numLayers; i++) {
      opts.trace?.onLayer(i, x, ctx.rng)
      if (scoped) engine.startScope(`layer ${i}`)
      let r: { x: tf.Tensor2D; routing?: LayerRouting }
      try {
        r = yield* this.layerSteps(i, x, ctx, opts.trace?.replay?.(i))
      } catch (e) {
        if (scoped) engine.endScope()
        throw e
      }
      if (scoped) {
        const g = r.routing
        const keep: (tf.Tensor | undefined)[] = [r.x, ctx.keys[i], ctx.values[i], g?.routerLogits, g?.gates, g?.noiseStd, g?.noisyLogits]
        engine.endScope(keep.filter((t): t is tf.Tensor => t !== undefined) as unknown as tf.TensorContainer)
      }
      x = r.x
      if (r.routing) routing.push(r.routing)
    }
    opts.trace?.onLayer(this.config.numLayers, x, ctx.rng)
    const logits = this.head(x, B, T, opts.lastOnly ?? false, w) // (B, T, V)
    return { logits, routing, cache: { length: ctx.S, keys: ctx.keys, values: ctx.values } }
  }

  /** What every layer of one forward shares: shapes, RoPE tables, masks, mode, weights. */
  context(inputIds: number[][], opts: ForwardOptions = {}): LayerContext {
    if (this.disposed) throw new ModelError('the model was disposed')
    const c = this.config
    const B = inputIds.length
    if (B === 0) throw new ModelError('input_ids: empty batch')
    const T = inputIds[0].length
    if (T === 0) throw new ModelError('input_ids: empty sequence')
    for (let b = 0; b < B; b++)
      if (inputIds[b].length !== T)
        throw new ModelError(`input_ids: row ${b} has ${inputIds[b].length} tokens, row 0 has ${T}; pad rows to one length`)
    const start = opts.cache?.length ?? 0
    if (start + T > c.maxPositionEmbeddings)
      throw new ModelError(`sequence of ${start + T} positions exceeds max_position_embeddings ${c.maxPositionEmbeddings}`)
    const training = opts.training ?? false
    const S = start + T
    const rep = c.numHeads / c.numKvHeads
    const { cos, sin } = ropeTables(c.ropeTheta, c.headDim, start, T) // (T, hd)
    const fullMask = causalMask(T, S, start, rep, null) // (rep·T, S)
    const windowed = c.slidingWindow !== null && c.slidingWindow < S
    return {
      B,
      T,
      N: B * T,
      H: c.hiddenSize,
      S,
      start,
      training,
      rng: opts.rng,
      capacityFactor: opts.capacityFactor !== undefined ? opts.capacityFactor : this.capacityFactor(training),
      w: opts.weights ?? this.weightSource,
      ids: Int32Array.from(inputIds.flat()),
      valid: opts.lengths ? validMask(opts.lengths, B, T) : undefined,
      cos,
      sin,
      fullMask,
      windowMask: windowed ? causalMask(T, S, start, rep, c.slidingWindow) : fullMask,
      cache: opts.cache,
      keys: [],
      values: [],
    }
  }

  /**
   * Decoder layer i on x (N, H): attention, then the dense or sparse MLP, each with its residual.
   * A sparse layer reads its router scores back (yields) unless `replay` gives its routing.
   */
  *layerSteps(i: number, x: tf.Tensor2D, ctx: LayerContext, replay?: RoutingReplay): Steps<{ x: tf.Tensor2D; routing?: LayerRouting }> {
    const c = this.config
    const { B, T, N, training, rng, w } = ctx
    const p = w.get
    const nh = c.numHeads
    const nkv = c.numKvHeads
    const hd = c.headDim
    const rep = nh / nkv
    const hiddenDrop = (t: tf.Tensor2D): tf.Tensor2D => (training && c.hiddenDropout > 0 ? dropout(t, c.hiddenDropout, needRng(rng)) : t)
    const a = `model.layers.${i}.self_attn`
    // --- attention
    const hIn = rmsNorm(x, p(`model.layers.${i}.input_layernorm.weight`), c.rmsNormEps) // (N, H)
    const bias = (proj: string): string | undefined => (c.qkvBias ? `${a}.${proj}.bias` : undefined)
    let q = w.linear(hIn, `${a}.q_proj.weight`, bias('q_proj')) // (N, nh·hd)
    let k = w.linear(hIn, `${a}.k_proj.weight`, bias('k_proj')) // (N, nkv·hd)
    let v = w.linear(hIn, `${a}.v_proj.weight`, bias('v_proj')) // (N, nkv·hd)
    if (c.qkNorm === 'projection') {
      // OLMoE: over the whole projection, before the head split.
      q = rmsNorm(q, p(`${a}.q_norm.weight`), c.rmsNormEps)
      k = rmsNorm(k, p(`${a}.k_norm.weight`), c.rmsNormEps)
    }
    if (c.clipQkv !== null) {
      q = tf.clipByValue(q, -c.clipQkv, c.clipQkv)
      k = tf.clipByValue(k, -c.clipQkv, c.clipQkv)
      v = tf.clipByValue(v, -c.clipQkv, c.clipQkv)
    }
    let q4 = tf.transpose(tf.reshape(q, [B, T, nh, hd]), [0, 2, 1, 3]) as tf.Tensor4D // (B, nh, T, hd)
    let k4 = tf.transpose(tf.reshape(k, [B, T, nkv, hd]), [0, 2, 1, 3]) as tf.Tensor4D // (B, nkv, T, hd)
    let v4 = tf.transpose(tf.reshape(v, [B, T, nkv, hd]), [0, 2, 1, 3]) as tf.Tensor4D // (B, nkv, T, hd)
    if (c.qkNorm === 'head') {
      // Qwen3-MoE: each head over head_dim, after the split, before RoPE.
      q4 = rmsNorm(q4, p(`${a}.q_norm.weight`), c.rmsNormEps) // (B, nh, T, hd)
      k4 = rmsNorm(k4, p(`${a}.k_norm.weight`), c.rmsNormEps) // (B, nkv, T, hd)
    }
    q4 = applyRope(q4, ctx.cos, ctx.sin)
    k4 = applyRope(k4, ctx.cos, ctx.sin)
    if (ctx.cache) {
      k4 = tf.concat([ctx.cache.keys[i], k4], 2) as tf.Tensor4D // (B, nkv, S, hd)
      v4 = tf.concat([ctx.cache.values[i], v4], 2) as tf.Tensor4D // (B, nkv, S, hd)
    }
    ctx.keys[i] = k4
    ctx.values[i] = v4
    // Grouped-query attention without copying keys: query heads of one kv head are stacked
    // along the rows (head h = kv·rep + r), which is HF's repeat_kv order.
    const qg = tf.reshape(q4, [B, nkv, rep * T, hd]) // (B, nkv, rep·T, hd)
    let attn = maskedSoftmax(mm(qg, k4, true), 1 / Math.sqrt(hd), i >= c.maxWindowLayers ? ctx.windowMask : ctx.fullMask) // (B, nkv, rep·T, S)
    if (training && c.attentionDropout > 0) attn = dropout(attn, c.attentionDropout, needRng(rng))
    const attnOut = tf.reshape(mm(attn, v4), [B, nh, T, hd]) // (B, nh, T, hd)
    const merged = tf.reshape(tf.transpose(attnOut, [0, 2, 1, 3]), [N, nh * hd]) // (N, nh·hd)
    x = tf.add(x, hiddenDrop(w.linear(merged as tf.Tensor2D, `${a}.o_proj.weight`, c.oBias ? `${a}.o_proj.bias` : undefined))) // (N, H)

    // --- MLP: sparse MoE block or dense SwiGLU
    const hPost = rmsNorm(x, p(`model.layers.${i}.post_attention_layernorm.weight`), c.rmsNormEps) // (N, H)
    let mlpOut: tf.Tensor2D
    let routing: LayerRouting | undefined
    if (isSparseLayer(c, i)) {
      const r = yield* moeBlockSteps(c, i, w, hPost, {
        training,
        capacityFactor: ctx.capacityFactor,
        rng,
        tokenIds: ctx.ids,
        valid: ctx.valid,
        replay,
      })
      routing = r.routing
      w.afterMoe?.(i, hPost, r.routing.decision.counts)
      mlpOut = r.out
    } else {
      const m = `model.layers.${i}.mlp`
      mlpOut = swiglu(hPost, w, [`${m}.gate_proj.weight`, `${m}.up_proj.weight`, `${m}.down_proj.weight`])
    }
    return { x: tf.add(x, hiddenDrop(mlpOut)) as tf.Tensor2D, routing } // (N, H)
  }

  /** Final norm and lm_head: x (N, H) → logits (B, T, V), or (B, 1, V) for the last position only. */
  head(x: tf.Tensor2D, B: number, T: number, lastOnly: boolean, w: Weights = this.weightSource): tf.Tensor3D {
    const c = this.config
    const H = c.hiddenSize
    let hFinal = rmsNorm(x, w.get('model.norm.weight'), c.rmsNormEps) // (N, H)
    let rows = T
    if (lastOnly && T > 1) {
      hFinal = tf.reshape(tf.slice(tf.reshape(hFinal, [B, T, H]), [0, T - 1, 0], [B, 1, H]), [B, H]) // (B, H)
      rows = 1
    }
    const name = c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'
    return tf.reshape(w.linear(hFinal, name), [B, rows, c.vocabSize]) as tf.Tensor3D // (B, T, V)
  }

  /** Weights as float32 arrays by hub name (for saving and tests). */
  weights(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>()
    for (const [name, v] of this.params) out.set(name, v.dataSync() as Float32Array)
    return out
  }

  dispose(): void {
    if (this.disposed) return
    this.paging?.cache.dispose()
    for (const v of this.params.values()) v.dispose()
    this.disposed = true
  }
}

function needRng(rng: Rng | undefined): Rng {
  if (!rng) throw new ModelError('training-mode dropout needs a seeded rng (ForwardOptions.rng)')
  return rng
}
