/**
 * The training objective and its gradients:
 *   loss = CE + routerAuxLossCoef · load-balancing + routerZLossCoef · z-loss
 * (HF's returned loss when the z coefficient is 0, which is the HF families' default).
 */
import * as tf from '@tensorflow/tfjs'
import type { MoeModel, ForwardOptions } from './model'
import type { LayerRouting } from './moe'
import { causalLmLoss, loadBalancingLoss, routerZLoss } from './losses'

export interface Batch {
  inputIds: number[][]
  /** HF convention: same shape as inputIds, shifted inside the loss, -100 ignored. */
  labels: number[][]
  /** Real (non-padding) tokens in the batch, for throughput; default B·T. */
  tokens?: number
}

export interface LossParts {
  loss: number
  ce: number
  aux: number
  z: number
  targets: number
  /** Fraction of (token, expert) assignments dropped by capacity, over all sparse layers. */
  droppedFraction: number
}

export interface ObjectiveTensors {
  loss: tf.Scalar
  ce: tf.Scalar
  aux: tf.Scalar
  z: tf.Scalar
  targets: number
  logits: tf.Tensor3D
  routing: LayerRouting[]
}

/** The forward pass and every loss term, as tensors (call inside tidy or a gradient function). */
export function objective(model: MoeModel, batch: Batch, opts: ForwardOptions = {}): ObjectiveTensors {
  const c = model.config
  const f = model.forward(batch.inputIds, opts)
  const { loss: ce, targets } = causalLmLoss(f.logits, batch.labels)
  const aux = loadBalancingLoss(f.routing)
  const z = routerZLoss(f.routing)
  let loss = tf.add(ce, tf.mul(aux, c.routerAuxLossCoef)) as tf.Scalar
  if (c.routerZLossCoef > 0) loss = tf.add(loss, tf.mul(z, c.routerZLossCoef)) as tf.Scalar
  return { loss, ce, aux, z, targets, logits: f.logits, routing: f.routing }
}

export function droppedFraction(routing: LayerRouting[]): number {
  let dropped = 0
  let total = 0
  for (const r of routing) {
    dropped += r.decision.dropped
    total += r.decision.N * r.decision.k
  }
  return total ? dropped / total : 0
}

export interface GradResult {
  parts: LossParts
  /** Gradient of the loss for every trainable parameter, by hub name (zeros where unused). */
  grads: Map<string, tf.Tensor>
}

/** Per sparse layer: tokens routed to each expert (kept assignments) and the mean router entropy. */
export interface RoutingStats {
  layer: number
  counts: number[]
  entropy: number
  dropped: number
  tokens: number
}

export function routingStats(routing: LayerRouting[]): RoutingStats[] {
  return routing.map((r) => ({
    layer: r.layer,
    counts: Array.from(r.decision.counts),
    entropy: r.entropy,
    dropped: r.decision.dropped,
    tokens: r.decision.N,
  }))
}

/**
 * Loss and gradients for the given trainable variables (default: every model parameter), keyed by
 * name. The returned gradient tensors are the caller's to dispose (disposeGrads).
 */
export function lossAndGrads(
  model: MoeModel,
  batch: Batch,
  opts: ForwardOptions = {},
  trainable?: Map<string, tf.Variable>,
): GradResult & { routing: RoutingStats[] } {
  const vars: tf.Variable[] = []
  const hubName = new Map<string, string>()
  for (const [name, v] of trainable ?? model.params) {
    vars.push(v)
    hubName.set(v.name, name)
  }
  let parts: LossParts | undefined
  let stats: RoutingStats[] = []
  const { value, grads } = tf.variableGrads(() => {
    const o = objective(model, batch, opts)
    const [ce, aux, z] = [o.ce, o.aux, o.z].map((t) => t.dataSync()[0])
    parts = { loss: 0, ce, aux, z, targets: o.targets, droppedFraction: droppedFraction(o.routing) }
    stats = routingStats(o.routing)
    return o.loss
  }, vars)
  parts!.loss = value.dataSync()[0]
  value.dispose()
  const out = new Map<string, tf.Tensor>()
  for (const v of vars) {
    const g = grads[v.name]
    out.set(hubName.get(v.name)!, g ?? tf.zerosLike(v))
  }
  return { parts: parts!, grads: out, routing: stats }
}

export function disposeGrads(grads: Map<string, tf.Tensor>): void {
  for (const g of grads.values()) g.dispose()
}
