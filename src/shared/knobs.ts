/**
 * The run config's MoE knobs (config.moe): what each one does in a line, its longer help (shown on
 * demand beside the field), and the value a model uses when the run leaves it empty, so the Train
 * screen shows the effective default instead of "model default".
 */
import type { MoeConfig } from './modelConfig'
import type { RunConfig } from './runConfig'

export type MoeKnob = keyof RunConfig['moe']

/** A knob's value on a model: a number, or "dropless" for a capacity factor that is not set. */
export type KnobValue = number | 'dropless'

export interface KnobHelp {
  /** One line: what it does, and which way to turn it. */
  line: string
  /** The longer help, shown on demand: how it works, typical values, when to change it. */
  more: string
}

const CAPACITY =
  'Capacity = ceil(factor × tokens × k / experts) per expert and forward pass. Tokens routed to a full expert are dropped: they keep only the residual path (padding never takes capacity). Switch Transformer trained with 1.0-1.25; below 1 tokens are dropped even when routing is perfectly balanced. Fine-tuning a Hugging Face checkpoint usually wants dropless, as it was trained.'
const DROPOUTS =
  'Dropouts act in training only and are off in evaluation and generation. On a few hundred rows they slow memorisation; on larger datasets 0.05-0.1 can reduce overfitting. Expert dropout masks activations inside each expert; attention dropout the attention weights; hidden dropout a block’s output.'
const SHAZEER =
  'Shazeer et al. 2017 (sparsely-gated MoE): the importance loss is CV² of each expert’s summed gate values over the batch; the load loss is CV² of each expert’s expected number of tokens, computed through the normal CDF of the noisy top-k router, so it trains the router’s noise weights. Both default to 0; the paper used 0.1 each.'

export const KNOB_HELP: Record<MoeKnob, KnobHelp> = {
  topK: {
    line: 'Experts each token goes to. More: more compute per token and more of each expert trained; the export keeps it.',
    more: 'The router picks the k highest-scoring experts for each token and mixes their outputs by the router weights (renormalised over the k where the model does). Mixtral and OLMoE route to 2 of 8 and 8 of 64, Qwen3-MoE to 8 of 128. Raising k costs compute in proportion and changes every layer’s output, so a pretrained model needs training to adjust; lowering it is faster but drops part of each token’s mixture. The exported config.json carries the new num_experts_per_tok; evaluation and chat of the tuned model use it too.',
  },
  capacityFactorTrain: {
    line: 'Each expert takes at most factor × its even share of tokens per step; the rest skip the experts. "dropless": no limit.',
    more: CAPACITY,
  },
  capacityFactorEval: { line: 'The same limit in evaluation and generation; Hugging Face models run dropless.', more: CAPACITY },
  auxLossCoef: {
    line: 'Weight of the load-balancing loss (Switch/HF): raise it when experts go idle or one takes everything.',
    more: 'The Switch Transformer / Hugging Face auxiliary loss: experts × Σ (share of tokens routed to the expert × mean router probability of the expert), 1 when perfectly balanced. Mixtral was trained with 0.02, OLMoE 0.01, Qwen-MoE 0.001. It only acts where the router trains (full fine-tuning, or LoRA with the router as a target).',
  },
  zLossCoef: {
    line: 'Weight of the router z-loss (ST-MoE): keeps router logits small and training stable.',
    more: 'ST-MoE’s z-loss is the mean of log²(Σ exp(router logits)): it penalises large logits, which make routing brittle and can overflow in low precision. ST-MoE used 0.001; raise it if the loss spikes with large router logits.',
  },
  importanceLossCoef: { line: "Weight of Shazeer 2017's importance loss: the spread (CV²) of the gate sums per expert.", more: SHAZEER },
  loadLossCoef: {
    line: "Weight of Shazeer 2017's load loss: the spread of expected loads; trains a noisy top-k router's noise.",
    more: SHAZEER,
  },
  routerJitter: {
    line: 'Training only: the router input is multiplied by noise in [1 − j, 1 + j] so near-ties explore other experts.',
    more: 'As Hugging Face Mixtral’s router_jitter_noise: multiplicative uniform noise on the hidden states entering the router (and, as HF does, the experts), in training only. Switch used 0.01. It helps dead experts get tokens again; too much makes routing random.',
  },
  expertDropout: { line: 'Training only: dropout inside each expert (its hidden activations).', more: DROPOUTS },
  tokenDrop: {
    line: 'Training only: a token skips the MoE block with this probability (token-drop regularisation).',
    more: 'Each token independently skips the MoE block (keeps only the residual) with this probability, before routing; the MoE literature reports token dropping acting as a regulariser in fine-tuning. Off in evaluation. A training-only capacity factor below 1 is the other way to drop tokens.',
  },
  attentionDropout: { line: 'Training only: dropout on the attention weights.', more: DROPOUTS },
  hiddenDropout: { line: 'Training only: dropout on each block’s output before the residual add.', more: DROPOUTS },
}

/** The value each knob has on this model when the run leaves it empty. */
export function modelKnobDefaults(c: MoeConfig): Record<MoeKnob, KnobValue> {
  return {
    topK: c.topK,
    capacityFactorTrain: c.router.capacityFactorTrain ?? 'dropless',
    capacityFactorEval: c.router.capacityFactorEval ?? 'dropless',
    auxLossCoef: c.routerAuxLossCoef,
    zLossCoef: c.routerZLossCoef,
    importanceLossCoef: c.routerImportanceLossCoef,
    loadLossCoef: c.routerLoadLossCoef,
    routerJitter: c.router.jitter,
    expertDropout: c.expertDropout,
    tokenDrop: c.tokenDrop,
    attentionDropout: c.attentionDropout,
    hiddenDropout: c.hiddenDropout,
  }
}
