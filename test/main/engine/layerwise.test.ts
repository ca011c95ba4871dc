/**
 * The layer-by-layer backward (lossAndGradsLayerwise: an asynchronous forward keeping each
 * layer's input, then each layer recomputed with its routing replayed) against the one-tape
 * backward (lossAndGrads): same loss parts and gradients for every family, with router noise,
 * jitter, dropout and expert dropout drawn from the same seeded stream, tied embeddings, dense
 * layers, a z-loss, Shazeer's importance and load losses, LoRA adapters; no tensor left behind.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import type { MoeConfigInput } from '../../../src/shared/modelConfig'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { initBackend, type BackendName } from '../../../src/main/engine/backend'
import { deviceLock } from '../../../src/main/engine/device'
import { MoeModel } from '../../../src/main/engine/model'
import { disposeGrads, lossAndGrads, lossAndGradsLayerwise } from '../../../src/main/engine/objective'
import { Rng } from '../../../src/main/engine/ops'
import { LoraAdapters } from '../../../src/main/train/lora'
import { maxAbsDiff, randomIds, randomWeights, tinyConfig } from './helpers'

const CASES: [string, Partial<MoeConfigInput>][] = [
  [
    'mixtral with jitter, dropouts and a z-loss',
    { router: { jitter: 0.05 }, hiddenDropout: 0.1, attentionDropout: 0.1, expertDropout: 0.1, routerZLossCoef: 1e-3 },
  ],
  [
    'qwen2_moe with a shared expert and a dense layer',
    { family: 'qwen2_moe', normTopkProb: false, sharedExpertIntermediateSize: 12, numLayers: 3, mlpOnlyLayers: [1], qkvBias: true },
  ],
  [
    'olmoe with q/k norm over the projection, tied embeddings',
    { family: 'olmoe', qkNorm: 'projection', numKvHeads: 4, tieWordEmbeddings: true },
  ],
  ['qwen3_moe with per-head q/k norm', { family: 'qwen3_moe', qkNorm: 'head', headDim: 6 }],
  ['noisy top-k router (noise drawn while training)', { router: { type: 'noisy_topk' } }],
  [
    'noisy top-k with Shazeer importance and load losses, a dense layer',
    {
      family: 'qwen2_moe',
      normTopkProb: false,
      numLayers: 3,
      mlpOnlyLayers: [1],
      router: { type: 'noisy_topk' },
      routerImportanceLossCoef: 0.5,
      routerLoadLossCoef: 0.8,
    },
  ],
  ['capacity factor dropping tokens', { router: { capacityFactorTrain: 0.5 } }],
  ['token drop with jitter and expert dropout (one random stream)', { tokenDrop: 0.3, router: { jitter: 0.05 }, expertDropout: 0.1 }],
]

for (const backend of ['cpu', 'wasm'] as BackendName[])
  describe(`layer-by-layer backward on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend)
    })

    for (const [name, over] of CASES)
      it(`${name}: same loss and gradients as one tape`, async () => {
        const c = tinyConfig(over)
        const model = new MoeModel(c, randomWeights(c, 3))
        const batch = { inputIds: randomIds(2, 9, c.vocabSize, 5), labels: randomIds(2, 9, c.vocabSize, 6) }
        batch.labels[0][3] = -100
        const before = tf.memory().numTensors
        const one = lossAndGrads(model, batch, { training: true, rng: new Rng(11) })
        const lw = await deviceLock.run(() => lossAndGradsLayerwise(model, batch, { training: true, rng: new Rng(11) }))
        expect(lw.parts.ce).toBeCloseTo(one.parts.ce, 5)
        expect(lw.parts.aux).toBeCloseTo(one.parts.aux, 5)
        expect(lw.parts.z).toBeCloseTo(one.parts.z, 5)
        expect(lw.parts.importance).toBeCloseTo(one.parts.importance, 5)
        expect(lw.parts.load).toBeCloseTo(one.parts.load, 5)
        expect(lw.parts.loss).toBeCloseTo(one.parts.loss, 5)
        expect(lw.routing).toEqual(one.routing)
        for (const [n, g] of one.grads) {
          const a = g.dataSync()
          const b = lw.grads.get(n)!.dataSync()
          let scale = 0
          for (const v of a) scale = Math.max(scale, Math.abs(v))
          expect(maxAbsDiff(a, b), n).toBeLessThanOrEqual(1e-5 * Math.max(1, scale))
        }
        disposeGrads(one.grads)
        disposeGrads(lw.grads)
        expect(tf.memory().numTensors).toBe(before)
        model.dispose()
      })

    it('LoRA adapters (attention, experts, router): the adapter gradients agree', async () => {
      const c = tinyConfig({ family: 'qwen3_moe', qkNorm: 'head' })
      const model = new MoeModel(c, randomWeights(c, 4))
      const lora = new LoraAdapters(
        model,
        validateRunConfig({ method: 'lora', lora: { rank: 2, targets: ['attention', 'experts', 'router'] } }).lora,
        1,
      )
      // B starts at zero: move it so the adapters matter.
      for (const v of lora.B.values()) v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', 9))
      const batch = { inputIds: randomIds(1, 7, c.vocabSize, 8), labels: randomIds(1, 7, c.vocabSize, 9) }
      const opts = { training: true, rng: new Rng(1), weights: lora.wrap(model.weightSource, { training: true, rng: new Rng(1) }) }
      const one = lossAndGrads(model, batch, opts, lora.variables())
      const opts2 = { training: true, rng: new Rng(1), weights: lora.wrap(model.weightSource, { training: true, rng: new Rng(1) }) }
      const lw = await deviceLock.run(() => lossAndGradsLayerwise(model, batch, opts2, lora.variables()))
      expect(lw.parts.loss).toBeCloseTo(one.parts.loss, 5)
      for (const [n, g] of one.grads) expect(maxAbsDiff(g.dataSync(), lw.grads.get(n)!.dataSync()), n).toBeLessThan(1e-5)
      disposeGrads(one.grads)
      disposeGrads(lw.grads)
      lora.dispose()
      model.dispose()
    })
  })
