/**
 * The one API contract of MoE Workbench.
 *
 * Every host (Electron IPC, HTTP + WebSocket in server mode, the CLI) adapts this contract and
 * nothing else: a map of request methods, each returning a promise, and one event stream.
 * Payload schemas live in ./schema.ts (zod); this file holds only types and a few dependency-free
 * helpers, so the sandboxed preload can bundle it without pulling in zod.
 *
 * Adding a method: add its signature to `WorkbenchApi`, its argument schema to `apiSchemas`
 * (./schema.ts), its client shape to `WorkbenchBridge` and `createBridge` (./bridge.ts) and its
 * implementation to the Workbench service (src/main/service/workbench.ts). The type checker
 * points at every place that is missing.
 */
import type { DatasetManifest, DatasetProgressEvent, DatasetsImportArgs, DatasetsInspectArgs, InspectResult } from './dataset'
export type { DatasetProgressEvent, DatasetsImportArgs, DatasetsInspectArgs } from './dataset'
import type { Dtype, Family, MoeConfigInput, RouterType } from './modelConfig'
import type { ChatEvent, ChatSendArgs, ChatStarted, Conversation, ExpertAnalysis, ExpertsAnalyzeArgs, ExpertStorage, FitPlan } from './chat'
import type { RunConfigInput } from './runConfig'
import type { EvalReport, EvalRunArgs, RunDetail, RunEvent, RunRecord, RunsStartArgs } from './runs'
import type { TaskProgressEvent } from './tasks'
import type { AutoConfig } from './autoConfig'
import type { KnobValue, MoeKnob } from './knobs'
import type { HandoffResult, RunsHandoffArgs, RunsImportAdapterArgs } from './handoff'
export type * from './handoff'
export type * from './chat'
export type * from './runs'
export type * from './tasks'

// ---------------------------------------------------------------------------------------------
// Payloads

/**
 * The TF.js backends, best first: CUDA through libtensorflow, WebGPU (any GPU vendor through
 * Dawn), native CPU through libtensorflow, WebAssembly, plain JavaScript.
 */
export const BACKEND_NAMES = ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu'] as const
export type BackendName = (typeof BACKEND_NAMES)[number]

export interface BackendAttempt {
  name: BackendName
  ok: boolean
  /** Why this backend was not used (missing package, no libtensorflow, no GPU adapter...). */
  reason?: string
}

/** The GPU adapter of the webgpu backend. */
export interface GpuAdapterReport {
  vendor: string
  architecture: string
  device: string
  description: string
  /** A software rasteriser (SwiftShader, llvmpipe): correct but slow, used only when forced. */
  software: boolean
  /** The largest buffer a shader can bind, and the largest buffer: tensors above are split. */
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }
}

/** The engine's report of how it chose its TF.js backend (see src/main/engine/backend.ts). */
export interface BackendReport {
  /** The backend in use. */
  name: BackendName
  /** The TF.js-internal backend name ('tensorflow', 'webgpu', 'wasm' or 'cpu'). */
  tfBackend: string
  /** How it was chosen: automatically, from MOE_WORKBENCH_BACKEND, or from a setting/flag. */
  source: 'auto' | 'env' | 'setting'
  /** Every backend tried, in order, up to and including the chosen one. */
  attempts: BackendAttempt[]
  tfjsVersion: string
  /** webgpu: the adapter in use. */
  adapter?: GpuAdapterReport
  /** wasm: threads the kernels run on (MOE_WORKBENCH_THREADS; default one per CPU, at most 8). */
  threads?: number
  /**
   * wasm: what multiplies matrices: ONNX Runtime's native sgemm (e.g. "onnxruntime-node 1.30.0
   * (MLAS)") where it loads, else "XNNPACK (wasm)". MOE_WORKBENCH_MATMUL=wasm|native forces one.
   */
  matmul?: string
}

export type HostKind = 'electron' | 'server' | 'cli'

export interface SystemInfo {
  /** build: which build (src/shared/build.ts), absent where the code runs unbuilt. */
  app: { name: string; version: string; build?: string }
  /** Which host serves this API. */
  host: HostKind
  /** The runtime of the host process. */
  runtime: { node: string; electron?: string; platform: string; arch: string }
  engine: {
    pid: number | null
    backend: BackendReport
  }
}

export type { Dtype }

export interface ModelInfo {
  /** The model folder, absolute. */
  dir: string
  family: Family
  numLayers: number
  /** Indices of the decoder layers whose MLP is a sparse MoE block. */
  sparseLayers: number[]
  numExperts: number
  topK: number
  routerType: RouterType
  /** Vocabulary size (ln of it is the loss of a uniform guess). */
  vocabSize?: number
  /** Positions the model reads (its context): longer rows are cut in training. */
  maxPositionEmbeddings?: number
  /** The value of each MoE knob of the run config when a run leaves it empty (the model's own). */
  knobDefaults?: Record<MoeKnob, KnobValue>
  params: {
    total: number
    /** Parameters used per token (everything but the experts, plus topK experts per sparse layer). */
    active: number
    /** Parameters in routed experts. */
    experts: number
  }
  /** Size of all parameters stored in each dtype. */
  bytesByDtype: Record<Dtype, number>
  /** Storage dtype of the checkpoint's weights. */
  checkpointDtype: Dtype
  /**
   * Whether the folder has its tokenizer (tokenizer.json): chat, evaluation and text datasets need
   * one; training on token rows does not. Absent: not looked at.
   */
  hasTokenizer?: boolean
  /** Described from config.json alone: the folder has no weights yet (ModelsInspectArgs.configOnly). */
  configOnly?: true
}

/** What a model without a tokenizer.json can and cannot do, and how to give it one. */
export const NO_TOKENIZER_NOTE =
  "no tokenizer.json: chat, evaluation and text datasets need one (copy the base model's tokenizer files into the folder); training on token-id rows works"

/** A model the workbench knows: bundled, made or exported in the workspace, or linked from disk. */
export interface ModelEntry {
  id: string
  name: string
  /** The checkpoint folder. */
  dir: string
  source: 'bundled' | 'workspace' | 'linked'
  /** What it holds, or null with `error` when the folder no longer reads. */
  info: ModelInfo | null
  error?: string
  /** What to do about `error`, where the folder itself is not at fault (default: fix or re-link it). */
  fix?: string
  /** Where it came from (the run it was exported from, its preset...). */
  provenance?: Record<string, unknown>
}

export interface ModelsPlanArgs {
  dir: string
  /** Device bytes available (the user's budget); default: the backend's. */
  budgetBytes?: number
  /** Context length the KV cache is planned for (default min(2048, max positions)). */
  contextTokens?: number
  /** Host storage of paged weights (default lazy: read from the checkpoint files). */
  storage?: ExpertStorage
  /** Plan for training with this run config (adapters, gradients, optimiser state, activations). */
  run?: RunConfigInput
}

export interface ModelsCreateArgs {
  name: string
  /** The architecture; omitted fields take the preset's values. */
  config: Partial<MoeConfigInput> & { family: MoeConfigInput['family'] }
  seed?: number
  /** A model folder whose tokenizer files the new model takes (default: the bundled model's). */
  tokenizerFrom?: string
}

export interface RunsExportArgs {
  id: string
  name?: string
  /** Where to write the checkpoint folder (missing or empty); default: a new folder in the workspace's models. */
  outDir?: string
  /** A checkpoint folder of the run (default: its last one). */
  checkpoint?: string
  dtype?: Dtype
  /** Names the export in task.progress events and for tasks.cancel. */
  taskId?: string
}

export interface ModelsInspectArgs {
  /** A Hugging Face checkpoint folder (config.json + *.safetensors). */
  dir: string
  /**
   * A folder with its config.json and no weights at all (a download not done yet) is described
   * from the config (ModelInfo.configOnly) instead of refused. Off: such a folder is refused, as
   * anything that loads the model needs.
   */
  configOnly?: boolean
}

// ---------------------------------------------------------------------------------------------
// Request methods (GitHub Desktop's ipc-shared style: every method returns a promise)

export interface WorkbenchApi {
  /** The app, the host, the runtime and the engine's TF.js backend. */
  'system.info': (args: void) => Promise<SystemInfo>
  /** Reads a model folder's config.json and safetensors headers (no weights are loaded). */
  'models.inspect': (args: ModelsInspectArgs) => Promise<ModelInfo>
  /** Reads a dataset file: layout, every invalid row, statistics, a preview. Writes nothing. Progress: dataset.progress events. */
  'datasets.inspect': (args: DatasetsInspectArgs) => Promise<InspectResult>
  /** Imports a dataset file into the workspace (a copy and the normalised rows). Progress: dataset.progress events. */
  'datasets.import': (args: DatasetsImportArgs) => Promise<DatasetManifest>
  /** The workspace's datasets, newest first. */
  'datasets.list': (args: void) => Promise<DatasetManifest[]>
  /** Stops the inspections and imports of a file under way (an import leaves nothing behind); resolves to how many. */
  'datasets.cancel': (args: { file: string }) => Promise<number>
  /** Removes an imported dataset from the workspace (never its source file); refused while a run that may still resume uses it. */
  'datasets.delete': (args: { id: string }) => Promise<void>
  /** Bundled, workspace and linked models. */
  'models.list': (args: void) => Promise<ModelEntry[]>
  /** How a model fits a device byte budget, before loading it (the fit planner). */
  'models.plan': (args: ModelsPlanArgs) => Promise<FitPlan>
  /** A new model with freshly initialised weights, in the workspace. */
  'models.create': (args: ModelsCreateArgs) => Promise<ModelEntry>
  /** Registers a checkpoint folder elsewhere on disk (nothing is copied). */
  'models.link': (args: { dir: string; name?: string }) => Promise<ModelEntry>
  /**
   * Removes a model from the workspace: a linked one's link (its folder on disk stays), a made or
   * exported one's folder. Refused for the bundled model, for a model a run was trained from (the
   * run needs it), and while a chat or an analysis has it open.
   */
  'models.delete': (args: { id: string }) => Promise<void>
  /** Starts (or queues) a fine-tuning run; progress arrives as run.* events. */
  'runs.start': (args: RunsStartArgs) => Promise<RunRecord>
  /** The Quick preset: a run config chosen from the dataset's size and lengths and the model's size, each choice with its reason. */
  'runs.auto': (args: { model: string; dataset: string }) => Promise<AutoConfig>
  'runs.list': (args: void) => Promise<RunRecord[]>
  /** A run with its metrics so far. */
  'runs.get': (args: { id: string }) => Promise<RunDetail>
  /** Stops at the next step boundary and keeps a checkpoint. */
  'runs.cancel': (args: { id: string }) => Promise<RunRecord>
  /** Removes a run that is not training: its folder, checkpoints and logs (models exported from it stay). */
  'runs.delete': (args: { id: string }) => Promise<void>
  /** Continues a cancelled or failed run from its last checkpoint. */
  'runs.resume': (args: { id: string }) => Promise<RunRecord>
  /** Exports a run as a Hugging Face checkpoint folder in the workspace's models. Progress: task.progress events for `taskId`. */
  'runs.export': (args: RunsExportArgs) => Promise<ModelEntry>
  /** Writes a folder that runs this run (or a run config) on a cluster with LLaMA-Factory or axolotl and DeepSpeed. */
  'runs.handoff': (args: RunsHandoffArgs) => Promise<HandoffResult>
  /** Imports a PEFT LoRA adapter folder on its base model as a completed LoRA run (eval, export/merge as if trained here). */
  'runs.importAdapter': (args: RunsImportAdapterArgs) => Promise<RunRecord>
  /** Starts a reply (loading the model first when it is not loaded: task.progress for `taskId`); tokens stream as chat.* events. */
  'chat.send': (args: ChatSendArgs) => Promise<ChatStarted>
  'chat.cancel': (args: { requestId: string }) => Promise<void>
  'conversations.list': (args: void) => Promise<Conversation[]>
  /** Creates (no id) or replaces a conversation. */
  'conversations.save': (args: Omit<Conversation, 'id' | 'created' | 'updated'> & { id?: string }) => Promise<Conversation>
  'conversations.delete': (args: { id: string }) => Promise<void>
  /** Expert load, co-activation, entropy and top tokens of a model over text or a dataset. Progress: task.progress for `taskId`. */
  'experts.analyze': (args: ExpertsAnalyzeArgs) => Promise<ExpertAnalysis>
  /**
   * Does it answer? Generates greedily for rows of a dataset and scores the replies (exact match,
   * F1, loss), for a model folder or a run's last checkpoint. Progress: task.progress for `taskId`.
   */
  'eval.run': (args: EvalRunArgs) => Promise<EvalReport>
  /** Stops the operation started with this taskId (it rejects with code 'cancelled'); false when none is under way. */
  'tasks.cancel': (args: { taskId: string }) => Promise<boolean>
}

export type Method = keyof WorkbenchApi
export type ArgsOf<M extends Method> = Parameters<WorkbenchApi[M]>[0]
export type ResultOf<M extends Method> = Awaited<ReturnType<WorkbenchApi[M]>>

/** Every method name, for hosts that register one route or channel per method. */
export const METHODS = [
  'system.info',
  'models.inspect',
  'datasets.inspect',
  'datasets.import',
  'datasets.list',
  'datasets.cancel',
  'datasets.delete',
  'models.list',
  'models.plan',
  'models.create',
  'models.link',
  'models.delete',
  'runs.start',
  'runs.auto',
  'runs.list',
  'runs.get',
  'runs.cancel',
  'runs.delete',
  'runs.resume',
  'runs.export',
  'runs.handoff',
  'runs.importAdapter',
  'chat.send',
  'chat.cancel',
  'conversations.list',
  'conversations.save',
  'conversations.delete',
  'experts.analyze',
  'eval.run',
  'tasks.cancel',
] as const satisfies readonly Method[]

// Compile-time check that METHODS lists every method of WorkbenchApi.
type MissingMethods = Exclude<Method, (typeof METHODS)[number]>
const _allMethodsListed: MissingMethods extends never ? true : MissingMethods = true
void _allMethodsListed

export function isMethod(x: unknown): x is Method {
  return typeof x === 'string' && (METHODS as readonly string[]).includes(x)
}

// ---------------------------------------------------------------------------------------------
// Events: one stream for everything that is pushed (logs now; training progress, metrics,
// routing statistics and generated tokens later).

export type LogLevel = 'debug' | 'info' | 'warn' | 'error'
export type EventSource = 'engine' | 'service' | 'server' | 'electron'

export type EngineStatus = 'starting' | 'ready' | 'crashed' | 'stopped'

export type WorkbenchEvent =
  | { type: 'log'; time: number; level: LogLevel; source: EventSource; message: string }
  | {
      type: 'engine.status'
      time: number
      status: EngineStatus
      pid: number | null
      /** Why the engine stopped or crashed. */
      reason?: string
      backend?: BackendReport
    }
  | DatasetProgressEvent
  | RunEvent
  | ChatEvent
  | TaskProgressEvent
  /**
   * The page's link to the server (server mode), made by the browser's side of the API itself,
   * never sent by the server: lost when the event stream drops (the server stopped, or the
   * network), back when it reopens. Events in between are missed: listeners re-read their state.
   * `refused`: the server answered, but not to this page's token (it restarted with a new one).
   */
  | { type: 'connection'; connected: boolean; refused?: string }

export type WorkbenchEventType = WorkbenchEvent['type']
export type Unsubscribe = () => void

// ---------------------------------------------------------------------------------------------
// Errors crossing a boundary

export type ApiErrorCode =
  /** The payload did not match the method's schema; `field` names the first bad field. */
  | 'invalid_argument'
  | 'unknown_method'
  /** The engine process could not start, or died while handling the request. */
  | 'engine_unavailable'
  /** The operation itself failed (missing folder, unsupported model...). */
  | 'failed'
  /** Server mode: the request lacks the token, or carries a wrong one. */
  | 'unauthorized'
  /** Server mode: a foreign Origin or Host; Electron: a sender that is not the app's window. */
  | 'forbidden'
  /** The caller stopped the operation (tasks.cancel); nothing it would have written is left. */
  | 'cancelled'

export interface ApiErrorJson {
  code: ApiErrorCode
  message: string
  /** Dotted path of the offending field, for invalid_argument. */
  field?: string
}

export class ApiError extends Error {
  readonly code: ApiErrorCode
  readonly field?: string

  constructor(code: ApiErrorCode, message: string, field?: string) {
    super(message)
    this.name = 'ApiError'
    this.code = code
    if (field !== undefined) this.field = field
  }

  toJSON(): ApiErrorJson {
    return this.field === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, field: this.field }
  }

  static from(e: unknown): ApiError {
    if (e instanceof ApiError) return e
    if (isApiErrorJson(e)) return new ApiError(e.code, e.message, e.field)
    return new ApiError('failed', e instanceof Error ? e.message : String(e))
  }
}

const ERROR_CODES: readonly string[] = [
  'invalid_argument',
  'unknown_method',
  'engine_unavailable',
  'failed',
  'unauthorized',
  'forbidden',
  'cancelled',
] satisfies ApiErrorCode[]

export function isApiErrorJson(x: unknown): x is ApiErrorJson {
  if (typeof x !== 'object' || x === null) return false
  const o = x as Record<string, unknown>
  return (
    typeof o.code === 'string' &&
    ERROR_CODES.includes(o.code) &&
    typeof o.message === 'string' &&
    (o.field === undefined || typeof o.field === 'string')
  )
}

/** How hosts carry a result or an error in one serialisable value (IPC, engine messages). */
export type Envelope<T> = { ok: true; value: T } | { ok: false; error: ApiErrorJson }
