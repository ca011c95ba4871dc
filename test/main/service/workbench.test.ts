import { afterEach, describe, expect, it } from 'vitest'
import type { ApiError, WorkbenchEvent } from '../../../src/shared/api'
import { EngineClient } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { fakeSpawner } from './fakeEngine'

const services: Workbench[] = []
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()))
})

function setup(options: Parameters<typeof fakeSpawner>[0] = {}) {
  const fake = fakeSpawner(options)
  const workbench = new Workbench({
    engine: new EngineClient(fake.spawner),
    host: 'server',
    app: { name: 'MoE Workbench', version: '9.9.9' },
  })
  services.push(workbench)
  return { workbench, ...fake }
}

describe('Workbench service', () => {
  it('answers system.info with the app, the host, the runtime and the engine backend', async () => {
    const { workbench, children } = setup()
    const info = await workbench.call('system.info', undefined)
    expect(info.app).toEqual({ name: 'MoE Workbench', version: '9.9.9' })
    expect(info.host).toBe('server')
    expect(info.runtime.node).toBe(process.versions.node)
    expect(info.engine.backend.name).toBe('cpu')
    expect(info.engine.pid).toBe(children[0].pid)
  })

  it('forwards models.inspect to the engine with the validated (trimmed) arguments', async () => {
    const { workbench, children } = setup()
    const info = await workbench.api['models.inspect']({ dir: '  /models/tiny  ' })
    expect(info.dir).toBe('/models/tiny')
    expect(children[0].received).toContainEqual({ kind: 'request', id: 1, method: 'models.inspect', args: { dir: '/models/tiny' } })
  })

  it.each([
    [{ dir: 42 }, 'dir', /dir: must be a string, not a number/],
    [{}, 'dir', /dir: is required \(a string\)/],
    [{ dir: '' }, 'dir', /dir: must not be empty/],
    [{ dir: '/x', extra: true }, 'extra', /unknown field "extra"/],
  ])('rejects the bad payload %j naming the field %s, before it reaches the engine', async (args, field, message) => {
    const { workbench, children } = setup()
    const error = (await workbench.call('models.inspect', args).catch((e: unknown) => e)) as ApiError
    expect(error).toMatchObject({ name: 'ApiError', code: 'invalid_argument', field })
    expect(error.message).toMatch(/^models\.inspect: /)
    expect(error.message).toMatch(message)
    expect(error.toJSON()).toEqual({ code: 'invalid_argument', message: error.message, field })
    expect(children).toHaveLength(0) // the engine was not even started
  })

  it('rejects arguments to a method that takes none, and unknown methods', async () => {
    const { workbench } = setup()
    await expect(workbench.call('system.info', { verbose: true })).rejects.toMatchObject({
      code: 'invalid_argument',
      message: 'system.info: takes no arguments',
    })
    await expect(workbench.call('system.shutdown' as 'system.info', undefined)).rejects.toMatchObject({ code: 'unknown_method' })
  })

  it('keeps working after the engine crashes mid-request', async () => {
    let hang = true
    const { workbench, children } = setup({
      handlers: {
        'models.inspect': (args) =>
          hang
            ? new Promise(() => {})
            : {
                dir: args.dir,
                family: 'olmoe',
                numLayers: 1,
                sparseLayers: [0],
                numExperts: 8,
                topK: 2,
                routerType: 'softmax_topk',
                params: { total: 1, active: 1, experts: 0 },
                bytesByDtype: { float32: 4, bfloat16: 2, float16: 2 },
                checkpointDtype: 'float32',
              },
      },
    })
    const events: WorkbenchEvent[] = []
    workbench.onEvent((e) => events.push(e))
    await workbench.start()
    const pending = workbench.call('models.inspect', { dir: '/big' })
    await new Promise((r) => setTimeout(r, 10))
    children[0].crash('SIGKILL')
    await expect(pending).rejects.toMatchObject({
      code: 'engine_unavailable',
      message: expect.stringContaining('while handling models.inspect'),
    })
    expect(events).toContainEqual(
      expect.objectContaining({ type: 'engine.status', status: 'crashed', reason: expect.stringContaining('SIGKILL') }),
    )

    hang = false
    await expect(workbench.call('models.inspect', { dir: '/small' })).resolves.toMatchObject({ family: 'olmoe' })
    expect(children).toHaveLength(2)
  })

  it('emits its own log events and stops emitting after unsubscribe', async () => {
    const { workbench } = setup()
    const seen: string[] = []
    const off = workbench.onEvent((e) => e.type === 'log' && seen.push(e.message))
    workbench.log('info', 'hello')
    off()
    workbench.log('info', 'unheard')
    expect(seen).toEqual(['hello'])
  })
})

describe('models.create names what is wrong before allocating anything', () => {
  it('refuses a tokenizerFrom folder without tokenizer.json, and an architecture that does not fit in memory', async () => {
    const { mkdtempSync, readdirSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const workspace = mkdtempSync(join(tmpdir(), 'moe-ws-'))
    const fake = fakeSpawner()
    const wb = new Workbench({ engine: new EngineClient(fake.spawner), host: 'server', workspace })
    services.push(wb)
    const empty = mkdtempSync(join(tmpdir(), 'moe-notok-'))
    await expect(wb.api['models.create']({ name: 'm', config: { family: 'mixtral' }, tokenizerFrom: empty })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'tokenizerFrom',
      message: expect.stringMatching(/has no tokenizer\.json/),
    })
    await expect(
      wb.api['models.create']({
        name: 'huge',
        config: {
          family: 'mixtral',
          vocabSize: 32000,
          hiddenSize: 8192,
          numLayers: 96,
          numHeads: 64,
          numKvHeads: 8,
          headDim: 128,
          expertIntermediateSize: 28672,
          numExperts: 64,
          topK: 2,
        },
      }),
    ).rejects.toMatchObject({
      code: 'invalid_argument',
      message: expect.stringMatching(/B parameters \(.* GiB in float32\); .* Use fewer layers/),
    })
    expect(readdirSync(workspace).includes('models') ? readdirSync(join(workspace, 'models')) : []).toEqual([])
  })
})
