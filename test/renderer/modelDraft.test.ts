import { describe, expect, it } from 'vitest'
import { MODEL_PRESETS, draftArgs, draftFromPreset, draftIssues, draftParams } from '../../src/renderer/src/modelDraft'

describe('model drafts', () => {
  it.each(MODEL_PRESETS.map((p) => [p.id, p] as const))('preset %s is a valid model once named', (_id, preset) => {
    const draft = draftFromPreset(preset, 'mine')
    expect(draftIssues(draft)).toEqual({})
    expect(draftParams(draft)?.total).toBeGreaterThan(0)
  })

  it('names each problem by its field', () => {
    const issues = draftIssues({ ...draftFromPreset(MODEL_PRESETS[0]), topK: 9 })
    expect(issues.name).toBeDefined()
    // In the form's own labels ('topK 9 exceeds numExperts 8' named no field on the form).
    expect(issues.topK).toBe('Top-k 9 exceeds Experts per layer 8')
    // (The schema's cross-field checks run once every field reads.)
    expect(draftIssues({ ...draftFromPreset(MODEL_PRESETS[0], 'x'), hiddenSize: 130 }).numHeads).toMatch(/must divide/)
    expect(draftIssues({ ...draftFromPreset(MODEL_PRESETS[0], 'x'), router: 'switch' }).topK).toMatch(/top-1/)
    // The schema's own bounds in plain words, not zod's ("Too small: expected number to be >0").
    expect(draftIssues({ ...draftFromPreset(MODEL_PRESETS[0], 'x'), numLayers: 0 }).numLayers).toBe('must be more than 0')
    expect(draftIssues({ ...draftFromPreset(MODEL_PRESETS[0], 'x'), numLayers: 2.5 }).numLayers).toBe('must be a whole number')
    expect(draftIssues({ ...draftFromPreset(MODEL_PRESETS[0], 'x'), numLayers: 0 }).numLayers).toBeDefined()
  })

  it('sends the architecture with the shared expert only for qwen2_moe', () => {
    const qwen = draftArgs(
      draftFromPreset(
        MODEL_PRESETS.find((p) => p.id === 'qwen2-moe-tiny')!,
        ' q ',
      ),
    )
    expect(qwen).toMatchObject({
      name: 'q',
      seed: 0,
      config: { family: 'qwen2_moe', sharedExpertIntermediateSize: 256, headDim: 32, router: { type: 'softmax_topk' } },
    })
    expect(qwen.tokenizerFrom).toBeUndefined()
    const mixtral = draftArgs({ ...draftFromPreset(MODEL_PRESETS[0], 'm'), tokenizerFrom: '/tok' })
    expect(mixtral.config.sharedExpertIntermediateSize).toBeUndefined()
    expect(mixtral.tokenizerFrom).toBe('/tok')
  })
})
