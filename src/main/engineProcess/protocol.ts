/**
 * Messages between the Workbench service and the engine process.
 *
 * The service sends requests; the engine answers each with exactly one response carrying the same
 * id, and pushes events (logs, later training progress) at any time. On start the engine sends
 * `ready` with its backend report, or `fatal` when it cannot start. Everything here is plain JSON
 * (structured-clone safe), so the same messages travel over child_process IPC and Electron's
 * utilityProcess parentPort.
 *
 * Adding an engine operation: add its signature to `EngineMethods` below and its handler to the
 * `handlers` map in ./process.ts; the type checker keeps the two in step.
 */
import type { ApiErrorJson, BackendReport, Dtype, ModelInfo, ModelsInspectArgs, ModelsPlanArgs, WorkbenchEvent } from '../../shared/api'
import type { ChatSendArgs, ChatStarted, ExpertAnalysis, ExpertsAnalyzeArgs, FitPlan } from '../../shared/chat'
import type { MoeConfigInput } from '../../shared/modelConfig'
import type { RunConfig } from '../../shared/runConfig'
import type { EvalReport, EvalSplit, RunExportResult, RunRecord } from '../../shared/runs'
import type { EvalSource } from './evaluation'

/** A run as the service hands it to the engine: its id and folder chosen, its config validated. */
export interface EngineRunStartArgs {
  runId: string
  runDir: string
  modelDir: string
  workspace: string
  dataset: string
  config: RunConfig
  name?: string
  /** Continue from the run's last checkpoint. */
  resume?: boolean
}

export interface EngineMethods {
  /** The backend the engine chose at start. */
  'system.info': (args: void) => BackendReport
  /** Reads a checkpoint folder's config and tensor headers. */
  'models.inspect': (args: ModelsInspectArgs) => ModelInfo
  'models.plan': (args: ModelsPlanArgs) => FitPlan
  /** Writes a freshly initialised model into `dir`. */
  'models.create': (args: {
    dir: string
    config: Partial<MoeConfigInput> & { family: MoeConfigInput['family'] }
    seed: number
    tokenizerFrom?: string
  }) => ModelInfo
  /**
   * Drops the loaded model of `dir` before its folder is deleted; refused (failed) while a chat or
   * an analysis holds it or loads it.
   */
  'models.forget': (args: { dir: string }) => void
  /** Queues a run (the service chose its id and folder); run.* events follow. */
  'runs.start': (args: EngineRunStartArgs) => RunRecord
  /** True when the run was queued or running in this engine. */
  'runs.cancel': (args: { runId: string }) => boolean
  'runs.export': (args: {
    runDir: string
    outDir: string
    dtype?: Dtype
    checkpoint?: string
    name?: string
    taskId?: string
  }) => RunExportResult
  /** Starts a reply; chat.* events follow. */
  'chat.send': (args: ChatSendArgs & { requestId: string }) => ChatStarted
  'chat.cancel': (args: { requestId: string }) => boolean
  'experts.analyze': (args: ExpertsAnalyzeArgs & { workspace?: string }) => ExpertAnalysis
  /** Scores a model folder or a run's checkpoint on a workspace dataset's rows. */
  'eval.run': (args: {
    workspace: string
    dataset: string
    split: EvalSplit
    limit: number
    source: EvalSource
    taskId?: string
  }) => EvalReport
  /** Converts a PEFT adapter folder into a completed LoRA run at runsRoot/runId (src/main/handoff/peftImport.ts). */
  'adapters.import': (args: { dir: string; model: string; runsRoot: string; runId: string; name?: string }) => RunRecord
  /** Aborts the runs.export, chat.send (its model load) or experts.analyze started with this taskId. */
  'tasks.cancel': (args: { taskId: string }) => boolean
}

export type EngineMethod = keyof EngineMethods
export type EngineArgs<M extends EngineMethod> = Parameters<EngineMethods[M]>[0]
export type EngineResult<M extends EngineMethod> = ReturnType<EngineMethods[M]>

// ---------------------------------------------------------------------------------------------
// service -> engine

export interface EngineRequest<M extends EngineMethod = EngineMethod> {
  kind: 'request'
  id: number
  method: M
  args: EngineArgs<M>
}

/**
 * Asks the engine to finish and exit (it answers nothing more): runs it trains stop at their next
 * step boundary with a checkpoint and are marked interrupted before it exits.
 */
export interface EngineShutdown {
  kind: 'shutdown'
}

export type ToEngine = EngineRequest | EngineShutdown

// ---------------------------------------------------------------------------------------------
// engine -> service

export type EngineResponse =
  { kind: 'response'; id: number; ok: true; result: unknown } | { kind: 'response'; id: number; ok: false; error: ApiErrorJson }

export interface EngineReady {
  kind: 'ready'
  pid: number
  backend: BackendReport
}

/** The engine could not start (e.g. the requested backend is unavailable); it exits after this. */
export interface EngineFatal {
  kind: 'fatal'
  message: string
}

export interface EngineEventMessage {
  kind: 'event'
  event: WorkbenchEvent
}

export type FromEngine = EngineResponse | EngineReady | EngineFatal | EngineEventMessage

// ---------------------------------------------------------------------------------------------

/** How the host tells the engine which backend to use (argv wins over the environment). */
export const BACKEND_ARG = '--backend'
export const BACKEND_ENV = 'MOE_WORKBENCH_BACKEND'
/** argv marker telling process.ts it runs as the engine process (not merely imported by a test). */
export const ENGINE_MARKER = '--moe-workbench-engine'

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null
}

export function isToEngine(x: unknown): x is ToEngine {
  if (!isObject(x)) return false
  if (x.kind === 'shutdown') return true
  return x.kind === 'request' && typeof x.id === 'number' && typeof x.method === 'string'
}

export function isFromEngine(x: unknown): x is FromEngine {
  if (!isObject(x)) return false
  switch (x.kind) {
    case 'response':
      return typeof x.id === 'number' && typeof x.ok === 'boolean'
    case 'ready':
      return isObject(x.backend)
    case 'fatal':
      return typeof x.message === 'string'
    case 'event':
      return isObject(x.event)
    default:
      return false
  }
}
