/**
 * The training loop: gradient accumulation, clipping, AdamW with a schedule, evaluation, early
 * stopping, metrics and routing statistics, checkpoints, resume, cancel, NaN stop.
 *
 * A run lives in its folder (DESIGN.md): run.json (config, status), metrics.jsonl and
 * routing.jsonl (append-only), log, checkpoints/step-N/ (weights or adapters, optimiser state,
 * trainer state). Every write of a checkpoint or of run.json is atomic.
 */
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { ApiError } from '../../shared/api'
import type { RunConfig } from '../../shared/runConfig'
import type { EvalMetrics, ExpertAlert, LayerShare, RunRecord, RunStatus, StepMetrics } from '../../shared/runs'
import { loadModelAsync, saveModel } from '../engine/checkpoint'
import type { MoeModel } from '../engine/model'
import { disposeGrads, lossAndGrads, objective, type Batch, type RoutingStats } from '../engine/objective'
import type { OffloadOptions } from '../engine/offload'
import { Rng, type Weights } from '../engine/ops'
import { AdamW } from '../engine/optimizer'
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../engine/safetensors'
import type { StageProgress } from '../engine/tasks'
import { writeJsonAtomic } from '../util/atomic'
import { BatchStream, evalBatches, packRows, type DataPosition, type Example } from './batches'
import { decays, scoreExperts, selectExperts, trainableParams, type ExpertSelection } from './freeze'
import { LoraAdapters } from './lora'
import { learningRate } from './schedule'

export type { EvalMetrics, LayerShare, RunRecord, RunStatus, StepMetrics }

export type TrainEvent =
  | { type: 'status'; status: RunStatus; message?: string; step: number }
  | { type: 'step'; metrics: StepMetrics }
  | { type: 'eval'; metrics: EvalMetrics }
  | { type: 'checkpoint'; step: number; dir: string }
  | ({ type: 'alert' } & ExpertAlert)
  | { type: 'log'; line: string }

export interface TrainSpec {
  runDir: string
  baseModelDir: string
  config: RunConfig
  train: Example[]
  validation: Example[]
  padId: number
  /** Continue from the run's last checkpoint. */
  resume?: boolean
  /** Run the frozen experts offloaded within a device budget (LoRA runs only). */
  offload?: OffloadOptions
  /** The workspace dataset it trains on, recorded in run.json. */
  dataset?: string
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
  /** Consecutive low/high-share steps per "layer:expert", for alerts. */
  streaks: Record<string, [number, number]>
}

const stepName = (step: number): string => `step-${step}`

function stepRng(seed: number, step: number, micro: number): Rng {
  return new Rng((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(step + 1, 0x85ebca6b) ^ Math.imul(micro + 1, 0xc2b2ae35)) >>> 0)
}

/** The most recent checkpoint folder of a run, or null. */
export function lastCheckpoint(runDir: string): string | null {
  const dir = join(runDir, 'checkpoints')
  if (!existsSync(dir)) return null
  const steps = readdirSync(dir)
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(join(dir, m[0], 'trainer_state.json')))
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b)
  return steps.length ? join(dir, stepName(steps[steps.length - 1])) : null
}

export function readRunRecord(runDir: string): RunRecord {
  return JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')) as RunRecord
}

/** Total optimiser steps of a run: maxSteps, or epochs over the training split. */
export function plannedSteps(cfg: RunConfig, examples: number): number {
  if (cfg.maxSteps !== null) return cfg.maxSteps
  const rows = Math.max(1, examples)
  return Math.max(1, Math.ceil((cfg.epochs * Math.ceil(rows / cfg.batchSize)) / cfg.gradAccumulation))
}

/** Applies the run's MoE knobs to the model. */
function applyKnobs(model: MoeModel, cfg: RunConfig): void {
  const m = cfg.moe
  const router: Record<string, number | null> = {}
  if (m.capacityFactorTrain !== null) router.capacityFactorTrain = m.capacityFactorTrain
  if (m.capacityFactorEval !== null) router.capacityFactorEval = m.capacityFactorEval
  if (m.routerJitter !== null) router.jitter = m.routerJitter
  model.setKnobs({
    ...(m.auxLossCoef !== null && { routerAuxLossCoef: m.auxLossCoef }),
    ...(m.zLossCoef !== null && { routerZLossCoef: m.zLossCoef }),
    ...(m.expertDropout !== null && { expertDropout: m.expertDropout }),
    ...(m.attentionDropout !== null && { attentionDropout: m.attentionDropout }),
    ...(m.hiddenDropout !== null && { hiddenDropout: m.hiddenDropout }),
    router,
  })
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

/** Runs (or resumes) a fine-tuning run to completion, cancellation or failure. */
export async function train(spec: TrainSpec): Promise<TrainResult> {
  const { runDir, config: cfg } = spec
  mkdirSync(join(runDir, 'checkpoints'), { recursive: true })
  const emit = (e: TrainEvent): void => {
    if (e.type === 'log') appendFileSync(join(runDir, 'log'), `${new Date().toISOString()} ${e.line}\n`)
    spec.onEvent?.(e)
  }
  const log = (line: string): void => emit({ type: 'log', line })

  const trainRows = cfg.data.packing ? packRows(spec.train, cfg.data.maxLength, spec.padId) : spec.train
  const resumeFrom = spec.resume ? lastCheckpoint(runDir) : null
  if (spec.resume && !resumeFrom) log('resume: no checkpoint yet, starting from the base model')

  let record: RunRecord = existsSync(join(runDir, 'run.json'))
    ? readRunRecord(runDir)
    : {
        id: runDir.split(/[\\/]/).pop()!,
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
  if (resumeFrom && JSON.stringify(record.config) !== JSON.stringify(cfg))
    throw new Error(`resume: the run config differs from the one ${runDir} was started with; start a new run to change it`)
  const saveRecord = (patch: Partial<RunRecord>): void => {
    record = { ...record, ...patch, updated: new Date().toISOString() }
    writeJsonAtomic(join(runDir, 'run.json'), record)
  }

  // --- model, adapters, trainable set
  if (spec.offload && cfg.method !== 'lora')
    throw new Error('training with offloaded experts needs method "lora": the offloaded base experts stay frozen')
  const modelDir = resumeFrom && cfg.method !== 'lora' ? resumeFrom : spec.baseModelDir
  let model: MoeModel
  try {
    model = await loadModelAsync(modelDir, { offload: spec.offload, hooks: { signal: spec.signal, onProgress: loadLogger(log, modelDir) } })
  } catch (e) {
    if (!(e instanceof ApiError && e.code === 'cancelled')) throw e
    // Nothing trained yet: the run stays as it was, cancelled.
    const message = `cancelled while loading ${modelDir}`
    saveRecord({ status: 'cancelled', message })
    log(message)
    emit({ type: 'status', status: 'cancelled', message, step: record.step })
    return { status: 'cancelled', step: record.step, message, lastCheckpoint: record.lastCheckpoint, bestValLoss: record.bestValLoss }
  }
  let lora: LoraAdapters | undefined
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
  try {
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
    if (cfg.method === 'lora') {
      lora = new LoraAdapters(model, cfg.lora, cfg.seed)
      if (resumeFrom)
        lora.load(
          loadSafetensors(join(resumeFrom, 'adapter_model.safetensors')).tensors as Map<string, { shape: number[]; data: Float32Array }>,
        )
    }
    if (cfg.esft.enabled && !state.esft) {
      const sample = new BatchStream(trainRows, cfg.batchSize, cfg.seed, spec.padId)
      const batches = Array.from({ length: Math.min(cfg.esft.scoringBatches, sample.batchesPerEpoch) }, () => sample.next())
      const scored = scoreExperts(model, batches, cfg.esft.score)
      state.esft = selectExperts(scored.scores, cfg.esft.threshold)
      log(
        `esft: scored experts by ${cfg.esft.score} on ${scored.tokens} target tokens; training ${Object.entries(state.esft)
          .map(([l, e]) => `layer ${l}: [${e}]`)
          .join(', ')}`,
      )
    }
    const trainable = lora ? lora.variables() : trainableParams(model, cfg, state.esft)
    if (resumeFrom) {
      const o = loadSafetensors(join(resumeFrom, 'optimizer.safetensors')).tensors
      const m = new Map<string, Float32Array>()
      const v = new Map<string, Float32Array>()
      for (const [n, t] of o) (n.startsWith('m.') ? m : v).set(n.slice(2), t.data as Float32Array)
      opt.load({ step: state.step, m, v }, trainable)
    }
    const stream = new BatchStream(trainRows, cfg.batchSize, cfg.seed, spec.padId, state.position)
    const valBatches = evalBatches(spec.validation, cfg.batchSize, spec.padId, cfg.evalBatches)
    const weightsFor = (training: boolean, rng?: Rng): Weights | undefined =>
      lora ? lora.wrap(model.weightSource, { training, rng }) : undefined

    saveRecord({ status: 'running', totalSteps: state.totalSteps, step: state.step, esft: state.esft, message: undefined })
    emit({ type: 'status', status: 'running', step: state.step, message: resumeFrom ? `resumed from ${stepName(state.step)}` : undefined })
    log(
      `${resumeFrom ? 'resuming' : 'starting'}: ${state.totalSteps} steps, ${trainRows.length} training rows, ${spec.validation.length} validation rows, ${trainable.size} trainable tensors (${[...trainable.values()].reduce((a, t) => a + t.size, 0)} values), backend ${tf.getBackend()}`,
    )

    const writeCheckpoint = (): string => {
      const final = join(runDir, 'checkpoints', stepName(state.step))
      const tmp = `${final}.tmp-${process.pid}`
      rmSync(tmp, { recursive: true, force: true })
      mkdirSync(tmp, { recursive: true })
      if (lora) {
        const peft = lora.toPeft(spec.baseModelDir)
        saveSafetensors(join(tmp, 'adapter_model.safetensors'), peft.tensors, { format: 'pt' })
        writeJsonAtomic(join(tmp, 'adapter_config.json'), peft.config)
      } else saveModel(model, tmp)
      const os = opt.state()
      const tensors = new Map<string, TensorToWrite>()
      for (const [n, a] of os.m) tensors.set(`m.${n}`, { dtype: 'F32', shape: trainable.get(n)!.shape, data: a })
      for (const [n, a] of os.v) tensors.set(`v.${n}`, { dtype: 'F32', shape: trainable.get(n)!.shape, data: a })
      saveSafetensors(join(tmp, 'optimizer.safetensors'), tensors)
      writeJsonAtomic(join(tmp, 'trainer_state.json'), { ...state, position: stream.position })
      rmSync(final, { recursive: true, force: true })
      renameSync(tmp, final)
      pruneCheckpoints(runDir, cfg.keepCheckpoints, state.bestStep)
      saveRecord({ lastCheckpoint: final, step: state.step })
      emit({ type: 'checkpoint', step: state.step, dir: final })
      return final
    }

    const evaluate = (): EvalMetrics | null => {
      if (valBatches.length === 0) return null
      let ce = 0
      let aux = 0
      let z = 0
      let targets = 0
      let dropped = 0
      let assignments = 0
      for (const b of valBatches) {
        tf.tidy(() => {
          const o = objective(model, b, { training: false, weights: weightsFor(false) })
          ce += o.ce.dataSync()[0] * o.targets
          targets += o.targets
          aux += o.aux.dataSync()[0]
          z += o.z.dataSync()[0]
          for (const r of o.routing) {
            dropped += r.decision.dropped
            assignments += r.decision.N * r.decision.k
          }
        })
      }
      const m: EvalMetrics = {
        step: state.step,
        valLoss: targets ? ce / targets : 0,
        valAux: aux / valBatches.length,
        valZ: z / valBatches.length,
        valDroppedFraction: assignments ? dropped / assignments : 0,
        valTokens: targets,
      }
      appendFileSync(join(runDir, 'metrics.jsonl'), JSON.stringify({ type: 'eval', ...m }) + '\n')
      emit({ type: 'eval', metrics: m })
      return m
    }

    const started = performance.now()
    const startStep = state.step
    let stopReason: { status: RunStatus; message?: string } | null = null
    while (state.step < state.totalSteps) {
      if (spec.signal?.aborted) {
        stopReason = { status: 'cancelled', message: `cancelled at step ${state.step}` }
        break
      }
      // --- one optimiser step over gradAccumulation micro-batches
      const t0 = performance.now()
      const sums = new Map<string, tf.Tensor>()
      let loss = 0
      let ce = 0
      let aux = 0
      let z = 0
      let dropped = 0
      let tokens = 0
      const layerCounts = new Map<number, { counts: number[]; entropy: number; n: number }>()
      for (let micro = 0; micro < cfg.gradAccumulation; micro++) {
        const batch: Batch = stream.next()
        const rng = stepRng(cfg.seed, state.step, micro)
        const r = lossAndGrads(model, batch, { training: true, rng, weights: weightsFor(true, rng) }, trainable)
        loss += r.parts.loss / cfg.gradAccumulation
        ce += r.parts.ce / cfg.gradAccumulation
        aux += r.parts.aux / cfg.gradAccumulation
        z += r.parts.z / cfg.gradAccumulation
        dropped += r.parts.droppedFraction / cfg.gradAccumulation
        tokens += batch.tokens ?? batch.inputIds.length * batch.inputIds[0].length
        addRouting(layerCounts, r.routing)
        for (const [n, g] of r.grads) {
          const prev = sums.get(n)
          sums.set(n, prev ? tf.tidy(() => tf.add(prev, g)) : tf.clone(g))
          prev?.dispose()
        }
        disposeGrads(r.grads)
      }
      const grads = new Map<string, tf.Tensor>()
      for (const [n, g] of sums) grads.set(n, cfg.gradAccumulation > 1 ? tf.tidy(() => tf.div(g, cfg.gradAccumulation)) : g)
      if (cfg.gradAccumulation > 1) disposeGrads(sums)
      const gradNorm = Math.sqrt(tf.tidy(() => tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g)))).dataSync()[0]))

      if (!Number.isFinite(loss) || !Number.isFinite(gradNorm)) {
        disposeGrads(grads)
        const last = record.lastCheckpoint
        stopReason = {
          status: 'failed',
          message: `the loss became ${Number.isFinite(loss) ? `finite but the gradient norm is ${gradNorm}` : loss} at step ${state.step + 1}; ${last ? `the last good checkpoint is ${last}` : 'no checkpoint was written yet'}. Lower the learning rate or enable gradient clipping.`,
        }
        break
      }
      if (cfg.gradClip > 0 && gradNorm > cfg.gradClip) {
        const coef = cfg.gradClip / (gradNorm + 1e-6)
        for (const [n, g] of grads) {
          grads.set(
            n,
            tf.tidy(() => tf.mul(g, coef)),
          )
          g.dispose()
        }
      }
      const lr = learningRate(state.step, state.totalSteps, cfg.optimizer.lr, cfg.schedule)
      opt.apply(trainable, grads, lr)
      disposeGrads(grads)
      state.step++

      // --- metrics
      const layers: LayerShare[] = [...layerCounts].map(([layer, v]) => {
        const total = v.counts.reduce((a, b) => a + b, 0)
        return { layer, share: v.counts.map((c) => (total ? c / total : 0)), entropy: v.entropy / v.n }
      })
      const elapsed = (performance.now() - started) / 1000
      const stepsDone = state.step - startStep
      const m: StepMetrics = {
        step: state.step,
        totalSteps: state.totalSteps,
        epoch: stream.position.epoch + stream.position.index / Math.max(1, trainRows.length),
        loss,
        ce,
        aux,
        z,
        lr,
        gradNorm,
        droppedFraction: dropped,
        tokens,
        tokensPerSec: tokens / ((performance.now() - t0) / 1000),
        elapsedSec: elapsed,
        etaSec: (elapsed / stepsDone) * (state.totalSteps - state.step),
        layers,
      }
      appendFileSync(join(runDir, 'metrics.jsonl'), JSON.stringify({ type: 'step', ...m, layers: undefined }) + '\n')
      appendFileSync(join(runDir, 'routing.jsonl'), JSON.stringify({ step: state.step, layers }) + '\n')
      emit({ type: 'step', metrics: m })
      for (const a of expertAlerts(state, layers, cfg)) {
        appendFileSync(join(runDir, 'metrics.jsonl'), JSON.stringify(a) + '\n')
        emit(a)
      }

      // --- evaluation, early stopping, checkpoints
      const last = state.step === state.totalSteps
      if ((cfg.evalEvery > 0 && state.step % cfg.evalEvery === 0) || last) {
        const ev = evaluate()
        if (ev) {
          if (state.bestValLoss === null || ev.valLoss < state.bestValLoss - cfg.earlyStopping.minDelta) {
            state.bestValLoss = ev.valLoss
            state.evalsWithoutImprovement = 0
            state.bestStep = state.step
            saveRecord({ bestValLoss: ev.valLoss })
          } else state.evalsWithoutImprovement++
          if (cfg.earlyStopping.patience > 0 && state.evalsWithoutImprovement >= cfg.earlyStopping.patience) {
            stopReason = {
              status: 'completed',
              message: `early stopping: no validation improvement in ${state.evalsWithoutImprovement} evaluations (best ${state.bestValLoss?.toFixed(4)})`,
            }
          }
        }
      }
      state.position = stream.position
      if (last || stopReason || (cfg.checkpointEvery > 0 && state.step % cfg.checkpointEvery === 0)) writeCheckpoint()
      if (stopReason) break
      await new Promise((r) => setImmediate(r)) // let a cancel arrive
    }

    if (stopReason?.status === 'cancelled') writeCheckpoint()
    const status = stopReason?.status ?? 'completed'
    const message = stopReason?.message ?? `completed ${state.step} steps`
    saveRecord({ status, step: state.step, message })
    log(message)
    emit({ type: 'status', status, message, step: state.step })
    return { status, step: state.step, message, lastCheckpoint: record.lastCheckpoint, bestValLoss: record.bestValLoss }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    saveRecord({ status: 'failed', message })
    emit({ type: 'status', status: 'failed', message, step: record.step })
    throw e
  } finally {
    opt.dispose()
    lora?.dispose()
    model.dispose()
  }
}

function addRouting(acc: Map<number, { counts: number[]; entropy: number; n: number }>, routing: RoutingStats[]): void {
  for (const r of routing) {
    const a = acc.get(r.layer) ?? { counts: new Array<number>(r.counts.length).fill(0), entropy: 0, n: 0 }
    r.counts.forEach((c, e) => (a.counts[e] += c))
    a.entropy += r.entropy
    a.n++
    acc.set(r.layer, a)
  }
}

/** Dead (share below deadShare) or collapsing (above collapseShare) experts, reported once per streak. */
function expertAlerts(state: TrainerState, layers: LayerShare[], cfg: RunConfig): TrainEvent[] {
  const out: TrainEvent[] = []
  for (const l of layers) {
    l.share.forEach((s, e) => {
      const key = `${l.layer}:${e}`
      const [low, high] = state.streaks[key] ?? [0, 0]
      const next: [number, number] = [s < cfg.alerts.deadShare ? low + 1 : 0, s > cfg.alerts.collapseShare ? high + 1 : 0]
      state.streaks[key] = next
      if (next[0] === cfg.alerts.steps)
        out.push({
          type: 'alert',
          step: state.step,
          layer: l.layer,
          expert: e,
          kind: 'dead',
          message: `layer ${l.layer} expert ${e} took under ${(cfg.alerts.deadShare * 100).toFixed(1)}% of tokens for ${cfg.alerts.steps} steps`,
        })
      if (next[1] === cfg.alerts.steps)
        out.push({
          type: 'alert',
          step: state.step,
          layer: l.layer,
          expert: e,
          kind: 'collapse',
          message: `layer ${l.layer} expert ${e} took over ${(cfg.alerts.collapseShare * 100).toFixed(0)}% of tokens for ${cfg.alerts.steps} steps`,
        })
    })
  }
  return out
}

/** Keeps the `keep` most recent checkpoints and the best one. */
function pruneCheckpoints(runDir: string, keep: number, best: number | null): void {
  const dir = join(runDir, 'checkpoints')
  const steps = readdirSync(dir)
    .map((n) => /^step-(\d+)$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => b - a)
  for (const s of steps.slice(keep)) if (s !== best) rmSync(join(dir, stepName(s)), { recursive: true, force: true })
}
