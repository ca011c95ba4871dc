/**
 * Training, resuming, exporting and chatting on the webgpu backend (a software adapter,
 * SwiftShader, where no GPU driver is installed): the engine reads back only asynchronously
 * there, and takes gradients layer by layer.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel, saveModel } from '../../../src/main/engine/checkpoint'
import { generateAsync } from '../../../src/main/engine/generate'
import { sumInOrder } from '../../../src/main/engine/ops'
import { MoeModel } from '../../../src/main/engine/model'
import { exportRun } from '../../../src/main/train/export'
import { train, type StepMetrics } from '../../../src/main/train/trainer'
import { randomWeights, tinyConfig } from '../engine/helpers'
import { prepareWebGpu } from '../engine/webgpuEnv'

const missing = prepareWebGpu()
const tmp = (p: string): string => mkdtempSync(join(tmpdir(), p))

describe.skipIf(missing !== null)(`the trainer on webgpu${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let base: string
  beforeAll(async () => {
    await initBackend('cpu')
    base = join(tmp('moe-wg-base-'), 'm')
    const c = tinyConfig({ family: 'qwen3_moe', qkNorm: 'head', vocabSize: 24 })
    const m = new MoeModel(c, randomWeights(c, 2))
    saveModel(m, base)
    m.dispose()
    const r = await initBackend('webgpu')
    expect(r.adapter?.software).toBe(true)
  }, 120_000)

  it("sums a model's worth of gradient norms: AddN would bind more storage buffers than WebGPU allows", async () => {
    const xs = Array.from({ length: 65 }, (_, i) => tf.scalar(i + 1))
    const sum = sumInOrder(xs)
    expect((await sum.data())[0]).toBe((65 * 66) / 2)
    tf.dispose([sum, ...xs])
  })

  it('a LoRA run learns, is interrupted and resumes, exports, and the export generates', async () => {
    const rows = Array.from({ length: 16 }, (_, i) => {
      const ids = [1, 4 + (i % 10), 4 + ((i * 3) % 10), 2, 4 + ((i * 3) % 10), 4 + (i % 10), 3]
      return { input_ids: ids, labels: ids.map((t, j) => (j >= 4 ? t : -100)) }
    })
    const cfg = validateRunConfig({
      method: 'lora',
      lora: { rank: 4, targets: ['attention', 'experts'] },
      optimizer: { lr: 0.02 },
      batchSize: 8,
      maxSteps: 6,
      evalEvery: 6,
      checkpointEvery: 3,
    })
    const runDir = join(tmp('moe-wg-ws-'), 'runs', 'r')
    const steps: StepMetrics[] = []
    const stopAt3 = new AbortController()
    const first = await train({
      runDir,
      baseModelDir: base,
      config: cfg,
      train: rows,
      validation: rows.slice(0, 4),
      padId: 0,
      signal: stopAt3.signal,
      onEvent: (e) => {
        if (e.type !== 'run.step') return
        steps.push(e.metrics)
        if (e.metrics.step === 3) stopAt3.abort('interrupt')
      },
    })
    expect(first).toMatchObject({ status: 'interrupted', step: 3 })
    const second = await train({
      runDir,
      baseModelDir: base,
      config: cfg,
      train: rows,
      validation: rows.slice(0, 4),
      padId: 0,
      resume: true,
      onEvent: (e) => e.type === 'run.step' && steps.push(e.metrics),
    })
    expect(second).toMatchObject({ status: 'completed', step: 6 })
    expect(steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6])
    expect(steps.every((s) => Number.isFinite(s.loss) && s.gradNorm > 0)).toBe(true)
    expect(steps[5].loss).toBeLessThan(steps[0].loss)

    const out = join(tmp('moe-wg-out-'), 'exported')
    const r = await exportRun(runDir, out)
    expect(r.mergedLora).toBe(true)
    expect(r.mergeError).toBeLessThan(1e-3)
    const exported = loadModel(out)
    const g = await generateAsync(exported, [1, 5, 7, 2], { maxNewTokens: 3, sampling: { greedy: true }, stopTokens: [] })
    expect(g.newTokens).toHaveLength(3)
    exported.dispose()
  }, 300_000)
})
