/** Every payload is validated at the boundary, and a bad one is named: unknown keys with the closest valid one, limits, depth. */
import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/shared/api'
import { closestKey, editDistance } from '../../src/shared/keys'
import { validateMoeConfig } from '../../src/shared/modelConfig'
import { applyOverrides, validateRunConfig } from '../../src/shared/runConfig'
import { MAX_PAYLOAD_DEPTH, tooDeep, validateArgs } from '../../src/shared/schema'

function refusal(method: Parameters<typeof validateArgs>[0], args: unknown): ApiError {
  try {
    validateArgs(method, args)
  } catch (e) {
    if (e instanceof ApiError) return e
    throw e
  }
  throw new Error('accepted')
}

describe('unknown keys', () => {
  it('are refused at every depth of the run config, naming the closest valid key', () => {
    expect(() => validateRunConfig(applyOverrides({}, ['maxStep=3']))).toThrow(
      /maxStep: unknown field "maxStep" \(did you mean "maxSteps"\?\)/,
    )
    expect(() => validateRunConfig(applyOverrides({}, ['optimizer.learningRate=1e-4']))).toThrow(
      /optimizer\.learningRate: unknown field "learningRate" \(did you mean "lr"\?\)/,
    )
    expect(() => validateRunConfig({ lora: { rnak: 4 } })).toThrow(/lora\.rnak: unknown field "rnak" \(did you mean "rank"\?\)/)
    expect(() => validateRunConfig({ moe: { zzz: 1 } })).toThrow(/moe\.zzz: unknown field "zzz"; valid fields here: capacityFactorTrain, /)
    expect(validateRunConfig({ maxSteps: 3 }).maxSteps).toBe(3)
  })

  it('are refused through the API with the field path', () => {
    const e = refusal('runs.start', { model: '/m', dataset: 'd', config: { maxStep: 3 } })
    expect(e.code).toBe('invalid_argument')
    expect(e.field).toBe('config.maxStep')
    expect(e.message).toMatch(/did you mean "maxSteps"/)
    const m = refusal('models.create', { name: 'x', config: { family: 'mixtral', hiddenSize: 1e9 } })
    expect(m.field).toBe('config.hiddenSize')
    expect(m.message).toMatch(/hiddenSize: is above 65,536, the largest hidden size the workbench accepts/)
    const k = refusal('models.create', { name: 'x', config: { family: 'mixtral', numExpert: 4 } })
    expect(k.message).toMatch(/unknown field "numExpert" \(did you mean "numExperts"\?\)/)
    // A valid partial config passes as given: the preset fills the rest, no defaults added here.
    expect(validateArgs('models.create', { name: 'x', config: { family: 'olmoe', numLayers: 2 } }).config).toEqual({
      family: 'olmoe',
      numLayers: 2,
    })
  })

  it("suggests by edit distance and by other tools' names, and not at random", () => {
    expect(editDistance('kitten', 'sitting')).toBe(3)
    expect(editDistance('rnak', 'rank')).toBe(1)
    expect(closestKey('batch_size', ['batchSize', 'seed'])).toBe('batchSize')
    expect(closestKey('num_train_epochs', ['epochs', 'maxSteps'])).toBe('epochs')
    expect(closestKey('banana', ['batchSize', 'seed'])).toBeUndefined()
  })
})

describe('limits', () => {
  it('name the field and the limit instead of failing while allocating', () => {
    expect(() =>
      validateMoeConfig({
        family: 'mixtral',
        vocabSize: 10,
        hiddenSize: 1e9,
        numLayers: 1,
        numHeads: 1,
        numKvHeads: 1,
        headDim: 8,
        intermediateSize: 8,
        expertIntermediateSize: 8,
        numExperts: 2,
        topK: 1,
        normTopkProb: true,
      }),
    ).toThrow(/hiddenSize: is above 65,536/)
  })

  it('refuses payloads nested too deeply, naming where', () => {
    let deep: Record<string, unknown> = { x: 1 }
    for (let i = 0; i < 10_000; i++) deep = { a: deep }
    expect(tooDeep(deep)).toMatch(/^a\.a\.a/)
    expect(tooDeep({ a: { b: [1, 2, { c: 3 }] } })).toBeNull()
    const e = refusal('runs.start', { model: '/m', dataset: 'd', config: { moe: deep } })
    expect(e.code).toBe('invalid_argument')
    expect(e.message).toMatch(new RegExp(`config\\.moe\\.a: nested deeper than ${MAX_PAYLOAD_DEPTH} levels`))
  })
})
