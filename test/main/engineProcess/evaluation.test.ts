/**
 * What a run's evaluation runs: a LoRA run's checkpoint is the cached base model with the run's
 * adapters, routing as the run trained it (its MoE knobs: top-k, capacity), while the base model
 * itself stays as it is for the "before" side and for anyone else using it (chat).
 */
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ModelCache } from '../../../src/main/engineProcess/models'
import { openEvalTarget } from '../../../src/main/engineProcess/evaluation'
import { baseModel, run, swapTask } from '../train/helpers'

const TOKENIZER = join(__dirname, '../../fixtures/data/models/tiny-chatml')

describe('openEvalTarget', () => {
  it("a LoRA run's checkpoint routes with the run's top-k and capacity; the cached base model keeps its own", async () => {
    const base = baseModel()
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(TOKENIZER, f), join(base, f))
    const { runDir, result } = await run(
      base,
      {
        method: 'lora',
        lora: { rank: 2, targets: ['experts'] },
        maxSteps: 2,
        evalEvery: 0,
        moe: { topK: 3, capacityFactorEval: 1.5 },
      },
      swapTask(16),
    )
    expect(result.status).toBe('completed')
    const cache = new ModelCache()
    const tuned = await openEvalTarget(cache, { runDir })
    const plain = await openEvalTarget(cache, { modelDir: base })
    try {
      expect(tuned.target.model.config.topK).toBe(3)
      expect(tuned.target.model.config.router.capacityFactorEval).toBe(1.5)
      // one model in memory: the base's weights, under the run's settings
      expect(tuned.target.model.params).toBe(plain.target.model.params)
      expect(plain.target.model.config.topK).toBe(2)
      expect(plain.target.model.config.router.capacityFactorEval).toBeNull()
    } finally {
      tuned.release()
      plain.release()
    }
  }, 60_000)
})
