/**
 * Adapters written by PEFT itself (test/reference/make_peft_fixtures.py: transformers 5.18.0,
 * peft 0.21.0, fused experts through target_parameters with nested wrappers, a rank/alpha pattern
 * and rsLoRA) give, once imported, the logits PEFT computed with them.
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel } from '../../../src/main/engine/checkpoint'
import { loadSafetensors } from '../../../src/main/engine/safetensors'
import { importAdapterRun } from '../../../src/main/handoff/peftImport'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { LoraAdapters } from '../../../src/main/train/lora'

const FIX = join(__dirname, '../../fixtures')

describe("adapters saved by PEFT import with PEFT's logits", () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  for (const family of ['mixtral', 'qwen3_moe', 'olmoe'])
    it(`${family}`, () => {
      const expected = JSON.parse(readFileSync(join(FIX, 'peft', family, 'expected.json'), 'utf8')) as {
        input_ids: number[][]
        logits: number[]
      }
      const runsRoot = mkdtempSync(join(tmpdir(), 'peft-fixture-'))
      const base = join(FIX, 'moe-reference', family)
      const record = importAdapterRun({ adapterDir: join(FIX, 'peft', family), baseModel: base, runsRoot, runId: 'r' })
      const folder = new RunFolder(join(runsRoot, 'r'))
      const model = loadModel(base)
      const lora = new LoraAdapters(model, record.config.lora, record.config.seed)
      try {
        lora.load(
          loadSafetensors(join(folder.lastCheckpoint()!, 'adapter_model.safetensors')).tensors as Map<
            string,
            { shape: number[]; data: Float32Array }
          >,
        )
        const base0 = tf.tidy(() => model.forward(expected.input_ids).logits.dataSync() as Float32Array)
        const got = tf.tidy(
          () =>
            model
              .forward(expected.input_ids, { weights: lora.wrap(model.weightSource, { training: false }) })
              .logits.dataSync() as Float32Array,
        )
        expect(got.length).toBe(expected.logits.length)
        let worst = 0
        let moved = 0
        for (let i = 0; i < got.length; i++) {
          worst = Math.max(worst, Math.abs(got[i] - expected.logits[i]))
          moved = Math.max(moved, Math.abs(base0[i] - expected.logits[i]))
        }
        expect(moved).toBeGreaterThan(1e-2)
        expect(worst).toBeLessThan(2e-4)
      } finally {
        lora.dispose()
        model.dispose()
      }
    })
})
