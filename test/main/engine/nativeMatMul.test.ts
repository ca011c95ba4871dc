/**
 * The native matmul (onnxruntime-node's MLAS through one FusedMatMul node): every operand layout
 * and batch broadcast against a plain JavaScript product, writes confined to the output's range,
 * bits independent of the thread count; its row softmax; and how the backend chooses it.
 */
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { chooseNativeMatMul } from '../../../src/main/engine/backend'
import {
  CALL_MAX_OUTPUT,
  CALL_MAX_SHARED_B,
  CALL_MIN_ROWS,
  GROUP_MAX_GRAPHS,
  GROUP_MAX_NODES,
  loadNativeMatMul,
  nativeMatMul,
  productParts,
  useNativeMatMul,
  type MatMulOperands,
  type NativeMatMul,
  type ProductPart,
} from '../../../src/main/engine/nativeMatMul'
import { Rng } from '../../../src/main/engine/ops'
import { maxAbsDiff, referenceMatMul, useWasmMatMul, wasmMatMulPaths } from './helpers'

const paths = await wasmMatMulPaths()

function operands(rng: Rng, n: number): Float32Array {
  return Float32Array.from(rng.normalArray(n))
}

describe.skipIf(!paths.includes('native'))('the native matmul', () => {
  let one: NativeMatMul
  let two: NativeMatMul
  beforeAll(() => {
    one = loadNativeMatMul(1)
    two = loadNativeMatMul(2)
  })

  it('names its library and thread count', () => {
    expect(one.library).toMatch(/^onnxruntime-node \d+\.\d+\.\d+ \(MLAS\)$/)
    expect(one.threads).toBe(1)
    expect(two.threads).toBe(2)
  })

  it('multiplies every operand layout, with equal batches and a batch of one used for every item of the other', () => {
    const rng = new Rng(3)
    // [batchA, batchB, m, k, n]
    const shapes: [number, number, number, number, number][] = [
      [1, 1, 5, 7, 3],
      [4, 4, 6, 3, 5],
      [3, 1, 2, 9, 4],
      [1, 3, 8, 2, 6],
      [1, 1, 1, 300, 1],
      [2, 2, 33, 17, 129],
    ]
    for (const [batchA, batchB, m, k, n] of shapes)
      for (const transposeA of [false, true])
        for (const transposeB of [false, true]) {
          const a = operands(rng, batchA * m * k)
          const b = operands(rng, batchB * k * n)
          const batch = Math.max(batchA, batchB)
          const out = new Float32Array(batch * m * n).fill(NaN)
          one.matMul({ a, b, out, batchA, batchB, m, k, n, transposeA, transposeB })
          const want = referenceMatMul(
            a,
            [batchA, ...(transposeA ? [k, m] : [m, k])],
            b,
            [batchB, ...(transposeB ? [n, k] : [k, n])],
            transposeA,
            transposeB,
          )
          const what = `${batchA}x${batchB} (${m}, ${k}, ${n}) ${transposeA} ${transposeB}`
          expect(maxAbsDiff(out, want.data), what).toBeLessThan(1e-4)
        }
  })

  it('writes the product where it is told and nowhere else, on views into one buffer', () => {
    const rng = new Rng(4)
    const heap = new Float32Array(400).fill(7)
    const [m, k, n] = [3, 4, 5]
    heap.set(operands(rng, m * k), 10)
    heap.set(operands(rng, k * n), 50)
    one.matMul({
      a: heap.subarray(10, 10 + m * k),
      b: heap.subarray(50),
      out: heap.subarray(100),
      batchA: 1,
      batchB: 1,
      m,
      k,
      n,
      transposeA: false,
      transposeB: false,
    })
    const want = referenceMatMul(heap.subarray(10, 22), [m, k], heap.subarray(50, 70), [k, n], false, false)
    expect(maxAbsDiff(heap.subarray(100, 100 + m * n), want.data)).toBeLessThan(1e-5)
    expect(heap.subarray(100 + m * n).every((v) => v === 7)).toBe(true)
    expect(heap.subarray(70, 100).every((v) => v === 7)).toBe(true)
  })

  it('an empty reduction gives zeros (whatever was in the output); an empty product writes nothing', () => {
    const out = new Float32Array(6).fill(5)
    one.matMul({
      a: new Float32Array(0),
      b: new Float32Array(0),
      out,
      batchA: 1,
      batchB: 1,
      m: 2,
      k: 0,
      n: 3,
      transposeA: false,
      transposeB: false,
    })
    expect(Array.from(out)).toEqual([0, 0, 0, 0, 0, 0])
    const untouched = new Float32Array(4).fill(5)
    one.matMul({
      a: new Float32Array(0),
      b: new Float32Array(8),
      out: untouched,
      batchA: 1,
      batchB: 1,
      m: 0,
      k: 2,
      n: 4,
      transposeA: false,
      transposeB: false,
    })
    expect(Array.from(untouched)).toEqual([5, 5, 5, 5])
  })

  it('gives the same bits on 1 and 2 threads, for every operand layout', () => {
    const rng = new Rng(5)
    const [m, k, n] = [260, 300, 190]
    const a = operands(rng, m * k)
    const b = operands(rng, k * n)
    for (const transposeA of [false, true])
      for (const transposeB of [false, true]) {
        const outs = [one, two].map((nm) => {
          const out = new Float32Array(m * n)
          nm.matMul({ a, b, out, batchA: 1, batchB: 1, m, k, n, transposeA, transposeB })
          return out
        })
        expect(outs[1], `${transposeA} ${transposeB}`).toEqual(outs[0])
      }
  })

  it("takes each row's softmax (rows a thread pool shares among 2 threads: the same bits as on 1), written only to out", () => {
    const rng = new Rng(9)
    const [rows, cols] = [300, 257] // over the pool's threshold
    const x = Float32Array.from(rng.normalArray(rows * cols).map((v) => v * 8))
    const outs = [one, two].map((nm) => {
      const buf = new Float32Array(rows * cols + 2).fill(7)
      const out = buf.subarray(1, 1 + rows * cols)
      nm.softmax({ x, out, rows, cols })
      expect([buf[0], buf[rows * cols + 1]]).toEqual([7, 7])
      return out
    })
    expect(outs[1]).toEqual(outs[0])
    for (const r of [0, 123, rows - 1]) {
      const row = Array.from(x.subarray(r * cols, r * cols + cols))
      const m = Math.max(...row)
      const total = row.reduce((s, v) => s + Math.exp(v - m), 0)
      row.forEach((v, j) => {
        const want = Math.exp(v - m) / total
        expect(Math.abs(outs[0][r * cols + j] - want), `row ${r} column ${j}`).toBeLessThan(2e-6 * want + 1e-12)
      })
    }
  })
})

describe('productParts: products in calls whose outputs stay small', () => {
  const part = (item: number, items: number, row: number, rows: number): ProductPart => ({ item, items, row, rows })

  it('keeps a product that fits whole, groups batch items, and splits an item into even runs of rows', () => {
    expect(CALL_MAX_OUTPUT).toBe(1 << 18)
    expect(productParts(4, 100, 8, 100, false, 40_000)).toEqual([part(0, 4, 0, 100)])
    // 10 items of 10 000: 2 a call
    expect(productParts(10, 100, 8, 100, false, 25_000)).toEqual([0, 2, 4, 6, 8].map((i) => part(i, 2, 0, 100)))
    // 7 items, 3 a call at most: 3 calls, of 2, 2 and 3
    expect(productParts(7, 100, 8, 100, true, 30_000)).toEqual([part(0, 2, 0, 100), part(2, 2, 0, 100), part(4, 3, 0, 100)])
    // 1001 rows of 100: 250 a call at most, so 5 runs of 200 (the last 201)
    expect(productParts(1, 1001, 8, 100, false, 25_000)).toEqual([0, 200, 400, 600, 800].map((r) => part(0, 1, r, r === 800 ? 201 : 200)))
    // two items too big each: each split alike
    expect(productParts(2, 200, 8, 100, false, 10_000)).toEqual([
      part(0, 1, 0, 100),
      part(0, 1, 100, 100),
      part(1, 1, 0, 100),
      part(1, 1, 100, 100),
    ])
  })

  it('takes at least CALL_MIN_ROWS rows a call, and leaves an item whole where A is transposed or B is large', () => {
    expect(CALL_MIN_ROWS).toBe(64)
    expect(productParts(1, 200, 8, 1000, false, 1000)).toEqual([part(0, 1, 0, 66), part(0, 1, 66, 67), part(0, 1, 133, 67)])
    expect(productParts(1, 64, 8, 1000, false, 1000)).toEqual([part(0, 1, 0, 64)])
    expect(productParts(1, 127, 8, 1000, false, 1000)).toEqual([part(0, 1, 0, 127)])
    expect(productParts(1, 128, 8, 1000, false, 1000)).toEqual([part(0, 1, 0, 64), part(0, 1, 64, 64)])
    expect(productParts(2, 500, 8, 100, true, 1000)).toEqual([part(0, 1, 0, 500), part(1, 1, 0, 500)])
    expect(CALL_MAX_SHARED_B).toBe(1 << 22)
    expect(productParts(1, 500, CALL_MAX_SHARED_B / 100, 100, false, 1000)).toHaveLength(7)
    expect(productParts(1, 500, CALL_MAX_SHARED_B / 100 + 1, 100, false, 1000)).toEqual([part(0, 1, 0, 500)])
  })

  it('covers every output row of every item once, in order', () => {
    const rng = new Rng(12)
    for (let t = 0; t < 300; t++) {
      const [batch, m, k, n] = [
        1 + Math.floor(rng.next() * 5),
        Math.floor(rng.next() * 400),
        1 + Math.floor(rng.next() * 50),
        1 + Math.floor(rng.next() * 300),
      ]
      const max = 1 + Math.floor(rng.next() * 60_000)
      const parts = productParts(batch, m, k, n, rng.next() < 0.3, max)
      const seen: string[] = []
      for (const p of parts)
        for (let i = p.item; i < p.item + p.items; i++) for (let r = p.row; r < p.row + p.rows; r++) seen.push(`${i}:${r}`)
      const want = Array.from({ length: batch }, (_, i) => Array.from({ length: m }, (_, r) => `${i}:${r}`)).flat()
      expect(seen, `${batch} ${m} ${k} ${n} ${max}`).toEqual(want)
      for (const p of parts)
        if (p.items > 1 || p.rows < m)
          expect(p.items * p.rows * n <= max || p.rows >= CALL_MIN_ROWS, `${batch} ${m} ${k} ${n} ${max}`).toBe(true)
    }
  })
})

describe.skipIf(!paths.includes('native'))('the native matmul in parts', () => {
  it('gives the bits of one call, for every operand layout and batch broadcast, writing only the output', () => {
    const rng = new Rng(13)
    const whole = loadNativeMatMul(2)
    const parts = loadNativeMatMul(2, 700) // every product below is several calls
    // [batchA, batchB, m, k, n]
    const shapes: [number, number, number, number, number][] = [
      [1, 1, 150, 33, 20], // runs of rows
      [5, 5, 9, 17, 30], // groups of items
      [3, 1, 70, 5, 11],
      [1, 4, 70, 5, 11],
      [2, 2, 131, 40, 9], // items, each in runs
    ]
    for (const [batchA, batchB, m, k, n] of shapes)
      for (const transposeA of [false, true])
        for (const transposeB of [false, true]) {
          const a = operands(rng, batchA * m * k)
          const b = operands(rng, batchB * k * n)
          const size = Math.max(batchA, batchB) * m * n
          const calls = productParts(Math.max(batchA, batchB), m, k, n, transposeA, 700).length
          const [one, split] = [whole, parts].map((nm) => {
            const buf = new Float32Array(size + 2).fill(7)
            const before = nm.runs()
            nm.matMul({ a, b, out: buf.subarray(1, 1 + size), batchA, batchB, m, k, n, transposeA, transposeB })
            expect(nm.runs() - before).toBe(nm === whole ? 1 : calls)
            expect([buf[0], buf[size + 1]]).toEqual([7, 7])
            return buf
          })
          const what = `${batchA}x${batchB} (${m}, ${k}, ${n}) ${transposeA} ${transposeB}`
          // A transposed A's item is one call (its rows are columns); everything else here is split.
          expect(calls > 1, what).toBe(!transposeA || batchA * batchB > 1)
          expect(split, what).toEqual(one)
        }
    const [rows, cols] = [50, 37]
    const x = Float32Array.from(rng.normalArray(rows * cols))
    const [sOne, sSplit] = [whole, parts].map((nm) => {
      const out = new Float32Array(rows * cols)
      const before = nm.runs()
      nm.softmax({ x, out, rows, cols })
      expect(nm.runs() - before).toBe(nm === whole ? 1 : 3) // 1850 floats in parts of 700 at most
      return out
    })
    expect(sSplit).toEqual(sOne)
  })
})

describe.skipIf(!paths.includes('native'))('the native matmul, many products in one run', () => {
  it("gives each product matMul's bits, in as few runs as GROUP_MAX_NODES allows, writing only the outputs", () => {
    const rng = new Rng(14)
    // every layout, parts (a small maxOutput splits the larger ones), a batch, an empty product
    const one = loadNativeMatMul(2, 700)
    const single = loadNativeMatMul(1, 700)
    const shapes: [number, number, number, number, number][] = [
      [1, 1, 150, 33, 20], // runs of rows
      [3, 3, 9, 17, 30],
      [1, 1, 7, 5, 3],
      [2, 1, 70, 5, 11],
      [1, 1, 0, 4, 6], // no call at all
      [1, 1, 64, 128, 256], // over the pool's threshold together
    ]
    const products: MatMulOperands[] = []
    const buffers: Float32Array[] = []
    for (let i = 0; products.length < 2 * GROUP_MAX_NODES; i++) {
      const [batchA, batchB, m, k, n] = shapes[i % shapes.length]
      const transposeA = i % 2 === 1
      const transposeB = i % 4 >= 2
      const size = Math.max(batchA, batchB) * m * n
      const buf = new Float32Array(size + 2).fill(7)
      buffers.push(buf)
      products.push({
        a: operands(rng, batchA * m * k),
        b: operands(rng, batchB * k * n),
        out: buf.subarray(1, 1 + size),
        batchA,
        batchB,
        m,
        k,
        n,
        transposeA,
        transposeB,
      })
    }
    const parts = products.reduce((s, p) => s + productParts(Math.max(p.batchA, p.batchB), p.m, p.k, p.n, p.transposeA, 700).length, 0)
    expect(parts).toBeGreaterThan(2 * GROUP_MAX_NODES) // more nodes than one graph takes
    const before = one.runs()
    one.matMulMany(products)
    expect(one.runs() - before).toBe(Math.ceil(parts / GROUP_MAX_NODES))
    products.forEach((p, i) => {
      const want = new Float32Array(p.out.length)
      single.matMul({ ...p, out: want })
      expect(buffers[i][0], `product ${i}`).toBe(7)
      expect(buffers[i][p.out.length + 1], `product ${i}`).toBe(7)
      expect(p.out, `product ${i}`).toEqual(want)
    })
    // the same products in another order: the graph already made (a graph is its count of each layout)
    const graphs = one.graphs()
    one.matMulMany([...products].reverse())
    expect(one.graphs()).toBe(graphs)
    buffers.forEach((buf, i) => expect(buf[0], `product ${i}`).toBe(7))
    // nothing to multiply: no run
    const after = one.runs()
    one.matMulMany([])
    one.matMulMany([{ ...products[4], m: 0, out: new Float32Array(0) }])
    expect(one.runs()).toBe(after)
  })
})

describe.skipIf(!paths.includes('native'))('the native matmul, graphs kept', () => {
  it('keeps at most GROUP_MAX_GRAPHS graphs, however many kinds of run it is asked for, and still multiplies', () => {
    const nm = loadNativeMatMul(1)
    const a = new Float32Array([1, 2])
    const b = new Float32Array([3, 4])
    // runs of p plain products x·y (1 × 2 · 2 × 1, layout 0) and q with y transposed (layout 1): GROUP_MAX_GRAPHS + 10 kinds
    const kinds = GROUP_MAX_GRAPHS + 10
    const seen = new Set<string>()
    for (let i = 0; i < kinds; i++) {
      const [p, q] = [1 + (i % 32), Math.floor(i / 32)]
      seen.add(`${p}:${q}`)
      const outs = Array.from({ length: p + q }, () => new Float32Array(1))
      nm.matMulMany(outs.map((out, j) => ({ a, b, out, batchA: 1, batchB: 1, m: 1, k: 2, n: 1, transposeA: false, transposeB: j >= p })))
      expect(nm.graphs()).toBeLessThanOrEqual(GROUP_MAX_GRAPHS)
      expect(outs.map((o) => o[0])).toEqual(outs.map(() => 11))
    }
    expect(seen.size).toBe(kinds) // every run a graph of its own
  })
})

describe.skipIf(!paths.includes('native'))('tf.matMul on wasm with the native matmul', () => {
  let restore = (): void => {}
  let calls = 0
  beforeAll(async () => {
    restore = await useWasmMatMul('native')
    const real = nativeMatMul()!
    useNativeMatMul({ ...real, matMul: (p) => (calls++, real.matMul(p)) })
  })
  afterAll(() => restore())

  it('runs every float product natively (one call, any layout), and batches that broadcast many against many on TF.js kernels', () => {
    const rng = new Rng(6)
    const cases: [number[], number[], boolean, boolean][] = [
      [[5, 4], [4, 6], false, false],
      [[4, 5], [6, 4], true, true],
      [[2, 3, 5, 4], [2, 3, 4, 6], false, false],
      [[2, 7, 4], [1, 4, 3], false, false],
    ]
    const tensor = (shape: number[]): tf.Tensor =>
      tf.tensor(
        operands(
          rng,
          shape.reduce((p, d) => p * d, 1),
        ),
        shape,
      )
    for (const [sa, sb, ta, tb] of cases) {
      const [a, b] = [tensor(sa), tensor(sb)]
      const before = calls
      const y = tf.matMul(a, b, ta, tb)
      expect(calls - before, `${sa} x ${sb}`).toBe(1)
      const want = referenceMatMul(a.dataSync(), sa, b.dataSync(), sb, ta, tb)
      expect(y.shape, `${sa} x ${sb}`).toEqual(want.shape)
      expect(maxAbsDiff(y.dataSync(), want.data), `${sa} x ${sb}`).toBeLessThan(1e-5)
      tf.dispose([a, b, y])
    }
    // (2, 1) batches against (1, 3): left to TF.js's own kernel
    const [a, b] = [tensor([2, 1, 7, 4]), tensor([1, 3, 4, 3])]
    const before = calls
    const y = tf.matMul(a, b)
    expect(calls).toBe(before)
    expect(y.shape).toEqual([2, 3, 7, 3])
    tf.dispose([a, b, y])
  })
})

describe('choosing the native matmul (MOE_WORKBENCH_MATMUL)', () => {
  const fake: NativeMatMul = {
    library: 'fake',
    threads: 3,
    matMul: () => {},
    matMulMany: () => {},
    softmax: () => {},
    runs: () => 0,
    graphs: () => 0,
  }
  const broken = (): NativeMatMul => {
    throw new Error('libonnxruntime.so.1: cannot open shared object file\nsecond line')
  }

  it('auto (unset, empty or "auto") uses it where it loads, with the threads asked for', () => {
    for (const env of [{}, { MOE_WORKBENCH_MATMUL: '' }, { MOE_WORKBENCH_MATMUL: ' auto ' }]) {
      let asked = 0
      const r = chooseNativeMatMul(3, env, (t) => ((asked = t), fake))
      expect(r).toEqual({ native: fake })
      expect(asked).toBe(3)
    }
  })

  it('auto falls back to XNNPACK where it does not load, with the first line of the reason', () => {
    expect(chooseNativeMatMul(2, {}, broken)).toEqual({ native: null, failure: 'libonnxruntime.so.1: cannot open shared object file' })
  })

  it('"wasm" never loads it; "native" requires it, saying what to do', () => {
    let loaded = false
    expect(chooseNativeMatMul(2, { MOE_WORKBENCH_MATMUL: 'wasm' }, () => ((loaded = true), fake))).toEqual({ native: null })
    expect(loaded).toBe(false)
    expect(chooseNativeMatMul(2, { MOE_WORKBENCH_MATMUL: 'native' }, () => fake)).toEqual({ native: fake })
    expect(() => chooseNativeMatMul(2, { MOE_WORKBENCH_MATMUL: 'native' }, broken)).toThrow(
      /MOE_WORKBENCH_MATMUL=native: onnxruntime-node did not load \(libonnxruntime.so.1: cannot open shared object file\); reinstall with npm install, or unset it$/,
    )
  })

  it('refuses any other value, naming the ones it takes', () => {
    expect(() => chooseNativeMatMul(2, { MOE_WORKBENCH_MATMUL: 'mkl' }, () => fake)).toThrow(
      'MOE_WORKBENCH_MATMUL="mkl": expected native, wasm or auto',
    )
  })
})
