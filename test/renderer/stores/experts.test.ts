import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { biggestMoves, incomparable, routingDiff, useExpertsStore } from '../../../src/renderer/src/stores/experts'
import { useModelsStore } from '../../../src/renderer/src/stores/models'
import { useTasksStore } from '../../../src/renderer/src/stores/tasks'
import { expertAnalysis, fakeBridge, modelEntries } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('routingDiff', () => {
  it('subtracts the first model’s load and entropy from the second’s, layer by layer', () => {
    const after = { ...expertAnalysis, layers: [{ ...expertAnalysis.layers[0], load: [0.1, 0.3, 0.2, 0.4], entropy: 1.3 }] }
    const diff = routingDiff(expertAnalysis, after)
    expect(diff).toHaveLength(1)
    expect(diff[0].layer).toBe(0)
    expect(diff[0].load.map((x) => Math.round(x * 100) / 100)).toEqual([-0.3, 0, 0, 0.3])
    expect(diff[0].entropy).toBeCloseTo(0.2)
    // Layers that do not match (another model shape) are left out.
    expect(routingDiff(expertAnalysis, { ...after, layers: [{ ...after.layers[0], load: [1] }] })).toEqual([])
  })
})

describe('incomparable', () => {
  const mixtral = { name: 'base', sparseLayers: [0, 1, 2, 3], numExperts: 8 }
  it('lays side by side only models with the same experts in the same sparse layers, and says why not', () => {
    expect(incomparable(mixtral, { ...mixtral, name: 'tuned' })).toBeNull()
    expect(incomparable(mixtral, { name: 'qwen3', sparseLayers: [0, 1, 2, 3], numExperts: 16 })).toBe(
      'base has 8 experts per layer in sparse layers 0, 1, 2, 3, qwen3 has 16 experts per layer in sparse layers 0, 1, 2, 3: a comparison needs the same experts in the same layers (a model and its fine-tuned copy). Analyse each on its own.',
    )
    expect(incomparable(mixtral, { name: 'q2', sparseLayers: [1], numExperts: 8 })).toMatch(/q2 has 8 experts per layer in sparse layer 1:/)
    expect(incomparable(mixtral, { ...mixtral, sparseLayers: [0, 1, 2] })).not.toBeNull()
  })
})

describe('biggestMoves', () => {
  it('lists the largest changes first, signed, in percentage points, three at most', () => {
    expect(biggestMoves([0.01, -0.2, 0.05, 0.3, -0.004])).toEqual([
      { expert: 3, points: '+30.0', down: false },
      { expert: 1, points: '−20.0', down: true },
      { expert: 2, points: '+5.0', down: false },
    ])
  })

  it('leaves out changes that round to 0.0: two equal models have no moves', () => {
    expect(biggestMoves([0, 0, 0, 0])).toEqual([])
    expect(biggestMoves([0.0004, -0.0004, 0.002])).toEqual([{ expert: 2, points: '+0.2', down: false }])
  })
})

describe('useExpertsStore', () => {
  it('asks for what is missing before calling the engine', async () => {
    const experts = useExpertsStore()
    await experts.analyze()
    expect(experts.error).toMatchObject({ field: 'model' })
    experts.form.model = '/m'
    await experts.analyze()
    expect(experts.error).toMatchObject({ field: 'text' })
    experts.form.source = 'dataset'
    await experts.analyze()
    expect(experts.error).toMatchObject({ field: 'dataset' })
    // an emptied Rows field ('' from v-model.number), 0 or a fraction: what to type, before the engine
    experts.form.dataset = 'ds1'
    for (const rows of ['' as unknown as number, 0, 2.5, 10_001]) {
      experts.form.maxRows = rows
      await experts.analyze()
      expect(experts.error, `Rows ${JSON.stringify(rows)}`).toMatchObject({
        field: 'maxRows',
        message: expect.stringMatching(/^Rows: .*whole number from 1 to 10000/),
      })
    }
    expect(fake.bridge.experts.analyze).not.toHaveBeenCalled()
  })

  it('refuses to compare models of other expert layouts: before routing where the list read them, after where it could not', async () => {
    const models = useModelsStore()
    const [unread, base, tuned] = modelEntries
    models.entries = [unread, base, { ...tuned, info: { ...tuned.info!, numExperts: 16 } }]
    const experts = useExpertsStore()
    experts.form = { ...experts.form, model: base.dir, compareModel: tuned.dir, text: 'hello' }
    await experts.analyze()
    expect(experts.error).toMatchObject({ field: 'compareModel', message: expect.stringMatching(/has 4 experts .* has 16 experts/) })
    expect(fake.bridge.experts.analyze).not.toHaveBeenCalled()
    // A model the list could not read: its analysis says what it has.
    experts.form.compareModel = unread.dir
    fake.bridge.experts.analyze.mockImplementation(async (args) =>
      args.model === unread.dir
        ? { ...expertAnalysis, model: args.model, layers: [{ ...expertAnalysis.layers[0], load: [0.5, 0.5] }] }
        : { ...expertAnalysis, model: args.model },
    )
    await experts.analyze()
    expect(experts.error).toMatchObject({
      field: 'compareModel',
      message: expect.stringMatching(/my-olmoe has 2 experts per layer in sparse layer 0/),
    })
    expect(experts.analysis?.model).toBe(base.dir)
    expect(experts.comparison).toBeNull()
    expect(experts.diff).toBeNull()
  })

  it('analyses a text, and a second model on the same input for the difference', async () => {
    const experts = useExpertsStore()
    experts.form.model = '/base'
    experts.form.text = 'hello world'
    await experts.analyze()
    expect(fake.bridge.experts.analyze).toHaveBeenCalledWith({ model: '/base', text: 'hello world', taskId: expect.any(String) })
    expect(experts.analysis?.model).toBe('/base')
    expect(experts.comparison).toBeNull()
    expect(experts.diff).toBeNull()

    experts.form.compareModel = '/tuned'
    experts.form.source = 'dataset'
    experts.form.dataset = 'train-abc'
    experts.form.maxRows = 50
    const running = experts.analyze()
    experts.form.source = 'text' // changed while it runs: the result says what it routed
    await running
    expect(experts.analyzedWith).toEqual({ source: 'dataset', dataset: 'train-abc', maxRows: 50 })
    expect(fake.bridge.experts.analyze).toHaveBeenLastCalledWith({
      model: '/tuned',
      dataset: 'train-abc',
      maxRows: 50,
      taskId: expect.any(String),
    })
    expect(experts.comparison?.model).toBe('/tuned')
    expect(experts.diff?.[0].load).toEqual([0, 0, 0, 0])
  })

  it('keeps the error; Cancel stops every analysis under way in the engine and keeps the last result, without an error', async () => {
    const experts = useExpertsStore()
    useTasksStore().listen()
    experts.form.model = '/m'
    experts.form.text = 'x'
    fake.bridge.experts.analyze.mockRejectedValueOnce(new ApiError('engine_unavailable', 'the engine stopped'))
    await experts.analyze()
    expect(experts.error).toMatchObject({ code: 'engine_unavailable' })
    await experts.analyze()
    expect(experts.analysis?.model).toBe('/m')
    // A failed analysis of another choice does not leave the last result under its error, as if it were its.
    experts.form.model = '/other'
    fake.bridge.experts.analyze.mockRejectedValueOnce(new ApiError('failed', '/other has no tokenizer.json'))
    await experts.analyze()
    expect(experts.error).toMatchObject({ message: '/other has no tokenizer.json' })
    expect([experts.analysis, experts.comparison, experts.analyzedWith]).toEqual([null, null, null])
    experts.form.model = '/m'
    await experts.analyze()
    expect(experts.analysis?.model).toBe('/m')

    // Two analyses (a comparison) that answer only when the engine is told to cancel them.
    const pending = new Map<string, () => void>()
    fake.bridge.experts.analyze.mockImplementation(
      (args: { model: string; taskId?: string }) =>
        new Promise((_resolve, reject) => pending.set(args.taskId!, () => reject(new ApiError('cancelled', 'analysing m was cancelled')))),
    )
    fake.bridge.tasks.cancel.mockImplementation(async (taskId: string) => {
      pending.get(taskId)?.()
      return true
    })
    experts.form.compareModel = '/n'
    const analysing = experts.analyze()
    expect(experts.analyzing).toBe(true)
    expect(experts.running.map((t) => t.title)).toEqual(['Analysing m', 'Analysing n'])
    fake.emit({
      type: 'task.progress',
      taskId: experts.running[0].id,
      operation: 'experts.analyze',
      progress: { label: 'Routing', stage: 2, stages: 2, done: 3, total: 10, unit: 'texts', elapsedSec: 1, etaSec: 2 },
    })
    expect(experts.running[0].progress).toMatchObject({ done: 3, total: 10 })
    await experts.cancel()
    await analysing
    expect(fake.bridge.tasks.cancel).toHaveBeenCalledTimes(2)
    expect(experts.analyzing).toBe(false)
    expect(experts.running).toEqual([])
    expect(experts.error).toBeNull()
    expect(experts.analysis?.model).toBe('/m')
  })
})
