/**
 * The wasm linear layer, x · Wᵀ computed as (W · xᵀ)ᵀ: no copy of W is made in the forward pass
 * (TF.js's wasm matMul would transpose W and XNNPACK would pack another copy), and value and
 * gradients equal the plain formulation.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import {
  dropout,
  embedLookup,
  meanSquare,
  linear,
  mm,
  permuteRows,
  plainWeights,
  Rng,
  sumInOrder,
  unpermuteRows,
  weightsSecond,
} from '../../../src/main/engine/ops'
import { useDeviceSim } from './helpers'

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

  it('sumInOrder adds in order: the bits of addN, on any number of tensors; 0 for none', () => {
    const xs = Array.from({ length: 40 }, (_, i) => tf.mul(tf.randomNormal([3, 5], 0, 1, 'float32', i), 10 ** ((i % 7) - 3)))
    const ours = sumInOrder(xs)
    const theirs = tf.addN(xs)
    expect(Array.from(ours.dataSync())).toEqual(Array.from(theirs.dataSync()))
    expect(sumInOrder([]).dataSync()[0]).toBe(0)
    expect(sumInOrder([xs[0]])).toBe(xs[0])
    tf.dispose([ours, theirs, ...xs])
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

/** Each backend's code path: the host ones (cpu, wasm) and a device one (what webgpu and tensorflow run). */
const backends: [string, () => Promise<unknown>][] = [
  ['cpu', async () => (await tf.setBackend('cpu'), tf.ready())],
  ['wasm', async () => (await initBackend('wasm'), await tf.setBackend('wasm'), tf.ready())],
  ['device-sim', useDeviceSim],
]

const values = (t: tf.Tensor) => Array.from(t.dataSync())
const close = (a: tf.Tensor, b: tf.Tensor, tol = 1e-5) => expect(tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]).toBeLessThan(tol)

describe.each(backends)('row dispatch, the embedding and the chunked lm_head on %s', (name, start) => {
  beforeAll(async () => {
    await start()
    expect(tf.getBackend()).toBe(name)
  })

  it('gathers rows and adds them back, with a token in two experts and one in one; each the gradient of the other', () => {
    // 3 tokens, 5 routed rows: token 0 → rows 0 and 4, token 1 → row 2, token 2 → rows 1 and 3.
    const index = new Int32Array([0, 2, 1, 2, 0])
    const inverses = [new Int32Array([0, 2, 1]), new Int32Array([4, 5, 3])] // 5 = not routed
    const x = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2])
    const z = tf.tensor2d([1, 10, 2, 20, 3, 30, 4, 40, 5, 50], [5, 2])
    expect(values(permuteRows(x, index, inverses))).toEqual([1, 2, 5, 6, 3, 4, 5, 6, 1, 2])
    expect(values(unpermuteRows(z, index, inverses))).toEqual([6, 60, 3, 30, 6, 60])
    const dx = tf.grad((xv: tf.Tensor) => tf.sum(tf.mul(permuteRows(xv as tf.Tensor2D, index, inverses), z)))(x)
    expect(values(dx)).toEqual([6, 60, 3, 30, 6, 60])
    const y = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2])
    const dz = tf.grad((zv: tf.Tensor) => tf.sum(tf.mul(unpermuteRows(zv as tf.Tensor2D, index, inverses), y)))(z)
    expect(values(dz)).toEqual([1, 2, 5, 6, 3, 4, 5, 6, 1, 2])
  })

  it("an embedding's rows, and its gradient adding up every position's row into its token's row, on wasm and cpu", async () => {
    const before = tf.getBackend()
    for (const backend of ['wasm', 'cpu'] as const) {
      await initBackend(backend)
      const table = tf.tensor2d([0, 1, 2, 3, 4, 5, 6, 7], [4, 2])
      const ids = new Int32Array([2, 0, 2])
      expect(values(embedLookup(table, ids)), backend).toEqual([4, 5, 0, 1, 4, 5])
      const dy = tf.tensor2d([1, 2, 30, 40, 500, 600], [3, 2])
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedLookup(t as tf.Tensor2D, ids), dy)))(table)
      expect(g.shape).toEqual([4, 2])
      expect(values(g), backend).toEqual([30, 40, 0, 0, 501, 602, 0, 0])
      if (backend === 'wasm') {
        // heap to heap both ways: no GatherV2, no copy of the gradient out to JavaScript
        const profile = await tf.profile(() => tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedLookup(t as tf.Tensor2D, ids), dy)))(table))
        const names = profile.kernels.map((k) => k.name)
        expect(names).toEqual(expect.arrayContaining(['MoeWorkbenchGatherRows', 'MoeWorkbenchScatterAddRows']))
        expect(names).not.toContain('GatherV2')
      }
    }
    await tf.setBackend(before)
  })

  it("meanSquare is mean(x², last axis) with TF.js's gradient bit for bit, without a ones tensor, on wasm and cpu", async () => {
    const before = tf.getBackend()
    const rng = new Rng(11)
    const data = rng.normalArray(3 * 5 * 7).map((v, i) => v * 10 ** ((i % 7) - 3))
    const up = rng.normalArray(3 * 5)
    for (const backend of ['wasm', 'cpu'] as const) {
      await initBackend(backend)
      const x = tf.tensor3d(data, [3, 5, 7])
      const w = tf.tensor3d(up, [3, 5, 1])
      const ours = (t: tf.Tensor): tf.Tensor => tf.sum(tf.mul(meanSquare(t), w))
      const theirs = (t: tf.Tensor): tf.Tensor => tf.sum(tf.mul(tf.mean(tf.square(t), -1, true), w))
      expect(meanSquare(x).shape).toEqual([3, 5, 1])
      expect(values(meanSquare(x)), backend).toEqual(values(tf.mean(tf.square(x), -1, true)))
      expect(values(tf.grad(ours)(x)), backend).toEqual(values(tf.grad(theirs)(x)))
      // TF.js's Mean gradient divides dy · ones(x.shape) by n; ours divides dy itself, then multiplies by 2x
      const divisions = (await tf.profile(() => tf.grad(ours)(x))).kernels.filter((k) => k.name === 'RealDiv')
      expect(divisions.map((k) => k.outputShapes[0])).toEqual([[3, 5, 1]])
    }
    await tf.setBackend(before)
  })

  it('lm_head in row chunks (the last one short) gives the resident value and gradients; a frozen one takes none', async () => {
    const rng = new Rng(7)
    const [N, H, V] = [5, 6, 11]
    const x = tf.tensor2d(rng.normalArray(N * H), [N, H])
    const w = tf.variable(tf.tensor2d(rng.normalArray(V * H), [V, H]), true, `head-${name}`)
    const up = tf.tensor2d(rng.normalArray(N * V), [N, V])
    const chunked = plainWeights((n) => (n === 'lm_head.weight' ? w : tf.zeros([1])), new Map([['lm_head.weight', 4]]))
    const whole = plainWeights((n) => (n === 'lm_head.weight' ? w : tf.zeros([1])))
    expect(chunked.matrix!('lm_head.weight')).toBeUndefined()
    expect(whole.matrix!('lm_head.weight')).toBe(w)
    // a chunk as large as the vocabulary is the plain linear
    expect(plainWeights(() => w, new Map([['lm_head.weight', V]])).matrix!('lm_head.weight')).toBe(w)
    const loss = (p: typeof whole) => (xv: tf.Tensor) => tf.sum(tf.mul(p.linear(xv as tf.Tensor2D, 'lm_head.weight'), up)) as tf.Scalar
    close(chunked.linear(x, 'lm_head.weight'), tf.matMul(x, w, false, true))
    const a = tf.variableGrads(() => loss(chunked)(x), [w])
    const b = tf.variableGrads(() => loss(whole)(x), [w])
    close(a.value, b.value, 1e-4)
    close(a.grads[w.name], b.grads[w.name])
    close(tf.grad(loss(chunked))(x), tf.grad(loss(whole))(x))
    // with a bias
    const bias = tf.tensor1d(rng.normalArray(V))
    const biased = plainWeights((n) => (n === 'b' ? bias : w), new Map([['w', 3]]))
    close(biased.linear(x, 'w', 'b'), tf.add(tf.matMul(x, w, false, true), bias))
    // frozen: the input still gets its gradient, and no V × H product is made for the head
    const frozen = tf.variable(w.clone(), false, `frozen-head-${name}`)
    const f = plainWeights(() => frozen, new Map([['h', 4]]))
    const t = plainWeights(() => w, new Map([['h', 4]]))
    const dxOf = (p: typeof whole) => () => tf.grad((xv: tf.Tensor) => tf.sum(tf.mul(p.linear(xv as tf.Tensor2D, 'h'), up)))(x)
    close(dxOf(f)(), tf.grad(loss(whole))(x))
    const products = async (p: typeof whole) => (await tf.profile(dxOf(p))).kernels.filter((k) => /MatMul|FusedMatMul/.test(k.name)).length
    expect(await products(f)).toBe((await products(t)) - 1)
  })

  it('mm multiplies by b or bᵀ with the gradients of both operands', () => {
    const rng = new Rng(3)
    const a = tf.tensor2d(rng.normalArray(12), [3, 4])
    const b = tf.tensor2d(rng.normalArray(20), [4, 5])
    const bt = tf.tensor2d(rng.normalArray(20), [5, 4])
    const up = tf.tensor2d(rng.normalArray(15), [3, 5])
    close(mm(a, b), tf.matMul(a, b))
    close(mm(a, bt, true), tf.matMul(a, bt, false, true))
    for (const [rhs, t] of [
      [b, false],
      [bt, true],
    ] as const) {
      const got = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(mm(p, q, t), up)))([a, rhs])
      const want = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q, false, t), up)))([a, rhs])
      close(got[0], want[0])
      close(got[1], want[1])
    }
  })
})

describe('weightsSecond (which operand XNNPACK packs)', () => {
  it('puts W second for many rows and keeps it first for one row (decoding)', () => {
    // the measured case in its comment: 2048 rows, 256 → 256
    expect(weightsSecond(2048, 256, 256)).toBe(true)
    expect(weightsSecond(1, 256, 256)).toBe(false)
    // the crossing: 2·out·in < N·(2·in + out); for in = out = 3 it is N > 2
    expect(weightsSecond(2, 3, 3)).toBe(false)
    expect(weightsSecond(3, 3, 3)).toBe(true)
    // a wide output (lm_head: in 4, out 100): copying W costs 800, moving N·108 elements the other way
    expect(weightsSecond(7, 4, 100)).toBe(false)
    expect(weightsSecond(8, 4, 100)).toBe(true)
  })
})
