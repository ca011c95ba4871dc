/**
 * Losses, each a pure function of logits, router logits and routing choices.
 */
import * as tf from '@tensorflow/tfjs'
import type { LayerRouting } from './moe'
import { nativeMatMul } from './nativeMatMul'
import { sumInOrder } from './ops'

export const IGNORE_INDEX = -100

/**
 * Causal-LM cross-entropy as HF's ForCausalLMLoss: logits[:, t] predicts labels[:, t+1]; mean
 * over targets whose label is not -100. Returns 0 (not NaN) when no position has a target.
 */
export function causalLmLoss(logits: tf.Tensor3D, labels: number[][]): { loss: tf.Scalar; targets: number } {
  const [B, T, V] = logits.shape
  if (labels.length !== B || labels.some((r) => r.length !== T)) throw new RangeError(`labels must be [${B}, ${T}] like input_ids`)
  if (T < 2) return { loss: tf.scalar(0), targets: 0 }
  // (row of logits, target id) of every position with a target: row b·T + t predicts labels[b][t + 1]
  const rows: number[] = []
  const ys: number[] = []
  for (let b = 0; b < B; b++)
    for (let t = 0; t < T - 1; t++) {
      const y = labels[b][t + 1]
      if (y === IGNORE_INDEX) continue
      if (!(Number.isInteger(y) && y >= 0 && y < V))
        throw new RangeError(`labels[${b}][${t + 1}] = ${y} is not a token id below ${V} or -100`)
      rows.push(b * T + t)
      ys.push(y)
    }
  const targets = rows.length
  if (targets === 0) return { loss: tf.scalar(0), targets: 0 }
  const backend = tf.getBackend()
  if (backend === 'wasm' || backend === 'cpu')
    return { loss: hostCrossEntropy(logits, Int32Array.from(rows), Int32Array.from(ys)), targets }
  const oneHot = new Float32Array(B * (T - 1) * V)
  rows.forEach((r, i) => (oneHot[(r - Math.floor(r / T)) * V + ys[i]] = 1))
  const shifted = tf.slice(logits, [0, 0, 0], [B, T - 1, V]) // (B, T-1, V)
  const logp = tf.logSoftmax(shifted) // (B, T-1, V)
  const picked = tf.sum(tf.mul(logp, tf.tensor3d(oneHot, [B, T - 1, V])))
  return { loss: tf.div(tf.neg(picked), targets) as tf.Scalar, targets }
}

/**
 * Mean over `rows` of logsumexp(logits[row]) - logits[row][y], and its gradient (softmax -
 * one-hot on those rows, divided by their count; zero elsewhere). On wasm and cpu this replaces a
 * slice, a log-softmax, a logits-sized one-hot tensor built in JavaScript and their gradients
 * (about 16 passes over the logits, two of them exp) with max, exp, sum forward and one multiply
 * backward; the target logits are read where they live, the one-hot is subtracted in place.
 * Where the native kernels are loaded (wasm, nativeMatMul.ts) the forward is one native softmax
 * instead (TF.js's wasm exp is scalar: 95 ms for 2048 × 4096 logits, the native softmax ~35).
 */
function hostCrossEntropy(logits: tf.Tensor3D, rows: Int32Array, ys: Int32Array): tf.Scalar {
  const [B, T, V] = logits.shape
  const n = rows.length
  const wasm = tf.getBackend() === 'wasm'
  const native = wasm ? nativeMatMul() : null
  const heap = (t: tf.Tensor): Float32Array =>
    (tf.backend() as unknown as { typedArrayFromHeap(t: tf.Tensor): Float32Array }).typedArrayFromHeap(t)
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => {
    // e: each row's exp(x − max), divided (native) or not (sums) by its sum
    let e: tf.Tensor
    let sums: Float32Array | null = null
    let total = 0
    if (native) {
      e = tf.softmax(tf.reshape(x, [B * T, V])) // the native kernel (wasmKernels.ts)
      const data = heap(x)
      const probs = heap(e)
      for (let i = 0; i < n; i++) total += nativeTokenLoss(probs, data, rows[i], ys[i], V)
    } else {
      const x2 = tf.reshape(x, [B * T, V])
      const m = tf.max(x2, 1, true) // (BT, 1)
      e = tf.exp(tf.sub(x2, m)) // (BT, V)
      sums = tf.sum(e, 1, true).dataSync() as Float32Array // (BT)
      const maxes = m.dataSync() as Float32Array
      const data = wasm ? heap(x) : (x.dataSync() as Float32Array)
      for (let i = 0; i < n; i++) total += maxes[rows[i]] + Math.log(sums[rows[i]]) - data[rows[i] * V + ys[i]]
    }
    save([e])
    const gradFunc = (dy: tf.Tensor, [es]: tf.Tensor[]): tf.Tensor => {
      const scale = (dy.dataSync()[0] as number) / n
      const rowScale = new Float32Array(B * T)
      for (let i = 0; i < n; i++) rowScale[rows[i]] = sums ? scale / sums[rows[i]] : scale
      const g = tf.mul(es, tf.tensor2d(rowScale, [B * T, 1])) // (BT, V)
      if (wasm) {
        const out = heap(g) // g is this gradient's own tensor: the one-hot goes in place
        for (let i = 0; i < n; i++) out[rows[i] * V + ys[i]] -= scale
        return tf.reshape(g, [B, T, V])
      }
      const out = g.dataSync() as Float32Array
      for (let i = 0; i < n; i++) out[rows[i] * V + ys[i]] -= scale
      return tf.tensor3d(out, [B, T, V])
    }
    return { value: tf.scalar(total / n), gradFunc }
  }) as unknown as Parameters<typeof tf.customGrad>[0])
  return f(logits) as tf.Scalar
}

/**
 * −log p(y) of one row from its softmax; where p(y) is below float32's normal range (a loss
 * above ~69 nats) it has lost its digits, so that row's logsumexp is summed here instead.
 */
export function nativeTokenLoss(probs: Float32Array, logits: Float32Array, row: number, y: number, V: number): number {
  const p = probs[row * V + y]
  if (p >= 1e-30) return -Math.log(p)
  let m = -Infinity
  for (let j = row * V; j < row * V + V; j++) m = Math.max(m, logits[j])
  let s = 0
  for (let j = row * V; j < row * V + V; j++) s += Math.exp(logits[j] - m)
  return m + Math.log(s) - logits[row * V + y]
}

/**
 * The Switch / HF load-balancing loss, exactly as transformers' load_balancing_loss_func with
 * attention_mask=None: router logits of all sparse layers concatenated along tokens;
 * E · Σ_e f_e · P_e, with f_e the fraction of (token, slot) choices that picked e (summed over the
 * k slots, as HF's (k, E) tokens_per_expert summed) and P_e the mean router probability.
 * The choices carry no gradient; P does.
 */
export function loadBalancingLoss(all: LayerRouting[]): tf.Scalar {
  const routing = all.filter((r) => r.learned)
  if (routing.length === 0) return tf.scalar(0)
  const E = routing[0].decision.E
  const logits = tf.concat(
    routing.map((r) => r.routerLogits),
    0,
  ) // (L·N, E)
  const rows = logits.shape[0]
  const f = new Float32Array(E)
  for (const r of routing) for (const e of r.decision.topk) f[e] += 1
  for (let e = 0; e < E; e++) f[e] /= rows
  const P = tf.mean(tf.softmax(logits), 0) // (E)
  return tf.mul(tf.sum(tf.mul(P, tf.tensor1d(f))), E) as tf.Scalar
}

/** ST-MoE router z-loss: mean over router rows (all sparse layers) of logsumexp(logits)². */
export function routerZLoss(all: LayerRouting[]): tf.Scalar {
  const routing = all.filter((r) => r.learned)
  if (routing.length === 0) return tf.scalar(0)
  const logits = tf.concat(
    routing.map((r) => r.routerLogits),
    0,
  ) // (L·N, E)
  return tf.mean(tf.square(tf.logSumExp(logits, -1))) as tf.Scalar
}

/**
 * One sparse layer's share of loadBalancingLoss, for a layer-by-layer backward: the loss is
 * E · Σ_e f_e · P_e with P_e a mean over the rows of every layer, so it is a sum over layers of
 * (E / rows) · Σ_e f_e · Σ_{n in the layer} p_ne, where `f` (E) are the choice fractions over all
 * layers (no gradient) and `rows` the router rows of all layers.
 */
export function loadBalancingTerm(routerLogits: tf.Tensor2D, f: Float32Array, rows: number): tf.Scalar {
  const E = f.length
  const colSums = tf.sum(tf.softmax(routerLogits), 0) // (E)
  return tf.mul(tf.sum(tf.mul(colSums, tf.tensor1d(f))), E / rows) as tf.Scalar
}

/** One sparse layer's share of routerZLoss (a mean over the rows of every layer). */
export function routerZTerm(routerLogits: tf.Tensor2D, rows: number): tf.Scalar {
  return tf.div(tf.sum(tf.square(tf.logSumExp(routerLogits, -1))), rows) as tf.Scalar
}

/** Choice fractions f (E) over the router rows of every layer, and the row count, as loadBalancingLoss counts them. */
export function choiceFractions(all: { learned: boolean; decision: { topk: Int32Array; N: number; E: number } }[]): {
  f: Float32Array
  rows: number
} {
  const routing = all.filter((r) => r.learned)
  const E = routing[0]?.decision.E ?? 0
  const f = new Float32Array(E)
  let rows = 0
  for (const r of routing) {
    for (const e of r.decision.topk) f[e] += 1
    rows += r.decision.N
  }
  for (let e = 0; e < E; e++) f[e] /= Math.max(1, rows)
  return { f, rows }
}

/** Squared coefficient of variation of a vector: var / mean² (population variance, as Shazeer 2017 uses). */
export function cvSquared(x: tf.Tensor1D): tf.Scalar {
  const mean = tf.mean(x)
  const variance = tf.mean(tf.square(tf.sub(x, mean)))
  return tf.div(variance, tf.add(tf.square(mean), 1e-10)) as tf.Scalar
}

/** Sparse layers with a learned router: a hash-routed layer has nothing to balance. */
function learnedLayers(routing: LayerRouting[]): LayerRouting[] {
  return routing.filter((r) => r.learned)
}

/** One layer's importance loss: CV² of Σ_tokens gates per expert. */
export function importanceTerm(gates: tf.Tensor2D): tf.Scalar {
  return cvSquared(tf.sum(gates, 0) as tf.Tensor1D)
}

/**
 * Shazeer et al. 2017 importance loss: CV² of Σ_tokens gates per expert, averaged over the sparse
 * layers with a learned router (hash-routed layers take none).
 */
export function importanceLoss(routing: LayerRouting[]): tf.Scalar {
  const learned = learnedLayers(routing)
  if (learned.length === 0) return tf.scalar(0)
  return tf.div(sumInOrder(learned.map((r) => importanceTerm(r.gates))), learned.length) as tf.Scalar
}

/** Whether a layer's load loss takes the smooth (normal-CDF) estimator: the noisy top-k router while training. */
export function smoothLoad(r: Pick<LayerRouting, 'noiseStd' | 'noisyLogits' | 'decision'>): boolean {
  return r.noiseStd !== undefined && r.noisyLogits !== undefined && r.decision.k < r.decision.E
}

/**
 * The thresholds of the smooth load estimator, from the noisy logits (N, E) as host data: for
 * (n, e) the k-th largest noisy logit among the other experts, which is the (k+1)-th largest of
 * the row when e is in the row's top k and the k-th otherwise.
 */
export function loadThresholds(noisy: ArrayLike<number>, N: number, E: number, k: number): Float32Array {
  const out = new Float32Array(N * E)
  for (let n = 0; n < N; n++) {
    const row = Array.from({ length: E }, (_, e) => noisy[n * E + e]).sort((a, b) => b - a)
    const kth = row[k - 1]
    const k1th = row[k]
    for (let e = 0; e < E; e++) out[n * E + e] = noisy[n * E + e] >= kth ? k1th : kth
  }
  return out
}

/**
 * One layer's load loss. Smooth (the noisy top-k router while training, `thresholds` from
 * loadThresholds): CV² of Σ_n Φ((clean_ne − threshold_ne) / noise_ne), which has a gradient for
 * the router and the noise weights. Otherwise CV² of the assignment counts (no gradient).
 */
export function loadTerm(r: Pick<LayerRouting, 'routerLogits' | 'noiseStd' | 'decision'>, thresholds?: Float32Array): tf.Scalar {
  const { N, E } = r.decision
  if (!r.noiseStd || !thresholds) {
    const counts = new Float32Array(E)
    for (const e of r.decision.topk) counts[e]++
    return cvSquared(tf.tensor1d(counts))
  }
  const z = tf.div(tf.sub(r.routerLogits, tf.tensor2d(thresholds, [N, E])), tf.add(r.noiseStd, 1e-9)) // (N, E)
  const prob = tf.mul(0.5, tf.add(1, tf.erf(tf.div(z, Math.SQRT2)))) // Φ(z), (N, E)
  return cvSquared(tf.sum(prob, 0) as tf.Tensor1D)
}

/**
 * Shazeer et al. 2017 load loss: CV² of the expected number of tokens per expert, averaged over
 * the sparse layers with a learned router. For the noisy top-k router while training, the smooth
 * estimator P(x, e) = Φ((clean_e − threshold_e) / noise_e), threshold the k-th largest noisy logit
 * among the other experts; otherwise the assignment counts (no gradient). `thresholds` by layer,
 * when the caller read the noisy logits already (asynchronously); else they are read here (dataSync).
 */
export function loadLoss(routing: LayerRouting[], thresholds?: Map<number, Float32Array>): tf.Scalar {
  const learned = learnedLayers(routing)
  if (learned.length === 0) return tf.scalar(0)
  const per = learned.map((r) => {
    const { N, E, k } = r.decision
    const t = smoothLoad(r) ? (thresholds?.get(r.layer) ?? loadThresholds(r.noisyLogits!.dataSync(), N, E, k)) : undefined
    return loadTerm(r, t)
  })
  return tf.div(sumInOrder(per), learned.length) as tf.Scalar
}

/** The smooth load estimator's thresholds of every layer that takes it, reading the noisy logits asynchronously. */
export async function loadThresholdsAsync(routing: LayerRouting[]): Promise<Map<number, Float32Array>> {
  const out = new Map<number, Float32Array>()
  for (const r of learnedLayers(routing))
    if (smoothLoad(r)) out.set(r.layer, loadThresholds(await r.noisyLogits!.data(), r.decision.N, r.decision.E, r.decision.k))
  return out
}
