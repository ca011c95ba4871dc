/**
 * Expert offloading: offloaded equals resident (F32 and lazy) at budgets down to one expert,
 * compressed storage within stated error, the budget is never exceeded, the fit planner predicts
 * memory within 10%, and LoRA training with offloaded experts equals resident training.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel, saveModel } from '../../../src/main/engine/checkpoint'
import { generate } from '../../../src/main/engine/generate'
import { MoeModel } from '../../../src/main/engine/model'
import { dequantizeInt8, planFit, quantizeInt8, type ExpertStorage } from '../../../src/main/engine/offload'
import { loadSafetensors } from '../../../src/main/engine/safetensors'
import { train } from '../../../src/main/train/trainer'
import { randomIds, randomWeights, tinyConfig } from './helpers'

const FIX = join(__dirname, '../../fixtures/moe-reference')

function folder(): { dir: string; expertBytes: number; totalExperts: number } {
  const dir = mkdtempSync(join(tmpdir(), 'moe-off-'))
  const c = tinyConfig({ numLayers: 3, numExperts: 8, vocabSize: 40 })
  const m = new MoeModel(c, randomWeights(c, 9, 0.3))
  saveModel(m, dir)
  m.dispose()
  const plan = planFit(c, 1e9)
  return { dir, expertBytes: plan.expertBytes, totalExperts: plan.totalExperts }
}

function logitsOf(m: MoeModel, ids: number[][]): Float32Array {
  return tf.tidy(() => m.forward(ids).logits.dataSync() as Float32Array)
}

describe('expert offloading', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('F32 and lazy offloading give exactly the resident logits and tokens at every budget down to one expert', () => {
    const { dir, expertBytes, totalExperts } = folder()
    const resident = loadModel(dir)
    const ids = randomIds(2, 12, 40, 3)
    const want = logitsOf(resident, ids)
    const wantTokens = generate(resident, [1, 2, 3], { maxNewTokens: 10, stopTokens: [] }).newTokens
    resident.dispose()
    for (const storage of ['f32', 'lazy'] as ExpertStorage[]) {
      for (const fraction of [1, 0.5, 0.25, 0.125, 1 / totalExperts]) {
        const budgetBytes = Math.max(1, Math.floor(totalExperts * fraction)) * expertBytes
        const m = loadModel(dir, { offload: { budgetBytes, storage, prefetch: true } })
        try {
          const got = logitsOf(m, ids)
          expect(Array.from(got), `${storage} at ${fraction}`).toEqual(Array.from(want))
          expect(generate(m, [1, 2, 3], { maxNewTokens: 10, stopTokens: [] }).newTokens).toEqual(wantTokens)
          const s = m.offload!.cache.stats()
          expect(s.peakBytes).toBeLessThanOrEqual(budgetBytes)
          expect(s.layers.map((l) => l.layer)).toEqual([0, 1, 2])
          if (fraction < 1) expect(s.misses).toBeGreaterThan(0)
          expect(s.bytesMoved).toBeGreaterThan(0)
        } finally {
          m.dispose()
        }
      }
    }
  })

  it('the fixture checkpoints run offloaded with the reference tokens', () => {
    for (const family of ['mixtral', 'qwen2_moe', 'olmoe']) {
      const ref = loadModel(join(FIX, family))
      const want = generate(ref, [5, 9, 11], { maxNewTokens: 6, stopTokens: [] }).newTokens
      const bytes = planFit(ref.config, 1e9).expertBytes
      ref.dispose()
      const m = loadModel(join(FIX, family), { offload: { budgetBytes: bytes, storage: 'lazy' } })
      expect(generate(m, [5, 9, 11], { maxNewTokens: 6, stopTokens: [] }).newTokens, family).toEqual(want)
      m.dispose()
    }
  })

  it('compressed storage: 8-bit within 2% of the logit range, f16 and bf16 closer, host bytes smaller', () => {
    const { dir, expertBytes, totalExperts } = folder()
    const ids = randomIds(2, 12, 40, 4)
    const resident = loadModel(dir)
    const want = logitsOf(resident, ids)
    resident.dispose()
    let range = 0
    for (const v of want) range = Math.max(range, Math.abs(v))
    const errors: Record<string, number> = {}
    for (const storage of ['f16', 'bf16', 'int8'] as ExpertStorage[]) {
      const m = loadModel(dir, { offload: { budgetBytes: (totalExperts / 2) * expertBytes, storage } })
      const got = logitsOf(m, ids)
      let err = 0
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]))
      errors[storage] = err / range
      const f32Bytes = totalExperts * expertBytes
      // int8: a quarter of the bytes plus a float32 scale per output row
      expect(m.offload!.store.hostBytes).toBeLessThan(storage === 'int8' ? 0.35 * f32Bytes : 0.55 * f32Bytes)
      m.dispose()
    }
    expect(errors.int8).toBeLessThan(0.02)
    expect(errors.f16).toBeLessThan(0.002)
    expect(errors.bf16).toBeLessThan(0.02)
    expect(errors.f16).toBeGreaterThan(0)
  })

  it('8-bit quantisation round-trips within half a step per channel', () => {
    const w = Float32Array.from([0.5, -1, 0.25, 0, 2, -2, 1, 0.001])
    const q = quantizeInt8(w, 2, 4)
    const back = dequantizeInt8(q, 2, 4)
    for (let i = 0; i < 8; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(q.scale[Math.floor(i / 4)] / 2 + 1e-7)
  })

  it('never exceeds the budget in TF.js memory, and the fit planner predicts memory within 10%', () => {
    const { dir, expertBytes, totalExperts } = folder()
    for (const experts of [1, 4, totalExperts]) {
      const before = tf.memory().numBytes
      const budgetBytes = experts * expertBytes
      const m = loadModel(dir, { offload: { budgetBytes, storage: 'f32', prefetch: true } })
      const plan = planFit(m.config, budgetBytes + planFit(m.config, 0).residentBytes, { contextTokens: 0 })
      generate(m, randomIds(1, 8, 40, 5)[0], { maxNewTokens: 8, stopTokens: [] })
      const used = tf.memory().numBytes - before
      const residentParams = [...m.params.values()].reduce((a, v) => a + v.size * 4, 0)
      expect(used - residentParams, `${experts} experts`).toBeLessThanOrEqual(budgetBytes)
      expect(Math.abs(plan.predictedBytes - used) / used, `${experts} experts`).toBeLessThan(0.1)
      m.dispose()
    }
  })

  it('the fit planner refuses clearly when not even one expert fits', () => {
    const c = tinyConfig()
    const plan = planFit(c, 1000)
    expect(plan.fits).toBe(false)
    expect(plan.message).toMatch(/does not fit: .* less than one expert .* raise the budget to at least/)
    expect(planFit(c, 1e9)).toMatchObject({ fits: true, fitsResident: true })
    const mid = planFit(c, planFit(c, 0).residentBytes + planFit(c, 0).kvCacheBytes + 3 * planFit(c, 0).expertBytes)
    expect(mid).toMatchObject({ fits: true, fitsResident: false, cachedExperts: 3 })
    expect(() => loadModel(join(FIX, 'mixtral'), { offload: { budgetBytes: 10, storage: 'f32' } })).toThrow(/cannot hold one expert/)
  })

  it('LoRA training with offloaded experts gives the same adapters as resident training', async () => {
    const { dir, expertBytes } = folder()
    const data = Array.from({ length: 24 }, (_, i) => {
      const ids = [1, 4 + (i % 30), 4 + ((i * 7) % 30), 2, 5, 6]
      return { input_ids: ids, labels: ids }
    })
    const cfg = validateRunConfig({
      method: 'lora',
      lora: { rank: 2, targets: ['attention', 'experts'] },
      optimizer: { lr: 1e-2 },
      batchSize: 8,
      maxSteps: 3,
      evalEvery: 0,
    })
    const adapters = async (offload?: {
      budgetBytes: number
      storage: 'f32'
    }): Promise<Map<string, { data: Float32Array | Int32Array }>> => {
      const runDir = mkdtempSync(join(tmpdir(), 'moe-off-run-'))
      const r = await train({ runDir, baseModelDir: dir, config: cfg, train: data, validation: [], padId: 0, offload })
      expect(r.status).toBe('completed')
      return loadSafetensors(join(runDir, 'checkpoints/step-3/adapter_model.safetensors')).tensors
    }
    const a = await adapters()
    const b = await adapters({ budgetBytes: 2 * expertBytes, storage: 'f32' })
    expect([...b.keys()].sort()).toEqual([...a.keys()].sort())
    for (const [n, t] of a) {
      const u = b.get(n)!.data
      for (let i = 0; i < t.data.length; i++) expect(Math.abs(u[i] - t.data[i]), n).toBeLessThan(1e-6)
    }
  }, 60_000)
})
