/**
 * The wasm linear layer, x · Wᵀ computed as (W · xᵀ)ᵀ: no copy of W is made in the forward pass
 * (TF.js's wasm matMul would transpose W and XNNPACK would pack another copy), and value and
 * gradients equal the plain formulation.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { linear } from '../../../src/main/engine/ops'

describe('linear on wasm', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('copies nothing of the weight in the forward pass', () => {
    const x = tf.randomNormal([3, 64]) as tf.Tensor2D
    const w = tf.randomNormal([256, 64]) as tf.Tensor2D
    const wBytes = 256 * 64 * 4
    let grew = 0
    const y = tf.tidy(() => {
      const before = tf.memory().numBytes
      const out = linear(x, w)
      grew = tf.memory().numBytes - before
      return out
    })
    // The output and x-sized temporaries only: far less than one copy of W.
    expect(grew).toBeLessThan(wBytes / 4)
    const expected = tf.matMul(x, w, false, true)
    expect(tf.max(tf.abs(tf.sub(y, expected))).dataSync()[0]).toBeLessThan(1e-5)
    tf.dispose([y, expected, x, w])
  })

  it('has the gradients of x · Wᵀ for both operands', () => {
    const x = tf.randomNormal([5, 24]) as tf.Tensor2D
    const w = tf.randomNormal([40, 24]) as tf.Tensor2D
    const up = tf.randomNormal([5, 40])
    const f = (xv: tf.Tensor, wv: tf.Tensor): tf.Scalar => tf.sum(tf.mul(linear(xv as tf.Tensor2D, wv as tf.Tensor2D), up))
    const g = (xv: tf.Tensor, wv: tf.Tensor): tf.Scalar => tf.sum(tf.mul(tf.matMul(xv, wv, false, true), up))
    const [dx, dw] = tf.grads(f)([x, w])
    const [ex, ew] = tf.grads(g)([x, w])
    expect(tf.max(tf.abs(tf.sub(dx, ex))).dataSync()[0]).toBeLessThan(1e-5)
    expect(tf.max(tf.abs(tf.sub(dw, ew))).dataSync()[0]).toBeLessThan(1e-5)
    tf.dispose([x, w, up, dx, dw, ex, ew])
  })
})
