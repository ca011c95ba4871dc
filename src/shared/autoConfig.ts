/**
 * The Quick preset: a run config chosen from the dataset's size and lengths and the model's size,
 * with the reason for each choice, so the Train screen can show them before the run starts and
 * the CLI's `train` without --config or --set makes the same choice.
 *
 * The rules come from measurements, not taste (figures in the closing note of issue 11):
 * - Small models (the bundled 2.7 M-parameter Mixtral) learn a few dozen question→answer pairs by
 *   full fine-tuning at the pretraining learning rate (3e-3, AdamW betas 0.9/0.95, cosine to 0.1×)
 *   in about 300 optimiser steps: exact match on the training prompts of a 40-row capitals CSV
 *   was 100% after 300 steps (batch 8), 64% after 200, and 14% after 150 steps at lr 1e-3. LoRA at 1e-2 was far slower on that model, and PyTorch (the same
 *   model in transformers) followed the same curve, so it is the model, not the trainer.
 * - Models past `FULL_LIMIT` parameters get LoRA on attention and experts (the experts hold most
 *   of an MoE's knowledge), rank 16 for small data, lr 2e-4 (LLaMA-Factory's and axolotl's usual
 *   LoRA range), a few epochs: full fine-tuning there needs optimiser state for every weight.
 * - Few rows mean many passes: epochs are set so the run makes about `targetSteps` optimiser
 *   steps (600 for a small model: 300 learnt the capitals but left the record-to-JSON sample to
 *   the seed), capped; large datasets get one epoch.
 */
import type { DatasetManifest } from './dataset'
import { typicalLr } from './guidance'
import { countParams, type MoeConfig } from './modelConfig'
import { runConfigSchema, type LoraTarget, type RunConfig } from './runConfig'

/** Models up to this many parameters are fully fine-tuned by the Quick preset. */
export const FULL_LIMIT = 100e6

export interface AutoInput {
  /** Training rows (the split's train side). */
  trainRows: number
  /** Tokens per row (chat template applied): measured with the model's tokenizer, or estimated. */
  tokens: { median: number; p95: number; max: number; measured: boolean }
  model: {
    totalParams: number
    maxPositions: number
    hasSharedExpert: boolean
  }
}

export interface AutoChoice {
  /** Dotted run-config path ("optimizer.lr"). */
  path: string
  value: unknown
  /** Why, in a sentence a newcomer can act on. */
  why: string
}

export interface AutoConfig {
  config: RunConfig
  choices: AutoChoice[]
  /** Optimiser steps the run will make. */
  steps: number
}

/**
 * Characters per token assumed when the dataset was not measured with the model's tokenizer:
 * conservative (English runs 3-4 with large vocabularies; the bundled model's 1200 tokens give
 * about 2.5), since too short a maxLength cuts answers off, while a long one costs nothing
 * (batches are padded to their longest row, not to maxLength).
 */
const CHARS_PER_TOKEN = 2
/** Chat-template tokens around a row's content (roles, BOS/EOS, newlines), estimated. */
const TEMPLATE_TOKENS = 16

/** What autoRunConfig needs, from a dataset's manifest and a model's config. */
export function autoInput(manifest: Pick<DatasetManifest, 'stats' | 'split'>, model: MoeConfig): AutoInput {
  const t = manifest.stats.tokens
  const c = manifest.stats.chars
  const tokens = t
    ? { median: t.median, p95: t.p95, max: t.max, measured: true }
    : {
        median: Math.ceil(c.median / CHARS_PER_TOKEN) + TEMPLATE_TOKENS,
        p95: Math.ceil(c.p95 / CHARS_PER_TOKEN) + TEMPLATE_TOKENS,
        max: Math.ceil(c.max / CHARS_PER_TOKEN) + TEMPLATE_TOKENS,
        measured: false,
      }
  return {
    trainRows: manifest.split.train,
    tokens,
    model: {
      totalParams: countParams(model).total,
      maxPositions: model.maxPositionEmbeddings,
      hasSharedExpert: model.sharedExpertIntermediateSize > 0,
    },
  }
}

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)))
}

function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} B`
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`
  return `${Math.round(n / 1e3)} k`
}

/** The Quick preset's run config for this dataset and model, with a reason per choice. */
export function autoRunConfig(input: AutoInput): AutoConfig {
  if (!(input.trainRows >= 1)) throw new Error('the dataset has no training rows: import a dataset with at least one valid row')
  const c = runConfigSchema.parse({})
  const choices: AutoChoice[] = []
  const choose = (path: string, value: unknown, why: string): void => {
    choices.push({ path, value, why })
  }
  const rows = input.trainRows
  const params = input.model.totalParams
  const small = params <= FULL_LIMIT
  const fewRows = rows <= 500

  // Method, learning rate, adapters.
  if (small) {
    c.method = 'full'
    choose('method', 'full', `the model is small (${formatCount(params)} parameters): training every weight is cheap and learns fastest`)
    c.optimizer.lr = params <= 20e6 ? 3e-3 : 1e-3
    choose(
      'optimizer.lr',
      c.optimizer.lr,
      params <= 20e6
        ? 'a model this small was pretrained at about this rate; lower rates need many more steps on a few rows'
        : 'a full fine-tune of a model of tens of millions of parameters',
    )
  } else {
    c.method = 'lora'
    const targets: LoraTarget[] = ['attention', 'experts', ...(input.model.hasSharedExpert ? (['shared_expert'] as const) : [])]
    const rank = fewRows ? 16 : 8
    c.lora = { rank, alpha: 2 * rank, dropout: fewRows ? 0.05 : 0, targets }
    choose(
      'method',
      'lora',
      `the model is large (${formatCount(params)} parameters): adapters train a small fraction of it and fit in memory`,
    )
    choose('lora.targets', targets, "the experts hold most of an MoE's weights, so they get adapters with attention")
    choose('lora.rank', rank, fewRows ? 'a few hundred rows or fewer: rank 16 (alpha 32) has room to learn them' : 'rank 8 (alpha 16)')
    choose('lora.alpha', 2 * rank, "twice the rank: the adapters' updates are scaled by alpha / rank = 2")
    if (fewRows) choose('lora.dropout', 0.05, 'a little dropout on the adapters: a few rows are memorised fast')
    c.optimizer.lr = typicalLr('lora', params)
    choose(
      'optimizer.lr',
      c.optimizer.lr,
      params > 1e9
        ? 'the usual LoRA rate (LLaMA-Factory and axolotl recipes use 1e-4 to 3e-4)'
        : 'a LoRA rate for a model under a billion parameters (2e-4 is for billions: smaller models need larger steps)',
    )
  }
  c.optimizer.betas = [0.9, 0.95]
  choose('optimizer.betas', c.optimizer.betas, "Adam's β2 0.95 (LLaMA's and most MoE recipes'): steadier steps where gradients change fast")
  c.optimizer.weightDecay = fewRows ? 0 : 0.01
  if (fewRows) choose('optimizer.weightDecay', 0, 'no weight decay: with a few rows the goal is to learn each of them')

  // Batch, epochs, steps.
  c.batchSize = Math.max(1, Math.min(small ? 8 : 4, Math.floor(rows / 4) || 1))
  choose('batchSize', c.batchSize, `${rows} training rows: ${c.batchSize} per step`)
  const stepsPerEpoch = Math.ceil(rows / c.batchSize)
  // 600 for a small model: on the bundled model's record-to-JSON sample (270 rows) 306 steps
  // reached 0%, 70% and 0% held-out exact match with seeds 0-2 (it learns to copy the values at a
  // step that moves with the seed); 612 steps reached 100% with each.
  const targetSteps = small ? 600 : 150
  const maxEpochs = small ? 60 : 10
  if (rows <= 2000) {
    c.epochs = Math.max(1, Math.min(maxEpochs, Math.round(targetSteps / stepsPerEpoch)))
    choose(
      'epochs',
      c.epochs,
      c.epochs > 1
        ? `few rows need many passes to be learned: ${c.epochs} epochs of ${stepsPerEpoch} steps`
        : `one pass over ${rows} rows is already ${stepsPerEpoch} steps`,
    )
  } else {
    c.epochs = 1
    choose('epochs', 1, `${rows} rows: one pass (${stepsPerEpoch} steps); more passes start to memorise`)
  }
  const steps = Math.max(1, Math.round(c.epochs * stepsPerEpoch))
  c.maxSteps = null
  c.schedule = { type: 'cosine', warmupSteps: Math.min(50, Math.max(1, Math.round(steps * 0.05))), minLrRatio: 0.1 }
  choose('schedule.warmupSteps', c.schedule.warmupSteps, `5% of the ${steps} steps warm up, then the rate decays (cosine) to a tenth`)
  choose('schedule.minLrRatio', c.schedule.minLrRatio, 'the rate ends at a tenth of its peak, not at 0: the last steps still learn')

  // Lengths.
  const cap = Math.min(input.model.maxPositions, 4096)
  c.data.maxLength = Math.min(cap, Math.max(64, nextPow2(Math.ceil(input.tokens.max * 1.25))))
  choose(
    'data.maxLength',
    c.data.maxLength,
    `the longest row is ${input.tokens.measured ? '' : 'about '}${input.tokens.max} tokens${c.data.maxLength < input.tokens.max ? ` (longer rows are cut: the model reads at most ${cap})` : ''}`,
  )
  c.data.maskPrompt = true

  // Evaluation and checkpoints: a few of each over the run. Rounded up: rounded down, the fifth
  // validation fell a step or two before the end, which validates again (306 steps: at 305 and 306).
  c.evalEvery = Math.max(10, Math.ceil(steps / 5))
  c.checkpointEvery = Math.max(10, Math.round(steps / 2))
  choose('evalEvery', c.evalEvery, `validated about 5 times over the ${steps} steps`)
  choose('checkpointEvery', c.checkpointEvery, 'a checkpoint halfway and at the end (and at each new best validation loss)')
  c.finalEval = { rows: 20 }
  choose(
    'finalEval.rows',
    20,
    'after the run, the base and the fine-tuned model answer up to 20 rows of each split (all of a smaller one): did it learn?',
  )
  return { config: runConfigSchema.parse(c), choices, steps }
}
