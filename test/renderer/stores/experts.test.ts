import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { routingDiff, useExpertsStore } from '../../../src/renderer/src/stores/experts'
import { expertAnalysis, fakeBridge } from '../fakeBridge'

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
    expect(fake.bridge.experts.analyze).not.toHaveBeenCalled()
  })

  it('analyses a text, and a second model on the same input for the difference', async () => {
    const experts = useExpertsStore()
    experts.form.model = '/base'
    experts.form.text = 'hello world'
    await experts.analyze()
    expect(fake.bridge.experts.analyze).toHaveBeenCalledWith({ model: '/base', text: 'hello world' })
    expect(experts.analysis?.model).toBe('/base')
    expect(experts.comparison).toBeNull()
    expect(experts.diff).toBeNull()

    experts.form.compareModel = '/tuned'
    experts.form.source = 'dataset'
    experts.form.dataset = 'train-abc'
    experts.form.maxRows = 50
    await experts.analyze()
    expect(fake.bridge.experts.analyze).toHaveBeenLastCalledWith({ model: '/tuned', dataset: 'train-abc', maxRows: 50 })
    expect(experts.comparison?.model).toBe('/tuned')
    expect(experts.diff?.[0].load).toEqual([0, 0, 0, 0])
  })

  it('keeps the error, and drops an answer the user stopped waiting for', async () => {
    const experts = useExpertsStore()
    experts.form.model = '/m'
    experts.form.text = 'x'
    fake.bridge.experts.analyze.mockRejectedValueOnce(new ApiError('engine_unavailable', 'the engine stopped'))
    await experts.analyze()
    expect(experts.error).toMatchObject({ code: 'engine_unavailable' })

    let answer: () => void = () => undefined
    fake.bridge.experts.analyze.mockImplementationOnce(() => new Promise((resolve) => (answer = () => resolve(expertAnalysis))))
    const analysing = experts.analyze()
    experts.abandon()
    expect(experts.analyzing).toBe(false)
    answer()
    await analysing
    expect(experts.analysis).toBeNull()
  })
})
