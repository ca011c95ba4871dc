/**
 * Which parameters a run trains: method freeze limited to the last (or first) N layers and to
 * chosen parts, as LLaMA-Factory's freeze tuning; parts kept fixed; the trainable count known
 * before the start (trainingPlan, the fit planner) equal to what the trainer then trains.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { paramSpecs, type MoeConfig } from '../../../src/shared/modelConfig'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import { initBackend } from '../../../src/main/engine/backend'
import { saveModel } from '../../../src/main/engine/checkpoint'
import { MoeModel } from '../../../src/main/engine/model'
import { planModel } from '../../../src/main/engineProcess/models'
import { freezePart, isTrainable, trainableCount, trainableParams } from '../../../src/main/train/freeze'
import { trainingPlan } from '../../../src/main/train/trainer'
import { randomWeights, tinyConfig } from '../engine/helpers'

/** Names of the parameters a run config trains on a model of config c. */
function trained(c: MoeConfig, cfg: RunConfigInput): string[] {
  const run = validateRunConfig(cfg)
  return paramSpecs(c)
    .filter((s) => isTrainable(s, run, c))
    .map((s) => s.name)
}

const all = (c: MoeConfig): string[] => paramSpecs(c).map((s) => s.name)

describe('freeze tuning: what trains', () => {
  // 3 layers, olmoe (q/k norms inside attention, biases)
  const c = tinyConfig({ family: 'olmoe', qkNorm: 'projection', numKvHeads: 4, numLayers: 3, qkvBias: true, oBias: true })

  it('no selector: freeze trains what full trains (every weight not kept fixed)', () => {
    expect(trained(c, { method: 'freeze' })).toEqual(all(c))
    expect(trained(c, { method: 'full' })).toEqual(all(c))
  })

  it('the last N layers only (negative: the first |N|); embeddings, final norm and lm_head stay fixed', () => {
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: 1 } })).toEqual(all(c).filter((n) => n.startsWith('model.layers.2.')))
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: 2 } })).toEqual(all(c).filter((n) => /^model\.layers\.[12]\./.test(n)))
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: -1 } })).toEqual(all(c).filter((n) => n.startsWith('model.layers.0.')))
    // more layers than the model has: every layer
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: 9 } })).toEqual(all(c).filter((n) => n.startsWith('model.layers.')))
  })

  it('chosen parts only: experts, router, attention (with its q/k norms), and outside weights when listed', () => {
    expect(trained(c, { method: 'freeze', freeze: { trainableParts: ['experts'] } })).toEqual(all(c).filter((n) => n.includes('.experts.')))
    expect(trained(c, { method: 'freeze', freeze: { trainableParts: ['router'] } })).toEqual(
      all(c).filter((n) => n.endsWith('.gate.weight')),
    )
    expect(trained(c, { method: 'freeze', freeze: { trainableParts: ['attention'] } })).toEqual(
      all(c).filter((n) => n.includes('.self_attn.')),
    )
    expect(trained(c, { method: 'freeze', freeze: { trainableParts: ['norms'] } })).toEqual(
      all(c).filter((n) => n.endsWith('layernorm.weight') || n === 'model.norm.weight'),
    )
    // parts and layers together; a listed outside weight trains whatever the layer count
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: 1, trainableParts: ['experts', 'lm_head', 'embeddings'] } })).toEqual(
      all(c).filter((n) => n.startsWith('model.layers.2.mlp.experts.') || n === 'lm_head.weight' || n === 'model.embed_tokens.weight'),
    )
    // kept-fixed parts stay fixed inside the chosen ones
    expect(trained(c, { method: 'freeze', freeze: { trainableLayers: 1, trainableParts: ['experts'], experts: { '2': [0, 3] } } })).toEqual(
      all(c).filter((n) => /^model\.layers\.2\.mlp\.experts\.[12]\./.test(n)),
    )
  })

  it('the selectors are method freeze only: full ignores them, and the parts cover every kind', () => {
    expect(trained(c, { method: 'full', freeze: { trainableLayers: 1, trainableParts: ['router'] } })).toEqual(all(c))
    const qwen = tinyConfig({ family: 'qwen2_moe', normTopkProb: false, sharedExpertIntermediateSize: 8, numLayers: 2, mlpOnlyLayers: [0] })
    const parts = new Map<string, string[]>()
    for (const s of paramSpecs(qwen)) parts.set(freezePart(s), [...(parts.get(freezePart(s)) ?? []), s.name])
    expect(parts.get('dense_mlp')).toEqual([
      'model.layers.0.mlp.gate_proj.weight',
      'model.layers.0.mlp.up_proj.weight',
      'model.layers.0.mlp.down_proj.weight',
    ])
    expect(parts.get('shared_expert')).toEqual([
      'model.layers.1.mlp.shared_expert.gate_proj.weight',
      'model.layers.1.mlp.shared_expert.up_proj.weight',
      'model.layers.1.mlp.shared_expert.down_proj.weight',
      'model.layers.1.mlp.shared_expert_gate.weight',
    ])
    expect(trained(qwen, { method: 'freeze', freeze: { trainableParts: ['shared_expert', 'dense_mlp'] } })).toEqual([
      ...parts.get('dense_mlp')!,
      ...parts.get('shared_expert')!,
    ])
  })

  it('0 layers is refused; a hash-routed router is never trained, and nothing to train is an error', async () => {
    expect(() => validateRunConfig({ freeze: { trainableLayers: 0 } })).toThrow(/freeze\.trainableLayers/)
    expect(() => validateRunConfig({ freeze: { trainableParts: ['mlp'] } })).toThrow(/freeze\.trainableParts/)
    // without the model's layer count, a layer selector cannot be applied
    const spec = paramSpecs(tinyConfig({}))[1]
    expect(() => isTrainable(spec, validateRunConfig({ method: 'freeze', freeze: { trainableLayers: 1 } }))).toThrow(/layer count/)
    expect(isTrainable(spec, validateRunConfig({ method: 'freeze', freeze: { trainableParts: ['attention'] } }))).toBe(true)
    await initBackend('cpu')
    const hc = tinyConfig({ router: { type: 'hash' } })
    const m = new MoeModel(hc, randomWeights(hc, 1))
    try {
      expect(() => trainableParams(m, validateRunConfig({ method: 'freeze', freeze: { trainableParts: ['router'] } }))).toThrow(
        /leaves nothing to train/,
      )
    } finally {
      m.dispose()
    }
  })
})

describe('the trainable count before the start', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  const CASES: RunConfigInput[] = [
    { method: 'full' },
    { method: 'full', freeze: { router: true, embeddings: true } },
    { method: 'freeze', freeze: { trainableLayers: 1 } },
    { method: 'freeze', freeze: { trainableLayers: -1, trainableParts: ['attention', 'norms'] } },
    { method: 'freeze', freeze: { trainableParts: ['experts'], experts: { '0': [1] } } },
    { method: 'freeze', freeze: { trainableParts: ['router'] } },
  ]

  it('trainingPlan and the fit planner count exactly the values the trainer trains', () => {
    const c = tinyConfig({ router: { type: 'noisy_topk' } })
    const m = new MoeModel(c, randomWeights(c, 1))
    const dir = mkdtempSync(join(tmpdir(), 'moe-freeze-'))
    saveModel(m, dir)
    try {
      const counts = CASES.map((cfg) => {
        const run = validateRunConfig(cfg)
        const values = [...trainableParams(m, run).values()].reduce((a, v) => a + v.size, 0)
        expect(trainingPlan(c, run).trainableParams, JSON.stringify(cfg)).toBe(values)
        expect(trainableCount(c, run)).toBe(values)
        expect(planModel({ dir, run: cfg, budgetBytes: 2 ** 30 }).trainableParams, JSON.stringify(cfg)).toBe(values)
        return values
      })
      // the cases differ: a count that ignored the policy would not match them all
      expect(new Set(counts).size).toBe(CASES.length)
      // LoRA: adapters, rank · (out + in) per target matrix
      const lora = validateRunConfig({ method: 'lora', lora: { rank: 2, targets: ['router'] } })
      expect(trainingPlan(c, lora).trainableParams).toBe(2 * 2 * (c.numExperts + c.hiddenSize))
      // ESFT: every expert, the most it may choose
      const esft = validateRunConfig({ esft: { enabled: true } })
      expect(trainingPlan(c, esft).trainableParams).toBe(
        paramSpecs(c)
          .filter((s) => s.kind === 'expert')
          .reduce((a, s) => a + s.shape[0] * s.shape[1], 0),
      )
      // inference plans carry no count
      expect(planModel({ dir, budgetBytes: 2 ** 30 }).trainableParams).toBeUndefined()
    } finally {
      m.dispose()
    }
  })

  it('a hash-routed model counts no router', () => {
    const c = tinyConfig({ router: { type: 'hash' } })
    const run = validateRunConfig({})
    const routers = paramSpecs(c).filter((s) => s.kind === 'router')
    const total = paramSpecs(c).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0)
    expect(routers.length).toBeGreaterThan(0)
    expect(trainingPlan(c, run).trainableParams).toBe(total - routers.reduce((a, s) => a + s.shape[0] * s.shape[1], 0))
  })
})
