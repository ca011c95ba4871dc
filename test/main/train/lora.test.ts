/** LoRA adapters on their own: targets, PEFT names and initialisation, the low-rank path, merge, PEFT files and loading. */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { Rng } from '../../../src/main/engine/ops'
import { LoraAdapters, loraTargetNames, peftName } from '../../../src/main/train/lora'
import { paramSpecs } from '../../../src/shared/modelConfig'
import { validateRunConfig, type LoraTarget } from '../../../src/shared/runConfig'
import { maxAbsDiff, tinyConfig, tinyModel } from '../engine/helpers'

const cfg = (over: { rank?: number; alpha?: number; dropout?: number; targets?: LoraTarget[] } = {}) =>
  validateRunConfig({ method: 'lora', lora: { rank: 2, alpha: 8, targets: ['attention', 'experts'], ...over } }).lora

describe('which weights get adapters', () => {
  it('2-D weights of the targeted kinds only (no biases, no norms)', () => {
    const specs = paramSpecs(tinyConfig({ family: 'qwen2_moe', normTopkProb: false, sharedExpertIntermediateSize: 8, qkvBias: true }))
    const of = (t: LoraTarget[]) => loraTargetNames(specs, t)
    expect(of(['attention'])).toEqual(specs.filter((s) => s.kind === 'attn').map((s) => s.name))
    expect(of(['attention']).some((n) => n.endsWith('.bias'))).toBe(false)
    expect(of(['router'])).toEqual(['model.layers.0.mlp.gate.weight', 'model.layers.1.mlp.gate.weight'])
    expect(of(['shared_expert'])).toHaveLength(6)
    expect(of(['lm_head'])).toEqual(['lm_head.weight'])
    expect(of(['experts'])).toHaveLength(2 * 4 * 3)
    expect(of(['dense_mlp'])).toEqual([])
    expect(
      loraTargetNames(paramSpecs(tinyConfig({ family: 'qwen2_moe', normTopkProb: false, mlpOnlyLayers: [0] })), ['dense_mlp']),
    ).toEqual(['model.layers.0.mlp.gate_proj.weight', 'model.layers.0.mlp.up_proj.weight', 'model.layers.0.mlp.down_proj.weight'])
  })

  it("PEFT's tensor names", () => {
    expect(peftName('model.layers.0.self_attn.q_proj.weight', 'A')).toBe('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight')
    expect(peftName('lm_head.weight', 'B')).toBe('base_model.model.lm_head.lora_B.weight')
  })
})

describe('LoraAdapters', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  it('A is Kaiming-uniform within ±1/√in, B is zero, scale is α/r', () => {
    const model = tinyModel()
    const lora = new LoraAdapters(model, cfg(), 3)
    expect(lora.scale).toBe(4)
    const name = 'model.layers.0.self_attn.q_proj.weight'
    const a = lora.A.get(name)!
    expect(a.shape).toEqual([2, 16])
    const values = a.dataSync()
    expect(Math.max(...values.map(Math.abs))).toBeLessThanOrEqual(1 / 4)
    expect(Math.max(...values.map(Math.abs))).toBeGreaterThan(0.15)
    expect(lora.B.get(name)!.shape).toEqual([16, 2])
    expect([...lora.B.get(name)!.dataSync()].every((v) => v === 0)).toBe(true)
    expect([...lora.variables().keys()]).toContain('base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight')
    expect(lora.variables().size).toBe(2 * lora.A.size)
    lora.dispose()
    model.dispose()
  })

  it("refuses a rank above a weight's smaller side and targets that match nothing, naming them", () => {
    const model = tinyModel()
    expect(() => new LoraAdapters(model, cfg({ rank: 17 }), 1)).toThrow(
      'lora.rank 17 exceeds the smaller side of model.layers.0.self_attn.q_proj.weight [16, 16]',
    )
    expect(() => new LoraAdapters(model, cfg({ targets: ['shared_expert'] }), 1)).toThrow(
      'lora.targets ["shared_expert"] match no layer of this mixtral model',
    )
    model.dispose()
  })

  it('the wrapped linear adds (α/r)·x·Aᵀ·Bᵀ on targeted weights only; the grouped path sees the same parts', () => {
    const model = tinyModel()
    const lora = new LoraAdapters(model, cfg({ dropout: 0.5 }), 3)
    const name = 'model.layers.0.self_attn.q_proj.weight'
    const b = tf.tensor2d(new Rng(2).normalArray(16 * 2), [16, 2])
    lora.B.get(name)!.assign(b)
    const x = tf.tensor2d(new Rng(4).normalArray(3 * 16), [3, 16])
    const base = model.weightSource
    const eval_ = lora.wrap(base, { training: false })
    const w = model.params.get(name)!
    const expected = tf.add(
      tf.matMul(x, w, false, true),
      tf.mul(tf.matMul(tf.matMul(x, lora.A.get(name)!, false, true), b, false, true), 4),
    )
    expect(maxAbsDiff(eval_.linear(x, name).dataSync(), expected.dataSync())).toBeLessThan(1e-5)
    // a weight without an adapter: the base linear, bit for bit
    const lm = new LoraAdapters(model, cfg({ targets: ['experts'] }), 3)
    expect(maxAbsDiff(lm.wrap(base, { training: false }).linear(x, name).dataSync(), base.linear(x, name).dataSync())).toBe(0)
    expect(lm.wrap(base, { training: false }).matrix!(name)).toBe(base.matrix!(name))
    lm.dispose()
    // matrix(): targeted weights are not plain matrices any more; lowRank() gives base, A, B and scale
    expect(eval_.matrix!(name)).toBeUndefined()
    expect(eval_.lowRank!(name)).toMatchObject({ scale: 4 })
    expect(eval_.lowRank!(name)!.a).toBe(lora.A.get(name))
    // training with adapter dropout: the per-weight path and its mask, no grouped low-rank view
    const training = lora.wrap(base, { training: true, rng: new Rng(1) })
    expect(training.lowRank!(name)).toBeUndefined()
    const dropped = training.linear(x, name).dataSync()
    expect(maxAbsDiff(dropped, expected.dataSync())).toBeGreaterThan(1e-3)
    lora.dispose()
    model.dispose()
  })

  it('merges W + (α/r)·B·A, writes PEFT files, and loads them back (shapes checked)', async () => {
    const model = tinyModel()
    const lora = new LoraAdapters(model, cfg({ targets: ['attention'] }), 3)
    const name = 'model.layers.1.self_attn.v_proj.weight'
    lora.B.get(name)!.assign(tf.fill([8, 2], 0.5))
    const merged = await lora.mergedWeights()
    const want = tf.add(model.params.get(name)!, tf.mul(tf.matMul(lora.B.get(name)!, lora.A.get(name)!), 4)).dataSync()
    expect(maxAbsDiff(merged.get(name)!, want)).toBeLessThan(1e-6)
    const untouched = 'model.layers.1.self_attn.o_proj.weight'
    expect(maxAbsDiff(merged.get(untouched)!, model.params.get(untouched)!.dataSync())).toBe(0)

    const { tensors: written, config } = await lora.toPeft('/base')
    const tensors = new Map([...written].map(([n, t]) => [n, { shape: t.shape, data: t.data as Float32Array }]))
    expect(config).toMatchObject({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: '/base',
      r: 2,
      lora_alpha: 8,
      lora_dropout: 0,
      bias: 'none',
      fan_in_fan_out: false,
      moe_workbench: { targets: ['attention'], modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj'] },
    })
    expect((config.target_modules as string[])[0]).toBe('model.layers.0.self_attn.q_proj')
    expect(written.get(peftName(name, 'B'))).toMatchObject({ dtype: 'F32', shape: [8, 2] })

    const fresh = new LoraAdapters(model, cfg({ targets: ['attention'] }), 99)
    fresh.load(tensors)
    expect([...fresh.B.get(name)!.dataSync()]).toEqual(new Array(16).fill(0.5))
    expect(maxAbsDiff(fresh.A.get(name)!.dataSync(), lora.A.get(name)!.dataSync())).toBe(0)
    const missing = new Map(tensors)
    missing.delete(peftName(name, 'A'))
    expect(() => fresh.load(missing)).toThrow(`adapter file lacks ${peftName(name, 'A')}`)
    const wrong = new Map(tensors)
    wrong.set(peftName(name, 'B'), { shape: [2, 8], data: new Float32Array(16) })
    expect(() => fresh.load(wrong)).toThrow(`adapter ${peftName(name, 'B')} is [2,8], expected [8,2]`)
    for (const l of [lora, fresh]) l.dispose()
    model.dispose()
  })
})
