import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { inspectModel } from '../../src/main/engine/checkpoint'
import { KNOB_HELP, modelKnobDefaults } from '../../src/shared/knobs'
import { validateMoeConfig } from '../../src/shared/modelConfig'
import { runConfigSchema } from '../../src/shared/runConfig'
import { tinyConfig } from '../main/engine/helpers'

describe('MoE knobs: effective defaults and help', () => {
  it('has a line and a longer help for every knob of the run config', () => {
    expect(Object.keys(KNOB_HELP).sort()).toEqual(Object.keys(runConfigSchema.parse({}).moe).sort())
    for (const h of Object.values(KNOB_HELP)) {
      expect(h.line.length).toBeGreaterThan(20)
      expect(h.more.length).toBeGreaterThan(h.line.length)
    }
  })

  it("gives the model's own value of each knob (dropless where it sets no capacity)", () => {
    const c = validateMoeConfig({
      ...tinyConfig(),
      routerAuxLossCoef: 0.02,
      routerZLossCoef: 0.001,
      tokenDrop: 0.1,
      router: { type: 'softmax_topk', capacityFactorTrain: 1.25, capacityFactorEval: null, jitter: 0.01 },
    })
    expect(modelKnobDefaults(c)).toEqual({
      topK: c.topK,
      capacityFactorTrain: 1.25,
      capacityFactorEval: 'dropless',
      auxLossCoef: 0.02,
      zLossCoef: 0.001,
      importanceLossCoef: 0,
      loadLossCoef: 0,
      routerJitter: 0.01,
      expertDropout: 0,
      tokenDrop: 0.1,
      attentionDropout: 0,
      hiddenDropout: 0,
    })
  })

  it("are in a model's info, for the Train screen", () => {
    const info = inspectModel(join(__dirname, '../../resources/default-model'))
    expect(info.knobDefaults).toMatchObject({ auxLossCoef: 0.01, capacityFactorTrain: 'dropless', routerJitter: 0 })
  })
})
