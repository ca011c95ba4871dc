/** The model config: defaults, validation naming the field, and the HF config.json normaliser. */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { thrownMessage } from './thrown'
import {
  countParams,
  fromHfConfig,
  hfConfigJson,
  paramSpecs,
  plainIssue,
  sparseLayers,
  toHfConfig,
  validateMoeConfig,
} from '../../src/shared/modelConfig'
import { validateRunConfig } from '../../src/shared/runConfig'

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
    expect(() => fromHfConfig({ ...hf('mixtral'), num_experts_per_tok: 9 })).toThrow(
      /num_experts_per_tok: num_experts_per_tok 9 exceeds num_local_experts 4/,
    )
    expect(() => fromHfConfig({ ...hf('mixtral'), num_key_value_heads: 3 })).toThrow(
      /num_key_value_heads 3 must divide num_attention_heads/,
    )
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

describe('validateMoeConfig: each cross-field rule names its field and what to set', () => {
  const base = {
    family: 'mixtral',
    vocabSize: 10,
    hiddenSize: 8,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 4,
    intermediateSize: 8,
    expertIntermediateSize: 8,
    numExperts: 4,
    topK: 2,
    normTopkProb: true,
  }
  const message = (input: unknown): string => thrownMessage(() => validateMoeConfig(input))

  it('one message per rule, exactly', () => {
    expect(message({ ...base, numKvHeads: 3 })).toBe('invalid model config: numKvHeads: numKvHeads 3 must divide numHeads 4')
    expect(message({ ...base, headDim: 5 })).toBe('invalid model config: headDim: headDim 5 must be even for rotary embeddings')
    expect(message({ ...base, topK: 5 })).toBe('invalid model config: topK: topK 5 exceeds numExperts 4')
    expect(message({ ...base, router: { type: 'switch' } })).toBe(
      'invalid model config: topK: the switch router is top-1; set topK to 1 (got 2)',
    )
    expect(message({ ...base, family: 'qwen2_moe', mlpOnlyLayers: [2] })).toBe(
      'invalid model config: mlpOnlyLayers: layer 2 does not exist (numLayers 2)',
    )
    expect(message({ ...base, qkNorm: 'head' })).toBe('invalid model config: qkNorm: mixtral has no q/k norm; set qkNorm "none"')
    expect(message({ ...base, family: 'olmoe' })).toBe(
      'invalid model config: qkNorm: olmoe always normalises q and k; set qkNorm "projection"',
    )
    expect(message({ ...base, oBias: true })).toBe(
      'invalid model config: oBias: an output-projection bias is an olmoe or qwen3_moe feature, not mixtral',
    )
    expect(message({ ...base, family: 'qwen3_moe', qkNorm: 'head', oBias: true })).toBe(
      'invalid model config: oBias: qwen3_moe attention_bias puts a bias on q, k, v and o together',
    )
    expect(message({ ...base, sharedExpertIntermediateSize: 8 })).toBe(
      'invalid model config: sharedExpertIntermediateSize: a shared expert is a qwen2_moe feature, not mixtral',
    )
  })

  it('the limits themselves are allowed', () => {
    expect(message({ ...base, topK: 4 })).toBe('accepted')
    expect(message({ ...base, family: 'qwen2_moe', mlpOnlyLayers: [1] })).toBe('accepted')
    expect(message({ ...base, family: 'olmoe', qkNorm: 'projection', oBias: true, qkvBias: true })).toBe('accepted')
    expect(message({ ...base, family: 'qwen3_moe', qkNorm: 'head', oBias: true, qkvBias: true })).toBe('accepted')
    expect(message({ ...base, family: 'qwen2_moe', sharedExpertIntermediateSize: 8 })).toBe('accepted')
  })

  it('several problems in one message, unknown keys by their path, a non-object at the root', () => {
    expect(message({ ...base, numKvHeads: 3, headDim: 5 })).toBe(
      'invalid model config: numKvHeads: numKvHeads 3 must divide numHeads 4; headDim: headDim 5 must be even for rotary embeddings',
    )
    expect(message({ ...base, router: { typ: 'switch' } })).toMatch(
      /^invalid model config: router\.typ: unknown field "typ" \(did you mean "type"\?\)/,
    )
    expect(message('mixtral')).toMatch(/^invalid model config: \(root\): /)
  })
})

describe('which layers are sparse', () => {
  const c = (over: object) =>
    validateMoeConfig({
      family: 'qwen2_moe',
      vocabSize: 10,
      hiddenSize: 8,
      numLayers: 6,
      numHeads: 2,
      numKvHeads: 2,
      headDim: 4,
      intermediateSize: 8,
      expertIntermediateSize: 4,
      numExperts: 4,
      topK: 2,
      normTopkProb: false,
      ...over,
    })
  it("every layer by default; HF's (i + 1) % decoder_sparse_step rule; mlp_only_layers dense", () => {
    expect(sparseLayers(c({}))).toEqual([0, 1, 2, 3, 4, 5])
    expect(sparseLayers(c({ decoderSparseStep: 3 }))).toEqual([2, 5])
    expect(sparseLayers(c({ decoderSparseStep: 2, mlpOnlyLayers: [3] }))).toEqual([1, 5])
  })
})

describe('HF config.json: what each family reads, and what it ignores', () => {
  it('messages name the file and the field', () => {
    const message = thrownMessage
    expect(message(() => fromHfConfig({}))).toBe(
      'config.json: "model_type" is missing; expected one of mixtral, qwen2_moe, olmoe, qwen3_moe',
    )
    expect(message(() => fromHfConfig({ model_type: 'gpt2' }))).toBe(
      'config.json: model_type "gpt2" is not supported; supported families: mixtral, qwen2_moe, olmoe, qwen3_moe',
    )
    expect(message(() => fromHfConfig({ ...hf('mixtral'), num_experts_per_tok: 9 }))).toBe(
      'config.json: num_experts_per_tok: num_experts_per_tok 9 exceeds num_local_experts 4',
    )
    expect(message(() => fromHfConfig({ ...hf('mixtral'), hidden_size: Infinity }))).toBe(
      'config.json: "hidden_size" must be a number (got null)',
    )
    expect(message(() => fromHfConfig({ ...hf('mixtral'), hidden_size: null }))).toBe(
      'config.json: "hidden_size" must be a number (got null)',
    )
  })

  it('null or undefined means "take the default"', () => {
    const m = fromHfConfig({
      ...hf('mixtral'),
      num_key_value_heads: null,
      rope_theta: undefined,
      rope_parameters: undefined,
      router_aux_loss_coef: null,
      tie_word_embeddings: null,
    })
    expect(m).toMatchObject({ numKvHeads: 4, ropeTheta: 1e6, routerAuxLossCoef: 0.02, tieWordEmbeddings: false })
    expect(fromHfConfig({ ...hf('olmoe'), router_aux_loss_coef: null, max_position_embeddings: null })).toMatchObject({
      routerAuxLossCoef: 0.001,
      maxPositionEmbeddings: 4096,
    })
    expect(fromHfConfig({ ...hf('qwen2_moe'), qkv_bias: null }).qkvBias).toBe(true)
    expect(fromHfConfig({ ...hf('qwen3_moe'), attention_bias: null })).toMatchObject({ qkvBias: false, oBias: false })
  })

  it("family-specific keys are read only for their family (as transformers' config classes do)", () => {
    const extra = {
      norm_topk_prob: false,
      shared_expert_intermediate_size: 8,
      mlp_only_layers: [0],
      decoder_sparse_step: 2,
      qkv_bias: true,
      attention_bias: true,
      clip_qkv: 8,
      use_sliding_window: true,
      max_window_layers: 1,
    }
    expect(fromHfConfig({ ...hf('mixtral'), ...extra })).toMatchObject({
      normTopkProb: true,
      sharedExpertIntermediateSize: 0,
      mlpOnlyLayers: [],
      decoderSparseStep: 1,
      qkvBias: false,
      oBias: false,
      clipQkv: null,
      maxWindowLayers: 0,
    })
    expect(fromHfConfig({ ...hf('olmoe'), clip_qkv: 8, attention_bias: true })).toMatchObject({ clipQkv: 8, qkvBias: true, oBias: true })
    expect(fromHfConfig({ ...hf('qwen2_moe'), sliding_window: 8 }).slidingWindow).toBeNull()
    expect(fromHfConfig({ ...hf('qwen3_moe'), use_sliding_window: true, sliding_window: 8, max_window_layers: 1 })).toMatchObject({
      slidingWindow: 8,
      maxWindowLayers: 0,
    })
  })

  it('reads the optional training and token fields', () => {
    const c = fromHfConfig({
      ...hf('mixtral'),
      router_jitter_noise: 0.1,
      attention_dropout: 0.25,
      bos_token_id: 3,
      [`moe_workbench`]: { hash_seed: 7, hidden_dropout: 0.2, token_drop: 0.15 },
    })
    expect(c).toMatchObject({ attentionDropout: 0.25, bosTokenId: 3, hiddenDropout: 0.2, tokenDrop: 0.15 })
    expect(c.router).toMatchObject({ jitter: 0.1, hashSeed: 7 })
    expect(fromHfConfig({ ...hf('mixtral'), moe_workbench: { router_jitter: 0.05 }, router_jitter_noise: 0.1 }).router.jitter).toBe(0.05)
  })

  it('writes what transformers expects of each family', () => {
    const arch = (family: string, over: object = {}): Record<string, unknown> => toHfConfig({ ...fromHfConfig(hf(family)), ...over })
    for (const [family, cls] of [
      ['mixtral', 'MixtralForCausalLM'],
      ['qwen2_moe', 'Qwen2MoeForCausalLM'],
      ['olmoe', 'OlmoeForCausalLM'],
      ['qwen3_moe', 'Qwen3MoeForCausalLM'],
    ]) {
      expect(arch(family), family).toMatchObject({
        architectures: [cls],
        model_type: family,
        hidden_act: 'silu',
        output_router_logits: false,
        use_cache: true,
      })
    }
    expect(arch('qwen2_moe')).toMatchObject({ use_sliding_window: false, max_window_layers: 2, sliding_window: null })
    expect(arch('qwen2_moe', { slidingWindow: 8, maxWindowLayers: 1 })).toMatchObject({
      use_sliding_window: true,
      sliding_window: 8,
      max_window_layers: 1,
    })
    expect(arch('qwen3_moe')).toMatchObject({ use_sliding_window: false })
    expect(arch('qwen3_moe', { slidingWindow: 8 })).toMatchObject({ use_sliding_window: true, sliding_window: 8 })
    expect(arch('olmoe', { clipQkv: 4 })).toMatchObject({ clip_qkv: 4 })
  })

  it('config.json text: float fields keep a decimal point, integers stay integers', () => {
    const text = hfConfigJson({ ...fromHfConfig(hf('mixtral')), ropeTheta: 1e6, routerAuxLossCoef: 0, clipQkv: null })
    expect(text).toContain('"rope_theta": 1000000.0,')
    expect(text).toContain('"router_aux_loss_coef": 0.0,')
    expect(text).toMatch(/"vocab_size": \d+,/)
    expect(text).toMatch(/"hidden_size": \d+,/)
    expect(text.endsWith('}\n')).toBe(true)
    expect(JSON.parse(text)).toEqual(
      JSON.parse(JSON.stringify(toHfConfig({ ...fromHfConfig(hf('mixtral')), ropeTheta: 1e6, routerAuxLossCoef: 0 }))),
    )
  })
})

describe('paramSpecs: what each tensor is', () => {
  const c = validateMoeConfig({
    family: 'qwen2_moe',
    vocabSize: 10,
    hiddenSize: 8,
    numLayers: 2,
    numHeads: 2,
    numKvHeads: 1,
    headDim: 4,
    intermediateSize: 12,
    expertIntermediateSize: 6,
    numExperts: 3,
    topK: 2,
    sharedExpertIntermediateSize: 5,
    mlpOnlyLayers: [0],
    qkvBias: true,
    normTopkProb: false,
    router: { type: 'noisy_topk' },
  })
  // Computed inside each test (not at collection), so mutation testing counts these tests as covering paramSpecs.
  const specsOf = () => paramSpecs(c)

  it('kinds, layers and experts of every tensor', () => {
    const specs = specsOf()
    const rules: [RegExp, string][] = [
      [/^model\.embed_tokens\.weight$/, 'embed'],
      [/^lm_head\.weight$/, 'lm_head'],
      [/norm\.weight$/, 'norm'],
      [/self_attn\.[qkvo]_proj\.weight$/, 'attn'],
      [/self_attn\.[qkvo]_proj\.bias$/, 'attn_bias'],
      [/mlp\.gate\.weight$/, 'router'],
      [/mlp\.noise_gate\.weight$/, 'router_noise'],
      [/mlp\.experts\.\d+\./, 'expert'],
      [/mlp\.shared_expert\./, 'shared_expert'],
      [/mlp\.shared_expert_gate\.weight$/, 'shared_expert_gate'],
      [/layers\.0\.mlp\.(gate|up|down)_proj\.weight$/, 'dense_mlp'],
    ]
    for (const s of specs) {
      const rule = rules.find(([re]) => re.test(s.name))
      expect(rule, s.name).toBeDefined()
      expect(s.kind, s.name).toBe(rule![1])
      const layer = /layers\.(\d+)\./.exec(s.name)
      expect(s.layer, s.name).toBe(layer ? Number(layer[1]) : undefined)
      const expert = /experts\.(\d+)\./.exec(s.name)
      expect(s.expert, s.name).toBe(expert ? Number(expert[1]) : undefined)
    }
    expect(new Set(specs.map((s) => s.kind)).size).toBe(rules.length)
  })

  it('shapes of the parts that vary by config', () => {
    const byName = new Map(specsOf().map((s) => [s.name, s]))
    expect(byName.get('model.layers.1.mlp.noise_gate.weight')?.shape).toEqual([3, 8])
    expect(byName.get('model.layers.1.mlp.shared_expert_gate.weight')?.shape).toEqual([1, 8])
    expect(byName.get('model.layers.0.mlp.gate_proj.weight')?.shape).toEqual([12, 8])
    expect(byName.get('model.layers.0.mlp.down_proj.weight')?.shape).toEqual([8, 12])
    expect(byName.get('model.layers.0.self_attn.q_proj.bias')?.shape).toEqual([8])
    expect(byName.get('model.layers.0.self_attn.v_proj.bias')?.shape).toEqual([4])
    const o = validateMoeConfig({ ...c, family: 'olmoe', qkNorm: 'projection', oBias: true, sharedExpertIntermediateSize: 0 })
    const oSpecs = new Map(paramSpecs(o).map((s) => [s.name, s]))
    expect(oSpecs.get('model.layers.0.self_attn.o_proj.bias')).toEqual({
      name: 'model.layers.0.self_attn.o_proj.bias',
      shape: [8],
      kind: 'attn_bias',
      layer: 0,
    })
    expect(oSpecs.get('model.layers.0.self_attn.k_norm.weight')?.shape).toEqual([4])
  })

  it('counts: experts, and active = the rest plus top-k experts per sparse layer', () => {
    const { total, experts, active } = countParams(c)
    expect(total).toBe(specsOf().reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0))
    // one sparse layer (layer 1): 3 experts of 3 · 8 · 6, 2 of them active per token
    expect(experts).toBe(3 * 3 * 8 * 6)
    expect(active).toBe(total - experts + 2 * 3 * 8 * 6)
  })
})

describe("a config.json's problems in its own keys", () => {
  it('names num_experts_per_tok and num_local_experts (num_experts for qwen), not topK and numExperts', () => {
    const base = {
      model_type: 'mixtral',
      vocab_size: 32,
      hidden_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      intermediate_size: 24,
    }
    expect(() => fromHfConfig({ ...base, num_local_experts: 4, num_experts_per_tok: 8 }, 'm/config.json')).toThrow(
      'm/config.json: num_experts_per_tok: num_experts_per_tok 8 exceeds num_local_experts 4',
    )
    expect(() =>
      fromHfConfig({
        ...base,
        model_type: 'qwen3_moe',
        num_experts: 4,
        num_experts_per_tok: 8,
        moe_intermediate_size: 8,
      }),
    ).toThrow('config.json: num_experts_per_tok: num_experts_per_tok 8 exceeds num_experts 4')
    expect(() => fromHfConfig({ ...base, num_local_experts: 4, num_experts_per_tok: 2, hidden_size: 16.5 })).toThrow(
      'config.json: hidden_size: must be a whole number',
    )
  })
})

describe('plainIssue', () => {
  it("puts zod's messages in plain words, and passes a schema's own through", () => {
    const cases: [string, string][] = [
      ['Too small: expected number to be >0', 'must be more than 0'],
      ['Too small: expected number to be >=1', 'must be at least 1'],
      ['Too big: expected number to be <=1', 'must be at most 1'],
      ['Too big: expected number to be <1', 'must be less than 1'],
      ['Too small: expected array to have >=1 items', 'must have at least 1 items'],
      ['Too small: expected string to have >=2 characters', 'must have at least 2 characters'],
      ['Invalid input: expected int, received number', 'must be a whole number'],
      ['Invalid input: expected number, received string', 'must be a number, not a string'],
      ['Invalid input: expected object, received array', 'must be an object, not an array'],
      ['Invalid option: expected one of "x"|"y"', 'must be one of "x", "y"'],
      ['Invalid input: expected string, received undefined', 'is required (a string)'],
      ['Too big: expected int to be <=9007199254740991', 'is too large a number'],
      ['Too big: expected int to be <=64', 'must be at most 64'],
      ['Invalid input: expected number, received Infinity', 'must be a finite number, not Infinity'],
      ['Invalid input: expected number, received NaN', 'is empty or not a number: type a number'],
      ['qwen3_moe attention_bias puts a bias on q, k, v and o together', 'qwen3_moe attention_bias puts a bias on q, k, v and o together'],
    ]
    for (const [zod, plain] of cases) expect(plainIssue(zod), zod).toBe(plain)
    // as the commands show it
    expect(() => validateRunConfig({ optimizer: { lr: 0 } })).toThrow('invalid run config: optimizer.lr: must be more than 0')
    expect(() => validateRunConfig({ maxSteps: 1e20 })).toThrow('invalid run config: maxSteps: is too large a number')
    expect(() => validateRunConfig({ optimizer: { lr: Infinity } })).toThrow('optimizer.lr: must be a finite number, not Infinity')
    // the new-run form's emptied number field
    expect(() => validateRunConfig({ optimizer: { lr: NaN } })).toThrow('optimizer.lr: is empty or not a number: type a number')
  })
})

describe('published configs', () => {
  // config.json of released checkpoints, as on the Hugging Face hub: what a user brings. Their
  // parameter counts are the ones the model cards state (46.7B/12.9B, 30.5B/3.3B, 6.9B/1.3B, 14.3B/2.7B).
  const published: [string, number, number][] = [
    ['mixtral-8x7b', 46_702_792_704, 12_879_925_248],
    ['qwen3-30b-a3b', 30_532_122_624, 3_353_032_704],
    ['olmoe-1b-7b', 6_919_161_856, 1_282_017_280],
    ['qwen1.5-moe-a2.7b', 14_315_784_192, 2_689_173_504],
  ]
  it.each(published)('%s reads with its published total and active parameters', (name, total, active) => {
    const file = join(__dirname, '../fixtures/published-configs', name, 'config.json')
    const c = fromHfConfig(JSON.parse(readFileSync(file, 'utf8')), file)
    expect(countParams(c)).toMatchObject({ total, active })
    expect(c.torchDtype).toBe('bfloat16')
  })
})
