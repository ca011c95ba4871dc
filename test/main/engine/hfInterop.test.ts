/**
 * What the workbench saves opens in Hugging Face transformers as the family's class, with the
 * same logits: for every family, a fixture checkpoint loaded and saved again (F32 and BF16) is read
 * by transformers (test/reference/hf_logits.py). Needs python3 with torch and transformers
 * (MOE_WORKBENCH_PYTHON names another interpreter); skipped, with the reason, elsewhere.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel, saveModel } from '../../../src/main/engine/checkpoint'

const PYTHON = process.env.MOE_WORKBENCH_PYTHON ?? 'python3'
const FIX = join(__dirname, '../../fixtures/moe-reference')
const SCRIPT = join(__dirname, '../../reference/hf_logits.py')
const probe = spawnSync(PYTHON, ['-c', 'import torch, transformers; print(transformers.__version__)'], { encoding: 'utf8' })
const transformers = probe.status === 0 ? probe.stdout.trim() : null

const CLASSES = {
  mixtral: 'MixtralForCausalLM',
  qwen2_moe: 'Qwen2MoeForCausalLM',
  olmoe: 'OlmoeForCausalLM',
  qwen3_moe: 'Qwen3MoeForCausalLM',
}

describe.skipIf(transformers === null)(`exports open in HF transformers ${transformers ?? ''}`, () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  for (const [family, cls] of Object.entries(CLASSES))
    for (const dtype of ['float32', 'bfloat16'] as const)
      it(`${family} saved as ${dtype} loads as ${cls} with the engine's logits`, () => {
        const model = loadModel(join(FIX, family))
        const dir = join(mkdtempSync(join(tmpdir(), 'moe-hf-')), family)
        saveModel(model, dir, { dtype })
        model.dispose()
        const saved = loadModel(dir)
        const ids = [[3, 17, 5, 42, 8, 11, 2]]
        const ours = tf.tidy(() => saved.forward(ids).logits.dataSync() as Float32Array)
        saved.dispose()
        const r = spawnSync(PYTHON, [SCRIPT, dir, JSON.stringify(ids)], { encoding: 'utf8', timeout: 120_000 })
        expect(r.status, r.stderr).toBe(0)
        const hf = JSON.parse(r.stdout.trim().split('\n').pop()!) as { class: string; logits: number[] }
        expect(hf.class).toBe(cls)
        let worst = 0
        for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - hf.logits[i]))
        expect(worst).toBeLessThan(2e-4)
      }, 180_000)
})

if (transformers === null)
  describe('exports open in HF transformers', () => {
    it.skip(`skipped: ${PYTHON} has no torch and transformers (set MOE_WORKBENCH_PYTHON to one that has)`, () => {})
  })
