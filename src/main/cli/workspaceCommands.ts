/**
 * `moe-workbench model list | model delete ID` and `run list | run show ID | run delete ID`: the
 * workspace's models and runs as the app lists them, a run as its card shows it, and their removal
 * through the service's own checks (a model a run was trained from stays, a run in training stays,
 * a linked model's folder stays).
 */
import type { ModelEntry } from '../../shared/api'
import {
  bestKeptEval,
  evaluationText,
  methodText,
  moeSettingsText,
  redoneRange,
  STATUS_LABELS,
  statusLine,
  stepsText,
  type RunDetail,
  type RunRecord,
} from '../../shared/runs'
import { ROUTER_WORDS } from '../../shared/modelConfig'
import { listModelFolders } from '../service/workspace'
import { formatBytes } from './commands'
import { cliError, datasetListed, oneByIdOrName, openHost, type CliHost } from './host'
import { baseVocab, curveLines, runOfWorkspace } from './trainCommands'
import { UsageError, type CliIo, type ParsedValues } from './util'

export function describeModel(m: ModelEntry): string {
  const what = m.info
    ? `${m.info.family}, ${m.info.numExperts} experts top-${m.info.topK}${ROUTER_WORDS[m.info.routerType] ? `, ${ROUTER_WORDS[m.info.routerType]}` : ''}, ${formatBytes(m.info.bytesByDtype[m.info.checkpointDtype] ?? m.info.bytesByDtype.float32)} in ${m.info.checkpointDtype ?? 'float32'}`
    : `unreadable: ${m.error ?? 'unknown error'}`
  return `${m.id}  ${m.name}  ${m.source}  ${what}  ${m.dir}`
}

export function describeRun(r: RunRecord): string {
  // The name train --name gave it (which export, eval and --resume take too), where it is not the id.
  return `${r.id}${r.name && r.name !== r.id ? `  "${r.name}"` : ''}  ${STATUS_LABELS[r.status]}  step ${stepsText(r)}  ${methodText(r.config)}  from ${r.baseModel}${r.dataset ? `  dataset ${r.dataset}` : ''}`
}

/**
 * A run in full, as its card shows it: status and why, progress, the steps a resume redoes, its
 * checkpoints (the best validation loss marked), its before/after evaluation and its checkpoints' scores.
 */
export function runDetailLines(d: RunDetail, vocabSize = 0, datasetGone = false): string[] {
  const r = d.record
  const lastStep = d.steps.at(-1)?.step
  const checkpoints = d.checkpoints ?? []
  const best = bestKeptEval((step) => checkpoints.some((c) => c.step === step), d.evals)
  const lines = [
    `run         ${r.id}${r.name && r.name !== r.id ? `  "${r.name}"` : ''}`,
    // ("completed: completed 400 steps" said it twice)
    `status      ${statusLine(r)}`,
    `steps       ${stepsText(r)}${lastStep !== undefined && lastStep > r.step ? ` (metrics to step ${lastStep})` : ''}`,
    `model       ${r.baseModel}  (${methodText(r.config)})`,
    // The MoE knobs it set (capacity, loss coefficients, jitter...): they were only in run.json.
    `moe         ${moeSettingsText(r.config.moe) ?? "the model's own settings"}`,
    // A dataset deleted since reads as such, as the Train screen's run card says it.
    `dataset     ${r.dataset ?? '-'}${r.dataset && datasetGone ? ' (deleted)' : ''}`,
    `best val    ${r.bestValLoss === null ? '-' : r.bestValLoss.toFixed(4)}`,
    `checkpoints ${
      checkpoints.length
        ? checkpoints
            .map((c) => `step-${c.step}${best?.step === c.step ? ` (best validation loss ${best.valLoss.toFixed(3)})` : ''}`)
            .join(', ')
        : 'none yet'
    }`,
  ]
  const redo = redoneRange(r.status, checkpoints.at(-1)?.step ?? null, lastStep)
  if (redo)
    lines.push(
      `resume      trains steps ${redo.from + 1}-${redo.to} again${redo.from ? ` from step-${redo.from}` : ', from the base model'}`,
    )
  // What the curves say, then whether it learned and the scores: the run card's order.
  lines.push(...curveLines(d, vocabSize))
  for (const s of d.evaluation?.splits ?? []) lines.push(`${s.split === 'validation' ? 'val' : s.split}`.padEnd(12) + evaluationText(s))
  // Scores of its checkpoints (the run card's "Score a checkpoint", eval --model RUN), oldest first.
  for (const s of d.scores ?? [])
    lines.push(
      `score       step-${s.step} on ${s.report.n} ${s.report.split === 'all' ? '' : `${s.report.split} `}${s.report.n === 1 ? 'row' : 'rows'}${s.dataset !== r.dataset ? ` of ${s.dataset}` : ''}: exact match ${(100 * s.report.exactMatch).toFixed(0)}%, F1 ${s.report.f1.toFixed(2)}${s.report.loss === null ? '' : `, answer loss ${s.report.loss.toFixed(3)}`}  (${s.date.slice(0, 16).replace('T', ' ')} UTC)`,
    )
  return lines
}

/** One listing command, its removal, and (runs) one in full: list, delete ID, show ID. */
async function listOrDelete(
  what: 'model' | 'run',
  values: ParsedValues,
  io: CliIo,
  positionals: string[],
  ops: {
    list(host: CliHost): Promise<string[]>
    remove(host: CliHost, id: string): Promise<string>
    show?(host: CliHost, id: string): Promise<string[]>
  },
): Promise<number> {
  const [sub, id, extra] = positionals
  const subs = ops.show ? `${what} list | ${what} show ID | ${what} delete ID` : `${what} list | ${what} delete ID`
  if ((sub !== 'list' && sub !== 'delete' && !(sub === 'show' && ops.show)) || extra !== undefined || (sub === 'list' && id !== undefined))
    throw new UsageError(`use: moe-workbench ${subs}`)
  if (sub !== 'list' && !id) throw new UsageError(`give the ${what} id: moe-workbench ${what} ${sub} ID (${what} list shows them)`)
  const host = openHost(values, io)
  try {
    if (sub === 'list') {
      const lines = await ops.list(host)
      if (lines.length === 0)
        io.out(
          `no ${what}s in ${host.workspace}${what === 'run' ? ': start one with moe-workbench train --model default --dataset FILE' : ''}`,
        )
      for (const line of lines) io.out(line)
    } else if (sub === 'show') for (const line of await ops.show!(host, id!)) io.out(line)
    else io.out(await ops.remove(host, id!))
    return 0
  } catch (e) {
    throw cliError(e, { id: 'ID' })
  } finally {
    await host.close()
  }
}

export function modelCommand(values: ParsedValues, io: CliIo, positionals: string[]): Promise<number> {
  return listOrDelete('model', values, io, positionals, {
    list: async (host) => (await host.api['models.list']()).map(describeModel),
    remove: async (host, arg) => {
      // The workspace's folders as they are (models.list would load every model's headers in the engine),
      // by id or by the name model list shows ("r2 (fine-tuned)" was refused as an id of bad characters).
      const entry = oneByIdOrName(listModelFolders(host.workspace), arg, 'model')
      if (!entry && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(arg))
        throw new UsageError(`ID: no model "${arg}" in ${host.workspace}, by id or name (see moe-workbench model list)`)
      const id = entry?.id ?? arg
      await host.api['models.delete']({ id })
      return entry?.source === 'linked'
        ? `unlinked model ${id} (its folder ${entry.dir} stays)`
        : `deleted model ${id} from ${host.workspace}`
    },
  })
}

export function runCommand(values: ParsedValues, io: CliIo, positionals: string[]): Promise<number> {
  return listOrDelete('run', values, io, positionals, {
    list: async (host) => (await host.api['runs.list']()).map(describeRun),
    remove: async (host, arg) => {
      // By id or by the name run list shows (train --name), as export and eval take it.
      const id = runOfWorkspace(host.workspace, arg) ?? arg
      await host.api['runs.delete']({ id })
      return `deleted run ${id} from ${host.workspace} (models exported from it stay)`
    },
    show: async (host, arg) => {
      const d = await host.api['runs.get']({ id: runOfWorkspace(host.workspace, arg) ?? arg })
      const gone = !!d.record.dataset && !(await datasetListed(host, d.record.dataset))
      return runDetailLines(d, await baseVocab(host, d.record.baseModel), gone)
    },
  })
}
