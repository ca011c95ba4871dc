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
import type { Family, RouterType } from './modelConfig'

// ---------------------------------------------------------------------------------------------
// Payloads

/** The TF.js backends, best first (mirrors src/main/engine/backend.ts). */
export const BACKEND_NAMES = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const
export type BackendName = (typeof BACKEND_NAMES)[number]

/** The engine's report of how it chose its TF.js backend (see src/main/engine/backend.ts). */
export interface BackendReport {
  /** The backend in use. */
  name: BackendName
  /** The TF.js-internal backend name ('tensorflow', 'wasm' or 'cpu'). */
  tfBackend: string
  /** How it was chosen: automatically, from MOE_WORKBENCH_BACKEND, or from a setting/flag. */
  source: 'auto' | 'env' | 'setting'
  /** Every backend tried, in order, up to and including the chosen one. */
  attempts: { name: BackendName; ok: boolean; reason?: string }[]
  tfjsVersion: string
}

export type HostKind = 'electron' | 'server' | 'cli'

export interface SystemInfo {
  app: { name: string; version: string }
  /** Which host serves this API. */
  host: HostKind
  /** The runtime of the host process. */
  runtime: { node: string; electron?: string; platform: string; arch: string }
  engine: {
    pid: number | null
    backend: BackendReport
  }
}

export type Dtype = 'float32' | 'bfloat16' | 'float16'

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
}

export interface ModelsInspectArgs {
  /** A Hugging Face checkpoint folder (config.json + *.safetensors). */
  dir: string
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
