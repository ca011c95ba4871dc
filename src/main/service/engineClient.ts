/**
 * The service's handle on the engine process: starts it through an injected spawner
 * (child_process.fork here, Electron's utilityProcess in the app), correlates requests with
 * responses, relays the engine's events and output, and survives the engine's death: pending
 * requests are rejected with the reason, and the next request starts a fresh engine.
 */
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { ApiError, type BackendName, type BackendReport, type EngineStatus, type Unsubscribe, type WorkbenchEvent } from '../../shared/api'
import {
  BACKEND_ARG,
  ENGINE_MARKER,
  type EngineArgs,
  type EngineMethod,
  type EngineReady,
  type EngineResult,
  type ToEngine,
  isFromEngine,
} from '../engineProcess/protocol'

/** A started engine process, whatever started it. */
export interface EngineChild {
  readonly pid: number | null
  send(message: ToEngine): void
  kill(): void
  onMessage(listener: (message: unknown) => void): void
  onExit(listener: (exit: { code: number | null; signal: string | null }) => void): void
  /** The process's output, relayed as log events and quoted when it dies. */
  readonly stdout?: NodeJS.ReadableStream | null
  readonly stderr?: NodeJS.ReadableStream | null
}

export interface SpawnOptions {
  backend?: BackendName
}

export type EngineSpawner = (options: SpawnOptions) => EngineChild

/** The arguments the engine entry understands (see src/main/engineProcess/process.ts). */
export function engineArgs(options: SpawnOptions): string[] {
  return options.backend ? [ENGINE_MARKER, BACKEND_ARG, options.backend] : [ENGINE_MARKER]
}

export interface ForkOptions {
  /** The engine entry: out/main/engine.js, or src/main/engineProcess/process.ts with tsx. */
  entry: string
  /** Node flags for the child, e.g. ['--import', 'tsx'] to run the TypeScript entry. */
  execArgv?: string[]
  env?: NodeJS.ProcessEnv
}

/** Where the engine entry is, seen from this module: built (out/main) or from source (tsx). */
export function defaultEngineEntry(): ForkOptions {
  const here = import.meta.url
  if (here.endsWith('.ts')) {
    return { entry: fileURLToPath(new URL('../engineProcess/process.ts', here)), execArgv: ['--import', 'tsx'] }
  }
  // Bundled: every chunk of the main build sits in out/main next to engine.js.
  return { entry: fileURLToPath(new URL('./engine.js', here)), execArgv: [] }
}

/**
 * V8 flags of the engine process. A training step's tensors, tape and closures live from its
 * forward to its backward, long enough to be promoted out of V8's default 16 MB young generation
 * and die in the old one: a full mark-compact every ~85 ms of training. --trace-gc over 14 steps
 * of the issue-16 Mixtral (start-up included): 154 mark-compacts, 71 ms of GC per step; with 64 MB
 * semi-spaces they die young: 29 mark-compacts, 44 ms per step (the young generation grows to its
 * maximum only where a workload fills it).
 */
export const ENGINE_V8_FLAGS = ['--max-semi-space-size=64']

/**
 * glibc malloc settings of the engine process (Linux; other C libraries ignore the variable).
 * onnxruntime-node copies every product it returns into a new buffer and V8 frees those (and the
 * engine's other transient buffers) together at each young-generation GC; by default glibc then
 * hands the freed heap back to the system and the next buffers fault their pages in again. Measured
 * on the issue-16 Mixtral's training step (2 threads, this 2-core VM, where a page fault is dear):
 * 44-97 thousand page faults and 0.5-1.2 s of system time a step in most steps, 1.26-2.35 s a
 * step; with these settings ~330 faults, 20-80 ms, 0.63-0.75 s a step. Buffers under 32 MB come
 * from the heap, and up to 512 MB of freed heap is kept for reuse instead of returned.
 */
export const ENGINE_MALLOC_TUNABLES = 'glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912'

/** The engine process's environment: `base`, with ENGINE_MALLOC_TUNABLES unless it sets malloc tunables of its own. */
export function engineEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const own = base.GLIBC_TUNABLES
  if (own?.includes('glibc.malloc.')) return base
  return { ...base, GLIBC_TUNABLES: own ? `${own}:${ENGINE_MALLOC_TUNABLES}` : ENGINE_MALLOC_TUNABLES }
}

/** Spawns the engine with child_process.fork (server mode, CLI, tests). */
export function forkSpawner(options: ForkOptions = defaultEngineEntry()): EngineSpawner {
  return (spawn) => {
    const child = fork(options.entry, engineArgs(spawn), {
      execArgv: [...ENGINE_V8_FLAGS, ...(options.execArgv ?? [])],
      env: engineEnv(options.env ?? process.env),
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Structured clone: typed arrays (logits, metrics) cross without JSON.
      serialization: 'advanced',
    })
    return {
      get pid() {
        return child.pid ?? null
      },
      send: (message) => {
        if (!child.connected) throw new Error('the engine channel is closed')
        child.send(message)
      },
      kill: () => void child.kill('SIGKILL'),
      onMessage: (listener) => void child.on('message', listener),
      // 'exit' can precede the end of stdio; 'close' waits for both, so the last stderr lines are in.
      onExit: (listener) => void child.once('close', (code, signal) => listener({ code, signal })),
      stdout: child.stdout,
      stderr: child.stderr,
    }
  }
}

export interface EngineClientOptions {
  backend?: BackendName
  /** How long the engine may take to initialise its backend. */
  startTimeoutMs?: number
  /** How long stop() waits for a clean exit before killing. */
  stopTimeoutMs?: number
}

interface Pending {
  method: EngineMethod
  resolve: (value: unknown) => void
  reject: (error: ApiError) => void
}

interface Running {
  child: EngineChild
  ready: Promise<EngineReady>
  /** The engine's last stderr lines, searched for the error when it dies. */
  tail: string[]
  fatal?: string
  stopping: boolean
  exited: Promise<void>
}

const TAIL_LINES = 20

export class EngineClient {
  private readonly spawner: EngineSpawner
  private readonly options: Required<Omit<EngineClientOptions, 'backend'>> & { backend?: BackendName }
  private readonly listeners = new Set<(event: WorkbenchEvent) => void>()
  private readonly pending = new Map<number, Pending>()
  private running: Running | undefined
  private nextId = 1
  private lastReady: EngineReady | undefined
  private currentStatus: EngineStatus = 'stopped'

  constructor(spawner: EngineSpawner, options: EngineClientOptions = {}) {
    this.spawner = spawner
    this.options = { startTimeoutMs: 180_000, stopTimeoutMs: 3_000, ...options }
  }

  get status(): EngineStatus {
    return this.currentStatus
  }

  /** The pid of the running engine, or null. */
  get pid(): number | null {
    return this.running?.child.pid ?? null
  }

  /** The engine's own process id, as it reported when ready (what its run locks name; a wrapper may stand between it and `pid`). */
  get enginePid(): number | null {
    return this.running && this.lastReady ? this.lastReady.pid : null
  }

  /** The backend report of the last engine that started. */
  get backend(): BackendReport | undefined {
    return this.lastReady?.backend
  }

  onEvent(listener: (event: WorkbenchEvent) => void): Unsubscribe {
    this.listeners.add(listener)
    return () => void this.listeners.delete(listener)
  }

  /** Starts the engine if it is not running; resolves when its backend is ready. */
  start(): Promise<EngineReady> {
    if (!this.running) {
      try {
        this.running = this.spawn()
      } catch (e) {
        const reason = `the engine could not be started: ${e instanceof Error ? e.message : String(e)}`
        this.setStatus('crashed', { reason, pid: null })
        return Promise.reject(new ApiError('engine_unavailable', reason))
      }
    }
    return this.running.ready
  }

  /** Stops the engine (if any) and starts a fresh one. */
  async restart(): Promise<EngineReady> {
    await this.stop()
    return this.start()
  }

  /** Asks the engine to exit, kills it if it does not; pending requests are rejected. */
  async stop(): Promise<void> {
    const running = this.running
    if (!running) return
    running.stopping = true
    try {
      running.child.send({ kind: 'shutdown' })
    } catch {
      // The channel is already closed: the exit is under way.
    }
    const timer = setTimeout(() => running.child.kill(), this.options.stopTimeoutMs)
    await running.exited
    clearTimeout(timer)
  }

  /** Sends one request, starting the engine first if needed. */
  async request<M extends EngineMethod>(method: M, args: EngineArgs<M>): Promise<EngineResult<M>> {
    await this.start()
    const running = this.running
    if (!running) throw new ApiError('engine_unavailable', `the engine stopped before ${method} could be sent`)
    const id = this.nextId++
    return new Promise<EngineResult<M>>((resolve, reject) => {
      this.pending.set(id, { method, resolve: resolve as (v: unknown) => void, reject })
      try {
        running.child.send({ kind: 'request', id, method, args })
      } catch (e) {
        this.pending.delete(id)
        reject(new ApiError('engine_unavailable', `could not send ${method} to the engine: ${e instanceof Error ? e.message : String(e)}`))
      }
    })
  }

  private emit(event: WorkbenchEvent): void {
    for (const listener of this.listeners) {
      try {
        listener(event)
      } catch {
        // A listener's failure is its own; the others still hear the event.
      }
    }
  }

  private setStatus(status: EngineStatus, extra: { reason?: string; backend?: BackendReport; pid?: number | null } = {}): void {
    this.currentStatus = status
    this.emit({ type: 'engine.status', time: Date.now(), status, pid: extra.pid ?? this.pid, ...pick(extra) })
  }

  private spawn(): Running {
    const child = this.spawner({ backend: this.options.backend })
    let settleReady!: { resolve: (r: EngineReady) => void; reject: (e: ApiError) => void }
    const ready = new Promise<EngineReady>((resolve, reject) => (settleReady = { resolve, reject }))
    ready.catch(() => {}) // observed by start(); avoid an unhandled rejection when nobody waits
    let resolveExited!: () => void
    const running: Running = { child, ready, tail: [], stopping: false, exited: new Promise((r) => (resolveExited = r)) }
    let isReady = false

    const timer = setTimeout(() => {
      settleReady.reject(
        new ApiError('engine_unavailable', `the engine did not become ready within ${this.options.startTimeoutMs / 1000} s`),
      )
      child.kill()
    }, this.options.startTimeoutMs)

    this.setStatus('starting', { pid: child.pid })
    this.relayOutput(child.stdout, 'info')
    this.relayOutput(child.stderr, 'warn', running.tail)

    child.onMessage((message) => {
      if (!isFromEngine(message)) return
      switch (message.kind) {
        case 'ready':
          clearTimeout(timer)
          isReady = true
          this.lastReady = message
          this.setStatus('ready', { backend: message.backend, pid: message.pid })
          settleReady.resolve(message)
          break
        case 'fatal':
          running.fatal = message.message
          break
        case 'event':
          this.emit(message.event)
          break
        case 'response': {
          const p = this.pending.get(message.id)
          if (!p) break
          this.pending.delete(message.id)
          if (message.ok) p.resolve(message.result)
          else p.reject(ApiError.from(message.error))
          break
        }
      }
    })

    child.onExit(({ code, signal }) => {
      clearTimeout(timer)
      if (this.running === running) this.running = undefined
      const how = signal ? `was killed by ${signal}` : `exited with code ${code}`
      const last = running.fatal ?? crashLine(running.tail)
      const reason = `the engine process ${how}${last ? `: ${last}` : ''}`
      if (!isReady)
        settleReady.reject(new ApiError('engine_unavailable', running.fatal ? `the engine could not start: ${running.fatal}` : reason))
      for (const [id, p] of this.pending) {
        this.pending.delete(id)
        p.reject(new ApiError('engine_unavailable', `${reason} (while handling ${p.method})`))
      }
      if (running.stopping && !running.fatal) this.setStatus('stopped', { pid: child.pid })
      else this.setStatus('crashed', { reason, pid: child.pid })
      resolveExited()
    })
    return running
  }

  private relayOutput(stream: NodeJS.ReadableStream | null | undefined, level: 'info' | 'warn', tail?: string[]): void {
    if (!stream) return
    stream.setEncoding('utf8')
    let partial = ''
    const line = (text: string): void => {
      const trimmed = text.trimEnd()
      if (trimmed === '') return
      if (tail) {
        tail.push(trimmed)
        if (tail.length > TAIL_LINES) tail.shift()
      }
      this.emit({ type: 'log', time: Date.now(), level, source: 'engine', message: trimmed })
    }
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop() ?? ''
      lines.forEach(line)
    })
    stream.on('end', () => {
      line(partial)
      partial = ''
    })
  }
}

function pick(extra: { reason?: string; backend?: BackendReport }): { reason?: string; backend?: BackendReport } {
  const out: { reason?: string; backend?: BackendReport } = {}
  if (extra.reason !== undefined) out.reason = extra.reason
  if (extra.backend !== undefined) out.backend = extra.backend
  return out
}

/** The line of a dying Node process's stderr that says what went wrong (not its stack or version banner). */
export function crashLine(tail: readonly string[]): string | undefined {
  for (let i = tail.length - 1; i >= 0; i--) {
    const line = tail[i].trim()
    if (/^at /.test(line)) continue
    if (/\b(\w*Error|Exception|FATAL|out of memory|Aborted)\b/i.test(line)) return line.slice(0, 500)
  }
  return undefined
}
