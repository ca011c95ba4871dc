/**
 * `moe-workbench train` and `moe-workbench export`: the service's runs.start / runs.resume /
 * runs.export from the command line, with a progress bar, ETA and a final summary. Runs land in
 * the workspace like runs started from the app (and show up there).
 */
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { basename, dirname, join, resolve } from 'node:path'
import { ApiError, type WorkbenchEvent } from '../../shared/api'
import { DTYPES } from '../../shared/modelConfig'
import { applyOverrides, getPath, validateRunConfig, type RunConfigInput } from '../../shared/runConfig'
import type { AutoConfig } from '../../shared/autoConfig'
import { interpretCurves, preflight, rowTokensFor } from '../../shared/guidance'
import {
  EVAL_NOTHING,
  EVAL_STOPPED,
  evaluationText,
  groupAlerts,
  type ExpertAlert,
  type RunDetail,
  type RunRecord,
  statusLine,
  moeSettingsText,
} from '../../shared/runs'
import { RunFolder } from '../runs/runFolder'
import { listRuns, runDir as workspaceRunDir } from '../service/workspace'
import { parseBytes, taskProgressLines } from './commands'
import { describeInspection, unread, unrecognisedLayout } from './datasetCommands'
import {
  cliError,
  datasetListed,
  modelFolderOf,
  namesakeWarning,
  oneByIdOrName,
  openHost,
  requireModelFolder,
  workspaceFromFlag,
  type CliHost,
} from './host'
import { parseJsonFile, UsageError, type CliIo, type ParsedValues } from './util'

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

/** The run config as given (a file and --set overrides); the service validates it. */
function readRunConfigInput(file: string | undefined, sets: string[]): Record<string, unknown> {
  let base: Record<string, unknown> = {}
  if (file) {
    if (!existsSync(file)) throw new UsageError(`--config: ${file} does not exist`)
    base = parseJsonFile(file, readFileSync(file, 'utf8')) as Record<string, unknown>
    if (typeof base !== 'object' || base === null || Array.isArray(base)) throw new Error(`${file}: must hold a JSON object`)
  }
  try {
    return applyOverrides(base, sets)
  } catch (e) {
    throw new UsageError((e as Error).message) // a malformed --set is a usage mistake (exit 2)
  }
}

/**
 * A dataset id of the workspace, or a file imported first through the service (its report
 * printed), so that the run trains on the workspace's copy, as runs started from the app do.
 */
export async function resolveDataset(host: CliHost, arg: string, valRatio: number, io: CliIo): Promise<string> {
  const path = resolve(arg)
  if (existsSync(path) && statSync(path).isFile()) {
    const inspected = await host.api['datasets.inspect']({ file: path })
    for (const line of describeInspection(inspected)) io.err(line)
    if (unread(inspected)) throw new Error(`${unrecognisedLayout(path, inspected.columns)}; then use the dataset id it prints`)
    // The same contents imported the same way before: that dataset, not another copy (every train
    // and eval of a file path imported it again, and the list filled with twins). By contents, not
    // path: the app imports an uploaded copy (workspace/uploads/...), and a user who imported a
    // file's valid rows there then gave the original here was told to import it again.
    const hash = await fileSha256(path)
    const invalid = inspected.report.invalid
    const same = (await host.api['datasets.list']()).find(
      (d) =>
        d.source.sha256 === hash &&
        d.layout === inspected.layout &&
        JSON.stringify(d.mapping) === JSON.stringify(inspected.mapping) &&
        d.split.validation === valRatio &&
        d.split.seed === 0 &&
        d.counts.invalid === invalid &&
        // rows read as this import reads them (a text file by paragraph is not by line), none left out as copies
        d.counts.read === inspected.report.total &&
        d.counts.deduplicated === 0,
    )
    if (same) {
      const left = invalid > 0 ? `, its ${invalid} invalid ${invalid === 1 ? 'row' : 'rows'} left out` : ''
      io.err(
        `using dataset ${same.id}, imported from ${same.source.path} before (the same contents and layout${left}; ${same.split.train} train, ${same.split.validationRows} validation ${same.split.validationRows === 1 ? 'row' : 'rows'})`,
      )
      return same.id
    }
    if (invalid > 0)
      throw new Error(
        `${path}: ${invalid} invalid ${invalid === 1 ? 'row' : 'rows'}; fix them or import the valid ones with: moe-workbench dataset import ${arg} --accept-invalid`,
      )
    const m = await host.api['datasets.import']({ file: path, split: { validation: valRatio, seed: 0 } })
    io.err(
      `imported ${arg} as dataset ${m.id} (${m.split.train} train, ${m.split.validationRows} validation ${m.split.validationRows === 1 ? 'row' : 'rows'})`,
    )
    return m.id
  }
  // A dataset of the workspace by its id or its name, as `dataset list` shows them.
  const named = oneByIdOrName(await host.api['datasets.list'](), arg, 'dataset', { where: host.workspace, flag: '--dataset' })
  if (named) return named.id
  // A folder: the file inside it is wanted (as dataset inspect says), not "neither a file nor a dataset".
  if (existsSync(resolve(arg)) && statSync(resolve(arg)).isDirectory())
    throw new UsageError(`--dataset: ${resolve(arg)} is a folder: give the data file inside it`)
  throw new UsageError(`--dataset: "${arg}" is neither a file nor a dataset of ${host.workspace} (see moe-workbench dataset list)`)
}

/** The SHA-256 of a file's bytes, hex (as a dataset manifest records its source's). */
async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/**
 * The id of the run of workspace `ws` that `arg` names: its id, else its name as `run list` shows
 * it (train --name: "t1" for the run 2026-12-04T04-05-35-t1-2d2915), exactly or regardless of case;
 * null where none does. A name several runs share is refused with their ids.
 */
export function runOfWorkspace(ws: string, arg: string): string | null {
  const idLike = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(arg) // never a path out of runs/ ('../x')
  if (idLike && existsSync(join(workspaceRunDir(ws, arg), 'run.json'))) return arg
  const named = oneByIdOrName(
    listRuns(ws).map((r) => ({ id: r.id, name: r.name ?? r.id })),
    arg,
    'run',
    { where: ws },
  )
  return named?.id ?? null
}

/**
 * The run a --resume (or export, eval, handoff) argument names: a run folder inside a workspace's
 * runs/ (whose workspace is then used), or a run of --workspace by id or name.
 */
export function locateRun(arg: string, values: ParsedValues): { workspace?: string; id: string } {
  const abs = resolve(arg)
  if (existsSync(join(abs, 'run.json'))) {
    if (basename(dirname(abs)) !== 'runs')
      throw new UsageError(`${abs} is a run folder outside a workspace's runs/ folder; move it into <workspace>/runs/ first`)
    return { workspace: dirname(dirname(abs)), id: basename(abs) }
  }
  const id = runOfWorkspace(workspaceFromFlag(values), arg)
  if (id) return { id }
  if (/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(arg)) return { id: arg }
  // A path to nothing: said so ("neither a run folder nor a run id" sent users looking for a run).
  if (!existsSync(abs)) throw new UsageError(`${abs}: no such file or folder`)
  throw new UsageError(`"${arg}" is neither a run folder nor a run id`)
}

const FINAL = new Set(['completed', 'cancelled', 'interrupted', 'failed'])

/**
 * A step's alerts as lines, grouped (one line per kind, its experts by layer), each with its
 * step; what to do is said the first time it is told (`told`: the advice said, updated), and
 * referred to after.
 */
export function alertLines(alerts: readonly ExpertAlert[], told: Set<string>): string[] {
  return groupAlerts(alerts).map((g) => {
    const at = g.text.indexOf(': ')
    const advice = at > 0 ? g.text.slice(at) : null
    const text = advice !== null && told.has(advice) ? `${g.text.slice(0, at)} (what to do: as above)` : g.text
    if (advice !== null) told.add(advice)
    return `alert at step ${g.step}: ${text}`
  })
}

/**
 * Prints a run's progress until it ends (a completed run: until its evaluation has ended too,
 * when it has one); resolves with its detail (the record, and the evaluation the summary gives).
 */
function followRun(host: CliHost, runId: string, io: CliIo, evaluates: boolean, logged: string[]): Promise<RunDetail> {
  const tty = process.stderr.isTTY === true
  let lastLine = 0
  let completed = false
  // A step's alerts arrive one by one: held until the next other event, then told together.
  let alerts: ExpertAlert[] = []
  const told = new Set<string>()
  const tellAlerts = (): void => {
    alertLines(alerts, told).forEach((l, i) => io.err(`${tty && i === 0 ? '\n' : ''}${l}`))
    alerts = []
  }
  return new Promise((resolveRun) => {
    const end = (): void => resolveRun(host.workbench.api['runs.get']({ id: runId }))
    host.onEvent((e: WorkbenchEvent) => {
      if (!('runId' in e) || e.runId !== runId) return
      if (e.type === 'run.alert') {
        alerts.push(e)
        return
      }
      tellAlerts()
      if (e.type === 'run.step') {
        const m = e.metrics
        const line = `${progressBar(m.step, m.totalSteps)} step ${m.step}/${m.totalSteps}  loss ${m.loss.toFixed(4)}  lr ${m.lr.toExponential(2)}  ${Math.round(m.tokensPerSec)} tok/s  dropped ${(m.droppedFraction * 100).toFixed(1)}%  ETA ${formatDuration(m.etaSec)}`
        if (tty) process.stderr.write(`\r${line}`)
        else if (m.step === m.totalSteps || performance.now() - lastLine > 2000) {
          io.err(line)
          lastLine = performance.now()
        }
      } else if (e.type === 'run.eval')
        io.err(`${tty ? '\n' : ''}eval at step ${e.metrics.step}: validation loss ${e.metrics.valLoss.toFixed(4)}`)
      else if (e.type === 'run.log') {
        io.err(`${tty ? '\n' : ''}${e.line}`)
        logged.push(e.line)
        if (completed && (e.line.startsWith(EVAL_STOPPED) || e.line.startsWith(EVAL_NOTHING))) end()
      } else if (e.type === 'run.evaluated') {
        if (completed) end()
      } else if (e.type === 'run.status' && FINAL.has(e.status)) {
        if (tty) process.stderr.write('\n')
        // The evaluation follows completion: closing the engine now would cancel it.
        if (e.status === 'completed' && evaluates) completed = true
        else end()
      }
    })
  })
}

/**
 * What the curves say (the run card's panel: dropped tokens, overfitting, not learning, NaN...),
 * a line each, for the CLI: its summary and run show had the figures and none of the reading.
 */
export function curveLines(d: Pick<RunDetail, 'record' | 'steps' | 'evals' | 'evaluation'>, vocabSize: number): string[] {
  // Its answers are not printed (the run card's "check the answers below" pointed at nothing).
  const answersText = d.evaluation
    ? 'check its before/after scores (exact match, F1) on the rows it learned'
    : `score its answers with moe-workbench eval --model ${d.record.id}`
  return interpretCurves(d.steps, d.evals, d.record.config, { vocabSize, answersText }).map(
    (a) =>
      `${(a.tone === 'info' ? 'note' : 'advice').padEnd(12)}${a.message}${a.suggest ? ` (next run: --set ${a.suggest.path}=${JSON.stringify(a.suggest.value)})` : ''}`,
  )
}

/** The vocabulary of a run's base model, for curveLines' ln(vocab) rule (0 where it cannot be read). */
export async function baseVocab(host: CliHost, baseModel: string): Promise<number> {
  try {
    return (await host.api['models.inspect']({ dir: baseModel })).vocabSize ?? 0
  } catch {
    return 0 // the base model moved or was deleted: the other readings still hold
  }
}

/**
 * The run's summary (stdout). Its first line, the run's end as the progress told it, is left out
 * where the progress (stderr) showed that very line on the same terminal: "interrupted at step
 * 186" twice in a row. Piped or redirected, stdout keeps it.
 */
function printSummary(detail: RunDetail, workspace: string, io: CliIo, shownOnTerminal: readonly string[] = [], vocabSize = 0): void {
  const { record, evaluation } = detail
  const first = statusLine(record)
  if (!shownOnTerminal.includes(first)) io.out(first)
  io.out(`run         ${join(workspace, 'runs', record.id)}`)
  io.out(`steps       ${record.step} of ${record.totalSteps}`)
  io.out(`best val    ${record.bestValLoss === null ? '-' : record.bestValLoss.toFixed(4)}`)
  // The before/after evaluation of this run's end, with the result (it was only in the progress, on stderr).
  if (evaluation && evaluation.step === record.step)
    for (const s of evaluation.splits)
      io.out(`${(s.split === 'validation' ? 'val' : s.split).padEnd(11)} ${evaluationText(s)}, base → tuned`)
  io.out(`checkpoint  ${record.lastCheckpoint ?? '-'}`)
  // What the curves say, as the run card does (dropped tokens, overfitting, not learning...).
  for (const l of curveLines(detail, vocabSize)) io.out(l)
  // The alerts' advice is a --set: over this run's settings, not over the defaults a bare --set starts from.
  if (detail.alerts.length > 0)
    io.out(
      `alerts      ${detail.alerts.length} (above); to follow their advice with this run's other settings: moe-workbench train --from ${record.id} --set KEY=VALUE`,
    )
  if (record.status === 'interrupted' || record.status === 'cancelled')
    io.out(`resume with: moe-workbench train --resume ${join(workspace, 'runs', record.id)}`)
}

/**
 * The Train screen's warnings for settings the user gave (--config, --set), on stderr with the
 * --set that would follow the advice; the run starts anyway, as the screen lets it.
 */
async function warnBeforeStart(
  host: CliHost,
  model: string,
  dataset: string,
  config: RunConfigInput | undefined,
  io: CliIo,
): Promise<void> {
  const info = await host.api['models.inspect']({ dir: model })
  const manifest = (await host.api['datasets.list'](undefined)).find((d) => d.id === dataset)
  if (!manifest) return
  const advice = preflight(validateRunConfig(config), {
    trainRows: manifest.split.train,
    valRows: manifest.split.validationRows,
    totalParams: info.params.total,
    vocabSize: info.vocabSize ?? 0,
    modelCapacityFactor: typeof info.knobDefaults?.capacityFactorTrain === 'number' ? info.knobDefaults.capacityFactorTrain : null,
    rowTokens: rowTokensFor(manifest.stats, model),
    routerType: info.routerType,
  })
  for (const a of advice)
    io.err(`warning: ${a.message}${a.suggest ? ` (try --set ${a.suggest.path}=${JSON.stringify(a.suggest.value)})` : ''}`)
}

/**
 * --auto: the chosen settings with the --set given over them, each told: a choice the user kept
 * with its reason, one they changed with both values.
 */
export function autoWithSets(chosen: AutoConfig, sets: string[], io: CliIo): Record<string, unknown> {
  const config = applyOverrides(chosen.config as unknown as Record<string, unknown>, sets)
  const given = new Map(sets.map((s) => [s.slice(0, s.indexOf('=')), s.slice(s.indexOf('=') + 1)]))
  // A --set of a choice, or of a group that holds it (optimizer={"lr":...} sets optimizer.lr).
  const setBy = (path: string): string | undefined => [...given.keys()].find((k) => path === k || path.startsWith(`${k}.`))
  io.err(`settings chosen for this dataset and model (${chosen.steps} steps before your --set), with your --set over them:`)
  for (const c of chosen.choices) {
    const key = setBy(c.path)
    if (key === undefined) io.err(`  ${c.path} = ${JSON.stringify(c.value)}: ${c.why}`)
    else if (key === c.path) io.err(`  ${c.path} = ${given.get(key)}: your --set (chosen: ${JSON.stringify(c.value)})`)
  }
  for (const [key, value] of given) if (!chosen.choices.some((c) => c.path === key)) io.err(`  ${key} = ${value}: your --set`)
  return config
}

/** --from: the run's settings with the --set given over them, each change told with the run's value. */
export function fromRunWithSets(run: Pick<RunRecord, 'id' | 'name' | 'config'>, sets: string[], io: CliIo): Record<string, unknown> {
  const config = applyOverrides(run.config as unknown as Record<string, unknown>, sets)
  io.err(`settings of run ${run.name ?? run.id}${sets.length ? ', with your --set over them:' : ', as they were'}`)
  for (const s of sets) {
    const key = s.slice(0, s.indexOf('='))
    const was = getPath(run.config, key)
    io.err(`  ${key} = ${s.slice(s.indexOf('=') + 1)}: your --set (the run's: ${was === undefined ? 'none' : JSON.stringify(was)})`)
  }
  return config
}

/** resolveDataset, where a --from run's own dataset deleted since is said so with what to do. */
async function resolveRunDataset(host: CliHost, arg: string, valRatio: number, io: CliIo, from: RunRecord | undefined): Promise<string> {
  if (from && arg === from.dataset && !(await datasetListed(host, arg)))
    throw new UsageError(`--from: run ${from.id}'s dataset ${arg} was deleted; give another with --dataset ID|FILE`)
  return resolveDataset(host, arg, valRatio, io)
}

export async function trainCommand(values: ParsedValues, io: CliIo): Promise<number> {
  let outId: string | undefined
  if (typeof values.out === 'string') {
    const out = resolve(values.out)
    if (basename(dirname(out)) !== 'runs')
      throw new UsageError(
        `--out: ${out} is not inside a workspace's runs/ folder; runs live in <workspace>/runs/<id>: use --out <workspace>/runs/NAME, or --name NAME with --workspace`,
      )
    if (existsSync(out)) throw new UsageError(`--out: ${out} exists; choose a new run folder (or --resume it)`)
    values = { ...values, workspace: dirname(dirname(out)) }
    outId = basename(out)
  }
  const sets = (values.set as string[] | undefined) ?? []
  const resumeArg = typeof values.resume === 'string' ? values.resume : undefined
  let runValues = values
  let resume: { id: string } | undefined
  // --auto: the settings train chooses for the dataset and model (as with no --config or --set),
  // then the --set given over them (as the Train screen's fields over a preset).
  const auto = values.auto === true
  if (auto && values.config !== undefined)
    throw new UsageError(
      '--auto starts from the settings chosen for the dataset and model, --config from a file: give one of them (and --set for what to change)',
    )
  if (resumeArg) {
    if (
      values.model !== undefined ||
      values.dataset !== undefined ||
      values.config !== undefined ||
      sets.length ||
      auto ||
      values.from !== undefined
    )
      throw new UsageError(
        '--resume continues a run with its own model, dataset and config; drop --model, --dataset, --config, --auto, --from and --set',
      )
    const located = locateRun(resumeArg, values)
    if (located.workspace) runValues = { ...values, workspace: located.workspace }
    resume = { id: located.id }
  }
  // --from RUN: a new run with that run's settings, model and dataset (the run card's "Run again"),
  // --set over them, --model or --dataset instead of its own.
  let from: RunRecord | undefined
  if (typeof values.from === 'string') {
    if (values.config !== undefined || auto)
      throw new UsageError(
        "--from starts from a run's settings, --config from a file and --auto from those chosen for the data: give one of them",
      )
    const located = locateRun(values.from, values)
    if (located.workspace) values = runValues = { ...values, workspace: located.workspace }
    const ws = workspaceFromFlag(values)
    from = listRuns(ws).find((r) => r.id === located.id)
    if (!from) throw new UsageError(`--from: no run "${values.from}" in ${ws} (moe-workbench run list shows them)`)
    if (from.importedFrom !== undefined)
      throw new UsageError(`--from: run ${from.id} is an imported adapter (trained elsewhere): it has no settings here to run again`)
    if (values.model === undefined && !modelFolderOf(from.baseModel, values))
      throw new UsageError(`--from: run ${from.id}'s model ${from.baseModel} is gone; give another with --model DIR`)
    if (values.dataset === undefined && from.dataset === undefined)
      throw new UsageError(`--from: run ${from.id} names no dataset; give one with --dataset ID|FILE`)
    values = runValues = {
      ...values,
      model: values.model ?? from.baseModel,
      dataset: values.dataset ?? from.dataset,
      ...(values.name === undefined && from.name !== undefined && { name: `${from.name} (again)` }),
    }
  }
  const modelArg = typeof values.model === 'string' ? requireModelFolder(values.model, values) : undefined
  if (!resume) {
    if (!modelArg) throw new UsageError('--model is required (or --resume RUN)')
    if (typeof values.dataset !== 'string')
      throw new UsageError(
        '--dataset is required: a dataset id of the workspace, or a file to import (JSONL, JSON, CSV/TSV, Parquet, text)',
      )
  }
  const configInput = resume ? undefined : readRunConfigInput(typeof values.config === 'string' ? resolve(values.config) : undefined, sets)
  if (values['offload-budget'] !== undefined || values['expert-dtype'] !== undefined) {
    if (resume) throw new UsageError("--resume keeps the run's own budget (its config.offload); drop --offload-budget and --expert-dtype")
    // --offload-budget SIZE [--expert-dtype S]: config.offload, the run's device budget.
    const given = (configInput!.offload ?? {}) as Record<string, unknown>
    configInput!.offload = {
      ...given,
      ...(values['offload-budget'] !== undefined && { budgetBytes: parseBytes(String(values['offload-budget']), '--offload-budget') }),
      ...(values['expert-dtype'] !== undefined && { storage: String(values['expert-dtype']) }),
    }
  }
  // A mistyped key or value is refused before the dataset file is imported for nothing.
  if (configInput)
    try {
      validateRunConfig(configInput)
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^invalid run config: /, 'config.'))
    }
  const valRatio = values['val-ratio'] === undefined ? 0.1 : Number(values['val-ratio'])
  if (!(valRatio >= 0 && valRatio < 1)) throw new UsageError(`--val-ratio: "${String(values['val-ratio'])}" must be a number in [0, 1)`)

  const host = openHost(runValues, io)
  // Ctrl-C (or SIGTERM): the run stops at its next step boundary with a checkpoint, interrupted.
  let stopping: NodeJS.Signals | null = null
  let runDir: string | null = null
  // Before the run exists the engine is not stopped: stopped while the run was being started, it
  // took the run and trained it to the end unwatched, and this command waited forever. A signal
  // then ends the command before runs.start, or stops the run at its first step boundary.
  let starting = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // The engine was told to stop: it still writes the checkpoint it began, then exits, on its own.
      io.err(
        runDir
          ? `\nleaving now; the engine finishes the checkpoint it is writing, then stops (resume with: moe-workbench train --resume ${runDir})`
          : '\nleaving now',
      )
      process.exit(signal === 'SIGINT' ? 130 : 143)
    }
    stopping = signal
    io.err('\nstopping at the next step boundary (a checkpoint is kept; Ctrl-C again to leave without waiting for it)...')
    if (runDir !== null && !starting) void host.close()
  }
  process.on('SIGINT', onSignal)
  process.on('SIGTERM', onSignal)
  try {
    let record: RunRecord
    try {
      const backend = await host.backend()
      if (resume) {
        if (stopping) return stopping === 'SIGINT' ? 130 : 143
        starting = true
        try {
          record = await host.api['runs.resume']({ id: resume.id })
        } finally {
          starting = false
        }
      } else {
        // Settings the model cannot train with (a top-k over its experts, a LoRA rank over a
        // matrix's side) are refused before a dataset file is imported for a run that cannot start.
        // (With --auto, once the chosen settings are known.)
        if (configInput !== undefined && !auto && !from) await host.api['models.plan']({ dir: modelArg!, run: configInput })
        const dataset = await resolveRunDataset(host, values.dataset as string, valRatio, io, from)
        let config = configInput
        if (from || auto) {
          config = from
            ? fromRunWithSets(from, sets, io)
            : autoWithSets(await host.api['runs.auto']({ model: modelArg!, dataset }), sets, io)
          // --offload-budget / --expert-dtype over the run's or the chosen offload (its storage kept where not given).
          if (configInput?.offload !== undefined) config.offload = { ...(config.offload as object), ...configInput.offload }
          await host.api['models.plan']({ dir: modelArg!, run: config })
          await warnBeforeStart(host, modelArg!, dataset, config, io)
        } else if (values.config === undefined && sets.length === 0) {
          // No settings given: the Quick preset, chosen from the dataset and the model (as the app's).
          const chosen = await host.api['runs.auto']({ model: modelArg!, dataset })
          // Not "--set to change them": --set and --config start from the defaults, not from these
          // (a user who gave --set method=lora got the default rate, not the preset's); --auto keeps them.
          io.err(
            `settings chosen for this dataset and model (${chosen.steps} steps); with --set or --config a run starts from the defaults instead (train --help lists them): to change some of these and keep the rest, add --auto to your --set:`,
          )
          for (const c of chosen.choices) io.err(`  ${c.path} = ${JSON.stringify(c.value)}: ${c.why}`)
          config = { ...chosen.config, ...(configInput?.offload !== undefined && { offload: configInput.offload }) }
        } else {
          // A --set alone (an alert's advice followed, say) replaced every chosen setting with its default.
          if (values.config === undefined)
            io.err(
              "note: --set applies over the defaults (train --help lists them); --auto applies it over the settings chosen for this dataset and model instead, --from RUN over a run's",
            )
          await warnBeforeStart(host, modelArg!, dataset, config, io)
        }
        if (stopping) {
          io.err('interrupted before the run started: no run was made')
          return stopping === 'SIGINT' ? 130 : 143
        }
        starting = true
        try {
          record = await host.api['runs.start']({
            model: modelArg!,
            dataset,
            config,
            ...(typeof values.name === 'string' && { name: values.name }),
            ...(outId && { id: outId }),
          })
        } finally {
          starting = false
        }
      }
      runDir = join(host.workspace, 'runs', record.id)
      const namesake =
        !resume && record.name
          ? namesakeWarning(
              'run',
              listRuns(host.workspace).flatMap((r) => (r.name ? [{ id: r.id, name: r.name }] : [])),
              { id: record.id, name: record.name },
            )
          : null
      if (namesake) io.err(namesake)
      if (stopping) void host.close() // Ctrl-C while it started: it stops at its first step boundary
      io.err(`run ${runDir} on ${backend}${resume ? ' (resumed)' : ''}`)
      // The MoE settings the run changes from the model's own (top-k, capacity, loss coefficients...).
      const moe = moeSettingsText(record.config.moe)
      if (moe) io.err(`moe: ${moe} (the model's own for the rest)`)
    } catch (e) {
      // The run given to --resume, in the flag's name (it said "id: no run named …").
      throw cliError(e, resume ? { id: '--resume' } : {})
    }
    const logged: string[] = []
    const detail = await followRun(host, record.id, io, record.config.finalEval.rows > 0, logged)
    const final = detail.record
    const oneTerminal = io.oneTerminal ?? (process.stdout.isTTY === true && process.stderr.isTTY === true)
    printSummary(detail, host.workspace, io, oneTerminal ? logged : [], await baseVocab(host, final.baseModel))
    if (final.status === 'failed') {
      io.err(`moe-workbench train: error: ${final.message ?? 'the run failed'}`)
      return 1
    }
    // Stopped during the before/after evaluation that follows the last step: the run is complete
    // (exit 0), its evaluation is not; "evaluation stopped: loading … was cancelled" said no more.
    if (stopping && final.status === 'completed' && logged.some((l) => l.startsWith(EVAL_STOPPED)))
      io.err(
        `the run is complete; its before/after evaluation was stopped (${stopping === 'SIGINT' ? 'Ctrl-C' : stopping}): score it with moe-workbench eval --model ${final.id}`,
      )
    // Stopped by a signal before the end: the shell's code for it, so a script can tell (a run
    // that completed meanwhile is a success).
    if (stopping && final.status !== 'completed') return stopping === 'SIGINT' ? 130 : 143
    return 0
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await host.close()
  }
}

/**
 * --checkpoint as the run page names it ("step-315"), a step number ("315"), or a folder: the
 * run's checkpoint folder it means. A name was looked up in the current folder
 * ("/home/me/step-315 is not a complete checkpoint folder").
 */
export function checkpointOf(folder: RunFolder, runId: string, given: string): string {
  const step = /^(?:step-)?(\d+)$/.exec(given.trim())
  const dir = step && !existsSync(given) ? folder.checkpointDir(Number(step[1])) : resolve(given)
  if (existsSync(join(dir, 'trainer_state.json'))) return dir
  const steps = folder.checkpointSteps()
  const have = steps.length
    ? `its checkpoints: ${steps.map((s) => basename(folder.checkpointDir(s))).join(', ')}`
    : 'it has no complete checkpoint yet'
  throw new UsageError(
    `--checkpoint: "${given}" is not a complete checkpoint of run ${runId} (${have}); give one of those, its step, or its folder`,
  )
}

/**
 * Ctrl-C during a task command (export, eval): the task is cancelled. Before the task has started
 * (the engine still starting) there is nothing to cancel: the command asks stopped() before it
 * starts the task, and ends instead (it went on and finished the task, exit 0, after saying it
 * was cancelling). A second Ctrl-C ends the process at once.
 */
function cancelOnSignal(host: CliHost, taskId: string, io: CliIo, saying: string): { stopped(): boolean; off(): void } {
  let stopped = false
  const onSignal = (): void => {
    stopped = true
    io.err(`\n${saying}`)
    void host.api['tasks.cancel']({ taskId }).catch(() => {})
  }
  process.once('SIGINT', onSignal)
  return { stopped: () => stopped, off: () => process.off('SIGINT', onSignal) }
}

export async function exportCommand(values: ParsedValues, io: CliIo, positionals: string[] = []): Promise<number> {
  const run = positionals[0]
  if (!run)
    throw new UsageError('give the run: moe-workbench export RUN --out DIR (a run folder, or a run id or name as run list shows it)')
  if (typeof values.out !== 'string') throw new UsageError('--out DIR is required')
  const dtype = values.dtype === undefined ? undefined : String(values.dtype)
  if (dtype !== undefined && !(DTYPES as readonly string[]).includes(dtype))
    throw new UsageError(`--dtype: "${dtype}" must be ${DTYPES.join(', ')}`)
  const located = locateRun(run, values)
  const host = openHost(located.workspace ? { ...values, workspace: located.workspace } : values, io)
  const taskId = `cli-export-${process.pid}`
  const signal = cancelOnSignal(host, taskId, io, 'cancelling the export (nothing is left behind)...')
  let stageShown = ''
  host.onEvent((e) => {
    if (e.type !== 'task.progress' || e.taskId !== taskId || e.progress.label === stageShown) return
    stageShown = e.progress.label
    io.err(`[${e.progress.stage}/${e.progress.stages}] ${e.progress.label}`)
  })
  try {
    const folder = new RunFolder(join(host.workspace, 'runs', located.id))
    if (!folder.exists()) throw new UsageError(`no run ${located.id} in ${host.workspace} (give the run folder, or --workspace)`)
    const checkpoint = typeof values.checkpoint === 'string' ? checkpointOf(folder, located.id, values.checkpoint) : undefined
    await host.backend()
    if (signal.stopped()) {
      io.err('interrupted before the export started: nothing was written')
      return 130
    }
    const entry = await host.api['runs.export']({
      id: located.id,
      outDir: resolve(values.out),
      taskId,
      ...(dtype && { dtype: dtype as 'float32' }),
      ...(checkpoint && { checkpoint }),
    })
    const p = entry.provenance ?? {}
    io.out(`exported ${entry.dir}${p.mergedLora ? ` (LoRA merged, max logit change ${Number(p.mergeError).toExponential(2)})` : ''}`)
    const which = p.checkpoint as { final?: boolean; label?: string; runStatus?: string } | undefined
    if (which && !which.final) io.out(`partial: ${which.label} (the run is ${which.runStatus}), not the run's final model`)
    if (Array.isArray(p.files)) io.out(`files: ${(p.files as string[]).join(', ')}`)
    if (Array.isArray(p.warnings)) for (const w of p.warnings as string[]) io.err(`warning: ${w}`)
    // Listed among the workspace's models under a name the lists keep unique: say which.
    io.out(`listed as model "${entry.name}" (id ${entry.id}) of ${host.workspace}: --model takes the name or the id`)
    return 0
  } catch (e) {
    if (signal.stopped() && e instanceof ApiError && e.code === 'cancelled') {
      io.err('export cancelled: nothing was written')
      return 130
    }
    throw cliError(e, { outDir: '--out', checkpoint: '--checkpoint' })
  } finally {
    signal.off()
    await host.close()
  }
}

/**
 * moe-workbench eval --model RUN|DIR [--dataset ID|FILE] [--split validation|train|all] [--limit N]
 * [--json]: greedy answers scored against the expected ones (exact match, F1, loss), the rows
 * listed; with --json the last line is {"exact_match", "f1", "loss", "n"}. A run folder (or run
 * id) means its last checkpoint (or --checkpoint's) with adapters applied, on its own dataset
 * unless --dataset says; a run's checkpoint folder means that checkpoint of the run.
 */
export async function evalCommand(values: ParsedValues, io: CliIo): Promise<number> {
  if (typeof values.model !== 'string') throw new UsageError('--model is required: a model folder, or a run folder or run id')
  const split = values.split === undefined ? 'validation' : String(values.split) === 'val' ? 'validation' : String(values.split)
  if (!['validation', 'train', 'all'].includes(split)) throw new UsageError(`--split: "${String(values.split)}" must be val, train or all`)
  const limit = values.limit === undefined ? 50 : Number(values.limit)
  if (!Number.isInteger(limit) || limit < 1) throw new UsageError(`--limit: "${String(values.limit)}" must be a positive whole number`)
  // In order: a model folder, a run folder, a run id, a model id or name (as `model list` shows
  // them), a run name (as `run list` shows them: train --name).
  const ws = workspaceFromFlag(values)
  let asFolder = resolve(values.model)
  // A run's checkpoint folder (<workspace>/runs/ID/checkpoints/step-N) is that checkpoint of its run:
  // as a model folder it has no tokenizer (a full run's checkpoints hold weights only), nor a dataset.
  let checkpointGiven: string | undefined
  if (basename(dirname(asFolder)) === 'checkpoints' && existsSync(join(dirname(dirname(asFolder)), 'run.json'))) {
    if (typeof values.checkpoint === 'string')
      throw new UsageError(`--checkpoint: --model ${values.model} is a checkpoint already; give one or the other`)
    checkpointGiven = asFolder
    asFolder = dirname(dirname(asFolder))
  }
  const modelFolderGiven = !checkpointGiven && existsSync(join(asFolder, 'config.json'))
  const runGiven = !modelFolderGiven && (existsSync(join(asFolder, 'run.json')) || existsSync(workspaceRunDir(ws, values.model)))
  const modelDir = modelFolderGiven ? asFolder : runGiven ? null : modelFolderOf(values.model, values)
  const runByName = modelDir || runGiven ? null : runOfWorkspace(ws, values.model)
  const isModel = modelDir !== null
  if (!isModel && !runGiven && !runByName)
    throw new UsageError(
      `--model: "${values.model}" is not a model or run folder, nor a model or run of the workspace ${ws} (moe-workbench model list and run list show them)`,
    )
  const located = isModel ? undefined : locateRun(runByName ?? (checkpointGiven ? asFolder : values.model), values)
  if (isModel && typeof values.dataset !== 'string') throw new UsageError('--dataset is required with a model folder (a run knows its own)')
  if (isModel && typeof values.checkpoint === 'string')
    throw new UsageError(`--checkpoint: ${modelDir} is a model folder, not a run; --checkpoint picks one of a run's checkpoints`)
  const host = openHost(located?.workspace ? { ...values, workspace: located.workspace } : values, io)
  const taskId = `cli-eval-${process.pid}`
  const signal = cancelOnSignal(host, taskId, io, 'cancelling the evaluation...')
  const progress = taskProgressLines(io)
  host.onEvent((e) => {
    if (e.type === 'task.progress' && e.taskId === taskId) progress(e.progress)
  })
  try {
    const checkpoint =
      checkpointGiven ??
      (located && typeof values.checkpoint === 'string'
        ? checkpointOf(new RunFolder(workspaceRunDir(host.workspace, located.id)), located.id, values.checkpoint)
        : undefined)
    await host.backend()
    const dataset = typeof values.dataset === 'string' ? await resolveDataset(host, values.dataset, 0.1, io) : undefined
    if (signal.stopped()) {
      io.err('interrupted before the evaluation started')
      return 130
    }
    const report = await host.api['eval.run']({
      ...(isModel ? { model: modelDir } : { run: located!.id, ...(checkpoint && { checkpoint }) }),
      ...(dataset && { dataset }),
      split: split as 'validation',
      limit,
      taskId,
    })
    if (!values.json)
      for (const item of report.items)
        io.out(
          `${item.exact ? '✓' : '✗'} ${JSON.stringify(item.prompt)} → ${JSON.stringify(item.generated)} (expected ${JSON.stringify(item.expected)})`,
        )
    // The score is the result: on stdout with the rows (it went to stderr, and `eval > file` lost
    // it); with --json stdout holds the JSON line alone.
    ;(values.json ? io.err : io.out)(
      `${report.model} on ${report.n} ${split === 'all' ? '' : `${split} `}row${report.n === 1 ? '' : 's'}${split === 'all' ? ' of both splits' : ''}: exact match ${(100 * report.exactMatch).toFixed(1)}%, F1 ${report.f1.toFixed(3)}, answer loss ${report.loss === null ? '–' : report.loss.toFixed(3)} (${report.seconds.toFixed(1)} s${report.skipped ? `; ${report.skipped} rows without an answer skipped` : ''})`,
    )
    if (values.json) io.out(JSON.stringify({ exact_match: report.exactMatch, f1: report.f1, loss: report.loss, n: report.n }))
    else if (!isModel) io.err(`kept with the run: moe-workbench run show ${located!.id} lists its scores`)
    return 0
  } catch (e) {
    if (signal.stopped() && e instanceof ApiError && e.code === 'cancelled') {
      io.err('evaluation cancelled')
      return 130
    }
    // A run whose dataset was deleted since: say how to evaluate it anyway (it said only "no dataset X").
    if (
      !isModel &&
      typeof values.dataset !== 'string' &&
      e instanceof ApiError &&
      e.field === 'dataset' &&
      /\bno dataset \S+ in the workspace\b/.test(e.message)
    )
      throw new UsageError(`${e.message}: the run's dataset was deleted; evaluate it on another with --dataset ID|FILE`)
    throw cliError(e, { checkpoint: '--checkpoint' })
  } finally {
    signal.off()
    await host.close()
  }
}
