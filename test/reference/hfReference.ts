/**
 * An independent, deliberately naive float64 reference of the Hugging Face transformers forward
 * pass of MixtralForCausalLM, Qwen2MoeForCausalLM, OlmoeForCausalLM and Qwen3MoeForCausalLM (eval mode, no cache,
 * no padding), for testing the TF.js engine against checkpoints unlike the golden fixtures.
 *
 * Written from HF's modeling_mixtral.py / modeling_qwen2_moe.py / modeling_olmoe.py / modeling_qwen3_moe.py, not from the
 * engine: it reads the raw HF config.json itself (with HF's own per-class defaults) rather than the
 * engine's MoeConfig, and computes everything with plain loops over numbers. No tfjs.
 *
 * Per decoder layer (all three families):
 *   h = x + o_proj(attn(input_layernorm(x)))
 *   x = h + mlp(post_attention_layernorm(h))
 * RMSNorm: w * x / sqrt(mean(x^2) + eps).
 * Attention: q/k/v projections (+bias: qwen2_moe qkv_bias, olmoe attention_bias); olmoe q_norm and
 * k_norm RMSNorms over the whole projected q / k vectors, then olmoe clip_qkv clamps of q, k and v;
 * split into heads; qwen3_moe q_norm and k_norm RMSNorms over head_dim on each head; RoPE (rotate_half, inv_freq_i = theta^(-2i/d), angles duplicated over both
 * halves); causal softmax(q·k / sqrt(head_dim)) (mixtral sliding_window honoured); query head h reads
 * kv head floor(h / (heads / kv_heads)) (repeat_kv); o_proj (+bias for olmoe attention_bias).
 * Sparse MLP: router logits = W_gate·x, p = softmax(logits), top-k of p (descending, lowest index
 * first on ties), weights = the chosen p, divided by their sum for mixtral or norm_topk_prob;
 * out = Σ weight · down(silu(gate·x) ⊙ up·x); qwen2_moe adds sigmoid(w_sg·x) · shared_expert(x).
 * Dense MLP (qwen2_moe layers that are not sparse): the same SwiGLU with intermediate_size.
 * Final RMSNorm, then lm_head (the embedding matrix when tie_word_embeddings).
 */

export type HfConfigJson = Record<string, unknown>
export type Weights = Map<string, ArrayLike<number>>

/** The architecture as HF's configuration classes read a config.json (their defaults included). */
export interface RefArch {
  family: 'mixtral' | 'qwen2_moe' | 'olmoe' | 'qwen3_moe'
  vocab: number
  hidden: number
  layers: number
  heads: number
  kvHeads: number
  headDim: number
  ropeTheta: number
  eps: number
  tied: boolean
  experts: number
  topK: number
  /** Renormalise the chosen probabilities (always for mixtral). */
  normTopk: boolean
  /** Width of each routed expert. */
  expertInter: number
  /** Width of the dense MLP of qwen2_moe non-sparse layers. */
  denseInter: number
  /** qwen2_moe shared expert width (0: its output is zero-width, i.e. nothing is added). */
  sharedInter: number
  sparseStep: number
  mlpOnly: number[]
  /** Bias on q/k/v projections. */
  qkvBias: boolean
  /** Bias on o_proj (olmoe attention_bias only). */
  oBias: boolean
  qkNorm: boolean
  /** qwen3_moe: RMSNorm over head_dim on each query and key head. */
  headNorm: boolean
  clipQkv: number | null
  /** Mixtral sliding window (keys with q − k ≥ window are masked); null = full causal. */
  slidingWindow: number | null
}

function need(hf: HfConfigJson, key: string): number {
  const v = hf[key]
  if (typeof v !== 'number') throw new Error(`reference: config.json needs a numeric "${key}"`)
  return v
}
function get<T>(hf: HfConfigJson, key: string, dflt: T): T {
  const v = hf[key]
  return v === undefined || v === null ? dflt : (v as T)
}

/** Reads config.json the way HF's MixtralConfig / Qwen2MoeConfig / OlmoeConfig do. */
export function refArch(hf: HfConfigJson): RefArch {
  const family = hf.model_type
  if (family !== 'mixtral' && family !== 'qwen2_moe' && family !== 'olmoe' && family !== 'qwen3_moe')
    throw new Error(`reference: model_type ${String(family)}`)
  for (const key of ['rope_scaling', 'rope_parameters']) {
    const rs = hf[key] as HfConfigJson | undefined | null
    const t = rs ? (rs.rope_type ?? rs.type) : undefined
    if (t !== undefined && t !== 'default') throw new Error('reference: only default RoPE is modelled')
  }
  if ((family === 'qwen2_moe' || family === 'qwen3_moe') && hf.use_sliding_window === true)
    throw new Error('reference: qwen use_sliding_window is not modelled')
  const qwen = family === 'qwen2_moe' || family === 'qwen3_moe'
  const hidden = need(hf, 'hidden_size')
  const heads = need(hf, 'num_attention_heads')
  const hfInter = need(hf, 'intermediate_size')
  const ropeParams = hf.rope_parameters as HfConfigJson | undefined
  // HF class defaults (used only when config.json omits a key).
  const defaults = {
    mixtral: { kv: 8, theta: 1e6, eps: 1e-5, topK: 2 },
    qwen2_moe: { kv: heads, theta: 10000, eps: 1e-6, topK: 4 },
    olmoe: { kv: heads, theta: 10000, eps: 1e-5, topK: 8 },
    qwen3_moe: { kv: 4, theta: 10000, eps: 1e-6, topK: 8 },
  }[family]
  const arch: RefArch = {
    family,
    vocab: need(hf, 'vocab_size'),
    hidden,
    layers: need(hf, 'num_hidden_layers'),
    heads,
    kvHeads: get(hf, 'num_key_value_heads', defaults.kv),
    // mixtral: head_dim or hidden // heads; qwen2_moe and olmoe: hidden // heads in HF's modelling code.
    // (qwen3_moe: head_dim, else hidden // heads, as getattr(config, 'head_dim', ...) reads it.)
    headDim: family === 'mixtral' || family === 'qwen3_moe' ? get(hf, 'head_dim', Math.floor(hidden / heads)) : Math.floor(hidden / heads),
    ropeTheta: (ropeParams?.rope_theta as number | undefined) ?? get(hf, 'rope_theta', defaults.theta),
    eps: get(hf, 'rms_norm_eps', defaults.eps),
    tied: get(hf, 'tie_word_embeddings', false),
    experts:
      family === 'mixtral'
        ? get(hf, 'num_local_experts', 8)
        : get(hf, 'num_experts', family === 'qwen2_moe' ? 60 : family === 'qwen3_moe' ? 128 : 64),
    topK: get(hf, 'num_experts_per_tok', defaults.topK),
    normTopk: family === 'mixtral' ? true : get(hf, 'norm_topk_prob', false),
    expertInter: qwen ? get(hf, 'moe_intermediate_size', family === 'qwen2_moe' ? 1408 : 768) : hfInter,
    denseInter: hfInter,
    sharedInter: family === 'qwen2_moe' ? get(hf, 'shared_expert_intermediate_size', 5632) : 0,
    sparseStep: qwen ? get(hf, 'decoder_sparse_step', 1) : 1,
    mlpOnly: qwen ? get<number[]>(hf, 'mlp_only_layers', []) : [],
    qkvBias:
      family === 'qwen2_moe'
        ? get(hf, 'qkv_bias', true)
        : family === 'olmoe' || family === 'qwen3_moe'
          ? get(hf, 'attention_bias', false)
          : false,
    oBias: family === 'olmoe' || family === 'qwen3_moe' ? get(hf, 'attention_bias', false) : false,
    qkNorm: family === 'olmoe',
    headNorm: family === 'qwen3_moe',
    clipQkv: family === 'olmoe' ? get<number | null>(hf, 'clip_qkv', null) : null,
    slidingWindow: family === 'mixtral' ? get<number | null>(hf, 'sliding_window', null) : null,
  }
  if (qwen && (arch.experts <= 0 || arch.sparseStep <= 0)) throw new Error('reference: qwen MoE without experts is not modelled')
  return arch
}

/** HF qwen2_moe rule (every layer is sparse for mixtral and olmoe). */
export function refIsSparse(a: RefArch, i: number): boolean {
  return !a.mlpOnly.includes(i) && (i + 1) % a.sparseStep === 0
}

export interface RefLayerRouting {
  layer: number
  /** Per token row n = b·T + t: the E router logits. */
  routerLogits: number[][]
  /** Per row: softmax of the router logits. */
  probs: number[][]
  /** Per row: the k chosen experts, descending probability (the override, where one was applied). */
  topk: number[][]
  /** Per row: the weights multiplying the chosen experts, in topk order. */
  weights: number[][]
  /**
   * Per row: the smallest probability difference between neighbours in the sorted order that decide
   * the choice (ranks 0..k when k < E, all ranks when k = E). Below ~1e-4 a float32 engine may
   * legitimately choose or order differently.
   */
  gap: number[]
  /** Per row: whether `topk` came from the override instead of the reference's own choice. */
  overridden: boolean[]
}

export interface RefStats {
  /** Fraction of q/k/v values the clip_qkv clamp changed (0 without clip_qkv). */
  clippedFraction: number
  /** Largest |shared-expert contribution| seen (0 without a shared expert). */
  sharedMaxAbs: number
  /** Largest |dense-MLP output| seen (0 without dense layers). */
  denseMaxAbs: number
}

export interface RefOutput {
  /** [B][T] rows of V logits. */
  logits: number[][][]
  /** One entry per sparse layer, in layer order. */
  routing: RefLayerRouting[]
  stats: RefStats
}

export interface RefOptions {
  /**
   * Lets a caller replace the reference's top-k choice of a token (return undefined to keep it),
   * e.g. to follow a float32 engine's choice on a near-tie so later layers stay comparable.
   */
  overrideTopk?: (layer: number, row: number, own: number[], probs: number[], gap: number) => number[] | undefined
}

// ---------------------------------------------------------------------------------------------
// Naive helpers

function w(weights: Weights, name: string): ArrayLike<number> {
  const t = weights.get(name)
  if (!t) throw new Error(`reference: missing tensor ${name}`)
  return t
}

/** y = W x (+ b), W stored row-major (out, in) as nn.Linear. */
function linear(W: ArrayLike<number>, x: number[], out: number, b?: ArrayLike<number>): number[] {
  const n = x.length
  if (W.length !== out * n) throw new Error(`reference: weight of ${W.length} values is not ${out}×${n}`)
  const y = new Array<number>(out)
  for (let o = 0; o < out; o++) {
    let s = b ? b[o] : 0
    const base = o * n
    for (let i = 0; i < n; i++) s += W[base + i] * x[i]
    y[o] = s
  }
  return y
}

function rmsNorm(x: number[], weight: ArrayLike<number>, eps: number): number[] {
  let ss = 0
  for (const v of x) ss += v * v
  const r = 1 / Math.sqrt(ss / x.length + eps)
  return x.map((v, i) => weight[i] * (v * r))
}

function silu(z: number): number {
  return z / (1 + Math.exp(-z))
}

function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z))
}

function softmax(x: number[]): number[] {
  let m = -Infinity
  for (const v of x) if (v > m) m = v
  const e = x.map((v) => Math.exp(v - m))
  const s = e.reduce((a, b) => a + b, 0)
  return e.map((v) => v / s)
}

/** down(silu(gate x) ⊙ up x). */
function swiglu(x: number[], gate: ArrayLike<number>, up: ArrayLike<number>, down: ArrayLike<number>, inter: number): number[] {
  const g = linear(gate, x, inter)
  const u = linear(up, x, inter)
  const a = g.map((v, i) => silu(v) * u[i])
  return linear(down, a, x.length)
}

/** Rotary embedding of one head vector at position pos (HF rotate_half layout). */
function rope(v: number[], pos: number, theta: number): number[] {
  const d = v.length
  const half = d / 2
  const out = new Array<number>(d)
  for (let i = 0; i < half; i++) {
    const invFreq = 1 / Math.pow(theta, (2 * i) / d)
    const ang = pos * invFreq
    const c = Math.cos(ang)
    const s = Math.sin(ang)
    // x*cos + rotate_half(x)*sin, rotate_half(x) = [-x2, x1]
    out[i] = v[i] * c - v[i + half] * s
    out[i + half] = v[i + half] * c + v[i] * s
  }
  return out
}

/** Sorted expert order by probability, descending, lowest index first on exact ties. */
function rankExperts(p: number[]): number[] {
  return p.map((_, i) => i).sort((a, b) => (p[b] !== p[a] ? p[b] - p[a] : a - b))
}

// ---------------------------------------------------------------------------------------------

/** The HF forward pass over token ids (B rows of equal length T, positions 0..T-1, no padding). */
export function hfReferenceForward(hf: HfConfigJson, weights: Weights, inputIds: number[][], opts: RefOptions = {}): RefOutput {
  const a = refArch(hf)
  const B = inputIds.length
  const T = inputIds[0].length
  const { hidden: H, heads: nh, kvHeads: nkv, headDim: hd } = a
  if (nh % nkv !== 0) throw new Error('reference: kv heads must divide heads')
  const groups = nh / nkv
  let clipped = 0
  let clipTotal = 0
  let sharedMaxAbs = 0
  let denseMaxAbs = 0

  // Embeddings: x[b][t] = E[id].
  const emb = w(weights, 'model.embed_tokens.weight')
  let x: number[][][] = inputIds.map((row) =>
    row.map((id) => {
      if (id < 0 || id >= a.vocab) throw new Error(`reference: token ${id} out of range`)
      return Array.from({ length: H }, (_, j) => emb[id * H + j])
    }),
  )

  const routing: RefLayerRouting[] = []
  const clip = (v: number[]): number[] => {
    if (a.clipQkv === null) return v
    const c = a.clipQkv
    return v.map((z) => {
      clipTotal++
      if (z > c) {
        clipped++
        return c
      }
      if (z < -c) {
        clipped++
        return -c
      }
      return z
    })
  }

  for (let L = 0; L < a.layers; L++) {
    const pre = `model.layers.${L}`
    const at = `${pre}.self_attn`
    const bias = (n: string): ArrayLike<number> | undefined => (a.qkvBias ? w(weights, `${at}.${n}.bias`) : undefined)

    // ---- self-attention
    const next: number[][][] = []
    for (let b = 0; b < B; b++) {
      const Q: number[][][] = [] // [t][head][hd]
      const K: number[][][] = [] // [t][kvHead][hd]
      const Vv: number[][][] = [] // [t][kvHead][hd]
      for (let t = 0; t < T; t++) {
        const h = rmsNorm(x[b][t], w(weights, `${pre}.input_layernorm.weight`), a.eps)
        let q = linear(w(weights, `${at}.q_proj.weight`), h, nh * hd, bias('q_proj'))
        let k = linear(w(weights, `${at}.k_proj.weight`), h, nkv * hd, bias('k_proj'))
        let v = linear(w(weights, `${at}.v_proj.weight`), h, nkv * hd, bias('v_proj'))
        if (a.qkNorm) {
          q = rmsNorm(q, w(weights, `${at}.q_norm.weight`), a.eps)
          k = rmsNorm(k, w(weights, `${at}.k_norm.weight`), a.eps)
        }
        q = clip(q)
        k = clip(k)
        v = clip(v)
        const headOf = (v: number[], hh: number, norm: string): number[] => {
          const part = v.slice(hh * hd, (hh + 1) * hd)
          return a.headNorm ? rmsNorm(part, w(weights, `${at}.${norm}.weight`), a.eps) : part
        }
        Q.push(Array.from({ length: nh }, (_, hh) => rope(headOf(q, hh, 'q_norm'), t, a.ropeTheta)))
        K.push(Array.from({ length: nkv }, (_, hh) => rope(headOf(k, hh, 'k_norm'), t, a.ropeTheta)))
        Vv.push(Array.from({ length: nkv }, (_, hh) => v.slice(hh * hd, (hh + 1) * hd)))
      }
      const rowOut: number[][] = []
      for (let t = 0; t < T; t++) {
        const ctx = new Array<number>(nh * hd).fill(0)
        for (let hh = 0; hh < nh; hh++) {
          const kvh = Math.floor(hh / groups)
          const allowed: number[] = []
          for (let s = 0; s <= t; s++) if (a.slidingWindow === null || t - s < a.slidingWindow) allowed.push(s)
          const scores = allowed.map((s) => {
            let d = 0
            for (let j = 0; j < hd; j++) d += Q[t][hh][j] * K[s][kvh][j]
            return d / Math.sqrt(hd)
          })
          const pr = softmax(scores)
          allowed.forEach((s, idx) => {
            for (let j = 0; j < hd; j++) ctx[hh * hd + j] += pr[idx] * Vv[s][kvh][j]
          })
        }
        const o = linear(w(weights, `${at}.o_proj.weight`), ctx, H, a.oBias ? w(weights, `${at}.o_proj.bias`) : undefined)
        rowOut.push(x[b][t].map((v, j) => v + o[j]))
      }
      next.push(rowOut)
    }
    x = next

    // ---- MLP
    const sparse = refIsSparse(a, L)
    const mp = a.family === 'mixtral' ? `${pre}.block_sparse_moe` : `${pre}.mlp`
    const lr: RefLayerRouting | null = sparse
      ? { layer: L, routerLogits: [], probs: [], topk: [], weights: [], gap: [], overridden: [] }
      : null
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const n = b * T + t
        const h = rmsNorm(x[b][t], w(weights, `${pre}.post_attention_layernorm.weight`), a.eps)
        let out: number[]
        if (!sparse) {
          out = swiglu(
            h,
            w(weights, `${pre}.mlp.gate_proj.weight`),
            w(weights, `${pre}.mlp.up_proj.weight`),
            w(weights, `${pre}.mlp.down_proj.weight`),
            a.denseInter,
          )
          for (const v of out) denseMaxAbs = Math.max(denseMaxAbs, Math.abs(v))
        } else {
          const logits = linear(w(weights, `${mp}.gate.weight`), h, a.experts)
          const p = softmax(logits)
          const order = rankExperts(p)
          const k = a.topK
          let gap = Infinity
          const last = k < a.experts ? k : a.experts - 1
          for (let j = 0; j < last; j++) gap = Math.min(gap, p[order[j]] - p[order[j + 1]])
          let chosen = order.slice(0, k)
          const ov = opts.overrideTopk?.(L, n, chosen.slice(), p.slice(), gap)
          if (ov) {
            if (ov.length !== k) throw new Error('reference: override must choose k experts')
            chosen = ov.slice()
          }
          let ws = chosen.map((e) => p[e])
          if (a.normTopk) {
            const s = ws.reduce((u, v) => u + v, 0)
            ws = ws.map((v) => v / s)
          }
          out = new Array<number>(H).fill(0)
          chosen.forEach((e, j) => {
            const names =
              a.family === 'mixtral'
                ? [`${mp}.experts.${e}.w1.weight`, `${mp}.experts.${e}.w3.weight`, `${mp}.experts.${e}.w2.weight`]
                : [`${mp}.experts.${e}.gate_proj.weight`, `${mp}.experts.${e}.up_proj.weight`, `${mp}.experts.${e}.down_proj.weight`]
            const y = swiglu(h, w(weights, names[0]), w(weights, names[1]), w(weights, names[2]), a.expertInter)
            for (let i = 0; i < H; i++) out[i] += ws[j] * y[i]
          })
          if (a.family === 'qwen2_moe' && a.sharedInter > 0) {
            const se = `${mp}.shared_expert`
            const y = swiglu(
              h,
              w(weights, `${se}.gate_proj.weight`),
              w(weights, `${se}.up_proj.weight`),
              w(weights, `${se}.down_proj.weight`),
              a.sharedInter,
            )
            const g = sigmoid(linear(w(weights, `${mp}.shared_expert_gate.weight`), h, 1)[0])
            for (let i = 0; i < H; i++) {
              out[i] += g * y[i]
              sharedMaxAbs = Math.max(sharedMaxAbs, Math.abs(g * y[i]))
            }
          }
          lr!.routerLogits.push(logits)
          lr!.probs.push(p)
          lr!.topk.push(chosen)
          lr!.weights.push(ws)
          lr!.gap.push(gap)
          lr!.overridden.push(ov !== undefined)
        }
        x[b][t] = x[b][t].map((v, i) => v + out[i])
      }
    }
    if (lr) routing.push(lr)
  }

  // ---- final norm and head
  const head = a.tied ? emb : w(weights, 'lm_head.weight')
  const logits = x.map((row) => row.map((v) => linear(head, rmsNorm(v, w(weights, 'model.norm.weight'), a.eps), a.vocab)))
  return { logits, routing, stats: { clippedFraction: clipTotal ? clipped / clipTotal : 0, sharedMaxAbs, denseMaxAbs } }
}
