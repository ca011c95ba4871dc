/**
 * Which parameters a run trains: freeze policies (parts kept fixed; with method "freeze", only the
 * chosen layers and parts train, as LLaMA-Factory's freeze tuning), and expert-specialised
 * fine-tuning (DeepSeek ESFT: score experts on the task's data, train only the most relevant ones).
 */
import type * as tf from '@tensorflow/tfjs'
import { scopedAsync } from '../engine/device'
import { paramSpecs, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'
import type { FreezePart, RunConfig } from '../../shared/runConfig'
import type { ExpertSelection } from '../../shared/runs'
import type { MoeModel } from '../engine/model'
import type { Batch } from '../engine/objective'

export type { ExpertSelection }

/** The part of the model a parameter belongs to, as freeze.trainableParts names them. */
export function freezePart(s: ParamSpec): FreezePart {
  switch (s.kind) {
    case 'attn':
    case 'attn_bias':
      return 'attention'
    case 'router':
    case 'router_noise':
      return 'router'
    case 'expert':
      return 'experts'
    case 'shared_expert':
    case 'shared_expert_gate':
      return 'shared_expert'
    case 'dense_mlp':
      return 'dense_mlp'
    case 'embed':
      return 'embeddings'
    case 'lm_head':
      return 'lm_head'
    case 'norm':
      // q/k norms are inside the attention module (LLaMA-Factory's self_attn).
      return s.name.includes('.self_attn.') ? 'attention' : 'norms'
  }
}

/**
 * Whether method freeze's selectors let `s` train: its decoder layer among the last
 * trainableLayers (the first |N| when negative), its part among trainableParts. A weight outside
 * the decoder layers trains only when its part is listed. Other methods, or no selector: yes.
 */
function selectedForFreeze(s: ParamSpec, cfg: RunConfig, numLayers: number | undefined): boolean {
  const { trainableLayers: n, trainableParts: parts } = cfg.freeze
  if (cfg.method !== 'freeze' || (n === null && parts === null)) return true
  if (parts !== null && !parts.includes(freezePart(s))) return false
  if (s.layer === undefined) return parts !== null
  if (n === null) return true
  if (numLayers === undefined) throw new Error('isTrainable: freeze.trainableLayers needs the model config (its layer count)')
  return n > 0 ? s.layer >= numLayers - n : s.layer < -n
}

/**
 * Whether a full/freeze run trains parameter `s` of a model with config `c` (needed for a hash
 * router, never trained, and for freeze.trainableLayers).
 */
export function isTrainable(s: ParamSpec, cfg: RunConfig, c?: Pick<MoeConfig, 'numLayers' | 'router'>, esft?: ExpertSelection): boolean {
  if (esft) return s.kind === 'expert' && esft[String(s.layer)]?.includes(s.expert!) === true
  if (!selectedForFreeze(s, cfg, c?.numLayers)) return false
  const f = cfg.freeze
  switch (s.kind) {
    case 'router':
    case 'router_noise':
      // A hash-routed model never reads its router: nothing to train there.
      return !f.router && c?.router.type !== 'hash'
    case 'attn':
    case 'attn_bias':
      return !f.attention
    case 'embed':
    case 'lm_head':
      return !f.embeddings
    case 'expert':
      return !f.allExperts && !(f.experts[String(s.layer)] ?? []).includes(s.expert!)
    default:
      return true
  }
}

/** The trainable variables of a full/freeze run, by hub name. */
export function trainableParams(model: MoeModel, cfg: RunConfig, esft?: ExpertSelection): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>()
  for (const s of model.specs) if (isTrainable(s, cfg, model.config, esft)) out.set(s.name, model.params.get(s.name)!)
  if (out.size === 0) throw new Error('the freeze policy leaves nothing to train; unfreeze something or use LoRA')
  return out
}

/**
 * Values a full/freeze run trains, known before it starts (from the config alone). With ESFT the
 * experts are chosen at the start: every expert is counted, the most it can train.
 */
export function trainableCount(c: MoeConfig, cfg: RunConfig): number {
  let n = 0
  for (const s of paramSpecs(c))
    if (cfg.esft.enabled ? s.kind === 'expert' : isTrainable(s, cfg, c)) n += s.shape.reduce((a, b) => a * b, 1)
  return n
}

/** Weight decay applies to matrices, not to norms and biases (unless asked). */
export function decays(spec: ParamSpec | undefined, cfg: RunConfig): boolean {
  if (cfg.optimizer.decayNormsAndBiases || !spec) return true
  return spec.kind !== 'norm' && spec.kind !== 'attn_bias'
}

export interface ExpertScores {
  /** layer → per-expert score: the mean over samples of the per-token mean (ESFT's affinity). */
  scores: Record<string, number[]>
  tokens: number
}

/** What ESFT scoring reads of one sparse layer's routing (host data). */
export interface RoutingTable {
  layer: number
  decision: { N: number; k: number; topk: Int32Array }
  /** (N, k) routing weights of the chosen experts, in the order of decision.topk. */
  weights: Float32Array
}

/**
 * ESFT's affinity scores (Wang et al. 2024, eq. 5-6) accumulated sample by sample: for each row
 * with loss targets (position t counts when labels[t+1] is trained), the mean over its counted
 * tokens of the expert's gate value ('gate': the routing weight, 0 when not chosen) or of its
 * share of the k choices ('token_share': 1/k per choice); `scores` is the mean over those rows.
 * Gate scores are not renormalised: with un-renormalised top-k weights a layer's scores sum to
 * the mean chosen probability mass, below 1, as the paper's (and ESFT's code) scores do.
 */
export class EsftScorer {
  private readonly sums = new Map<number, Float64Array>()
  private samples = 0
  tokens = 0

  constructor(
    readonly numExperts: number,
    readonly kind: 'gate' | 'token_share',
  ) {}

  /** One batch: its rows' routing (rows of T positions, row-major) and labels. */
  add(routing: RoutingTable[], labels: number[][]): void {
    const T = labels[0]?.length ?? 0
    const E = this.numExperts
    for (let row = 0; row < labels.length; row++) {
      const counted: number[] = []
      for (let t = 0; t + 1 < T; t++) if (labels[row][t + 1] !== -100) counted.push(t)
      if (counted.length === 0) continue
      this.samples++
      this.tokens += counted.length
      for (const r of routing) {
        const acc = this.sums.get(r.layer) ?? new Float64Array(E)
        this.sums.set(r.layer, acc)
        const { k, topk } = r.decision
        for (const t of counted) {
          const n = row * T + t
          for (let j = 0; j < k; j++) acc[topk[n * k + j]] += (this.kind === 'gate' ? r.weights[n * k + j] : 1 / k) / counted.length
        }
      }
    }
  }

  result(): ExpertScores {
    const scores: Record<string, number[]> = {}
    for (const [layer, acc] of [...this.sums].sort((a, b) => a[0] - b[0]))
      scores[String(layer)] = Array.from(acc, (v) => (this.samples > 0 ? v / this.samples : 0))
    return { scores, tokens: this.tokens }
  }
}

/** ESFT scores of a model on sample batches (reading back asynchronously; hold deviceLock). */
export async function scoreExperts(model: MoeModel, batches: Batch[], kind: 'gate' | 'token_share'): Promise<ExpertScores> {
  const scorer = new EsftScorer(model.config.numExperts, kind)
  for (const b of batches)
    await scopedAsync(async () => {
      const f = await model.forwardAsync(b.inputIds)
      scorer.add(f.routing, b.labels)
    })
  return scorer.result()
}

/**
 * Per layer, the highest-scoring experts until their cumulative score reaches the threshold (the
 * smallest such set, ties to the lower index), as ESFT's generate_expert_config selects them.
 */
export function selectExperts(scores: ExpertScores['scores'], threshold: number): ExpertSelection {
  const out: ExpertSelection = {}
  for (const [layer, s] of Object.entries(scores)) {
    const order = s.map((v, e) => [v, e] as const).sort((a, b) => b[0] - a[0] || a[1] - b[1])
    const chosen: number[] = []
    let acc = 0
    for (const [v, e] of order) {
      if (acc >= threshold - 1e-12) break
      chosen.push(e)
      acc += v
    }
    out[layer] = chosen.sort((a, b) => a - b)
  }
  return out
}
