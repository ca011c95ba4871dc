/**
 * The engine against an independent float64 reference of the HF forward pass
 * (test/reference/hfReference.ts), on random checkpoints whose config.json exercise what the golden
 * fixtures do not: tied embeddings, qwen2_moe dense layers (decoder_sparse_step, mlp_only_layers),
 * norm_topk_prob, grouped-query attention, head_dim ≠ hidden/heads, olmoe clip_qkv, qwen2_moe with
 * and without a shared expert and q/k/v biases, top_k 1 and top_k = num_experts, rope_theta,
 * rms_norm_eps, qwen3_moe per-head q/k norms with head_dim ≠ hidden/heads, GQA/MQA, dense layers,
 * tied embeddings and norm_topk_prob both ways, sequences up to 24 tokens, batch 2.
 *
 * Tolerances (engine float32 vs reference float64, same float32 weights):
 * - logits: max |engine − ref| ≤ 2e-4 · max(1, max |ref logit|);
 * - router logits: max |engine − ref| ≤ 2e-4 · max(1, max |ref router logit|), per sparse layer;
 * - routing weights of the chosen experts: max |engine − ref| ≤ 1e-4;
 * - top-k choices (set and order): exact, except rows whose reference probability gap between
 *   neighbouring decisive ranks is < 1e-4 (a float32 near-tie). On those rows the reference is made
 *   to follow the engine's choice (after checking that choice is itself within the near-tie), so
 *   later layers and the logits stay comparable; the number of such rows is logged per case.
 */
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initBackend, type BackendName } from '../../../src/main/engine/backend'
import { useWasmMatMul, wasmMatMulPaths, type MatMulPath } from './helpers'
import { MoeModel } from '../../../src/main/engine/model'
import { fromHfConfig, isSparseLayer, paramSpecs, type MoeConfig } from '../../../src/shared/modelConfig'
import { hfReferenceForward, refArch, refIsSparse, type HfConfigJson } from '../../reference/hfReference'

const GAP = 1e-4
const LOGIT_RTOL = 2e-4
const WEIGHT_ATOL = 1e-4

// ---------------------------------------------------------------------------------------------
// Seeded randomness

function mulberry32(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function normalSampler(seed: number): () => number {
  const u = mulberry32(seed)
  return () => {
    const a = Math.max(u(), 1e-12)
    return Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * u())
  }
}

/** Random float32 weights for every tensor paramSpecs lists (hub names). */
function randomWeights(c: MoeConfig, seed: number): Map<string, Float32Array> {
  const n = normalSampler(seed)
  const out = new Map<string, Float32Array>()
  for (const s of paramSpecs(c)) {
    const size = s.shape.reduce((a, b) => a * b, 1)
    const a = new Float32Array(size)
    const scale =
      s.kind === 'embed' ? 0.3 : s.kind === 'router' ? 0.3 : s.kind === 'attn_bias' ? 0.1 : s.kind === 'shared_expert_gate' ? 0.3 : 0.2
    for (let i = 0; i < size; i++) a[i] = s.kind === 'norm' ? 1 + 0.1 * n() : scale * n()
    out.set(s.name, a)
  }
  return out
}

function randomIds(vocab: number, B: number, T: number, seed: number): number[][] {
  const u = mulberry32(seed)
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(u() * vocab)))
}

// ---------------------------------------------------------------------------------------------
// The configs (hand-written HF config.json objects)

interface Case {
  name: string
  hf: HfConfigJson
  B: number
  T: number
  seed: number
  /** What the case must actually exercise (checked on the reference side). */
  expect?: { clipped?: boolean; shared?: boolean; dense?: boolean }
}

const CASES: Case[] = [
  {
    name: 'mixtral: tied embeddings, GQA 4/2, head_dim 16 ≠ 48/4, rope_theta 1e6',
    hf: {
      model_type: 'mixtral',
      vocab_size: 67,
      hidden_size: 48,
      intermediate_size: 40,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      num_local_experts: 4,
      num_experts_per_tok: 2,
      rope_theta: 1e6,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 64,
      tie_word_embeddings: true,
      sliding_window: null,
    },
    B: 2,
    T: 24,
    seed: 11,
  },
  {
    name: 'mixtral: top_k 1 of 5, MHA, rope_theta 10000, rms_norm_eps 1e-6',
    hf: {
      model_type: 'mixtral',
      vocab_size: 53,
      hidden_size: 32,
      intermediate_size: 24,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      num_local_experts: 5,
      num_experts_per_tok: 1,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 20,
    seed: 12,
  },
  {
    name: 'mixtral: top_k = num_experts = 3, MQA 8/1, head_dim 8 ≠ 32/8, 4 layers',
    hf: {
      model_type: 'mixtral',
      vocab_size: 41,
      hidden_size: 32,
      intermediate_size: 20,
      num_hidden_layers: 4,
      num_attention_heads: 8,
      num_key_value_heads: 1,
      head_dim: 8,
      num_local_experts: 3,
      num_experts_per_tok: 3,
      rope_theta: 500,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 32,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 17,
    seed: 13,
  },
  {
    name: 'qwen2_moe: decoder_sparse_step 2 + mlp_only_layers [0, 3], norm_topk_prob, GQA 4/2, no shared expert, no qkv bias',
    hf: {
      model_type: 'qwen2_moe',
      vocab_size: 61,
      hidden_size: 32,
      intermediate_size: 56,
      moe_intermediate_size: 16,
      shared_expert_intermediate_size: 0,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 6,
      num_experts_per_tok: 2,
      norm_topk_prob: true,
      decoder_sparse_step: 2,
      mlp_only_layers: [0, 3],
      qkv_bias: false,
      rope_theta: 1e6,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
      use_sliding_window: false,
    },
    B: 2,
    T: 24,
    seed: 21,
    expect: { dense: true },
  },
  {
    name: 'qwen2_moe: mlp_only_layers [0, 2] (step 1), norm_topk_prob, GQA 4/1, qkv bias, tied embeddings, no shared expert',
    hf: {
      model_type: 'qwen2_moe',
      vocab_size: 47,
      hidden_size: 32,
      intermediate_size: 40,
      moe_intermediate_size: 12,
      shared_expert_intermediate_size: 0,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      num_experts: 5,
      num_experts_per_tok: 3,
      norm_topk_prob: true,
      decoder_sparse_step: 1,
      mlp_only_layers: [0, 2],
      qkv_bias: true,
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: true,
      use_sliding_window: false,
    },
    B: 2,
    T: 19,
    seed: 22,
    expect: { dense: true },
  },
  {
    name: 'qwen2_moe: shared expert + qkv bias, norm_topk_prob false, MHA, 3 layers',
    hf: {
      model_type: 'qwen2_moe',
      vocab_size: 59,
      hidden_size: 32,
      intermediate_size: 48,
      moe_intermediate_size: 16,
      shared_expert_intermediate_size: 40,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 4,
      num_experts: 6,
      num_experts_per_tok: 2,
      norm_topk_prob: false,
      decoder_sparse_step: 1,
      mlp_only_layers: [],
      qkv_bias: true,
      rope_theta: 1e6,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
      use_sliding_window: false,
    },
    B: 2,
    T: 24,
    seed: 23,
    expect: { shared: true },
  },
  {
    name: 'qwen2_moe: top_k 1 with shared expert, GQA 4/2, decoder_sparse_step 2',
    hf: {
      model_type: 'qwen2_moe',
      vocab_size: 43,
      hidden_size: 24,
      intermediate_size: 36,
      moe_intermediate_size: 12,
      shared_expert_intermediate_size: 20,
      num_hidden_layers: 4,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 4,
      num_experts_per_tok: 1,
      norm_topk_prob: false,
      decoder_sparse_step: 2,
      mlp_only_layers: [],
      qkv_bias: true,
      rope_theta: 5000,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 32,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 16,
    seed: 24,
    expect: { shared: true, dense: true },
  },
  {
    name: 'olmoe: GQA 4/2 (k_norm kv·head_dim wide), norm_topk_prob, clip_qkv 0.6',
    hf: {
      model_type: 'olmoe',
      vocab_size: 71,
      hidden_size: 32,
      intermediate_size: 24,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 6,
      num_experts_per_tok: 2,
      norm_topk_prob: true,
      clip_qkv: 0.6,
      attention_bias: false,
      rope_theta: 10000,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 24,
    seed: 31,
    expect: { clipped: true },
  },
  {
    name: 'olmoe: top_k = num_experts = 4, norm_topk_prob false, no clip, MHA, 4 layers',
    hf: {
      model_type: 'olmoe',
      vocab_size: 50,
      hidden_size: 32,
      intermediate_size: 20,
      num_hidden_layers: 4,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      num_experts: 4,
      num_experts_per_tok: 4,
      norm_topk_prob: false,
      clip_qkv: null,
      rope_theta: 200,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 21,
    seed: 32,
  },
  {
    name: 'olmoe: top_k 1, norm_topk_prob, tied embeddings, GQA 8/2, clip_qkv 1.5',
    hf: {
      model_type: 'olmoe',
      vocab_size: 37,
      hidden_size: 32,
      intermediate_size: 16,
      num_hidden_layers: 3,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      num_experts: 5,
      num_experts_per_tok: 1,
      norm_topk_prob: true,
      clip_qkv: 1.5,
      rope_theta: 1e6,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 64,
      tie_word_embeddings: true,
    },
    B: 2,
    T: 24,
    seed: 33,
    expect: { clipped: true },
  },
  {
    name: 'mixtral: sliding_window 8 < T 24',
    hf: {
      model_type: 'mixtral',
      vocab_size: 53,
      hidden_size: 32,
      intermediate_size: 24,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_local_experts: 4,
      num_experts_per_tok: 2,
      rope_theta: 1e6,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
      sliding_window: 8,
    },
    B: 2,
    T: 24,
    seed: 41,
  },
  {
    name: 'olmoe: attention_bias (q/k/v and o_proj biases), GQA 4/2, norm_topk_prob',
    hf: {
      model_type: 'olmoe',
      vocab_size: 45,
      hidden_size: 32,
      intermediate_size: 16,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      num_experts: 4,
      num_experts_per_tok: 2,
      norm_topk_prob: true,
      attention_bias: true,
      clip_qkv: null,
      rope_theta: 10000,
      rms_norm_eps: 1e-5,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 12,
    seed: 42,
  },
  // Qwen3-MoE: per-head q/k norm over head_dim; the edge cases its config allows.
  {
    name: 'qwen3_moe: head_dim 24 ≠ 48/4 (as Qwen3-30B-A3B: 128 ≠ 2048/32), GQA 4/2, norm_topk_prob true',
    hf: {
      model_type: 'qwen3_moe',
      vocab_size: 71,
      hidden_size: 48,
      intermediate_size: 40,
      moe_intermediate_size: 20,
      num_hidden_layers: 3,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 24,
      num_experts: 6,
      num_experts_per_tok: 2,
      norm_topk_prob: true,
      rope_theta: 1e6,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: false,
    },
    B: 2,
    T: 20,
    seed: 51,
  },
  {
    name: 'qwen3_moe: norm_topk_prob false, MQA 6/1, tied embeddings, dense layers (mlp_only_layers [0], decoder_sparse_step 2)',
    hf: {
      model_type: 'qwen3_moe',
      vocab_size: 59,
      hidden_size: 36,
      intermediate_size: 28,
      moe_intermediate_size: 16,
      num_hidden_layers: 4,
      num_attention_heads: 6,
      num_key_value_heads: 1,
      num_experts: 5,
      num_experts_per_tok: 3,
      norm_topk_prob: false,
      decoder_sparse_step: 2,
      mlp_only_layers: [0],
      rope_theta: 10000,
      rms_norm_eps: 1e-6,
      max_position_embeddings: 64,
      tie_word_embeddings: true,
    },
    B: 2,
    T: 16,
    seed: 52,
    expect: { dense: true },
  },
  {
    name: 'qwen3_moe: attention_bias (q/k/v/o), head_dim 8 ≠ 32/2, top_k = num_experts = 4, HF defaults for omitted keys',
    hf: {
      model_type: 'qwen3_moe',
      vocab_size: 47,
      hidden_size: 32,
      intermediate_size: 24,
      moe_intermediate_size: 12,
      num_hidden_layers: 2,
      num_attention_heads: 2,
      num_key_value_heads: 2,
      head_dim: 8,
      num_experts: 4,
      num_experts_per_tok: 4,
      attention_bias: true,
      max_position_embeddings: 64,
    },
    B: 1,
    T: 14,
    seed: 53,
  },
]

// ---------------------------------------------------------------------------------------------

interface EngineOut {
  logits: Float32Array
  routing: { layer: number; routerLogits: Float32Array; topk: Int32Array; weights: Float32Array; k: number; E: number }[]
}

function runEngine(model: MoeModel, ids: number[][]): EngineOut {
  let out: EngineOut | undefined
  tf.tidy(() => {
    const r = model.forward(ids)
    out = {
      logits: r.logits.dataSync().slice() as Float32Array,
      routing: r.routing.map((l) => ({
        layer: l.layer,
        routerLogits: l.routerLogits.dataSync().slice() as Float32Array,
        topk: l.decision.topk.slice(),
        weights: l.weights.slice(),
        k: l.decision.k,
        E: l.decision.E,
      })),
    }
  })
  return out!
}

function maxAbs(xs: Iterable<number>): number {
  let m = 0
  for (const v of xs) m = Math.max(m, Math.abs(v))
  return m
}

/** cpu, and wasm on each matmul path it has (native and XNNPACK). */
const BACKENDS: [BackendName, MatMulPath?][] = [['cpu'], ...(await wasmMatMulPaths()).map((p): [BackendName, MatMulPath] => ['wasm', p])]

for (const [backend, matmul] of BACKENDS) {
  describe(`engine vs independent float64 HF reference on ${backend}${matmul ? `, ${matmul} matmul` : ''}`, () => {
    let restore = (): void => {}
    beforeAll(async () => {
      await initBackend(backend)
      if (matmul) restore = await useWasmMatMul(matmul)
    })
    afterAll(() => restore())

    it('the reference and fromHfConfig read every case config alike', () => {
      for (const cs of CASES) {
        const c = fromHfConfig(cs.hf)
        const a = refArch(cs.hf)
        expect(
          {
            V: c.vocabSize,
            H: c.hiddenSize,
            L: c.numLayers,
            nh: c.numHeads,
            nkv: c.numKvHeads,
            hd: c.headDim,
            theta: c.ropeTheta,
            eps: c.rmsNormEps,
            tied: c.tieWordEmbeddings,
            E: c.numExperts,
            k: c.topK,
            norm: c.normTopkProb,
            I: c.expertIntermediateSize,
            shared: c.sharedExpertIntermediateSize,
            qkvBias: c.qkvBias,
            qkNorm: c.qkNorm,
            clip: c.clipQkv,
            sparse: Array.from({ length: c.numLayers }, (_, i) => isSparseLayer(c, i)),
          },
          cs.name,
        ).toEqual({
          V: a.vocab,
          H: a.hidden,
          L: a.layers,
          nh: a.heads,
          nkv: a.kvHeads,
          hd: a.headDim,
          theta: a.ropeTheta,
          eps: a.eps,
          tied: a.tied,
          E: a.experts,
          k: a.topK,
          norm: a.normTopk,
          I: a.expertInter,
          shared: a.sharedInter,
          qkvBias: a.qkvBias,
          qkNorm: a.qkNorm ? 'projection' : a.headNorm ? 'head' : 'none',
          clip: a.clipQkv,
          sparse: Array.from({ length: a.layers }, (_, i) => refIsSparse(a, i)),
        })
        if (c.family === 'qwen2_moe' || c.family === 'qwen3_moe') expect(c.intermediateSize).toBe(a.denseInter)
      }
    })

    for (const cs of CASES) {
      it(cs.name, () => {
        const config = fromHfConfig(cs.hf)
        const weights = randomWeights(config, cs.seed)
        const refWeights = new Map([...weights].map(([k, v]) => [k, v.slice()])) // the model takes ownership of its arrays
        const ids = randomIds(config.vocabSize, cs.B, cs.T, cs.seed + 1000)
        const model = new MoeModel(config, weights)
        let eng: EngineOut
        try {
          eng = runEngine(model, ids)
        } finally {
          model.dispose()
        }
        const byLayer = new Map(eng.routing.map((r) => [r.layer, r]))

        // Reference, following the engine only on float32 near-ties (checked to be near-ties).
        let nearTies = 0
        const ref = hfReferenceForward(cs.hf, refWeights, ids, {
          overrideTopk: (layer, row, own, probs, gap) => {
            if (gap >= GAP) return undefined
            const r = byLayer.get(layer)
            if (!r) return undefined
            const theirs = Array.from(r.topk.subarray(row * r.k, (row + 1) * r.k))
            if (theirs.join() === own.join()) return undefined
            nearTies++
            // The engine's choice must be as good as the reference's up to the near-tie.
            const sorted = [...probs].sort((x, y) => y - x)
            theirs.forEach((e, j) =>
              expect(
                Math.abs(probs[e] - sorted[j]),
                `${cs.name} layer ${layer} row ${row}: engine picked ${theirs}, reference ${own}`,
              ).toBeLessThan(GAP),
            )
            return theirs
          },
        })

        // What the case claims to exercise really happens.
        if (cs.expect?.clipped) expect(ref.stats.clippedFraction, 'clip_qkv must clip some values').toBeGreaterThan(0.01)
        if (cs.expect?.shared) expect(ref.stats.sharedMaxAbs, 'the shared expert must contribute').toBeGreaterThan(1e-2)
        if (cs.expect?.dense) expect(ref.stats.denseMaxAbs, 'dense layers must contribute').toBeGreaterThan(1e-2)

        // Sparse layers.
        expect(
          eng.routing.map((r) => r.layer),
          'sparse layers',
        ).toEqual(ref.routing.map((r) => r.layer))

        const N = cs.B * cs.T
        let skipped = 0
        const report: string[] = []
        for (const rl of ref.routing) {
          const er = byLayer.get(rl.layer)!
          const E = rl.routerLogits[0].length
          expect(er.E).toBe(E)
          expect(er.k).toBe(config.topK)
          // Router logits.
          const scale = Math.max(1, maxAbs(rl.routerLogits.flat()))
          let worst = 0
          for (let n = 0; n < N; n++)
            for (let e = 0; e < E; e++) worst = Math.max(worst, Math.abs(er.routerLogits[n * E + e] - rl.routerLogits[n][e]))
          expect(worst, `layer ${rl.layer} router logits max abs diff (scale ${scale.toFixed(3)})`).toBeLessThanOrEqual(LOGIT_RTOL * scale)
          // Top-k choices and weights.
          let mism = 0
          let wWorst = 0
          for (let n = 0; n < N; n++) {
            if (rl.gap[n] < GAP) {
              skipped++
              continue
            }
            const theirs = Array.from(er.topk.subarray(n * er.k, (n + 1) * er.k))
            if (theirs.join() !== rl.topk[n].join()) {
              mism++
              if (mism <= 3)
                report.push(`layer ${rl.layer} row ${n}: engine ${theirs} ref ${rl.topk[n]} (gap ${rl.gap[n].toExponential(2)})`)
              continue
            }
            for (let j = 0; j < er.k; j++) wWorst = Math.max(wWorst, Math.abs(er.weights[n * er.k + j] - rl.weights[n][j]))
          }
          expect(mism, `layer ${rl.layer} top-k mismatches: ${report.join('; ')}`).toBe(0)
          expect(wWorst, `layer ${rl.layer} routing weights max abs diff`).toBeLessThanOrEqual(WEIGHT_ATOL)
        }

        // Logits.
        const V = config.vocabSize
        expect(eng.logits.length).toBe(cs.B * cs.T * V)
        const refFlat = ref.logits.flat(2)
        const scale = Math.max(1, maxAbs(refFlat))
        let worst = 0
        let at = 0
        for (let i = 0; i < refFlat.length; i++) {
          const d = Math.abs(eng.logits[i] - refFlat[i])
          if (!(d <= worst)) {
            worst = Number.isNaN(d) ? Infinity : d
            at = i
          }
        }
        console.log(
          `[${backend}] ${cs.name}: logits max|diff| ${worst.toExponential(2)} (scale ${scale.toFixed(2)}, tol ${(LOGIT_RTOL * scale).toExponential(2)}); ` +
            `near-tie rows skipped ${skipped}/${N * ref.routing.length}, engine-followed ${nearTies}; clipped ${(100 * ref.stats.clippedFraction).toFixed(1)}%`,
        )
        const b = Math.floor(at / (cs.T * V))
        const t = Math.floor(at / V) % cs.T
        expect(worst, `logits max abs diff at batch ${b} position ${t} token ${at % V} (scale ${scale.toFixed(3)})`).toBeLessThanOrEqual(
          LOGIT_RTOL * scale,
        )
      })
    }
  })
}
