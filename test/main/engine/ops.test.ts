/**
 * The wasm linear layer, x · Wᵀ computed as (W · xᵀ)ᵀ: no copy of W is made in the forward pass
 * (TF.js's wasm matMul would transpose W and XNNPACK would pack another copy), and value and
 * gradients equal the plain formulation.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { dropout, embedLookup, linear, Rng } from '../../../src/main/engine/ops'

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

describe('Rng (mulberry32), dropout and the embedding', () => {
  /** mulberry32 as published (Tommy Ettinger), written independently of ops.ts. */
  function mulberry32(seed: number): () => number {
    let a = seed
    return () => {
      a |= 0
      a = (a + 0x6d2b79f5) | 0
      let t = Math.imul(a ^ (a >>> 15), 1 | a)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296
    }
  }

  it('gives the published mulberry32 sequence, and a saved state continues it exactly', () => {
    for (const seed of [0, 1, 12345, 0xdeadbeef]) {
      const ref = mulberry32(seed)
      const rng = new Rng(seed)
      for (let i = 0; i < 8; i++) expect(rng.next(), `seed ${seed}, draw ${i}`).toBe(ref())
    }
    const a = new Rng(7)
    a.next()
    a.next()
    const b = Rng.at(a.state)
    expect([b.next(), b.next()]).toEqual([a.next(), a.next()])
  })

  it('uniform and normal draws have the asked range and moments', async () => {
    const rng = new Rng(3)
    const u = rng.uniformArray(20000, -2, 6)
    expect(u).toHaveLength(20000)
    expect(Math.min(...u)).toBeGreaterThanOrEqual(-2)
    expect(Math.max(...u)).toBeLessThan(6)
    expect(u.reduce((s, v) => s + v, 0) / u.length).toBeCloseTo(2, 1)
    const z = rng.normalArray(20000)
    const mean = z.reduce((s, v) => s + v, 0) / z.length
    const variance = z.reduce((s, v) => s + (v - mean) ** 2, 0) / z.length
    expect(Math.abs(mean)).toBeLessThan(0.03)
    expect(variance).toBeGreaterThan(0.95)
    expect(variance).toBeLessThan(1.05)
    expect(z.filter((v) => v < 0).length / z.length).toBeCloseTo(0.5, 1)
  })

  it('dropout keeps each value with probability 1 − p, scaled by 1/(1 − p); p = 0 is the input itself and draws nothing', () => {
    const x = tf.ones([100, 100])
    const rng = new Rng(5)
    expect(dropout(x, 0, rng)).toBe(x)
    expect(rng.state).toBe(new Rng(5).state)
    const y = dropout(x, 0.25, rng).dataSync()
    const kept = Array.from(y).filter((v) => v !== 0)
    expect(kept.length / y.length).toBeGreaterThan(0.72)
    expect(kept.length / y.length).toBeLessThan(0.78)
    for (const v of kept) expect(v).toBeCloseTo(1 / 0.75, 6)
  })

  it('an embedding lookup refuses token ids outside the vocabulary, naming the id', () => {
    const table = tf.randomNormal([32, 4]) as tf.Tensor2D
    expect(embedLookup(table, Int32Array.from([0, 31])).shape).toEqual([2, 4])
    expect(() => embedLookup(table, Int32Array.from([3, 32]))).toThrow(new RangeError('token id 32 is out of range for a vocabulary of 32'))
    expect(() => embedLookup(table, Int32Array.from([-1]))).toThrow('token id -1 is out of range')
  })
})
