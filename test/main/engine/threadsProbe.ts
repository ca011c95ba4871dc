/**
 * Run as a child process by threads.test.ts (MOE_WORKBENCH_THREADS and MOE_WORKBENCH_MATMUL set by
 * the parent): prints the wasm backend's thread count, what multiplies, whether the SIMD loops
 * (wasmSimd.ts) run on its heap, and a hash of a forward's logits and a training step's gradients.
 */
import { createHash } from 'node:crypto'
import * as tf from '@tensorflow/tfjs'
import { initBackend } from '../../../src/main/engine/backend'
import { MoeModel } from '../../../src/main/engine/model'
import { disposeGrads, lossAndGrads } from '../../../src/main/engine/objective'
import { Rng } from '../../../src/main/engine/ops'
import { backendSimd } from '../../../src/main/engine/wasmSimd'
import { randomIds, randomWeights, tinyConfig } from './helpers'

const report = await initBackend('wasm')
const c = tinyConfig({ hiddenSize: 64, headDim: 16, expertIntermediateSize: 96, numExperts: 8, topK: 2, vocabSize: 512 })
const model = new MoeModel(c, randomWeights(c, 3))
const ids = randomIds(4, 64, 512, 1)
const hash = createHash('sha256')
const logits = tf.tidy(() => model.forward(ids).logits.dataSync() as Float32Array)
hash.update(Buffer.from(logits.buffer))
const g = lossAndGrads(model, { inputIds: ids, labels: randomIds(4, 64, 512, 2) }, { training: true, rng: new Rng(5) })
for (const [name, t] of [...g.grads].sort(([a], [b]) => (a < b ? -1 : 1))) {
  hash.update(name)
  hash.update(Buffer.from((t.dataSync() as Float32Array).buffer))
}
disposeGrads(g.grads)
const simd = backendSimd(tf.backend()) !== null
console.log(JSON.stringify({ threads: report.threads, matmul: report.matmul, simd, hash: hash.digest('hex'), loss: g.parts.loss }))
