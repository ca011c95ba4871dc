import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { useModelsStore } from '../../../src/renderer/src/stores/models'
import { fakeBridge, fitPlan } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('useModelsStore', () => {
  it('inspects a folder', async () => {
    const models = useModelsStore()
    const done = models.inspect('/models/mixtral')
    expect(models.inspecting).toBe(true)
    await done
    expect(models.inspecting).toBe(false)
    expect(models.inspected?.params.total).toBe(72816)
    // A download not done yet (config.json alone) is shown from its config rather than refused.
    expect(fake.bridge.models.inspect).toHaveBeenCalledWith('/models/mixtral', { configOnly: true })
  })

  it('keeps the error and its field, and clears the previous result', async () => {
    const models = useModelsStore()
    await models.inspect('/models/mixtral')
    fake.bridge.models.inspect.mockRejectedValueOnce(new ApiError('invalid_argument', 'models.inspect: dir: x is a relative path', 'dir'))
    await models.inspect('x')
    expect(models.inspected).toBeNull()
    // the field as the inspector labels it
    expect(models.inspectError).toEqual({ message: 'Checkpoint folder: x is a relative path', field: 'dir', code: 'invalid_argument' })
    // An empty path says what to type, without asking the service ("dir: must not be empty").
    await models.inspect('/models/mixtral')
    await models.inspect('  ')
    expect(fake.bridge.models.inspect).toHaveBeenCalledTimes(3)
    expect(models.inspected).toBeNull()
    expect(models.inspectError).toEqual({
      message: 'Type the path of a checkpoint folder (config.json and *.safetensors).',
      field: 'dir',
      code: 'invalid_argument',
    })
  })

  it('accepts the plain error objects the preload rejects with', async () => {
    const models = useModelsStore()
    fake.bridge.models.inspect.mockRejectedValueOnce({ name: 'ApiError', code: 'failed', message: '/x: no config.json' })
    await models.inspect('/x')
    expect(models.inspectError).toEqual({ message: '/x: no config.json', code: 'failed' })
  })

  it('lists models bundled first, and knows which one is bundled', async () => {
    const models = useModelsStore()
    await models.refresh()
    expect(models.entries.map((m) => m.source)).toEqual(['bundled', 'workspace', 'linked'])
    expect(models.bundled?.name).toBe('tiny-moe')
    // A folder that no longer reads is listed but not offered for training or chat.
    expect(models.usable.map((m) => m.id)).toEqual(['tiny-moe', 'tuned'])
    expect(models.byDir('/ws/models/tuned')?.id).toBe('tuned')
    await models.ensureLoaded()
    expect(fake.bridge.models.list).toHaveBeenCalledTimes(1)
  })

  it('ensureLoaded during the start-up fetch waits for it (a screen opened meanwhile saw no bundled model)', async () => {
    const models = useModelsStore()
    const list = fake.bridge.models.list.getMockImplementation()!
    fake.bridge.models.list.mockImplementationOnce(async (...a: Parameters<typeof list>) => {
      await new Promise((r) => setTimeout(r, 20)) // a service that takes its time
      return list(...a)
    })
    const starting = models.refresh() // as App.vue does, not awaited
    await models.ensureLoaded()
    expect(models.bundled?.name).toBe('tiny-moe')
    await starting
    expect(fake.bridge.models.list).toHaveBeenCalledTimes(1)
  })

  it('removes a model from the list, with its plan, once the service agrees; keeps it when refused', async () => {
    const models = useModelsStore()
    await models.refresh()
    await models.planAll(8 * 2 ** 30)
    expect(Object.keys(models.plans)).toContain('/ws/models/tuned')
    fake.bridge.models.delete.mockRejectedValueOnce(new ApiError('failed', 'model tuned is the base of run r'))
    await expect(models.remove('tuned')).rejects.toMatchObject({ code: 'failed', message: 'model tuned is the base of run r' })
    expect(models.entries.map((m) => m.id)).toEqual(['tiny-moe', 'tuned', 'linked-1'])
    await models.remove('tuned')
    expect(fake.bridge.models.delete).toHaveBeenLastCalledWith({ id: 'tuned' })
    expect(models.entries.map((m) => m.id)).toEqual(['tiny-moe', 'linked-1'])
    expect(Object.keys(models.plans)).not.toContain('/ws/models/tuned')
    expect(Object.keys(models.plans)).toContain('/app/resources/models/tiny-moe')
  })

  it('plans every readable model for a budget, keeping errors per model', async () => {
    const models = useModelsStore()
    await models.refresh()
    fake.bridge.models.plan.mockImplementation(async ({ dir }) => {
      if (dir === '/ws/models/tuned') throw new ApiError('failed', 'tuned: weights unreadable')
      return fitPlan
    })
    await models.planAll(8 * 1024 ** 3)
    expect(fake.bridge.models.plan).toHaveBeenCalledTimes(2)
    expect(fake.bridge.models.plan).toHaveBeenCalledWith({ dir: '/app/resources/models/tiny-moe', budgetBytes: 8 * 1024 ** 3 })
    expect(models.plans['/app/resources/models/tiny-moe']).toMatchObject({ plan: fitPlan, error: null, loading: false })
    expect(models.plans['/ws/models/tuned']).toMatchObject({ plan: null, error: { message: 'tuned: weights unreadable' }, loading: false })
  })

  it('plans the folder inspected (not linked yet) with the others, and one inspected after a budget was asked', async () => {
    const models = useModelsStore()
    await models.refresh()
    await models.inspect('/downloads/mixtral-config-only')
    const inspected = models.inspected!.dir
    await models.planAll(24 * 2 ** 30)
    expect(fake.bridge.models.plan).toHaveBeenCalledWith({ dir: inspected, budgetBytes: 24 * 2 ** 30 })
    expect(models.plans[inspected]).toMatchObject({ plan: fitPlan, loading: false })
    // Inspected after Check fit: planned for that budget at once.
    fake.bridge.models.inspect.mockResolvedValueOnce({ ...models.inspected!, dir: '/downloads/other' })
    await models.inspect('/downloads/other')
    await vi.waitFor(() => expect(models.plans['/downloads/other']).toMatchObject({ budgetBytes: 24 * 2 ** 30, loading: false }))
    // No budget asked (cleared): an inspected folder is not planned.
    models.clearPlans()
    fake.bridge.models.plan.mockClear()
    fake.bridge.models.inspect.mockResolvedValueOnce({ ...models.inspected!, dir: '/downloads/third' })
    await models.inspect('/downloads/third')
    expect(fake.bridge.models.plan).not.toHaveBeenCalled()
  })

  it('keeps only the answer for the budget asked last', async () => {
    const models = useModelsStore()
    let release: () => void = () => undefined
    fake.bridge.models.plan.mockImplementationOnce(
      (args) => new Promise((resolve) => (release = () => resolve({ ...fitPlan, message: `old ${args.budgetBytes}` }))),
    )
    const first = models.plan('/m', 100)
    await models.plan('/m', 200)
    release()
    await first
    expect(models.plans['/m'].budgetBytes).toBe(200)
    expect(models.plans['/m'].plan?.message).toBe(fitPlan.message)
  })

  it('forgets every plan when the budget asked is not one, an answer arriving after that included', async () => {
    const models = useModelsStore()
    await models.plan('/a', 100)
    expect(models.plans['/a'].plan).toEqual(fitPlan)
    let release: () => void = () => undefined
    fake.bridge.models.plan.mockImplementationOnce(() => new Promise((resolve) => (release = () => resolve(fitPlan))))
    const late = models.plan('/b', 100)
    models.clearPlans()
    expect(models.plans).toEqual({})
    release()
    await late
    expect(models.plans).toEqual({})
  })

  it('creates and links models into the list, or keeps the error with its field', async () => {
    const models = useModelsStore()
    await models.refresh()
    const created = await models.create({ name: 'mine', config: { family: 'mixtral', numExperts: 4 } })
    expect(created?.name).toBe('mine')
    expect(models.entries.some((m) => m.name === 'mine')).toBe(true)

    fake.bridge.models.create.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'models.create: config.topK: exceeds numExperts', 'config.topK'),
    )
    expect(await models.create({ name: 'bad', config: { family: 'mixtral', topK: 9 } })).toBeNull()
    expect(models.createError).toMatchObject({ field: 'config.topK' })
    // The refusal holds for what was sent; a form changed since shows none.
    expect(models.createErrorFor({ name: 'bad', config: { family: 'mixtral', topK: 9 } })).toMatchObject({ field: 'config.topK' })
    expect(models.createErrorFor({ name: 'bad', config: { family: 'mixtral', topK: 2 } })).toBeNull()

    const linked = await models.link('/data/hf/x', 'x')
    expect(fake.bridge.models.link).toHaveBeenCalledWith({ dir: '/data/hf/x', name: 'x' })
    expect(models.entries.find((m) => m.id === linked?.id)?.dir).toBe('/data/hf/x')
    await models.link('/data/hf/y')
    expect(fake.bridge.models.link).toHaveBeenLastCalledWith({ dir: '/data/hf/y' })
  })
})
