/**
 * The one typed model config of MoE Workbench, with documented defaults and validation, and the
 * normaliser from Hugging Face config.json (mixtral, qwen2_moe, olmoe, qwen3_moe) onto it.
 *
 * Pure TypeScript: shared by the engine, the service, the CLI and the renderer's model form.
 * Workbench-only settings (router variant, capacity factors, dropout...) live in config.json under
 * the `moe_workbench` key, which other tools ignore.
 */
import { z } from 'zod'
import { unknownKeysMessage } from './keys'

export const FAMILIES = ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe'] as const

/** Storage dtypes of weights (Hugging Face's torch_dtype names); compute is always float32. */
export const DTYPES = ['float32', 'bfloat16', 'float16'] as const
export type Dtype = (typeof DTYPES)[number]
export type Family = (typeof FAMILIES)[number]

/** Where a family normalises queries and keys before RoPE (HF's modelling code). */
export const QK_NORMS = ['none', 'projection', 'head'] as const
export type QkNorm = (typeof QK_NORMS)[number]
export const FAMILY_QK_NORM: Record<Family, QkNorm> = { mixtral: 'none', qwen2_moe: 'none', olmoe: 'projection', qwen3_moe: 'head' }

/**
 * Router variants.
 * - `softmax_topk`: softmax over all experts in fp32, top-k, optionally renormalised (the HF families).
 * - `switch`: Switch Transformer top-1 (the weight is the softmax probability, not renormalised).
 * - `noisy_topk`: Shazeer et al. 2017: logits + N(0,1)·softplus(x·W_noise) while training, then
 *   top-k and a softmax over the kept logits only.
 * - `hash`: Roller et al. 2021: the expert(s) are a fixed hash of the token id; weight 1/k each.
 */
export const ROUTER_TYPES = ['softmax_topk', 'switch', 'noisy_topk', 'hash'] as const
export type RouterType = (typeof ROUTER_TYPES)[number]

/** A router other than the usual softmax top-k, in words (hash and switch models read alike otherwise). */
export const ROUTER_WORDS: Partial<Record<RouterType, string>> = {
  switch: 'switch router',
  noisy_topk: 'noisy top-k router',
  hash: 'hash routing',
}

/**
 * How a model routes, for the Train screen: its top-k (which a run may change: moe.topK) and its
 * router type (the model's own, config.json's: a run trains the router the model has).
 */
export function routingFacts(m: { numExperts: number; topK: number; routerType: RouterType }): string {
  const router = ROUTER_WORDS[m.routerType]
  return `This model sends each token to ${m.topK} of its ${m.numExperts} experts${router ? ` (${router})` : ''}. A run may route to more or fewer (Experts per token, below; the export keeps it). The router type is the model's own: a Hugging Face checkpoint keeps its config's; a new model gets one where it is made (Models, "New model from a preset").`
}

const posInt = z.number().int().positive()
const nonNegInt = z.number().int().nonnegative()
const prob = z.number().min(0).max(1)
/** A positive integer up to `max` (sizes: far above any published model, far below what breaks allocation). */
const size = (max: number, what: string) =>
  posInt.max(max, `is above ${max.toLocaleString('en-US')}, the largest ${what} the workbench accepts`)

export const routerConfigSchema = z.strictObject({
  /** Router variant. Default softmax_topk (what HF checkpoints were trained with). */
  type: z.enum(ROUTER_TYPES).default('softmax_topk'),
  /**
   * Capacity factor while training: each expert takes at most ceil(factor · tokens · k / experts)
   * tokens per forward; the rest are dropped (they keep only the residual path). null = dropless.
   */
  capacityFactorTrain: z.number().positive().nullable().default(null),
  /** Capacity factor in evaluation and generation. null = dropless (HF default). */
  capacityFactorEval: z.number().positive().nullable().default(null),
  /** Router jitter (multiplicative uniform noise in [1-j, 1+j] on the router input, training only). */
  jitter: prob.default(0),
  /** Seed of the token-id hash for hash routing. */
  hashSeed: nonNegInt.default(0),
})
export type RouterConfig = z.infer<typeof routerConfigSchema>

/** The model config's fields (without the cross-field rules), so partial forms can reuse them. */
export const moeConfigShape = z.strictObject({
  family: z.enum(FAMILIES),
  vocabSize: size(1 << 21, 'vocabulary'),
  hiddenSize: size(65536, 'hidden size'),
  numLayers: size(1024, 'layer count'),
  numHeads: size(1024, 'head count'),
  /** Key/value heads for grouped-query attention; must divide numHeads. */
  numKvHeads: size(1024, 'key/value head count'),
  headDim: size(4096, 'head dimension'),
  /** Width of the dense MLP in dense (non-sparse) layers. */
  intermediateSize: size(1 << 20, 'MLP width'),
  /** Width of each routed expert (SwiGLU). */
  expertIntermediateSize: size(1 << 20, 'expert width'),
  numExperts: size(4096, 'expert count'),
  topK: size(256, 'top-k'),
  /** Renormalise the k routing weights to sum to 1 (mixtral always; qwen2_moe/olmoe per config). */
  normTopkProb: z.boolean(),
  /** Width of the always-on shared expert with a sigmoid gate (qwen2_moe); 0 = none. */
  sharedExpertIntermediateSize: nonNegInt.default(0),
  /** Every decoderSparseStep-th layer is sparse ((i+1) % step == 0), unless in mlpOnlyLayers. */
  decoderSparseStep: posInt.default(1),
  mlpOnlyLayers: z.array(nonNegInt).prefault([]),
  /** Biases on q/k/v projections (qwen2_moe qkv_bias; olmoe and qwen3_moe attention_bias). */
  qkvBias: z.boolean().default(false),
  /**
   * RMSNorm of queries and keys before RoPE: 'projection' over the whole q/k projection (olmoe),
   * 'head' over head_dim on each head after the split (qwen3_moe), 'none' elsewhere.
   */
  qkNorm: z.enum(QK_NORMS).default('none'),
  /** Clamp q/k/v to [-clipQkv, clipQkv] (olmoe); null = off. */
  clipQkv: z.number().positive().nullable().default(null),
  /** Sliding-window attention: a query attends to the last slidingWindow keys; null = full causal. */
  slidingWindow: posInt.nullable().default(null),
  /** Layers below this index use full attention even with a sliding window (qwen2_moe max_window_layers). */
  maxWindowLayers: nonNegInt.default(0),
  /** A bias on the attention output projection (olmoe attention_bias). */
  oBias: z.boolean().default(false),
  rmsNormEps: z.number().positive().default(1e-5),
  ropeTheta: z.number().positive().default(10000),
  maxPositionEmbeddings: posInt.default(4096),
  tieWordEmbeddings: z.boolean().default(false),
  /** Coefficient of the load-balancing loss in the training loss (HF router_aux_loss_coef). */
  routerAuxLossCoef: z.number().min(0).default(0.01),
  /** Coefficient of the router z-loss in the training loss (ST-MoE uses 1e-3); 0 = off. */
  routerZLossCoef: z.number().min(0).default(0),
  /** Coefficient of Shazeer et al. 2017's importance loss (CV² of the gate sums per expert); 0 = off. */
  routerImportanceLossCoef: z.number().min(0).default(0),
  /**
   * Coefficient of Shazeer et al. 2017's load loss (CV² of the expected tokens per expert; smooth,
   * with a gradient, for the noisy top-k router while training); 0 = off.
   */
  routerLoadLossCoef: z.number().min(0).default(0),
  router: routerConfigSchema.default(routerConfigSchema.parse({})),
  attentionDropout: prob.default(0),
  hiddenDropout: prob.default(0),
  /** Dropout inside the experts (between the SwiGLU product and the down projection). */
  expertDropout: prob.default(0),
  /** Training only: each token skips the MoE block (no expert, no capacity) with this probability. */
  tokenDrop: prob.default(0),
  bosTokenId: z.number().int().nullable().default(null),
  eosTokenId: z
    .union([z.number().int(), z.array(z.number().int())])
    .nullable()
    .default(null),
  padTokenId: z.number().int().nullable().default(null),
  /** Storage dtype of the checkpoint (compute is always float32). */
  torchDtype: z.enum(DTYPES).default('float32'),
})

/**
 * Any subset of the fields, each validated (what models.create takes before the preset fills the
 * rest), the family required. For checking only: parsing fills defaults the preset must not see.
 */
export const moeConfigPartialSchema = moeConfigShape
  .partial()
  .extend({ family: z.enum(FAMILIES), router: routerConfigSchema.partial().optional() })

export const moeConfigSchema = moeConfigShape.superRefine((c, ctx) => {
  if (c.numHeads % c.numKvHeads !== 0)
    ctx.addIssue({ code: 'custom', path: ['numKvHeads'], message: `numKvHeads ${c.numKvHeads} must divide numHeads ${c.numHeads}` })
  if (c.headDim % 2 !== 0)
    ctx.addIssue({ code: 'custom', path: ['headDim'], message: `headDim ${c.headDim} must be even for rotary embeddings` })
  if (c.topK > c.numExperts) ctx.addIssue({ code: 'custom', path: ['topK'], message: `topK ${c.topK} exceeds numExperts ${c.numExperts}` })
  if (c.router.type === 'switch' && c.topK !== 1)
    ctx.addIssue({ code: 'custom', path: ['topK'], message: `the switch router is top-1; set topK to 1 (got ${c.topK})` })
  for (const l of c.mlpOnlyLayers)
    if (l >= c.numLayers)
      ctx.addIssue({ code: 'custom', path: ['mlpOnlyLayers'], message: `layer ${l} does not exist (numLayers ${c.numLayers})` })
  const qk = FAMILY_QK_NORM[c.family]
  if (c.qkNorm !== qk)
    ctx.addIssue({
      code: 'custom',
      path: ['qkNorm'],
      message:
        qk === 'none' ? `${c.family} has no q/k norm; set qkNorm "none"` : `${c.family} always normalises q and k; set qkNorm "${qk}"`,
    })
  if (c.oBias && c.family !== 'olmoe' && c.family !== 'qwen3_moe')
    ctx.addIssue({
      code: 'custom',
      path: ['oBias'],
      message: `an output-projection bias is an olmoe or qwen3_moe feature, not ${c.family}`,
    })
  if (c.family === 'qwen3_moe' && c.oBias !== c.qkvBias)
    ctx.addIssue({ code: 'custom', path: ['oBias'], message: 'qwen3_moe attention_bias puts a bias on q, k, v and o together' })
  if (c.sharedExpertIntermediateSize > 0 && c.family !== 'qwen2_moe')
    ctx.addIssue({
      code: 'custom',
      path: ['sharedExpertIntermediateSize'],
      message: `a shared expert is a qwen2_moe feature, not ${c.family}`,
    })
})
export type MoeConfig = z.infer<typeof moeConfigSchema>
export type MoeConfigInput = z.input<typeof moeConfigSchema>

/**
 * A zod message in plain words ("Too small: expected number to be >0" → "must be more than 0"):
 * what every form and command shows next to a field. Messages a schema wrote itself pass through.
 */
export function plainIssue(message: string): string {
  const bound = /^Too (small|big): expected (number|int|array|string) to (?:be|have) ([<>]=?)(\S+?)(?: (items|characters))?$/.exec(message)
  if (bound) {
    const [, , kind, op, n] = bound
    // zod's bound of a whole number: the largest a float holds exactly (1e20 was "<=9007199254740991")
    if (kind === 'int' && Math.abs(Number(n)) === Number.MAX_SAFE_INTEGER) return 'is too large a number'
    const words = { '>': 'more than', '>=': 'at least', '<': 'less than', '<=': 'at most' }[op]
    if (kind === 'number' || kind === 'int') return `must be ${words} ${n}`
    return `must have ${words} ${n} ${kind === 'array' ? 'items' : 'characters'}`
  }
  const type = /^Invalid input: expected (\w+), received (\w+)$/.exec(message)
  const a = (w: string): string => `${/^[aeiou]/.test(w) ? 'an' : 'a'} ${w}`
  if (type && type[2] === 'undefined') return `is required (${a(type[1] === 'int' ? 'whole number' : type[1])})`
  // NaN comes from a form's emptied number field (or letters in it): JSON has no NaN.
  if (type && type[2] === 'NaN') return 'is empty or not a number: type a number'
  if (type && type[2] === 'Infinity') return 'must be a finite number, not Infinity'
  if (type) return type[1] === 'int' ? 'must be a whole number' : `must be ${a(type[1])}, not ${a(type[2])}`
  const option = /^Invalid option: expected one of (.+)$/.exec(message)
  if (option) return `must be one of ${option[1].split('|').join(', ')}`
  return message
}

/**
 * Formats zod issues as `field: problem` lines; unknown keys name the closest valid key of
 * `schema` ("did you mean").
 */
export function formatIssues(
  issues: readonly { path: readonly PropertyKey[]; message: string; code?: string; keys?: readonly string[] }[],
  prefix = '',
  schema?: unknown,
): string {
  return issues
    .map((i) => {
      const path = i.code === 'unrecognized_keys' && i.keys?.length ? [...i.path, i.keys[0]] : i.path
      const where = path.map(String).join('.') || '(root)'
      const what = i.code === 'unrecognized_keys' && i.keys ? unknownKeysMessage(schema, i.path, i.keys) : plainIssue(i.message)
      return `${prefix}${where}: ${what}`
    })
    .join('; ')
}

export class ConfigError extends Error {}

/** Validates a config, filling defaults. Throws ConfigError naming each bad field. */
export function validateMoeConfig(input: unknown): MoeConfig {
  const r = moeConfigSchema.safeParse(input)
  if (!r.success) throw new ConfigError(`invalid model config: ${formatIssues(r.error.issues, '', moeConfigShape)}`)
  return r.data
}

/** Decoder-layer indices whose MLP is a sparse MoE block (HF qwen2_moe rule, all layers elsewhere). */
export function sparseLayers(c: MoeConfig): number[] {
  const out: number[] = []
  for (let i = 0; i < c.numLayers; i++) if (isSparseLayer(c, i)) out.push(i)
  return out
}

export function isSparseLayer(c: MoeConfig, i: number): boolean {
  return !c.mlpOnlyLayers.includes(i) && (i + 1) % c.decoderSparseStep === 0
}

// ---------------------------------------------------------------------------------------------
// Hugging Face config.json <-> MoeConfig

type Json = Record<string, unknown>

function num(hf: Json, key: string, file: string): number {
  const v = hf[key]
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new ConfigError(`${file}: "${key}" must be a number (got ${JSON.stringify(v)})`)
  return v
}
function opt<T>(hf: Json, key: string): T | undefined {
  return hf[key] === undefined || hf[key] === null ? undefined : (hf[key] as T)
}

/**
 * Defaults of the HF config classes (MixtralConfig, Qwen2MoeConfig, OlmoeConfig) for keys a
 * config.json may leave out; transformers fills them the same way.
 */
const HF_DEFAULTS: Record<Family, Json> = {
  mixtral: {
    rope_theta: 1e6,
    rms_norm_eps: 1e-5,
    num_key_value_heads: 8,
    router_aux_loss_coef: 0.001,
    tie_word_embeddings: false,
    sliding_window: null,
    max_position_embeddings: 4096 * 32,
  },
  qwen2_moe: {
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    router_aux_loss_coef: 0.001,
    shared_expert_intermediate_size: 5632,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    norm_topk_prob: false,
    qkv_bias: true,
    use_sliding_window: false,
    sliding_window: 4096,
    max_window_layers: 28,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
  },
  olmoe: {
    rope_theta: 10000,
    rms_norm_eps: 1e-5,
    router_aux_loss_coef: 0.01,
    norm_topk_prob: false,
    attention_bias: false,
    clip_qkv: null,
    tie_word_embeddings: false,
    max_position_embeddings: 4096,
  },
  // Qwen3MoeConfig (transformers 5.x); head_dim, when absent, is hidden_size // num_attention_heads.
  qwen3_moe: {
    rope_theta: 10000,
    rms_norm_eps: 1e-6,
    num_key_value_heads: 4,
    router_aux_loss_coef: 0.001,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    norm_topk_prob: false,
    attention_bias: false,
    use_sliding_window: false,
    sliding_window: 4096,
    tie_word_embeddings: false,
    max_position_embeddings: 32768,
  },
}

/** Workbench-only keys stored under config.json's `moe_workbench`. */
export const WORKBENCH_KEY = 'moe_workbench'

/**
 * Normalises a Hugging Face config.json of a supported family onto MoeConfig
 * (as transformers.js getNormalizedConfig does), then validates it.
 */
export function fromHfConfig(hfIn: Json, file = 'config.json'): MoeConfig {
  let hf = hfIn
  const modelType = hf.model_type
  if (typeof modelType !== 'string') throw new ConfigError(`${file}: "model_type" is missing; expected one of ${FAMILIES.join(', ')}`)
  if (!(FAMILIES as readonly string[]).includes(modelType))
    throw new ConfigError(`${file}: model_type "${modelType}" is not supported; supported families: ${FAMILIES.join(', ')}`)
  const family = modelType as Family
  // Keys the file leaves out take the HF config class defaults.
  hf = { ...HF_DEFAULTS[family], ...Object.fromEntries(Object.entries(hf).filter(([, v]) => v !== undefined)) }
  const ropeParams = opt<Json>(hf, 'rope_parameters')
  const ropeScaling = opt<Json>(hf, 'rope_scaling')
  for (const rp of [ropeParams, ropeScaling]) {
    const t = rp && (rp.rope_type ?? rp.type)
    if (t !== undefined && t !== 'default')
      throw new ConfigError(`${file}: rope type "${String(t)}" is not supported (only default rotary embeddings)`)
  }
  const hidden = num(hf, 'hidden_size', file)
  const heads = num(hf, 'num_attention_heads', file)
  const wb = (opt<Json>(hf, WORKBENCH_KEY) ?? {}) as Json
  const numExperts = family === 'mixtral' ? num(hf, 'num_local_experts', file) : num(hf, 'num_experts', file)
  const intermediate = num(hf, 'intermediate_size', file)
  const qwen = family === 'qwen2_moe' || family === 'qwen3_moe'
  const input: MoeConfigInput = {
    family,
    vocabSize: num(hf, 'vocab_size', file),
    hiddenSize: hidden,
    numLayers: num(hf, 'num_hidden_layers', file),
    numHeads: heads,
    numKvHeads: opt<number>(hf, 'num_key_value_heads') ?? heads,
    headDim: opt<number>(hf, 'head_dim') ?? Math.floor(hidden / heads),
    intermediateSize: intermediate,
    expertIntermediateSize: qwen ? num(hf, 'moe_intermediate_size', file) : intermediate,
    numExperts,
    topK: num(hf, 'num_experts_per_tok', file),
    normTopkProb: family === 'mixtral' ? true : (opt<boolean>(hf, 'norm_topk_prob') ?? false),
    sharedExpertIntermediateSize: family === 'qwen2_moe' ? (opt<number>(hf, 'shared_expert_intermediate_size') ?? 0) : 0,
    decoderSparseStep: qwen ? (opt<number>(hf, 'decoder_sparse_step') ?? 1) : 1,
    mlpOnlyLayers: qwen ? (opt<number[]>(hf, 'mlp_only_layers') ?? []) : [],
    qkvBias:
      family === 'qwen2_moe'
        ? (opt<boolean>(hf, 'qkv_bias') ?? true)
        : family === 'olmoe' || family === 'qwen3_moe'
          ? (opt<boolean>(hf, 'attention_bias') ?? false)
          : false,
    oBias: family === 'olmoe' || family === 'qwen3_moe' ? (opt<boolean>(hf, 'attention_bias') ?? false) : false,
    slidingWindow:
      family === 'mixtral'
        ? (opt<number>(hf, 'sliding_window') ?? null)
        : qwen && opt<boolean>(hf, 'use_sliding_window')
          ? (opt<number>(hf, 'sliding_window') ?? null)
          : null,
    // qwen2_moe: layers below max_window_layers attend fully; qwen3_moe (transformers 5) windows every layer.
    maxWindowLayers: family === 'qwen2_moe' && opt<boolean>(hf, 'use_sliding_window') ? (opt<number>(hf, 'max_window_layers') ?? 0) : 0,
    qkNorm: FAMILY_QK_NORM[family],
    clipQkv: family === 'olmoe' ? (opt<number>(hf, 'clip_qkv') ?? null) : null,
    rmsNormEps: opt<number>(hf, 'rms_norm_eps') ?? 1e-5,
    ropeTheta: (ropeParams?.rope_theta as number | undefined) ?? opt<number>(hf, 'rope_theta') ?? 10000,
    maxPositionEmbeddings: opt<number>(hf, 'max_position_embeddings') ?? 4096,
    tieWordEmbeddings: opt<boolean>(hf, 'tie_word_embeddings') ?? false,
    routerAuxLossCoef: opt<number>(hf, 'router_aux_loss_coef') ?? (family === 'mixtral' ? 0.02 : 0.001),
    routerZLossCoef: (wb.router_z_loss_coef as number | undefined) ?? 0,
    routerImportanceLossCoef: (wb.importance_loss_coef as number | undefined) ?? 0,
    routerLoadLossCoef: (wb.load_loss_coef as number | undefined) ?? 0,
    router: {
      type: (wb.router_type as RouterType | undefined) ?? 'softmax_topk',
      capacityFactorTrain: (wb.capacity_factor_train as number | null | undefined) ?? null,
      capacityFactorEval: (wb.capacity_factor_eval as number | null | undefined) ?? null,
      jitter: (wb.router_jitter as number | undefined) ?? opt<number>(hf, 'router_jitter_noise') ?? 0,
      hashSeed: (wb.hash_seed as number | undefined) ?? 0,
    },
    attentionDropout: opt<number>(hf, 'attention_dropout') ?? 0,
    hiddenDropout: (wb.hidden_dropout as number | undefined) ?? 0,
    expertDropout: (wb.expert_dropout as number | undefined) ?? 0,
    tokenDrop: (wb.token_drop as number | undefined) ?? 0,
    bosTokenId: opt<number>(hf, 'bos_token_id') ?? null,
    eosTokenId: opt<number | number[]>(hf, 'eos_token_id') ?? null,
    padTokenId: opt<number>(hf, 'pad_token_id') ?? null,
    torchDtype: (opt<string>(hf, 'torch_dtype') ?? opt<string>(hf, 'dtype') ?? 'float32') as 'float32',
  }
  const r = moeConfigSchema.safeParse(input)
  if (!r.success) throw new ConfigError(`${file}: ${inFileKeys(formatIssues(r.error.issues), family)}`)
  return r.data
}

/**
 * A validation message about a config.json in the file's own keys: "num_experts_per_tok 8
 * exceeds num_local_experts 4", not the workbench's "topK 8 exceeds numExperts 4".
 */
function inFileKeys(message: string, family: Family): string {
  const qwen = family === 'qwen2_moe' || family === 'qwen3_moe'
  const keys: Record<string, string> = {
    vocabSize: 'vocab_size',
    hiddenSize: 'hidden_size',
    numLayers: 'num_hidden_layers',
    numHeads: 'num_attention_heads',
    numKvHeads: 'num_key_value_heads',
    headDim: 'head_dim',
    intermediateSize: 'intermediate_size',
    expertIntermediateSize: qwen ? 'moe_intermediate_size' : 'intermediate_size',
    numExperts: family === 'mixtral' ? 'num_local_experts' : 'num_experts',
    topK: 'num_experts_per_tok',
    sharedExpertIntermediateSize: 'shared_expert_intermediate_size',
    decoderSparseStep: 'decoder_sparse_step',
    mlpOnlyLayers: 'mlp_only_layers',
    slidingWindow: 'sliding_window',
    maxWindowLayers: 'max_window_layers',
    rmsNormEps: 'rms_norm_eps',
    ropeTheta: 'rope_theta',
    maxPositionEmbeddings: 'max_position_embeddings',
    routerAuxLossCoef: 'router_aux_loss_coef',
    bosTokenId: 'bos_token_id',
    eosTokenId: 'eos_token_id',
    padTokenId: 'pad_token_id',
  }
  return message.replace(/\b[a-z][A-Za-z]+\b/g, (w) => keys[w] ?? w)
}

/** Writes a MoeConfig as a Hugging Face config.json object for its family (loadable by transformers). */
export function toHfConfig(c: MoeConfig): Json {
  const common: Json = {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: c.tieWordEmbeddings,
    num_experts_per_tok: c.topK,
    router_aux_loss_coef: c.routerAuxLossCoef,
    output_router_logits: false,
    attention_dropout: c.attentionDropout,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    pad_token_id: c.padTokenId,
    torch_dtype: c.torchDtype,
    use_cache: true,
    initializer_range: 0.02,
  }
  let family: Json
  if (c.family === 'mixtral') {
    family = {
      architectures: ['MixtralForCausalLM'],
      model_type: 'mixtral',
      num_local_experts: c.numExperts,
      intermediate_size: c.expertIntermediateSize,
      router_jitter_noise: c.router.jitter,
      sliding_window: c.slidingWindow,
    }
  } else if (c.family === 'qwen2_moe') {
    family = {
      architectures: ['Qwen2MoeForCausalLM'],
      model_type: 'qwen2_moe',
      num_experts: c.numExperts,
      intermediate_size: c.intermediateSize,
      moe_intermediate_size: c.expertIntermediateSize,
      shared_expert_intermediate_size: c.sharedExpertIntermediateSize,
      decoder_sparse_step: c.decoderSparseStep,
      mlp_only_layers: c.mlpOnlyLayers,
      norm_topk_prob: c.normTopkProb,
      qkv_bias: c.qkvBias,
      use_sliding_window: c.slidingWindow !== null,
      sliding_window: c.slidingWindow,
      max_window_layers: c.slidingWindow !== null ? c.maxWindowLayers : c.numLayers,
    }
  } else if (c.family === 'qwen3_moe') {
    family = {
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      num_experts: c.numExperts,
      intermediate_size: c.intermediateSize,
      moe_intermediate_size: c.expertIntermediateSize,
      decoder_sparse_step: c.decoderSparseStep,
      mlp_only_layers: c.mlpOnlyLayers,
      norm_topk_prob: c.normTopkProb,
      attention_bias: c.qkvBias,
      use_sliding_window: c.slidingWindow !== null,
      sliding_window: c.slidingWindow,
    }
  } else {
    family = {
      architectures: ['OlmoeForCausalLM'],
      model_type: 'olmoe',
      num_experts: c.numExperts,
      intermediate_size: c.expertIntermediateSize,
      norm_topk_prob: c.normTopkProb,
      attention_bias: c.qkvBias,
      clip_qkv: c.clipQkv,
    }
  }
  const wb: Json = {
    router_type: c.router.type,
    capacity_factor_train: c.router.capacityFactorTrain,
    capacity_factor_eval: c.router.capacityFactorEval,
    router_jitter: c.router.jitter,
    hash_seed: c.router.hashSeed,
    router_z_loss_coef: c.routerZLossCoef,
    importance_loss_coef: c.routerImportanceLossCoef,
    load_loss_coef: c.routerLoadLossCoef,
    hidden_dropout: c.hiddenDropout,
    expert_dropout: c.expertDropout,
    token_drop: c.tokenDrop,
  }
  return { ...family, ...common, [WORKBENCH_KEY]: wb }
}

/** HF config fields typed float: transformers 5 refuses an int there (`router_jitter_noise: 0`). */
const HF_FLOAT_KEYS = new Set([
  'rms_norm_eps',
  'rope_theta',
  'router_jitter_noise',
  'router_aux_loss_coef',
  'attention_dropout',
  'initializer_range',
  'clip_qkv',
])

/**
 * config.json text for a MoeConfig: float fields keep a decimal point even when integral (0.0,
 * 1000000.0), as Python's json writes them, so strict config classes accept them.
 */
export function hfConfigJson(c: MoeConfig): string {
  const MARK = '\u0000float:'
  const text = JSON.stringify(
    toHfConfig(c),
    (key, value: unknown) => (HF_FLOAT_KEYS.has(key) && typeof value === 'number' && Number.isInteger(value) ? `${MARK}${value}` : value),
    2,
  )
  return text.replace(/"\\u0000float:(-?\d+)"/g, '$1.0') + '\n'
}

// ---------------------------------------------------------------------------------------------
// Tensor names and shapes (hub layout)

export interface ParamSpec {
  name: string
  shape: number[]
  /** What the tensor is, for freeze policies, LoRA targets and weight decay. */
  kind:
    | 'embed'
    | 'lm_head'
    | 'norm'
    | 'attn'
    | 'attn_bias'
    | 'router'
    | 'router_noise'
    | 'expert'
    | 'shared_expert'
    | 'shared_expert_gate'
    | 'dense_mlp'
  layer?: number
  expert?: number
}

/** Prefix of the MoE block of layer i ("model.layers.i.block_sparse_moe" for mixtral, ".mlp" elsewhere). */
export function moePrefix(c: MoeConfig, i: number): string {
  return `model.layers.${i}.${c.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'}`
}

/** Names of an expert's [gate, up, down] projections, in the family's hub naming. */
export function expertProjNames(c: MoeConfig, i: number, e: number): [string, string, string] {
  const p = `${moePrefix(c, i)}.experts.${e}`
  return c.family === 'mixtral'
    ? [`${p}.w1.weight`, `${p}.w3.weight`, `${p}.w2.weight`]
    : [`${p}.gate_proj.weight`, `${p}.up_proj.weight`, `${p}.down_proj.weight`]
}

/** Every tensor a checkpoint of this config holds, in model order, with shapes. */
export function paramSpecs(c: MoeConfig): ParamSpec[] {
  const H = c.hiddenSize
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  const out: ParamSpec[] = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, H], kind: 'embed' }]
  for (let i = 0; i < c.numLayers; i++) {
    const a = `model.layers.${i}.self_attn`
    out.push({ name: `${a}.q_proj.weight`, shape: [q, H], kind: 'attn', layer: i })
    if (c.qkvBias) out.push({ name: `${a}.q_proj.bias`, shape: [q], kind: 'attn_bias', layer: i })
    out.push({ name: `${a}.k_proj.weight`, shape: [kv, H], kind: 'attn', layer: i })
    if (c.qkvBias) out.push({ name: `${a}.k_proj.bias`, shape: [kv], kind: 'attn_bias', layer: i })
    out.push({ name: `${a}.v_proj.weight`, shape: [kv, H], kind: 'attn', layer: i })
    if (c.qkvBias) out.push({ name: `${a}.v_proj.bias`, shape: [kv], kind: 'attn_bias', layer: i })
    out.push({ name: `${a}.o_proj.weight`, shape: [H, q], kind: 'attn', layer: i })
    if (c.oBias) out.push({ name: `${a}.o_proj.bias`, shape: [H], kind: 'attn_bias', layer: i })
    if (c.qkNorm === 'projection') {
      out.push({ name: `${a}.q_norm.weight`, shape: [q], kind: 'norm', layer: i })
      out.push({ name: `${a}.k_norm.weight`, shape: [kv], kind: 'norm', layer: i })
    } else if (c.qkNorm === 'head') {
      out.push({ name: `${a}.q_norm.weight`, shape: [c.headDim], kind: 'norm', layer: i })
      out.push({ name: `${a}.k_norm.weight`, shape: [c.headDim], kind: 'norm', layer: i })
    }
    if (isSparseLayer(c, i)) {
      const m = moePrefix(c, i)
      out.push({ name: `${m}.gate.weight`, shape: [c.numExperts, H], kind: 'router', layer: i })
      if (c.router.type === 'noisy_topk')
        out.push({ name: `${m}.noise_gate.weight`, shape: [c.numExperts, H], kind: 'router_noise', layer: i })
      const I = c.expertIntermediateSize
      for (let e = 0; e < c.numExperts; e++) {
        const [g, u, d] = expertProjNames(c, i, e)
        const specs: ParamSpec[] = [
          { name: g, shape: [I, H], kind: 'expert', layer: i, expert: e },
          { name: u, shape: [I, H], kind: 'expert', layer: i, expert: e },
          { name: d, shape: [H, I], kind: 'expert', layer: i, expert: e },
        ]
        // Mixtral's hub order is w1, w2, w3.
        if (c.family === 'mixtral') out.push(specs[0], specs[2], specs[1])
        else out.push(...specs)
      }
      if (c.sharedExpertIntermediateSize > 0) {
        const S = c.sharedExpertIntermediateSize
        out.push({ name: `${m}.shared_expert.gate_proj.weight`, shape: [S, H], kind: 'shared_expert', layer: i })
        out.push({ name: `${m}.shared_expert.up_proj.weight`, shape: [S, H], kind: 'shared_expert', layer: i })
        out.push({ name: `${m}.shared_expert.down_proj.weight`, shape: [H, S], kind: 'shared_expert', layer: i })
        out.push({ name: `${m}.shared_expert_gate.weight`, shape: [1, H], kind: 'shared_expert_gate', layer: i })
      }
    } else {
      const m = `model.layers.${i}.mlp`
      const I = c.intermediateSize
      out.push({ name: `${m}.gate_proj.weight`, shape: [I, H], kind: 'dense_mlp', layer: i })
      out.push({ name: `${m}.up_proj.weight`, shape: [I, H], kind: 'dense_mlp', layer: i })
      out.push({ name: `${m}.down_proj.weight`, shape: [H, I], kind: 'dense_mlp', layer: i })
    }
    out.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [H], kind: 'norm', layer: i })
    out.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [H], kind: 'norm', layer: i })
  }
  out.push({ name: 'model.norm.weight', shape: [H], kind: 'norm' })
  if (!c.tieWordEmbeddings) out.push({ name: 'lm_head.weight', shape: [c.vocabSize, H], kind: 'lm_head' })
  return out
}

export interface ParamCounts {
  total: number
  /** Parameters used per token: everything but the experts, plus k experts per sparse layer. */
  active: number
  experts: number
}

export function countParams(c: MoeConfig): ParamCounts {
  let total = 0
  let experts = 0
  for (const p of paramSpecs(c)) {
    const n = p.shape.reduce((a, b) => a * b, 1)
    total += n
    if (p.kind === 'expert') experts += n
  }
  const perExpert = 3 * c.hiddenSize * c.expertIntermediateSize
  const active = total - experts + sparseLayers(c).length * c.topK * perExpert
  return { total, active, experts }
}

/** A parameter count in words: "46.70B", "5.43M", "72.8K" (a small model is not "0.00B"). */
export function formatParamCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`
  return String(n)
}
