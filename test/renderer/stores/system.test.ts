import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { useSystemStore } from '../../../src/renderer/src/stores/system'
import { fakeBridge, systemInfo } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('useSystemStore', () => {
  it('loads the system info and lists the backends that were unavailable', async () => {
    const system = useSystemStore()
    await system.refresh()
    expect(system.backend?.name).toBe('wasm')
    expect(system.unavailable.map((a) => a.name)).toEqual(['tfjs-node-gpu', 'tfjs-node'])
    expect(system.engineStatus).toBe('ready')
    expect(system.error).toBeNull()
  })

  it('keeps the error message when the engine cannot start', async () => {
    fake.bridge.system.info.mockRejectedValueOnce(new ApiError('engine_unavailable', 'the engine could not start: no backend'))
    const system = useSystemStore()
    await system.refresh()
    expect(system.error).toBe('the engine could not start: no backend')
    expect(system.loading).toBe(false)
  })

  it('keeps a refused token apart from other failures: the page shows only how to get the link', async () => {
    fake.bridge.system.info.mockRejectedValueOnce(
      new ApiError('unauthorized', 'This page was opened without its access token. Open the link…'),
    )
    const system = useSystemStore()
    await system.refresh()
    expect(system.unauthorized).toBe('This page was opened without its access token. Open the link…')
    expect(system.error).toBeNull()
  })

  it('follows engine status and logs from the event stream, and unsubscribes', async () => {
    const system = useSystemStore()
    await system.refresh()
    const stop = system.listen()
    system.listen() // idempotent: still one subscription
    expect(fake.listeners.size).toBe(1)

    fake.emit({ type: 'engine.status', time: 1, status: 'crashed', pid: 42, reason: 'the engine process was killed by SIGKILL' })
    expect(system.engineStatus).toBe('crashed')
    expect(system.engineReason).toMatch(/SIGKILL/)

    const cpu = { ...systemInfo.engine.backend, name: 'cpu' as const }
    fake.emit({ type: 'engine.status', time: 2, status: 'ready', pid: 43, backend: cpu })
    expect(system.backend?.name).toBe('cpu')
    expect(system.info?.engine.pid).toBe(43)

    for (let i = 0; i < 250; i++) fake.emit({ type: 'log', time: i, level: 'info', source: 'engine', message: `line ${i}` })
    expect(system.logs).toHaveLength(200)
    expect(system.logs.at(-1)?.message).toBe('line 249')

    stop()
    expect(fake.listeners.size).toBe(0)
  })

  it('says when the server is away, reads the system again when it is back, and shows a refused token', async () => {
    const system = useSystemStore()
    await system.refresh()
    system.listen()
    expect(system.connection).toBe('ok')
    fake.emit({ type: 'connection', connected: false })
    expect(system.connection).toBe('lost')
    expect(fake.bridge.system.info).toHaveBeenCalledTimes(1)
    fake.emit({ type: 'engine.status', time: 1, status: 'crashed', pid: 42 })
    fake.emit({ type: 'connection', connected: true })
    expect(system.connection).toBe('ok')
    expect(fake.bridge.system.info).toHaveBeenCalledTimes(2) // what the events missed
    await new Promise((r) => setTimeout(r, 0))
    expect(system.engineStatus).toBe('ready')
    fake.emit({ type: 'connection', connected: false, refused: "This page's access token is not the server's. Open the link…" })
    expect(system.unauthorized).toMatch(/^This page's access token is not the server's/)
  })
})
