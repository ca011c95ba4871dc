/** Every payload is validated at the boundary, and a bad one is named: unknown keys with the closest valid one, limits, depth. */
import { describe, expect, it } from 'vitest'
import { ApiError, isApiErrorJson, isMethod, type Method } from '../../src/shared/api'
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
    expect(() => validateRunConfig({ moe: { zzz: 1 } })).toThrow(
      /moe\.zzz: unknown field "zzz"; valid fields here: topK, capacityFactorTrain, /,
    )
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
    // The further problems are said too, a few ("(and 1 more)" left a script to guess which).
    const two = refusal('models.inspect', { dir: '', extra: 1 })
    expect(two.message).toMatch(
      /^models\.inspect: (dir: .+ \(and 1 more: extra: unknown field "extra".*\)|extra: .+ \(and 1 more: dir: .+\))$/,
    )
    const many = refusal('datasets.inspect', { file: 1, model: 2, maxLength: 'x', textUnit: 7 })
    expect(many.message).toMatch(/^datasets\.inspect: file: [^;(]+ \(and 3 more: model: [^;]+; maxLength: [^;]+; …\)$/)
    const root = refusal('models.inspect', 'not an object')
    expect(root.field).toBeUndefined()
    expect(root.message).toBe('models.inspect: must be an object, not a string')
    expect(refusal('models.inspect', { dir: '  ' }).message).toBe('models.inspect: dir: must not be empty')
    expect(refusal('models.inspect', { dir: '/m', configOnly: 'yes' }).field).toBe('configOnly')
    expect(() => validateArgs('models.inspect', { dir: '/m', configOnly: true })).not.toThrow()
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
    expect(refusal('eval.run', { model: '/m', run: 'r', dataset: 'd' }).message).toBe(
      'eval.run: model: give either a model folder or a run',
    )
    expect(refusal('eval.run', {}).message).toMatch(/^eval\.run: model: give either a model folder or a run/)
    const e = refusal('eval.run', { model: '/m' })
    expect(e.message).toBe('eval.run: dataset: give the dataset to evaluate a model folder on')
    expect(e.field).toBe('dataset')
    expect(validateArgs('eval.run', { run: 'r' })).toEqual({ run: 'r' })
    expect(validateArgs('eval.run', { model: '/m', dataset: 'd' })).toEqual({ model: '/m', dataset: 'd' })
    // A checkpoint is one of a run's: with a model folder it is refused by name.
    expect(validateArgs('eval.run', { run: 'r', checkpoint: '/ws/runs/r/checkpoints/step-1' })).toEqual({
      run: 'r',
      checkpoint: '/ws/runs/r/checkpoints/step-1',
    })
    const c = refusal('eval.run', { model: '/m', dataset: 'd', checkpoint: '/c' })
    expect(c.message).toBe("eval.run: checkpoint: is a run's checkpoint: give the run too")
    expect(c.field).toBe('checkpoint')
  })
})

describe('paths a request names (what server mode checks against its folders)', () => {
  it('only string fields typed as paths, nothing from a non-object', () => {
    expect(pathsOf('models.inspect', { dir: '/a' })).toEqual([{ field: 'dir', path: '/a' }])
    expect(pathsOf('models.inspect', { dir: 5 })).toEqual([])
    expect(pathsOf('models.inspect', null)).toEqual([])
    expect(pathsOf('models.inspect', '/a')).toEqual([])
    expect(pathsOf('eval.run', { model: '/m', run: 'r', dataset: 'd' })).toEqual([{ field: 'model', path: '/m' }])
    expect(pathsOf('eval.run', { run: 'r', checkpoint: '/c' })).toEqual([{ field: 'checkpoint', path: '/c' }])
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
    expect(ApiError.from({ code: 'forbidden', message: 'nope', field: 'dir' }).toJSON()).toEqual({
      code: 'forbidden',
      message: 'nope',
      field: 'dir',
    })
    expect(ApiError.from(new Error('boom')).toJSON()).toEqual({ code: 'failed', message: 'boom' })
    expect(ApiError.from('plain').toJSON()).toEqual({ code: 'failed', message: 'plain' })
  })

  it('recognises only well-formed error objects', () => {
    expect(isApiErrorJson({ code: 'failed', message: 'm' })).toBe(true)
    expect(isApiErrorJson({ code: 'failed', message: 'm', field: 'f' })).toBe(true)
    for (const x of [
      null,
      'failed',
      3,
      { code: 'nope', message: 'm' },
      { code: 3, message: 'm' },
      { code: 'failed' },
      { code: 'failed', message: 'm', field: 3 },
    ])
      expect(isApiErrorJson(x), JSON.stringify(x)).toBe(false)
  })
})

describe('every field at its limits: the edge accepted, one step past refused and named', () => {
  const long = (n: number) => 'x'.repeat(n)
  const chat = { model: '/m', messages: [{ role: 'user', content: 'hi' }] }
  const conv = { title: 't', model: '/m', messages: [{ role: 'user', content: 'x' }] }
  const handoff = { target: 'axolotl', outDir: '/out' }
  const routedConv = {
    ...conv,
    messages: [
      { role: 'user', content: 'x' },
      {
        role: 'assistant',
        content: 'y',
        tokens: { layers: [0], pieces: [{ text: 'y', position: 1, token: 5, experts: [[2, 0]], weights: [[0.7, 0.3]] }] },
        stats: { newTokens: 1, firstTokenMs: 40, stoppedBy: 'stop_token', prefillMs: 30, decodeMs: 10, tokensPerSec: 100 },
      },
    ],
  }
  // [method, valid base, field (dotted), accepted value, refused value, the message when it is ours]
  const cases: [Method, Record<string, unknown>, string, unknown, unknown, string?][] = [
    ['models.inspect', {}, 'dir', long(4096), long(4097), 'is too long'],
    ['models.inspect', {}, 'dir', ' /m ', 'a\0b', 'must not contain NUL characters'],
    ['runs.get', {}, 'id', long(200), long(201), 'is too long'],
    ['runs.get', {}, 'id', 'a.b_c-9', '', 'must not be empty'],
    ['runs.get', {}, 'id', 'Z9', '-lead', 'must be letters, digits, ".", "_" or "-"'],
    ['runs.get', {}, 'id', 'a', 'a/b', 'must be letters, digits, ".", "_" or "-"'],
    ['runs.get', {}, 'id', 'a', 'a b', 'must be letters, digits, ".", "_" or "-"'],
    ['models.link', { dir: '/m' }, 'name', long(200), long(201), 'is too long'],
    ['models.link', { dir: '/m' }, 'name', 'n', '   ', 'must not be empty'],
    ['datasets.import', { file: '/d' }, 'name', long(200), long(201), 'is too long'],
    ['datasets.import', { file: '/d' }, 'name', ' n ', ' ', 'must not be empty'],
    ['datasets.import', { file: '/d' }, 'split.validation', 0, -0.1, 'must be at least 0'],
    ['datasets.import', { file: '/d' }, 'split.validation', 0.99, 1, 'must be below 1'],
    ['datasets.inspect', { file: '/d' }, 'mapping.instruction', 'q', '', 'must name a column'],
    ['datasets.inspect', { file: '/d' }, 'textUnit', 'paragraph', 'word'],
    ['datasets.inspect', { file: '/d' }, 'textUnit', 'line', 'sentence'],
    ['datasets.inspect', { file: '/d' }, 'preview.offset', 0, -1],
    ['datasets.inspect', { file: '/d' }, 'preview.limit', 1000, 1001],
    ['datasets.inspect', { file: '/d' }, 'preview.limit', 0, -1],
    ['models.plan', { dir: '/m' }, 'contextTokens', 0, -1],
    ['models.create', { name: 'x', config: { family: 'mixtral' } }, 'seed', 0, -1],
    ['runs.handoff', handoff, 'modelRef', long(4096), long(4097), 'is too long'],
    ['runs.handoff', handoff, 'modelRef', 'org/model', '  ', 'must not be empty'],
    ['runs.handoff', handoff, 'nodes', 1, 0],
    ['runs.handoff', handoff, 'nodes', 4096, 4097],
    ['runs.handoff', handoff, 'gpusPerNode', 1, 0],
    ['runs.handoff', handoff, 'gpusPerNode', 64, 65],
    ['runs.handoff', handoff, 'gpuMemoryGiB', 100_000, 100_001],
    ['chat.send', chat, 'messages', [{ role: 'system', content: 's' }], [], 'must hold at least one message'],
    ['chat.send', chat, 'messages.0.content', long(200_000), long(200_001), 'is too long'],
    ['chat.send', chat, 'messages.0.role', 'assistant', 'tool'],
    ['chat.send', chat, 'maxNewTokens', 1, 0],
    ['chat.send', chat, 'maxNewTokens', 8192, 8193],
    ['chat.send', chat, 'stop', Array(16).fill('x'), Array(17).fill('x')],
    ['chat.send', chat, 'stop.0', 'x', '', 'must not be empty'],
    ['chat.send', chat, 'sampling.temperature', 100, 0, 'must be above 0'],
    ['chat.send', chat, 'sampling.temperature', 100, 101],
    ['chat.send', chat, 'sampling.topK', 0, -1],
    ['chat.send', chat, 'sampling.topP', 1, 0, 'must be above 0'],
    ['chat.send', chat, 'sampling.topP', 1, 1.01],
    ['chat.send', chat, 'sampling.minP', 0, -0.1],
    ['chat.send', chat, 'sampling.minP', 0.99, 1, 'must be below 1'],
    ['chat.send', chat, 'sampling.repetitionPenalty', 10, 0, 'must be above 0'],
    ['chat.send', chat, 'sampling.repetitionPenalty', 10, 10.5],
    ['chat.send', chat, 'sampling.seed', 0, -1],
    ['chat.send', { ...chat, offload: { budgetBytes: 1, storage: 'lazy' } }, 'offload.policy', 'lfu', 'mru'],
    ['chat.send', { ...chat, offload: { budgetBytes: 1, storage: 'lazy' } }, 'offload.policy', 'lru', 'fifo'],
    ['chat.send', { ...chat, offload: { budgetBytes: 1, storage: 'lazy' } }, 'offload.contextTokens', 1 << 20, (1 << 20) + 1],
    ['conversations.save', conv, 'title', long(500), long(501), 'is too long'],
    ['conversations.save', conv, 'systemPrompt', long(100_000), long(100_001), 'is too long'],
    ['conversations.save', conv, 'messages.0.role', 'system', 'robot'],
    ['conversations.save', conv, 'format', 'plain', 'raw'],
    ['conversations.save', { ...conv, compare: { model: '/m2', messages: [] } }, 'compare.format', 'chat', 'raw'],
    ['conversations.save', routedConv, 'messages.1.tokens.pieces.0.experts.0.0', 3, 1.5],
    ['conversations.save', routedConv, 'messages.1.tokens.pieces.0.position', 0, -1],
    ['conversations.save', routedConv, 'messages.1.tokens.pieces.0.weights.0.1', 0.25, 'x'],
    ['conversations.save', routedConv, 'messages.1.tokens.layers.0', 1, '0'],
    ['conversations.save', routedConv, 'messages.1.stats.stoppedBy', 'cancelled', 'bored'],
    ['conversations.save', routedConv, 'messages.1.stats.tokensPerSec', 0, -1],
    ['conversations.save', routedConv, 'messages.1.stats.newTokens', 8192, 8193],
    [
      'conversations.save',
      routedConv,
      'messages.1.tokens.pieces',
      new Array(8192).fill({ text: '' }),
      new Array(8193).fill({ text: '' }),
      "has more than a reply's 8192 tokens",
    ],
    ['experts.analyze', { model: '/m' }, 'text', long(1_000_000), long(1_000_001), 'is too long'],
    ['experts.analyze', { model: '/m' }, 'text', 'x', '', 'must not be empty'],
    ['experts.analyze', { model: '/m', text: 'x' }, 'maxRows', 10_000, 10_001],
    ['experts.analyze', { model: '/m', text: 'x' }, 'maxRows', 1, 0],
    ['eval.run', { run: 'r' }, 'split', 'validation', 'test'],
    ['eval.run', { run: 'r' }, 'split', 'all', 'every'],
    ['eval.run', { run: 'r' }, 'split', 'train', 'dev'],
    ['eval.run', { run: 'r' }, 'limit', 10_000, 10_001],
    ['eval.run', { run: 'r' }, 'limit', 1, 0],
    ['tasks.cancel', {}, 'taskId', 't-1', 't 1', 'must be letters, digits, ".", "_" or "-"'],
    ['chat.cancel', {}, 'requestId', 'r', '', 'must not be empty'],
    ['conversations.delete', {}, 'id', 'c', '', 'must not be empty'],
    ['runs.cancel', {}, 'id', 'c', '', 'must not be empty'],
    ['runs.resume', {}, 'id', 'c', '', 'must not be empty'],
    ['runs.auto', { model: '/m' }, 'dataset', 'd', '', 'must not be empty'],
    ['runs.importAdapter', {}, 'dir', '/a', '', 'must not be empty'],
    ['datasets.cancel', {}, 'file', '/a', '', 'must not be empty'],
    ['runs.export', { id: 'r' }, 'outDir', '/o', '', 'must not be empty'],
  ]
  const set = (base: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> => {
    const out = structuredClone(base)
    const path = field.split('.')
    let node: Record<string, unknown> = out
    for (const k of path.slice(0, -1)) {
      if (node[k] === undefined) node[k] = /^\d+$/.test(path[path.indexOf(k) + 1]) ? [] : {}
      node = node[k] as Record<string, unknown>
    }
    node[path[path.length - 1]] = value
    return out
  }

  it.each(cases.map((c) => [`${c[0]} ${c[2]}`, ...c] as const))('%s', (_, method, base, field, ok, bad, message) => {
    expect(() => validateArgs(method, set(base, field, ok))).not.toThrow()
    const e = refusal(method, set(base, field, bad))
    expect(e.field).toBe(field)
    const where = `${method}: ${field}: `
    expect(e.message.startsWith(where), e.message).toBe(true)
    // an empty id also breaks the id pattern: "(and 1 more)"
    if (message) expect(e.message.slice(where.length).replace(/ \(and \d+ more: .*\)$/, '')).toBe(message)
  })

  it('methods without arguments say so', () => {
    for (const method of ['system.info', 'datasets.list', 'models.list', 'runs.list', 'conversations.list'] as const) {
      expect(validateArgs(method, undefined)).toBeUndefined()
      expect(refusal(method, {}).message).toBe(`${method}: takes no arguments`)
    }
  })

  it('every method refuses a field it does not have, by name', () => {
    const bases: Partial<Record<Method, Record<string, unknown>>> = {
      'models.inspect': { dir: '/m' },
      'datasets.cancel': { file: '/f' },
      'models.plan': { dir: '/m' },
      'models.link': { dir: '/m' },
      'runs.auto': { model: '/m', dataset: 'd' },
      'runs.get': { id: 'r' },
      'runs.cancel': { id: 'r' },
      'runs.resume': { id: 'r' },
      'runs.export': { id: 'r' },
      'runs.handoff': handoff,
      'runs.importAdapter': { dir: '/a' },
      'chat.send': chat,
      'chat.cancel': { requestId: 'r' },
      'conversations.save': conv,
      'conversations.delete': { id: 'c' },
      'tasks.cancel': { taskId: 't' },
      'datasets.import': { file: '/d', split: {} },
    }
    for (const [method, base] of Object.entries(bases) as [Method, Record<string, unknown>][]) {
      expect(() => validateArgs(method, base), method).not.toThrow()
      expect(refusal(method, { ...base, bogus: 1 }).field, method).toBe('bogus')
    }
    expect(refusal('datasets.import', { file: '/d', split: { validation: 0.1, bogus: 1 } }).field).toBe('split.bogus')
    expect(refusal('datasets.inspect', { file: '/d', preview: { bogus: 1 } }).field).toBe('preview.bogus')
    expect(refusal('chat.send', { ...chat, sampling: { bogus: 1 } }).field).toBe('sampling.bogus')
    expect(refusal('chat.send', { ...chat, offload: { budgetBytes: 1, storage: 'lazy', bogus: 1 } }).field).toBe('offload.bogus')
    expect(refusal('chat.send', { ...chat, messages: [{ role: 'user', content: 'x', bogus: 1 }] }).field).toBe('messages.0.bogus')
    // Only a saved conversation's messages carry tokens.
    expect(refusal('chat.send', { ...chat, messages: [{ role: 'user', content: 'x', tokens: { layers: [], pieces: [] } }] }).field).toBe(
      'messages.0.tokens',
    )
  })
})
