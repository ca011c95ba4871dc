/**
 * A run handed to LLaMA-Factory or axolotl: the YAML and JSON parse (as YAML 1.1, what PyYAML
 * reads), every mapped key carries this run's value for LoRA on experts, full and freeze runs with
 * and without packing, the LoRA targets select exactly the workbench's layers under PEFT's
 * matching, the freeze patterns exactly its trainable weights under axolotl's, every run-config
 * setting has a row, DeepSpeed follows the model's size, and the dataset files read back through
 * the workbench's own importer as the same rows.
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { importDataset, readRows } from '../../../src/main/data/workspace'
import { writeHandoff } from '../../../src/main/handoff/handoff'
import { exactSuffixes, planHandoff, runConfigLeaves, type HandoffInput } from '../../../src/main/handoff/targets'
import { chooseDeepSpeed, gib } from '../../../src/main/handoff/deepspeed'
import { isTrainable } from '../../../src/main/train/freeze'
import { paramSpecs, validateMoeConfig, type MoeConfig, type MoeConfigInput } from '../../../src/shared/modelConfig'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import { notCarried } from '../../../src/shared/handoff'
import type { NormalizedRow } from '../../../src/shared/dataset'

const DEFAULT_MODEL = join(__dirname, '../../../resources/default-model')
const SAMPLES = join(__dirname, '../../../resources/samples')

function model(over: Partial<MoeConfigInput> = {}): MoeConfig {
  return validateMoeConfig({
    family: 'mixtral',
    vocabSize: 64,
    hiddenSize: 32,
    numLayers: 3,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    intermediateSize: 48,
    expertIntermediateSize: 24,
    numExperts: 4,
    topK: 2,
    normTopkProb: true,
    maxPositionEmbeddings: 128,
    ...over,
  })
}

const QWEN2 = (): MoeConfig =>
  model({
    family: 'qwen2_moe',
    sharedExpertIntermediateSize: 16,
    normTopkProb: false,
    qkvBias: true,
    mlpOnlyLayers: [1],
  } as Partial<MoeConfigInput>)

const MIXTRAL_8X7B = (): MoeConfig =>
  model({
    vocabSize: 32000,
    hiddenSize: 4096,
    numLayers: 32,
    numHeads: 32,
    numKvHeads: 8,
    headDim: 128,
    intermediateSize: 14336,
    expertIntermediateSize: 14336,
    numExperts: 8,
    maxPositionEmbeddings: 32768,
  })

function input(
  target: HandoffInput['target'],
  run: RunConfigInput,
  m = model(),
  kind: HandoffInput['dataset']['kind'] = 'chat',
): HandoffInput {
  return {
    target,
    config: validateRunConfig(run),
    model: m,
    modelRef: 'org/base-model',
    chatTemplate: true,
    dataset: {
      key: 'workbench_ds',
      kind,
      trainFile: 'data/train.jsonl',
      validationFile: 'data/validation.jsonl',
      trainRows: 90,
      validationRows: 10,
    },
    nodes: 1,
    gpusPerNode: 4,
    gpuMemoryBytes: 80 * 2 ** 30,
  }
}

/** The YAML as PyYAML (YAML 1.1) reads it. */
function yamlOf(text: string): Record<string, unknown> {
  return parse(text, { version: '1.1' }) as Record<string, unknown>
}

/** Module paths PEFT's target_modules list selects: equal, or ending with "." + name. */
function peftSelects(targets: string[], modules: string[]): string[] {
  return modules.filter((m) => targets.some((t) => m === t || m.endsWith(`.${t}`)))
}

/** axolotl utils/freeze.py: re.match with "." literal unless followed by "+", an optional [a:b] range. */
function axolotlUnfrozen(patterns: string[], names: string[]): Map<string, [number, number][] | null> {
  const out = new Map<string, [number, number][] | null>()
  for (const p of patterns) {
    const m = /^(.+)\[([0-9]*)(?::([0-9]*))?\]$/.exec(p)
    const base = m ? m[1] : p
    const re = new RegExp(base.replace(/\.(?!\+)/g, '\\.'))
    for (const n of names) {
      const hit = re.exec(n)
      if (!hit || hit.index !== 0) continue
      const prev = out.get(n)
      if (!m) out.set(n, null)
      else if (prev !== null) out.set(n, [...(prev ?? []), [Number(m[2]), Number(m[3])]])
    }
  }
  return out
}

describe('handoff configs', () => {
  it('LoRA on experts, packed: LLaMA-Factory keys and values', () => {
    const run = {
      method: 'lora',
      lora: { rank: 16, alpha: 32, dropout: 0.05, targets: ['attention', 'experts'] },
      data: { packing: true, maxLength: 1024 },
      optimizer: { lr: 2e-5 },
      schedule: { type: 'cosine', warmupSteps: 10, minLrRatio: 0.1 },
      batchSize: 8,
      gradAccumulation: 2,
      maxSteps: 300,
      moe: { auxLossCoef: 0.02 },
    } satisfies RunConfigInput
    const plan = planHandoff(input('llamafactory', run))
    const y = yamlOf(plan.trainer)
    expect(y).toMatchObject({
      model_name_or_path: 'org/base-model',
      stage: 'sft',
      finetuning_type: 'lora',
      lora_rank: 16,
      lora_alpha: 32,
      lora_dropout: 0.05,
      cutoff_len: 1024,
      packing: true,
      train_on_prompt: false,
      learning_rate: 2e-5,
      lr_scheduler_type: 'cosine_with_min_lr',
      lr_scheduler_kwargs: { min_lr_rate: 0.1 },
      warmup_steps: 10,
      max_steps: 300,
      per_device_train_batch_size: 4,
      gradient_accumulation_steps: 1,
      moe_aux_loss_coef: 0.02,
      dataset: 'workbench_ds',
      eval_dataset: 'workbench_ds_validation',
      dataset_dir: 'data',
      bf16: true,
      deepspeed: 'deepspeed/ds_z2_config.json',
      adam_epsilon: 1e-8,
    })
    expect(typeof y.adam_epsilon).toBe('number')
    expect(new Set(String(y.lora_target).split(','))).toEqual(new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj', 'w1', 'w2', 'w3']))
    expect(plan.batch.effective).toBe(16)
    expect(plan.datasetInfo).toEqual({
      workbench_ds: {
        file_name: 'train.jsonl',
        formatting: 'sharegpt',
        columns: { messages: 'messages' },
        tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' },
      },
      workbench_ds_validation: expect.objectContaining({ file_name: 'validation.jsonl' }),
    })
  })

  it('LoRA on experts: axolotl reaches the fused experts by parameter, with the rank pattern and no dropout', () => {
    const run = {
      method: 'lora',
      lora: { rank: 4, alpha: 8, dropout: 0.1, targets: ['attention', 'experts', 'router'] },
      data: { packing: false },
    } satisfies RunConfigInput
    const plan = planHandoff(input('axolotl', run))
    const y = yamlOf(plan.trainer)
    expect(y).toMatchObject({
      base_model: 'org/base-model',
      adapter: 'lora',
      lora_r: 4,
      lora_alpha: 8,
      lora_dropout: 0,
      lora_target_parameters: ['mlp.experts.gate_up_proj', 'mlp.experts.down_proj', 'mlp.gate.weight'],
      lora_rank_pattern: { 'experts.gate_up_proj': 8 },
      lora_alpha_pattern: { 'experts.gate_up_proj': 16 },
      sample_packing: false,
      sequence_len: 256,
      model_config: { output_router_logits: true, router_aux_loss_coef: model().routerAuxLossCoef },
      datasets: [
        { path: 'data/train.jsonl', ds_type: 'json', type: 'chat_template', field_messages: 'messages', roles_to_train: ['assistant'] },
      ],
      test_datasets: [expect.objectContaining({ path: 'data/validation.jsonl', split: 'train' })],
      chat_template: 'tokenizer_default',
    })
    expect(new Set(y.lora_target_modules as string[])).toEqual(new Set(['q_proj', 'k_proj', 'v_proj', 'o_proj']))
    expect(plan.warnings.join('\n')).toMatch(/lora.dropout 0.1 becomes 0/)
  })

  it("LoRA targets select exactly the workbench's layers under PEFT's name matching (shared expert and dense layers beside the experts)", () => {
    const m = QWEN2()
    const specs = paramSpecs(m).filter((s) => s.shape.length === 2)
    const modules = specs.map((s) => s.name.replace(/\.weight$/, ''))
    for (const targets of [
      ['experts'],
      ['shared_expert'],
      ['dense_mlp'],
      ['attention', 'router'],
      ['experts', 'dense_mlp', 'shared_expert'],
    ] as const) {
      const plan = planHandoff(input('llamafactory', { method: 'lora', lora: { rank: 2, targets: [...targets] } }, m))
      const chosen = String(yamlOf(plan.trainer).lora_target).split(',')
      const kinds = {
        experts: 'expert',
        shared_expert: 'shared_expert',
        dense_mlp: 'dense_mlp',
        attention: 'attn',
        router: 'router',
      } as const
      const want = specs.filter((s) => targets.some((t) => kinds[t] === s.kind)).map((s) => s.name.replace(/\.weight$/, ''))
      expect(peftSelects(chosen, modules).sort()).toEqual(want.sort())
    }
    expect(exactSuffixes(['a.b.x'], ['a.b.x', 'a.c.x'])).toEqual(['b.x'])
  })

  it('full fine-tuning: no adapter anywhere', () => {
    const lf = yamlOf(planHandoff(input('llamafactory', { method: 'full' })).trainer)
    expect(lf.finetuning_type).toBe('full')
    expect(lf).not.toHaveProperty('lora_target')
    const ax = yamlOf(planHandoff(input('axolotl', { method: 'full' })).trainer)
    expect(ax).not.toHaveProperty('adapter')
    expect(ax).not.toHaveProperty('unfrozen_parameters')
  })

  it("the trainer's Requires line names transformers 4.57 / peft 0.21 only where LoRA reaches experts or the router", () => {
    const requires = (target: 'llamafactory' | 'axolotl', over: RunConfigInput, m?: MoeConfig): string =>
      /^# Requires: (.*)\.$/m.exec(planHandoff(input(target, over, m)).trainer)![1]
    expect(requires('llamafactory', { method: 'full' })).toBe('peft<=0.18.1 as it pins')
    expect(requires('llamafactory', { method: 'lora', lora: { targets: ['attention'] } })).toBe('peft<=0.18.1 as it pins')
    for (const targets of [['experts'], ['router']] as const)
      expect(requires('llamafactory', { method: 'lora', lora: { targets: [...targets] } })).toMatch(
        /^transformers 4\.57\.x .*; peft<=0\.18\.1/,
      )
    // axolotl: peft 0.21 matters for fused experts under ZeRO-3 only (Mixtral-8x7B on 80 GiB GPUs).
    expect(requires('axolotl', { method: 'lora', lora: { targets: ['experts'] } })).toBe('transformers 5.14.1 as it pins')
    expect(requires('axolotl', { method: 'full' }, MIXTRAL_8X7B())).toBe('transformers 5.14.1 as it pins')
    expect(requires('axolotl', { method: 'lora', lora: { targets: ['experts'] } }, MIXTRAL_8X7B())).toMatch(/^peft>=0\.21\.0 .*ZeRO-3/)
  })

  it("freeze: axolotl's unfrozen_parameters unfreeze exactly the weights the workbench trains (frozen experts by range)", () => {
    const m = QWEN2()
    const run = validateRunConfig({
      method: 'freeze',
      freeze: { attention: true, router: false, experts: { '0': [1, 2] } },
      data: { packing: true },
    })
    const y = yamlOf(planHandoff(input('axolotl', run, m)).trainer)
    expect(y.sample_packing).toBe(true)
    // transformers 5 parameter names: experts fused per layer, every block called mlp.
    const names = new Map<string, string[]>()
    for (const s of paramSpecs(m)) {
      const v5 =
        s.kind === 'expert'
          ? s.name
              .replace(/experts\.\d+\.(gate_proj|up_proj)\.weight$/, 'experts.gate_up_proj')
              .replace(/experts\.\d+\.down_proj\.weight$/, 'experts.down_proj')
          : s.name
      names.set(v5, [...(names.get(v5) ?? []), s.name])
    }
    const unfrozen = axolotlUnfrozen(y.unfrozen_parameters as string[], [...names.keys()])
    for (const [v5, originals] of names) {
      const specs = originals.map((n) => paramSpecs(m).find((s) => s.name === n)!)
      if (specs[0].kind !== 'expert') {
        expect(unfrozen.has(v5), v5).toBe(isTrainable(specs[0], run, m))
        continue
      }
      const ranges = unfrozen.get(v5)
      for (const s of specs) {
        const open = ranges === null ? true : ranges === undefined ? false : ranges.some(([a, b]) => s.expert! >= a && s.expert! < b)
        expect(open, s.name).toBe(isTrainable(s, run, m))
      }
    }
  })

  it('ESFT: a run that has chosen its experts hands them over (axolotl exactly, LLaMA-Factory closest, said); a config that has not, warns', () => {
    const m = QWEN2()
    const run = validateRunConfig({ method: 'full', esft: { enabled: true } })
    const esft = { '0': [1, 3], '2': [0] } // layer 1 is dense in this model
    const plan = planHandoff({ ...input('axolotl', run, m), esft })
    const y = yamlOf(plan.trainer)
    // Only the chosen experts' fused parameters, by range; nothing else (it was every expert, attention and all).
    const specs = paramSpecs(m)
    const fusedNames = [
      ...new Set(
        specs.map((s) =>
          s.name
            .replace(/experts\.\d+\.(gate_proj|up_proj)\.weight$/, 'experts.gate_up_proj')
            .replace(/experts\.\d+\.down_proj\.weight$/, 'experts.down_proj'),
        ),
      ),
    ]
    const unfrozen = axolotlUnfrozen(y.unfrozen_parameters as string[], fusedNames)
    expect([...unfrozen.keys()].sort()).toEqual([
      'model.layers.0.mlp.experts.down_proj',
      'model.layers.0.mlp.experts.gate_up_proj',
      'model.layers.2.mlp.experts.down_proj',
      'model.layers.2.mlp.experts.gate_up_proj',
    ])
    const open = (name: string, e: number): boolean => (unfrozen.get(name) ?? []).some(([a, b]) => e >= a && e < b)
    for (const s of specs.filter((x) => x.kind === 'expert')) {
      const fused = s.name
        .replace(/experts\.\d+\.(gate_proj|up_proj)\.weight$/, 'experts.gate_up_proj')
        .replace(/experts\.\d+\.down_proj\.weight$/, 'experts.down_proj')
      expect(open(fused, s.expert!), s.name).toBe((esft as Record<string, number[]>)[String(s.layer)]?.includes(s.expert!) === true)
    }
    expect(plan.mapping.find((r) => r.setting === 'esft.enabled')).toMatchObject({
      equivalent: 'mapped',
      target: expect.stringMatching(/^the 3 expert\(s\) the run chose, in 2 layer\(s\), train/),
      note: 'layer 0: 1, 3; layer 2: 0',
    })
    expect(plan.warnings.join('\n')).not.toMatch(/esft/)
    // The memory plan counts the chosen experts' weights, not the whole model's.
    const all = planHandoff(input('axolotl', { method: 'full' }, m)).memory.trainableParams
    const expertSize = specs
      .filter((s) => s.kind === 'expert' && s.layer === 0 && s.expert === 1)
      .reduce((n, s) => n + s.shape[0] * s.shape[1], 0)
    expect(plan.memory.trainableParams).toBe(3 * expertSize)
    expect(all).toBeGreaterThan(plan.memory.trainableParams)
    // LLaMA-Factory freezes whole modules: the closest keys, the weights it trains otherwise named.
    const lf = planHandoff({ ...input('llamafactory', run, m), esft })
    expect(yamlOf(lf.trainer)).toMatchObject({ finetuning_type: 'freeze', freeze_trainable_modules: 'mlp' })
    expect(lf.warnings.join('\n')).toMatch(/freeze: LLaMA-Factory freezes whole modules per layer .* it trains \d+ weight\(s\) differently/)
    // Not scored yet (a config, or a run handed off before it started): no selection to carry, said so.
    const unscored = planHandoff(input('axolotl', run, m))
    expect(unscored.mapping.find((r) => r.setting === 'esft.enabled')).toMatchObject({ equivalent: 'none' })
    expect(unscored.warnings.join('\n')).toMatch(/Hand off the run once it has started here/)
  })

  it('freeze: axolotl is exact for LLaMA-Factory-style selectors too (last layers, chosen parts)', () => {
    const m = QWEN2()
    const selectors: NonNullable<RunConfigInput['freeze']>[] = [
      { trainableLayers: 1, trainableParts: ['experts', 'router'] },
      { trainableLayers: -2 },
      { trainableParts: ['attention', 'norms', 'lm_head'] },
    ]
    for (const freeze of selectors) {
      const run = validateRunConfig({ method: 'freeze', freeze })
      const y = yamlOf(planHandoff(input('axolotl', run, m)).trainer)
      const names = paramSpecs(m).filter((s) => s.kind !== 'expert')
      const unfrozen = axolotlUnfrozen(
        y.unfrozen_parameters as string[],
        names.map((s) => s.name),
      )
      for (const s of names) expect(unfrozen.has(s.name), `${JSON.stringify(freeze)} ${s.name}`).toBe(isTrainable(s, run, m))
    }
  })

  it('freeze: LLaMA-Factory is exact where its modules allow, and names the weights where not', () => {
    // The last layer's MoE block (router and experts) of OLMoE: exactly LLaMA-Factory's freeze tuning.
    const olmoe = model({ family: 'olmoe', normTopkProb: false, qkNorm: 'projection' } as Partial<MoeConfigInput>)
    const exact = planHandoff(
      input('llamafactory', { method: 'freeze', freeze: { trainableLayers: 1, trainableParts: ['experts', 'router'] } }, olmoe),
    )
    expect(yamlOf(exact.trainer)).toMatchObject({ finetuning_type: 'freeze', freeze_trainable_layers: 1, freeze_trainable_modules: 'mlp' })
    expect(yamlOf(exact.trainer)).not.toHaveProperty('freeze_extra_modules')
    expect(exact.mapping.find((r) => r.setting === 'freeze.trainableLayers')).toMatchObject({ equivalent: 'mapped' })
    expect(exact.warnings.join('\n')).not.toMatch(/freeze/)
    // A frozen router inside a trained block: LLaMA-Factory cannot; the router weights are named.
    const plan = planHandoff(
      input('llamafactory', { method: 'freeze', freeze: { attention: true, router: true }, data: { packing: false } }),
    )
    const y = yamlOf(plan.trainer)
    expect(y).toMatchObject({
      finetuning_type: 'freeze',
      freeze_trainable_layers: 3,
      packing: false,
      freeze_extra_modules: 'embed_tokens,norm,lm_head',
    })
    expect(String(y.freeze_trainable_modules).split(',')).toEqual(['block_sparse_moe', 'input_layernorm', 'post_attention_layernorm'])
    expect(plan.mapping.find((r) => r.setting === 'freeze.router')).toMatchObject({ equivalent: 'none' })
    expect(plan.warnings.join('\n')).toMatch(/trains 3 weight\(s\) differently, e\.g\. model\.layers\.0\.block_sparse_moe\.gate\.weight/)
  })

  it('every run-config setting has a row: mapped with its value, not needed, or plainly no equivalent', () => {
    for (const target of ['llamafactory', 'axolotl'] as const)
      for (const run of [{ method: 'lora' }, { method: 'full' }, { method: 'freeze', freeze: { allExperts: true } }] as const) {
        const plan = planHandoff(input(target, run))
        const leaves = runConfigLeaves(validateRunConfig(run)).map(([k]) => k)
        expect(plan.mapping.map((r) => r.setting)).toEqual(leaves)
        for (const r of plan.mapping) {
          expect(r.note ?? '', `${target} ${r.setting}`).not.toMatch(/not mapped by this version/)
          if (r.equivalent === 'mapped') expect(r.target, r.setting).toBeTruthy()
        }
        const none = plan.mapping.filter((r) => r.equivalent === 'none').map((r) => r.setting)
        expect(none).toEqual(expect.arrayContaining(['finalEval.rows']))
        // Where weights live and what the workbench watches change nothing learned: not needed, with their note.
        for (const k of ['offload.budgetBytes', 'offload.storage', 'alerts.deadShare', 'alerts.collapseShare', 'alerts.steps'])
          expect(
            plan.mapping.find((r) => r.setting === k),
            k,
          ).toMatchObject({ equivalent: 'unneeded', note: expect.any(String) })
        // The short list leaves out what the run does not use (unset, off); the table keeps them.
        expect(plan.mapping.find((r) => r.setting === 'evalBatches')).toMatchObject({ value: '0', equivalent: 'unneeded' })
        const carried = notCarried(plan.mapping)
        expect(carried).toContain('finalEval.rows')
        expect(carried.filter((k) => k.startsWith('offload.') || k.startsWith('alerts.'))).toEqual([])
        // A LoRA or full run on the defaults: only what truly does not happen there (the before/after answers).
        if (run.method !== 'freeze') expect(carried).toEqual(['finalEval.rows'])
        expect(carried.every((k) => none.includes(k))).toBe(true)
        // ESFT is off in these runs: its settings are not needed, not missing.
        expect(none.filter((k) => k.startsWith('esft.'))).toEqual([])
      }
    const esft = planHandoff(input('llamafactory', { method: 'full', esft: { enabled: true } }))
    const esftNone = esft.mapping.filter((r) => r.setting.startsWith('esft.') && r.equivalent === 'none').map((r) => r.setting)
    expect(esftNone.sort()).toEqual(['esft.enabled', 'esft.score', 'esft.scoringBatches', 'esft.threshold'])
    // Early stopping on: LLaMA-Factory has none (listed); axolotl carries the patience, not a minimum improvement.
    const early = { earlyStopping: { patience: 3, minDelta: 0.01 } }
    expect(notCarried(planHandoff(input('llamafactory', early)).mapping)).toEqual(
      expect.arrayContaining(['earlyStopping.patience', 'earlyStopping.minDelta']),
    )
    const ax = planHandoff(input('axolotl', early)).mapping
    expect(ax.find((r) => r.setting === 'earlyStopping.patience')).toMatchObject({ equivalent: 'mapped' })
    expect(notCarried(ax)).toContain('earlyStopping.minDelta')
    // A knob that is on and has no equivalent says so.
    const z = planHandoff(input('axolotl', { moe: { zLossCoef: 0.001, capacityFactorTrain: 1.25 } }))
    expect(z.mapping.find((r) => r.setting === 'moe.zLossCoef')).toMatchObject({ equivalent: 'none', value: '0.001' })
    expect(z.mapping.find((r) => r.setting === 'moe.capacityFactorTrain')).toMatchObject({ equivalent: 'none' })
    expect(z.warnings.join('\n')).toMatch(/capacityFactorTrain 1.25/)
    // A run's top-k: axolotl overrides num_experts_per_tok; LLaMA-Factory has no key, and says where to set it.
    const k = model().topK + 1
    const ax3 = planHandoff(input('axolotl', { moe: { topK: k } }))
    expect(yamlOf(ax3.trainer).model_config).toMatchObject({ num_experts_per_tok: k })
    expect(ax3.mapping.find((r) => r.setting === 'moe.topK')).toMatchObject({ equivalent: 'mapped', value: String(k) })
    const lf3 = planHandoff(input('llamafactory', { moe: { topK: k } }))
    expect(lf3.mapping.find((r) => r.setting === 'moe.topK')).toMatchObject({
      equivalent: 'none',
      note: `LLaMA-Factory has no key for it; set num_experts_per_tok: ${k} in a copy of config.json`,
    })
    expect(lf3.warnings.join('\n')).toContain(`moe.topK ${k}: LLaMA-Factory has no key for it (the model routes to ${model().topK})`)
    // The model's own top-k, given or left empty: nothing to carry.
    for (const target of ['axolotl', 'llamafactory'] as const) {
      const own = planHandoff(input(target, { moe: { topK: model().topK } }))
      expect(own.mapping.find((r) => r.setting === 'moe.topK')).toMatchObject({ equivalent: 'unneeded' })
    }
    expect(yamlOf(planHandoff(input('axolotl', {})).trainer).model_config).not.toHaveProperty('num_experts_per_tok')
  })

  it('DeepSpeed by model size: ZeRO-2 for a small model, ZeRO-3 for Mixtral-8x7B on 80 GiB GPUs', () => {
    const small = planHandoff(input('llamafactory', { method: 'full' }))
    expect(small.deepspeed.stage).toBe(2)
    expect(small.deepspeed.config).toMatchObject({ zero_optimization: { stage: 2 } })
    const mixtral8x7b = MIXTRAL_8X7B()
    const big = planHandoff({ ...input('axolotl', { method: 'lora', batchSize: 1 }, mixtral8x7b), nodes: 1, gpusPerNode: 8 })
    expect(big.deepspeed.stage).toBe(3)
    expect(big.deepspeed.offload).toBe(false)
    expect(big.memory.weights / 2 ** 30).toBeGreaterThan(80)
    expect(big.memory.perDevice.zero3).toBeLessThan(80 * 2 ** 30)
    const full = planHandoff({ ...input('llamafactory', { method: 'full', batchSize: 1 }, mixtral8x7b), gpusPerNode: 2 })
    expect(full.deepspeed).toMatchObject({ stage: 3, offload: true, file: 'ds_z3_offload_config.json' })
    expect(full.warnings.filter((w) => w.startsWith('memory:'))).toEqual([]) // offload makes it fit
    // A GPU too small even with offload: said, not written as if it would run.
    const tiny = planHandoff({
      ...input('llamafactory', { method: 'full', batchSize: 1 }, mixtral8x7b),
      gpusPerNode: 2,
      gpuMemoryBytes: 2 ** 20,
    })
    expect(tiny.deepspeed.offload).toBe(true)
    expect(tiny.warnings).toContainEqual(
      expect.stringMatching(
        /^memory: even ZeRO-3 with CPU offload needs about [\d.]+ GiB per device, more than the 1\.0 MiB of each GPU: add GPUs/,
      ),
    )
  })

  it('says where a batch cannot be split evenly over the devices, and that the learning rate stays the one set for it', () => {
    const odd = planHandoff({ ...input('axolotl', { batchSize: 4, optimizer: { lr: 0.003 } }), nodes: 1, gpusPerNode: 8 })
    expect(odd.batch).toMatchObject({ effective: 8, workbench: 4 })
    expect(odd.warnings).toContainEqual(
      'batch: 4 rows per step here cannot be split evenly over 8 devices; the cluster run takes 8 per step, at the learning rate set for 4 (0.003): choose a batch size that 8 divides, or adjust the rate for the larger batch',
    )
    const even = planHandoff({ ...input('axolotl', { batchSize: 16, optimizer: { lr: 0.003 } }), nodes: 1, gpusPerNode: 8 })
    expect(even.warnings.filter((w) => w.startsWith('batch:'))).toEqual([])
  })

  it('eval_steps stays within max_steps, so a run shorter than one interval still evaluates (at its end, as here)', () => {
    for (const target of ['llamafactory', 'axolotl'] as const) {
      const short = planHandoff(input(target, { maxSteps: 20, evalEvery: 50 }))
      expect(yamlOf(short.trainer).eval_steps, target).toBe(20)
      expect(short.mapping.find((r) => r.setting === 'evalEvery')?.note, target).toMatch(
        /evalEvery 50 is past max_steps 20: evaluated at the last step/,
      )
      expect(yamlOf(planHandoff(input(target, { maxSteps: 200, evalEvery: 50 })).trainer).eval_steps, target).toBe(50)
    }
  })

  it('sizes under a GiB read in MiB ("about 0.0 GiB per device" said nothing)', () => {
    expect(gib(3 * 2 ** 29)).toBe('1.5 GiB')
    expect(gib(12.5 * 2 ** 20)).toBe('12.5 MiB')
    expect(chooseDeepSpeed({ weights: 2 ** 20, perDevice: { zero2: 5 * 2 ** 20, zero3: 2 ** 20 } } as never, 80 * 2 ** 30).reason).toMatch(
      /^ZeRO-2 \(about 5\.0 MiB per device\)/,
    )
  })

  it('bad input is named, not crashed on', () => {
    expect(() => planHandoff({ ...input('llamafactory', {}), nodes: 0 })).toThrow(/nodes: 0/)
    expect(() => planHandoff(input('llamafactory', {}, model(), 'tokens'))).toThrow(/pre-tokenised.*axolotl/)
  })
})

describe('handoff folders', () => {
  const rowsOf = async (ws: string, id: string, split?: 'train' | 'validation'): Promise<NormalizedRow[]> => {
    const out: NormalizedRow[] = []
    for await (const r of readRows(ws, id, split)) out.push(r)
    return out
  }

  for (const [label, file, make] of [
    ['chat (alpaca file)', 'arithmetic.jsonl', null],
    [
      'completion',
      'completion.jsonl',
      () => Array.from({ length: 30 }, (_, i) => JSON.stringify({ prompt: `Q${i}: ${i} + 1 =`, completion: ` ${i + 1}` })).join('\n'),
    ],
    [
      'text',
      'text.jsonl',
      () => Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: `line ${i}\nwith "quotes" and: colons` })).join('\n'),
    ],
  ] as const)
    for (const target of ['llamafactory', 'axolotl'] as const)
      it(`${label} rows for ${target} read back through the workbench's importer as the same rows`, async () => {
        const ws = mkdtempSync(join(tmpdir(), 'handoff-ws-'))
        let source = join(SAMPLES, file)
        if (make) {
          source = join(ws, file)
          writeFileSync(source, make())
        }
        const m = await importDataset(ws, source, { split: { validation: 0.2, seed: 3 } })
        const out = join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job')
        const r = await writeHandoff(
          {
            config: validateRunConfig({ method: 'lora', lora: { targets: ['attention', 'experts'] } }),
            modelDir: DEFAULT_MODEL,
            dataset: m.id,
            from: 'a run config',
          },
          { workspace: ws, target, outDir: out },
        )
        expect(r.files).toContain(target === 'llamafactory' ? 'llamafactory.yaml' : 'axolotl.yaml')
        for (const f of r.files) expect(existsSync(join(out, f)), f).toBe(true)
        const trainer = yamlOf(readFileSync(join(out, target === 'llamafactory' ? 'llamafactory.yaml' : 'axolotl.yaml'), 'utf8'))
        const ds = JSON.parse(readFileSync(join(out, 'deepspeed', r.deepspeed.file), 'utf8')) as { zero_optimization: { stage: number } }
        expect(ds.zero_optimization.stage).toBe(r.deepspeed.stage)
        expect(trainer.deepspeed).toBe(`deepspeed/${r.deepspeed.file}`)
        if (target === 'llamafactory') {
          const info = JSON.parse(readFileSync(join(out, 'data', 'dataset_info.json'), 'utf8')) as Record<string, { file_name: string }>
          expect(existsSync(join(out, 'data', info[String(trainer.dataset)].file_name))).toBe(true)
          expect(trainer.stage).toBe(label === 'text' ? 'pt' : 'sft')
        }
        for (const split of ['train', 'validation'] as const) {
          const back = await importDataset(ws, join(out, 'data', `${split}.jsonl`), { split: { validation: 0 } })
          expect(await rowsOf(ws, back.id)).toEqual(await rowsOf(ws, m.id, split))
        }
        const readme = readFileSync(join(out, 'README.md'), 'utf8')
        expect(readme).toMatch(
          target === 'llamafactory' ? /FORCE_TORCHRUN=1 NNODES=2 NODE_RANK=1/ : /accelerate launch .*-m axolotl\.cli\.train/,
        )
        expect(readme).toMatch(/\| `moe.zLossCoef` \|/)
        expect(readme).toMatch(/GPU memory per device/)
        // A small model's size in words, not "0.00B parameters".
        expect(readme).toMatch(/, \d+(\.\d+)?[KM] parameters, \d+(\.\d+)?[KM] active per token/)
        expect(readFileSync(join(out, target === 'llamafactory' ? 'llamafactory.yaml' : 'axolotl.yaml'), 'utf8')).toMatch(
          /\d+(\.\d+)?[KM] parameters\./,
        )
      })

  it('a --model-ref other than the model the plan was made for is warned of, in the result and the README', async () => {
    const ws = mkdtempSync(join(tmpdir(), 'handoff-ws-'))
    const m = await importDataset(ws, join(SAMPLES, 'arithmetic.jsonl'))
    const src = { config: validateRunConfig({}), modelDir: DEFAULT_MODEL, dataset: m.id, from: 'a run config' }
    const write = (modelDir: string, modelRef?: string) =>
      writeHandoff(
        { ...src, modelDir },
        { workspace: ws, target: 'axolotl', outDir: join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job'), modelRef },
      )
    const modelWarnings = (r: { warnings: string[] }) => r.warnings.filter((w) => w.startsWith('model: '))
    // The bundled model names no hub id: the plan's model is said, to compare with the one named.
    const unchecked = await write(DEFAULT_MODEL, 'mistralai/Mixtral-8x7B-v0.1')
    expect(modelWarnings(unchecked)).toEqual([
      expect.stringMatching(
        /^model: the plan is for the model of \S+default-model \(mixtral, [\d.]+M parameters\), whose config names no hub id to check mistralai\/Mixtral-8x7B-v0\.1 against/,
      ),
    ])
    expect(readFileSync(join(unchecked.outDir, 'README.md'), 'utf8')).toContain(modelWarnings(unchecked)[0])
    // A folder from the hub: another id is warned of, its own is not; no --model-ref, nothing to warn.
    const fromHub = mkdtempSync(join(tmpdir(), 'handoff-hub-'))
    const config = JSON.parse(readFileSync(join(DEFAULT_MODEL, 'config.json'), 'utf8')) as Record<string, unknown>
    writeFileSync(join(fromHub, 'config.json'), JSON.stringify({ ...config, _name_or_path: 'org/small-moe' }))
    expect(modelWarnings(await write(fromHub, 'org/big-moe'))).toEqual([
      expect.stringMatching(/^model: org\/big-moe is not org\/small-moe, the model of \S+ \(mixtral, .*\) this plan was made for/),
    ])
    const own = await write(fromHub, 'org/small-moe')
    expect(modelWarnings(own)).toEqual([])
    // A folder without its tokenizer, handed off by hub id: the hub's repository has its own.
    expect(readFileSync(join(own.outDir, 'README.md'), 'utf8')).not.toContain('has no tokenizer')
    expect(own.warnings.filter((w) => /no tokenizer/.test(w))).toEqual([])
    // By its path (no hub id in its config): the trainer needs one there, said once in the result
    // (the CLI prints it) and in bold in the README, and not as a chat template it lacks.
    const bare = mkdtempSync(join(tmpdir(), 'handoff-bare-'))
    writeFileSync(join(bare, 'config.json'), JSON.stringify(config))
    for (const target of ['axolotl', 'llamafactory'] as const) {
      const byPath = await writeHandoff(
        { ...src, modelDir: bare },
        { workspace: ws, target, outDir: join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job') },
      )
      const key = target === 'axolotl' ? 'base_model' : 'model_name_or_path'
      expect(byPath.warnings.filter((w) => /tokenizer/.test(w))).toEqual([
        expect.stringMatching(
          new RegExp(
            `^tokenizer: \\S+ has no tokenizer \\(no tokenizer\\.json\\): \\S+ loads it from ${key}, even for rows already in token ids`,
          ),
        ),
      ])
      const readme = readFileSync(join(byPath.outDir, 'README.md'), 'utf8')
      expect(readme).toMatch(
        new RegExp(
          `\\*\\*Its folder has no tokenizer\\*\\* \\(no \`tokenizer.json\` in \`\\S+\`\\): \\S+ loads the tokenizer from \`${key}\``,
        ),
      )
      expect(readme).not.toMatch(/^- tokenizer: /m)
    }
    expect(readFileSync(join(unchecked.outDir, 'README.md'), 'utf8')).not.toContain('has no tokenizer')
    expect(modelWarnings(await write(DEFAULT_MODEL))).toEqual([])
  })

  it('a copied model holds the files the trainer reads, names what it left out, and is refused where the disk cannot take it', async () => {
    const ws = mkdtempSync(join(tmpdir(), 'handoff-ws-'))
    const m = await importDataset(ws, join(SAMPLES, 'arithmetic.jsonl'))
    // A hub folder as people have them: the weights again in other formats, the original
    // checkpoint in a folder, git's files, and a file of someone's own.
    const hub = mkdtempSync(join(tmpdir(), 'handoff-hub-'))
    for (const f of readdirSync(DEFAULT_MODEL)) copyFileSync(join(DEFAULT_MODEL, f), join(hub, f))
    mkdirSync(join(hub, 'original'))
    mkdirSync(join(hub, '.git'))
    for (const f of [
      'original/consolidated.00.pt',
      'pytorch_model.bin',
      'consolidated.safetensors.pt',
      'expected.json',
      '.gitattributes',
      'LICENSE',
      'modeling_x.py',
    ])
      writeFileSync(join(hub, f), 'x')
    const src = { config: validateRunConfig({}), modelDir: hub, dataset: m.id, from: 'a run config' }
    const out = join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job')
    const r = await writeHandoff(src, { workspace: ws, target: 'llamafactory', outDir: out, copyModel: true })
    expect(readdirSync(join(out, 'model')).sort()).toEqual(
      [
        'LICENSE',
        'README.md',
        'config.json',
        'generation_config.json',
        'model.safetensors',
        'modeling_x.py',
        'special_tokens_map.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    )
    expect(readFileSync(join(out, 'model', 'model.safetensors')).equals(readFileSync(join(hub, 'model.safetensors')))).toBe(true)
    const leftOut = r.warnings.filter((w) => w.startsWith('model: model/'))
    expect(leftOut).toEqual([
      expect.stringMatching(
        /^model: model\/ holds the files LLaMA-Factory reads \(9 of them, [\d.]+ MiB\); left out of the copy: \.git\/, \.gitattributes, consolidated\.safetensors\.pt, expected\.json, original\/, pytorch_model\.bin\./,
      ),
    ])
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain(leftOut[0])
    expect(r.modelRef).toBe('model')
    // handoff.json keeps the record: what the copy took and left, and the warnings.
    expect(JSON.parse(readFileSync(join(out, 'handoff.json'), 'utf8'))).toMatchObject({
      warnings: r.warnings,
      modelCopy: {
        files: expect.arrayContaining(['config.json', 'model.safetensors']),
        bytes: expect.any(Number),
        leftOut: ['.git/', '.gitattributes', 'consolidated.safetensors.pt', 'expected.json', 'original/', 'pytorch_model.bin'],
      },
    })
    // Only .bin weights: those are the weights, copied.
    const bins = mkdtempSync(join(tmpdir(), 'handoff-bin-'))
    copyFileSync(join(DEFAULT_MODEL, 'config.json'), join(bins, 'config.json'))
    for (const f of ['pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json'])
      writeFileSync(join(bins, f), 'x')
    const binOut = join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job')
    const rb = await writeHandoff({ ...src, modelDir: bins }, { workspace: ws, target: 'axolotl', outDir: binOut, copyModel: true })
    expect(readdirSync(join(binOut, 'model')).sort()).toEqual(
      ['config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json'].sort(),
    )
    expect(rb.warnings.filter((w) => w.startsWith('model: model/'))).toEqual([])
    // Weights larger than the disk's free space (a sparse file: 8 TiB said, nothing stored) are
    // refused before anything is written.
    truncateSync(join(hub, 'model.safetensors'), 8 * 2 ** 40)
    const full = join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job')
    await expect(writeHandoff(src, { workspace: ws, target: 'axolotl', outDir: full, copyModel: true })).rejects.toThrow(
      /^outDir: copying the model's files takes 8\.0 TiB and \S+ has [\d.]+ \w+ free; free some space, choose a folder on another disk, or hand off without copying the model/,
    )
    expect(existsSync(full)).toBe(false)
    expect(readdirSync(dirname(full))).toEqual([])
  })

  it('refuses a folder that is not empty, and leaves nothing behind on failure', async () => {
    const ws = mkdtempSync(join(tmpdir(), 'handoff-ws-'))
    const m = await importDataset(ws, join(SAMPLES, 'arithmetic.jsonl'))
    const busy = mkdtempSync(join(tmpdir(), 'handoff-busy-'))
    writeFileSync(join(busy, 'x'), '')
    const src = { config: validateRunConfig({}), modelDir: DEFAULT_MODEL, dataset: m.id, from: 'a run config' }
    await expect(writeHandoff(src, { workspace: ws, target: 'axolotl', outDir: busy })).rejects.toThrow(/outDir: .* is not an empty folder/)
    const out = join(mkdtempSync(join(tmpdir(), 'handoff-out-')), 'job')
    await expect(writeHandoff({ ...src, dataset: 'nope' }, { workspace: ws, target: 'axolotl', outDir: out })).rejects.toThrow(
      /dataset: no dataset nope/,
    )
    await expect(writeHandoff(src, { workspace: ws, target: 'axolotl', outDir: out, gpusPerNode: 0 })).rejects.toThrow(/gpusPerNode/)
    expect(existsSync(out)).toBe(false)
  })
})
