/**
 * The training objective and its gradients:
 *   loss = CE + routerAuxLossCoef · load-balancing + routerZLossCoef · z-loss
 *        + routerImportanceLossCoef · importance + routerLoadLossCoef · load   (Shazeer et al. 2017)
 * (HF's returned loss when the z, importance and load coefficients are 0, the HF families' default).
 */
import * as tf from '@tensorflow/tfjs'
import { scopedAsync } from './device'
import type { ForwardOptions, ForwardTrace, MoeModel } from './model'
import type { LayerRouting, RoutingReplay, Steps } from './moe'
import {
  causalLmLoss,
  choiceFractions,
  importanceLoss,
  importanceTerm,
  loadBalancingLoss,
  loadBalancingTerm,
  loadLoss,
  loadTerm,
  loadThresholdsAsync,
  routerZLoss,
  routerZTerm,
} from './losses'
import { embedLookup, Rng, type Weights } from './ops'

export interface Batch {
  inputIds: number[][]
  /** HF convention: same shape as inputIds, shifted inside the loss, -100 ignored. */
  labels: number[][]
  /** Real (non-padding) tokens in the batch, for throughput; default B·T. */
  tokens?: number
  /** Real tokens per row, right padding after them (not routed: no expert capacity taken). */
  lengths?: number[]
}

export interface LossParts {
  loss: number
  ce: number
  aux: number
  z: number
  /** Shazeer et al. 2017 importance and load losses (logged whatever their coefficients). */
  importance: number
  load: number
  targets: number
  /** Fraction of (token, expert) assignments dropped by capacity, over all sparse layers. */
  droppedFraction: number
}

export interface ObjectiveTensors {
  loss: tf.Scalar
  ce: tf.Scalar
  aux: tf.Scalar
  z: tf.Scalar
  importance: tf.Scalar
  load: tf.Scalar
  targets: number
  logits: tf.Tensor3D
  routing: LayerRouting[]
}

/** The forward pass and every loss term, as tensors (call inside tidy or a gradient function). */
export function objective(model: MoeModel, batch: Batch, opts: ForwardOptions = {}): ObjectiveTensors {
  const c = model.config
  const f = model.forward(batch.inputIds, { ...opts, lengths: batch.lengths })
  const { loss: ce, targets } = causalLmLoss(f.logits, batch.labels)
  const aux = loadBalancingLoss(f.routing)
  const z = routerZLoss(f.routing)
  const importance = importanceLoss(f.routing)
  const load = loadLoss(f.routing)
  let loss = tf.add(ce, tf.mul(aux, c.routerAuxLossCoef)) as tf.Scalar
  if (c.routerZLossCoef > 0) loss = tf.add(loss, tf.mul(z, c.routerZLossCoef)) as tf.Scalar
  if (c.routerImportanceLossCoef > 0) loss = tf.add(loss, tf.mul(importance, c.routerImportanceLossCoef)) as tf.Scalar
  if (c.routerLoadLossCoef > 0) loss = tf.add(loss, tf.mul(load, c.routerLoadLossCoef)) as tf.Scalar
  return { loss, ce, aux, z, importance, load, targets, logits: f.logits, routing: f.routing }
}

/** The objective from its parts' values, as objective() adds them up. */
function totalLoss(c: MoeModel['config'], p: Omit<LossParts, 'loss' | 'targets' | 'droppedFraction'>): number {
  let loss = p.ce + c.routerAuxLossCoef * p.aux
  if (c.routerZLossCoef > 0) loss += c.routerZLossCoef * p.z
  if (c.routerImportanceLossCoef > 0) loss += c.routerImportanceLossCoef * p.importance
  if (c.routerLoadLossCoef > 0) loss += c.routerLoadLossCoef * p.load
  return loss
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
  /** Tokens routed to no expert at all (capacity or token drop; padding excluded). */
  droppedTokens: number
  tokens: number
}

export function routingStats(routing: LayerRouting[]): RoutingStats[] {
  return routing.map((r) => ({
    layer: r.layer,
    counts: Array.from(r.decision.counts),
    entropy: r.entropy,
    dropped: r.decision.dropped,
    droppedTokens: r.decision.droppedTokens,
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
    const [ce, aux, z, importance, load] = [o.ce, o.aux, o.z, o.importance, o.load].map((t) => t.dataSync()[0])
    parts = { loss: 0, ce, aux, z, importance, load, targets: o.targets, droppedFraction: droppedFraction(o.routing) }
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

// ---------------------------------------------------------------------------------------------
// Asynchronous reads: every backend, and the only way on webgpu.

/** Loss values of a batch, reading back asynchronously (evaluation). Hold deviceLock. */
export async function objectiveValues(
  model: MoeModel,
  batch: Batch,
  opts: ForwardOptions = {},
): Promise<LossParts & { routing: RoutingStats[] }> {
  return scopedAsync(async () => {
    const c = model.config
    const f = await model.forwardAsync(batch.inputIds, { ...opts, lengths: batch.lengths })
    const { loss: ce, targets } = causalLmLoss(f.logits, batch.labels)
    const aux = loadBalancingLoss(f.routing)
    const z = routerZLoss(f.routing)
    const importance = importanceLoss(f.routing)
    const load = loadLoss(f.routing, await loadThresholdsAsync(f.routing))
    const [ceV, aux_, z_, imp, ld] = await Promise.all([ce, aux, z, importance, load].map(async (t) => (await t.data())[0]))
    const values = { ce: ceV, aux: aux_, z: z_, importance: imp, load: ld }
    return { loss: totalLoss(c, values), ...values, targets, droppedFraction: droppedFraction(f.routing), routing: routingStats(f.routing) }
  })
}

/** The layer a parameter (a hub name or a PEFT adapter name) belongs to; 'head' and 'embed' outside layers. */
export function parameterPlace(name: string): number | 'head' | 'embed' {
  const m = /(?:^|\.)layers\.(\d+)\./.exec(name)
  if (m) return Number(m[1])
  return /embed_tokens/.test(name) ? 'embed' : 'head'
}

/** Runs steps that must not read back (a layer recomputed with its routing replayed). */
function runNoReads<T>(steps: Steps<T>): T {
  const r = steps.next()
  if (!r.done) throw new Error('internal: a recomputed layer asked to read the device')
  return r.value
}

/**
 * Loss and gradients layer by layer, for backends that cannot read back synchronously (webgpu)
 * and for paged models: a forward without a tape (reading the routing asynchronously) keeps each
 * layer's input; the backward then recomputes one layer at a time from its input with its
 * routing replayed, under a gradient of that layer's share of the objective (the upstream
 * gradient's dot product with its output, plus its shares of the load-balancing and z losses).
 * Gradients match lossAndGrads within float rounding. Hold deviceLock; the gradient tensors are
 * the caller's to dispose.
 */
export async function lossAndGradsLayerwise(
  model: MoeModel,
  batch: Batch,
  opts: ForwardOptions = {},
  trainable?: Map<string, tf.Variable>,
): Promise<GradResult & { routing: RoutingStats[] }> {
  const c = model.config
  const engine = tf.engine()
  const vars = trainable ?? model.params
  const places = new Map<number | 'head' | 'embed', [string, tf.Variable][]>()
  for (const [name, v] of vars) {
    const place = parameterPlace(name)
    places.set(place, [...(places.get(place) ?? []), [name, v]])
  }
  const w = opts.weights ?? model.weightSource
  // A recomputation must not tell an expert cache about routing twice.
  const replayWeights: Weights = { get: w.get, linear: w.linear, matrix: w.matrix, lowRank: w.lowRank }
  const B = batch.inputIds.length
  const T = batch.inputIds[0].length
  const L = c.numLayers
  const inputs: tf.Tensor2D[] = []
  const rngStates: (number | undefined)[] = []
  const replays = new Map<number, RoutingReplay>()
  let stats: RoutingStats[] = []
  let shares: { f: Float32Array; rows: number } = { f: new Float32Array(0), rows: 0 }
  // The Shazeer losses are means over the learned sparse layers: each layer's term over their count.
  let thresholds = new Map<number, Float32Array>()
  let learnedLayers = 0
  let parts: LossParts | undefined

  // 1. The forward, keeping each layer's input and routing.
  await scopedAsync(async () => {
    const trace: ForwardTrace = {
      onLayer: (i, x, rng) => {
        inputs[i] = tf.keep(x)
        rngStates[i] = rng?.state
      },
    }
    const f = await model.forwardAsync(batch.inputIds, { ...opts, lengths: batch.lengths, trace })
    for (const r of f.routing) replays.set(r.layer, { decision: r.decision, weights: r.weights, entropy: r.entropy })
    stats = routingStats(f.routing)
    shares = choiceFractions(f.routing)
    thresholds = await loadThresholdsAsync(f.routing)
    learnedLayers = f.routing.filter((r) => r.learned).length
    const aux = loadBalancingLoss(f.routing)
    const z = routerZLoss(f.routing)
    const importance = importanceLoss(f.routing)
    const load = loadLoss(f.routing, thresholds)
    const [auxV, zV, impV, loadV] = await Promise.all([aux, z, importance, load].map(async (t) => (await t.data())[0]))
    parts = { loss: 0, ce: 0, aux: auxV, z: zV, importance: impV, load: loadV, targets: 0, droppedFraction: droppedFraction(f.routing) }
  })

  const grads = new Map<string, tf.Tensor>()
  const add = (name: string, g: tf.Tensor | undefined): void => {
    if (!g) return
    const prev = grads.get(name)
    grads.set(name, tf.keep(prev ? tf.add(prev, g) : g.clone()))
    prev?.dispose()
  }
  let dy: tf.Tensor2D | undefined
  try {
    // 2. The head: cross-entropy and its gradient for the last hidden state and the head's weights.
    const head = places.get('head') ?? []
    const tiedEmbed = c.tieWordEmbeddings ? (places.get('embed') ?? []) : []
    const headVars = [...head, ...tiedEmbed]
    let targets = 0
    const ceTensor = tf.tidy(() => {
      const { value, grads: g } = engine.gradients(
        () => {
          const r = causalLmLoss(model.head(inputs[L], B, T, false, replayWeights), batch.labels)
          targets = r.targets
          return r.loss
        },
        [inputs[L], ...headVars.map(([, v]) => v)],
        undefined,
        true,
      )
      dy = tf.keep(g[0] ?? tf.zerosLike(inputs[L])) as tf.Tensor2D
      headVars.forEach(([name], j) => add(name, g[j + 1]))
      return value
    })
    const ce = (await ceTensor.data())[0]
    ceTensor.dispose()

    // 3. Every layer, last first, recomputed from its input with its routing replayed.
    for (let l = L - 1; l >= 0; l--) {
      const layerVars = places.get(l) ?? []
      const upstream = dy!
      tf.tidy(() => {
        const { grads: g } = engine.gradients(
          () => {
            const state = rngStates[l]
            const ctx = model.context(batch.inputIds, {
              ...opts,
              lengths: batch.lengths,
              weights: replayWeights,
              rng: state === undefined ? undefined : Rng.at(state),
            })
            const r = runNoReads(model.layerSteps(l, inputs[l], ctx, replays.get(l)))
            let obj = tf.sum(tf.mul(r.x, upstream)) as tf.Scalar
            if (r.routing?.learned) {
              obj = tf.add(obj, tf.mul(loadBalancingTerm(r.routing.routerLogits, shares.f, shares.rows), c.routerAuxLossCoef)) as tf.Scalar
              if (c.routerZLossCoef > 0)
                obj = tf.add(obj, tf.mul(routerZTerm(r.routing.routerLogits, shares.rows), c.routerZLossCoef)) as tf.Scalar
              if (c.routerImportanceLossCoef > 0)
                obj = tf.add(obj, tf.mul(importanceTerm(r.routing.gates), c.routerImportanceLossCoef / learnedLayers)) as tf.Scalar
              if (c.routerLoadLossCoef > 0)
                obj = tf.add(obj, tf.mul(loadTerm(r.routing, thresholds.get(l)), c.routerLoadLossCoef / learnedLayers)) as tf.Scalar
            }
            return obj
          },
          [inputs[l], ...layerVars.map(([, v]) => v)],
          undefined,
          true,
        )
        dy = tf.keep(g[0] ?? tf.zerosLike(inputs[l])) as tf.Tensor2D
        layerVars.forEach(([name], j) => add(name, g[j + 1]))
      })
      upstream.dispose()
    }

    // 4. The embedding rows the batch used.
    const embed = places.get('embed') ?? []
    if (embed.length > 0) {
      const ids = Int32Array.from(batch.inputIds.flat())
      const upstream = dy!
      tf.tidy(() => {
        const { grads: g } = engine.gradients(
          () => tf.sum(tf.mul(embedLookup(w.get('model.embed_tokens.weight') as tf.Tensor2D, ids), upstream)) as tf.Scalar,
          embed.map(([, v]) => v),
          undefined,
          true,
        )
        embed.forEach(([name], j) => add(name, g[j]))
      })
    }
    const p = parts!
    p.ce = ce
    p.targets = targets
    p.loss = totalLoss(c, p)
    const out = new Map<string, tf.Tensor>()
    for (const [name, v] of vars) out.set(name, grads.get(name) ?? tf.zerosLike(v))
    return { parts: p, grads: out, routing: stats }
  } catch (e) {
    disposeGrads(grads)
    throw e
  } finally {
    dy?.dispose()
    for (const t of inputs) t?.dispose()
  }
}
