/**
 * The run config: everything a fine-tuning run needs, with documented defaults and validation.
 * The same JSON drives the app, server mode and `moe-workbench train --config run.json --set k=v`.
 */
import { z } from 'zod'
import { EXPERT_STORAGES } from './chat'
import { formatIssues } from './modelConfig'

const posInt = z.number().int().positive()
const nonNegInt = z.number().int().nonnegative()
const prob = z.number().min(0).max(1)
/** Expert capacity: a factor (tokens over it are dropped), or "dropless". */
// Neither a number nor "dropless" (letters typed into the field, NaN from an emptied one): zod
// says only "Invalid input"; a number out of range keeps its own message ("must be more than 0").
const capacity = z.union([z.number().positive(), z.literal('dropless')], {
  error: 'must be a number more than 0, or "dropless" (every token kept)',
})

export const LORA_TARGETS = ['attention', 'experts', 'shared_expert', 'router', 'dense_mlp', 'lm_head'] as const
export type LoraTarget = (typeof LORA_TARGETS)[number]

/** Parts a freeze run can be limited to (freeze.trainableParts). */
export const FREEZE_PARTS = ['attention', 'router', 'experts', 'shared_expert', 'dense_mlp', 'norms', 'embeddings', 'lm_head'] as const
export type FreezePart = (typeof FREEZE_PARTS)[number]

// Sections and lists default with .prefault (the default parsed, so each parse makes its own
// objects): zod 4's .default hands out the one object it was given, and a form that edited a
// parsed config (Adam's betas) changed every later default with it.
export const runConfigSchema = z
  .strictObject({
    /** Fine-tuning method: all weights, LoRA adapters, or full training with frozen parts. */
    method: z.enum(['full', 'lora', 'freeze']).default('full'),
    lora: z
      .strictObject({
        rank: posInt.default(8),
        alpha: z.number().positive().default(16),
        dropout: prob.default(0),
        /** Which linear layers get adapters. */
        targets: z.array(z.enum(LORA_TARGETS)).min(1).prefault(['attention', 'experts']),
      })
      .prefault({ rank: 8, alpha: 16, dropout: 0, targets: ['attention', 'experts'] }),
    /**
     * Parts kept fixed (method "full" or "freeze"), and, with method "freeze" only, what trains
     * (LLaMA-Factory's freeze tuning): the last `trainableLayers` decoder layers and/or only the
     * `trainableParts`. Weights outside the decoder layers (embeddings, final norm, lm_head) then
     * train only when their part is listed. Both null: every part of every layer, as "full".
     */
    freeze: z
      .strictObject({
        router: z.boolean().default(false),
        attention: z.boolean().default(false),
        embeddings: z.boolean().default(false),
        allExperts: z.boolean().default(false),
        /** Experts kept fixed, by layer: {"0": [1, 3]}. */
        experts: z.record(z.string().regex(/^\d+$/), z.array(nonNegInt)).prefault({}),
        /** Method freeze: only the last N decoder layers train (negative: the first |N|, as LLaMA-Factory); null = all. */
        trainableLayers: z
          .number()
          .int()
          .refine((n) => n !== 0, 'must not be 0 (null trains every layer)')
          .nullable()
          .default(null),
        /** Method freeze: only these parts train; null = all. */
        trainableParts: z.array(z.enum(FREEZE_PARTS)).min(1).nullable().default(null),
      })
      .prefault({
        router: false,
        attention: false,
        embeddings: false,
        allExperts: false,
        experts: {},
        trainableLayers: null,
        trainableParts: null,
      }),
    /**
     * Expert-specialised fine-tuning (DeepSeek ESFT): score experts on the training data, keep per
     * layer the best ones until their cumulative score reaches `threshold`, train only those.
     */
    esft: z
      .strictObject({
        enabled: z.boolean().default(false),
        score: z.enum(['gate', 'token_share']).default('gate'),
        threshold: z.number().gt(0).max(1).default(0.2),
        /** Batches of training data used for scoring. */
        scoringBatches: posInt.default(16),
      })
      .prefault({ enabled: false, score: 'gate', threshold: 0.2, scoringBatches: 16 }),
    data: z
      .strictObject({
        maxLength: posInt.default(256),
        truncation: z.enum(['right', 'left', 'drop']).default('right'),
        /** Loss only on assistant turns / completions. */
        maskPrompt: z.boolean().default(true),
        /** Concatenate examples into full-length rows instead of padding each one. */
        packing: z.boolean().default(false),
      })
      .prefault({ maxLength: 256, truncation: 'right', maskPrompt: true, packing: false }),
    optimizer: z
      .strictObject({
        lr: z.number().positive().default(3e-4),
        betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).prefault([0.9, 0.999]),
        eps: z.number().positive().default(1e-8),
        weightDecay: z.number().min(0).default(0.01),
        /** Apply weight decay to norms and biases too (off by default, as HF Trainer does). */
        decayNormsAndBiases: z.boolean().default(false),
      })
      .prefault({ lr: 3e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, decayNormsAndBiases: false }),
    schedule: z
      .strictObject({
        type: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
        warmupSteps: nonNegInt.default(0),
        /** The learning rate at the end of a cosine or linear decay, as a fraction of lr. */
        minLrRatio: prob.default(0),
      })
      .prefault({ type: 'cosine', warmupSteps: 0, minLrRatio: 0 }),
    batchSize: posInt.default(8),
    gradAccumulation: posInt.default(1),
    /** Clip the global gradient norm to this value; 0 = off. */
    gradClip: z.number().min(0).default(1),
    seed: nonNegInt.default(0),
    /** Stop after this many optimiser steps (wins over epochs when both are set). */
    maxSteps: posInt.nullable().default(null),
    epochs: z.number().positive().default(1),
    /** Evaluate on the validation split every N steps (0 = only at the end). */
    evalEvery: nonNegInt.default(50),
    /** Batches of the validation split per evaluation (0 = all). */
    evalBatches: nonNegInt.default(0),
    earlyStopping: z
      .strictObject({
        /** Stop after this many evaluations without improvement; 0 = off. */
        patience: nonNegInt.default(0),
        minDelta: z.number().min(0).default(0),
      })
      .prefault({ patience: 0, minDelta: 0 }),
    /** Write a checkpoint every N steps (and always at the end); 0 = only at the end. */
    checkpointEvery: nonNegInt.default(100),
    /**
     * When the run completes, the base model and the fine-tuned one answer up to `rows` rows of
     * each split (greedy, the chat template): exact match, F1 and loss before and after. 0 = off.
     */
    finalEval: z.strictObject({ rows: nonNegInt.max(1000).default(10) }).prefault({ rows: 10 }),
    /** Keep this many most recent checkpoints (the best by validation loss is always kept). */
    keepCheckpoints: posInt.default(3),
    /** MoE knobs. Values left null keep the model's own. */
    moe: z
      .strictObject({
        /**
         * Experts each token is routed to while this run trains, evaluates and generates (the
         * exported model keeps it as num_experts_per_tok); null: the model's own. At most the
         * model's experts (checked against the model).
         */
        topK: posInt.max(1024).nullable().default(null),
        /** A factor, "dropless" (no capacity, whatever the model says), or null: the model's own. */
        capacityFactorTrain: capacity.nullable().default(null),
        capacityFactorEval: capacity.nullable().default(null),
        auxLossCoef: z.number().min(0).nullable().default(null),
        zLossCoef: z.number().min(0).nullable().default(null),
        /** Shazeer et al. 2017 importance loss (CV² of the gate sums per expert). */
        importanceLossCoef: z.number().min(0).nullable().default(null),
        /** Shazeer et al. 2017 load loss (smooth for the noisy top-k router: its noise weights learn from it). */
        loadLossCoef: z.number().min(0).nullable().default(null),
        routerJitter: prob.nullable().default(null),
        expertDropout: prob.nullable().default(null),
        /** Training only: each token skips the MoE block with this probability (token-drop regularisation). */
        tokenDrop: prob.nullable().default(null),
        attentionDropout: prob.nullable().default(null),
        hiddenDropout: prob.nullable().default(null),
      })
      .prefault({
        topK: null,
        capacityFactorTrain: null,
        capacityFactorEval: null,
        auxLossCoef: null,
        zLossCoef: null,
        importanceLossCoef: null,
        loadLossCoef: null,
        routerJitter: null,
        expertDropout: null,
        tokenDrop: null,
        attentionDropout: null,
        hiddenDropout: null,
      }),
    /**
     * Device memory for the run: weights on the device, adapters, gradients, optimiser state and
     * activations. What does not fit is paged in from the host (the frozen weights of a LoRA run;
     * full and freeze runs must fit). null: the backend's default budget.
     */
    offload: z
      .strictObject({
        budgetBytes: posInt.nullable().default(null),
        /** Host storage of paged weights: read from the checkpoint files (lazy) or kept decoded. */
        storage: z.enum(EXPERT_STORAGES).default('lazy'),
      })
      .prefault({ budgetBytes: null, storage: 'lazy' }),
    alerts: z
      .strictObject({
        /** An expert whose token share stays below this for `steps` steps is reported dead. */
        deadShare: prob.default(0.01),
        /** An expert whose share stays above this is reported collapsing (it takes everything). */
        collapseShare: prob.default(0.9),
        steps: posInt.default(20),
      })
      .prefault({ deadShare: 0.01, collapseShare: 0.9, steps: 20 }),
  })
  .superRefine((c, ctx) => {
    if (c.esft.enabled && c.method === 'lora')
      ctx.addIssue({
        code: 'custom',
        path: ['esft', 'enabled'],
        message: 'ESFT trains the chosen experts fully; use method "full" or "freeze"',
      })
  })

export type RunConfig = z.infer<typeof runConfigSchema>
export type RunConfigInput = z.input<typeof runConfigSchema>

export class RunConfigError extends Error {}

export function validateRunConfig(input: unknown): RunConfig {
  const r = runConfigSchema.safeParse(input ?? {})
  if (!r.success) throw new RunConfigError(`invalid run config: ${formatIssues(r.error.issues, '', runConfigSchema)}`)
  return r.data
}

/**
 * Every setting `--set` takes, as a dotted path with its default (strings bare, as --set reads
 * them; null: unset, chosen from the model or the data), in the config's order. A record (freeze.experts)
 * or a list is one setting, written as JSON.
 */
export function settingKeys(): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = []
  const walk = (v: unknown, path: string): void => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0)
      for (const [k, x] of Object.entries(v)) walk(x, path ? `${path}.${k}` : k)
    else out.push({ key: path, value: typeof v === 'string' ? v : JSON.stringify(v) })
  }
  walk(validateRunConfig({}), '')
  return out
}

/** Reads a dotted path ("optimizer.betas.0") of a plain object. */
export function getPath(obj: unknown, path: string): unknown {
  let node: unknown = obj
  for (const key of path.split('.')) {
    if (node === null || typeof node !== 'object') return undefined
    node = (node as Record<string, unknown>)[key]
  }
  return node
}

/**
 * Applies `--set key.path=value` overrides to a plain config object (values parsed as JSON when
 * they parse, else taken as strings). Unknown keys, at any depth, are rejected by validation later
 * with the closest valid key.
 */
export function applyOverrides(base: Record<string, unknown>, sets: string[]): Record<string, unknown> {
  const out = structuredClone(base)
  for (const s of sets) {
    const eq = s.indexOf('=')
    if (eq <= 0) throw new RunConfigError(`--set ${s}: expected key=value, e.g. optimizer.lr=1e-4`)
    const path = s.slice(0, eq).split('.')
    const raw = s.slice(eq + 1)
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch {
      value = raw
    }
    let node: Record<string, unknown> = out
    for (const key of path.slice(0, -1)) {
      if (typeof node[key] !== 'object' || node[key] === null || Array.isArray(node[key])) node[key] = {}
      node = node[key] as Record<string, unknown>
    }
    node[path[path.length - 1]] = value
  }
  return out
}

/** Optimiser steps a run takes on `examples` training rows: maxSteps, else its epochs in batches over gradient accumulation. */
export function plannedSteps(cfg: RunConfig, examples: number): number {
  if (cfg.maxSteps !== null) return cfg.maxSteps
  const rows = Math.max(1, examples)
  return Math.max(1, Math.ceil((cfg.epochs * Math.ceil(rows / cfg.batchSize)) / cfg.gradAccumulation))
}
