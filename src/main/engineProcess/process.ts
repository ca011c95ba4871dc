/**
 * The engine process entry (built to out/main/engine.js).
 *
 * Started by the service's EngineClient: with child_process.fork in server mode, the CLI and
 * tests, with Electron's utilityProcess in the app. On start it initialises the TF.js backend
 * (`--backend NAME` in argv, else MOE_WORKBENCH_BACKEND, else automatic), reports `ready` (or
 * `fatal`), then answers each request by dispatching to the `handlers` map.
 *
 * Adding an operation: declare it in EngineMethods (./protocol.ts) and add its handler here.
 * A handler gets the validated arguments (the service validates every payload against the shared
 * schema before it gets here) and a context to log and emit events; what it returns is the
 * response, what it throws is the error (an ApiError keeps its code, anything else is 'failed').
 */
import { ApiError, type BackendReport, type LogLevel, type WorkbenchEvent } from '../../shared/api'
import { initBackend, isBackendName, type BackendName } from '../engine/backend'
import { inspectModel, inspectModelConfig } from '../engine/checkpoint'
import { weightsToFetch } from '../engine/safetensors'
import { ChatSessions } from './chat'
import { analyzeExperts } from './experts'
import { createModel, ModelCache, planModel } from './models'
import { RunQueue } from './runQueue'
import { evalRows, evaluateSource } from './evaluation'
import { readManifest } from '../data/workspace'
import { answerable } from '../train/evaluate'
import { EVAL_NOTHING } from '../../shared/runs'
import { exportRun } from '../train/export'
import { importAdapterRun } from '../handoff/peftImport'
import { EngineTasks } from '../engine/tasks'
import {
  BACKEND_ARG,
  BACKEND_ENV,
  ENGINE_MARKER,
  type EngineArgs,
  type EngineMethod,
  type EngineRequest,
  type EngineResult,
  type FromEngine,
  isToEngine,
} from './protocol'

export interface HandlerContext {
  /** The backend chosen at start. */
  backend: BackendReport
  log(level: LogLevel, message: string): void
  emit(event: WorkbenchEvent): void
}

export type EngineHandlers = {
  [M in EngineMethod]: (args: EngineArgs<M>, ctx: HandlerContext) => EngineResult<M> | Promise<EngineResult<M>>
}

interface Jobs {
  runs: RunQueue
  models: ModelCache
  chat: ChatSessions
  tasks: EngineTasks
}
/** Each served engine's long-lived state, made on first use (it needs the context's emit). */
const jobsByContext = new WeakMap<HandlerContext, Jobs>()
function jobsOf(ctx: HandlerContext): Jobs {
  let jobs = jobsByContext.get(ctx)
  if (!jobs) {
    const models = new ModelCache(2)
    jobs = {
      runs: new RunQueue(ctx.emit, undefined, models),
      models,
      chat: new ChatSessions(models, ctx.emit),
      tasks: new EngineTasks(ctx.emit),
    }
    jobsByContext.set(ctx, jobs)
  }
  return jobs
}

export const handlers: EngineHandlers = {
  'system.info': (_args, ctx) => ctx.backend,
  'models.inspect': (args) =>
    args.configOnly && weightsToFetch(args.dir) ? { ...inspectModelConfig(args.dir), configOnly: true } : inspectModel(args.dir),
  'models.plan': (args) => planModel(args),
  'models.create': (args) => createModel(args.dir, args.config, args.seed, args.tokenizerFrom),
  'models.forget': (args, ctx) => jobsOf(ctx).models.evict(args.dir),
  'runs.start': (args, ctx) => jobsOf(ctx).runs.start(args),
  'runs.cancel': (args, ctx) => jobsOf(ctx).runs.cancel(args.runId),
  'runs.export': (args, ctx) =>
    jobsOf(ctx).tasks.run(args.taskId, 'runs.export', async (hooks) => {
      const r = await exportRun(args.runDir, args.outDir, { dtype: args.dtype, checkpoint: args.checkpoint, name: args.name }, hooks)
      jobsOf(ctx).models.forget(args.outDir)
      return r
    }),
  'chat.send': (args, ctx) =>
    jobsOf(ctx).tasks.run(args.taskId, 'models.load', (hooks) => jobsOf(ctx).chat.send(args.requestId, args, hooks)),
  'chat.cancel': (args, ctx) => jobsOf(ctx).chat.cancel(args.requestId),
  'experts.analyze': (args, ctx) =>
    jobsOf(ctx).tasks.run(args.taskId, 'experts.analyze', (hooks) => analyzeExperts(jobsOf(ctx).models, args.model, args, hooks)),
  'eval.run': (args, ctx) =>
    jobsOf(ctx).tasks.run(args.taskId, 'eval.run', async (hooks) => {
      const rows = await evalRows(args.workspace, args.dataset, args.split, args.limit)
      // Refused before the model loads: a score over no rows would read as 0%.
      if (!rows.some(answerable)) {
        // By the name the lists show, the id after it (the id alone read "tokens-mx96ftnv3445f6").
        const name = (await readManifest(args.workspace, args.dataset).catch(() => null))?.name
        const dataset = name && name !== args.dataset ? `"${name}" (${args.dataset})` : args.dataset
        const other = args.split === 'validation' ? 'training' : 'validation'
        throw new ApiError(
          'invalid_argument',
          `${EVAL_NOTHING}: ${args.split === 'all' ? 'dataset' : `the ${args.split} split of dataset`} ${dataset} has ${rows.length === 0 ? 'no rows' : `${rows.length} rows, none with an answer (a chat ending in an assistant turn, or a prompt/completion row)`}; ${args.split === 'all' ? 'evaluate a dataset with answers' : `score its ${other} rows instead (or all of them: --split all), or a dataset with answers`}`,
          'dataset',
        )
      }
      return evaluateSource(jobsOf(ctx).models, args.source, rows, args.split, hooks)
    }),
  'adapters.import': (args) =>
    importAdapterRun({ adapterDir: args.dir, baseModel: args.model, runsRoot: args.runsRoot, runId: args.runId, name: args.name }),
  'tasks.cancel': (args, ctx) => jobsOf(ctx).tasks.cancel(args.taskId),
}

/**
 * What the engine does before it exits (a shutdown request, or its parent gone): runs it trains
 * stop at their next step boundary, keep a checkpoint and are marked interrupted.
 */
export async function shutdownJobs(ctx: HandlerContext): Promise<void> {
  await jobsByContext.get(ctx)?.runs.interruptAll()
}

/** The engine's end of the channel to its host. */
export interface EnginePort {
  send(message: FromEngine): void
  onMessage(listener: (message: unknown) => void): void
  /** The host went away (its process died): the engine cleans up and exits. */
  onDisconnect?(listener: () => void): void
}

export interface ServeOptions {
  backend?: BackendName
  handlers?: EngineHandlers
  /** Initialises the backend (default: initBackend); tests pass a fake. */
  init?: (backend: BackendName | undefined, log: (line: string) => void) => Promise<BackendReport>
  /** Called on a shutdown request, after `beforeExit` (the real process exits). */
  exit?: (code: number) => void
  /** Work to finish before exiting (default: shutdownJobs). */
  beforeExit?: (ctx: HandlerContext) => Promise<void>
}

/**
 * Initialises the backend and serves requests arriving on `port`. Resolves once ready; rejects
 * (after sending `fatal`) when the backend cannot start.
 */
export async function serveEngine(port: EnginePort, options: ServeOptions = {}): Promise<void> {
  const table = options.handlers ?? handlers
  const exit = options.exit ?? ((code: number) => process.exit(code))
  const beforeExit = options.beforeExit ?? shutdownJobs
  let exiting: Promise<void> | undefined
  /** Finishes what must be kept (once), then exits. */
  const shutdown = (): Promise<void> =>
    (exiting ??= (async () => {
      try {
        if (ctx) await beforeExit(ctx)
      } catch (e) {
        log('error', `shutdown: ${e instanceof Error ? e.message : String(e)}`)
      }
      exit(0)
    })())
  port.onDisconnect?.(() => void shutdown())
  const emit = (event: WorkbenchEvent): void => port.send({ kind: 'event', event })
  const log = (level: LogLevel, message: string): void => emit({ type: 'log', time: Date.now(), level, source: 'engine', message })

  // Requests that arrive while the backend initialises wait for it.
  const queued: unknown[] = []
  let ctx: HandlerContext | undefined = undefined
  port.onMessage((message) => {
    if (ctx) void dispatch(message, ctx)
    else queued.push(message)
  })

  let backend: BackendReport
  try {
    backend = await (options.init ?? initBackend)(options.backend, (line) => log('info', line))
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e)
    port.send({ kind: 'fatal', message })
    throw e
  }
  ctx = { backend, log, emit }
  port.send({ kind: 'ready', pid: process.pid, backend })
  for (const message of queued.splice(0)) void dispatch(message, ctx)

  async function dispatch(message: unknown, context: HandlerContext): Promise<void> {
    if (!isToEngine(message)) {
      log('warn', `ignored a malformed message: ${JSON.stringify(message)?.slice(0, 200)}`)
      return
    }
    if (message.kind === 'shutdown') {
      await shutdown()
      return
    }
    port.send(await answer(message, context))
  }

  async function answer(request: EngineRequest, context: HandlerContext): Promise<FromEngine> {
    const { id, method } = request
    const handler = Object.hasOwn(table, method) ? (table[method] as Handler) : undefined
    if (!handler) {
      return {
        kind: 'response',
        id,
        ok: false,
        error: { code: 'unknown_method', message: `the engine has no method ${JSON.stringify(method)}` },
      }
    }
    try {
      const result = await handler(request.args, context)
      return { kind: 'response', id, ok: true, result }
    } catch (e) {
      return { kind: 'response', id, ok: false, error: ApiError.from(e).toJSON() }
    }
  }
}

type Handler = (args: unknown, ctx: HandlerContext) => unknown

/**
 * The backend named by `--backend NAME` / `--backend=NAME`; undefined leaves the choice to
 * initBackend (MOE_WORKBENCH_BACKEND, else automatic).
 */
export function backendFromArgv(argv: readonly string[]): BackendName | undefined {
  let value: string | undefined
  argv.forEach((arg, i) => {
    if (arg === BACKEND_ARG) value = argv[i + 1]
    else if (arg.startsWith(`${BACKEND_ARG}=`)) value = arg.slice(BACKEND_ARG.length + 1)
  })
  if (value === undefined || value === 'auto') return undefined
  if (!isBackendName(value)) throw new Error(`${BACKEND_ARG}: unknown backend ${JSON.stringify(value)}`)
  return value
}

interface ParentPort {
  postMessage(message: unknown): void
  on(event: 'message', listener: (e: { data: unknown }) => void): void
}

/** The channel to the parent: Electron's parentPort in a utilityProcess, else Node's IPC. */
function parentPort(): EnginePort | undefined {
  const electronPort = (process as { parentPort?: ParentPort }).parentPort
  if (electronPort) {
    return {
      send: (m) => electronPort.postMessage(m),
      onMessage: (l) => electronPort.on('message', (e) => l(e.data)),
    }
  }
  const send = process.send?.bind(process)
  if (send) {
    return {
      send: (m) => {
        // Once the host has died the channel breaks (EPIPE): with a callback the error is ours
        // to ignore instead of an uncaught exception that would kill the engine mid-checkpoint.
        if (process.connected) send(m, undefined, {}, () => {})
      },
      onMessage: (l) => process.on('message', l),
      // An orphaned engine must not linger: it keeps what it trains, then exits.
      onDisconnect: (l) => process.on('disconnect', l),
    }
  }
  return undefined
}

async function main(): Promise<void> {
  const port = parentPort()
  if (!port) {
    console.error(`engine: no parent channel; this entry is started by the Workbench service (${BACKEND_ENV} selects the backend)`)
    process.exit(2)
  }
  // stdout and stderr are pipes to the host: once the host dies, writing to them fails (EPIPE), and
  // an unhandled stream error would kill the engine before it has kept the run it trains.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
  // Ctrl-C in a terminal signals the whole foreground process group, this engine with the command
  // or server that started it: the host decides what an interrupt means (stop at the next step
  // with a checkpoint) and asks for it; killed by the signal, the engine lost the steps since the
  // last checkpoint and left the CLI waiting for it. An orphaned engine still exits (disconnect).
  process.on('SIGINT', () => {})
  try {
    await serveEngine(port, { backend: backendFromArgv(process.argv.slice(2)) })
  } catch (e) {
    console.error(`engine: ${e instanceof Error ? e.message : String(e)}`)
    // Let the fatal message flush before exiting.
    setTimeout(() => process.exit(1), 50)
  }
}

if (process.argv.includes(ENGINE_MARKER)) void main()
