/**
 * The sparse MoE block: router, routing weights, dispatch to SwiGLU experts, combine, and the
 * qwen2_moe shared expert. Returns the router logits and choices; the caller computes the
 * auxiliary losses from them (no hidden global state).
 */
import * as tf from '@tensorflow/tfjs'
import type { MoeConfig } from '../../shared/modelConfig'
import { expertProjNames, moePrefix } from '../../shared/modelConfig'
import { decideRouting, selectionMask, type RoutingDecision } from './router'
import { combineRows, dropout, permuteRows, Rng, swiglu, type Weights } from './ops'
import { groupedSwiglu, type ExpertProjections, type Projection } from './wasmExperts'

export interface LayerRouting {
  /** Decoder-layer index. */
  layer: number
  /** (N, E) raw router (gate) output: no softmax, no noise. */
  routerLogits: tf.Tensor2D
  /** (N, E) routing weights that multiply expert outputs (0 for unchosen experts). */
  gates: tf.Tensor2D
  /** (N, E) noise scale softplus(x·W_noise) of the noisy top-k router while training, for the load loss. */
  noiseStd?: tf.Tensor2D
  /** (N, E) the noisy logits the choice was made on (noisy top-k, training). */
  noisyLogits?: tf.Tensor2D
  decision: RoutingDecision
  /** (N, k) routing weights of the chosen experts, as numbers, in the order of decision.topk. */
  weights: Float32Array
  /** Mean over tokens of the entropy (nats) of the router's softmax (hash routing: ln k). */
  entropy: number
  /** A learned router (false for hash routing: no router weights read, no aux or z-loss). */
  learned: boolean
}

/** Mean row entropy (nats) of (N, E) probabilities. */
function meanEntropy(probs: ArrayLike<number>, N: number, E: number): number {
  let total = 0
  for (let i = 0; i < N * E; i++) {
    const q = probs[i]
    if (q > 0) total -= q * Math.log(q)
  }
  return N ? total / N : 0
}

export interface MoeBlockOptions {
  training: boolean
  /** Capacity factor in force for this forward (null = dropless). */
  capacityFactor: number | null
  rng?: Rng
  /** Token ids of the rows (hash routing). */
  tokenIds: Int32Array
  /** (N) 1 for a real token, 0 for padding (not routed); default: all real. */
  valid?: Uint8Array
  /**
   * The routing of this layer as an earlier forward decided it (a layer recomputed for its
   * gradient): nothing is read back from the device, and the same experts are used.
   */
  replay?: RoutingReplay
}

/** What a recomputation needs to route exactly as before (host data only). */
export interface RoutingReplay {
  decision: RoutingDecision
  weights: Float32Array
  entropy: number
}

function chosenWeights(c: MoeConfig, d: RoutingDecision, probs: Float32Array | null, rankLogits: ArrayLike<number> | null): Float32Array {
  const { N, E, k, topk } = d
  const w = new Float32Array(N * k)
  for (let n = 0; n < N; n++) {
    if (c.router.type === 'hash') {
      for (let j = 0; j < k; j++) w[n * k + j] = 1 / k
      continue
    }
    if (c.router.type === 'noisy_topk') {
      // softmax over the kept logits only
      let m = -Infinity
      for (let j = 0; j < k; j++) m = Math.max(m, rankLogits![n * E + topk[n * k + j]])
      let s = 0
      for (let j = 0; j < k; j++) s += w[n * k + j] = Math.exp(rankLogits![n * E + topk[n * k + j]] - m)
      for (let j = 0; j < k; j++) w[n * k + j] /= s
      continue
    }
    let s = 0
    for (let j = 0; j < k; j++) s += w[n * k + j] = probs![n * E + topk[n * k + j]]
    if (c.router.type === 'softmax_topk' && c.normTopkProb) for (let j = 0; j < k; j++) w[n * k + j] /= s
  }
  return w
}

/** A tensor the step generators need read back to the host (synchronously or not). */
export type ReadRequest = tf.Tensor
export type HostData = Float32Array | Int32Array | Uint8Array
export type Steps<T> = Generator<ReadRequest, T, HostData>

/** Runs step generators to completion reading synchronously (cpu, wasm, tfjs-node). */
export function runSync<T>(steps: Steps<T>): T {
  let r = steps.next()
  while (!r.done) r = steps.next(r.value.dataSync() as HostData)
  return r.value
}

/** Runs step generators to completion reading asynchronously (webgpu, which cannot read synchronously). */
export async function runAsync<T>(steps: Steps<T>): Promise<T> {
  let r = steps.next()
  while (!r.done) r = steps.next((await r.value.data()) as HostData)
  return r.value
}

/**
 * Forward of the sparse block of layer i on h (N, H), already normalised, as steps: the router
 * scores are read back once (yielded) to decide the routing, unless `opts.replay` gives it.
 * Returns the block output (N, H) and the layer's routing.
 */
export function* moeBlockSteps(
  c: MoeConfig,
  layer: number,
  w: Weights,
  h: tf.Tensor2D,
  opts: MoeBlockOptions,
): Steps<{ out: tf.Tensor2D; routing: LayerRouting }> {
  const [N, H] = h.shape
  const E = c.numExperts
  const k = c.topK
  const prefix = moePrefix(c, layer)
  const type = c.router.type

  if (opts.training && c.router.jitter > 0) {
    // HF Mixtral: the jittered hidden state feeds both the router and the experts.
    const rng = requireRng(opts)
    h = tf.mul(h, tf.tensor2d(rng.uniformArray(N * H, 1 - c.router.jitter, 1 + c.router.jitter), [N, H]))
  }

  // Token drop (training only): a dropped token is routed nowhere, as padding is. Drawn on every
  // pass, replayed ones too, so a recomputed layer consumes the same random stream.
  let valid = opts.valid
  let tokenDropped = 0
  if (opts.training && c.tokenDrop > 0) {
    const u = requireRng(opts).uniformArray(N, 0, 1)
    const kept = new Uint8Array(N)
    for (let n = 0; n < N; n++) {
      const real = valid ? valid[n] : 1
      kept[n] = real && u[n] >= c.tokenDrop ? 1 : 0
      if (real && !kept[n]) tokenDropped++
    }
    valid = kept
  }

  // A hash-routed layer has no learned router: its gate.weight (kept so the checkpoint loads in
  // transformers) is never read, and it takes no load-balancing or z-loss.
  const hash = type === 'hash'
  const routerLogits = hash ? (tf.zeros([N, E]) as tf.Tensor2D) : w.linear(h, `${prefix}.gate.weight`) // (N, E)
  const probs = tf.softmax(routerLogits) // (N, E), fp32

  let noiseStd: tf.Tensor2D | undefined
  let noisyLogits: tf.Tensor2D | undefined
  let decision: RoutingDecision
  let weights: Float32Array
  let entropy: number
  if (type === 'noisy_topk' && opts.training) {
    noiseStd = tf.softplus(w.linear(h, `${prefix}.noise_gate.weight`)) as tf.Tensor2D // (N, E)
    const eps = tf.tensor2d(requireRng(opts).normalArray(N * E), [N, E])
    noisyLogits = tf.add(routerLogits, tf.mul(eps, noiseStd)) as tf.Tensor2D // (N, E)
  }
  if (opts.replay) ({ decision, weights, entropy } = opts.replay)
  else {
    // One read: the scores the router type ranks by, and the probabilities (entropy, weights).
    const probsData = hash ? new Float32Array(0) : ((yield probs) as Float32Array)
    const rankScores: Float32Array | null =
      type === 'noisy_topk' ? ((noisyLogits ? yield noisyLogits : yield routerLogits) as Float32Array) : type === 'hash' ? null : probsData
    decision = decideRouting(rankScores, N, E, {
      type,
      k,
      capacityFactor: opts.capacityFactor,
      tokenIds: opts.tokenIds,
      hashSeed: c.router.hashSeed,
      valid,
    })
    // Token-dropped tokens are dropped tokens (padding is not).
    decision.droppedTokens += tokenDropped
    decision.dropped += tokenDropped * k
    weights = chosenWeights(c, decision, type === 'noisy_topk' || type === 'hash' ? null : probsData, rankScores)
    // Hash routing spreads each token evenly over its k experts.
    entropy = hash ? Math.log(k) : meanEntropy(probsData, N, E)
  }
  const mask = tf.tensor2d(selectionMask(decision), [N, E]) // (N, E)

  let gates: tf.Tensor2D // (N, E)
  if (type === 'hash') gates = tf.div(mask, k) as tf.Tensor2D
  else if (type === 'noisy_topk') {
    const z = noisyLogits ?? routerLogits
    const ex = tf.mul(tf.exp(tf.sub(z, tf.max(z, -1, true))), mask) // (N, E)
    gates = tf.div(ex, tf.sum(ex, -1, true)) as tf.Tensor2D
  } else {
    const chosen = tf.mul(probs, mask) as tf.Tensor2D // (N, E)
    gates = type === 'softmax_topk' && c.normTopkProb ? (tf.div(chosen, tf.sum(chosen, -1, true)) as tf.Tensor2D) : chosen
  }

  const routing: LayerRouting = { layer, routerLogits, gates, noiseStd, noisyLogits, decision, weights, entropy, learned: !hash }

  let out: tf.Tensor2D
  const A = decision.index.length
  if (A === 0) out = tf.zeros([N, H])
  else {
    const xs = permuteRows(h, decision.index, decision.inverses) // (A, H)
    const drop = opts.training && c.expertDropout > 0 ? (t: tf.Tensor2D) => dropout(t, c.expertDropout, requireRng(opts)) : undefined
    const used = Array.from(decision.counts).flatMap((cnt, e) => (cnt > 0 ? [e] : []))
    // Expert dropout draws its mask in each expert's row order: that path keeps it.
    const grouped = drop ? null : groupedExperts(c, layer, w, used)
    let ys: tf.Tensor2D // (A, H)
    if (grouped)
      ys = groupedSwiglu(
        xs,
        used.map((e) => decision.counts[e]),
        grouped,
      )
    else {
      // One split into the experts' rows: its gradient is one concat (a slice per expert would
      // pad each expert's gradient to all A rows and add them up).
      const parts =
        used.length === 1
          ? [xs]
          : (tf.split(
              xs,
              used.map((e) => decision.counts[e]),
            ) as tf.Tensor2D[])
      const outs = used.map((e, i) => swiglu(parts[i], w, expertProjNames(c, layer, e), drop)) // (cnt, H) each
      ys = outs.length === 1 ? outs[0] : tf.concat(outs, 0)
    }
    out = combineRows(ys, gates, decision) // (N, H)
  }

  if (c.sharedExpertIntermediateSize > 0) {
    const se = `${prefix}.shared_expert`
    const s = swiglu(h, w, [`${se}.gate_proj.weight`, `${se}.up_proj.weight`, `${se}.down_proj.weight`]) // (N, H)
    const sg = tf.sigmoid(w.linear(h, `${prefix}.shared_expert_gate.weight`)) // (N, 1)
    out = tf.add(out, tf.mul(sg, s)) as tf.Tensor2D
  }
  return { out, routing }
}

/** moeBlockSteps run with synchronous reads. */
export function moeBlock(
  c: MoeConfig,
  layer: number,
  w: Weights,
  h: tf.Tensor2D,
  opts: MoeBlockOptions,
): { out: tf.Tensor2D; routing: LayerRouting } {
  return runSync(moeBlockSteps(c, layer, w, h, opts))
}

/**
 * The [gate, up, down] matrices of the used experts, with their LoRA adapters, where the wasm
 * grouped kernels can multiply them directly (every one resident, no adapter dropout in force, a
 * projection adapted on every expert or on none); null elsewhere (other backends, paged experts),
 * where each expert is computed with the weight source's own linear.
 */
function groupedExperts(c: MoeConfig, layer: number, w: Weights, used: number[]): ExpertProjections[] | null {
  if (tf.getBackend() !== 'wasm' || !w.matrix || used.length < 2) return null
  const out: ExpertProjections[] = []
  for (const e of used) {
    const projections: Projection[] = []
    for (const n of expertProjNames(c, layer, e)) {
      const m = w.matrix(n)
      const lr = m ? undefined : w.lowRank?.(n)
      if (!m && !lr) return null
      projections.push(m ? { w: m } : { w: lr!.base, lora: lr })
    }
    out.push(projections as unknown as ExpertProjections)
  }
  // One projection of all experts is one kernel: adapters on all of them (one scale) or none.
  for (let p = 0; p < 3; p++) {
    const adapted = out.filter((x) => x[p].lora)
    if (adapted.length > 0 && (adapted.length < out.length || adapted.some((x) => x[p].lora!.scale !== adapted[0][p].lora!.scale)))
      return null
  }
  return out
}

function requireRng(opts: MoeBlockOptions): Rng {
  if (!opts.rng) throw new Error('training with router noise, jitter or expert dropout needs a seeded rng')
  return opts.rng
}
