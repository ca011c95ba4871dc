/**
 * Exporting a run as a Hugging Face folder: the LoRA merge in row blocks, a full run's weights
 * copied byte for byte or converted, the chosen checkpoint, the card and workbench.json, and the
 * refusals (no checkpoint, a merge that changed the logits, files arriving in the target).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel } from '../../../src/main/engine/checkpoint'
import { encodeFromFloat32, loadSafetensors, saveSafetensors } from '../../../src/main/engine/safetensors'
import type { StageProgress } from '../../../src/main/engine/tasks'
import { exportRun, mergeInto } from '../../../src/main/train/export'
import { Rng } from '../../../src/main/engine/ops'
import { baseModel, run, swapTask, tmp } from './helpers'
import { RunFolder } from '../../../src/main/runs/runFolder'
import type { EvalReport } from '../../../src/shared/runs'

/** w + scale · B · A computed in float64, one element at a time. */
function mergedReference(
  w: Float32Array,
  out: number,
  inp: number,
  A: Float32Array,
  B: Float32Array,
  rank: number,
  scale: number,
): Float64Array {
  const r = new Float64Array(w.length)
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inp; i++) {
      let s = 0
      for (let k = 0; k < rank; k++) s += B[o * rank + k] * A[k * inp + i]
      r[o * inp + i] = w[o * inp + i] + scale * s
    }
  return r
}

const weightsOf = (dir: string) => loadSafetensors(join(dir, 'model.safetensors')).tensors

describe('mergeInto', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('adds scale · B · A to every row whatever the block size: one block, blocks with a remainder, a row per block', async () => {
    const rng = new Rng(3)
    const [out, inp, rank, scale] = [7, 5, 2, 1.5]
    const w0 = rng.normalArray(out * inp)
    const A = rng.normalArray(rank * inp)
    const B = rng.normalArray(out * rank)
    const want = mergedReference(w0, out, inp, A, B, rank, scale)
    // 3 rows per block (3 + 3 + 1), one row per block (a block smaller than a row), everything at once
    for (const blockBytes of [3 * inp * 4, 1, 1 << 20]) {
      const w = w0.slice()
      await mergeInto(w, out, inp, A, B, rank, scale, blockBytes)
      for (let i = 0; i < w.length; i++) expect(w[i], `element ${i} with ${blockBytes}-byte blocks`).toBeCloseTo(want[i], 5)
    }
    // scale 0 leaves the weights as they were
    const w = w0.slice()
    await mergeInto(w, out, inp, A, B, rank, 0, 3 * inp * 4)
    expect(w).toEqual(w0)
  })
})

describe('exportRun', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  const fullRun = async () =>
    run(baseModel(), { method: 'full', optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 3, checkpointEvery: 1, evalEvery: 0 }, swapTask(16))

  it("a full run's checkpoint is copied byte for byte in its own dtype, with one 'Writing' stage that ends done", async () => {
    const { runDir } = await fullRun()
    const out = join(tmp('moe-export-'), 'full')
    const seen: StageProgress[] = []
    const r = await exportRun(runDir, out, {}, { onProgress: (p) => seen.push(p) })
    expect(r).toMatchObject({ outDir: out, mergedLora: false })
    expect(r.mergeError).toBeUndefined()
    expect(new Set(seen.map((p) => `${p.stage}/${p.stages} ${p.label} ${p.unit}`))).toEqual(new Set(['1/1 Writing the checkpoint bytes']))
    expect(seen.at(-1)!.done).toBe(seen.at(-1)!.total)
    expect(seen.at(-1)!.total).toBeGreaterThan(0)
    expect(r.files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'README.md', 'workbench.json']))
    const ckpt = weightsOf(join(runDir, 'checkpoints/step-3'))
    const got = weightsOf(out)
    expect([...got.keys()].sort()).toEqual([...ckpt.keys()].sort())
    for (const [name, t] of ckpt) expect(got.get(name)!.data, name).toEqual(t.data)
    // the folder loads as a model
    loadModel(out).dispose()
  }, 60_000)

  it('another dtype converts every weight; an earlier checkpoint can be chosen; the card and workbench.json say which', async () => {
    const { runDir } = await fullRun()
    const out = join(tmp('moe-export-'), 'bf16')
    const step1 = join(runDir, 'checkpoints/step-1')
    // The run's before/after evaluation, of this checkpoint: the card has its table.
    const report = (exactMatch: number, f1: number, loss: number | null): EvalReport => ({
      model: 'm',
      split: 'validation',
      n: 5,
      skipped: 0,
      exactMatch,
      f1,
      loss,
      seconds: 1,
      items: [],
    })
    new RunFolder(runDir).writeEvaluation({
      checkpoint: step1,
      step: 1,
      date: '2026-12-03T09:00:00.000Z',
      splits: [{ split: 'validation', before: report(0, 0.1, 8.5), after: report(0.6, 0.75, 1.25) }],
    })
    await exportRun(runDir, out, { dtype: 'bfloat16', checkpoint: step1, name: 'Support bot\n v2 ' })
    const header = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'))
    expect(header.torch_dtype).toBe('bfloat16')
    const src = weightsOf(step1)
    const got = weightsOf(out)
    for (const [name, t] of src) {
      const bf16 = encodeFromFloat32('BF16', t.data as Float32Array)
      const back = new Float32Array(bf16.length / 2)
      const u = new Uint32Array(back.buffer)
      for (let i = 0; i < back.length; i++) u[i] = (bf16[2 * i] | (bf16[2 * i + 1] << 8)) << 16
      expect(got.get(name)!.data, name).toEqual(back)
    }
    // step 1 differs from the last step: the choice mattered
    const step2 = weightsOf(join(runDir, 'checkpoints/step-3'))
    expect([...src.keys()].some((n) => src.get(n)!.data.some((v, i) => v !== step2.get(n)!.data[i]))).toBe(true)
    const card = readFileSync(join(out, 'README.md'), 'utf8')
    expect(card).toContain('\n# Support bot v2\n') // the name given, on one line; not the folder's id
    expect(card).toContain('| validation | 5 | 0% → 60% | 0.10 → 0.75 | 8.500 → 1.250 |')
    expect(card).toContain('AutoModelForCausalLM.from_pretrained(') // how to load it
    // A full fine-tune's config without LoRA's settings, nor ESFT's (off).
    expect(card).toContain('"method": "full"')
    expect(card).not.toContain('"lora"')
    expect(card).not.toContain('"esft"')
    expect(card).toContain('checkpoint: `step-1`, written as bfloat16')
    expect(card).toMatch(/\(full\)/)
    expect(card).toContain('3 of 3 steps')
    const wb = JSON.parse(readFileSync(join(out, 'workbench.json'), 'utf8'))
    expect(wb).toMatchObject({ exportedFrom: runDir, checkpoint: step1, runConfig: { method: 'full', maxSteps: 3 } })
    expect(Date.parse(wb.exported)).not.toBeNaN()
  }, 60_000)

  it('a hash-routed model is exported with a warning, in the result and the card, that transformers routes it by its untrained gate', async () => {
    const hashed = await run(
      baseModel({ router: { type: 'hash' } }),
      { method: 'full', optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 1, evalEvery: 0 },
      swapTask(8),
    )
    const r = await exportRun(hashed.runDir, join(tmp('moe-export-'), 'hash'))
    expect(r.warnings).toEqual([
      expect.stringMatching(
        /^this model routes each token by a hash of its id .* routes by its gate weights, which hash routing never trained/,
      ),
    ])
    expect(readFileSync(join(r.outDir, 'README.md'), 'utf8')).toMatch(
      /## Use it\n\n\*\*Note:\*\* This model routes each token by a hash of its id/,
    )
    // A learned router says nothing.
    const { runDir } = await fullRun()
    const plain = await exportRun(runDir, join(tmp('moe-export-'), 'plain'))
    expect(plain.warnings).toBeUndefined()
    expect(readFileSync(join(plain.outDir, 'README.md'), 'utf8')).not.toMatch(/\*\*Note:\*\*/)
  }, 60_000)

  it("copies the base model's tokenizer files that exist, and only those", async () => {
    const { runDir } = await fullRun()
    const base = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).baseModel as string
    writeFileSync(join(base, 'tokenizer.json'), '{"version":"1.0"}')
    writeFileSync(join(base, 'merges.txt'), '#version: 0.2\n')
    const out = join(tmp('moe-export-'), 'tok')
    const r = await exportRun(runDir, out)
    expect(r.files).toEqual(expect.arrayContaining(['tokenizer.json', 'merges.txt']))
    expect(r.files).not.toContain('vocab.json')
    expect(readFileSync(join(out, 'merges.txt'), 'utf8')).toBe('#version: 0.2\n')
    expect(existsSync(join(out, 'vocab.json'))).toBe(false)
  }, 60_000)

  it('an empty target folder is used; a run without a checkpoint is refused naming the run', async () => {
    const { runDir } = await fullRun()
    const out = tmp('moe-export-empty-')
    await exportRun(runDir, out)
    expect(readdirSync(out)).toContain('model.safetensors')
    rmSync(join(runDir, 'checkpoints'), { recursive: true })
    await expect(exportRun(runDir, join(tmp('moe-export-'), 'x'))).rejects.toThrow(`${runDir}: the run has no checkpoint to export yet`)
  }, 60_000)

  it('files that arrive in the target during the export are kept, and the export is discarded', async () => {
    const { runDir } = await fullRun()
    const parent = tmp('moe-export-race-')
    const out = join(parent, 'out')
    mkdirSync(out)
    let dropped = false
    const attempt = exportRun(
      runDir,
      out,
      {},
      {
        onProgress: () => {
          if (!dropped) writeFileSync(join(out, 'mine.txt'), 'keep me')
          dropped = true
        },
      },
    )
    await expect(attempt).rejects.toThrow(/received files while the export ran; they were left alone/)
    expect(readdirSync(out)).toEqual(['mine.txt'])
    expect(readdirSync(parent)).toEqual(['out'])
  }, 60_000)

  it('a LoRA export checks the merged model against the base model with its adapters, and leaves no tensors behind', async () => {
    const base = baseModel()
    const { runDir } = await run(
      base,
      {
        method: 'lora',
        lora: { rank: 4, targets: ['attention', 'experts'] },
        optimizer: { lr: 5e-2 },
        batchSize: 8,
        maxSteps: 3,
        evalEvery: 0,
      },
      swapTask(16),
    )
    const before = tf.memory().numTensors
    const out = join(tmp('moe-export-check-'), 'out')
    const r = await exportRun(runDir, out)
    expect(tf.memory().numTensors).toBe(before)
    // the check measured a real difference of rounding, not a comparison of a model with itself
    expect(r.mergeError).toBeGreaterThan(0)
    expect(r.mergeError).toBeLessThan(1e-4)
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain(`max logit change from merging ${r.mergeError!.toExponential(2)}`)
    // the adapters matter: the merged model is not the base model
    const ids = [[1, 5, 9, 2, 7]]
    const baseModelLoaded = loadModel(base)
    const merged = loadModel(out)
    try {
      const a = tf.tidy(() => baseModelLoaded.forward(ids).logits.dataSync())
      const b = tf.tidy(() => merged.forward(ids).logits.dataSync())
      expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeGreaterThan(1e-3)
    } finally {
      baseModelLoaded.dispose()
      merged.dispose()
    }
  }, 60_000)

  it('refuses an adapter file whose tensors are not floats', async () => {
    const { runDir } = await run(
      baseModel(),
      { method: 'lora', lora: { rank: 2, targets: ['experts'] }, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 1, evalEvery: 0 },
      swapTask(8),
    )
    const file = join(runDir, 'checkpoints/step-1/adapter_model.safetensors')
    const adapters = loadSafetensors(file).tensors
    const [name, t] = [...adapters][0]
    saveSafetensors(file, { [name]: { dtype: 'I32', shape: t.shape, data: new Int32Array(t.data.length) } })
    const parent = tmp('moe-export-int-')
    await expect(exportRun(runDir, join(parent, 'out'))).rejects.toThrow(`${file}: adapter ${name} is not a float tensor`)
    expect(readdirSync(parent)).toEqual([])
  }, 60_000)

  it('a LoRA merge outside the tolerance writes nothing and says by how much the logits changed', async () => {
    const { runDir } = await run(
      baseModel(),
      { method: 'lora', lora: { rank: 2, targets: ['experts'] }, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 2, evalEvery: 0 },
      swapTask(16),
    )
    const parent = tmp('moe-export-tol-')
    await expect(exportRun(runDir, join(parent, 'out'), { tolerance: -1 })).rejects.toThrow(
      /merging the LoRA adapters changed the logits by .* \(allowed -.* for float32\); nothing was written/,
    )
    expect(readdirSync(parent)).toEqual([])
    // within the default tolerance it is written, and the error is reported
    mkdirSync(join(parent, 'ok'))
    const r = await exportRun(runDir, join(parent, 'ok'))
    expect(r.mergedLora).toBe(true)
    expect(r.mergeError).toBeGreaterThanOrEqual(0)
    expect(r.mergeError).toBeLessThan(1e-4)
  }, 60_000)
})
