/** Every payload is validated at the boundary, and a bad one is named: unknown keys with the closest valid one, limits, depth. */
import { describe, expect, it } from 'vitest'
import { ApiError, isApiErrorJson, isMethod } from '../../src/shared/api'
import { closestKey, editDistance } from '../../src/shared/keys'
import { validateMoeConfig } from '../../src/shared/modelConfig'
import { applyOverrides, validateRunConfig } from '../../src/shared/runConfig'
import { MAX_PAYLOAD_DEPTH, pathsOf, tooDeep, validateArgs } from '../../src/shared/schema'

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

describe('how a refusal reads', () => {
  it('method, field, problem, and how many more problems there were', () => {
    const one = refusal('models.inspect', { dir: '/m', extra: 1 })
    expect(one.message).toMatch(/^models\.inspect: extra: unknown field "extra"/)
    expect(one.field).toBe('extra')
    const two = refusal('models.inspect', { dir: '', extra: 1 })
    expect(two.message).toMatch(/ \(and 1 more\)$/)
    const root = refusal('models.inspect', 'not an object')
    expect(root.field).toBeUndefined()
    expect(root.message).toBe('models.inspect: Invalid input: expected object, received string')
    expect(refusal('models.inspect', { dir: '  ' }).message).toBe('models.inspect: dir: must not be empty')
  })

  it('an unknown method is its own error', () => {
    const e = refusal('models.explode' as never, {})
    expect(e.code).toBe('unknown_method')
    expect(e.message).toBe('unknown method "models.explode"')
    expect(isMethod('models.inspect')).toBe(true)
    expect(isMethod('models.explode')).toBe(false)
    expect(isMethod(5)).toBe(false)
  })

  it('models.create takes a config object, checked field by field', () => {
    for (const config of ['mixtral', null, [1], 3])
      expect(refusal('models.create', { name: 'x', config }).message, JSON.stringify(config)).toBe(
        'models.create: config: must be an object of model config fields',
      )
    const bad = refusal('models.create', { name: 'x', config: { family: 'mixtral', topK: 0 } })
    expect(bad.field).toBe('config.topK')
    expect(bad.message).toMatch(/^models\.create: config\.topK: /)
  })

  it('experts.analyze: text or a dataset, not both, not neither', () => {
    for (const extra of [{}, { text: 'hi', dataset: 'd' }]) {
      const e = refusal('experts.analyze', { model: '/m', ...extra })
      expect(e.message).toBe('experts.analyze: text: give either text or dataset')
      expect(e.field).toBe('text')
    }
    expect(validateArgs('experts.analyze', { model: '/m', text: 'hi' }).text).toBe('hi')
    expect(validateArgs('experts.analyze', { model: '/m', dataset: 'd' }).dataset).toBe('d')
  })

  it('eval.run: a run, or a model folder with a dataset', () => {
    expect(refusal('eval.run', { model: '/m', run: 'r', dataset: 'd' }).message).toBe('eval.run: model: give either a model folder or a run')
    expect(refusal('eval.run', {}).message).toMatch(/^eval\.run: model: give either a model folder or a run/)
    const e = refusal('eval.run', { model: '/m' })
    expect(e.message).toBe('eval.run: dataset: give the dataset to evaluate a model folder on')
    expect(e.field).toBe('dataset')
    expect(validateArgs('eval.run', { run: 'r' })).toEqual({ run: 'r' })
    expect(validateArgs('eval.run', { model: '/m', dataset: 'd' })).toEqual({ model: '/m', dataset: 'd' })
  })
})

describe('paths a request names (what server mode checks against its folders)', () => {
  it('only string fields typed as paths, nothing from a non-object', () => {
    expect(pathsOf('models.inspect', { dir: '/a' })).toEqual([{ field: 'dir', path: '/a' }])
    expect(pathsOf('models.inspect', { dir: 5 })).toEqual([])
    expect(pathsOf('models.inspect', null)).toEqual([])
    expect(pathsOf('models.inspect', '/a')).toEqual([])
    expect(pathsOf('eval.run', { model: '/m', run: 'r', dataset: 'd' })).toEqual([{ field: 'model', path: '/m' }])
  })
})

describe('tooDeep counts object levels, not values', () => {
  it('the limit itself', () => {
    expect(tooDeep({ a: { b: 1 } }, 1)).toBe('a')
    expect(tooDeep({ a: 1 }, 1)).toBeNull()
    expect(tooDeep({ a: { b: 1 } }, 2)).toBeNull()
    expect(tooDeep('x', 0)).toBeNull()
  })
})

describe('ApiError on the wire', () => {
  it('keeps code, message and field; leaves field out when there is none', () => {
    const e = new ApiError('invalid_argument', 'bad', 'x.y')
    expect(e.name).toBe('ApiError')
    expect(e.toJSON()).toEqual({ code: 'invalid_argument', message: 'bad', field: 'x.y' })
    expect(Object.keys(new ApiError('failed', 'no').toJSON())).toEqual(['code', 'message'])
    expect(ApiError.from({ code: 'forbidden', message: 'nope', field: 'dir' }).toJSON()).toEqual({ code: 'forbidden', message: 'nope', field: 'dir' })
    expect(ApiError.from(new Error('boom')).toJSON()).toEqual({ code: 'failed', message: 'boom' })
    expect(ApiError.from('plain').toJSON()).toEqual({ code: 'failed', message: 'plain' })
  })

  it('recognises only well-formed error objects', () => {
    expect(isApiErrorJson({ code: 'failed', message: 'm' })).toBe(true)
    expect(isApiErrorJson({ code: 'failed', message: 'm', field: 'f' })).toBe(true)
    for (const x of [null, 'failed', 3, { code: 'nope', message: 'm' }, { code: 3, message: 'm' }, { code: 'failed' }, { code: 'failed', message: 'm', field: 3 }])
      expect(isApiErrorJson(x), JSON.stringify(x)).toBe(false)
  })
})
