/**
 * Export a run as a Hugging Face checkpoint folder that other tools load: LoRA adapters merged
 * into the base weights (verified by comparing logits before anything is written), tokenizer
 * files from the base model, and a README card recording the run.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, rmSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import type { Dtype } from '../../shared/api'
import type { RunExportResult, RunRecord } from '../../shared/runs'
import { loadModelAsync, saveModelAsync } from '../engine/checkpoint'
import { deviceLock, read, scopedAsync } from '../engine/device'
import { MoeModel } from '../engine/model'
import { loadSafetensors } from '../engine/safetensors'
import { pacer, type TaskHooks } from '../engine/tasks'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'
import { LoraAdapters } from './lora'
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
  dtype?: Dtype
  /** Largest |adapter − merged| logit difference accepted, relative to max(1, |logit|). */
  tolerance?: number
}

export type ExportResult = RunExportResult

/** The last stage of every export. */
const WRITING = 'Writing the checkpoint'

/** Logits of a fixed probe batch (read back asynchronously, holding the device lock). */
function probeLogits(model: MoeModel, lora?: LoraAdapters): Promise<Float32Array> {
  const V = model.config.vocabSize
  const T = Math.min(16, model.config.maxPositionEmbeddings)
  const ids = [Array.from({ length: T }, (_, i) => (i * 7919 + 13) % V)]
  return deviceLock.run(() =>
    scopedAsync(async () => read((await model.forwardAsync(ids, { weights: lora?.wrap(model.weightSource, { training: false }) })).logits)),
  )
}

/**
 * Exports a run's checkpoint into `outDir` (which must not exist or be empty). Everything is
 * written to a temporary folder renamed into place at the end, so a failure or a cancel
 * (`hooks.signal`, honoured between tensors while loading and between stages after) leaves
 * nothing behind. Progress: load → (LoRA: merge and verify) → write, as task stages.
 */
export async function exportRun(runDir: string, outDir: string, opts: ExportOptions = {}, hooks: TaskHooks = {}): Promise<ExportResult> {
  const folder = new RunFolder(runDir)
  const run = folder.read()
  const ckpt = opts.checkpoint ?? folder.lastCheckpoint()
  if (!ckpt) throw new Error(`${runDir}: the run has no checkpoint to export yet`)
  const out = resolve(outDir)
  if (existsSync(out) && readdirSync(out).length > 0) throw new Error(`--out: ${out} exists and is not empty; choose a new folder`)
  const lora = run.config.method === 'lora'
  const stages = lora ? 3 : 2
  const pace = pacer(hooks.signal, `exporting run ${run.id}`)
  const stage = (label: string, n: number): void => hooks.onProgress?.({ label, stage: n, stages, done: 0, total: 0, unit: 'items' })
  const tmp = `${out}.tmp-${process.pid}`
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(tmp, { recursive: true })

  let result: ExportResult
  try {
    const loaded = await loadModelAsync(lora ? run.baseModel : ckpt, {
      hooks,
      stage: { label: lora ? 'Loading the base model' : `Loading ${basename(ckpt)}`, stage: 1, stages },
    })
    if (lora) {
      const base = loaded
      const adapters = new LoraAdapters(base, run.config.lora, run.config.seed)
      let merged: MoeModel | undefined
      try {
        stage('Merging the LoRA adapters and checking the logits', 2)
        adapters.load(
          loadSafetensors(join(ckpt, 'adapter_model.safetensors')).tensors as Map<string, { shape: number[]; data: Float32Array }>,
        )
        merged = new MoeModel(base.config, await deviceLock.run(() => adapters.mergedWeights()))
        const a = await probeLogits(base, adapters)
        const b = await probeLogits(merged)
        let err = 0
        let scale = 1
        for (let i = 0; i < a.length; i++) {
          err = Math.max(err, Math.abs(a[i] - b[i]))
          scale = Math.max(scale, Math.abs(a[i]))
        }
        const tol = opts.tolerance ?? 1e-4
        if (!(err <= tol * scale))
          throw new Error(
            `merging the LoRA adapters changed the logits by ${err.toExponential(2)} (allowed ${(tol * scale).toExponential(2)}); nothing was written`,
          )
        await pace()
        stage(WRITING, 3)
        const m = merged
        const files = await deviceLock.run(() => saveModelAsync(m, tmp, { dtype: opts.dtype }))
        result = { outDir: out, files, mergedLora: true, mergeError: err }
      } finally {
        merged?.dispose()
        adapters.dispose()
        base.dispose()
      }
    } else {
      try {
        stage(WRITING, 2)
        result = { outDir: out, files: await deviceLock.run(() => saveModelAsync(loaded, tmp, { dtype: opts.dtype })), mergedLora: false }
      } finally {
        loaded.dispose()
      }
    }
    for (const f of TOKENIZER_FILES) {
      if (existsSync(join(run.baseModel, f))) {
        copyFileSync(join(run.baseModel, f), join(tmp, f))
        result.files.push(f)
      }
    }
    writeFileAtomic(join(tmp, 'README.md'), modelCard(run, ckpt, result))
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
    hooks.onProgress?.({ label: WRITING, stage: stages, stages, done: 1, total: 1, unit: 'items' })
    return result
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true })
    throw e
  }
}

function modelCard(run: RunRecord, ckpt: string, r: ExportResult): string {
  return `---
library_name: transformers
tags: [moe, moe-workbench]
---
# ${basename(r.outDir)}

Fine-tuned with MoE Workbench from \`${run.baseModel}\` (${run.config.method}${r.mergedLora ? `, LoRA rank ${run.config.lora.rank} merged; max logit change from merging ${r.mergeError?.toExponential(2)}` : ''}).

- run: \`${run.id}\`, ${run.step} of ${run.totalSteps} steps, status ${run.status}
- checkpoint: \`${basename(ckpt)}\`
- best validation loss: ${run.bestValLoss === null ? 'not evaluated' : run.bestValLoss.toFixed(4)}

## Run config

\`\`\`json
${JSON.stringify(run.config, null, 2)}
\`\`\`
`
}
