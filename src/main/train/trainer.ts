/**
 * The training loop, nanoGPT-sized: set up (model, adapters, optimiser, data, state), then
 * repeat { optimiser step · metrics · evaluation · checkpoint } until the planned steps, an early
 * stop, a cancel, an interrupt or a NaN. Each of those is a named function below; the run folder
 * (src/main/runs/runFolder.ts) owns every file, and the run's lock makes this the one writer.
 *
 * A cancel (runs.cancel) and an interrupt (the app quitting, Ctrl-C, SIGTERM: the signal's reason
 * is INTERRUPT) both stop at the next step boundary and keep a checkpoint of that step; the run is
 * then `cancelled` or `interrupted`, and resumes bit-for-bit where it stopped.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { ApiError } from '../../shared/api'
import { plannedSteps, type RunConfig } from '../../shared/runConfig'
import type { EvalMetrics, ExpertAlert, LayerShare, RunEvent, RunRecord, RunStatus, StepMetrics } from '../../shared/runs'
import { loadModelAsync, readModelConfig, writeModelFolder } from '../engine/checkpoint'
import { backendReport } from '../engine/backend'
import { deviceLock, read, readsSync } from '../engine/device'
import type { MoeModel, TrainingKnobs } from '../engine/model'
import { disposeGrads, lossAndGrads, lossAndGradsLayerwise, objectiveValues, type Batch, type RoutingStats } from '../engine/objective'
import { paramSpecs, type MoeConfig } from '../../shared/modelConfig'
import { defaultBudget, type TrainingPlan } from '../engine/plan'
import { Rng, sumInOrder, type Weights } from '../engine/ops'
import { AdamW } from '../engine/optimizer'
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../engine/safetensors'
import type { StageProgress } from '../engine/tasks'
import { RunFolder, stepName, type RunLock } from '../runs/runFolder'
import { writeJsonAtomic } from '../util/atomic'
import { BatchStream, evalBatches, packRows, type DataPosition, type Example } from './batches'
import { decays, scoreExperts, selectExperts, trainableCount, trainableParams, type ExpertSelection } from './freeze'
import { LoraAdapters, loraTargetNames } from './lora'
import { learningRate } from './schedule'

export type { EvalMetrics, LayerShare, RunRecord, RunStatus, StepMetrics }

/** The abort reason that means "the process is going away": the run ends `interrupted`. */
export const INTERRUPT = 'interrupt'

/** What the trainer reports: the run events of src/shared/runs.ts, for this run. */
export type TrainEvent = RunEvent

export interface TrainSpec {
  runDir: string
  baseModelDir: string
  config: RunConfig
  train: Example[]
  validation: Example[]
  padId: number
  /** Continue from the run's last checkpoint. */
  resume?: boolean
  /** The workspace dataset it trains on, recorded in run.json. */
  dataset?: string
  /** The run's lock, when the caller holds it already (the engine's run queue); else train() takes it. */
  lock?: RunLock
  /** Abort to stop at the next step boundary; reason INTERRUPT ends the run `interrupted`, anything else `cancelled`. */
  signal?: AbortSignal
  onEvent?: (e: TrainEvent) => void
}

export interface TrainResult {
  status: RunStatus
  step: number
  message?: string
  lastCheckpoint: string | null
  bestValLoss: number | null
}

interface TrainerState {
  step: number
  position: DataPosition
  bestValLoss: number | null
  evalsWithoutImprovement: number
  /** Step of the best validation loss (its checkpoint is never pruned). */
  bestStep: number | null
  totalSteps: number
  esft?: ExpertSelection
  /** Per "layer:expert", for alerts (a checkpoint of an older version holds [low, high] pairs). */
  streaks: Record<string, ExpertStreak | [number, number]>
}

/** One expert's alert state: its streaks, and the alerts that stand (not yet recovered from). */
export interface ExpertStreak {
  /** Consecutive steps under deadShare (judged steps only). */
  low: number
  /** Consecutive steps over collapseShare. */
  high: number
  /** Judged steps at or over deadShare in a row since its dead alert; absent where none stands. */
  lowCleared?: number
  /** Steps at or under collapseShare in a row since its collapse alert; absent where none stands. */
  highCleared?: number
}

/** Everything one run's loop works with. */
interface Session {
  folder: RunFolder
  cfg: RunConfig
  spec: TrainSpec
  model: MoeModel
  lora?: LoraAdapters
  opt: AdamW
  trainable: Map<string, tf.Variable>
  /**
   * Whether this run trains a router. Without one, dead or collapsed experts are the base model's
   * (and belong on the Models and Experts screens), not alarms about this run.
   */
  routerLearns: boolean
  stream: BatchStream
  valBatches: Batch[]
  state: TrainerState
  trainRows: number
  emit: (e: TrainEvent) => void
  /** run.json as this run last wrote it (shared with train()'s own bookkeeping). */
  run: { record: RunRecord }
  save(patch: Partial<RunRecord>): void
  /** Seconds the run trained before this session (a resume): elapsed counts from the run's start. */
  elapsedBefore: number
}

function stepRng(seed: number, step: number, micro: number): Rng {
  return new Rng((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ Math.imul(micro + 1, 0xc2b2ae35)) >>> 0)
}

/** What the planner reserves for a run: its trainable values, batch and sequence length. */
export function trainingPlan(c: MoeConfig, cfg: RunConfig): TrainingPlan {
  const specs = paramSpecs(c)
  let trainableParams = 0
  if (cfg.method === 'lora') {
    for (const name of loraTargetNames(specs, cfg.lora.targets)) {
      const [out, inp] = specs.find((s) => s.name === name)!.shape
      trainableParams += cfg.lora.rank * (out + inp)
    }
  } else trainableParams = trainableCount(c, cfg) // ESFT: all experts, the most it may choose
  return {
    method: cfg.method,
    trainableParams,
    batch: cfg.batchSize,
    seqLength: cfg.data.maxLength,
    ...(cfg.moe.topK !== null && { topK: cfg.moe.topK }),
  }
}

/** The run's MoE knobs (config.moe: null keeps the model's own value). */
export function runKnobs(cfg: RunConfig): TrainingKnobs {
  const m = cfg.moe
  const router: Record<string, number | null> = {}
  // null keeps the model's capacity; "dropless" removes it.
  if (m.capacityFactorTrain !== null) router.capacityFactorTrain = m.capacityFactorTrain === 'dropless' ? null : m.capacityFactorTrain
  if (m.capacityFactorEval !== null) router.capacityFactorEval = m.capacityFactorEval === 'dropless' ? null : m.capacityFactorEval
  if (m.routerJitter !== null) router.jitter = m.routerJitter
  return {
    ...(m.topK !== null && { topK: m.topK }),
    ...(m.auxLossCoef !== null && { routerAuxLossCoef: m.auxLossCoef }),
    ...(m.zLossCoef !== null && { routerZLossCoef: m.zLossCoef }),
    ...(m.importanceLossCoef !== null && { routerImportanceLossCoef: m.importanceLossCoef }),
    ...(m.loadLossCoef !== null && { routerLoadLossCoef: m.loadLossCoef }),
    ...(m.expertDropout !== null && { expertDropout: m.expertDropout }),
    ...(m.tokenDrop !== null && { tokenDrop: m.tokenDrop }),
    ...(m.attentionDropout !== null && { attentionDropout: m.attentionDropout }),
    ...(m.hiddenDropout !== null && { hiddenDropout: m.hiddenDropout }),
    router,
  }
}

/** Applies the run's MoE knobs to the model. */
function applyKnobs(model: MoeModel, cfg: RunConfig): void {
  model.setKnobs(runKnobs(cfg))
}

/** Logs a model load's progress every 2 s (a large model takes a while before the first step). */
function loadLogger(log: (line: string) => void, dir: string): (p: StageProgress) => void {
  let last = Date.now()
  return (p) => {
    if (Date.now() - last < 2000 || p.total <= 0) return
    last = Date.now()
    log(`loading ${dir}: ${Math.round((100 * p.done) / p.total)}% of ${(p.total / 2 ** 20).toFixed(0)} MiB`)
  }
}

/** How an abort of `signal` ends the run. */
function stopStatus(signal: AbortSignal | undefined): 'interrupted' | 'cancelled' {
  return signal?.reason === INTERRUPT ? 'interrupted' : 'cancelled'
}

/** How a stop reads in a run's message: "stopped" for the Stop button's (status cancelled; it resumes too). */
function stopWord(signal: AbortSignal | undefined): string {
  return stopStatus(signal) === 'cancelled' ? 'stopped' : 'interrupted'
}

/** Runs (or resumes) a fine-tuning run to completion, cancellation, interruption or failure. */
export async function train(spec: TrainSpec): Promise<TrainResult> {
  const folder = new RunFolder(spec.runDir)
  const lock = spec.lock ?? folder.acquire('a training run')
  try {
    return await runTraining(folder, spec)
  } finally {
    if (!spec.lock) lock.release()
  }
}

async function runTraining(folder: RunFolder, spec: TrainSpec): Promise<TrainResult> {
  const cfg = spec.config
  const runId = folder.id
  const emit = (e: TrainEvent): void => {
    if (e.type === 'run.log') folder.appendLog(e.line)
    spec.onEvent?.(e)
  }
  const log = (line: string): void => emit({ type: 'run.log', runId, line })

  folder.cleanOrphans()
  const resumeFrom = spec.resume ? folder.lastCheckpoint() : null
  if (spec.resume && !resumeFrom) log('resume: no checkpoint yet, starting from the base model')

  const initial: RunRecord = folder.tryRead() ?? {
    id: runId,
    status: 'created',
    config: cfg,
    baseModel: spec.baseModelDir,
    dataset: spec.dataset,
    created: new Date().toISOString(),
    updated: new Date().toISOString(),
    step: 0,
    totalSteps: 0,
    bestValLoss: null,
    lastCheckpoint: null,
  }
  if (resumeFrom && JSON.stringify(initial.config) !== JSON.stringify(cfg))
    throw new Error(`resume: the run config differs from the one ${spec.runDir} was started with; start a new run to change it`)
  const run = { record: initial }
  const save = (patch: Partial<RunRecord>): void => {
    run.record = folder.write({ ...run.record, ...patch, updated: new Date().toISOString() })
  }
  const finish = (status: RunStatus, message: string, step: number): TrainResult => {
    save({ status, step, message })
    log(message)
    emit({ type: 'run.status', runId, status, message, step })
    return { status, step, message, lastCheckpoint: run.record.lastCheckpoint, bestValLoss: run.record.bestValLoss }
  }

  // --- the model
  const modelDir = resumeFrom && cfg.method !== 'lora' ? resumeFrom : spec.baseModelDir
  let model: MoeModel
  try {
    const training = trainingPlan(readModelConfig(modelDir), cfg)
    // The run's budget (config.offload): the planner reserves room for the run and pages the rest.
    const budget = cfg.offload.budgetBytes ?? defaultBudget(backendReport()?.name)
    model = await loadModelAsync(modelDir, {
      offload: { budgetBytes: budget, storage: cfg.offload.storage },
      training,
      hooks: { signal: spec.signal, onProgress: loadLogger(log, modelDir) },
    })
    if (model.paging) log(`paging: ${model.paging.placement.fit.message}`)
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'cancelled')) {
      // Recorded and announced here (the run queue only reports failures before train() starts).
      const message = e instanceof Error ? e.message : String(e)
      save({ status: 'failed', message })
      log(message)
      emit({ type: 'run.status', runId, status: 'failed', message, step: run.record.step })
      throw e
    }
    // Nothing trained in this session: the run keeps its steps and checkpoints as they were.
    return finish(stopStatus(spec.signal), `${stopWord(spec.signal)} while loading ${modelDir}`, run.record.step)
  }

  let session: Session | undefined
  try {
    session = await setUp(folder, spec, model, resumeFrom, run, emit, save)
    const s = session
    const pace: Pace = { started: performance.now(), startStep: s.state.step }
    let stop: { status: RunStatus; message: string } | null = null
    while (s.state.step < s.state.totalSteps) {
      if (spec.signal?.aborted) {
        stop = { status: stopStatus(spec.signal), message: `${stopWord(spec.signal)} at step ${s.state.step}` }
        break
      }
      const outcome = await optimizerStep(s)
      if ('failure' in outcome) {
        stop = { status: 'failed', message: outcome.failure }
        break
      }
      recordStep(s, outcome, pace)
      const last = s.state.step === s.state.totalSteps
      if ((cfg.evalEvery > 0 && s.state.step % cfg.evalEvery === 0) || last) stop = await evaluateAndTrack(s)
      s.state.position = s.stream.position
      // A new best validation loss is checkpointed too (it is never pruned): "the best checkpoint
      // was step N" must name a folder that exists, whatever evalEvery and checkpointEvery are.
      const newBest = cfg.checkpointEvery > 0 && s.state.bestStep === s.state.step
      if (last || stop || newBest || (cfg.checkpointEvery > 0 && s.state.step % cfg.checkpointEvery === 0)) await writeCheckpoint(s)
      if (stop) break
      await new Promise((r) => setImmediate(r)) // let a cancel arrive
    }
    // A stop keeps a checkpoint of the step reached, unless the loop just wrote that one: writing
    // the same step again would remove the complete folder before the new one is in place.
    const stopped = stop?.status === 'cancelled' || stop?.status === 'interrupted'
    if (stopped && folder.lastCheckpoint() !== folder.checkpointDir(s.state.step)) await writeCheckpoint(s)
    return finish(
      stop?.status ?? 'completed',
      stop?.message ?? `completed ${s.state.step} ${s.state.step === 1 ? 'step' : 'steps'}`,
      s.state.step,
    )
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    save({ status: 'failed', message })
    emit({ type: 'run.status', runId, status: 'failed', message, step: run.record.step })
    throw e
  } finally {
    session?.opt.dispose()
    session?.lora?.dispose()
    model.dispose()
  }
}

/** Adapters, the trainable set, optimiser, data and trainer state, fresh or from a checkpoint. */
async function setUp(
  folder: RunFolder,
  spec: TrainSpec,
  model: MoeModel,
  resumeFrom: string | null,
  run: { record: RunRecord },
  emit: (e: TrainEvent) => void,
  save: (patch: Partial<RunRecord>) => void,
): Promise<Session> {
  const cfg = spec.config
  const trainRows = cfg.data.packing ? packRows(spec.train, cfg.data.maxLength, spec.padId) : spec.train
  applyKnobs(model, cfg)
  let state: TrainerState = {
    step: 0,
    position: { epoch: 0, index: 0 },
    bestValLoss: null,
    evalsWithoutImprovement: 0,
    bestStep: null,
    totalSteps: plannedSteps(cfg, trainRows.length),
    streaks: {},
  }
  if (resumeFrom) state = JSON.parse(readFileSync(join(resumeFrom, 'trainer_state.json'), 'utf8')) as TrainerState
  // Steps logged after the checkpoint we resume from are trained (and logged) again.
  const elapsedBefore = folder.truncateLogs(state.step)

  const lora = cfg.method === 'lora' ? new LoraAdapters(model, cfg.lora, cfg.seed) : undefined
  if (lora && resumeFrom)
    lora.load(
      loadSafetensors(join(resumeFrom, 'adapter_model.safetensors')).tensors as Map<string, { shape: number[]; data: Float32Array }>,
    )
  const log = (line: string): void => emit({ type: 'run.log', runId: folder.id, line })
  if (cfg.esft.enabled && !state.esft) {
    const sample = new BatchStream(trainRows, cfg.batchSize, cfg.seed, spec.padId)
    const batches = Array.from({ length: Math.min(cfg.esft.scoringBatches, sample.batchesPerEpoch) }, () => sample.next())
    const scored = await deviceLock.run(() => scoreExperts(model, batches, cfg.esft.score))
    state.esft = selectExperts(scored.scores, cfg.esft.threshold)
    log(
      `esft: scored experts by ${cfg.esft.score} on ${scored.tokens} target tokens; training ${Object.entries(state.esft)
        .map(([l, e]) => `layer ${l}: [${e}]`)
        .join(', ')}`,
    )
  }
  const trainable = lora ? lora.variables() : trainableParams(model, cfg, state.esft)
  // Frozen weights say so: an op may then skip their gradient (an lm_head's is V × H).
  const trained = new Set(trainable.values())
  for (const v of model.params.values()) v.trainable = trained.has(v)
  const opt = new AdamW({
    betas: cfg.optimizer.betas,
    eps: cfg.optimizer.eps,
    weightDecay: cfg.optimizer.weightDecay,
    decay: (n) =>
      decays(
        model.specs.find((s) => s.name === n),
        cfg,
      ),
  })
  if (resumeFrom) {
    const o = loadSafetensors(join(resumeFrom, 'optimizer.safetensors')).tensors
    const m = new Map<string, Float32Array>()
    const v = new Map<string, Float32Array>()
    for (const [n, t] of o) (n.startsWith('m.') ? m : v).set(n.slice(2), t.data as Float32Array)
    opt.load({ step: state.step, m, v }, trainable)
  }
  const session: Session = {
    folder,
    cfg,
    spec,
    model,
    lora,
    opt,
    trainable,
    routerLearns: lora
      ? cfg.lora.targets.includes('router')
      : model.specs.some((sp) => (sp.kind === 'router' || sp.kind === 'router_noise') && trained.has(model.params.get(sp.name)!)),
    stream: new BatchStream(trainRows, cfg.batchSize, cfg.seed, spec.padId, state.position),
    valBatches: evalBatches(spec.validation, cfg.batchSize, spec.padId, cfg.evalBatches),
    state,
    elapsedBefore,
    trainRows: trainRows.length,
    emit,
    run,
    save,
  }
  session.save({ status: 'running', totalSteps: state.totalSteps, step: state.step, esft: state.esft, message: undefined })
  emit({
    type: 'run.status',
    runId: folder.id,
    status: 'running',
    step: state.step,
    message: resumeFrom ? `resumed from ${stepName(state.step)}` : undefined,
  })
  const values = [...trainable.values()].reduce((a, t) => a + t.size, 0)
  log(
    startLine({
      resumeStep: resumeFrom ? state.step : null,
      steps: state.totalSteps,
      trainRows: trainRows.length,
      validationRows: spec.validation.length,
      tensors: trainable.size,
      values,
      backend: tf.getBackend(),
    }),
  )
  return session
}

/** The log's first line of a run's start or resume: its size, in words ("1 validation row"). */
export function startLine(p: {
  resumeStep: number | null
  steps: number
  trainRows: number
  validationRows: number
  tensors: number
  values: number
  backend: string
}): string {
  const count = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? '' : 's'}`
  return `${p.resumeStep !== null ? `resuming at step ${p.resumeStep} of` : 'starting:'} ${count(p.steps, 'step')}, ${count(p.trainRows, 'training row')}, ${count(p.validationRows, 'validation row')}, ${count(p.tensors, 'trainable tensor')} (${p.values} values), backend ${p.backend}`
}

/** The weights a forward reads: the model's own, with the LoRA path added for a LoRA run. */
function weightsFor(s: Session, training: boolean, rng?: Rng): Weights | undefined {
  return s.lora ? s.lora.wrap(s.model.weightSource, { training, rng }) : undefined
}

interface StepOutcome {
  loss: number
  ce: number
  aux: number
  z: number
  importance: number
  load: number
  dropped: number
  tokens: number
  lr: number
  gradNorm: number
  seconds: number
  routing: Map<number, LayerAcc>
}

/**
 * One optimiser step: gradAccumulation micro-batches, their mean gradient, clipping to gradClip,
 * AdamW at the scheduled learning rate. A non-finite loss or gradient applies nothing and
 * returns the failure in words. The step holds the device lock; where the backend cannot read
 * back synchronously (webgpu) the gradients are taken layer by layer.
 */
function optimizerStep(s: Session): Promise<StepOutcome | { failure: string }> {
  return deviceLock.run(() => optimizerStepLocked(s))
}

async function optimizerStepLocked(s: Session): Promise<StepOutcome | { failure: string }> {
  const { cfg, state } = s
  const t0 = performance.now()
  const sums = new Map<string, tf.Tensor>()
  const out: StepOutcome = {
    loss: 0,
    ce: 0,
    aux: 0,
    z: 0,
    importance: 0,
    load: 0,
    dropped: 0,
    tokens: 0,
    lr: 0,
    gradNorm: 0,
    seconds: 0,
    routing: new Map(),
  }
  const n = cfg.gradAccumulation
  for (let micro = 0; micro < n; micro++) {
    const batch: Batch = s.stream.next()
    const rng = stepRng(cfg.seed, state.step, micro)
    const fopts = { training: true, rng, weights: weightsFor(s, true, rng) }
    // Layer by layer where reads are asynchronous (webgpu), and for a paged model (one layer's
    // activations at a time instead of the whole tape).
    const r =
      readsSync() && !s.model.paging
        ? lossAndGrads(s.model, batch, fopts, s.trainable)
        : await lossAndGradsLayerwise(s.model, batch, fopts, s.trainable)
    out.loss += r.parts.loss / n
    out.ce += r.parts.ce / n
    out.aux += r.parts.aux / n
    out.z += r.parts.z / n
    out.importance += r.parts.importance / n
    out.load += r.parts.load / n
    out.dropped += r.parts.droppedFraction / n
    out.tokens += batch.tokens ?? batch.inputIds.length * batch.inputIds[0].length
    addRouting(out.routing, r.routing)
    for (const [name, g] of r.grads) {
      const prev = sums.get(name)
      sums.set(name, prev ? tf.tidy(() => tf.add(prev, g)) : tf.clone(g))
      prev?.dispose()
    }
    disposeGrads(r.grads)
  }
  const grads = new Map<string, tf.Tensor>()
  for (const [name, g] of sums) grads.set(name, n > 1 ? tf.tidy(() => tf.div(g, n)) : g)
  if (n > 1) disposeGrads(sums)
  const normSq = tf.tidy(() => sumInOrder([...grads.values()].map((g) => tf.sum(tf.square(g)))))
  out.gradNorm = Math.sqrt((await read(normSq))[0])
  normSq.dispose()

  if (!Number.isFinite(out.loss) || !Number.isFinite(out.gradNorm)) {
    disposeGrads(grads)
    const last = s.run.record.lastCheckpoint
    const what = Number.isFinite(out.loss) ? `finite but the gradient norm is ${out.gradNorm}` : String(out.loss)
    const advice =
      cfg.gradClip > 0
        ? `Lower the learning rate (now ${cfg.optimizer.lr}); gradient clipping at ${cfg.gradClip} is already on`
        : 'Lower the learning rate or turn on gradient clipping (gradClip 1)'
    return {
      failure: `the loss became ${what} at step ${state.step + 1}; ${last ? `the last good checkpoint is ${last}` : 'no checkpoint was written yet'}. ${advice}.`,
    }
  }
  if (cfg.gradClip > 0 && out.gradNorm > cfg.gradClip) {
    const coef = cfg.gradClip / (out.gradNorm + 1e-6)
    for (const [name, g] of grads) {
      grads.set(
        name,
        tf.tidy(() => tf.mul(g, coef)),
      )
      g.dispose()
    }
  }
  out.lr = learningRate(state.step, state.totalSteps, cfg.optimizer.lr, cfg.schedule)
  s.opt.apply(s.trainable, grads, out.lr)
  disposeGrads(grads)
  state.step++
  out.seconds = (performance.now() - t0) / 1000
  return out
}

/** When this session's training started, at which step, and when its first step was done (ms). */
interface Pace {
  started: number
  startStep: number
  firstDone?: number
}

/** The metrics sink: a step's line in metrics.jsonl and routing.jsonl, its event, and expert alerts. */
function recordStep(s: Session, o: StepOutcome, pace: Pace): void {
  const { state, folder } = s
  const { started, startStep } = pace
  const assignments = [...o.routing].map(([, v]) => v.counts.reduce((a, b) => a + b, 0))
  const layers: LayerShare[] = [...o.routing].map(([layer, v], i) => {
    const total = assignments[i]
    return { layer, share: v.counts.map((c) => (total ? c / total : 0)), entropy: v.entropy / v.n, droppedTokens: v.droppedTokens }
  })
  // This session's pace gives the ETA; the run's time so far includes the sessions before a resume.
  // A session's first step also builds what later steps reuse (kernels, product graphs, buffers):
  // it is left out of the pace from the second step on (a resumed run's first ETA read 12 min,
  // the next 2 min 18 s).
  const now = performance.now()
  const elapsed = (now - started) / 1000
  const done = state.step - startStep
  if (done === 1) pace.firstDone = now
  const perStep = done >= 2 && pace.firstDone !== undefined ? (now - pace.firstDone) / 1000 / (done - 1) : elapsed / done
  const m: StepMetrics = {
    step: state.step,
    totalSteps: state.totalSteps,
    epoch: s.stream.position.epoch + s.stream.position.index / Math.max(1, s.trainRows),
    loss: o.loss,
    ce: o.ce,
    aux: o.aux,
    z: o.z,
    importance: o.importance,
    load: o.load,
    lr: o.lr,
    gradNorm: o.gradNorm,
    droppedFraction: o.dropped,
    tokens: o.tokens,
    tokensPerSec: o.tokens / Math.max(o.seconds, 1e-9),
    elapsedSec: s.elapsedBefore + elapsed,
    etaSec: perStep * (state.totalSteps - state.step),
    layers,
  }
  const { layers: _layers, ...line } = m
  folder.appendMetrics({ type: 'step', ...line })
  folder.appendRouting(state.step, layers)
  s.emit({ type: 'run.step', runId: folder.id, metrics: m })
  for (const a of s.routerLearns ? expertAlerts(state, layers, s.cfg, assignments) : []) {
    folder.appendMetrics({ type: 'alert', ...a })
    s.emit({ type: 'run.alert', runId: folder.id, ...a })
  }
}

/** Validation loss over the validation batches (null without a validation split). */
async function evaluate(s: Session): Promise<EvalMetrics | null> {
  if (s.valBatches.length === 0) return null
  let ce = 0
  let aux = 0
  let z = 0
  let importance = 0
  let load = 0
  let targets = 0
  let dropped = 0
  let assignments = 0
  for (const b of s.valBatches) {
    const o = await deviceLock.run(() => objectiveValues(s.model, b, { training: false, weights: weightsFor(s, false) }))
    ce += o.ce * o.targets
    targets += o.targets
    aux += o.aux
    z += o.z
    importance += o.importance
    load += o.load
    for (const r of o.routing) {
      dropped += r.dropped
      assignments += r.tokens * s.model.config.topK
    }
  }
  return {
    step: s.state.step,
    valLoss: targets ? ce / targets : 0,
    valAux: aux / s.valBatches.length,
    valZ: z / s.valBatches.length,
    valImportance: importance / s.valBatches.length,
    valLoad: load / s.valBatches.length,
    valDroppedFraction: assignments ? dropped / assignments : 0,
    valTokens: targets,
  }
}

/** Evaluates, logs it, tracks the best validation loss; returns an early stop when patience runs out. */
async function evaluateAndTrack(s: Session): Promise<{ status: RunStatus; message: string } | null> {
  const ev = await evaluate(s)
  if (!ev) return null
  s.folder.appendMetrics({ type: 'eval', ...ev })
  s.emit({ type: 'run.eval', runId: s.folder.id, metrics: ev })
  const { state, cfg } = s
  if (state.bestValLoss === null || ev.valLoss < state.bestValLoss - cfg.earlyStopping.minDelta) {
    state.bestValLoss = ev.valLoss
    state.evalsWithoutImprovement = 0
    state.bestStep = state.step
    s.save({ bestValLoss: ev.valLoss })
  } else state.evalsWithoutImprovement++
  if (cfg.earlyStopping.patience > 0 && state.evalsWithoutImprovement >= cfg.earlyStopping.patience)
    return {
      status: 'completed',
      message: `early stopping: no validation improvement in ${state.evalsWithoutImprovement} evaluations (best ${state.bestValLoss?.toFixed(4)} at ${stepName(state.bestStep ?? 0)})`,
    }
  return null
}

/** Checkpoint of the current step: weights (or PEFT adapters), optimiser state, trainer state. */
async function writeCheckpoint(s: Session): Promise<string> {
  const { state, folder, cfg } = s
  // Read everything back first (asynchronously: every backend), then write the folder at once.
  const { peft, weights, os } = await deviceLock.run(async () => ({
    peft: s.lora ? await s.lora.toPeft(s.spec.baseModelDir) : undefined,
    weights: s.lora ? undefined : await modelWeights(s.model),
    os: await s.opt.stateAsync(),
  }))
  const final = folder.writeCheckpoint(state.step, (tmp) => {
    if (peft) {
      saveSafetensors(join(tmp, 'adapter_model.safetensors'), peft.tensors, { format: 'pt' })
      writeJsonAtomic(join(tmp, 'adapter_config.json'), peft.config)
    } else writeModelFolder(s.model.config, s.model.specs, weights!, tmp)
    const tensors = new Map<string, TensorToWrite>()
    for (const [n, a] of os.m) tensors.set(`m.${n}`, { dtype: 'F32', shape: s.trainable.get(n)!.shape, data: a })
    for (const [n, a] of os.v) tensors.set(`v.${n}`, { dtype: 'F32', shape: s.trainable.get(n)!.shape, data: a })
    saveSafetensors(join(tmp, 'optimizer.safetensors'), tensors)
    // Written last: a checkpoint counts as complete once this file exists.
    writeJsonAtomic(join(tmp, 'trainer_state.json'), { ...state, position: s.stream.position })
  })
  folder.pruneCheckpoints(cfg.keepCheckpoints, state.bestStep)
  s.save({ lastCheckpoint: final, step: state.step })
  s.emit({ type: 'run.checkpoint', runId: folder.id, step: state.step, dir: final })
  return final
}

/** Every weight of a model, read back asynchronously. */
async function modelWeights(model: MoeModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>()
  for (const [name, v] of model.params) out.set(name, await read(v))
  return out
}

/** One sparse layer's routing summed over a step's micro-batches. */
interface LayerAcc {
  counts: number[]
  entropy: number
  n: number
  droppedTokens: number
}

function addRouting(acc: Map<number, LayerAcc>, routing: RoutingStats[]): void {
  for (const r of routing) {
    const a = acc.get(r.layer) ?? { counts: new Array<number>(r.counts.length).fill(0), entropy: 0, n: 0, droppedTokens: 0 }
    r.counts.forEach((c, e) => (a.counts[e] += c))
    a.entropy += r.entropy
    a.droppedTokens += r.droppedTokens
    a.n++
    acc.set(r.layer, a)
  }
}

/**
 * Dead (share below deadShare) or collapsing (above collapseShare) experts: reported when a streak
 * reaches `alerts.steps` consecutive steps. An alert then stands until the expert has been back in
 * the band for `alerts.steps` steps in a row: an expert that dips out of its streak for a step and
 * back is not reported again (a Quick fine-tune of the bundled model on the arithmetic sample
 * printed the same expert three times, two dozen alerts in all).
 * A step with fewer of a layer's (token, expert) assignments (`assignments`, per layer) than
 * 1 / deadShare says nothing about dead experts: a share under deadShare is then no token at all,
 * which a few short rows give most experts by chance (a batch of one row alerted on dozens); it
 * ends a dead streak and counts toward no recovery.
 * Updates `state.streaks`.
 */
export function expertAlerts(
  state: Pick<TrainerState, 'step' | 'streaks'>,
  layers: LayerShare[],
  cfg: Pick<RunConfig, 'alerts'>,
  assignments?: number[],
): ExpertAlert[] {
  const out: ExpertAlert[] = []
  const { steps, deadShare, collapseShare } = cfg.alerts
  layers.forEach((l, i) => {
    const judgeDead = assignments === undefined || assignments[i] * deadShare >= 1
    l.share.forEach((s, e) => {
      const key = `${l.layer}:${e}`
      const was = state.streaks[key] ?? { low: 0, high: 0 }
      const prev: ExpertStreak = Array.isArray(was) ? { low: was[0], high: was[1] } : was
      const low = judgeDead && s < deadShare
      const high = s > collapseShare
      const next: ExpertStreak = { low: low ? prev.low + 1 : 0, high: high ? prev.high + 1 : 0 }
      // A standing alert clears after `steps` steps back in the band (for dead: judged steps).
      const lowCleared = prev.lowCleared === undefined ? undefined : low ? 0 : prev.lowCleared + (judgeDead ? 1 : 0)
      const highCleared = prev.highCleared === undefined ? undefined : high ? 0 : prev.highCleared + 1
      if (lowCleared !== undefined && lowCleared < steps) next.lowCleared = lowCleared
      if (highCleared !== undefined && highCleared < steps) next.highCleared = highCleared
      if (next.low === steps && next.lowCleared === undefined) {
        next.lowCleared = 0
        // Under the share from the run's first step on: the model sends this data elsewhere (a
        // narrow dataset does), which training did not cause; the usual advice would fight it.
        const fromStart = next.low === state.step
        out.push({
          step: state.step,
          layer: l.layer,
          expert: e,
          kind: 'dead',
          message: fromStart
            ? `layer ${l.layer} expert ${e} took under ${(deadShare * 100).toFixed(1)}% of tokens for ${steps} steps, from the run's first: raise the load-balancing loss coefficient (moe.auxLossCoef) only if every expert should learn this data (the model sends it to other experts, as it does a narrow dataset's)`
            : `layer ${l.layer} expert ${e} took under ${(deadShare * 100).toFixed(1)}% of tokens for ${steps} steps: raise the load-balancing loss coefficient (moe.auxLossCoef) or the router jitter (moe.routerJitter) so the router tries it again`,
        })
      }
      if (next.high === steps && next.highCleared === undefined) {
        next.highCleared = 0
        out.push({
          step: state.step,
          layer: l.layer,
          expert: e,
          kind: 'collapse',
          message: `layer ${l.layer} expert ${e} took over ${(collapseShare * 100).toFixed(0)}% of tokens for ${steps} steps: raise the load-balancing loss coefficient (moe.auxLossCoef), or lower the learning rate if it came on suddenly`,
        })
      }
      state.streaks[key] = next
    })
  })
  return out
}
