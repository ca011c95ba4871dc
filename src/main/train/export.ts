/**
 * Export a run as a Hugging Face checkpoint folder that other tools load: LoRA adapters merged
 * into the base weights (verified by comparing logits before anything is written), tokenizer
 * files from the base model, and a README card recording the run.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync, statSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import type { Dtype } from '../../shared/api'
import type { OffloadOptions } from '../../shared/chat'
import { paramSpecs, type MoeConfig } from '../../shared/modelConfig'
import type { RunEvaluation, RunExportResult, RunRecord } from '../../shared/runs'
import { DTYPE_TO_ST, inspectModel, loadModelAsync, readModelConfig, writeModelMeta } from '../engine/checkpoint'
import { deviceLock, read, scopedAsync } from '../engine/device'
import { withKnobs, type MoeModel } from '../engine/model'
import {
  encodeFromFloat32,
  loadSafetensors,
  openCheckpointTensors,
  readTensorBytes,
  writeCheckpointStream,
  type TensorSource,
} from '../engine/safetensors'
import { pacer, type TaskHooks } from '../engine/tasks'
import { readWeight } from '../engine/weights'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'
import { LoraAdapters, peftName } from './lora'
import { runKnobs } from './trainer'
import { RunFolder } from '../runs/runFolder'

/** Files copied from the base model folder when present. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
]

export interface ExportOptions {
  /** A checkpoint folder of the run (default: the last one). */
  checkpoint?: string
  /** The model's name, the README's heading (default: the folder's name). */
  name?: string
  /** Default: the base model's own dtype (a BF16 model exports as BF16). */
  dtype?: Dtype
  /** Largest |adapter − merged| logit difference accepted, relative to max(1, |logit|) (default by dtype). */
  tolerance?: number
  /** Device budget of the check's loads (default: the run's config.offload, else the backend's). */
  offload?: OffloadOptions
}

export type ExportResult = RunExportResult

/** Merge check tolerances: float32 keeps the sum exactly, 16-bit formats round every weight. */
const TOLERANCE: Record<Dtype, number> = { float32: 1e-4, float16: 1e-2, bfloat16: 5e-2 }

/** Logits of a fixed probe batch (read back asynchronously, holding the device lock). */
function probeLogits(model: MoeModel, lora?: LoraAdapters): Promise<Float32Array> {
  const V = model.config.vocabSize
  const T = Math.min(16, model.config.maxPositionEmbeddings)
  const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V)]
  return deviceLock.run(() =>
    scopedAsync(async () => read((await model.forwardAsync(ids, { weights: lora?.wrap(model.weightSource, { training: false }) })).logits)),
  )
}

/** Rows of W merged per device multiplication (bounded device memory for an lm_head). */
const MERGE_BLOCK_BYTES = 64 * 2 ** 20

/** w += scale · B · A, in row blocks of at most `blockBytes` on the device (w: out × in; A: r × in; B: out × r). */
export async function mergeInto(
  w: Float32Array,
  out: number,
  inp: number,
  A: Float32Array,
  B: Float32Array,
  rank: number,
  scale: number,
  blockBytes = MERGE_BLOCK_BYTES,
): Promise<void> {
  const block = Math.max(1, Math.floor(blockBytes / (inp * 4)))
  for (let r0 = 0; r0 < out; r0 += block) {
    const n = Math.min(block, out - r0)
    const delta = await deviceLock.run(() =>
      scopedAsync(() =>
        read(tf.mul(tf.matMul(tf.tensor2d(B.subarray(r0 * rank, (r0 + n) * rank), [n, rank]), tf.tensor2d(A, [rank, inp])), scale)),
      ),
    )
    const at = r0 * inp
    for (let i = 0; i < delta.length; i++) w[at + i] += delta[i]
  }
}

/**
 * Exports a run's checkpoint into `outDir` (which must not exist or be empty), one tensor at a
 * time whatever the model's size: each weight is read from the base model (LoRA) or the run's
 * checkpoint, merged with its adapters on the device in row blocks, converted and written (copied
 * byte for byte where nothing changes), so host memory holds one tensor. A LoRA export is then
 * checked: the written model's logits against the base model's with the adapters, both loaded
 * within the device budget (paged when they do not fit). Everything is written to a temporary
 * folder renamed into place at the end, so a failure or a cancel (`hooks.signal`, honoured
 * between tensors) leaves nothing behind. Progress: write (bytes) → check, as task stages.
 */
export async function exportRun(runDir: string, outDir: string, opts: ExportOptions = {}, hooks: TaskHooks = {}): Promise<ExportResult> {
  const folder = new RunFolder(runDir)
  const run = folder.read()
  const ckpt = opts.checkpoint ?? folder.lastCheckpoint()
  if (!ckpt) throw new Error(`${runDir}: the run has no checkpoint to export yet`)
  const out = resolve(outDir)
  if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`${out} is a file; choose a new folder to export to`)
  if (existsSync(out) && readdirSync(out).length > 0)
    throw new Error(`${out} exists and is not empty; choose a new or empty folder to export to`)
  const lora = run.config.method === 'lora'
  const stages = lora ? 2 : 1
  const pace = pacer(hooks.signal, `exporting run ${run.id}`)
  const source = lora ? run.baseModel : ckpt
  // Checks names and shapes (throws naming what is wrong) before anything is written.
  inspectModel(source)
  const dtype = opts.dtype ?? inspectModel(run.baseModel).checkpointDtype
  const st = DTYPE_TO_ST[dtype]
  // The run's MoE knobs travel with the export (a LoRA checkpoint holds only adapters).
  const config = withKnobs(readModelConfig(source), runKnobs(run.config))
  const { index } = openCheckpointTensors(source)
  const adapters = lora ? adapterTensors(join(ckpt, 'adapter_model.safetensors')) : new Map<string, Float32Array>()
  const scale = run.config.lora.alpha / run.config.lora.rank
  const rank = run.config.lora.rank
  const tmp = `${out}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })

  const writeLabel = lora ? 'Merging the LoRA adapters into the base weights' : WRITING
  const sources: TensorSource[] = paramSpecs(config).map((spec) => ({
    name: spec.name,
    dtype: st,
    shape: [...spec.shape],
    bytes: async () => {
      const header = index.get(spec.name)!
      const A = adapters.get(peftName(spec.name, 'A'))
      const B = adapters.get(peftName(spec.name, 'B'))
      if (!A && header.tensors.get(spec.name)!.dtype === st) return readTensorBytes(header, spec.name)
      const w = readWeight(header, spec.name)
      if (A && B) await mergeInto(w, spec.shape[0], spec.shape[1], A, B, rank, scale)
      return encodeFromFloat32(st, w)
    },
  }))
  let result: ExportResult
  let written = 0
  try {
    const files = await writeCheckpointStream(tmp, sources, {
      onTensor: async (done, total) => {
        written = done
        hooks.onProgress?.({ label: writeLabel, stage: 1, stages, done, total, unit: 'bytes' })
        await pace()
      },
    })
    result = { outDir: out, files: [...files, ...writeModelMeta(config, tmp, dtype)], mergedLora: lora }
    const routing = outsideRouting(config)
    if (routing) result.warnings = [routing]
    if (lora) {
      hooks.onProgress?.({ label: CHECKING, stage: 2, stages, done: 0, total: 2, unit: 'items' })
      // The check loads within the run's own budget unless told otherwise.
      const b = run.config.offload
      const offload = opts.offload ?? (b.budgetBytes !== null ? { budgetBytes: b.budgetBytes, storage: b.storage } : undefined)
      const err = await checkMerge(run.baseModel, join(ckpt, 'adapter_model.safetensors'), tmp, run, offload, hooks)
      const tol = (opts.tolerance ?? TOLERANCE[dtype]) * err.scale
      if (!(err.max <= tol))
        throw new Error(
          `merging the LoRA adapters changed the logits by ${err.max.toExponential(2)} (allowed ${tol.toExponential(2)} for ${dtype}); nothing was written`,
        )
      result.mergeError = err.max
    }
    for (const f of TOKENIZER_FILES) {
      if (existsSync(join(run.baseModel, f))) {
        copyFileSync(join(run.baseModel, f), join(tmp, f))
        result.files.push(f)
      }
    }
    writeFileAtomic(join(tmp, 'README.md'), modelCard(run, ckpt, result, dtype, opts.name, folder.readEvaluation()))
    writeJsonAtomic(join(tmp, 'workbench.json'), {
      exportedFrom: resolve(runDir),
      checkpoint: ckpt,
      baseModel: run.baseModel,
      runConfig: run.config,
      exported: new Date().toISOString(),
    })
    result.files.push('README.md', 'workbench.json')
    // The last moment a cancel counts: after the rename the export is done.
    await pace()
    // `out` was missing or empty at the start; remove it only if it still is (rmdir refuses a
    // folder with files): anything put there during the export is never deleted.
    if (existsSync(out)) {
      try {
        rmdirSync(out)
      } catch {
        throw new Error(
          `${out} received files while the export ran; they were left alone and the export was discarded (choose a new folder)`,
        )
      }
    }
    renameSync(tmp, out)
    // The last report says done, in the last stage's own unit.
    if (lora) hooks.onProgress?.({ label: CHECKING, stage: 2, stages, done: 2, total: 2, unit: 'items' })
    else hooks.onProgress?.({ label: WRITING, stage: 1, stages, done: written, total: written, unit: 'bytes' })
    return result
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    throw e
  }
}

const WRITING = 'Writing the checkpoint'
const CHECKING = 'Checking the merged model against the base model with its adapters'

/** The adapter matrices of a PEFT adapter file, by PEFT name. */
function adapterTensors(file: string): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>()
  for (const [name, t] of loadSafetensors(file).tensors) {
    if (!(t.data instanceof Float32Array)) throw new Error(`${file}: adapter ${name} is not a float tensor`)
    out.set(name, t.data)
  }
  return out
}

/**
 * Largest logit difference between the written model and the base model with its adapters on a
 * probe batch, and the logits' scale. The two load one after the other, within the budget.
 */
async function checkMerge(
  baseDir: string,
  adapterFile: string,
  mergedDir: string,
  run: RunRecord,
  offload: OffloadOptions | undefined,
  hooks: TaskHooks,
): Promise<{ max: number; scale: number }> {
  const signal = hooks.signal
  const base = await loadModelAsync(baseDir, { offload, hooks: { signal } })
  // The export carries the run's MoE settings: the base model with its adapters runs with them too.
  base.setKnobs(runKnobs(run.config))
  let want: Float32Array
  try {
    const adapters = new LoraAdapters(base, run.config.lora, run.config.seed)
    try {
      adapters.load(loadSafetensors(adapterFile).tensors as Map<string, { shape: number[]; data: Float32Array }>)
      want = await probeLogits(base, adapters)
    } finally {
      adapters.dispose()
    }
  } finally {
    base.dispose()
  }
  hooks.onProgress?.({ label: CHECKING, stage: 2, stages: 2, done: 1, total: 2, unit: 'items' })
  const merged = await loadModelAsync(mergedDir, { offload, hooks: { signal } })
  let got: Float32Array
  try {
    got = await probeLogits(merged)
  } finally {
    merged.dispose()
  }
  let max = 0
  let scale = 1
  for (let i = 0; i < want.length; i++) {
    max = Math.max(max, Math.abs(want[i] - got[i]))
    scale = Math.max(scale, Math.abs(want[i]))
  }
  return { max, scale }
}

/**
 * Where transformers would run the exported model differently: a hash-routed model's config
 * names the family's architecture (MixtralForCausalLM...), whose router is its gate weights, which
 * hash routing never reads or trains; loaded there, tokens go to other experts than here.
 */
export function outsideRouting(c: MoeConfig): string | null {
  if (c.router.type !== 'hash') return null
  return "this model routes each token by a hash of its id (MoE Workbench's hash router): transformers has no such router, and loaded there it routes by its gate weights, which hash routing never trained, so its answers differ from MoE Workbench's. Use it with MoE Workbench, or train a model with a learned router for transformers."
}

function modelCard(
  run: RunRecord,
  ckpt: string,
  r: ExportResult,
  dtype: Dtype,
  name = basename(r.outDir),
  evaluation: RunEvaluation | null = null,
): string {
  const c = run.config
  // The settings the run used: LoRA's only with LoRA, ESFT's only where it was on.
  const { lora, esft, ...rest } = c
  const used = { ...rest, ...(c.method === 'lora' && { lora }), ...(esft.enabled && { esft }) }
  const pct = (x: number): string => `${(100 * x).toFixed(0)}%`
  const loss = (x: number | null): string => (x === null ? '–' : x.toFixed(3))
  // The before/after of the run's own evaluation, when it was of this checkpoint.
  const evalRows =
    evaluation && resolve(evaluation.checkpoint) === resolve(ckpt)
      ? evaluation.splits.map(
          (s) =>
            `| ${s.split} | ${s.after.n} | ${pct(s.before.exactMatch)} → ${pct(s.after.exactMatch)} | ${s.before.f1.toFixed(2)} → ${s.after.f1.toFixed(2)} | ${loss(s.before.loss)} → ${loss(s.after.loss)} |`,
        )
      : []
  return `---
library_name: transformers
tags: [moe, moe-workbench]
---
# ${name.replace(/\s+/g, ' ').trim()}

Fine-tuned with MoE Workbench from \`${run.baseModel}\` (${c.method}${r.mergedLora ? `, LoRA rank ${c.lora.rank} merged; max logit change from merging ${r.mergeError?.toExponential(2)}` : ''})${run.dataset ? ` on the dataset \`${run.dataset}\`` : ''}.

- run: \`${run.id}\`${run.name ? ` (${run.name})` : ''}, ${run.step} of ${run.totalSteps} steps, status ${run.status}
- checkpoint: \`${basename(ckpt)}\`, written as ${dtype}
- best validation loss: ${run.bestValLoss === null ? 'not evaluated' : run.bestValLoss.toFixed(4)}
${
  evalRows.length
    ? `
## Did it learn?

Greedy answers of the base model → this one, on the same rows (${evaluation!.date.slice(0, 10)}):

| split | rows | exact match | F1 | answer loss |
|---|---|---|---|---|
${evalRows.join('\n')}
`
    : ''
}
## Use it
${r.warnings?.length ? `\n${r.warnings.map((w) => `**Note:** ${w[0].toUpperCase()}${w.slice(1)}\n`).join('\n')}` : ''}
\`\`\`python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")
model = AutoModelForCausalLM.from_pretrained("path/to/this/folder", torch_dtype="auto")
\`\`\`

## Run config

\`\`\`json
${JSON.stringify(used, null, 2)}
\`\`\`
`
}
