/** `--set` overrides and the run config's own cross-field rules. */
import { describe, expect, it } from 'vitest'
import { familyTraits } from '../../src/shared/modelPresets'
import { applyOverrides, validateRunConfig } from '../../src/shared/runConfig'
import { validateMoeConfig } from '../../src/shared/modelConfig'
import { thrownMessage } from './thrown'

const message = thrownMessage

describe('applyOverrides', () => {
  it('JSON values where they parse, strings otherwise, everything after the first "="', () => {
    expect(applyOverrides({}, ['optimizer.lr=1e-4', 'name=hello', 'data.template=a=b', 'flag=true', 'list=[1,2]'])).toEqual({
      optimizer: { lr: 1e-4 },
      name: 'hello',
      data: { template: 'a=b' },
      flag: true,
      list: [1, 2],
    })
    expect(applyOverrides({}, ['note='])).toEqual({ note: '' })
  })

  it('keeps what the base had beside the key, replaces a non-object on the way, and never edits the base', () => {
    const base = { optimizer: { lr: 1, betas: [0.9, 0.99] }, data: 'x', lora: null, moe: [1] }
    const out = applyOverrides(base, ['optimizer.lr=2', 'data.maxLength=64', 'lora.rank=4', 'moe.zLossCoef=0.1'])
    expect(out).toEqual({ optimizer: { lr: 2, betas: [0.9, 0.99] }, data: { maxLength: 64 }, lora: { rank: 4 }, moe: { zLossCoef: 0.1 } })
    expect(base).toEqual({ optimizer: { lr: 1, betas: [0.9, 0.99] }, data: 'x', lora: null, moe: [1] })
  })

  it('refuses what is not key=value, with an example', () => {
    expect(message(() => applyOverrides({}, ['=3']))).toBe('--set =3: expected key=value, e.g. optimizer.lr=1e-4')
    expect(message(() => applyOverrides({}, ['maxSteps']))).toBe('--set maxSteps: expected key=value, e.g. optimizer.lr=1e-4')
  })
})

describe('validateRunConfig', () => {
  it('defaults from nothing; messages start with what was wrong', () => {
    expect(validateRunConfig(undefined).method).toBe(validateRunConfig({}).method)
    expect(message(() => validateRunConfig({ freeze: { trainableLayers: 0 } }))).toBe(
      'invalid run config: freeze.trainableLayers: must not be 0 (null trains every layer)',
    )
    expect(validateRunConfig({ freeze: { trainableLayers: -2 } }).freeze.trainableLayers).toBe(-2)
    expect(message(() => validateRunConfig({ method: 'lora', esft: { enabled: true } }))).toBe(
      'invalid run config: esft.enabled: ESFT trains the chosen experts fully; use method "full" or "freeze"',
    )
    expect(validateRunConfig({ method: 'freeze', esft: { enabled: true } }).esft.enabled).toBe(true)
    // A capacity factor that is neither a number nor dropless said only "Invalid input".
    for (const typed of ['zz', NaN] as unknown as number[])
      expect(message(() => validateRunConfig({ moe: { capacityFactorTrain: typed } }))).toBe(
        'invalid run config: moe.capacityFactorTrain: must be a number more than 0, or "dropless" (every token kept)',
      )
    expect(message(() => validateRunConfig({ moe: { capacityFactorEval: -1 } }))).toBe(
      'invalid run config: moe.capacityFactorEval: must be more than 0',
    )
  })
})

describe('familyTraits', () => {
  it('what a family fixes: q/k norm, and renormalised top-k for Mixtral and Qwen3-MoE only', () => {
    expect(familyTraits('mixtral')).toEqual({ family: 'mixtral', qkNorm: 'none', normTopkProb: true })
    expect(familyTraits('qwen3_moe')).toEqual({ family: 'qwen3_moe', qkNorm: 'head', normTopkProb: true })
    expect(familyTraits('qwen2_moe')).toEqual({ family: 'qwen2_moe', qkNorm: 'none' })
    expect(familyTraits('olmoe')).toEqual({ family: 'olmoe', qkNorm: 'projection' })
  })
})

describe('the run config defaults (what README documents and a bare `train` uses)', () => {
  const DEFAULTS = {
    method: 'full',
    lora: { rank: 8, alpha: 16, dropout: 0, targets: ['attention', 'experts'] },
    freeze: {
      router: false,
      attention: false,
      embeddings: false,
      allExperts: false,
      experts: {},
      trainableLayers: null,
      trainableParts: null,
    },
    esft: { enabled: false, score: 'gate', threshold: 0.2, scoringBatches: 16 },
    data: { maxLength: 256, truncation: 'right', maskPrompt: true, packing: false },
    optimizer: { lr: 3e-4, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, decayNormsAndBiases: false },
    schedule: { type: 'cosine', warmupSteps: 0, minLrRatio: 0 },
    batchSize: 8,
    gradAccumulation: 1,
    gradClip: 1,
    seed: 0,
    maxSteps: null,
    epochs: 1,
    evalEvery: 50,
    evalBatches: 0,
    earlyStopping: { patience: 0, minDelta: 0 },
    checkpointEvery: 100,
    finalEval: { rows: 10 },
    keepCheckpoints: 3,
    moe: {
      topK: null,
      capacityFactorTrain: null,
      capacityFactorEval: null,
      auxLossCoef: null,
      zLossCoef: null,
      importanceLossCoef: null,
      loadLossCoef: null,
      routerJitter: null,
      expertDropout: null,
      tokenDrop: null,
      attentionDropout: null,
      hiddenDropout: null,
    },
    offload: { budgetBytes: null, storage: 'lazy' },
    alerts: { deadShare: 0.01, collapseShare: 0.9, steps: 20 },
  }

  const empty = (): object =>
    Object.fromEntries(
      Object.entries(DEFAULTS)
        .filter(([, v]) => v !== null && typeof v === 'object')
        .map(([k]) => [k, {}]),
    )
  /** A model config's list default, edited: the next parse's (mlpOnlyLayers). */
  const validateModelConfigDefaults = (): number[] => {
    const bare = {
      family: 'mixtral',
      vocabSize: 64,
      hiddenSize: 16,
      numLayers: 4,
      numHeads: 2,
      numKvHeads: 2,
      headDim: 8,
      intermediateSize: 32,
      expertIntermediateSize: 16,
      numExperts: 4,
      topK: 2,
      normTopkProb: true,
    } as const
    validateMoeConfig(bare).mlpOnlyLayers.push(3)
    return validateMoeConfig(bare).mlpOnlyLayers
  }

  it('from nothing, and the same from empty sections (each section defaults field by field)', () => {
    expect(validateRunConfig({})).toEqual(DEFAULTS)
    expect(validateRunConfig(empty())).toEqual(DEFAULTS)
  })

  it('each parse gets its own defaults: editing one config (a form field) leaves the next defaults alone', () => {
    // zod 4 hands out a default object as it is: the form's Defaults button kept Adam's betas as edited.
    const edited = validateRunConfig({})
    edited.optimizer.betas[0] = 0.5
    edited.lora.targets.push('router')
    edited.freeze.experts['0'] = [1]
    edited.data.maxLength = 1
    const fromSection = validateRunConfig({ optimizer: {} })
    fromSection.optimizer.betas[1] = 0.5
    expect(validateRunConfig({})).toEqual(DEFAULTS)
    expect(validateRunConfig(empty())).toEqual(DEFAULTS)
    expect(validateModelConfigDefaults()).toEqual([])
  })

  it('the values each field takes', () => {
    const ok = (c: object) => message(() => validateRunConfig(c))
    expect(ok({ lora: { targets: ['router', 'lm_head'] } })).toBe('accepted')
    expect(ok({ lora: { targets: [] } })).toMatch(/^invalid run config: lora\.targets: /)
    expect(ok({ freeze: { experts: { '0': [1, 3], '12': [0] } } })).toBe('accepted')
    for (const key of ['x', '1a', 'a1', '-1', ''])
      expect(ok({ freeze: { experts: { [key]: [1] } } }), key).toMatch(/^invalid run config: freeze\.experts/)
    expect(ok({ freeze: { trainableParts: ['experts', 'router'] } })).toBe('accepted')
    expect(ok({ freeze: { trainableParts: [] } })).toMatch(/^invalid run config: freeze\.trainableParts: /)
    expect(ok({ esft: { score: 'token_share' } })).toBe('accepted')
    expect(ok({ esft: { score: 'gate' } })).toBe('accepted')
    expect(ok({ esft: { score: 'entropy' } })).toMatch(/^invalid run config: esft\.score: /)
    for (const t of ['right', 'left', 'drop']) expect(ok({ data: { truncation: t } }), t).toBe('accepted')
    expect(ok({ data: { truncation: 'middle' } })).toMatch(/^invalid run config: data\.truncation: /)
    for (const t of ['cosine', 'linear', 'constant']) expect(ok({ schedule: { type: t } }), t).toBe('accepted')
    expect(ok({ schedule: { type: 'step' } })).toMatch(/^invalid run config: schedule\.type: /)
    expect(ok({ optimizer: { betas: [0.8, 0.9] } })).toBe('accepted')
    expect(ok({ optimizer: { betas: [1, 0.9] } })).toMatch(/^invalid run config: optimizer\.betas\.0: /)
    expect(ok({ earlyStopping: { minDelta: 0 } })).toBe('accepted')
    expect(ok({ earlyStopping: { minDelta: -1 } })).toMatch(/^invalid run config: earlyStopping\.minDelta: /)
    for (const k of ['auxLossCoef', 'zLossCoef', 'importanceLossCoef', 'loadLossCoef']) {
      expect(ok({ moe: { [k]: 0 } }), k).toBe('accepted')
      expect(ok({ moe: { [k]: 0.5 } }), k).toBe('accepted')
      expect(ok({ moe: { [k]: -0.1 } }), k).toMatch(new RegExp(`^invalid run config: moe\\.${k}: `))
    }
    expect(ok({ finalEval: { rows: 1000 } })).toBe('accepted')
    expect(ok({ finalEval: { rows: 1001 } })).toMatch(/^invalid run config: finalEval\.rows: /)
    expect(ok({ offload: { storage: 'eager' } })).toMatch(/^invalid run config: offload\.storage: /)
  })
})

describe('the new-model presets say what they are', () => {
  it('labels match the architecture; routers, shared experts and renormalisation as the family has them', async () => {
    const { MODEL_PRESETS, SMALL_ARCHITECTURE } = await import('../../src/shared/modelPresets')
    const { validateMoeConfig } = await import('../../src/shared/modelConfig')
    expect(MODEL_PRESETS.map((p) => p.id)).toEqual(['mixtral-tiny', 'qwen3-moe-tiny', 'qwen2-moe-tiny', 'olmoe-tiny', 'switch', 'hash'])
    for (const p of MODEL_PRESETS) {
      const d = p.draft
      const m = /(\d+) experts, top-(\d+)/.exec(p.label)
      if (m) expect([d.numExperts, d.topK], p.id).toEqual([Number(m[1]), Number(m[2])])
      expect(p.label.toLowerCase(), p.id).toContain(
        d.family === 'qwen2_moe'
          ? 'qwen2-moe'
          : d.family === 'qwen3_moe'
            ? 'qwen3-moe'
            : d.family === 'olmoe'
              ? 'olmoe'
              : d.router === 'softmax_topk'
                ? 'mixtral'
                : d.router,
      )
      expect(d.normTopkProb, p.id).toBe(d.family === 'mixtral' || d.family === 'qwen3_moe')
      expect(d.sharedExpertIntermediateSize > 0, p.id).toBe(d.family === 'qwen2_moe')
      expect(d.router === 'softmax_topk' || d.topK === 1, p.id).toBe(true)
      expect([d.numLayers, d.hiddenSize, d.numHeads], p.id).toEqual([4, 128, 4])
      const c = validateMoeConfig({
        ...SMALL_ARCHITECTURE,
        ...familyTraits(d.family),
        ...d,
        intermediateSize: d.expertIntermediateSize,
        headDim: d.hiddenSize / d.numHeads,
        vocabSize: 256,
        router: { type: d.router },
      })
      expect(c.router.type, p.id).toBe(d.router)
    }
    expect(MODEL_PRESETS.find((p) => p.id === 'switch')!.draft.router).toBe('switch')
    expect(MODEL_PRESETS.find((p) => p.id === 'hash')!.draft.router).toBe('hash')
    expect(SMALL_ARCHITECTURE).toEqual({
      hiddenSize: 128,
      numLayers: 4,
      numHeads: 4,
      numKvHeads: 2,
      intermediateSize: 256,
      expertIntermediateSize: 256,
      numExperts: 8,
      topK: 2,
      maxPositionEmbeddings: 1024,
    })
  })
})
