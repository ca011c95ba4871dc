/**
 * An in-process engine for service tests: the real serveEngine dispatch loop from
 * src/main/engineProcess/process.ts, wired to an EngineChild without a process, with fake handlers and
 * a fake backend. `crash()` makes it die the way a killed process does.
 */
import { EventEmitter } from 'node:events'
import type { BackendReport } from '../../../src/shared/api'
import { type EngineHandlers, handlers, serveEngine } from '../../../src/main/engineProcess/process'
import type { FromEngine, ToEngine } from '../../../src/main/engineProcess/protocol'
import type { EngineChild, EngineSpawner } from '../../../src/main/service/engineClient'

export const fakeBackend: BackendReport = {
  name: 'cpu',
  tfBackend: 'cpu',
  source: 'auto',
  attempts: [
    { name: 'tfjs-node-gpu', ok: false, reason: 'Cannot find module @tensorflow/tfjs-node-gpu' },
    { name: 'tfjs-node', ok: false, reason: 'Cannot find module @tensorflow/tfjs-node' },
    { name: 'wasm', ok: false, reason: 'no wasm here' },
    { name: 'cpu', ok: true },
  ],
  tfjsVersion: '4.22.0',
}

export interface FakeChild extends EngineChild {
  /** Requests this engine received. */
  readonly received: ToEngine[]
  crash(signal?: string): void
}

export interface FakeEngineOptions {
  handlers?: Partial<EngineHandlers>
  /** Makes the backend initialisation fail with this message (the engine reports fatal and exits). */
  failInit?: () => string | undefined
}

/** The real engine handlers, with a fake backend and a fake models.inspect. */
const defaultHandlers: EngineHandlers = {
  ...handlers,
  'system.info': (_args, ctx) => ctx.backend,
  'models.inspect': (args) => ({
    dir: args.dir,
    family: 'mixtral',
    numLayers: 2,
    sparseLayers: [0, 1],
    numExperts: 4,
    topK: 2,
    routerType: 'softmax_topk',
    params: { total: 100, active: 60, experts: 80 },
    bytesByDtype: { float32: 400, bfloat16: 200, float16: 200 },
    checkpointDtype: 'float32',
  }),
}

let nextPid = 1000

export function fakeSpawner(options: FakeEngineOptions = {}): { spawner: EngineSpawner; children: FakeChild[] } {
  const children: FakeChild[] = []
  const spawner: EngineSpawner = () => {
    const toEngine = new EventEmitter()
    const fromEngine = new EventEmitter()
    const exits = new EventEmitter()
    const received: ToEngine[] = []
    let alive = true
    const die = (code: number | null, signal: string | null): void => {
      if (!alive) return
      alive = false
      setImmediate(() => exits.emit('exit', { code, signal }))
    }
    const pid = nextPid++
    const child: FakeChild = {
      pid,
      received,
      send: (message) => {
        if (!alive) throw new Error('channel closed')
        received.push(message)
        // Asynchronous, like a real channel.
        setImmediate(() => alive && toEngine.emit('message', structuredClone(message)))
      },
      kill: () => die(null, 'SIGKILL'),
      crash: (signal = 'SIGKILL') => die(null, signal),
      onMessage: (listener) => void fromEngine.on('message', listener),
      onExit: (listener) => void exits.once('exit', listener),
    }
    children.push(child)
    const failure = options.failInit?.()
    void serveEngine(
      {
        // What the engine sent before it died still arrives, as over a real channel.
        send: (message: FromEngine) => {
          if (alive) setImmediate(() => fromEngine.emit('message', structuredClone(message)))
        },
        onMessage: (listener) => void toEngine.on('message', listener),
      },
      {
        handlers: { ...defaultHandlers, ...options.handlers } as EngineHandlers,
        init: async () => {
          if (failure) throw new Error(failure)
          return fakeBackend
        },
        exit: (code) => die(code, null),
      },
    ).catch(() => die(1, null))
    return child
  }
  return { spawner, children }
}
