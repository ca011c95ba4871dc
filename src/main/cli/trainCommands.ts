/**
 * `moe-workbench train` and `moe-workbench export`: fine-tune from the command line with a
 * progress bar, ETA and a final summary; the same run config drives the app.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { applyOverrides, validateRunConfig, type RunConfig } from '../../shared/runConfig'
import { inspectDataset } from '../data/inspect'
import { datasetDir, importDataset } from '../data/workspace'
import { encodeDataset } from '../engine/jobs'
import { describeInspection, workspaceFromFlag } from './datasetCommands'
import { exportRun } from '../train/export'
import { lastCheckpoint, readRunRecord, train, type TrainEvent } from '../train/trainer'
import { backendFromFlag, UsageError, type CliIo, type ParsedValues } from './util'

/** Seconds as "1h02m", "3m05s" or "12s". */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return '?'
  const s = Math.max(0, Math.round(sec))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  if (h) return `${h}h${String(m).padStart(2, '0')}m`
  if (m) return `${m}m${String(s % 60).padStart(2, '0')}s`
  return `${s}s`
}

/** A text progress bar: [#####.....] 50%. */
export function progressBar(done: number, total: number, width = 24): string {
  const f = total > 0 ? Math.min(1, done / total) : 0
  const filled = Math.round(f * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}%`
}

function readRunConfigFile(file: string | undefined, sets: string[]): RunConfig {
  let base: Record<string, unknown> = {}
  if (file) {
    if (!existsSync(file)) throw new UsageError(`--config: ${file} does not exist`)
    try {
      base = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`)
    }
  }
  return validateRunConfig(applyOverrides(base, sets))
}

/**
 * A dataset id of the workspace, or a file, imported first (its report printed) so that the run
 * trains on the workspace's copy, as runs started from the app do.
 */
async function resolveDataset(workspace: string, arg: string, valRatio: number, io: CliIo): Promise<string> {
  const path = resolve(arg)
  if (existsSync(path) && statSync(path).isFile()) {
    const inspected = await inspectDataset(path)
    for (const line of describeInspection(inspected)) io.err(line)
    if (inspected.report.invalid > 0)
      throw new Error(
        `${path}: ${inspected.report.invalid} invalid rows; fix them or import the valid ones with: moe-workbench dataset import ${arg} --accept-invalid`,
      )
    const m = await importDataset(workspace, path, { split: { validation: valRatio, seed: 0 } })
    io.err(`imported ${arg} as dataset ${m.id} (${m.split.train} train, ${m.split.validationRows} validation rows)`)
    return m.id
  }
  if (existsSync(join(datasetDir(workspace, arg), 'manifest.json'))) return arg
  throw new UsageError(`--dataset: "${arg}" is neither a file nor a dataset of ${workspace} (see moe-workbench dataset list)`)
}

export async function trainCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const sets = (values.set as string[] | undefined) ?? []
  const resumeDir = typeof values.resume === 'string' ? resolve(values.resume) : undefined
  const record = resumeDir ? readRunRecord(resumeDir) : undefined
  const modelDir = record ? record.baseModel : typeof values.model === 'string' ? resolve(values.model) : undefined
  if (!modelDir) throw new UsageError('--model is required (or --resume RUN_DIR)')
  if (!existsSync(modelDir) || !statSync(modelDir).isDirectory()) throw new UsageError(`--model: ${modelDir} is not a folder`)
  const datasetArg = typeof values.dataset === 'string' ? values.dataset : record?.dataset
  if (!datasetArg)
    throw new UsageError('--dataset is required: a dataset id of the workspace, or a file to import (JSONL, JSON, CSV/TSV, Parquet, text)')
  const cfg = record ? record.config : readRunConfigFile(typeof values.config === 'string' ? resolve(values.config) : undefined, sets)
  const valRatio = values['val-ratio'] === undefined ? 0.1 : Number(values['val-ratio'])
  if (!(valRatio >= 0 && valRatio < 1)) throw new UsageError(`--val-ratio: "${String(values['val-ratio'])}" must be a number in [0, 1)`)

  const backend = await backendFromFlag(values, io)
  const workspace = workspaceFromFlag(values)
  const dataset = await resolveDataset(workspace, datasetArg, valRatio, io)
  const split = await encodeDataset(workspace, dataset, modelDir, cfg)
  const runDir =
    resumeDir ?? resolve(typeof values.out === 'string' ? values.out : join('runs', new Date().toISOString().replace(/[:.]/g, '-')))
  mkdirSync(runDir, { recursive: true })

  const ac = new AbortController()
  const onSignal = (): void => {
    io.err('\ncancelling at the next step boundary (a checkpoint is kept)...')
    ac.abort()
  }
  process.once('SIGINT', onSignal)
  const tty = process.stderr.isTTY === true
  let lastLine = 0
  const onEvent = (e: TrainEvent): void => {
    if (e.type === 'step') {
      const m = e.metrics
      const line = `${progressBar(m.step, m.totalSteps)} step ${m.step}/${m.totalSteps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ${Math.round(m.tokensPerSec)} tok/s  dropped ${(m.droppedFraction * 100).toFixed(1)}%  ETA ${formatDuration(m.etaSec)}`
      if (tty) process.stderr.write(`\r${line}`)
      else if (m.step === m.totalSteps || performance.now() - lastLine > 2000) {
        io.err(line)
        lastLine = performance.now()
      }
    } else if (e.type === 'eval')
      io.err(`${tty ? '\n' : ''}eval at step ${e.metrics.step}: validation loss ${e.metrics.valLoss.toFixed(4)}`)
    else if (e.type === 'alert') io.err(`${tty ? '\n' : ''}alert: ${e.message}`)
    else if (e.type === 'log') io.err(`${tty ? '\n' : ''}${e.line}`)
  }
  try {
    io.err(`run ${runDir} on ${backend}: ${split.train.length} training and ${split.validation.length} validation examples`)
    const r = await train({
      runDir,
      baseModelDir: modelDir,
      config: cfg,
      train: split.train,
      validation: split.validation,
      padId: split.padId,
      dataset,
      resume: Boolean(resumeDir),
      signal: ac.signal,
      onEvent,
    })
    if (tty) process.stderr.write('\n')
    io.out(`${r.status}: ${r.message ?? ''}`)
    io.out(`run         ${runDir}`)
    io.out(`steps       ${r.step}`)
    io.out(`best val    ${r.bestValLoss === null ? '-' : r.bestValLoss.toFixed(4)}`)
    io.out(`checkpoint  ${r.lastCheckpoint ?? '-'}`)
    return r.status === 'failed' ? 1 : 0
  } finally {
    process.off('SIGINT', onSignal)
  }
}

export async function exportCommand(values: ParsedValues, io: CliIo, positionals: string[] = []): Promise<number> {
  const run = positionals[0]
  if (!run) throw new UsageError('give the run folder: moe-workbench export RUN_DIR --out DIR')
  const runDir = resolve(run)
  if (!existsSync(join(runDir, 'run.json'))) throw new UsageError(`${runDir} is not a run folder (no run.json)`)
  if (typeof values.out !== 'string') throw new UsageError('--out DIR is required')
  const dtype = values.dtype === undefined ? undefined : String(values.dtype)
  if (dtype !== undefined && !['float32', 'bfloat16', 'float16'].includes(dtype))
    throw new UsageError(`--dtype: "${dtype}" must be float32, bfloat16 or float16`)
  await backendFromFlag(values, io)
  const ckpt = typeof values.checkpoint === 'string' ? resolve(values.checkpoint) : (lastCheckpoint(runDir) ?? undefined)
  const controller = new AbortController()
  const onSignal = (): void => {
    io.err('\ncancelling the export (nothing is left behind)...')
    controller.abort()
  }
  process.once('SIGINT', onSignal)
  let stageShown = ''
  let r: Awaited<ReturnType<typeof exportRun>>
  try {
    r = await exportRun(
      runDir,
      resolve(values.out),
      { checkpoint: ckpt, dtype: dtype as 'float32' | undefined },
      {
        signal: controller.signal,
        onProgress: (p) => {
          if (p.label === stageShown) return
          stageShown = p.label
          io.err(`[${p.stage}/${p.stages}] ${p.label}`)
        },
      },
    )
  } finally {
    process.off('SIGINT', onSignal)
  }
  io.out(`exported ${r.outDir}${r.mergedLora ? ` (LoRA merged, max logit change ${r.mergeError?.toExponential(2)})` : ''}`)
  io.out(`files: ${r.files.join(', ')}`)
  return 0
}
