/**
 * The Workbench service: the one implementation of the API contract (src/shared/api.ts), shared
 * by every host (Electron IPC, server mode, CLI). Plain TypeScript, no `electron` import.
 *
 * Every call is validated against the shared schema before it reaches the engine; errors leave
 * as ApiError (code, message naming the field). Events from the engine and the service go out on
 * one stream.
 */
import { existsSync, statSync } from 'node:fs'
import { basename, dirname } from 'node:path'
import {
  ApiError,
  type ArgsOf,
  type EventSource,
  type HostKind,
  type LogLevel,
  METHODS,
  type Method,
  type ResultOf,
  type SystemInfo,
  type Unsubscribe,
  type WorkbenchApi,
  type WorkbenchEvent,
  isMethod,
} from '../../shared/api'
import { validateArgs } from '../../shared/schema'
import { APP_IDENTITY } from '../appInfo'
import { datasetMethods, defaultWorkspace } from '../data/service'
import type { EngineClient } from './engineClient'
import { defaultModelDir, resourcesDir, seedWorkspace } from './firstRun'
import { workspaceMethods } from './methods'
import { handoffMethods } from '../handoff/service'
import { runsDir } from './workspace'
import { repairRuns } from '../runs/runFolder'
import type { RunRecord } from '../../shared/runs'

export interface WorkbenchOptions {
  engine: EngineClient
  host: HostKind
  app?: SystemInfo['app']
  runtime?: SystemInfo['runtime']
  /** The workspace folder (datasets, models, runs); default $MOE_WORKBENCH_WORKSPACE, else ~/moe-workbench. */
  workspace?: string
  /** The bundled default model folder (default resources/default-model when present), listed among the models. */
  bundledModel?: string
  /**
   * First start: import the bundled sample datasets into the workspace once (hosts turn this on;
   * tests leave it off). A folder overrides resources/.
   */
  firstRun?: boolean | { resources: string }
}

type Implementation = { [M in Method]: (args: ArgsOf<M>) => Promise<ResultOf<M>> }

export class Workbench {
  /** The API with every method validated, for in-process callers (the CLI, tests). */
  readonly api: WorkbenchApi
  readonly engine: EngineClient
  /** The workspace folder: <workspace>/datasets, models, runs. */
  readonly workspace: string
  private readonly host: HostKind
  private readonly app: SystemInfo['app']
  private readonly runtime: SystemInfo['runtime']
  private readonly listeners = new Set<(event: WorkbenchEvent) => void>()
  private readonly detachEngine: Unsubscribe
  private readonly impl: Implementation

  constructor(options: WorkbenchOptions) {
    this.engine = options.engine
    this.host = options.host
    this.workspace = options.workspace ?? defaultWorkspace()
    this.app = options.app ?? APP_IDENTITY
    this.runtime = options.runtime ?? { node: process.versions.node, platform: process.platform, arch: process.arch }
    const resources = typeof options.firstRun === 'object' ? options.firstRun.resources : resourcesDir()
    if (options.firstRun) this.firstRun = { resources }
    const workspaceApi = workspaceMethods({
      engine: this.engine,
      workspace: this.workspace,
      bundledModel: options.bundledModel ?? defaultModelDir(resources) ?? undefined,
      emit: (e) => this.emit(e),
    })
    this.detachEngine = this.engine.onEvent((event) => {
      if (event.type === 'engine.status' && (event.status === 'crashed' || event.status === 'stopped'))
        workspaceApi.onEngineStopped(event.reason ?? event.status, this.closing || event.status === 'stopped')
      if (event.type === 'run.status' && event.status !== 'running' && event.status !== 'queued') workspaceApi.onRunEnded(event.runId)
      this.emit(event)
    })
    // Runs left "running" by a process that died (kill -9, power loss) are interrupted, resumable.
    for (const r of repairRuns(runsDir(this.workspace))) this.repaired.push(r)
    this.impl = {
      'system.info': async () => {
        const backend = await this.engine.request('system.info', undefined)
        return { app: this.app, host: this.host, runtime: this.runtime, engine: { pid: this.engine.pid, backend } }
      },
      'models.inspect': (args) => {
        // The folder, not a file in it (a config.json typed in gave ".../config.json/config.json: not found").
        if (existsSync(args.dir) && statSync(args.dir).isFile())
          throw new ApiError(
            'invalid_argument',
            `dir: ${args.dir} is a file; give the model's folder${basename(args.dir) === 'config.json' ? ` (${dirname(args.dir)})` : ''}`,
            'dir',
          )
        return this.engine.request('models.inspect', args)
      },
      // Datasets are read and written here, not in the engine: streaming I/O that yields to the
      // event loop every few milliseconds (src/main/data).
      ...datasetMethods(
        this.workspace,
        (event) => this.emit(event),
        () => this.seeded(),
      ),
      // Bookkeeping of models, runs and conversations here; compute in the engine.
      ...workspaceApi.methods,
      // Handing runs to cluster trainers and importing their adapters back.
      ...handoffMethods({ engine: this.engine, workspace: this.workspace }),
    }
    this.api = Object.fromEntries(METHODS.map((m) => [m, (args: unknown) => this.call(m, args)])) as unknown as WorkbenchApi
  }

  /**
   * Validates `args` for `method` and runs it. Hosts call this with whatever arrived over their
   * boundary; it rejects with an ApiError (invalid_argument naming the field, unknown_method,
   * engine_unavailable, failed).
   */
  async call<M extends Method>(method: M, args: unknown): Promise<ResultOf<M>> {
    if (!isMethod(method)) throw new ApiError('unknown_method', `unknown method ${JSON.stringify(method)}`)
    const parsed = validateArgs(method, args)
    try {
      return await (this.impl[method] as (a: ArgsOf<M>) => Promise<ResultOf<M>>)(parsed)
    } catch (e) {
      throw ApiError.from(e)
    }
  }

  onEvent(listener: (event: WorkbenchEvent) => void): Unsubscribe {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  log(level: LogLevel, message: string, source: EventSource = 'service'): void {
    this.emit({ type: 'log', time: Date.now(), level, source, message })
  }

  /** Runs found "running" at start whose process had died, now marked interrupted. */
  readonly repaired: RunRecord[] = []
  private closing = false

  /** Starts the engine now rather than on the first request (and seeds a new workspace); resolves when ready. */
  async start(): Promise<void> {
    for (const r of this.repaired) this.log('warn', `run ${r.id} was left running by a process that stopped: ${r.message}`)
    await Promise.all([this.engine.start(), this.seeded()])
  }

  private firstRun?: { resources: string }
  private seeding?: Promise<void>

  /** Resolves once a first start has put the sample datasets in the workspace (at once otherwise). */
  private seeded(): Promise<void> {
    if (!this.firstRun) return Promise.resolve()
    const { resources } = this.firstRun
    this.seeding ??= seedWorkspace(this.workspace, resources, { log: (line) => this.log('info', line) }).then(
      (r) => {
        if (r.seeded) this.log('info', `first start: imported ${r.datasets.length} sample datasets into ${this.workspace}`)
      },
      (e: unknown) =>
        this.log('warn', `first start: the sample datasets could not be imported: ${e instanceof Error ? e.message : String(e)}`),
    )
    return this.seeding
  }

  /**
   * Stops the engine and drops every listener. A run in training stops at its next step
   * boundary, keeps a checkpoint and is marked interrupted before the engine exits (within the
   * engine client's stop timeout; past it the engine is killed and the run repaired as
   * interrupted from its last checkpoint). Listeners hear it all until the engine is gone.
   */
  async close(): Promise<void> {
    this.closing = true
    try {
      await this.engine.stop()
    } finally {
      this.detachEngine()
      this.listeners.clear()
    }
  }

  private emit(event: WorkbenchEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch {
        // One failing listener (a closed socket, a destroyed window) must not silence the rest.
      }
    }
  }
}
