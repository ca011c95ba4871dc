/** The model config: defaults, validation naming the field, and the HF config.json normaliser. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { countParams, fromHfConfig, paramSpecs, sparseLayers, toHfConfig, validateMoeConfig } from '../../src/shared/modelConfig'

const FIX = join(__dirname, '../fixtures/moe-reference')
const hf = (family: string): Record<string, unknown> => JSON.parse(readFileSync(join(FIX, family, 'config.json'), 'utf8'))
const expected = (family: string): { param_names: string[]; param_shapes: Record<string, number[]>; summary: { num_parameters: number } } =>
  JSON.parse(readFileSync(join(FIX, family, 'expected.json'), 'utf8'))

describe('HF config.json normaliser', () => {
  for (const family of ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe']) {
    it(`${family}: tensor names, shapes and parameter count match the checkpoint`, () => {
      const c = fromHfConfig(hf(family))
      const e = expected(family)
      const specs = paramSpecs(c)
      expect(specs.map((s) => s.name)).toEqual(e.param_names)
      for (const s of specs) expect(s.shape, s.name).toEqual(e.param_shapes[s.name])
      expect(countParams(c).total).toBe(e.summary.num_parameters)
    })
  }

  it('maps family-specific fields', () => {
    const m = fromHfConfig(hf('mixtral'))
    expect(m).toMatchObject({
      family: 'mixtral',
      numExperts: 4,
      topK: 2,
      normTopkProb: true,
      headDim: 12,
      numKvHeads: 2,
      ropeTheta: 1e6,
      routerAuxLossCoef: 0.02,
    })
    const q = fromHfConfig(hf('qwen2_moe'))
    expect(q).toMatchObject({
      expertIntermediateSize: 24,
      intermediateSize: 64,
      sharedExpertIntermediateSize: 48,
      qkvBias: true,
      normTopkProb: false,
    })
    const o = fromHfConfig(hf('olmoe'))
    expect(o).toMatchObject({ qkNorm: 'projection', clipQkv: null, eosTokenId: 95, padTokenId: 1, ropeTheta: 10000 })
    const q3 = fromHfConfig(hf('qwen3_moe'))
    expect(q3).toMatchObject({
      family: 'qwen3_moe',
      qkNorm: 'head',
      headDim: 12, // explicit, not 32 / 4
      expertIntermediateSize: 20,
      intermediateSize: 48,
      sharedExpertIntermediateSize: 0,
      qkvBias: false,
      oBias: false,
      normTopkProb: true,
      ropeTheta: 1e6,
    })
    expect(paramSpecs(q3).find((s) => s.name === 'model.layers.0.self_attn.q_norm.weight')?.shape).toEqual([12])
    // What HF's Qwen3MoeForCausalLM reads back.
    expect(toHfConfig(q3)).toMatchObject({
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      head_dim: 12,
      moe_intermediate_size: 20,
    })
    const biased = fromHfConfig({ ...hf('qwen3_moe'), attention_bias: true, use_sliding_window: true, sliding_window: 16 })
    expect(biased).toMatchObject({ qkvBias: true, oBias: true, slidingWindow: 16, maxWindowLayers: 0 })
    expect(() => validateMoeConfig({ ...q3, qkNorm: 'projection' })).toThrow(/qwen3_moe always normalises q and k; set qkNorm "head"/)
    expect(() => validateMoeConfig({ ...q3, sharedExpertIntermediateSize: 8 })).toThrow(/shared expert is a qwen2_moe feature/)
  })

  it('qwen2_moe: decoder_sparse_step and mlp_only_layers make dense layers with the dense MLP names', () => {
    const c = fromHfConfig({ ...hf('qwen2_moe'), num_hidden_layers: 4, decoder_sparse_step: 2, mlp_only_layers: [3] })
    expect(sparseLayers(c)).toEqual([1])
    const names = paramSpecs(c).map((s) => s.name)
    expect(names).toContain('model.layers.0.mlp.gate_proj.weight')
    expect(names).toContain('model.layers.1.mlp.gate.weight')
    expect(names).toContain('model.layers.3.mlp.down_proj.weight')
    expect(names).not.toContain('model.layers.3.mlp.gate.weight')
    expect(paramSpecs(c).find((s) => s.name === 'model.layers.0.mlp.up_proj.weight')!.shape).toEqual([64, 32])
  })

  it('keys a config.json leaves out take the HF config class defaults', () => {
    const { rope_theta: _r, num_key_value_heads: _k, rope_parameters: _p, ...mixtral } = hf('mixtral')
    expect(fromHfConfig({ ...mixtral, num_attention_heads: 8, head_dim: 6 })).toMatchObject({ ropeTheta: 1e6, numKvHeads: 8 })
    const { rms_norm_eps: _e, rope_parameters: _q, ...qwen } = hf('qwen2_moe')
    expect(fromHfConfig(qwen).rmsNormEps).toBe(1e-6)
  })

  it('sliding windows: mixtral always, qwen2_moe from max_window_layers when use_sliding_window', () => {
    expect(fromHfConfig({ ...hf('mixtral'), sliding_window: 16 })).toMatchObject({ slidingWindow: 16, maxWindowLayers: 0 })
    expect(fromHfConfig(hf('qwen2_moe')).slidingWindow).toBeNull()
    expect(fromHfConfig({ ...hf('qwen2_moe'), use_sliding_window: true, sliding_window: 8, max_window_layers: 1 })).toMatchObject({
      slidingWindow: 8,
      maxWindowLayers: 1,
    })
  })

  it('olmoe attention_bias adds q/k/v and o_proj biases', () => {
    const names = paramSpecs(fromHfConfig({ ...hf('olmoe'), attention_bias: true })).map((s) => s.name)
    expect(names).toContain('model.layers.0.self_attn.o_proj.bias')
    expect(names).toContain('model.layers.1.self_attn.k_proj.bias')
  })

  it('tied embeddings: no lm_head tensor', () => {
    const c = fromHfConfig({ ...hf('mixtral'), tie_word_embeddings: true })
    expect(paramSpecs(c).map((s) => s.name)).not.toContain('lm_head.weight')
  })

  it('reads rope_theta from rope_parameters (transformers v5) and refuses scaled rope', () => {
    const c = fromHfConfig({ ...hf('olmoe'), rope_theta: undefined, rope_parameters: { rope_type: 'default', rope_theta: 5000 } })
    expect(c.ropeTheta).toBe(5000)
    expect(() => fromHfConfig({ ...hf('olmoe'), rope_scaling: { type: 'yarn', factor: 4 } })).toThrow(/rope type "yarn" is not supported/)
  })

  it('names the bad field', () => {
    expect(() => fromHfConfig({ ...hf('mixtral'), hidden_size: 'big' }, 'x/config.json')).toThrow(
      /x\/config\.json: "hidden_size" must be a number/,
    )
    expect(() => fromHfConfig({ ...hf('mixtral'), num_experts_per_tok: 9 })).toThrow(/topK: topK 9 exceeds numExperts 4/)
    expect(() => fromHfConfig({ ...hf('mixtral'), num_key_value_heads: 3 })).toThrow(/numKvHeads/)
    expect(() => fromHfConfig({ model_type: 'gpt2' })).toThrow(/model_type "gpt2" is not supported/)
    expect(() => fromHfConfig({})).toThrow(/"model_type" is missing/)
  })

  it('toHfConfig → fromHfConfig round-trips, workbench keys included', () => {
    for (const family of ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe']) {
      const c = fromHfConfig(hf(family))
      const custom = {
        ...c,
        router: { ...c.router, type: 'noisy_topk' as const, capacityFactorTrain: 1.25, capacityFactorEval: 2, jitter: 0.01 },
        routerZLossCoef: 1e-3,
        routerImportanceLossCoef: 0.1,
        routerLoadLossCoef: 0.05,
        expertDropout: 0.1,
      }
      const back = fromHfConfig(JSON.parse(JSON.stringify(toHfConfig(custom))))
      expect(back).toEqual(custom)
    }
  })

  it('Shazeer importance and load coefficients live under the workbench key, off when absent', () => {
    const c = { ...fromHfConfig(hf('mixtral')), routerImportanceLossCoef: 0.1, routerLoadLossCoef: 0.05 }
    const json = toHfConfig(c)
    expect(json.moe_workbench).toMatchObject({ importance_loss_coef: 0.1, load_loss_coef: 0.05 })
    expect(json).not.toHaveProperty('importance_loss_coef')
    expect(fromHfConfig(hf('mixtral'))).toMatchObject({ routerImportanceLossCoef: 0, routerLoadLossCoef: 0 })
  })
})

describe('validateMoeConfig', () => {
  const base = {
    family: 'mixtral',
    vocabSize: 10,
    hiddenSize: 8,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 4,
    intermediateSize: 8,
    expertIntermediateSize: 8,
    numExperts: 2,
    topK: 1,
    normTopkProb: true,
  }

  it('fills documented defaults', () => {
    const c = validateMoeConfig(base)
    expect(c.router).toEqual({ type: 'softmax_topk', capacityFactorTrain: null, capacityFactorEval: null, jitter: 0, hashSeed: 0 })
    expect(c).toMatchObject({ decoderSparseStep: 1, mlpOnlyLayers: [], rmsNormEps: 1e-5, routerZLossCoef: 0, expertDropout: 0 })
  })

  it('rejects bad values naming the field', () => {
    expect(() => validateMoeConfig({ ...base, numExperts: 0 })).toThrow(/numExperts/)
    expect(() => validateMoeConfig({ ...base, router: { type: 'switch' }, topK: 2 })).toThrow(/topK: the switch router is top-1/)
    expect(() => validateMoeConfig({ ...base, router: { capacityFactorTrain: -1 } })).toThrow(/router\.capacityFactorTrain/)
    expect(() => validateMoeConfig({ ...base, expertDropout: 1.5 })).toThrow(/expertDropout/)
    expect(() => validateMoeConfig({ ...base, headDim: 3 })).toThrow(/headDim/)
    expect(() => validateMoeConfig({ ...base, family: 'gpt2' })).toThrow(/family/)
  })
})
