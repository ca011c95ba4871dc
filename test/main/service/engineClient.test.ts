import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import type { ApiError, WorkbenchEvent } from '../../../src/shared/api'
import {
  ENGINE_MALLOC_TUNABLES,
  ENGINE_V8_FLAGS,
  EngineClient,
  crashLine,
  engineEnv,
  forkSpawner,
} from '../../../src/main/service/engineClient'
import { fakeBackend, fakeSpawner } from './fakeEngine'

const clients: EngineClient[] = []
function track(client: EngineClient): EngineClient {
  clients.push(client)
  return client
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()))
})

describe('EngineClient with an in-process engine', () => {
  it('starts the engine on the first request and correlates responses', async () => {
    const { spawner, children } = fakeSpawner()
    const client = track(new EngineClient(spawner))
    const [a, b] = await Promise.all([
      client.request('models.inspect', { dir: '/models/a' }),
      client.request('models.inspect', { dir: '/models/b' }),
    ])
    expect(a.dir).toBe('/models/a')
    expect(b.dir).toBe('/models/b')
    expect(await client.request('system.info', undefined)).toEqual(fakeBackend)
    expect(children).toHaveLength(1)
    expect(client.status).toBe('ready')
    expect(client.backend?.name).toBe('cpu')
  })

  it('turns a handler error into an ApiError with the engine message', async () => {
    const { spawner } = fakeSpawner({
      handlers: {
        'models.inspect': () => {
          throw new Error('no config.json in /nowhere')
        },
      },
    })
    const client = track(new EngineClient(spawner))
    await expect(client.request('models.inspect', { dir: '/nowhere' })).rejects.toMatchObject({
      name: 'ApiError',
      code: 'failed',
      message: 'no config.json in /nowhere',
    })
  })

  it('rejects pending requests with the reason when the engine dies, then starts a new one', async () => {
    const { spawner, children } = fakeSpawner({
      handlers: { 'models.inspect': () => new Promise(() => {}) }, // never answers
    })
    const client = track(new EngineClient(spawner))
    const events: WorkbenchEvent[] = []
    client.onEvent((e) => events.push(e))
    await client.start()
    const pending = client.request('models.inspect', { dir: '/slow' })
    await new Promise((r) => setTimeout(r, 10))
    children[0].crash('SIGKILL')
    const error = (await pending.catch((e: unknown) => e)) as ApiError
    expect(error.code).toBe('engine_unavailable')
    expect(error.message).toMatch(/killed by SIGKILL/)
    expect(error.message).toMatch(/models\.inspect/)
    expect(events.filter((e) => e.type === 'engine.status').map((e) => e.status)).toEqual(['starting', 'ready', 'crashed'])
    expect(client.status).toBe('crashed')

    // The next request starts a fresh engine.
    expect((await client.request('system.info', undefined)).name).toBe('cpu')
    expect(children).toHaveLength(2)
  })

  it('reports an engine that cannot start, and tries again on the next request', async () => {
    let fail = true
    const { spawner, children } = fakeSpawner({ failInit: () => (fail ? 'backend tfjs-node-gpu is unavailable: no CUDA' : undefined) })
    const client = track(new EngineClient(spawner))
    await expect(client.request('system.info', undefined)).rejects.toMatchObject({
      code: 'engine_unavailable',
      message: expect.stringContaining('no CUDA'),
    })
    fail = false
    await expect(client.request('system.info', undefined)).resolves.toMatchObject({ name: 'cpu' })
    expect(children).toHaveLength(2)
  })

  it('rejects with a clear error when the spawner itself fails', async () => {
    const client = track(
      new EngineClient(() => {
        throw new Error('spawn ENOENT')
      }),
    )
    await expect(client.start()).rejects.toMatchObject({ code: 'engine_unavailable', message: expect.stringContaining('spawn ENOENT') })
  })

  it('stops cleanly and restarts on demand', async () => {
    const { spawner, children } = fakeSpawner()
    const client = track(new EngineClient(spawner))
    const events: WorkbenchEvent[] = []
    client.onEvent((e) => events.push(e))
    await client.start()
    await client.stop()
    expect(client.status).toBe('stopped')
    expect(client.pid).toBeNull()
    await client.restart()
    expect(client.status).toBe('ready')
    expect(children).toHaveLength(2)
    expect(events.filter((e) => e.type === 'engine.status').map((e) => e.status)).toEqual([
      'starting',
      'ready',
      'stopped',
      'starting',
      'ready',
    ])
  })
})

describe('crashLine', () => {
  it('finds the error line of a Node crash, not its stack or banner', () => {
    const tail = ['file:///x.js:3', "throw new Error('boom')", '^', '', 'Error: boom', '    at main (file:///x.js:3:7)', 'Node.js v20.20.2']
    expect(crashLine(tail)).toBe('Error: boom')
    expect(crashLine(['FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory'])).toMatch(/heap out of memory/)
    expect(crashLine(['just some output'])).toBeUndefined()
  })
})

describe('EngineClient with a real engine process (src/main/engineProcess/process.ts via tsx)', () => {
  const entry = fileURLToPath(new URL('../../../src/main/engineProcess/process.ts', import.meta.url))
  const mixtral = fileURLToPath(new URL('../../fixtures/moe-reference/mixtral', import.meta.url))
  const spawner = forkSpawner({ entry, execArgv: ['--import', 'tsx'], env: { ...process.env, MOE_WORKBENCH_BACKEND: 'cpu' } })

  it('answers system.info and models.inspect, survives a kill, and restarts', async () => {
    const client = track(new EngineClient(spawner))
    const ready = await client.start()
    expect(ready.backend.name).toBe('cpu')
    expect(ready.backend.source).toBe('env')
    expect(client.pid).toBe(ready.pid)

    const info = await client.request('models.inspect', { dir: mixtral })
    expect(info).toMatchObject({ family: 'mixtral', numLayers: 2, numExperts: 4, topK: 2 })

    const pending = client.request('models.inspect', { dir: mixtral })
    process.kill(ready.pid, 'SIGKILL')
    await expect(pending).rejects.toMatchObject({ code: 'engine_unavailable', message: expect.stringMatching(/killed by SIGKILL/) })

    const again = await client.request('system.info', undefined)
    expect(again.name).toBe('cpu')
    expect(client.pid).not.toBe(ready.pid)
  })

  it('reports a missing folder as a failed request without losing the engine', async () => {
    const client = track(new EngineClient(spawner))
    const { pid } = await client.start()
    await expect(client.request('models.inspect', { dir: '/definitely/not/here' })).rejects.toMatchObject({ code: 'failed' })
    expect(client.pid).toBe(pid)
  })

  it('names the backend when a forced backend cannot start', async () => {
    const client = track(new EngineClient(spawner, { backend: 'tfjs-node-gpu' }))
    // Only where tfjs-node-gpu is actually missing (it is optional and needs libtensorflow).
    const started = await client.start().then(
      () => undefined,
      (e: unknown) => e as ApiError,
    )
    if (started) {
      expect(started.code).toBe('engine_unavailable')
      expect(started.message).toMatch(/tfjs-node-gpu/)
    }
  })
})

describe('forkSpawner', () => {
  it("starts the engine with the engine's V8 flags before the caller's", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-fork-'))
    const entry = join(dir, 'entry.mjs')
    writeFileSync(entry, 'process.send({ execArgv: process.execArgv }, () => process.exit(0))\n')
    const child = forkSpawner({ entry, execArgv: ['--no-warnings'] })({})
    const got = await new Promise<unknown>((resolve) => child.onMessage(resolve))
    expect(got).toEqual({ execArgv: [...ENGINE_V8_FLAGS, '--no-warnings'] })
    expect(ENGINE_V8_FLAGS).toContain('--max-semi-space-size=64')
  })

  it("starts the engine with glibc's malloc told to keep its freed heap, and the caller's own settings", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-fork-'))
    const entry = join(dir, 'entry.mjs')
    writeFileSync(entry, 'process.send({ tunables: process.env.GLIBC_TUNABLES, mine: process.env.MINE }, () => process.exit(0))\n')
    const env: NodeJS.ProcessEnv = { ...process.env, MINE: 'kept' }
    delete env.GLIBC_TUNABLES
    const child = forkSpawner({ entry, execArgv: [], env })({})
    const got = await new Promise<unknown>((resolve) => child.onMessage(resolve))
    expect(got).toEqual({ tunables: ENGINE_MALLOC_TUNABLES, mine: 'kept' })
    expect(ENGINE_MALLOC_TUNABLES).toBe('glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=536870912')
  })
})

describe('engineEnv', () => {
  it('adds the malloc tunables to the environment, after tunables of other kinds, and leaves malloc settings a user made', () => {
    expect(engineEnv({ A: '1' })).toEqual({ A: '1', GLIBC_TUNABLES: ENGINE_MALLOC_TUNABLES })
    expect(engineEnv({ GLIBC_TUNABLES: 'glibc.cpu.hwcaps=-AVX512F' }).GLIBC_TUNABLES).toBe(
      `glibc.cpu.hwcaps=-AVX512F:${ENGINE_MALLOC_TUNABLES}`,
    )
    const mine = { GLIBC_TUNABLES: 'glibc.malloc.trim_threshold=0' }
    expect(engineEnv(mine)).toEqual(mine)
    const base = { A: '1' }
    engineEnv(base)
    expect(base).toEqual({ A: '1' }) // the caller's object is not changed
  })
})
