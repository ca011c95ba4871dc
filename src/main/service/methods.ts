/**
 * The models.*, runs.*, chat.*, conversations.* and experts.* methods of the Workbench service:
 * workspace bookkeeping here, compute in the engine process.
 */
import { hostname } from 'node:os'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import { ApiError, type ModelEntry, type WorkbenchApi, type WorkbenchEvent } from '../../shared/api'
import type { FitPlan } from '../../shared/chat'
import { validateRunConfig, type RunConfig } from '../../shared/runConfig'
import { runName, isActive, type RunRecord } from '../../shared/runs'
import type { ChatFormat } from '../../shared/chat'
import { datasetDir, readManifest } from '../data/workspace'
import { autoInput, autoRunConfig } from '../../shared/autoConfig'
import { readModelConfig } from '../engine/modelConfigFile'
import type { EngineClient } from './engineClient'
import {
  deleteConversation,
  describeModelFolder,
  linkModelFolder,
  ownModelName,
  listConversations,
  listModelFolders,
  listRuns,
  modelsDir,
  newId,
  newRunId,
  readRun,
  runDir,
  runFolder,
  saveConversation,
  type ModelFolder,
} from './workspace'
import { RunFolder } from '../runs/runFolder'
import { removeDirAtomic } from '../util/atomic'

type Methods = Pick<
  WorkbenchApi,
  | 'models.list'
  | 'models.plan'
  | 'models.create'
  | 'models.link'
  | 'models.delete'
  | 'runs.start'
  | 'runs.auto'
  | 'runs.list'
  | 'runs.get'
  | 'runs.cancel'
  | 'runs.delete'
  | 'datasets.delete'
  | 'runs.resume'
  | 'runs.export'
  | 'chat.send'
  | 'chat.cancel'
  | 'conversations.list'
  | 'conversations.save'
  | 'conversations.delete'
  | 'experts.analyze'
  | 'eval.run'
  | 'tasks.cancel'
>

export interface MethodContext {
  engine: EngineClient
  workspace: string
  /** The bundled default model folder, when the app ships one. */
  bundledModel?: string
  emit(event: WorkbenchEvent): void
}

/**
 * Which checkpoint an export writes, in words: the final model of a completed run, or
 * "checkpoint step N of M" for a run still training, stopped before its last step, or an earlier
 * checkpoint of a completed one.
 */
export function exportedCheckpoint(
  record: Pick<RunRecord, 'status' | 'totalSteps'>,
  checkpoint: string | undefined,
  last: string | null,
): { step: number | null; final: boolean; label: string } {
  const m = checkpoint ? /^step-(\d+)$/.exec(basename(checkpoint)) : null
  const step = m ? Number(m[1]) : null
  const final = record.status === 'completed' && checkpoint !== undefined && last !== null && resolve(checkpoint) === resolve(last)
  const of = record.totalSteps > 0 ? ` of ${record.totalSteps}` : ''
  return { step, final, label: final ? 'final' : `checkpoint ${step === null ? basename(checkpoint ?? '') : `step ${step}`}${of}` }
}

/**
 * An export's outDir must be new or empty (nothing of the user's is overwritten): refused by the
 * field before the engine starts, where it was a 422 naming the CLI's --out.
 */
function requireNewFolder(outDir: string): void {
  const out = resolve(outDir)
  if (!existsSync(out)) return
  if (!statSync(out).isDirectory()) throw new ApiError('invalid_argument', `outDir: ${out} is a file; choose a new folder`, 'outDir')
  if (readdirSync(out).length > 0)
    throw new ApiError('invalid_argument', `outDir: ${out} exists and is not empty; choose a new or empty folder`, 'outDir')
}

/**
 * The step of `checkpoint` where it is one of the run's own complete checkpoints (its
 * checkpoints/step-N, symbolic links followed); any other folder is refused, naming the run's:
 * another run's weights, or a model folder, were exported under this run's name and settings.
 */
function requireOwnCheckpoint(folder: RunFolder, id: string, checkpoint: string): number {
  const steps = folder.checkpointSteps()
  const real = (p: string): string | null => {
    try {
      return realpathSync(p)
    } catch {
      return null
    }
  }
  const given = real(checkpoint)
  const step = given === null ? undefined : steps.find((s) => real(folder.checkpointDir(s)) === given)
  if (step !== undefined) return step
  const which = steps.length
    ? `pick one of its checkpoints (${steps.map((s) => `step-${s}`).join(', ')} in ${folder.checkpointsDir}), or leave it out for the latest`
    : 'it has no complete checkpoint yet'
  throw new ApiError('invalid_argument', `checkpoint: ${checkpoint} is not a checkpoint of run ${id}; ${which}`, 'checkpoint')
}

/** The bundled model's id in models.list. */
export const BUNDLED_ID = 'default'

function requireFolder(dir: string, field: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ApiError('invalid_argument', `${field}: ${dir} is not a folder`, field)
}

export function workspaceMethods(ctx: MethodContext): {
  methods: Methods
  onEngineStopped(reason: string, intentional: boolean): void
  onRunEnded(id: string): void
} {
  const { engine, workspace } = ctx
  /** Runs this service handed to the engine and not yet finished. */
  const live = new Set<string>()

  const entry = async (
    f: ModelFolder | { id: string; name: string; dir: string; source: 'bundled'; provenance?: Record<string, unknown> },
  ): Promise<ModelEntry> => {
    try {
      return { ...f, info: await engine.request('models.inspect', { dir: f.dir }) }
    } catch (e) {
      return { ...f, info: null, error: e instanceof Error ? e.message : String(e) }
    }
  }

  const startRun = async (
    record: Pick<RunRecord, 'id' | 'baseModel' | 'dataset' | 'config' | 'name'>,
    resume: boolean,
  ): Promise<RunRecord> => {
    live.add(record.id)
    try {
      return await engine.request('runs.start', {
        runId: record.id,
        runDir: runDir(workspace, record.id),
        modelDir: record.baseModel,
        workspace,
        dataset: record.dataset!,
        config: record.config,
        name: record.name,
        resume,
      })
    } catch (e) {
      live.delete(record.id)
      throw e
    }
  }

  const methods: Methods = {
    'models.list': async () => {
      const folders: Parameters<typeof entry>[0][] = []
      if (ctx.bundledModel && existsSync(join(ctx.bundledModel, 'config.json')))
        folders.push({ id: BUNDLED_ID, name: 'Default MoE (bundled)', dir: ctx.bundledModel, source: 'bundled' })
      folders.push(...listModelFolders(workspace))
      return Promise.all(folders.map(entry))
    },
    'models.plan': (args) => engine.request('models.plan', args),
    'models.create': async (args) => {
      args = { ...args, name: uniqueModelName(args.name) }
      const id = newId(args.name)
      const dir = join(modelsDir(workspace), id)
      if (args.tokenizerFrom !== undefined && !existsSync(join(args.tokenizerFrom, 'tokenizer.json')))
        throw new ApiError(
          'invalid_argument',
          `tokenizerFrom: ${args.tokenizerFrom} has no tokenizer.json; give a model folder with a Hugging Face tokenizer, or leave it out for the bundled one`,
          'tokenizerFrom',
        )
      const tokenizerFrom = args.tokenizerFrom ?? ctx.bundledModel
      await engine.request('models.create', {
        dir,
        config: args.config,
        seed: args.seed ?? 0,
        tokenizerFrom: tokenizerFrom && existsSync(join(tokenizerFrom, 'tokenizer.json')) ? tokenizerFrom : undefined,
      })
      describeModelFolder(dir, { name: args.name })
      return entry({ id, name: args.name, dir, source: 'workspace', provenance: { preset: args.config } })
    },
    'models.link': async (args) => {
      requireFolder(args.dir, 'dir')
      // A folder already listed is that entry again, not a second one pointing at it.
      const already = listModelFolders(workspace).find((m) => resolve(m.dir) === resolve(args.dir))
      if (already) return entry(already)
      // Refuse folders that are not checkpoints before recording them.
      await engine.request('models.inspect', { dir: args.dir })
      // Unnamed: the name the folder gives itself (a copied export's), else the folder's.
      return entry(
        linkModelFolder(workspace, args.dir, uniqueModelName(args.name ?? ownModelName(args.dir) ?? basename(resolve(args.dir)))),
      )
    },
    'models.delete': async (args) => {
      if (args.id === BUNDLED_ID && ctx.bundledModel)
        throw new ApiError('invalid_argument', 'id: the bundled model ships with the app and cannot be deleted', 'id')
      const model = listModelFolders(workspace).find((m) => m.id === args.id)
      if (!model) throw new ApiError('invalid_argument', `id: no model ${args.id} in ${workspace}`, 'id')
      if (model.source === 'workspace') {
        // A run trained from it needs it: to resume, to evaluate or chat with (a LoRA run's
        // adapter sits on it), to export.
        const users = listRuns(workspace).filter((r) => resolve(r.baseModel) === resolve(model.dir))
        if (users.length > 0)
          throw new ApiError(
            'failed',
            `model ${model.name} is the base of ${users.length === 1 ? 'run' : 'runs'} ${users.map((r) => r.id).join(', ')}, which ${users.length === 1 ? 'needs' : 'need'} it to resume, evaluate, chat and export; delete ${users.length === 1 ? 'that run' : 'those runs'} first (export ${users.length === 1 ? 'it' : 'them'} to keep what ${users.length === 1 ? 'it' : 'they'} learned)`,
          )
        await engine.request('models.forget', { dir: model.dir })
      }
      // A linked model's workspace folder holds only the link: the folder on disk stays.
      removeDirAtomic(join(modelsDir(workspace), model.id))
    },

    'runs.start': async (args) => {
      requireFolder(args.model, 'model')
      if (!existsSync(join(datasetDir(workspace, args.dataset), 'manifest.json')))
        throw new ApiError('invalid_argument', `dataset: no dataset ${args.dataset} in the workspace; import it first`, 'dataset')
      // The schema validated the config and filled its defaults at the boundary (Workbench.call).
      const config = (args.config as RunConfig | undefined) ?? validateRunConfig({})
      if (args.id && existsSync(runDir(workspace, args.id)))
        throw new ApiError('invalid_argument', `id: a run named ${args.id} exists already; choose another name or resume it`, 'id')
      // A run that cannot fit its device budget is refused before it is created (it was created,
      // failed at once, and stayed listed with nothing to resume).
      const planFor = (run: RunConfig): Promise<FitPlan> =>
        engine.request('models.plan', {
          dir: args.model,
          budgetBytes: config.offload.budgetBytes ?? undefined,
          storage: config.offload.storage,
          run,
        })
      const plan = await planFor(config)
      if (!plan.fits) {
        // The setting to change: the batch where one row a step would fit, the LoRA rank where
        // rank 1 would, else the budget (a batchSize of 1e9 read "raise the budget to 16143798.88 GiB").
        const fitsWith = async (over: RunConfig): Promise<boolean> => (await planFor(over)).fits
        let [field, problem] = ['config.offload.budgetBytes', plan.message]
        if (config.batchSize > 1 && (await fitsWith({ ...config, batchSize: 1 })))
          [field, problem] = [
            'config.batchSize',
            `${config.batchSize} rows of up to ${config.data.maxLength} tokens a step do not fit (one row does): lower batchSize (gradAccumulation keeps the batch) or data.maxLength; the planner: ${plan.message}`,
          ]
        else if (config.method === 'lora' && config.lora.rank > 1 && (await fitsWith({ ...config, lora: { ...config.lora, rank: 1 } })))
          [field, problem] = [
            'config.lora.rank',
            `LoRA rank ${config.lora.rank} does not fit (rank 1 does): lower lora.rank; the planner: ${plan.message}`,
          ]
        throw new ApiError('invalid_argument', `${field}: ${problem}`, field)
      }
      return startRun({ id: args.id ?? newRunId(args.name), baseModel: args.model, dataset: args.dataset, config, name: args.name }, false)
    },
    'runs.auto': async (args) => {
      requireFolder(args.model, 'model')
      if (!existsSync(join(datasetDir(workspace, args.dataset), 'manifest.json')))
        throw new ApiError('invalid_argument', `dataset: no dataset ${args.dataset} in the workspace; import it first`, 'dataset')
      let model
      try {
        model = readModelConfig(args.model)
      } catch (e) {
        throw new ApiError('invalid_argument', `model: ${(e as Error).message}`, 'model')
      }
      const manifest = await readManifest(workspace, args.dataset)
      try {
        return autoRunConfig(autoInput(manifest, model))
      } catch (e) {
        throw new ApiError('invalid_argument', `dataset: ${(e as Error).message}`, 'dataset')
      }
    },
    'runs.list': async () => listRuns(workspace),
    'runs.get': async (args) => {
      const folder = runFolder(workspace, args.id)
      const detail = folder.readDetail()
      if (!isActive(detail.record)) return detail
      const owner = folder.isLocked() ? folder.lockInfo() : null
      if (!owner || (owner.pid === engine.enginePid && owner.host === hostname())) return detail
      return { ...detail, trainedElsewhere: `${owner.by} (pid ${owner.pid} on ${owner.host})` }
    },
    'runs.cancel': async (args) => {
      const folder = runFolder(workspace, args.id)
      const known = await engine.request('runs.cancel', { runId: args.id })
      if (!known) {
        const owner = folder.isLocked() ? folder.lockInfo() : null
        if (owner)
          throw new ApiError(
            'failed',
            `run ${args.id} is trained by another process (${owner.by}, pid ${owner.pid} on ${owner.host}); stop it there`,
          )
        // The engine that ran it is gone (a crash or a restart): record what is true.
        folder.repair({ status: 'cancelled', reason: 'stopped: the process training it had ended' })
      }
      return folder.read()
    },
    'runs.delete': async (args) => {
      const folder = runFolder(workspace, args.id)
      // A run left "running" by a process that died is interrupted: that one may go.
      folder.repair()
      const record = folder.tryRead()
      if (record && isActive(record)) throw new ApiError('failed', `run ${args.id} is ${record.status}; cancel it first, then delete it`)
      if (folder.isLocked()) {
        const owner = folder.lockInfo()
        throw new ApiError(
          'failed',
          `run ${args.id} is in use${owner ? ` by ${owner.by} (pid ${owner.pid} on ${owner.host})` : ''}; stop it there first`,
        )
      }
      removeDirAtomic(runDir(workspace, args.id))
    },
    'datasets.delete': async (args) => {
      const dir = datasetDir(workspace, args.id)
      if (!existsSync(join(dir, 'manifest.json'))) throw new ApiError('invalid_argument', `id: no dataset ${args.id} in ${workspace}`, 'id')
      // A run that may still train (resume) reads its rows from here; a completed one does not.
      const users = listRuns(workspace).filter((r) => r.dataset === args.id && r.status !== 'completed')
      if (users.length > 0)
        throw new ApiError(
          'failed',
          `dataset ${args.id} is used by ${users.length === 1 ? 'run' : 'runs'} ${users.map((r) => `${r.id} (${r.status})`).join(', ')}, which may still resume from it; delete ${users.length === 1 ? 'that run' : 'those runs'} first, or let ${users.length === 1 ? 'it' : 'them'} complete`,
        )
      removeDirAtomic(dir)
    },
    'runs.resume': async (args) => {
      const folder = runFolder(workspace, args.id)
      // A run left "running" by a process that died is interrupted, not running.
      folder.repair()
      const record = folder.read()
      if (record.status === 'running' || record.status === 'queued') {
        const owner = folder.lockInfo()
        throw new ApiError(
          'failed',
          `run ${args.id} is already ${record.status}${owner ? ` (${owner.by}, pid ${owner.pid} on ${owner.host})` : ''}`,
        )
      }
      if (record.status === 'completed') throw new ApiError('failed', `run ${args.id} has completed; start a new run to train further`)
      if (!record.dataset)
        throw new ApiError('failed', `run ${args.id} was started outside the workspace (no dataset id); resume it with the CLI`)
      return startRun(record, true)
    },
    'runs.export': async (args) => {
      const folder = runFolder(workspace, args.id)
      const record = folder.read()
      // The checkpoint is chosen here, so the name says which one the engine writes.
      const last = folder.lastCheckpoint()
      if (args.checkpoint !== undefined) requireOwnCheckpoint(folder, args.id, args.checkpoint)
      if (args.outDir !== undefined) {
        requireNewFolder(args.outDir)
        // Links to this folder are stale (it is missing or empty: a model deleted by hand). Kept,
        // the export was listed twice, under a second name ("r1 (fine-tuned) 2"), both the same folder.
        for (const m of listModelFolders(workspace))
          if (m.source === 'linked' && resolve(m.dir) === resolve(args.outDir)) removeDirAtomic(join(modelsDir(workspace), m.id))
      }
      const checkpoint = args.checkpoint ?? last ?? undefined
      const which = exportedCheckpoint(record, checkpoint, last)
      const base = args.name ?? (which.final ? `${runName(record)} (fine-tuned)` : runName(record))
      // A run still training (or stopped early) exports a checkpoint, not a final model: its name says so.
      // Exported again, the name gets a number: models the lists cannot tell apart help no one.
      const name = uniqueModelName(which.final ? base : `${base} (${which.label})`)
      const id = newId(name)
      const outDir = args.outDir ?? join(modelsDir(workspace), id)
      const r = await engine.request('runs.export', {
        runDir: runDir(workspace, args.id),
        outDir,
        dtype: args.dtype,
        checkpoint,
        name,
        taskId: args.taskId,
      })
      const provenance = {
        name,
        fromRun: args.id,
        exported: new Date().toISOString(),
        // How chat should prompt it: as its dataset's rows were (no template for prompt/completion and text).
        promptFormat: await trainedPromptFormat(record.dataset),
        checkpoint: { step: which.step, totalSteps: record.totalSteps, final: which.final, runStatus: record.status, label: which.label },
        mergedLora: r.mergedLora,
        mergeError: r.mergeError,
        files: r.files,
        ...(r.warnings?.length && { warnings: r.warnings }),
      }
      describeModelFolder(r.outDir, provenance)
      // A folder given inside the workspace's models/ is listed there already: linked as well, it
      // was listed twice under one name, which then named neither.
      if (args.outDir && resolve(dirname(r.outDir)) === resolve(modelsDir(workspace)))
        return entry({ id: basename(r.outDir), name, dir: r.outDir, source: 'workspace', provenance })
      if (args.outDir) {
        // Written outside the workspace's models: list it there as a linked folder.
        const linked = linkModelFolder(workspace, r.outDir, name)
        return entry({ ...linked, provenance: { ...linked.provenance, ...provenance } })
      }
      return entry({ id, name, dir: outDir, source: 'workspace', provenance })
    },

    'chat.send': async (args) => {
      requireFolder(args.model, 'model')
      return engine.request('chat.send', { ...args, requestId: randomBytes(8).toString('hex') })
    },
    'chat.cancel': async (args) => {
      await engine.request('chat.cancel', args)
    },
    'conversations.list': async () => listConversations(workspace),
    'conversations.save': async (args) => saveConversation(workspace, args),
    'conversations.delete': async (args) => deleteConversation(workspace, args.id),
    'experts.analyze': async (args) => {
      requireFolder(args.model, 'model')
      if (args.dataset && !existsSync(join(datasetDir(workspace, args.dataset), 'manifest.json')))
        throw new ApiError('invalid_argument', `dataset: no dataset ${args.dataset} in the workspace`, 'dataset')
      return engine.request('experts.analyze', { ...args, workspace })
    },
    'eval.run': async (args) => {
      const record = args.run !== undefined ? readRun(workspace, args.run) : undefined
      if (args.model !== undefined) requireFolder(args.model, 'model')
      const folder = args.run !== undefined ? runFolder(workspace, args.run) : undefined
      // A run's checkpoint: the one named, else its latest (none yet: the engine says so).
      const checkpoint = args.checkpoint !== undefined ? resolve(args.checkpoint) : (folder?.lastCheckpoint() ?? undefined)
      const step = checkpoint !== undefined && folder ? requireOwnCheckpoint(folder, args.run!, checkpoint) : undefined
      const dataset = args.dataset ?? record?.dataset
      if (!dataset) throw new ApiError('invalid_argument', `dataset: run ${args.run} does not record its dataset; name one`, 'dataset')
      if (!existsSync(join(datasetDir(workspace, dataset), 'manifest.json')))
        throw new ApiError('invalid_argument', `dataset: no dataset ${dataset} in the workspace`, 'dataset')
      const report = await engine.request('eval.run', {
        workspace,
        dataset,
        split: args.split ?? 'validation',
        limit: args.limit ?? 50,
        source: folder ? { runDir: folder.dir, ...(checkpoint !== undefined && { checkpoint }) } : { modelDir: args.model! },
        taskId: args.taskId,
      })
      // Kept with the run: a score outlives the page or command that asked for it (it took minutes).
      if (folder && step !== undefined)
        folder.appendScore({ date: new Date().toISOString(), step, checkpoint: checkpoint!, dataset, report })
      return report
    },
    'tasks.cancel': (args) => engine.request('tasks.cancel', args),
  }

  /** `wanted`, or `wanted 2`, `wanted 3`... where a model of the workspace has that name: lists that cannot tell two models apart help no one. */
  function uniqueModelName(wanted: string): string {
    const taken = new Set(listModelFolders(workspace).map((m) => m.name))
    let name = wanted
    for (let n = 2; taken.has(name); n++) name = `${wanted} ${n}`
    return name
  }

  /** The chat format a run's dataset taught its model (ChatFormat); chat where the dataset is gone or says nothing. */
  async function trainedPromptFormat(dataset: string | undefined): Promise<ChatFormat> {
    if (!dataset) return 'chat'
    try {
      const layout = (await readManifest(workspace, dataset)).layout
      return layout === 'completion' || layout === 'text' ? 'plain' : 'chat'
    } catch {
      return 'chat'
    }
  }

  return {
    methods,
    /**
     * The engine exited: runs it still held are repaired, `interrupted` when the service stopped it
     * (a quit that outlasted the engine's grace period), `failed` with the reason when it crashed.
     */
    onEngineStopped(reason: string, intentional: boolean): void {
      for (const id of live) {
        try {
          const status = intentional ? 'interrupted' : 'failed'
          // This engine held the run; it has exited, whatever its lock file says.
          const record = new RunFolder(runDir(workspace, id)).repair({
            force: true,
            status,
            reason: intentional
              ? 'it was stopped while it trained (the app or the command quit)'
              : `the engine process stopped (${reason})`,
          })
          if (record) ctx.emit({ type: 'run.status', runId: id, status, step: record.step, message: record.message })
        } catch {
          // a run folder removed by hand
        }
      }
      live.clear()
    },
    /** Forgets runs that ended (a run.status event said so). */
    onRunEnded(id: string): void {
      live.delete(id)
    },
  }
}
