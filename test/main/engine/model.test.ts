/**
 * The model's own contract: what it refuses (weights, inputs, a disposed model) with the message
 * that names the problem, hidden and attention dropout only while training, the last-position
 * head, and no tensors left behind.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { MoeModel, ModelError, validMask } from '../../../src/main/engine/model'
import { Rng } from '../../../src/main/engine/ops'
import { maxAbsDiff, randomIds, randomWeights, tinyConfig } from './helpers'

describe('MoeModel', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('refuses missing and mis-sized weights, naming every one; addParam refuses unknown names', () => {
    const c = tinyConfig()
    const w = randomWeights(c, 1)
    w.delete('model.norm.weight')
    w.set('lm_head.weight', new Float32Array(5))
    let error: unknown
    try {
      new MoeModel(c, w).dispose()
    } catch (e) {
      error = e
    }
    expect(error).toBeInstanceOf(ModelError)
    const msg = (error as Error).message
    expect(msg).toContain('missing tensor model.norm.weight [16]')
    expect(msg).toContain('tensor lm_head.weight has 5 values, expected [32,16] = 512')
    const m = new MoeModel(c, randomWeights(c, 1))
    try {
      expect(() => m.addParam('model.nope.weight', new Float32Array(1))).toThrow('no tensor model.nope.weight in this mixtral model')
      expect(() => m.addParam('model.norm.weight', new Float32Array(3))).toThrow(
        'tensor model.norm.weight has 3 values, expected [16] = 16',
      )
      expect(() => m.p('model.nope.weight')).toThrow('no parameter named model.nope.weight')
    } finally {
      m.dispose()
    }
  })

  it('refuses empty, ragged and too-long inputs, and a disposed model, saying what to do', () => {
    const c = tinyConfig({ maxPositionEmbeddings: 8 })
    const m = new MoeModel(c, randomWeights(c, 1))
    const before = tf.memory().numTensors
    expect(() => m.forward([])).toThrow('input_ids: empty batch')
    expect(() => m.forward([[]])).toThrow('input_ids: empty sequence')
    expect(() =>
      m.forward([
        [1, 2, 3],
        [1, 2],
      ]),
    ).toThrow('input_ids: row 1 has 2 tokens, row 0 has 3; pad rows to one length')
    expect(() => m.forward([[1, 2, 3, 4, 5, 6, 7, 8, 9]])).toThrow('sequence of 9 positions exceeds max_position_embeddings 8')
    // exactly the context length is fine
    tf.tidy(() => {
      expect(m.forward([[1, 2, 3, 4, 5, 6, 7, 8]]).logits.shape).toEqual([1, 8, 32])
    })
    expect(tf.memory().numTensors).toBe(before)
    expect(() => validMask([3], 2, 4)).toThrow('lengths: 1 rows given for a batch of 2')
    m.dispose()
    m.dispose() // twice is harmless
    expect(() => m.forward([[1, 2]])).toThrow('the model was disposed')
  })

  it('lastOnly gives the logits of the last position only, equal to the full forward there', () => {
    const c = tinyConfig()
    const m = new MoeModel(c, randomWeights(c, 2))
    try {
      tf.tidy(() => {
        const ids = randomIds(2, 5, 32)
        const full = m.forward(ids).logits
        const last = m.forward(ids, { lastOnly: true }).logits
        expect(last.shape).toEqual([2, 1, 32])
        const want = tf.slice(full, [0, 4, 0], [2, 1, 32])
        expect(maxAbsDiff(last.dataSync(), want.dataSync())).toBeLessThan(1e-5)
        // one position: the same either way
        expect(m.forward([[3]], { lastOnly: true }).logits.shape).toEqual([1, 1, 32])
      })
    } finally {
      m.dispose()
    }
  })

  for (const knob of ['hiddenDropout', 'attentionDropout'] as const) {
    it(`${knob}: only while training, drawn from the run's stream; evaluation is the plain model`, () => {
      const c = tinyConfig({ [knob]: 0.3 })
      const plain = tinyConfig()
      const w = randomWeights(c, 3)
      const m = new MoeModel(c, w)
      const p = new MoeModel(plain, w)
      try {
        tf.tidy(() => {
          const ids = randomIds(2, 6, 32)
          const clean = p.forward(ids).logits.dataSync()
          expect(maxAbsDiff(m.forward(ids).logits.dataSync(), clean)).toBe(0)
          const a = m.forward(ids, { training: true, rng: new Rng(4) }).logits.dataSync()
          const b = m.forward(ids, { training: true, rng: new Rng(4) }).logits.dataSync()
          const other = m.forward(ids, { training: true, rng: new Rng(5) }).logits.dataSync()
          expect(maxAbsDiff(a, clean)).toBeGreaterThan(1e-3)
          expect(maxAbsDiff(a, b)).toBe(0)
          expect(maxAbsDiff(a, other)).toBeGreaterThan(1e-3)
          expect(() => m.forward(ids, { training: true })).toThrow('training-mode dropout needs a seeded rng')
          // without dropout, training needs no random stream
          expect(maxAbsDiff(p.forward(ids, { training: true }).logits.dataSync(), clean)).toBe(0)
        })
      } finally {
        m.dispose()
        p.dispose()
      }
    })
  }
})
