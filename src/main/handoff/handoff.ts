/**
 * `moe-workbench handoff`: a folder that runs a workbench run on a cluster with LLaMA-Factory or
 * axolotl and DeepSpeed, as it is:
 *
 *   <out>/README.md                     launch commands (one node, several), GPU memory, the mapping table
 *   <out>/llamafactory.yaml | axolotl.yaml
 *   <out>/deepspeed/ds_z2_config.json | ds_z3_config.json | ds_z3_offload_config.json
 *   <out>/data/train.jsonl, validation.jsonl (the workbench's split, row for row)
 *   <out>/data/dataset_info.json        LLaMA-Factory only
 *   <out>/model/                        with copyModel: the base model's files a trainer reads (modelFiles)
 *   <out>/handoff.json                  what was handed off, from where, with which versions
 *
 * Everything is written into a temporary folder renamed into place at the end: a failure leaves
 * nothing behind. Paths inside are relative: launch from the folder.
 */
import {
  createWriteStream,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmdirSync,
  rmSync,
  statfsSync,
  statSync,
} from 'node:fs'
import { copyFile } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { once } from 'node:events'
import { formatBytes } from '../../shared/bytes'
import { rowKind, type ChatRow, type NormalizedRow, type RowKind } from '../../shared/dataset'
import type { HandoffResult, HandoffTarget } from '../../shared/handoff'
import { countParams, formatParamCount, fromHfConfig, type MoeConfig } from '../../shared/modelConfig'
import type { RunConfig } from '../../shared/runConfig'
import type { ExpertSelection } from '../../shared/runs'
import { readManifest, readRows } from '../data/workspace'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'
import { gib } from './deepspeed'
import { mappingTable, planHandoff, TARGET_VERSIONS, targetRequires, type HandoffDataset, type HandoffPlan } from './targets'

export class HandoffError extends Error {}

export interface HandoffSource {
  config: RunConfig
  /** The base model folder. */
  modelDir: string
  /** A dataset id of `workspace`. */
  dataset: string
  /** Where it came from, for the README: a run id, or "a run config". */
  from: string
  /** The experts an ESFT run chose (its record), once it has. */
  esft?: ExpertSelection
}

export interface HandoffOptions {
  workspace: string
  target: HandoffTarget
  outDir: string
  modelRef?: string
  copyModel?: boolean
  nodes?: number
  gpusPerNode?: number
  gpuMemoryGiB?: number
}

/**
 * The files of a model folder a Hugging Face trainer reads, by name, at its top level: config,
 * weights, tokenizer, chat template, remote code, license and card. The weights are the
 * safetensors where there are any (a hub folder may also hold pytorch_model*.bin or Mistral's
 * consolidated.*.pt: the same weights again), else pytorch_model*.bin.
 */
const MODEL_FILE =
  /^(config\.json|generation_config\.json|tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|vocab\.(json|txt)|merges\.txt|chat_template\.(jinja|json)|[^.].*\.tiktoken|[^.].*\.py|LICEN[CS]E(\..*)?|NOTICE(\..*)?|README\.md|USE_POLICY\.md)$/
const SAFETENSORS = /^[^.].*\.safetensors(\.index\.json)?$/
const TORCH_BIN = /^pytorch_model.*\.bin(\.index\.json)?$/

/** What a model copy takes from `modelDir`: the files (names), their bytes, and what it leaves out (folders end in /). */
export function modelFiles(modelDir: string): { files: string[]; bytes: number; leftOut: string[] } {
  const entries = readdirSync(modelDir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))
  const names = entries.filter((e) => e.isFile()).map((e) => e.name)
  const weights = names.some((n) => SAFETENSORS.test(n)) ? SAFETENSORS : TORCH_BIN
  const files = names.filter((n) => MODEL_FILE.test(n) || weights.test(n))
  const leftOut = entries
    .filter((e) => e.name !== 'workbench.json' && !files.includes(e.name))
    .map((e) => (e.isDirectory() ? `${e.name}/` : e.name))
  return { files, bytes: files.reduce((sum, n) => sum + statSync(join(modelDir, n)).size, 0), leftOut }
}

/** Room a copy leaves on its disk besides the files themselves (the data, the configs, the file system's own). */
const COPY_HEADROOM = 256 * 2 ** 20

const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*\/[A-Za-z0-9][A-Za-z0-9._-]*$/

function readJson(file: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as unknown
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null
  } catch {
    return null
  }
}

/** The hub id a model folder came from (config.json _name_or_path, or workbench.json's), if it names one. */
export function hubIdOf(modelDir: string): string | null {
  for (const [file, key] of [
    ['config.json', '_name_or_path'],
    ['workbench.json', 'hubId'],
  ] as const) {
    const v = readJson(join(modelDir, file))?.[key]
    if (typeof v === 'string' && HUB_ID.test(v) && !existsSync(v)) return v
  }
  return null
}

function hasChatTemplate(modelDir: string): boolean {
  const tc = readJson(join(modelDir, 'tokenizer_config.json'))
  return typeof tc?.chat_template === 'string' || Array.isArray(tc?.chat_template) || existsSync(join(modelDir, 'chat_template.jinja'))
}

/** A row as the target reads it (the workbench's own importer reads it back to the same row). */
function targetRow(row: NormalizedRow, kind: RowKind, target: HandoffTarget): Record<string, unknown> {
  switch (kind) {
    case 'chat':
      return { messages: (row as { messages: unknown }).messages }
    case 'completion': {
      const r = row as { prompt: string; completion: string }
      return { prompt: r.prompt, completion: r.completion }
    }
    case 'text':
      return { text: (row as { text: string }).text }
    case 'tokens': {
      const r = row as { input_ids: number[]; labels?: number[] }
      // axolotl's pre-tokenised rows need all three columns.
      return target === 'axolotl'
        ? { input_ids: r.input_ids, attention_mask: r.input_ids.map(() => 1), labels: r.labels ?? r.input_ids }
        : { input_ids: r.input_ids, ...(r.labels && { labels: r.labels }) }
    }
  }
}

/**
 * Writes one split as JSONL; returns the row count and how many assistant turns have weight 0
 * (trained on by the targets, which read no such weight). Rows must all be of `kind`.
 */
async function writeSplit(
  workspace: string,
  id: string,
  split: 'train' | 'validation',
  file: string,
  kind: RowKind,
  target: HandoffTarget,
): Promise<{ rows: number; contextTurns: number }> {
  const out = createWriteStream(file, { encoding: 'utf8' })
  let n = 0
  let contextTurns = 0
  try {
    for await (const row of readRows(workspace, id, split)) {
      const k = rowKind(row)
      if (k !== kind)
        throw new HandoffError(
          `dataset ${id}: ${split} row ${n + 1} is a ${k} row among ${kind} rows; the targets take one kind per dataset`,
        )
      if (!out.write(JSON.stringify(targetRow(row, kind, target)) + '\n')) await once(out, 'drain')
      if (kind === 'chat') contextTurns += (row as ChatRow).messages.filter((m) => m.weight === 0).length
      n++
    }
  } finally {
    out.end()
    await once(out, 'close')
  }
  return { rows: n, contextTurns }
}

/** The first row's kind (a dataset holds one layout). */
async function datasetKind(workspace: string, id: string): Promise<RowKind> {
  for await (const row of readRows(workspace, id)) return rowKind(row)
  throw new HandoffError(`dataset ${id} has no rows`)
}

function readme(
  plan: HandoffPlan,
  src: HandoffSource,
  model: MoeConfig,
  modelRef: string,
  opts: Required<Pick<HandoffOptions, 'nodes' | 'gpusPerNode' | 'gpuMemoryGiB'>>,
  files: string[],
  copied: boolean,
): string {
  const v = TARGET_VERSIONS[plan.target]
  // The plan's tokenizer warning is the bold paragraph under Files here.
  const noTokenizer = plan.warnings.some((w) => w.startsWith('tokenizer: '))
  const differences = plan.warnings.filter((w) => !w.startsWith('tokenizer: '))
  const counts = countParams(model)
  const m = plan.memory
  const install =
    plan.target === 'llamafactory'
      ? [
          'pip install "llamafactory[torch,metrics,deepspeed]"   # or from the source, as its README says',
          ...(src.config.method === 'lora' && (src.config.lora.targets.includes('experts') || src.config.lora.targets.includes('router'))
            ? ['pip install "transformers==4.57.6"   # LoRA on routed experts: they are nn.Linear only before transformers 5']
            : []),
        ]
      : [
          'pip install "axolotl[deepspeed]==0.18.0"',
          ...(src.config.method === 'lora' &&
          plan.deepspeed.stage === 3 &&
          (src.config.lora.targets.includes('experts') || src.config.lora.targets.includes('router'))
            ? ['pip install "peft>=0.21.0"   # ZeRO-3 with lora_target_parameters (huggingface/peft#3576)']
            : []),
        ]
  const output = plan.target === 'llamafactory' ? 'output' : 'output'
  const bringBack =
    src.config.method === 'lora'
      ? `The adapter lands in \`${output}/\` (\`adapter_config.json\`, \`adapter_model.safetensors\`; checkpoints in \`${output}/checkpoint-N/\`). Copy it back and import it on its base model; it then evaluates, merges and exports like a run trained here:

\`\`\`sh
moe-workbench adapter import ${output} --model ${src.modelDir}
moe-workbench eval --model <the run id it prints>
moe-workbench export <the run id> --out merged-model
\`\`\``
      : `The fine-tuned model lands in \`${output}/\` as a Hugging Face checkpoint folder. Copy it back and open it like any checkpoint (the Models screen's "Link a folder", or \`moe-workbench info --model ${output}\`).`
  const modelKey = plan.target === 'llamafactory' ? 'model_name_or_path' : 'base_model'
  const modelNote = copied
    ? ' (the base model folder, copied here)'
    : HUB_ID.test(modelRef)
      ? ' (its hub id)'
      : ` (a path: copy the folder to the cluster and change ${modelKey} in ${plan.trainerFile} if it lives elsewhere there)`
  return `# MoE Workbench handoff: ${src.from === 'a run config' ? 'a run config' : `run ${src.from}`} on ${v.name}

Written by MoE Workbench from ${src.from === 'a run config' ? 'a run config' : `run \`${src.from}\``}: base model \`${src.modelDir}\` (${model.family}, ${formatParamCount(counts.total)} parameters, ${formatParamCount(counts.active)} active per token), dataset \`${src.dataset}\`, method ${src.config.method}.
Keys follow ${v.name} ${v.version} (\`${v.source}\`). Requires: ${targetRequires(plan.target, src.config, plan.deepspeed.stage)}.

## Files

${files.map((f) => `- \`${f}\``).join('\n')}

The model is \`${modelRef}\`${modelNote}.${
    !noTokenizer
      ? ''
      : `\n\n**Its folder has no tokenizer** (no \`tokenizer.json\` in \`${src.modelDir}\`): ${v.name} loads the tokenizer from \`${modelKey}\`, even for rows already in token ids, so copy the base model's tokenizer files (\`tokenizer.json\`, \`tokenizer_config.json\`) into ${copied ? '`model/`' : 'the model folder'} before launching.`
  }

## Install

\`\`\`sh
${install.join('\n')}
\`\`\`

## Launch (from this folder)

One node with ${opts.gpusPerNode} GPUs:

\`\`\`sh
${plan.launch.single.join('\n')}
\`\`\`

Several nodes (run on each, with its own rank; ${Math.max(2, opts.nodes)} nodes shown):

\`\`\`sh
${plan.launch.multi.join('\n')}
\`\`\`

Batch: ${plan.batch.perDevice} row(s) per device × ${plan.batch.gradAccumulation} accumulation step(s) × ${plan.batch.devices} device${plan.batch.devices === 1 ? '' : 's'} = ${plan.batch.effective} rows per optimiser step (here: ${plan.batch.workbench}). On another number of devices, scale \`gradient_accumulation_steps\` to keep it.

## GPU memory per device (estimate)

For ${plan.batch.devices} device${plan.batch.devices === 1 ? '' : 's'} (${opts.nodes} × ${opts.gpusPerNode}) of ${Number(opts.gpuMemoryGiB.toPrecision(4))} GiB, ${plan.batch.perDevice} row(s) of ${src.config.data.maxLength} tokens per device, bf16 weights, AdamW, gradient checkpointing:

| DeepSpeed | per device |
| --- | --- |
| ZeRO-2 | ${gib(m.perDevice.zero2)} |
| ZeRO-3 | ${gib(m.perDevice.zero3)} |
| ZeRO-3 + CPU offload | ${gib(m.perDevice.zero3Offload)} |

Weights ${gib(m.weights)} (bf16), ${m.trainableParams.toLocaleString('en-US')} trained parameters, activations ${gib(m.activations)}.
Chosen: \`deepspeed/${plan.deepspeed.file}\`: ${plan.deepspeed.reason}. CUDA context, fragmentation and communication buffers come on top.
${differences.length ? `\n## Differences to know\n\n${differences.map((w) => `- ${w}`).join('\n')}\n` : ''}
## Every workbench setting and its ${v.name} key

${mappingTable(plan.mapping, `${v.name} ${v.version}`)}

## Bring the result back

${bringBack}
`
}

/**
 * Writes the handoff folder for `src` (see the module comment). `outDir` must be missing or empty.
 */
export async function writeHandoff(src: HandoffSource, opts: HandoffOptions): Promise<HandoffResult> {
  const out = resolve(opts.outDir)
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0))
    throw new HandoffError(`outDir: ${out} exists and is not an empty folder; choose a new folder`)
  const modelDir = resolve(src.modelDir)
  const hf = readJson(join(modelDir, 'config.json'))
  if (!hf) throw new HandoffError(`model: ${modelDir} has no readable config.json`)
  let model: MoeConfig
  try {
    model = fromHfConfig(hf, join(modelDir, 'config.json'))
  } catch (e) {
    throw new HandoffError(`model: ${(e as Error).message}`)
  }
  const manifest = await readManifest(opts.workspace, src.dataset).catch(() => {
    throw new HandoffError(`dataset: no dataset ${src.dataset} in ${opts.workspace}`)
  })
  const o = { nodes: opts.nodes ?? 1, gpusPerNode: opts.gpusPerNode ?? 8, gpuMemoryGiB: opts.gpuMemoryGiB ?? 80 }
  if (!(o.gpuMemoryGiB > 0)) throw new HandoffError(`gpuMemoryGiB: ${o.gpuMemoryGiB} must be a positive number`)
  const copied = opts.copyModel === true
  const modelRef = copied ? 'model' : (opts.modelRef ?? hubIdOf(modelDir) ?? modelDir)
  const kind = await datasetKind(opts.workspace, src.dataset)
  const key = `workbench_${manifest.id.replace(/[^A-Za-z0-9_]/g, '_')}`
  const dataset: HandoffDataset = {
    key,
    kind,
    trainFile: 'data/train.jsonl',
    validationFile: manifest.split.validationRows > 0 ? 'data/validation.jsonl' : null,
    trainRows: manifest.split.train,
    validationRows: manifest.split.validationRows,
  }
  let plan: HandoffPlan
  try {
    plan = planHandoff({
      target: opts.target,
      config: src.config,
      model,
      modelRef,
      chatTemplate: hasChatTemplate(modelDir),
      // A hub id's repository has its own tokenizer; a path or the copy has what this folder has.
      tokenizer: HUB_ID.test(modelRef) || existsSync(join(modelDir, 'tokenizer.json')),
      dataset,
      nodes: o.nodes,
      gpusPerNode: o.gpusPerNode,
      gpuMemoryBytes: o.gpuMemoryGiB * 2 ** 30,
      ...(src.config.esft.enabled && src.esft && { esft: src.esft }),
    })
  } catch (e) {
    throw new HandoffError((e as Error).message)
  }
  // The plan (memory, DeepSpeed stage, module names) is the folder's model's: a hub id for another
  // (a run tried on the bundled model, handed off as Mixtral-8x7B) would train with settings planned for
  // a model a thousand times smaller.
  if (opts.modelRef !== undefined && !copied) {
    const own = hubIdOf(modelDir)
    const size = `${model.family}, ${formatParamCount(countParams(model).total)} parameters`
    if (own && own !== opts.modelRef)
      plan.warnings.push(
        `model: ${opts.modelRef} is not ${own}, the model of ${modelDir} (${size}) this plan was made for: memory, DeepSpeed stage and module names may not fit it; hand off from its own folder`,
      )
    else if (!own)
      plan.warnings.push(
        `model: the plan is for the model of ${modelDir} (${size}), whose config names no hub id to check ${opts.modelRef} against; if that hub model is another, hand off from its own folder`,
      )
  }

  // The copy is planned, and checked against the disk's free space, before anything is written:
  // a 7B model's folder is tens of GB.
  const copy = copied ? modelFiles(modelDir) : null
  if (copy) {
    let parent = dirname(out)
    while (!existsSync(parent) && dirname(parent) !== parent) parent = dirname(parent)
    const { bavail, bsize } = statfsSync(parent)
    const free = bavail * bsize
    if (copy.bytes + COPY_HEADROOM > free)
      throw new HandoffError(
        `outDir: copying the model's files takes ${formatBytes(copy.bytes)} and ${parent} has ${formatBytes(free)} free; free some space, choose a folder on another disk, or hand off without copying the model (the config then names its folder or hub id)`,
      )
    if (copy.leftOut.length > 0)
      plan.warnings.push(
        `model: model/ holds the files ${TARGET_VERSIONS[opts.target].name} reads (${copy.files.length} of them, ${formatBytes(copy.bytes)}); left out of the copy: ${copy.leftOut.join(', ')}. Copy any of them in yourself if your setup needs it`,
      )
  }

  const tmp = `${out}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(join(tmp, 'data'), { recursive: true })
  mkdirSync(join(tmp, 'deepspeed'), { recursive: true })
  try {
    const files: string[] = []
    const { rows: trainRows, contextTurns } = await writeSplit(
      opts.workspace,
      src.dataset,
      'train',
      join(tmp, dataset.trainFile),
      kind,
      opts.target,
    )
    files.push(dataset.trainFile)
    if (contextTurns > 0)
      plan.warnings.push(
        `dataset: ${contextTurns} assistant turn${contextTurns === 1 ? '' : 's'} of the training rows ${contextTurns === 1 ? 'has' : 'have'} weight 0 (context, not trained on here); the ${TARGET_VERSIONS[opts.target].name} config written here reads no per-turn weight and trains on ${contextTurns === 1 ? 'it' : 'them'}; remove those rows or turns first if that matters`,
      )
    if (dataset.validationFile) {
      await writeSplit(opts.workspace, src.dataset, 'validation', join(tmp, dataset.validationFile), kind, opts.target)
      files.push(dataset.validationFile)
    }
    if (trainRows === 0) throw new HandoffError(`dataset ${src.dataset} has no training rows`)
    if (plan.datasetInfo) {
      writeJsonAtomic(join(tmp, 'data', 'dataset_info.json'), plan.datasetInfo)
      files.push('data/dataset_info.json')
    }
    writeFileAtomic(join(tmp, plan.trainerFile), plan.trainer)
    files.push(plan.trainerFile)
    writeJsonAtomic(join(tmp, 'deepspeed', plan.deepspeed.file), plan.deepspeed.config)
    files.push(`deepspeed/${plan.deepspeed.file}`)
    if (copy) {
      mkdirSync(join(tmp, 'model'))
      for (const f of copy.files) await copyFile(join(modelDir, f), join(tmp, 'model', f))
      files.push('model/')
    }
    files.push('README.md', 'handoff.json')
    writeFileAtomic(join(tmp, 'README.md'), readme(plan, src, model, modelRef, o, files, copied))
    writeJsonAtomic(join(tmp, 'handoff.json'), {
      target: opts.target,
      versions: { ...TARGET_VERSIONS[opts.target], requires: targetRequires(opts.target, src.config, plan.deepspeed.stage) },
      from: src.from,
      baseModel: modelDir,
      modelRef,
      dataset: { id: src.dataset, kind, trainRows, validationRows: dataset.validationRows },
      runConfig: src.config,
      nodes: o.nodes,
      gpusPerNode: o.gpusPerNode,
      gpuMemoryGiB: o.gpuMemoryGiB,
      // What the README says differs, and what a copy took and left (a record of the folder as written).
      warnings: plan.warnings,
      ...(copy && { modelCopy: { files: copy.files, bytes: copy.bytes, leftOut: copy.leftOut } }),
      written: new Date().toISOString(),
    })
    if (existsSync(out)) {
      try {
        rmdirSync(out)
      } catch {
        throw new HandoffError(`${out} received files while the handoff was written; they were left alone (choose a new folder)`)
      }
    }
    renameSync(tmp, out)
    return {
      outDir: out,
      target: opts.target,
      files,
      modelRef,
      deepspeed: { stage: plan.deepspeed.stage, offload: plan.deepspeed.offload, file: plan.deepspeed.file, reason: plan.deepspeed.reason },
      memoryPerDevice: plan.deepspeed.offload
        ? plan.memory.perDevice.zero3Offload
        : plan.deepspeed.stage === 2
          ? plan.memory.perDevice.zero2
          : plan.memory.perDevice.zero3,
      mapping: plan.mapping,
      warnings: plan.warnings,
      launch: plan.launch,
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    throw e
  }
}
