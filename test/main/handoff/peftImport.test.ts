/**
 * PEFT LoRA adapters as LLaMA-Factory and axolotl write them open on their base model like an
 * adapter trained here: built from known weights in PEFT's layouts (per module, and fused experts
 * through target_parameters, with rank/alpha patterns and rsLoRA), imported as a run, they give
 * the logits of the base model with the deltas merged in by an independent reference; the
 * workbench's own adapter goes through the same path; mismatches are named.
 */
import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel, readModelConfig } from '../../../src/main/engine/checkpoint'
import { Rng } from '../../../src/main/engine/ops'
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../../../src/main/engine/safetensors'
import { importAdapterRun, parsePeftConfig, patternValue } from '../../../src/main/handoff/peftImport'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { exportRun } from '../../../src/main/train/export'
import { LoraAdapters } from '../../../src/main/train/lora'
import { paramSpecs, type MoeConfig } from '../../../src/shared/modelConfig'
import { validateRunConfig } from '../../../src/shared/runConfig'

const FIX = join(__dirname, '../../fixtures/moe-reference')
const FAMILIES = ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe'] as const
const IDS = [[3, 17, 5, 42, 8, 11, 2, 60, 9]]

type Tensor = { shape: number[]; data: Float32Array }

function randn(rng: Rng, n: number, scale: number): Float32Array {
  const a = rng.normalArray(n)
  for (let i = 0; i < n; i++) a[i] *= scale
  return a
}

/** W += delta in place ([out, in], row-major). */
function addInto(w: Float32Array, delta: Float32Array): void {
  for (let i = 0; i < w.length; i++) w[i] += delta[i]
}

/** scale · B (out×r) · A (r×in). */
function product(B: Float32Array, A: Float32Array, out: number, r: number, inp: number, scale: number): Float32Array {
  const d = new Float32Array(out * inp)
  for (let o = 0; o < out; o++)
    for (let k = 0; k < r; k++) for (let i = 0; i < inp; i++) d[o * inp + i] += scale * B[o * r + k] * A[k * inp + i]
  return d
}

/** An adapter folder: adapter_config.json and adapter_model.safetensors (BF16 like a bf16 run, or F32). */
function writeAdapter(dir: string, config: Record<string, unknown>, tensors: Map<string, Tensor>, dtype: 'F32' | 'BF16' = 'F32'): void {
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(config))
  const out = new Map<string, TensorToWrite>()
  for (const [k, t] of tensors) out.set(k, { dtype, shape: t.shape, data: t.data })
  saveSafetensors(join(dir, 'adapter_model.safetensors'), out, { format: 'pt' })
}

/** The base checkpoint with `deltas` added, written as a model folder (the reference merge). */
function mergedFolder(base: string, deltas: Map<string, Float32Array>): string {
  const dir = mkdtempSync(join(tmpdir(), 'peft-merged-'))
  copyFileSync(join(base, 'config.json'), join(dir, 'config.json'))
  const tensors = new Map<string, TensorToWrite>()
  for (const [name, t] of loadSafetensors(join(base, 'model.safetensors')).tensors) {
    const data = Float32Array.from(t.data as Float32Array)
    const d = deltas.get(name)
    if (d) addInto(data, d)
    tensors.set(name, { dtype: 'F32', shape: t.shape, data })
  }
  for (const name of deltas.keys()) if (!tensors.has(name)) throw new Error(`reference merge: ${name} is not in the base checkpoint`)
  saveSafetensors(join(dir, 'model.safetensors'), tensors)
  return dir
}

function logitsOf(dir: string): Float32Array {
  const m = loadModel(dir)
  try {
    return tf.tidy(() => m.forward(IDS).logits.dataSync() as Float32Array)
  } finally {
    m.dispose()
  }
}

/** Logits of the base model with an imported run's adapters, exactly as eval/export apply them. */
function runLogits(runDir: string): Float32Array {
  const folder = new RunFolder(runDir)
  const run = folder.read()
  const model = loadModel(run.baseModel)
  const lora = new LoraAdapters(model, run.config.lora, run.config.seed)
  try {
    lora.load(loadSafetensors(join(folder.lastCheckpoint()!, 'adapter_model.safetensors')).tensors as Map<string, Tensor>)
    return tf.tidy(
      () => model.forward(IDS, { weights: lora.wrap(model.weightSource, { training: false }) }).logits.dataSync() as Float32Array,
    )
  } finally {
    lora.dispose()
    model.dispose()
  }
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

const peftKey = (module: string, which: 'A' | 'B'): string => `base_model.model.${module}.lora_${which}.weight`

/** Per-module adapter (transformers 4.57 names): attention q/v, every expert, the router, and the shared expert where there is one. */
function perModuleAdapter(
  c: MoeConfig,
  seed: number,
): { tensors: Map<string, Tensor>; deltas: Map<string, Float32Array>; config: Record<string, unknown> } {
  const rng = new Rng(seed)
  const r = 2
  const alpha = 6
  const specs = paramSpecs(c).filter(
    (s) =>
      (s.kind === 'attn' && /\.(q_proj|v_proj)\.weight$/.test(s.name)) ||
      s.kind === 'expert' ||
      s.kind === 'router' ||
      (s.kind === 'shared_expert' && s.name.endsWith('gate_proj.weight')),
  )
  const tensors = new Map<string, Tensor>()
  const deltas = new Map<string, Float32Array>()
  // q_proj gets rank 3 and its own alpha through the patterns, as PEFT reads them.
  for (const s of specs) {
    const module = s.name.replace(/\.weight$/, '')
    const [out, inp] = s.shape
    const isQ = module.endsWith('q_proj')
    const rank = isQ ? 3 : r
    const scale = (isQ ? 4 : alpha) / rank
    const A = randn(rng, rank * inp, 0.3)
    const B = randn(rng, out * rank, 0.3)
    tensors.set(peftKey(module, 'A'), { shape: [rank, inp], data: A })
    tensors.set(peftKey(module, 'B'), { shape: [out, rank], data: B })
    deltas.set(s.name, product(B, A, out, rank, inp, scale))
  }
  const leaves = [
    ...new Set(
      specs.map((s) =>
        s.name
          .replace(/\.weight$/, '')
          .split('.')
          .pop()!,
      ),
    ),
  ]
  return {
    tensors,
    deltas,
    config: {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r,
      lora_alpha: alpha,
      rank_pattern: { q_proj: 3 },
      alpha_pattern: { 'self_attn.q_proj': 4 },
      target_modules: leaves,
      lora_dropout: 0.05,
      bias: 'none',
      use_rslora: false,
    },
  }
}

/**
 * Fused adapter (transformers 5, target_parameters): experts' gate_up_proj (inner, under
 * base_layer) and down_proj (outer), the router weight, and q_proj by module. Deltas follow
 * PEFT's ParamWrapper.get_delta_weight: ΔW[e] = scale · Σ_k B[:, k·E + e] ⊗ A[e·r + k, :],
 * gate_up rows [0, I) the gate projection, [I, 2I) the up projection.
 */
function fusedAdapter(
  c: MoeConfig,
  seed: number,
  rslora: boolean,
): { tensors: Map<string, Tensor>; deltas: Map<string, Float32Array>; config: Record<string, unknown> } {
  const rng = new Rng(seed)
  const r = 2
  const alpha = 4
  const rGU = 3 // rank_pattern for gate_up_proj
  const alphaGU = 9
  const E = c.numExperts
  const H = c.hiddenSize
  const I = c.expertIntermediateSize
  const scaleOf = (a: number, rk: number): number => (rslora ? a / Math.sqrt(rk) : a / rk)
  const tensors = new Map<string, Tensor>()
  const deltas = new Map<string, Float32Array>()
  const block = c.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'
  for (let L = 0; L < c.numLayers; L++) {
    const v5 = `model.layers.${L}.mlp` // transformers 5 names every family's block mlp
    for (const [param, rank, scale, inp, out, key] of [
      ['gate_up_proj', rGU, scaleOf(alphaGU, rGU), H, 2 * I, `${v5}.experts.base_layer`],
      ['down_proj', r, scaleOf(alpha, r), I, H, `${v5}.experts`],
    ] as const) {
      const A = randn(rng, rank * E * inp, 0.3) // (r·E, in)
      const B = randn(rng, out * rank * E, 0.3) // (out, r·E)
      tensors.set(peftKey(key, 'A'), { shape: [rank * E, inp], data: A })
      tensors.set(peftKey(key, 'B'), { shape: [out, rank * E], data: B })
      for (let e = 0; e < E; e++) {
        const d = new Float32Array(out * inp) // (out, in) of expert e
        for (let o = 0; o < out; o++)
          for (let k = 0; k < rank; k++) {
            const b = B[o * rank * E + k * E + e]
            for (let i = 0; i < inp; i++) d[o * inp + i] += scale * b * A[(e * rank + k) * inp + i]
          }
        const p = `model.layers.${L}.${block}.experts.${e}`
        const [gate, up, down] =
          c.family === 'mixtral'
            ? [`${p}.w1.weight`, `${p}.w3.weight`, `${p}.w2.weight`]
            : [`${p}.gate_proj.weight`, `${p}.up_proj.weight`, `${p}.down_proj.weight`]
        if (param === 'gate_up_proj') {
          deltas.set(gate, d.slice(0, I * H))
          deltas.set(up, d.slice(I * H))
        } else deltas.set(down, d)
      }
    }
    // The router: a 2-D target parameter, keyed by its module.
    const A = randn(rng, r * H, 0.3)
    const B = randn(rng, E * r, 0.3)
    tensors.set(peftKey(`${v5}.gate`, 'A'), { shape: [r, H], data: A })
    tensors.set(peftKey(`${v5}.gate`, 'B'), { shape: [E, r], data: B })
    deltas.set(`model.layers.${L}.${block}.gate.weight`, product(B, A, E, r, H, scaleOf(alpha, r)))
    const q = paramSpecs(c).find((s) => s.name === `model.layers.${L}.self_attn.q_proj.weight`)!
    const qa = randn(rng, r * H, 0.3)
    const qb = randn(rng, q.shape[0] * r, 0.3)
    tensors.set(peftKey(`model.layers.${L}.self_attn.q_proj`, 'A'), { shape: [r, H], data: qa })
    tensors.set(peftKey(`model.layers.${L}.self_attn.q_proj`, 'B'), { shape: [q.shape[0], r], data: qb })
    deltas.set(q.name, product(qb, qa, q.shape[0], r, H, scaleOf(alpha, r)))
  }
  return {
    tensors,
    deltas,
    config: {
      peft_type: 'LORA',
      r,
      lora_alpha: alpha,
      use_rslora: rslora,
      rank_pattern: { '.*\\.gate_up_proj': rGU },
      alpha_pattern: { '.*\\.gate_up_proj': alphaGU },
      target_modules: ['q_proj'],
      target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj', 'mlp.gate.weight'],
      lora_dropout: 0,
      bias: 'none',
    },
  }
}

function importInto(adapterDir: string, base: string, id = 'imported'): string {
  const runsRoot = mkdtempSync(join(tmpdir(), 'peft-runs-'))
  importAdapterRun({ adapterDir, baseModel: base, runsRoot, runId: id })
  return join(runsRoot, id)
}

describe('PEFT adapters open on their base model', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  for (const family of FAMILIES) {
    const base = join(FIX, family)

    it(`${family}: a per-module adapter (attention, every expert, router${family === 'qwen2_moe' ? ', shared expert' : ''}) gives the merged model's logits`, () => {
      const c = readModelConfig(base)
      const a = perModuleAdapter(c, 11)
      const dir = join(mkdtempSync(join(tmpdir(), 'peft-')), 'adapter')
      writeAdapter(dir, a.config, a.tensors)
      const runDir = importInto(dir, base)
      const run = new RunFolder(runDir).read()
      expect(run.status).toBe('completed')
      expect(run.importedFrom).toBe(dir) // the app reads it as imported, not as a run that never trained
      expect(run.config.method).toBe('lora')
      expect(new Set(run.config.lora.targets)).toEqual(
        new Set(['attention', 'experts', 'router', ...(family === 'qwen2_moe' ? ['shared_expert'] : [])]),
      )
      const want = logitsOf(mergedFolder(base, a.deltas))
      const got = runLogits(runDir)
      // The adapters change the logits far beyond the tolerance: the check is not vacuous.
      expect(maxDiff(logitsOf(base), want)).toBeGreaterThan(1e-2)
      expect(maxDiff(got, want)).toBeLessThan(2e-4)
    })

    it(`${family}: a fused-experts adapter (target_parameters, nested wrappers, rank/alpha patterns, rsLoRA) gives the merged model's logits`, () => {
      const c = readModelConfig(base)
      const a = fusedAdapter(c, 5, true)
      const dir = join(mkdtempSync(join(tmpdir(), 'peft-')), 'adapter')
      writeAdapter(dir, a.config, a.tensors)
      const runDir = importInto(dir, base)
      const want = logitsOf(mergedFolder(base, a.deltas))
      expect(maxDiff(logitsOf(base), want)).toBeGreaterThan(1e-2)
      expect(maxDiff(runLogits(runDir), want)).toBeLessThan(2e-4)
    })
  }

  it('an adapter saved in BF16 (a bf16 run) imports with its rounded values', () => {
    const base = join(FIX, 'olmoe')
    const c = readModelConfig(base)
    const a = fusedAdapter(c, 8, false)
    const dir = join(mkdtempSync(join(tmpdir(), 'peft-')), 'adapter')
    writeAdapter(dir, a.config, a.tensors, 'BF16')
    // The reference merges the BF16-rounded values the file holds.
    const rounded = new Map<string, Tensor>()
    for (const [k, t] of loadSafetensors(join(dir, 'adapter_model.safetensors')).tensors)
      rounded.set(k, { shape: t.shape, data: t.data as Float32Array })
    const again = join(mkdtempSync(join(tmpdir(), 'peft-')), 'adapter')
    writeAdapter(again, a.config, rounded)
    expect(maxDiff(runLogits(importInto(dir, base, 'a')), runLogits(importInto(again, base, 'b')))).toBe(0)
  })

  it("the workbench's own adapter goes through the same import and merges to the same model", async () => {
    const base = join(FIX, 'qwen2_moe')
    const model = loadModel(base)
    const cfg = validateRunConfig({
      method: 'lora',
      lora: { rank: 3, alpha: 5, targets: ['attention', 'experts', 'shared_expert', 'router'] },
    })
    const lora = new LoraAdapters(model, cfg.lora, 7)
    const rng = new Rng(3)
    for (const b of lora.B.values()) b.assign(tf.tensor(randn(rng, b.size, 0.3), b.shape))
    const want = tf.tidy(
      () => model.forward(IDS, { weights: lora.wrap(model.weightSource, { training: false }) }).logits.dataSync() as Float32Array,
    )
    const peft = await lora.toPeft(base)
    lora.dispose()
    model.dispose()
    const dir = join(mkdtempSync(join(tmpdir(), 'peft-')), 'own')
    mkdirSync(dir)
    saveSafetensors(join(dir, 'adapter_model.safetensors'), peft.tensors, { format: 'pt' })
    writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify(peft.config))
    const runDir = importInto(dir, base)
    expect(maxDiff(runLogits(runDir), want)).toBeLessThan(1e-5)
    // Merge and export: the imported run exports like a run trained here (the export checks the merge itself).
    const out = join(mkdtempSync(join(tmpdir(), 'peft-export-')), 'merged')
    const r = await exportRun(runDir, out, { dtype: 'float32' })
    expect(r.mergedLora).toBe(true)
    expect(maxDiff(logitsOf(out), want)).toBeLessThan(2e-4)
  })

  describe('mismatches are named', () => {
    const base = join(FIX, 'mixtral')
    const c = () => readModelConfig(base)
    const attempt = (config: Record<string, unknown>, tensors: Map<string, Tensor>, on = base): (() => void) => {
      const dir = join(mkdtempSync(join(tmpdir(), 'peft-bad-')), 'adapter')
      writeAdapter(dir, config, tensors)
      return () => importInto(dir, on)
    }
    const ok = () => perModuleAdapter(c(), 1)

    it('rank or alpha missing', () => {
      const a = ok()
      const { r: _r, ...noRank } = a.config
      expect(attempt(noRank, a.tensors)).toThrow(/r is missing \(the LoRA rank/)
      const { lora_alpha: _a, ...noAlpha } = a.config
      expect(attempt(noAlpha, a.tensors)).toThrow(/lora_alpha is missing/)
    })

    it('an adapter of another base model: shapes named', () => {
      const a = ok()
      expect(attempt(a.config, a.tensors, join(FIX, 'olmoe'))).toThrow(/does not have|takes \d+ inputs|gives \d+ outputs/)
      // Same module names, other widths: the shape is named.
      const t = new Map(a.tensors)
      const k = peftKey('model.layers.0.self_attn.k_proj', 'A')
      t.set(peftKey('model.layers.0.self_attn.v_proj', 'A'), { shape: [2, 64], data: new Float32Array(128) })
      void k
      expect(attempt(a.config, t)).toThrow(
        /model\.layers\.0\.self_attn\.v_proj: lora_A is \[2,64\], so it takes 64 inputs, but the base model's .* takes 48/,
      )
    })

    it('unknown target modules', () => {
      const a = ok()
      const t = new Map(a.tensors)
      t.set(peftKey('model.layers.0.mlp.fc_in', 'A'), { shape: [2, 48], data: new Float32Array(96) })
      t.set(peftKey('model.layers.0.mlp.fc_in', 'B'), { shape: [48, 2], data: new Float32Array(96) })
      expect(attempt(a.config, t)).toThrow(/targets 1 module\(s\) this mixtral model does not have: model\.layers\.0\.mlp\.fc_in/)
    })

    it('a rank that disagrees with adapter_config.json', () => {
      const a = ok()
      expect(attempt({ ...a.config, r: 4 }, a.tensors)).toThrow(/have rank 2, but adapter_config\.json gives it rank 4/)
    })

    it('what the workbench cannot apply: DoRA, biases, embeddings, full modules', () => {
      const a = ok()
      expect(attempt({ ...a.config, use_dora: true }, a.tensors)).toThrow(/DoRA/)
      expect(attempt({ ...a.config, bias: 'all' }, a.tensors)).toThrow(/bias/)
      const emb = new Map(a.tensors)
      emb.set('base_model.model.model.embed_tokens.lora_embedding_A', { shape: [2, 128], data: new Float32Array(256) })
      expect(attempt(a.config, emb)).toThrow(/embedding/)
      const full = new Map(a.tensors)
      full.set('base_model.model.lm_head.weight', { shape: [128, 48], data: new Float32Array(128 * 48) })
      expect(attempt(a.config, full)).toThrow(/not LoRA matrices.*modules_to_save/)
    })

    it('a folder without the files, or a model folder', () => {
      const empty = mkdtempSync(join(tmpdir(), 'peft-empty-'))
      expect(() => importInto(empty, base)).toThrow(/no adapter_config\.json: not a PEFT adapter folder/)
      expect(() => importInto(base, base)).toThrow(/a whole model/)
    })
  })

  it("PEFT's pattern matching: the first pattern that matches a suffix at a dot boundary", () => {
    expect(patternValue({ q_proj: 3 }, 'model.layers.0.self_attn.q_proj')).toBe(3)
    expect(patternValue({ q_proj: 3 }, 'model.layers.0.self_attn.xq_proj')).toBeUndefined()
    expect(patternValue({ '.*\\.gate_up_proj': 6 }, 'model.layers.1.mlp.experts.gate_up_proj')).toBe(6)
    expect(patternValue({ 'layers.0.self_attn.q_proj': 1, q_proj: 2 }, 'model.layers.0.self_attn.q_proj')).toBe(1)
    expect(() => parsePeftConfig({ r: 8, lora_alpha: 16, rank_pattern: { '(': 2 } })).toThrow(
      /rank_pattern: "\(" is not a regular expression/,
    )
    expect(() => parsePeftConfig({ r: 0, lora_alpha: 16 })).toThrow(/r is 0; expected the LoRA rank/)
    expect(() => parsePeftConfig({ peft_type: 'IA3', r: 8, lora_alpha: 16 })).toThrow(/only LoRA adapters/)
  })
})
