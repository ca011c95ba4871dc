/**
 * Which parameters a run trains: method freeze limited to the last (or first) N layers and to
 * chosen parts, as LLaMA-Factory's freeze tuning; parts kept fixed; the trainable count known
 * before the start (trainingPlan, the fit planner) equal to what the trainer then trains; ESFT's
 * affinity scores and expert choice as the paper defines them, on a hand-made routing table.
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
import {
  EsftScorer,
  freezePart,
  isTrainable,
  scoreExperts,
  selectExperts,
  trainableCount,
  trainableParams,
} from '../../../src/main/train/freeze'
import { trainingPlan } from '../../../src/main/train/trainer'
import { randomIds, randomWeights, tinyConfig } from '../engine/helpers'
import { deviceLock } from '../../../src/main/engine/device'
import * as tf from '@tensorflow/tfjs'

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
      // settings the model cannot train with are refused by name before any plan (runs.start plans first)
      expect(() => planModel({ dir, run: { method: 'lora', lora: { rank: 8, targets: ['router'] } }, budgetBytes: 2 ** 30 })).toThrow(
        expect.objectContaining({
          code: 'invalid_argument',
          field: 'config.lora.rank',
          message: expect.stringMatching(/^config\.lora\.rank: 8 exceeds .* use at most 4/),
        }),
      )
      expect(() => planModel({ dir, run: { method: 'freeze', freeze: { experts: { '0': [50] } } }, budgetBytes: 2 ** 30 })).toThrow(
        expect.objectContaining({ field: 'config.freeze.experts.0' }),
      )
      // a context past the model's positions is refused by name (a KV cache it can never fill was planned)
      const positions = c.maxPositionEmbeddings
      expect(planModel({ dir, budgetBytes: 2 ** 30, contextTokens: positions }).fits).toBe(true)
      expect(() => planModel({ dir, budgetBytes: 2 ** 30, contextTokens: positions + 1 })).toThrow(
        expect.objectContaining({
          code: 'invalid_argument',
          field: 'contextTokens',
          message: `contextTokens: ${positions + 1} is more than the model's ${positions} positions; plan for at most ${positions}`,
        }),
      )
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

describe('ESFT (hand-made routing table)', () => {
  // One layer, 4 experts, top-2, un-renormalised weights; two rows of 4 positions. Position t
  // counts when labels[t+1] is trained: row 0 counts t = 0, 1, 2; row 1 only t = 2.
  const labels = [
    [-100, 5, 5, 5],
    [-100, -100, -100, 5],
  ]
  const topk = Int32Array.from([0, 1, 0, 2, 0, 1, 3, 2, /* row 1 */ 3, 1, 3, 1, 2, 3, 0, 1])
  const weights = Float32Array.from([0.4, 0.2, 0.3, 0.3, 0.5, 0.1, 0.5, 0.1, /* row 1 */ 0.5, 0.1, 0.5, 0.1, 0.4, 0.2, 0.5, 0.1])
  const table = [{ layer: 3, decision: { N: 8, k: 2, topk }, weights }]
  const scores = (kind: 'gate' | 'token_share'): number[] => {
    const s = new EsftScorer(4, kind)
    s.add(table, labels)
    const r = s.result()
    expect(r.tokens).toBe(4)
    expect(Object.keys(r.scores)).toEqual(['3'])
    return r.scores['3']
  }

  it('average gate score: the mean over samples of the per-token mean gate value', () => {
    // row 0 (3 tokens): e0 (0.4 + 0.3 + 0.5) / 3 = 0.4, e1 0.3 / 3 = 0.1, e2 0.3 / 3 = 0.1; row 1: e2 0.4, e3 0.2
    const g = scores('gate')
    ;[0.2, 0.05, 0.25, 0.1].forEach((v, e) => expect(g[e], `expert ${e}`).toBeCloseTo(v, 6))
  })

  it("token selection ratio: the mean over samples of each expert's share of the k choices", () => {
    // row 0: e0 3/6, e1 2/6, e2 1/6; row 1: e2 1/2, e3 1/2
    const r = scores('token_share')
    ;[0.25, 1 / 6, 1 / 3, 0.25].forEach((v, e) => expect(r[e], `expert ${e}`).toBeCloseTo(v, 6))
  })

  it("the paper's rule: the best experts until their cumulative score reaches p", () => {
    const g = { '3': scores('gate') }
    // sorted: e2 0.25, e0 0.2, e3 0.1, e1 0.05
    expect(selectExperts(g, 0.2)).toEqual({ '3': [2] })
    expect(selectExperts(g, 0.3)).toEqual({ '3': [0, 2] })
    expect(selectExperts(g, 0.45)).toEqual({ '3': [0, 2] })
    expect(selectExperts(g, 0.5)).toEqual({ '3': [0, 2, 3] })
    // Scores normalised to sum 1 over the layer (e0 0.5 first) would choose [0] at p = 0.3, and a
    // mean over all counted tokens (e0 0.3 first) would too: the paper's per-sample mean chooses [0, 2].
    const t = { '3': scores('token_share') }
    // sorted: e2 1/3, e0 0.25, e3 0.25 (lower index first on ties), e1 1/6
    expect(selectExperts(t, 0.5)).toEqual({ '3': [0, 2] })
    expect(selectExperts(t, 0.6)).toEqual({ '3': [0, 2, 3] })
    expect(selectExperts(t, 1)).toEqual({ '3': [0, 1, 2, 3] })
  })

  it('scoreExperts scores what the model routes', async () => {
    await initBackend('cpu')
    const c = tinyConfig({ family: 'olmoe', normTopkProb: false, qkNorm: 'projection', numKvHeads: 4 })
    const m = new MoeModel(c, randomWeights(c, 2))
    const batch = { inputIds: randomIds(2, 5, 32, 3), labels: randomIds(2, 5, 32, 4) }
    batch.labels[1][2] = -100
    try {
      const got = await deviceLock.run(() => scoreExperts(m, [batch], 'gate'))
      const want = new EsftScorer(c.numExperts, 'gate')
      tf.tidy(() => want.add(m.forward(batch.inputIds).routing, batch.labels))
      expect(got).toEqual(want.result())
      // un-renormalised top-2 weights: each layer's gate scores sum below 1
      for (const s of Object.values(got.scores)) expect(s.reduce((a, b) => a + b, 0)).toBeLessThan(0.99)
      expect(got.tokens).toBe(7)
    } finally {
      m.dispose()
    }
  })
})
