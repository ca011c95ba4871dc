/**
 * Bringing a LoRA adapter back from a cluster: a PEFT adapter folder (adapter_config.json +
 * adapter_model.safetensors, as LLaMA-Factory, axolotl or any `PeftModel.save_pretrained` writes
 * it) becomes a run of the workspace whose checkpoint holds the adapter in the workbench's own
 * layout, so evaluation, merge/export (and, through the export, chat and expert analysis) open it
 * exactly like an adapter trained here.
 *
 * Layouts read (PEFT 0.17-0.21, transformers 4.57 and 5.x):
 * - per module: `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight` [out, r]
 *   for every nn.Linear PEFT wrapped: attention, per-expert projections
 *   (`block_sparse_moe.experts.N.w1|w2|w3` for mixtral, `mlp.experts.N.gate_proj|up_proj|down_proj`
 *   for qwen2_moe, olmoe and qwen3_moe), the shared expert, dense MLPs, the router `gate`, lm_head;
 * - fused experts (`target_parameters`, transformers 5: experts are one [E, out, in] parameter):
 *   `...mlp.experts.lora_A.weight` [r·E, in] and `.lora_B.weight` [out, r·E]; with both
 *   `gate_up_proj` and `down_proj` targeted the wrappers nest and gate_up_proj (registered first)
 *   is the inner one, under `.experts.base_layer.`. For expert e: A_e = A[e·r:(e+1)·r] (expert-major
 *   rows), B_e = B[:, e::E] (rank-major columns), ΔW_e = scale·B_e·A_e; gate_up_proj's rows [0, I)
 *   are the gate projection (w1), [I, 2I) the up projection (w3). Mixtral's block is `mlp` there.
 *   (PEFT src/peft/tuners/lora/layer.py ParamWrapper.get_delta_weight; verified against peft 0.21.0
 *   with transformers 5.18.0.)
 * - scale: lora_alpha / r, or lora_alpha / √r with use_rslora; `rank_pattern` and `alpha_pattern`
 *   resolved per module as PEFT does (utils/other.py get_pattern_key: the first pattern P with
 *   re.match(rf"(.*\.)?({P})$", key) wins; for a fused parameter the key is `<module>.<parameter>`).
 *
 * The workbench's adapters share one rank and one scale, so the imported adapter is stored with
 * rank R = the largest rank found, alpha = R (scale 1), each module's own scale folded into its B,
 * smaller ranks padded with zero rows/columns, and targeted layers the adapter leaves out zero:
 * W + B'·A' equals W + scale·B·A for every module, exactly up to float rounding.
 */
import { existsSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { paramSpecs, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'
import { validateRunConfig, type LoraTarget } from '../../shared/runConfig'
import type { RunRecord } from '../../shared/runs'
import { readModelConfig } from '../engine/checkpoint'
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../engine/safetensors'
import { RunFolder } from '../runs/runFolder'
import { writeJsonAtomic } from '../util/atomic'
import { loraTargetNames, peftName } from '../train/lora'

export class AdapterImportError extends Error {}

/** The PEFT adapter_config.json fields the import reads (others are ignored). */
export interface PeftAdapterConfig {
  r: number
  lora_alpha: number
  use_rslora: boolean
  rank_pattern: Record<string, number>
  alpha_pattern: Record<string, number>
  target_modules: string[] | string | null
  target_parameters: string[] | null
  lora_dropout: number
  base_model_name_or_path: string | null
}

export interface AdapterTensor {
  shape: number[]
  data: Float32Array
}

/** One adapted weight of the base model, in the workbench's naming. */
export interface ImportedModule {
  /** The base weight, e.g. model.layers.0.block_sparse_moe.experts.3.w1.weight. */
  weight: string
  /** Its rank in the adapter and its scale (alpha / r or alpha / √r). */
  rank: number
  scale: number
  /** Where it came from: a per-module LoRA, or a slice of a fused experts parameter. */
  layout: 'module' | 'fused'
}

export interface ConvertedAdapter {
  /** The workbench rank (the largest of the adapter's) and alpha (= rank: scale 1, each module's folded into B). */
  rank: number
  alpha: number
  dropout: number
  targets: LoraTarget[]
  /** Adapter matrices under the workbench's PEFT names, for every weight of `targets`. */
  tensors: Map<string, AdapterTensor>
  modules: ImportedModule[]
  layouts: ('module' | 'fused')[]
}

const KIND_TARGET: Partial<Record<ParamSpec['kind'], LoraTarget>> = {
  attn: 'attention',
  expert: 'experts',
  shared_expert: 'shared_expert',
  router: 'router',
  dense_mlp: 'dense_mlp',
  lm_head: 'lm_head',
}

const PREFIX = 'base_model.model.'

function fail(message: string): never {
  throw new AdapterImportError(message)
}

/** Reads and checks adapter_config.json: a LoRA adapter with its rank and alpha, and nothing the workbench cannot apply. */
export function parsePeftConfig(raw: unknown, file = 'adapter_config.json'): PeftAdapterConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail(`${file}: must hold a JSON object`)
  const c = raw as Record<string, unknown>
  if (c.peft_type !== undefined && c.peft_type !== 'LORA')
    fail(`${file}: peft_type is ${JSON.stringify(c.peft_type)}; only LoRA adapters (peft_type "LORA") can be imported`)
  const num = (key: string, ok: (n: number) => boolean, what: string): number => {
    const v = c[key]
    if (v === undefined || v === null) fail(`${file}: ${key} is missing (${what}); PEFT writes it, so the file is incomplete`)
    if (typeof v !== 'number' || !ok(v)) fail(`${file}: ${key} is ${JSON.stringify(v)}; expected ${what}`)
    return v
  }
  const r = num('r', (n) => Number.isInteger(n) && n > 0, 'the LoRA rank, a positive whole number')
  const lora_alpha = num('lora_alpha', (n) => Number.isFinite(n) && n > 0, 'the LoRA scale numerator, a positive number')
  const pattern = (key: string, integer: boolean): Record<string, number> => {
    const v = c[key]
    if (v === undefined || v === null) return {}
    if (typeof v !== 'object' || Array.isArray(v)) fail(`${file}: ${key} must map module patterns to numbers`)
    for (const [k, n] of Object.entries(v as Record<string, unknown>)) {
      if (typeof n !== 'number' || !(n > 0) || (integer && !Number.isInteger(n)))
        fail(`${file}: ${key}.${k} is ${JSON.stringify(n)}; expected a positive ${integer ? 'whole number' : 'number'}`)
      try {
        new RegExp(k)
      } catch {
        fail(`${file}: ${key}: ${JSON.stringify(k)} is not a regular expression`)
      }
    }
    return v as Record<string, number>
  }
  const refuse = (key: string, bad: (v: unknown) => boolean, why: string): void => {
    if (c[key] !== undefined && c[key] !== null && bad(c[key])) fail(`${file}: ${key} is ${JSON.stringify(c[key])}: ${why}`)
  }
  refuse('use_dora', (v) => v === true, 'DoRA adapters have no equivalent in the workbench (its LoRA has no magnitude vector)')
  refuse('fan_in_fan_out', (v) => v === true, 'fan-in/fan-out (GPT-2 Conv1D) weights are not used by any MoE family here')
  refuse('bias', (v) => v !== 'none', 'the workbench LoRA trains no biases; import adapters saved with bias "none"')
  refuse('lora_bias', (v) => v === true, 'a bias on lora_B has no equivalent in the workbench')
  refuse(
    'layer_replication',
    (v) => Array.isArray(v) && v.length > 0,
    'layer replication changes the model; it cannot be applied to the base model',
  )
  const targetParameters = c.target_parameters
  if (
    targetParameters !== undefined &&
    targetParameters !== null &&
    !(Array.isArray(targetParameters) && targetParameters.every((t) => typeof t === 'string'))
  )
    fail(`${file}: target_parameters must be a list of parameter names`)
  const dropout = typeof c.lora_dropout === 'number' && c.lora_dropout >= 0 && c.lora_dropout <= 1 ? c.lora_dropout : 0
  return {
    r,
    lora_alpha,
    use_rslora: c.use_rslora === true,
    rank_pattern: pattern('rank_pattern', true),
    alpha_pattern: pattern('alpha_pattern', false),
    target_modules: (c.target_modules as PeftAdapterConfig['target_modules']) ?? null,
    target_parameters: (targetParameters as string[] | null | undefined) ?? null,
    lora_dropout: dropout,
    base_model_name_or_path: typeof c.base_model_name_or_path === 'string' ? c.base_model_name_or_path : null,
  }
}

/** PEFT's get_pattern_key: the first pattern P with re.match(rf"(.*\.)?({P})$", key), or undefined. */
export function patternValue(patterns: Record<string, number>, key: string): number | undefined {
  for (const [p, v] of Object.entries(patterns)) if (new RegExp(`^(?:.*\\.)?(?:${p})$`).test(key)) return v
  return undefined
}

/** The rank and scale PEFT uses for the module or parameter named `key`. */
export function rankAndScale(c: PeftAdapterConfig, key: string): { rank: number; scale: number } {
  const rank = patternValue(c.rank_pattern, key) ?? c.r
  const alpha = patternValue(c.alpha_pattern, key) ?? c.lora_alpha
  return { rank, scale: c.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank }
}

/** Reads an adapter folder: its config and every tensor as float32. */
export function readPeftAdapter(dir: string): { config: PeftAdapterConfig; tensors: Map<string, AdapterTensor> } {
  const abs = resolve(dir)
  if (!existsSync(abs) || !statSync(abs).isDirectory()) fail(`${abs} is not a folder`)
  const cfgFile = join(abs, 'adapter_config.json')
  if (!existsSync(cfgFile)) {
    const hint = existsSync(join(abs, 'config.json')) ? ' (it holds config.json: a whole model; link it as a model instead)' : ''
    fail(`${abs} has no adapter_config.json: not a PEFT adapter folder${hint}`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(cfgFile, 'utf8'))
  } catch (e) {
    fail(`${cfgFile}: not valid JSON (${(e as Error).message})`)
  }
  const config = parsePeftConfig(raw, cfgFile)
  const file = join(abs, 'adapter_model.safetensors')
  if (!existsSync(file)) {
    const bin = existsSync(join(abs, 'adapter_model.bin'))
      ? ' (adapter_model.bin is a pickle, which the workbench does not read: save it again with safe_serialization=True)'
      : ''
    fail(`${abs} has no adapter_model.safetensors${bin}`)
  }
  const tensors = new Map<string, AdapterTensor>()
  for (const [name, t] of loadSafetensors(file).tensors) {
    if (!(t.data instanceof Float32Array)) fail(`${file}: ${name} is not a floating-point tensor`)
    tensors.set(name, { shape: t.shape, data: t.data })
  }
  if (tensors.size === 0) fail(`${file} holds no tensors`)
  return { config, tensors }
}

interface Pair {
  A?: AdapterTensor
  B?: AdapterTensor
}

/** Groups the adapter's tensors by module; names what is not a LoRA matrix. */
function groupByModule(tensors: Map<string, AdapterTensor>): Map<string, Pair> {
  const modules = new Map<string, Pair>()
  const unknown: string[] = []
  for (const [key, t] of tensors) {
    if (/\.lora_embedding_[AB]\b/.test(key))
      fail(`${key}: LoRA on an embedding has no equivalent in the workbench (retrain without embed_tokens in the targets)`)
    if (/\.lora_magnitude_vector\b/.test(key)) fail(`${key}: a DoRA magnitude vector; DoRA adapters cannot be imported`)
    const m = /^(.*)\.lora_([AB])(?:\.[A-Za-z0-9_-]+)?\.weight$/.exec(key)
    if (!m || !m[1].startsWith(PREFIX)) {
      unknown.push(key)
      continue
    }
    const module = m[1].slice(PREFIX.length)
    const pair = modules.get(module) ?? {}
    pair[m[2] as 'A' | 'B'] = t
    modules.set(module, pair)
  }
  if (unknown.length)
    fail(
      `adapter_model.safetensors holds ${unknown.length} tensor(s) that are not LoRA matrices, e.g. ${unknown.slice(0, 3).join(', ')}` +
        (unknown.some((u) => u.endsWith('.weight') || u.endsWith('.bias'))
          ? ' (full modules saved with modules_to_save, or biases: the workbench imports LoRA matrices only; retrain without them)'
          : ''),
    )
  for (const [module, p] of modules) {
    if (!p.A) fail(`${module}: lora_B without lora_A in adapter_model.safetensors`)
    if (!p.B) fail(`${module}: lora_A without lora_B in adapter_model.safetensors`)
    if (p.A.shape.length !== 2 || p.B.shape.length !== 2)
      fail(`${module}: lora_A [${p.A.shape}] and lora_B [${p.B.shape}] must be matrices`)
  }
  return modules
}

const FUSED = /^model\.layers\.(\d+)\.(?:mlp|block_sparse_moe)\.experts(\.base_layer)?$/

/**
 * Converts a PEFT adapter for a base model of `config` to the workbench's adapter layout. Throws
 * AdapterImportError naming the module and the shapes when the adapter does not fit the model.
 */
export function convertPeftAdapter(
  adapter: { config: PeftAdapterConfig; tensors: Map<string, AdapterTensor> },
  config: MoeConfig,
): ConvertedAdapter {
  const pc = adapter.config
  const specs = paramSpecs(config)
  const byName = new Map(specs.map((s) => [s.name, s]))
  const modules = groupByModule(adapter.tensors)
  const found = new Map<string, { A: Float32Array; B: Float32Array; rank: number; scale: number; layout: 'module' | 'fused' }>()
  const unknown: string[] = []
  const layouts = new Set<'module' | 'fused'>()
  const E = config.numExperts
  const H = config.hiddenSize
  const I = config.expertIntermediateSize

  // Transformers 5 names Mixtral's MoE block `mlp`; the checkpoints (and the workbench) say block_sparse_moe.
  const hubName = (module: string): string =>
    config.family === 'mixtral' ? module.replace(/^(model\.layers\.\d+)\.mlp\./, '$1.block_sparse_moe.') : module

  const fusedParams = (pc.target_parameters ?? []).map((p) => p.split('.').pop()!)
  for (const [module, { A, B }] of modules) {
    const fused = FUSED.exec(module)
    if (fused) continue
    const weight = `${hubName(module)}.weight`
    const spec = byName.get(weight)
    if (!spec || spec.shape.length !== 2) {
      unknown.push(module)
      continue
    }
    const target = KIND_TARGET[spec.kind]
    if (!target)
      fail(
        `${module} (${spec.kind.replace(/_/g, ' ')}) has no LoRA equivalent in the workbench, which adapts ${Object.values(KIND_TARGET).join(', ')}; retrain with explicit targets that leave it out`,
      )
    const [out, inp] = spec.shape
    // A 2-D target_parameters entry (the v5 router, mlp.gate.weight) is keyed `<module>.weight`.
    const key = pc.target_parameters?.some((p) => `${module}.weight`.endsWith(p)) ? `${module}.weight` : module
    const { rank, scale } = rankAndScale(pc, key)
    checkShapes(module, A, B, rank, inp, out, `${weight} [${out}, ${inp}]`)
    found.set(weight, { A: A!.data, B: B!.data, rank, scale, layout: 'module' })
    layouts.add('module')
  }

  // Fused experts: per layer, the outer wrapper and (when two parameters are targeted) the inner one.
  const fusedLayers = new Map<number, { outer?: Pair & { module: string }; inner?: Pair & { module: string } }>()
  for (const [module, pair] of modules) {
    const m = FUSED.exec(module)
    if (!m) continue
    const layer = Number(m[1])
    if (!byName.has(`model.layers.${layer}.${config.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'}.gate.weight`)) {
      unknown.push(module)
      continue
    }
    const slot = fusedLayers.get(layer) ?? {}
    slot[m[2] ? 'inner' : 'outer'] = { ...pair, module }
    fusedLayers.set(layer, slot)
  }
  for (const [layer, slot] of fusedLayers) {
    const assigned: { param: 'gate_up_proj' | 'down_proj'; pair: Pair & { module: string } }[] = []
    if (slot.inner) {
      // Two nested ParamWrappers: gate_up_proj is registered first, so it is the inner one.
      if (!slot.outer) fail(`${slot.inner.module}: a nested experts adapter without its outer one`)
      assigned.push({ param: 'gate_up_proj', pair: slot.inner }, { param: 'down_proj', pair: slot.outer })
    } else if (slot.outer) {
      const named = fusedParams.filter((p) => p === 'gate_up_proj' || p === 'down_proj')
      let param: 'gate_up_proj' | 'down_proj'
      if (named.length === 1) param = named[0] as 'gate_up_proj' | 'down_proj'
      else if (slot.outer.A!.shape[1] === H && H !== I) param = 'gate_up_proj'
      else if (slot.outer.A!.shape[1] === I && H !== I) param = 'down_proj'
      else
        fail(
          `${slot.outer.module}: cannot tell whether this fused experts adapter is gate_up_proj or down_proj (adapter_config.json target_parameters: ${JSON.stringify(pc.target_parameters)})`,
        )
      assigned.push({ param, pair: slot.outer })
    }
    for (const { param, pair } of assigned) {
      const moduleKey = pair.module.replace(/\.base_layer$/, '')
      const { rank, scale } = rankAndScale(pc, `${moduleKey}.${param}`)
      const inp = param === 'gate_up_proj' ? H : I
      const out = param === 'gate_up_proj' ? 2 * I : H
      checkShapes(
        `${pair.module} (${param}, ${E} experts)`,
        pair.A,
        pair.B,
        rank * E,
        inp,
        out,
        `experts.${param} [${E}, ${out}, ${inp}] of layer ${layer}`,
      )
      for (let e = 0; e < E; e++) {
        const names = expertNames(config, layer, e)
        const A_e = pair.A!.data.slice(e * rank * inp, (e + 1) * rank * inp) // (r, in)
        const column = (row0: number, rows: number): Float32Array => {
          // B_e = B[row0:row0+rows, e::E] (rank-major columns): (rows, r)
          const Bd = pair.B!.data
          const cols = rank * E
          const outB = new Float32Array(rows * rank)
          for (let o = 0; o < rows; o++) for (let k = 0; k < rank; k++) outB[o * rank + k] = Bd[(row0 + o) * cols + k * E + e]
          return outB
        }
        const parts: [string, Float32Array][] =
          param === 'gate_up_proj'
            ? [
                [names.gate, column(0, I)],
                [names.up, column(I, I)],
              ]
            : [[names.down, column(0, H)]]
        for (const [weight, B_e] of parts) {
          if (found.has(weight)) fail(`${weight} is adapted twice: by a per-expert module and by ${pair.module}`)
          found.set(weight, { A: A_e, B: B_e, rank, scale, layout: 'fused' })
        }
      }
      layouts.add('fused')
    }
  }

  if (unknown.length) {
    const sample = specs
      .filter((s) => KIND_TARGET[s.kind] && s.shape.length === 2)
      .slice(0, 4)
      .map((s) => s.name.replace(/\.weight$/, ''))
    fail(
      `the adapter targets ${unknown.length} module(s) this ${config.family} model does not have: ${unknown.slice(0, 4).join(', ')}${unknown.length > 4 ? ', ...' : ''} (its modules are named like ${sample.join(', ')}); is it an adapter of another base model?`,
    )
  }
  if (found.size === 0) fail('the adapter holds no LoRA matrices')

  const targets = [...new Set([...found.keys()].map((w) => KIND_TARGET[byName.get(w)!.kind]!))]
  const R = Math.max(...[...found.values()].map((f) => f.rank))
  const tensors = new Map<string, AdapterTensor>()
  for (const name of loraTargetNames(specs, targets)) {
    const [out, inp] = byName.get(name)!.shape
    if (R > Math.min(out, inp))
      fail(
        `rank ${R} exceeds the smaller side of ${name} [${out}, ${inp}]: the workbench's LoRA gives every targeted ${KIND_TARGET[byName.get(name)!.kind]} layer one rank, at most ${Math.min(out, inp)} here`,
      )
    const A = new Float32Array(R * inp)
    const B = new Float32Array(out * R)
    const f = found.get(name)
    if (f) {
      A.set(f.A)
      for (let o = 0; o < out; o++) for (let k = 0; k < f.rank; k++) B[o * R + k] = f.B[o * f.rank + k] * f.scale
    }
    tensors.set(peftName(name, 'A'), { shape: [R, inp], data: A })
    tensors.set(peftName(name, 'B'), { shape: [out, R], data: B })
  }
  const order = new Map(specs.map((s, i) => [s.name, i]))
  return {
    rank: R,
    alpha: R,
    dropout: pc.lora_dropout,
    targets,
    tensors,
    modules: [...found.entries()]
      .sort((a, b) => order.get(a[0])! - order.get(b[0])!)
      .map(([weight, f]) => ({ weight, rank: f.rank, scale: f.scale, layout: f.layout })),
    layouts: [...layouts],
  }
}

function expertNames(c: MoeConfig, layer: number, e: number): { gate: string; up: string; down: string } {
  const p = `model.layers.${layer}.${c.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'}.experts.${e}`
  return c.family === 'mixtral'
    ? { gate: `${p}.w1.weight`, up: `${p}.w3.weight`, down: `${p}.w2.weight` }
    : { gate: `${p}.gate_proj.weight`, up: `${p}.up_proj.weight`, down: `${p}.down_proj.weight` }
}

function checkShapes(
  module: string,
  A: AdapterTensor | undefined,
  B: AdapterTensor | undefined,
  rank: number,
  inp: number,
  out: number,
  base: string,
): void {
  const [ar, ac] = A!.shape
  const [br, bc] = B!.shape
  if (ac !== inp)
    fail(
      `${module}: lora_A is [${A!.shape}], so it takes ${ac} inputs, but the base model's ${base} takes ${inp}: the adapter belongs to another base model`,
    )
  if (br !== out)
    fail(
      `${module}: lora_B is [${B!.shape}], so it gives ${br} outputs, but the base model's ${base} gives ${out}: the adapter belongs to another base model`,
    )
  if (ar !== rank || bc !== rank)
    fail(
      `${module}: lora_A [${A!.shape}] and lora_B [${B!.shape}] have rank ${ar === bc ? ar : `${ar}/${bc}`}, but adapter_config.json gives it rank ${rank} (r and rank_pattern)`,
    )
}

export interface ImportAdapterOptions {
  adapterDir: string
  /** The base model folder the adapter applies to. */
  baseModel: string
  /** The workspace's runs/ folder and the new run's id. */
  runsRoot: string
  runId: string
  name?: string
}

/**
 * Imports an adapter folder as a completed LoRA run: runs/<id>/run.json and
 * checkpoints/step-N/ (adapter_model.safetensors and adapter_config.json in the workbench's
 * layout, trainer_state.json), written into a hidden folder renamed into place at the end.
 */
export function importAdapterRun(opts: ImportAdapterOptions): RunRecord {
  const adapterDir = resolve(opts.adapterDir)
  const baseModel = resolve(opts.baseModel)
  const adapter = readPeftAdapter(adapterDir)
  let modelConfig: MoeConfig
  try {
    modelConfig = readModelConfig(baseModel)
  } catch (e) {
    throw new AdapterImportError(`base model ${baseModel}: ${(e as Error).message}`)
  }
  const converted = convertPeftAdapter(adapter, modelConfig)
  const state = readTrainerState(adapterDir)
  const step = state?.global_step ?? 0
  const finalDir = join(opts.runsRoot, opts.runId)
  if (existsSync(finalDir)) fail(`a run named ${opts.runId} exists already`)
  const tmpDir = join(opts.runsRoot, `.import-${opts.runId}`)
  rmSync(tmpDir, { recursive: true, force: true })
  const config = validateRunConfig({
    method: 'lora',
    lora: { rank: converted.rank, alpha: converted.alpha, dropout: converted.dropout, targets: converted.targets },
  })
  const now = new Date().toISOString()
  const layoutWords = converted.layouts.map((l) => (l === 'fused' ? 'fused experts (target_parameters)' : 'per-module')).join(' and ')
  const record: RunRecord = {
    id: opts.runId,
    name: opts.name ?? `${basename(adapterDir)} (imported adapter)`,
    status: 'completed',
    config,
    baseModel,
    created: now,
    updated: now,
    step,
    totalSteps: step,
    bestValLoss: null,
    lastCheckpoint: join(finalDir, 'checkpoints', `step-${step}`),
    importedFrom: adapterDir,
    message: `imported PEFT LoRA adapter from ${adapterDir}: ${converted.modules.length} weights (${converted.targets.join(', ')}), ${layoutWords} layout, r=${adapter.config.r}, lora_alpha=${adapter.config.lora_alpha}${adapter.config.use_rslora ? ', rsLoRA' : ''}`,
  }
  try {
    const folder = new RunFolder(tmpDir)
    folder.write(record)
    folder.appendLog(record.message!)
    folder.writeCheckpoint(step, (tmp) => {
      const tensors = new Map<string, TensorToWrite>()
      for (const [n, t] of converted.tensors) tensors.set(n, { dtype: 'F32', shape: t.shape, data: t.data })
      saveSafetensors(join(tmp, 'adapter_model.safetensors'), tensors, { format: 'pt' })
      writeJsonAtomic(join(tmp, 'adapter_config.json'), {
        peft_type: 'LORA',
        task_type: 'CAUSAL_LM',
        base_model_name_or_path: baseModel,
        r: converted.rank,
        lora_alpha: converted.alpha,
        lora_dropout: converted.dropout,
        target_modules: loraTargetNames(paramSpecs(modelConfig), converted.targets).map((n) => n.replace(/\.weight$/, '')),
        bias: 'none',
        fan_in_fan_out: false,
        moe_workbench: { targets: converted.targets, importedFrom: adapterDir, scalesFoldedIntoB: true },
      })
      writeJsonAtomic(join(tmp, 'trainer_state.json'), {
        step,
        imported: { from: adapterDir, peft: adapter.config, modules: converted.modules.length, layouts: converted.layouts },
      })
    })
    renameSync(tmpDir, finalDir)
  } catch (e) {
    rmSync(tmpDir, { recursive: true, force: true })
    throw e
  }
  return record
}

/** The HF Trainer's trainer_state.json beside an adapter (an output_dir or a checkpoint-N), when the trainer left one. */
function readTrainerState(dir: string): { global_step?: number } | null {
  for (const f of [join(dir, 'trainer_state.json')]) {
    try {
      const s = JSON.parse(readFileSync(f, 'utf8')) as { global_step?: unknown }
      if (typeof s.global_step === 'number' && Number.isInteger(s.global_step) && s.global_step >= 0) return { global_step: s.global_step }
    } catch {
      // none, or not the trainer's
    }
  }
  return null
}
