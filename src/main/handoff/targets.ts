/**
 * What a workbench run becomes in another trainer: the LLaMA-Factory or axolotl config, and a row
 * per run-config setting saying which key carries it (or that nothing does).
 *
 * Keys follow these versions, read from their source (recorded in TARGET_VERSIONS, printed in
 * every generated README):
 * - LLaMA-Factory 0.9.6.dev0 (hiyouga/LLaMA-Factory ff6d4d1, 2026-08): hparams/{model,data,
 *   finetuning,training}_args.py, data/README.md (dataset_info.json), launcher.py,
 *   model/model_utils/moe.py (moe_aux_loss_coef), model/adapter.py (lora_target, freeze).
 *   HF TrainingArguments keys pass through. Expert LoRA needs transformers 4.57.x there: on
 *   transformers 5 the routed experts are fused 3-D parameters that lora_target cannot reach.
 * - axolotl 0.18.0 (axolotl-ai-cloud/axolotl 067b021): utils/schemas/{config,model,peft,
 *   datasets,training}.py, utils/freeze.py (unfrozen_parameters), docs/dataset-formats. It pins
 *   transformers 5.14.1 and peft 0.19.1: routed experts are reached with lora_target_parameters.
 *
 * Pure: no I/O. src/main/handoff/handoff.ts writes what this returns.
 */
import type { RowKind } from '../../shared/dataset'
import { HANDOFF_TARGETS, UNSET, type HandoffTarget, type MappingRow } from '../../shared/handoff'
import { countParams, formatParamCount, paramSpecs, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'
import type { LoraTarget, RunConfig } from '../../shared/runConfig'
import type { ExpertSelection } from '../../shared/runs'
import { isTrainable } from '../train/freeze'
import { loraTargetNames } from '../train/lora'
import { chooseDeepSpeed, estimateMemory, gib, type DeepSpeedChoice, type MemoryEstimate } from './deepspeed'
import { toYaml, type YamlEntry, type YamlValue } from './yaml'

export { HANDOFF_TARGETS, type HandoffTarget, type MappingRow }

/** The versions whose keys this file follows. */
export const TARGET_VERSIONS = {
  llamafactory: {
    name: 'LLaMA-Factory',
    version: '0.9.6.dev0',
    source: 'hiyouga/LLaMA-Factory@ff6d4d12eeb035d6ce06805a5733dd7b29f2ac30',
    requires: 'peft<=0.18.1 as it pins',
  },
  axolotl: {
    name: 'axolotl',
    version: '0.18.0',
    source: 'axolotl-ai-cloud/axolotl@067b021c8b87a9e5e380b9173c704cf7340e30f5',
    requires: 'transformers 5.14.1 as it pins',
  },
} as const

/**
 * What the target needs for this run: its pins, and where LoRA reaches the routed experts or the
 * router, the versions that make them adaptable (LLaMA-Factory: transformers 4.57.x, where they
 * are nn.Linear; axolotl under ZeRO-3: peft>=0.21.0). A full or frozen fine-tune is not told of
 * LoRA's needs.
 */
export function targetRequires(target: HandoffTarget, c: RunConfig, zeroStage: number): string {
  const moeLora = c.method === 'lora' && (c.lora.targets.includes('experts') || c.lora.targets.includes('router'))
  const extra = !moeLora
    ? []
    : target === 'llamafactory'
      ? ['transformers 4.57.x for LoRA on routed experts or the router (pip install "transformers==4.57.6")']
      : zeroStage === 3
        ? ['peft>=0.21.0 for LoRA on fused experts under ZeRO-3 (huggingface/peft#3576)']
        : []
  return [...extra, TARGET_VERSIONS[target].requires].join('; ')
}

export interface HandoffDataset {
  /** The dataset's name in dataset_info.json (LLaMA-Factory). */
  key: string
  kind: RowKind
  /** Paths relative to the handoff folder. */
  trainFile: string
  validationFile: string | null
  trainRows: number
  validationRows: number
}

export interface HandoffInput {
  target: HandoffTarget
  config: RunConfig
  model: MoeConfig
  /** A hub id, or a path to the model folder as the cluster will see it. */
  modelRef: string
  /** The tokenizer has a chat template (the workbench uses it; the targets can too). */
  chatTemplate: boolean
  /**
   * false: the model the trainer loads (a path, or the copy) has no tokenizer at all; said once,
   * instead of a chat template it lacks.
   */
  tokenizer?: boolean
  dataset: HandoffDataset
  nodes: number
  gpusPerNode: number
  gpuMemoryBytes: number
  /**
   * The experts an ESFT run chose (its record, once it has scored them): the handed-off run
   * trains those and freezes the rest, as the run does here.
   */
  esft?: ExpertSelection
}

export interface HandoffPlan {
  target: HandoffTarget
  /** The trainer config file name and text. */
  trainerFile: string
  trainer: string
  /** LLaMA-Factory: data/dataset_info.json's content. */
  datasetInfo?: Record<string, unknown>
  deepspeed: DeepSpeedChoice
  memory: MemoryEstimate
  mapping: MappingRow[]
  warnings: string[]
  batch: { perDevice: number; gradAccumulation: number; devices: number; effective: number; workbench: number }
  launch: { single: string[]; multi: string[] }
}

// ---------------------------------------------------------------------------------------------
// Module names

/** HF module path of a weight under transformers 5 (Mixtral's block renamed to mlp). */
function v5Module(name: string): string {
  return name.replace(/\.weight$/, '').replace(/\.block_sparse_moe\./, '.mlp.')
}

/**
 * The shortest PEFT target_modules suffixes that select exactly `chosen` among `all` module paths
 * (PEFT matches a name when it equals the module path or ends with "." + name).
 */
export function exactSuffixes(chosen: string[], all: string[]): string[] {
  const picked = new Set(chosen)
  const others = all.filter((m) => !picked.has(m))
  const out = new Set<string>()
  for (const m of chosen) {
    const parts = m.split('.')
    for (let n = 1; n <= parts.length; n++) {
      const suffix = parts.slice(-n).join('.')
      const hits = (x: string): boolean => x === suffix || x.endsWith(`.${suffix}`)
      if (!others.some(hits)) {
        out.add(suffix)
        break
      }
    }
  }
  return [...out]
}

const linearKinds: ParamSpec['kind'][] = [
  'attn',
  'router',
  'expert',
  'shared_expert',
  'shared_expert_gate',
  'dense_mlp',
  'lm_head',
  'embed',
]

/** LLaMA-Factory lora_target on transformers 4.57 (every projection an nn.Linear, hub names). */
export function llamaFactoryLoraTarget(model: MoeConfig, targets: LoraTarget[]): string[] {
  const specs = paramSpecs(model)
  const all = specs.filter((s) => linearKinds.includes(s.kind) && s.shape.length === 2).map((s) => s.name.replace(/\.weight$/, ''))
  const chosen = loraTargetNames(specs, targets).map((n) => n.replace(/\.weight$/, ''))
  return exactSuffixes(chosen, all)
}

/** axolotl on transformers 5: nn.Linear targets by module name, routed experts and router by parameter. */
export function axolotlLoraTargets(model: MoeConfig, targets: LoraTarget[]): { modules: string[]; parameters: string[] } {
  const specs = paramSpecs(model)
  const isModule = (s: ParamSpec): boolean => s.kind !== 'expert' && s.kind !== 'router' && s.kind !== 'router_noise'
  const all = [
    ...new Set(specs.filter((s) => linearKinds.includes(s.kind) && s.shape.length === 2 && isModule(s)).map((s) => v5Module(s.name))),
  ]
  const chosen = [
    ...new Set(
      loraTargetNames(
        specs,
        targets.filter((t) => t !== 'experts' && t !== 'router'),
      ).map(v5Module),
    ),
  ]
  const parameters: string[] = []
  if (targets.includes('experts')) parameters.push('mlp.experts.gate_up_proj', 'mlp.experts.down_proj')
  if (targets.includes('router')) parameters.push('mlp.gate.weight')
  return { modules: exactSuffixes(chosen, all), parameters }
}

const FREEZE_KEYS = [
  'freeze.router',
  'freeze.attention',
  'freeze.embeddings',
  'freeze.allExperts',
  'freeze.experts',
  'freeze.trainableLayers',
  'freeze.trainableParts',
]

/**
 * LLaMA-Factory's freeze keys closest to the run's policy, and the weights (by name) where its
 * rule (model/adapter.py _setup_freeze_tuning: a parameter trains when its name contains
 * ".{layer}.{module}" for a chosen layer and module, or an extra module's name) differs from the
 * workbench's isTrainable.
 */
export function llamaFactoryFreeze(
  m: MoeConfig,
  c: RunConfig,
  esft?: ExpertSelection,
): { layers: number; modules: string[]; extra: string[]; differ: string[] } {
  const specs = paramSpecs(m)
  const block = m.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'
  const trains = (pred: (s: ParamSpec) => boolean): boolean => specs.some((s) => pred(s) && isTrainable(s, c, m, esft))
  const layers = c.method === 'freeze' && c.freeze.trainableLayers !== null ? c.freeze.trainableLayers : m.numLayers
  const modules: string[] = []
  if (trains((s) => s.name.includes('.self_attn.'))) modules.push('self_attn')
  if (trains((s) => s.name.includes(`.${block}.`))) modules.push(block)
  if (trains((s) => s.name.includes('.input_layernorm.'))) modules.push('input_layernorm')
  if (trains((s) => s.name.includes('.post_attention_layernorm.'))) modules.push('post_attention_layernorm')
  const extra: string[] = []
  if (trains((s) => s.name === 'model.embed_tokens.weight')) extra.push('embed_tokens')
  if (trains((s) => s.name === 'model.norm.weight')) extra.push('norm')
  if (trains((s) => s.name === 'lm_head.weight')) extra.push('lm_head')
  const ids = layers > 0 ? range(Math.max(0, m.numLayers - layers), m.numLayers) : range(0, Math.min(-layers, m.numLayers))
  const trainable = [...ids.flatMap((i) => (modules.length ? modules : ['']).map((mod) => `.${i}.${mod}`)), ...extra]
  const differ = specs.filter((s) => trainable.some((t) => s.name.includes(t)) !== isTrainable(s, c, m, esft)).map((s) => s.name)
  return { layers, modules: modules.length ? modules : ['all'], extra, differ }
}

function range(a: number, b: number): number[] {
  return Array.from({ length: Math.max(0, b - a) }, (_, i) => a + i)
}

/**
 * axolotl unfrozen_parameters that unfreeze exactly the workbench's trainable weights, in
 * transformers 5 names (experts fused per layer: a partly frozen layer gets [a:b] ranges over the
 * expert dimension). A name pattern covers every layer when all of them train it.
 */
export function axolotlUnfrozen(m: MoeConfig, c: RunConfig, esft?: ExpertSelection): string[] {
  const status = new Map<string, boolean | boolean[]>()
  for (const s of paramSpecs(m)) {
    const t = isTrainable(s, c, m, esft)
    if (s.kind === 'expert') {
      const fused = s.name
        .replace(/\.block_sparse_moe\./, '.mlp.')
        .replace(/experts\.\d+\.(w1|w3|gate_proj|up_proj)\.weight$/, 'experts.gate_up_proj')
        .replace(/experts\.\d+\.(w2|down_proj)\.weight$/, 'experts.down_proj')
      const flags = (status.get(fused) as boolean[] | undefined) ?? new Array<boolean>(m.numExperts).fill(true)
      flags[s.expert!] = flags[s.expert!] && t
      status.set(fused, flags)
    } else status.set(s.name.replace(/\.block_sparse_moe\./, '.mlp.'), t)
  }
  const generic = (n: string): string => n.replace(/^model\.layers\.\d+\./, 'model.layers.[0-9]+.')
  const groups = new Map<string, string[]>()
  for (const n of status.keys()) groups.set(generic(n), [...(groups.get(generic(n)) ?? []), n])
  const out: string[] = []
  for (const [g, names] of groups) {
    const full = (n: string): boolean => {
      const v = status.get(n)!
      return Array.isArray(v) ? v.every(Boolean) : v
    }
    if (names.length > 1 && names.every(full)) {
      out.push(`^${g}$`)
      continue
    }
    for (const n of names) {
      const v = status.get(n)!
      if (!Array.isArray(v)) {
        if (v) out.push(`^${n}$`)
        continue
      }
      if (v.every(Boolean)) {
        out.push(`^${n}$`)
        continue
      }
      let start = -1
      for (let x = 0; x <= v.length; x++) {
        const free = x < v.length && v[x]
        if (free && start < 0) start = x
        if (!free && start >= 0) {
          out.push(`^${n}$[${start}:${x}]`)
          start = -1
        }
      }
    }
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Helpers

function fmt(v: unknown): string {
  if (v === null) return UNSET
  if (typeof v === 'string') return v
  return JSON.stringify(v)
}

/** Every leaf setting of the run config (records and arrays are leaves), by dotted path. */
export function runConfigLeaves(config: RunConfig): [string, unknown][] {
  const out: [string, unknown][] = []
  const walk = (v: unknown, path: string[]): void => {
    if (typeof v === 'object' && v !== null && !Array.isArray(v) && path.join('.') !== 'freeze.experts') {
      for (const [k, child] of Object.entries(v)) walk(child, [...path, k])
      return
    }
    out.push([path.join('.'), v])
  }
  walk(config, [])
  return out
}

/** Per-device batch and accumulation that keep the workbench's effective batch on `devices` devices. */
export function splitBatch(batchSize: number, gradAccumulation: number, devices: number): HandoffPlan['batch'] {
  const effective = batchSize * gradAccumulation
  if (effective % devices === 0) {
    const perDeviceTotal = effective / devices
    let perDevice = 1
    for (let d = Math.min(batchSize, perDeviceTotal); d >= 1; d--)
      if (perDeviceTotal % d === 0) {
        perDevice = d
        break
      }
    return { perDevice, gradAccumulation: perDeviceTotal / perDevice, devices, effective, workbench: effective }
  }
  // Not divisible: one row per device per micro-step, as close to the workbench's batch as whole steps allow.
  const ga = Math.max(1, Math.round(effective / devices))
  return { perDevice: 1, gradAccumulation: ga, devices, effective: ga * devices, workbench: effective }
}

type Row = { target: string | null; equivalent: MappingRow['equivalent']; note?: string }

interface Built {
  entries: YamlEntry[]
  rows: Map<string, Row>
  warnings: string[]
  datasetInfo?: Record<string, unknown>
}

/** Records a row for `setting` and returns the entries so the caller can spread them. */
class Recorder {
  readonly rows = new Map<string, Row>()
  readonly warnings: string[] = []
  /** Carried by `target`, or (null) not needed: unused here, or the target behaves the same by default. */
  map(setting: string, target: string | null, note?: string): void {
    this.rows.set(setting, { target, equivalent: target === null ? 'unneeded' : 'mapped', ...(note && { note }) })
  }
  /** No equivalent in the target. */
  none(setting: string, note: string): void {
    this.rows.set(setting, { target: null, equivalent: 'none', note })
  }
  warn(text: string): void {
    this.warnings.push(text)
  }
}

function schedulerFor(c: RunConfig, r: Recorder): Record<string, YamlValue> {
  const s = c.schedule
  if (s.type === 'constant') {
    r.map('schedule.type', `lr_scheduler_type: ${s.warmupSteps > 0 ? 'constant_with_warmup' : 'constant'}`)
    if (s.minLrRatio > 0) r.none('schedule.minLrRatio', 'a constant schedule does not decay; the value is unused here too')
    else r.map('schedule.minLrRatio', null, 'unused by a constant schedule')
    return { lr_scheduler_type: s.warmupSteps > 0 ? 'constant_with_warmup' : 'constant' }
  }
  if (s.type === 'cosine' && s.minLrRatio > 0) {
    r.map('schedule.type', 'lr_scheduler_type: cosine_with_min_lr')
    r.map('schedule.minLrRatio', `lr_scheduler_kwargs: {min_lr_rate: ${s.minLrRatio}}`)
    return { lr_scheduler_type: 'cosine_with_min_lr', lr_scheduler_kwargs: { min_lr_rate: s.minLrRatio } }
  }
  r.map('schedule.type', `lr_scheduler_type: ${s.type}`)
  if (s.minLrRatio > 0) {
    r.none('schedule.minLrRatio', `HF's linear schedule decays to 0; ${s.minLrRatio} of lr at the end has no equivalent`)
    r.warn(`schedule.minLrRatio ${s.minLrRatio}: the linear schedule there decays to 0`)
  } else r.map('schedule.minLrRatio', null, '0: decays to 0 there too')
  return { lr_scheduler_type: s.type }
}

// ---------------------------------------------------------------------------------------------
// Settings shared by both targets (the HF Trainer's own keys)

function commonNones(c: RunConfig, m: MoeConfig, r: Recorder, esft: ExpertSelection | undefined): void {
  // A knob that is off here (this run's value, else the model's own) needs no equivalent.
  const knob = (setting: string, effective: unknown, note: string): void => {
    if (effective === null || effective === undefined || effective === 0 || effective === 'dropless')
      r.map(setting, null, `off here (${effective === 'dropless' || effective === null ? 'dropless' : '0'}); ${note}`)
    else {
      r.none(setting, note)
      r.warn(`${setting} ${JSON.stringify(effective)}: ${note}`)
    }
  }
  knob(
    'moe.capacityFactorTrain',
    c.moe.capacityFactorTrain ?? m.router.capacityFactorTrain,
    'HF MoE layers are dropless (no capacity, no token dropping)',
  )
  knob(
    'moe.capacityFactorEval',
    c.moe.capacityFactorEval ?? m.router.capacityFactorEval,
    'HF MoE layers are dropless (no capacity, no token dropping)',
  )
  knob('moe.zLossCoef', c.moe.zLossCoef ?? m.routerZLossCoef, 'the HF Mixtral/Qwen-MoE/OLMoE models compute no router z-loss')
  knob('moe.importanceLossCoef', c.moe.importanceLossCoef ?? m.routerImportanceLossCoef, 'HF MoE models have no Shazeer importance loss')
  knob('moe.loadLossCoef', c.moe.loadLossCoef ?? m.routerLoadLossCoef, 'HF MoE models have no Shazeer load loss')
  knob('moe.expertDropout', c.moe.expertDropout ?? m.expertDropout, 'HF MoE models have no expert dropout')
  knob('moe.tokenDrop', c.moe.tokenDrop ?? m.tokenDrop, 'HF MoE models have no token drop')
  knob('moe.hiddenDropout', c.moe.hiddenDropout ?? m.hiddenDropout, 'these HF families have no hidden-state dropout')
  if (m.router.type !== 'softmax_topk')
    r.warn(`the model's router is ${m.router.type}; HF ${m.family} routes softmax top-k, so the cluster run trains another router`)
  if (c.evalBatches === 0) r.map('evalBatches', null, 'the whole validation file, there as here')
  else r.none('evalBatches', 'evaluation covers the whole validation file there')
  r.none('finalEval.rows', 'bring the adapter or model back and run `moe-workbench eval` for the before/after answers')
  // Where the weights live and what the workbench watches change nothing the run learns: not
  // needed there (listed as missing, they hid the settings that do differ).
  r.map('offload.budgetBytes', null, 'DeepSpeed ZeRO shards (and, when needed, offloads) instead; see deepspeed')
  r.map('offload.storage', null, 'DeepSpeed decides where sharded weights live')
  r.map('alerts.deadShare', null, 'workbench monitoring; watch the router in the trainer logs')
  r.map('alerts.collapseShare', null, 'workbench monitoring')
  r.map('alerts.steps', null, 'workbench monitoring')
  // ESFT's own settings matter only where it is on (else they are no loss to list as missing).
  // A run that has chosen its experts hands over the choice: those experts train, as here.
  const chosen = c.esft.enabled && esft ? Object.values(esft).reduce((n, xs) => n + xs.length, 0) : 0
  for (const [key, why] of [
    ['esft.score', 'expert-specialised fine-tuning (ESFT) selects experts in the workbench only'],
    ['esft.threshold', 'see esft.enabled'],
    ['esft.scoringBatches', 'see esft.enabled'],
  ] as const)
    if (c.esft.enabled && esft) r.map(key, null, 'used here to choose the experts; the choice is handed over (see esft.enabled)')
    else if (c.esft.enabled) r.none(key, why)
    else r.map(key, null, 'ESFT is off')
  if (c.esft.enabled && esft) {
    const layers = Object.values(esft).filter((xs) => xs.length > 0).length
    r.map(
      'esft.enabled',
      `the ${chosen} expert(s) the run chose, in ${layers} layer(s), train; everything else is frozen (see method)`,
      Object.entries(esft)
        .filter(([, xs]) => xs.length > 0)
        .map(([l, xs]) => `layer ${l}: ${xs.join(', ')}`)
        .join('; '),
    )
  } else if (c.esft.enabled) {
    r.none(
      'esft.enabled',
      'ESFT has no equivalent: the handed-off run trains what the freeze policy leaves trainable, every expert included',
    )
    r.warn(
      'esft.enabled: expert-specialised fine-tuning has no equivalent there; the run trains all experts the freeze policy allows. Hand off the run once it has started here (it chooses its experts first) to train the experts it chose',
    )
  } else r.map('esft.enabled', null, 'off')
  if (c.optimizer.decayNormsAndBiases) {
    r.none('optimizer.decayNormsAndBiases', 'the HF Trainer never decays biases and norms')
    r.warn('optimizer.decayNormsAndBiases: the HF Trainer never decays biases and norm weights')
  } else r.map('optimizer.decayNormsAndBiases', null, 'false: the HF Trainer excludes biases and norms from weight decay too')
}

/** The model's own aux-loss coefficient when the run keeps it: HF trains without it unless asked. */
function auxCoef(c: RunConfig, m: MoeConfig): number {
  return c.moe.auxLossCoef ?? m.routerAuxLossCoef
}

// ---------------------------------------------------------------------------------------------
// LLaMA-Factory

function llamaFactory(input: HandoffInput, ds: DeepSpeedChoice, batch: HandoffPlan['batch']): Built {
  const { config: c, model: m, dataset: d } = input
  const r = new Recorder()
  const e: YamlEntry[] = []
  const add = (key: string, value: YamlValue, comment?: string): void => void e.push({ key, value, ...(comment && { comment }) })

  e.push({ key: '', value: null, comment: '## model' })
  add('model_name_or_path', input.modelRef)
  e.push({ key: '', value: null, comment: '## method' })
  add('stage', d.kind === 'text' ? 'pt' : 'sft')
  add('do_train', true)
  const everything = paramSpecs(m).every((s) => isTrainable(s, c, m, input.esft))
  if (c.method === 'lora') {
    add('finetuning_type', 'lora')
    r.map('method', 'finetuning_type: lora')
    const target = llamaFactoryLoraTarget(m, c.lora.targets)
    add(
      'lora_target',
      target.join(','),
      'exact module suffixes for the workbench targets (PEFT matches a name or a ".name" suffix); transformers 4.57 names',
    )
    add('lora_rank', c.lora.rank)
    add('lora_alpha', c.lora.alpha)
    add('lora_dropout', c.lora.dropout)
    r.map('lora.rank', `lora_rank: ${c.lora.rank}`)
    r.map('lora.alpha', `lora_alpha: ${c.lora.alpha}`)
    r.map('lora.dropout', `lora_dropout: ${c.lora.dropout}`)
    r.map(
      'lora.targets',
      `lora_target: ${target.join(',')}`,
      c.lora.targets.includes('experts') ? 'routed experts are nn.Linear only on transformers 4.57.x' : undefined,
    )
    if (c.lora.targets.includes('experts') || c.lora.targets.includes('router'))
      r.warn(
        'LoRA on routed experts or the router needs transformers 4.57.x under LLaMA-Factory (on transformers 5 they are fused parameters lora_target cannot reach): pip install "transformers==4.57.6"',
      )
    for (const k of FREEZE_KEYS) r.map(k, null, 'unused: LoRA trains only the adapters')
  } else {
    for (const k of ['lora.rank', 'lora.alpha', 'lora.dropout', 'lora.targets']) r.map(k, null, `unused: method ${c.method}`)
    if (everything) {
      add('finetuning_type', 'full')
      r.map('method', `finetuning_type: full`, c.method === 'freeze' ? 'the freeze policy leaves every weight trainable' : undefined)
      for (const k of FREEZE_KEYS) r.map(k, null, 'nothing frozen')
    } else {
      const f = llamaFactoryFreeze(m, c, input.esft)
      add('finetuning_type', 'freeze')
      add('freeze_trainable_layers', f.layers)
      add('freeze_trainable_modules', f.modules.join(','))
      if (f.extra.length) add('freeze_extra_modules', f.extra.join(','))
      const keys = `freeze_trainable_layers: ${f.layers}, freeze_trainable_modules: ${f.modules.join(',')}${f.extra.length ? `, freeze_extra_modules: ${f.extra.join(',')}` : ''}`
      r.map('method', 'finetuning_type: freeze')
      if (f.differ.length === 0) for (const k of FREEZE_KEYS) r.map(k, keys, 'trains exactly the weights the workbench trains')
      else {
        const why = `LLaMA-Factory freezes whole modules per layer (self_attn, ${m.family === 'mixtral' ? 'block_sparse_moe' : 'mlp'}, the norms) by name; it trains ${f.differ.length} weight(s) differently, e.g. ${f.differ.slice(0, 3).join(', ')}`
        for (const k of FREEZE_KEYS) r.none(k, `closest: ${keys}. ${why}`)
        r.warn(`freeze: ${why} (axolotl's unfrozen_parameters can be exact)`)
      }
    }
  }
  add('deepspeed', `deepspeed/${ds.file}`, ds.reason)

  e.push({ key: '', value: null, comment: '## MoE' })
  const coef = auxCoef(c, m)
  add(
    'moe_aux_loss_coef',
    coef,
    'sets output_router_logits and router_aux_loss_coef (model_utils/moe.py); without it HF trains no aux loss',
  )
  r.map(
    'moe.auxLossCoef',
    `moe_aux_loss_coef: ${coef}`,
    c.moe.auxLossCoef === null ? "the model's own coefficient, set explicitly" : undefined,
  )
  if (c.moe.topK !== null && c.moe.topK !== m.topK) {
    r.none('moe.topK', `LLaMA-Factory has no key for it; set num_experts_per_tok: ${c.moe.topK} in a copy of config.json`)
    r.warn(`moe.topK ${c.moe.topK}: LLaMA-Factory has no key for it (the model routes to ${m.topK})`)
  } else r.map('moe.topK', null, `the model's own (${m.topK})`)
  if (c.moe.routerJitter) {
    r.none('moe.routerJitter', 'LLaMA-Factory sets no router_jitter_noise; set it in a copy of config.json (Mixtral only)')
    r.warn(`moe.routerJitter ${c.moe.routerJitter}: LLaMA-Factory has no key for it`)
  } else r.map('moe.routerJitter', null, 'none')
  if (c.moe.attentionDropout) {
    r.none('moe.attentionDropout', "LLaMA-Factory has no key for the model's attention_dropout; set it in a copy of config.json")
    r.warn(`moe.attentionDropout ${c.moe.attentionDropout}: LLaMA-Factory has no key for it`)
  } else r.map('moe.attentionDropout', null, "the model's own")

  e.push({ key: '', value: null, comment: '## dataset' })
  add('dataset', d.key)
  add('dataset_dir', 'data')
  if (d.validationFile) add('eval_dataset', `${d.key}_validation`, 'the workbench split, row for row')
  const info: Record<string, unknown> = {}
  const entry = (file: string): Record<string, unknown> => {
    switch (d.kind) {
      case 'chat':
        return {
          file_name: file,
          formatting: 'sharegpt',
          columns: { messages: 'messages' },
          tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' },
        }
      case 'completion':
        return { file_name: file, columns: { prompt: 'prompt', response: 'completion' } }
      case 'text':
        return { file_name: file, columns: { prompt: 'text' } }
      default:
        throw new Error('LLaMA-Factory reads no pre-tokenised rows (input_ids, labels); hand the run to axolotl instead')
    }
  }
  info[d.key] = entry(d.trainFile.replace(/^data\//, ''))
  if (d.validationFile) info[`${d.key}_validation`] = entry(d.validationFile.replace(/^data\//, ''))
  if (d.kind === 'chat') {
    if (!input.chatTemplate) {
      add('template', 'default', "the tokenizer has no chat template; the workbench's own default template has no LLaMA-Factory equivalent")
      if (input.tokenizer !== false)
        r.warn("the tokenizer has no chat template: LLaMA-Factory's `default` template differs from the workbench's built-in one")
    } else
      e.push({
        key: '',
        value: null,
        comment: "template: left unset, so LLaMA-Factory parses the tokenizer's own chat template, as the workbench uses it",
      })
  } else if (d.kind === 'completion') {
    add('template', 'empty', 'prompt then completion, no chat markup, as the workbench encodes completion rows')
    r.warn('completion rows: LLaMA-Factory\'s "empty" template adds no EOS after the completion (the workbench trains on one)')
  }
  add('cutoff_len', c.data.maxLength)
  r.map('data.maxLength', `cutoff_len: ${c.data.maxLength}`)
  r.map(
    'data.truncation',
    null,
    `LLaMA-Factory shortens prompt and response in proportion to fit cutoff_len (workbench: ${c.data.truncation})`,
  )
  if (d.kind !== 'text') {
    add('train_on_prompt', !c.data.maskPrompt)
    r.map('data.maskPrompt', `train_on_prompt: ${!c.data.maskPrompt}`, 'loss on every assistant turn when masked, as here')
  } else r.map('data.maskPrompt', null, 'text rows train on every token (stage pt)')
  add('packing', c.data.packing)
  r.map(
    'data.packing',
    `packing: ${c.data.packing}`,
    c.data.packing ? 'packed rows attend across examples, as the workbench packs them' : undefined,
  )
  add('preprocessing_num_workers', 8)

  e.push({ key: '', value: null, comment: '## output' })
  add('output_dir', 'output')
  add('logging_steps', 1)
  if (c.checkpointEvery > 0) {
    add('save_steps', c.checkpointEvery)
    r.map('checkpointEvery', `save_steps: ${c.checkpointEvery}`)
  } else {
    add('save_strategy', 'no', 'the final model is saved at the end regardless')
    r.map('checkpointEvery', 'save_strategy: no', '0: only the end, as here')
  }
  add('save_total_limit', c.keepCheckpoints)
  r.map('keepCheckpoints', `save_total_limit: ${c.keepCheckpoints}`, 'the workbench also always keeps the best checkpoint')
  add('plot_loss', true)
  add('report_to', 'none')

  e.push({ key: '', value: null, comment: '## train' })
  add('per_device_train_batch_size', batch.perDevice)
  add('gradient_accumulation_steps', batch.gradAccumulation)
  r.map(
    'batchSize',
    `per_device_train_batch_size: ${batch.perDevice}`,
    `× ${batch.gradAccumulation} accumulation × ${batch.devices} devices = ${batch.effective} rows per step`,
  )
  r.map('gradAccumulation', `gradient_accumulation_steps: ${batch.gradAccumulation}`)
  add('learning_rate', c.optimizer.lr)
  r.map('optimizer.lr', `learning_rate: ${c.optimizer.lr}`)
  add('adam_beta1', c.optimizer.betas[0])
  add('adam_beta2', c.optimizer.betas[1])
  add('adam_epsilon', c.optimizer.eps)
  add('weight_decay', c.optimizer.weightDecay)
  r.map('optimizer.betas', `adam_beta1: ${c.optimizer.betas[0]}, adam_beta2: ${c.optimizer.betas[1]}`)
  r.map('optimizer.eps', `adam_epsilon: ${c.optimizer.eps}`)
  r.map('optimizer.weightDecay', `weight_decay: ${c.optimizer.weightDecay}`)
  const sched = schedulerFor(c, r)
  for (const [k, v] of Object.entries(sched)) add(k, v)
  add('warmup_steps', c.schedule.warmupSteps, 'steps, not warmup_ratio (removed in transformers 5.2)')
  r.map('schedule.warmupSteps', `warmup_steps: ${c.schedule.warmupSteps}`)
  add('max_grad_norm', c.gradClip)
  r.map('gradClip', `max_grad_norm: ${c.gradClip}`, c.gradClip === 0 ? '0 turns clipping off there too' : undefined)
  add('seed', c.seed)
  r.map('seed', `seed: ${c.seed}`, 'the same seed, not the same random stream')
  if (c.maxSteps !== null) {
    add('max_steps', c.maxSteps)
    r.map('maxSteps', `max_steps: ${c.maxSteps}`)
    r.map('epochs', null, 'max_steps wins, as here')
  } else r.map('maxSteps', null, 'not set')
  add('num_train_epochs', c.epochs)
  r.map('epochs', `num_train_epochs: ${c.epochs}`)
  add('bf16', true, 'the workbench computes in float32; bf16 mixed precision is the GPU norm')
  add('ddp_timeout', 180000000)

  if (d.validationFile) {
    e.push({ key: '', value: null, comment: '## eval' })
    add('per_device_eval_batch_size', batch.perDevice)
    if (c.evalEvery > 0) {
      add('eval_strategy', 'steps')
      add('eval_steps', evalSteps(c))
      r.map('evalEvery', `eval_strategy: steps, eval_steps: ${evalSteps(c)}`, evalStepsNote(c))
    } else {
      add('eval_strategy', 'no', 'the workbench evaluates only at the end with 0; the HF Trainer has no "at the end" strategy')
      r.map('evalEvery', 'eval_strategy: no', '0 means "only at the end" here; the HF Trainer has no such strategy')
    }
  } else r.map('evalEvery', null, 'the dataset has no validation rows')
  // Off (patience 0) is not missing there: that run trains to its end too.
  if (c.earlyStopping.patience > 0) {
    r.none('earlyStopping.patience', 'LLaMA-Factory exposes no early-stopping callback')
    r.none('earlyStopping.minDelta', 'see earlyStopping.patience')
  } else {
    r.map('earlyStopping.patience', null, 'off')
    r.map('earlyStopping.minDelta', null, 'early stopping is off')
  }
  if (c.earlyStopping.patience > 0) r.warn('earlyStopping: LLaMA-Factory has no early stopping; the run trains to the end')
  commonNones(c, m, r, input.esft)
  return { entries: e, rows: r.rows, warnings: r.warnings, datasetInfo: info }
}

// ---------------------------------------------------------------------------------------------
// axolotl

function axolotlDataset(kind: RowKind, file: string, c: RunConfig): Record<string, YamlValue> {
  switch (kind) {
    case 'chat':
      return {
        path: file,
        ds_type: 'json',
        type: 'chat_template',
        field_messages: 'messages',
        message_property_mappings: { role: 'role', content: 'content' },
        roles_to_train: c.data.maskPrompt ? ['assistant'] : ['system', 'user', 'assistant'],
        train_on_eos: 'turn',
      }
    case 'completion':
      return {
        path: file,
        ds_type: 'json',
        type: { field_instruction: 'prompt', field_output: 'completion', format: '{instruction}', no_input_format: '{instruction}' },
      }
    case 'text':
      return { path: file, ds_type: 'json', type: 'completion', field: 'text' }
    case 'tokens':
      return { path: file, ds_type: 'json', type: null }
  }
}

function axolotl(input: HandoffInput, ds: DeepSpeedChoice, batch: HandoffPlan['batch']): Built {
  const { config: c, model: m, dataset: d } = input
  const r = new Recorder()
  const e: YamlEntry[] = []
  const add = (key: string, value: YamlValue, comment?: string): void => void e.push({ key, value, ...(comment && { comment }) })

  add('base_model', input.modelRef)
  const overrides: Record<string, YamlValue> = {}
  const coef = auxCoef(c, m)
  overrides.output_router_logits = true
  overrides.router_aux_loss_coef = coef
  r.map(
    'moe.auxLossCoef',
    `model_config: {output_router_logits: true, router_aux_loss_coef: ${coef}}`,
    c.moe.auxLossCoef === null ? "the model's own coefficient, set explicitly" : undefined,
  )
  if (c.moe.topK !== null && c.moe.topK !== m.topK) {
    overrides.num_experts_per_tok = c.moe.topK
    r.map('moe.topK', `model_config: {num_experts_per_tok: ${c.moe.topK}}`)
  } else r.map('moe.topK', null, `the model's own (${m.topK})`)
  if (c.moe.routerJitter) {
    if (m.family === 'mixtral') {
      overrides.router_jitter_noise = c.moe.routerJitter
      r.map(
        'moe.routerJitter',
        `model_config: {router_jitter_noise: ${c.moe.routerJitter}}`,
        "HF Mixtral multiplies the MoE block's input, experts' too, by the noise",
      )
    } else {
      r.none('moe.routerJitter', `HF ${m.family} has no router jitter`)
      r.warn(`moe.routerJitter: HF ${m.family} has no router jitter`)
    }
  } else r.map('moe.routerJitter', null, 'none')
  if (c.moe.attentionDropout !== null) {
    overrides.attention_dropout = c.moe.attentionDropout
    r.map('moe.attentionDropout', `model_config: {attention_dropout: ${c.moe.attentionDropout}}`)
  } else r.map('moe.attentionDropout', null, "the model's own")
  add('model_config', overrides, 'overrides of config.json; without output_router_logits HF trains no aux loss')

  const everything = paramSpecs(m).every((s) => isTrainable(s, c, m, input.esft))
  if (c.method === 'lora') {
    const t = axolotlLoraTargets(m, c.lora.targets)
    add('adapter', 'lora')
    add('lora_r', c.lora.rank)
    add('lora_alpha', c.lora.alpha)
    const fused = t.parameters.length > 0
    const dropout = fused ? 0 : c.lora.dropout
    add('lora_dropout', dropout, fused ? "PEFT's ParamWrapper (fused experts, router) refuses dropout" : undefined)
    if (t.modules.length) add('lora_target_modules', t.modules)
    if (fused)
      add(
        'lora_target_parameters',
        t.parameters,
        "transformers 5 fuses each layer's experts into [E, out, in] parameters; r is the rank per expert",
      )
    if (c.lora.targets.includes('experts')) {
      add(
        'lora_rank_pattern',
        { 'experts.gate_up_proj': 2 * c.lora.rank },
        'gate and up projections fused: rank 2r keeps one rank-r adapter each, as here (PEFT does the same for v4 adapters)',
      )
      add('lora_alpha_pattern', { 'experts.gate_up_proj': 2 * c.lora.alpha })
    }
    r.map('method', 'adapter: lora')
    r.map(
      'lora.rank',
      `lora_r: ${c.lora.rank}${c.lora.targets.includes('experts') ? `, lora_rank_pattern: {experts.gate_up_proj: ${2 * c.lora.rank}}` : ''}`,
    )
    r.map(
      'lora.alpha',
      `lora_alpha: ${c.lora.alpha}${c.lora.targets.includes('experts') ? `, lora_alpha_pattern: {experts.gate_up_proj: ${2 * c.lora.alpha}}` : ''}`,
    )
    r.map(
      'lora.dropout',
      `lora_dropout: ${dropout}`,
      fused && c.lora.dropout > 0 ? `${c.lora.dropout} cannot be carried: PEFT refuses dropout on fused parameters` : undefined,
    )
    if (fused && c.lora.dropout > 0)
      r.warn(`lora.dropout ${c.lora.dropout} becomes 0: PEFT's ParamWrapper (fused experts, router) refuses dropout`)
    r.map(
      'lora.targets',
      [
        t.modules.length && `lora_target_modules: [${t.modules.join(', ')}]`,
        fused && `lora_target_parameters: [${t.parameters.join(', ')}]`,
      ]
        .filter(Boolean)
        .join('; '),
    )
    for (const k of FREEZE_KEYS) r.map(k, null, 'unused: LoRA trains only the adapters')
    if (fused && ds.stage === 3)
      r.warn('ZeRO-3 with lora_target_parameters needs peft>=0.21.0 (axolotl 0.18.0 pins 0.19.1): pip install "peft>=0.21.0"')
  } else {
    for (const k of ['lora.rank', 'lora.alpha', 'lora.dropout', 'lora.targets']) r.map(k, null, `unused: method ${c.method}`)
    if (everything) {
      r.map('method', `full: no adapter key`, c.method === 'freeze' ? 'the freeze policy leaves every weight trainable' : undefined)
      for (const k of FREEZE_KEYS) r.map(k, null, 'nothing frozen')
    } else {
      const pats = axolotlUnfrozen(m, c, input.esft)
      add(
        'unfrozen_parameters',
        pats,
        'everything else is frozen (utils/freeze.py: re.match, "." literal; a trailing [a:b] unfreezes experts a..b-1 of a fused parameter)',
      )
      r.map('method', `${c.method}: unfrozen_parameters`)
      for (const k of FREEZE_KEYS)
        r.map(k, `unfrozen_parameters (${pats.length} patterns)`, 'trains exactly the weights the workbench trains')
      if (Object.values(c.freeze.experts).some((x) => x.length > 0))
        r.warn(
          'freeze.experts: frozen experts get no gradient (unfrozen_parameters ranges), but AdamW weight decay still shrinks them; set weight_decay: 0 to keep them exactly',
        )
    }
  }

  add('datasets', [axolotlDataset(d.kind, d.trainFile, c)])
  if (d.validationFile) {
    add('test_datasets', [{ ...axolotlDataset(d.kind, d.validationFile, c), split: 'train' }], 'the workbench split, row for row')
    add('val_set_size', 0)
  }
  add('dataset_prepared_path', 'prepared')
  if (d.kind === 'chat')
    add(
      'chat_template',
      input.chatTemplate ? 'tokenizer_default' : 'chatml',
      input.chatTemplate ? "the tokenizer's own template, as the workbench uses it" : 'the tokenizer has none',
    )
  if (d.kind === 'chat' && !input.chatTemplate && input.tokenizer !== false)
    r.warn("the tokenizer has no chat template: axolotl's chatml differs from the workbench's built-in template")
  if (d.kind === 'completion' || d.kind === 'tokens') {
    add('train_on_inputs', !c.data.maskPrompt)
    r.map('data.maskPrompt', `train_on_inputs: ${!c.data.maskPrompt}`)
  } else if (d.kind === 'chat')
    r.map('data.maskPrompt', `roles_to_train: ${c.data.maskPrompt ? '[assistant]' : '[system, user, assistant]'}`)
  else r.map('data.maskPrompt', null, 'text rows train on every token (type: completion)')
  add('sequence_len', c.data.maxLength)
  r.map('data.maxLength', `sequence_len: ${c.data.maxLength}`)
  const strategy = c.data.truncation === 'drop' ? 'drop' : 'truncate'
  add('excess_length_strategy', strategy)
  r.map(
    'data.truncation',
    `excess_length_strategy: ${strategy}`,
    c.data.truncation === 'left' ? 'keeping the end (left) has no equivalent: rows keep their start' : undefined,
  )
  if (c.data.truncation === 'left') r.warn('data.truncation "left" has no axolotl equivalent; long rows keep their start')
  add('sample_packing', c.data.packing)
  add('pad_to_sequence_len', c.data.packing)
  r.map(
    'data.packing',
    `sample_packing: ${c.data.packing}`,
    c.data.packing
      ? 'axolotl packs whole examples without attention across them (multipack); the workbench lets packed examples attend to each other'
      : undefined,
  )

  add('output_dir', './output')
  add('gradient_accumulation_steps', batch.gradAccumulation)
  add('micro_batch_size', batch.perDevice)
  r.map(
    'batchSize',
    `micro_batch_size: ${batch.perDevice}`,
    `× ${batch.gradAccumulation} accumulation × ${batch.devices} devices = ${batch.effective} rows per step`,
  )
  r.map('gradAccumulation', `gradient_accumulation_steps: ${batch.gradAccumulation}`)
  if (c.maxSteps !== null) {
    add('max_steps', c.maxSteps)
    r.map('maxSteps', `max_steps: ${c.maxSteps}`)
  } else r.map('maxSteps', null, 'not set')
  add('num_epochs', c.epochs)
  r.map('epochs', `num_epochs: ${c.epochs}`, c.maxSteps !== null ? 'max_steps wins, as here' : undefined)
  add('optimizer', 'adamw_torch_fused')
  add('learning_rate', c.optimizer.lr)
  add('adam_beta1', c.optimizer.betas[0])
  add('adam_beta2', c.optimizer.betas[1])
  add('adam_epsilon', c.optimizer.eps)
  add('weight_decay', c.optimizer.weightDecay)
  r.map('optimizer.lr', `learning_rate: ${c.optimizer.lr}`)
  r.map('optimizer.betas', `adam_beta1: ${c.optimizer.betas[0]}, adam_beta2: ${c.optimizer.betas[1]}`)
  r.map('optimizer.eps', `adam_epsilon: ${c.optimizer.eps}`)
  r.map('optimizer.weightDecay', `weight_decay: ${c.optimizer.weightDecay}`)
  const s = c.schedule
  if (s.type === 'cosine') {
    add('lr_scheduler', 'cosine')
    r.map('schedule.type', 'lr_scheduler: cosine')
    if (s.minLrRatio > 0) {
      add('cosine_min_lr_ratio', s.minLrRatio)
      r.map('schedule.minLrRatio', `cosine_min_lr_ratio: ${s.minLrRatio}`)
    } else r.map('schedule.minLrRatio', null, '0: decays to 0 there too')
  } else {
    const sched = schedulerFor(c, r)
    add('lr_scheduler', sched.lr_scheduler_type)
    r.map('schedule.type', `lr_scheduler: ${String(sched.lr_scheduler_type)}`)
  }
  add('warmup_steps', s.warmupSteps)
  r.map('schedule.warmupSteps', `warmup_steps: ${s.warmupSteps}`)
  add('max_grad_norm', c.gradClip)
  r.map('gradClip', `max_grad_norm: ${c.gradClip}`)
  add('seed', c.seed)
  r.map('seed', `seed: ${c.seed}`, 'the same seed, not the same random stream')
  add('bf16', true, 'the workbench computes in float32; bf16 mixed precision is the GPU norm')
  add('gradient_checkpointing', true)
  add('logging_steps', 1)
  if (d.validationFile && c.evalEvery > 0) {
    add('eval_steps', evalSteps(c))
    add('eval_batch_size', batch.perDevice)
    r.map('evalEvery', `eval_steps: ${evalSteps(c)}`, evalStepsNote(c))
  } else if (d.validationFile) {
    add('eval_strategy', 'no')
    r.map('evalEvery', 'eval_strategy: no', '0 means "only at the end" here; the HF Trainer has no such strategy')
  } else r.map('evalEvery', null, 'the dataset has no validation rows')
  if (c.checkpointEvery > 0) {
    add('save_steps', c.checkpointEvery)
    r.map('checkpointEvery', `save_steps: ${c.checkpointEvery}`)
  } else {
    add('save_strategy', 'no')
    r.map('checkpointEvery', 'save_strategy: no', '0: only the end, as here')
  }
  add('save_total_limit', c.keepCheckpoints)
  r.map('keepCheckpoints', `save_total_limit: ${c.keepCheckpoints}`, 'the workbench also always keeps the best checkpoint')
  if (c.earlyStopping.patience > 0 && d.validationFile && c.evalEvery > 0) {
    add('early_stopping_patience', c.earlyStopping.patience)
    r.map('earlyStopping.patience', `early_stopping_patience: ${c.earlyStopping.patience}`)
    if (c.earlyStopping.minDelta > 0) r.none('earlyStopping.minDelta', 'axolotl has no minimum improvement')
    else r.map('earlyStopping.minDelta', null, '0: any improvement counts, there as here')
  } else if (c.earlyStopping.patience > 0) {
    r.none('earlyStopping.patience', 'needs evaluation every N steps')
    r.none('earlyStopping.minDelta', 'see earlyStopping.patience')
  } else {
    r.map('earlyStopping.patience', null, 'off')
    r.map('earlyStopping.minDelta', null, 'early stopping is off')
  }
  add('deepspeed', `deepspeed/${ds.file}`, ds.reason)
  add('ddp_timeout', 180000000)
  commonNones(c, m, r, input.esft)
  return { entries: e, rows: r.rows, warnings: r.warnings }
}

/** The trainer config, DeepSpeed choice, memory estimate, launch commands and the mapping table of a run. */
export function planHandoff(input: HandoffInput): HandoffPlan {
  const { config: c, target } = input
  if (!Number.isInteger(input.nodes) || input.nodes < 1)
    throw new Error(`nodes: ${input.nodes} must be a whole number of machines, at least 1`)
  if (!Number.isInteger(input.gpusPerNode) || input.gpusPerNode < 1)
    throw new Error(`gpusPerNode: ${input.gpusPerNode} must be a whole number, at least 1`)
  if (target === 'llamafactory' && input.dataset.kind === 'tokens')
    throw new Error('dataset: LLaMA-Factory reads no pre-tokenised rows (input_ids, labels); hand this run to axolotl instead')
  const devices = input.nodes * input.gpusPerNode
  const batch = splitBatch(c.batchSize, c.gradAccumulation, devices)
  const memory = estimateMemory(input.model, c, devices, batch.perDevice, c.data.maxLength, input.esft)
  const ds = chooseDeepSpeed(memory, input.gpuMemoryBytes)
  const built = target === 'llamafactory' ? llamaFactory(input, ds, batch) : axolotl(input, ds, batch)
  if (input.tokenizer === false) {
    const key = target === 'llamafactory' ? 'model_name_or_path' : 'base_model'
    built.warnings.unshift(
      `tokenizer: ${input.modelRef} has no tokenizer (no tokenizer.json): ${TARGET_VERSIONS[target].name} loads it from ${key}, even for rows already in token ids; copy the base model's tokenizer files (tokenizer.json, tokenizer_config.json) there before launching`,
    )
  }
  // Offload is the last resort: past it, the folder would not run at all (a 1 MiB GPU took it silently).
  if (ds.offload && memory.perDevice.zero3Offload > input.gpuMemoryBytes)
    built.warnings.push(
      `memory: even ZeRO-3 with CPU offload needs about ${gib(memory.perDevice.zero3Offload)} per device, more than the ${gib(input.gpuMemoryBytes)} of each GPU: add GPUs or use larger ones, or shorten data.maxLength`,
    )
  if (batch.effective !== batch.workbench)
    built.warnings.push(
      `batch: ${batch.workbench} rows per step here cannot be split evenly over ${devices} devices; the cluster run takes ${batch.effective} per step, at the learning rate set for ${batch.workbench} (${c.optimizer.lr}): choose a batch size that ${devices} divides, or adjust the rate for the larger batch`,
    )
  const mapping: MappingRow[] = runConfigLeaves(c).map(([setting, value]) => {
    const row = built.rows.get(setting)
    if (!row) return { setting, value: fmt(value), target: null, equivalent: 'none', note: 'not mapped by this version of the handoff' }
    return { setting, value: fmt(value), target: row.target, equivalent: row.equivalent, ...(row.note && { note: row.note }) }
  })
  const v = TARGET_VERSIONS[target]
  const header = `${v.name} ${v.version} config written by MoE Workbench (keys from ${v.source}).\nRequires: ${targetRequires(target, c, ds.stage)}.\nModel: ${input.model.family}, ${formatParamCount(countParams(input.model).total)} parameters.`
  const trainerFile = target === 'llamafactory' ? 'llamafactory.yaml' : 'axolotl.yaml'
  const trainer = toYaml(built.entries, header)
  const launch =
    target === 'llamafactory'
      ? {
          single: [`FORCE_TORCHRUN=1 NPROC_PER_NODE=${input.gpusPerNode} llamafactory-cli train ${trainerFile}`],
          multi: Array.from(
            { length: Math.max(2, input.nodes) },
            (_, rank) =>
              `FORCE_TORCHRUN=1 NNODES=${Math.max(2, input.nodes)} NODE_RANK=${rank} NPROC_PER_NODE=${input.gpusPerNode} MASTER_ADDR=<node 0 address> MASTER_PORT=29500 llamafactory-cli train ${trainerFile}`,
          ),
        }
      : {
          single: [
            `accelerate launch --num_processes ${input.gpusPerNode} -m axolotl.cli.train ${trainerFile}`,
            `axolotl train ${trainerFile} --launcher torchrun -- --nproc_per_node ${input.gpusPerNode} --nnodes 1`,
          ],
          multi: [
            `axolotl train ${trainerFile} --launcher torchrun -- --nnodes ${Math.max(2, input.nodes)} --nproc_per_node ${input.gpusPerNode} --rdzv_id moe-workbench --rdzv_backend c10d --rdzv_endpoint "<node 0 address>:29500"`,
            `accelerate launch --num_machines ${Math.max(2, input.nodes)} --machine_rank <this node's rank> --main_process_ip <node 0 address> --main_process_port 29500 --num_processes ${Math.max(2, input.nodes) * input.gpusPerNode} -m axolotl.cli.train ${trainerFile}`,
          ],
        }
  return {
    target,
    trainerFile,
    trainer,
    datasetInfo: built.datasetInfo,
    deepspeed: ds,
    memory,
    mapping,
    warnings: built.warnings,
    batch,
    launch,
  }
}

/** A markdown cell: pipes escaped, newlines flattened. */
function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
}

export function mappingTable(rows: MappingRow[], targetName: string): string {
  const lines = [`| workbench setting | value here | ${targetName} | note |`, '| --- | --- | --- | --- |']
  for (const r of rows) {
    const target = r.equivalent === 'mapped' ? `\`${cell(r.target!)}\`` : r.equivalent === 'none' ? '**no equivalent**' : 'not needed'
    lines.push(`| \`${r.setting}\` | ${cell(r.value)} | ${target} | ${cell(r.note ?? '')} |`)
  }
  return lines.join('\n')
}

/**
 * eval_steps for evalEvery: at most max_steps, where the run is shorter than one interval (the
 * workbench still evaluates at its end; the HF Trainer, given eval_steps past max_steps, never did).
 */
function evalSteps(c: RunConfig): number {
  return c.maxSteps !== null ? Math.min(c.evalEvery, c.maxSteps) : c.evalEvery
}

function evalStepsNote(c: RunConfig): string | undefined {
  return evalSteps(c) < c.evalEvery ? `evalEvery ${c.evalEvery} is past max_steps ${c.maxSteps}: evaluated at the last step` : undefined
}
