/**
 * The objective: cross-entropy plus every auxiliary term times its coefficient, the same whether
 * read back synchronously (training) or asynchronously (evaluation, webgpu); and which layer a
 * parameter belongs to.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { disposeGrads, lossAndGrads, objectiveValues, parameterPlace, type Batch } from '../../../src/main/engine/objective'
import { tinyModel } from './helpers'

beforeAll(async () => {
  await initBackend('cpu')
})

const batch: Batch = {
  inputIds: [
    [1, 5, 9, 3, 7, 2],
    [4, 8, 6, 0, 0, 0],
  ],
  labels: [
    [1, 5, 9, 3, 7, 2],
    [4, 8, 6, -100, -100, -100],
  ],
  lengths: [6, 3],
}

describe('objective', () => {
  it('adds every auxiliary term times its coefficient, and the asynchronous read gives the same parts', async () => {
    const coefs = { routerAuxLossCoef: 0.02, routerZLossCoef: 0.3, routerImportanceLossCoef: 0.5, routerLoadLossCoef: 0.7 }
    const m = tinyModel({ ...coefs, router: { type: 'noisy_topk' } }, 4)
    const { parts, grads } = lossAndGrads(m, batch)
    disposeGrads(grads)
    for (const k of ['ce', 'aux', 'z', 'importance', 'load'] as const) expect(parts[k], k).toBeGreaterThan(0)
    const byHand =
      parts.ce +
      coefs.routerAuxLossCoef * parts.aux +
      coefs.routerZLossCoef * parts.z +
      coefs.routerImportanceLossCoef * parts.importance +
      coefs.routerLoadLossCoef * parts.load
    expect(parts.loss).toBeCloseTo(byHand, 5)
    expect(parts.targets).toBe(5 + 2)
    const values = await objectiveValues(m, batch)
    for (const k of ['loss', 'ce', 'aux', 'z', 'importance', 'load', 'droppedFraction'] as const)
      expect(values[k], k).toBeCloseTo(parts[k], 5)
    expect(values.targets).toBe(parts.targets)
    expect(values.routing.length).toBe(m.config.numLayers)
    m.dispose()
  })

  it('a zero coefficient leaves its term out of the loss (logged all the same)', async () => {
    const m = tinyModel({ routerAuxLossCoef: 0.02, routerZLossCoef: 0, routerImportanceLossCoef: 0, routerLoadLossCoef: 0 }, 4)
    const { parts, grads } = lossAndGrads(m, batch)
    disposeGrads(grads)
    expect(parts.z).toBeGreaterThan(0)
    expect(parts.importance).toBeGreaterThan(0)
    expect(parts.loss).toBeCloseTo(parts.ce + 0.02 * parts.aux, 5)
    const values = await objectiveValues(m, batch)
    expect(values.loss).toBeCloseTo(parts.ce + 0.02 * parts.aux, 5)
    m.dispose()
  })
})

describe('parameterPlace', () => {
  it('finds the layer of hub and PEFT names, whatever the prefix or the number of digits', () => {
    expect(parameterPlace('model.layers.0.self_attn.q_proj.weight')).toBe(0)
    expect(parameterPlace('model.layers.12.block_sparse_moe.gate.weight')).toBe(12)
    expect(parameterPlace('layers.3.mlp.experts.1.down_proj.weight')).toBe(3)
    expect(parameterPlace('base_model.model.model.layers.27.self_attn.v_proj.lora_A.weight')).toBe(27)
    expect(parameterPlace('model.embed_tokens.weight')).toBe('embed')
    expect(parameterPlace('lm_head.weight')).toBe('head')
    expect(parameterPlace('model.norm.weight')).toBe('head')
    // "layers." only as a whole name part
    expect(parameterPlace('model.sublayers.4.weight')).toBe('head')
  })
})
