/**
 * Guidance in words: before a run, settings that will not work (with the reason and a value to
 * try); during and after, what the curves say (not learning, overfitting, NaN, dropped tokens).
 * Pure functions of the run config, the model's facts and the metrics, shared by the Train
 * screen and the CLI, so each rule is tested once.
 */
import type { EvalMetrics, StepMetrics } from './runs'
import { plannedSteps, type RunConfig } from './runConfig'
import type { RouterType } from './modelConfig'

export interface Advice {
  /** Stable id of the rule ("lr-high", "overfitting"...). */
  id: string
  tone: 'warn' | 'danger' | 'info'
  message: string
  /** A value to try: a run-config path and its value. */
  suggest?: { path: string; value: unknown }
}

/** What the rules need to know of the model and the dataset. */
export interface GuidanceContext {
  trainRows: number
  /** Validation rows (absent: not known). */
  valRows?: number
  totalParams: number
  vocabSize: number
  /** The model's own training capacity factor (null: dropless). */
  modelCapacityFactor: number | null
  /** Tokens per row of the dataset, measured with this model's tokenizer (absent: not measured so). */
  rowTokens?: { min: number; median: number; p95: number }
  /** The model's router (absent: not known). */
  routerType?: RouterType
}

/**
 * The dataset's token statistics where they were measured with the model's own tokenizer (the
 * import's "Tokenizer and chat template of" choice), for GuidanceContext.rowTokens.
 */
export function rowTokensFor(
  stats: { tokens?: { tokenizer: string; min: number; median: number; p95: number } },
  modelDir: string,
): GuidanceContext['rowTokens'] {
  const t = stats.tokens
  return t && t.tokenizer === modelDir ? { min: t.min, median: t.median, p95: t.p95 } : undefined
}

/** The learning rate a method usually wants on a model of this size (the Quick preset's choice). */
export function typicalLr(method: RunConfig['method'], totalParams: number): number {
  // LoRA's usual 2e-4 is for models of billions of parameters; adapters on a small model need
  // larger steps (the bundled 5 M model learnt nothing in 60 steps at 2e-4: 56% of its training
  // rows exactly at 3e-3).
  if (method === 'lora') return totalParams <= 20e6 ? 3e-3 : totalParams <= 100e6 ? 1e-3 : totalParams <= 1e9 ? 5e-4 : 2e-4
  if (totalParams <= 20e6) return 3e-3
  if (totalParams <= 100e6) return 1e-3
  if (totalParams <= 1e9) return 1e-4
  return 2e-5
}

/** Fewer validation rows than this are called too few to read the validation curve and scores by. */
export const FEW_VALIDATION_ROWS = 5

/** Beyond this factor from the typical rate, a learning rate is called off. */
const LR_FACTOR = 30

function fmt(x: number): string {
  return x >= 0.01 && x < 1000 ? String(Number(x.toPrecision(3))) : x.toExponential(1)
}

/** Warnings before a run starts; the user may go on anyway. */
/** Fewer planned steps than this (epochs deciding, not max steps) are advised against; the advice aims at about FEW_STEPS_SUGGESTED. */
const FEW_STEPS = 20
const FEW_STEPS_SUGGESTED = 60

export function preflight(c: RunConfig, ctx: GuidanceContext): Advice[] {
  const out: Advice[] = []
  const lr = c.optimizer.lr
  const typical = typicalLr(c.method, ctx.totalParams)
  if (lr > typical * LR_FACTOR)
    out.push({
      id: 'lr-high',
      tone: 'danger',
      message: `Learning rate ${fmt(lr)} is ${Math.round(lr / typical)}× what ${c.method === 'lora' ? 'LoRA on a model of this size' : `a ${c.method} fine-tune of this model size`} usually takes (${fmt(typical)}): the loss is likely to jump or become NaN.`,
      suggest: { path: 'optimizer.lr', value: typical },
    })
  else if (lr < typical / LR_FACTOR)
    out.push({
      id: 'lr-low',
      tone: 'warn',
      message: `Learning rate ${fmt(lr)} is ${Math.round(typical / lr)}× below what ${c.method === 'lora' ? 'LoRA on a model of this size' : `a ${c.method} fine-tune of this model size`} usually takes (${fmt(typical)}): the weights will barely move and the loss will stay where it starts.`,
      suggest: { path: 'optimizer.lr', value: typical },
    })
  const rt = ctx.rowTokens
  const maxLength = c.data.maxLength
  if (rt && maxLength < rt.median)
    out.push({
      id: 'max-length-short',
      tone: maxLength < rt.min ? 'danger' : 'warn',
      message:
        maxLength < rt.min
          ? `Max length ${maxLength} tokens is shorter than every row (the shortest is ${rt.min} tokens): each is cut there, and a row whose answer starts after token ${maxLength} trains nothing.`
          : `Max length ${maxLength} tokens cuts more than half of the rows (their median is ${rt.median} tokens): the cut part of each answer is not trained.`,
      suggest: { path: 'data.maxLength', value: rt.p95 },
    })
  const stepsPerEpoch = Math.ceil(Math.max(1, ctx.trainRows) / (c.batchSize * c.gradAccumulation))
  if (c.maxSteps !== null && c.maxSteps < stepsPerEpoch)
    out.push({
      id: 'steps-under-epoch',
      tone: 'warn',
      message: `${c.maxSteps} ${c.maxSteps === 1 ? 'step sees' : 'steps see'} ${Math.round((100 * c.maxSteps) / stepsPerEpoch)}% of the ${ctx.trainRows} training rows once (an epoch is ${stepsPerEpoch} steps): the rest are never trained on.`,
      suggest: { path: 'maxSteps', value: stepsPerEpoch },
    })
  // A run of a few steps (the defaults' one epoch of a small dataset: 50 rows at batch 8 is 7) moves
  // a model too little to see in the curves or the before/after scores.
  const planned = plannedSteps(c, ctx.trainRows)
  if (c.maxSteps === null && planned < FEW_STEPS && ctx.trainRows > 0) {
    const epochs = Math.ceil(FEW_STEPS_SUGGESTED / plannedSteps({ ...c, epochs: 1 }, ctx.trainRows))
    out.push({
      id: 'few-steps',
      tone: 'warn',
      message: `${c.epochs} ${c.epochs === 1 ? 'epoch' : 'epochs'} of ${ctx.trainRows} training rows at batch ${c.batchSize * c.gradAccumulation} is ${planned} ${planned === 1 ? 'step' : 'steps'}: too few for a fine-tune to show in the loss or the before/after scores. ${epochs} epochs make ${plannedSteps({ ...c, epochs }, ctx.trainRows)} steps (the Quick preset plans a run from the dataset and the model).`,
      suggest: { path: 'epochs', value: epochs },
    })
  }
  const cf =
    c.moe.capacityFactorTrain === null
      ? ctx.modelCapacityFactor
      : c.moe.capacityFactorTrain === 'dropless'
        ? null
        : c.moe.capacityFactorTrain
  if (cf !== null && cf < 1)
    out.push({
      id: 'capacity-drops',
      tone: 'warn',
      message: `Capacity factor ${fmt(cf)} drops at least ${Math.round((1 - cf) * 100)}% of the tokens' expert assignments even when routing is perfectly balanced (each expert takes ${fmt(cf)}× its even share); dropped tokens skip the experts.`,
      suggest: { path: 'moe.capacityFactorTrain', value: 1.25 },
    })
  const steps = planned
  const warmup = c.schedule.warmupSteps
  if (warmup > 0 && warmup * 2 > steps) {
    const suggested = Math.round(steps * 0.05)
    out.push({
      id: 'warmup-long',
      tone: 'warn',
      message: `Warm-up is ${warmup} steps of a ${steps}-step run: the learning rate ${warmup >= steps ? `never reaches ${fmt(lr)}` : `reaches ${fmt(lr)} only at step ${warmup}`}, so most of the run trains at a fraction of it. ${suggested > 0 ? `About 5% of the steps (${suggested}) is usual.` : 'A run this short needs no warm-up.'}`,
      suggest: { path: 'schedule.warmupSteps', value: suggested },
    })
  }
  // Validated at the end only (Quick planned 300 steps with a check every 60; maxSteps set to 60
  // kept the 60): no validation curve to read, and no checkpoint to call the best.
  if (c.evalEvery > 0 && c.evalEvery >= steps && steps >= 10 && ctx.valRows !== 0) {
    const every = Math.max(1, Math.ceil(steps / 5)) // up: the fifth at the end, not a step before it
    out.push({
      id: 'eval-once',
      tone: 'info',
      message: `Validation every ${c.evalEvery} steps of a ${steps}-step run is measured once, at the end: the curves have no validation loss to follow and no checkpoint is marked best. Every ${every} steps gives five points.`,
      suggest: { path: 'evalEvery', value: every },
    })
  }
  // A 10-row dataset's 10% split is one row: the held-out scores read 0% or 100% and the validation
  // loss is one row's (Quick on 10 rows, before -> after, said nothing but chance).
  const valRows = ctx.valRows ?? 0
  if (valRows > 0 && valRows < FEW_VALIDATION_ROWS)
    out.push({
      id: 'few-validation-rows',
      tone: 'info',
      message: `The validation split holds ${valRows === 1 ? '1 row' : `${valRows} rows`}: the validation loss and the held-out before/after scores rest on ${valRows === 1 ? 'it' : 'them'} alone and move by chance. More rows, or a larger share held out when the file is imported (Datasets' "Held out for validation", the CLI's --val-ratio), give a reading that says more.`,
    })
  // None held out (a file imported with --val-ratio 0, or too small to split): the run said only
  // "best val -" and "nothing to evaluate" for held-out rows, with no word before it started.
  if (ctx.valRows === 0 && ctx.trainRows > 0)
    out.push({
      id: 'no-validation-rows',
      tone: 'info',
      message: `The dataset holds no validation rows: the run has no validation loss to follow, marks no checkpoint best, and scores no held-out rows before and after. Import the file again with a share held out (Datasets' "Held out for validation", the CLI's --val-ratio) to see whether the model learned more than its training rows.`,
    })
  // MoE knobs (and LoRA's dropout) past where they train anything useful (each accepted, and the
  // run "completed" with a loss in the millions, every token dropped or the adapters untouched).
  const m = c.moe
  const extreme: [number | null, number, string, string, number][] = [
    // [value, from, path, what it does there, a usual value]
    [m.expertDropout, 0.5, 'moe.expertDropout', 'drops that share of the experts’ activations', 0.1],
    [m.tokenDrop, 0.5, 'moe.tokenDrop', 'sends that share of the tokens past the experts', 0.1],
    [m.routerJitter, 0.5, 'moe.routerJitter', 'scales the router input by up to ±that share at random', 0.01],
    [m.zLossCoef, 0.1, 'moe.zLossCoef', 'weighs the router z-loss, which is in the tens, against a cross-entropy of a few units', 0.001],
    [m.auxLossCoef, 1, 'moe.auxLossCoef', 'weighs load balancing over the language modelling', 0.01],
    // LoRA's dropout acts on the adapters' input: at 1 they see zeros and never train.
    [c.method === 'lora' ? c.lora.dropout : null, 0.5, 'lora.dropout', 'drops that share of the adapters’ input', 0.05],
  ]
  for (const [v, from, path, what, usual] of extreme)
    if (v !== null && v >= from)
      out.push({
        id: `extreme-${path.startsWith('moe.') ? path.slice(4) : path.replace('.', '-')}`,
        tone: 'warn',
        message: `${path} ${fmt(v)} ${what}: the model learns little else${v >= 1 && path !== 'moe.auxLossCoef' && path !== 'moe.zLossCoef' ? ' (at 1, nothing)' : ''}; ${fmt(usual)} is usual.`,
        suggest: { path, value: usual },
      })
  // A hash-routed model has no learned router: the router's losses were accepted, logged as 0,
  // and drawn as flat lines, with no word of why.
  if (ctx.routerType === 'hash') {
    const routerLosses = (['auxLossCoef', 'zLossCoef', 'importanceLossCoef', 'loadLossCoef'] as const).filter((k) => (m[k] ?? 0) > 0)
    if (routerLosses.length)
      out.push({
        id: 'hash-router-losses',
        tone: 'warn',
        message: `This model routes each token by a hash of its id: it has no learned router, so ${routerLosses.map((k) => `moe.${k} ${fmt(m[k]!)}`).join(', ')} ${routerLosses.length === 1 ? 'has' : 'have'} nothing to act on and change nothing (their losses stay 0). Leave ${routerLosses.length === 1 ? 'it' : 'them'} empty.`,
        suggest: { path: `moe.${routerLosses[0]}`, value: null },
      })
  }
  if (c.gradClip === 0 && lr >= typical * 3)
    out.push({
      id: 'no-clip',
      tone: 'info',
      message: 'Gradient clipping is off with a high learning rate: one bad batch can throw the weights far; 1.0 is the usual clip.',
      suggest: { path: 'gradClip', value: 1 },
    })
  return out
}

/** A suggested value, rounded to two significant digits (3e-3, not 0.0029999999999999996). */
function round2(x: number): number {
  return Number(x.toPrecision(2))
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
}

/** Dropped-token share above which the curves say so. */
export const DROP_WARN = 0.05

/** The fields of a step the curves are read from. */
export type StepPoint = Pick<StepMetrics, 'step' | 'totalSteps' | 'loss' | 'ce' | 'droppedFraction'>

/** What the curves say, in words, with what to change (vocabSize 0: unknown, no ln(vocab) rule). */
export function interpretCurves(
  steps: StepPoint[],
  evals: EvalMetrics[],
  c: RunConfig,
  /**
   * answersShown: the before/after answers are on the page (a completed run's evaluation);
   * answersText: where else to look at the answers (the CLI's words: it shows no page).
   */
  ctx: Pick<GuidanceContext, 'vocabSize'> & { answersShown?: boolean; answersText?: string },
): Advice[] {
  const out: Advice[] = []
  const bad = steps.find((s) => !Number.isFinite(s.loss))
  if (bad) {
    const advice =
      c.gradClip === 0
        ? `turn gradient clipping on (1.0) and lower the learning rate (now ${fmt(c.optimizer.lr)})`
        : `lower the learning rate (now ${fmt(c.optimizer.lr)}; clipping at ${c.gradClip} is already on)${c.schedule.warmupSteps === 0 ? ' and add warm-up steps' : ''}`
    out.push({
      id: 'nan',
      tone: 'danger',
      message: `The loss became NaN at step ${bad.step}: ${advice}. Resume from the last checkpoint before it.`,
      suggest: c.gradClip === 0 ? { path: 'gradClip', value: 1 } : { path: 'optimizer.lr', value: round2(c.optimizer.lr / 10) },
    })
    return out
  }
  const total = steps[steps.length - 1]?.totalSteps ?? 0
  const uniform = Math.log(ctx.vocabSize)
  const enough = steps.length >= Math.max(20, Math.min(50, Math.ceil(total * 0.1)))
  const recent = mean(steps.slice(-10).map((s) => s.ce))
  const first = mean(steps.slice(0, 10).map((s) => s.ce))
  // Risen half again over where it started (and past a uniform guess, where that is known): the
  // steps throw the weights away; "raise the learning rate" would be the wrong advice.
  if (enough && recent > first * 1.5 && (ctx.vocabSize < 2 || recent > uniform))
    out.push({
      id: 'diverged',
      tone: 'danger',
      message: `Diverged: the cross-entropy rose from ${first.toFixed(2)} to ${recent.toFixed(2)}${ctx.vocabSize >= 2 ? `, worse than a uniform guess over the vocabulary (ln(${ctx.vocabSize}) = ${uniform.toFixed(2)})` : ''}: the learning rate (now ${fmt(c.optimizer.lr)}) is too high. Lower it${c.gradClip === 0 ? ' and turn gradient clipping on (1.0)' : ''}; these weights are not worth exporting.`,
      suggest: { path: 'optimizer.lr', value: round2(c.optimizer.lr / 10) },
    })
  else if (ctx.vocabSize >= 2 && enough) {
    // Near a uniform guess and not coming down from where it started: a randomly initialised model
    // starts above ln V, and its loss falling from 6.7 to 4.46 (ln 120 = 4.79) read "not learning".
    if (recent >= 0.9 * uniform && recent > 0.9 * first)
      out.push({
        id: 'not-learning',
        tone: 'warn',
        message: `Not learning: the cross-entropy (${recent.toFixed(2)}, the mean of the last 10 steps) is near ln(${ctx.vocabSize}) = ${uniform.toFixed(2)}, what a uniform guess over the vocabulary scores. Raise the learning rate (now ${fmt(c.optimizer.lr)}).`,
        suggest: { path: 'optimizer.lr', value: round2(c.optimizer.lr * 10) },
      })
    else if (steps.length >= 50 && recent > first * 0.98)
      out.push({
        id: 'flat',
        tone: 'warn',
        message: `The cross-entropy has not fallen since the start (${first.toFixed(2)} → ${recent.toFixed(2)}): raise the learning rate (now ${fmt(c.optimizer.lr)}) or check that the answers are what is trained (data.maskPrompt).`,
        suggest: { path: 'optimizer.lr', value: round2(c.optimizer.lr * 3) },
      })
  }
  if (evals.length >= 3) {
    let best = evals[0]
    for (const e of evals) if (e.valLoss < best.valLoss) best = e
    const last = evals[evals.length - 1]
    const trainAt = (step: number): number => mean(steps.filter((s) => s.step <= step && s.step > step - 10).map((s) => s.ce))
    if (last.step > best.step && last.valLoss > best.valLoss * 1.05 && trainAt(last.step) < trainAt(best.step))
      out.push({
        id: 'overfitting',
        tone: 'warn',
        message: `Overfitting: validation loss rose from ${best.valLoss.toFixed(3)} (step ${best.step}) to ${last.valLoss.toFixed(3)} (step ${last.step}) while the training cross-entropy fell (${trainAt(best.step).toFixed(3)} → ${trainAt(last.step).toFixed(3)}, the mean of the 10 steps up to each); the best checkpoint was step ${best.step}${c.checkpointEvery > 0 ? ' (kept: Export can write it)' : ' (not kept: checkpointEvery 0 keeps only the last step)'}. Stop earlier (earlyStopping.patience) or add data. On a handful of rows to memorise, this is expected: ${ctx.answersText ?? (ctx.answersShown ? 'check the answers below' : "its answers are compared with the base model's when a completed run is evaluated (Did it learn?)")}.`,
        suggest: { path: 'earlyStopping.patience', value: 2 },
      })
  }
  const recentDrop = mean(steps.slice(-10).map((s) => s.droppedFraction))
  if (steps.length > 0 && recentDrop > DROP_WARN) {
    // The next step up, as the warning before a run names it (1.25, Switch Transformer's), where
    // the run was below it; dropless past it ("try 1.25" before and "dropless" after read as a contradiction).
    const set = c.moe.capacityFactorTrain
    const below = typeof set === 'number' && set < 1.25
    out.push({
      id: 'dropping',
      tone: 'warn',
      message: `${(recentDrop * 100).toFixed(1)}% of tokens are dropped by full experts (capacity factor): they skip the MoE block. ${below ? `Raise the capacity factor (now ${fmt(set)}) to 1.25, or set it to dropless.` : 'Set the capacity factor to dropless.'}`,
      suggest: { path: 'moe.capacityFactorTrain', value: below ? 1.25 : 'dropless' },
    })
  }
  return out
}
