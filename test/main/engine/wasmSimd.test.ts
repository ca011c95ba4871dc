/**
 * The hand-assembled WebAssembly SIMD loops against the float32 operations they replace (each
 * result rounded as Math.fround rounds it, in the same order), on a memory of their own: lengths
 * with and without a tail past the last four lanes, empty ones, arrays at unaligned addresses,
 * and nothing written outside the output.
 */
import { describe, expect, it } from 'vitest'
import { heapSimd, type AdamWScalars } from '../../../src/main/engine/wasmSimd'
import { ropeRows, sumLeadingRows } from '../../../src/main/engine/wasmKernels'

const f = Math.fround

function setUp() {
  const memory = new WebAssembly.Memory({ initial: 4 })
  const simd = heapSimd(memory)
  if (!simd) throw new Error('the SIMD loops did not load')
  const heap = new Float32Array(memory.buffer)
  let seed = 7
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return (seed / 2 ** 31) * 4 - 2
  }
  heap.fill(NaN) // whatever a loop writes where it should not shows
  /** n random floats at float offset `at` (odd offsets: unaligned addresses). */
  const fill = (at: number, n: number): Float32Array => {
    for (let i = 0; i < n; i++) heap[at + i] = rand() * 10 ** ((i % 5) - 2)
    return heap.slice(at, at + n)
  }
  return { memory, simd, heap, fill }
}

describe('WebAssembly SIMD loops on the heap', () => {
  it("are made once per memory, and over a shared memory too (the threaded build's)", () => {
    const { memory, simd } = setUp()
    expect(heapSimd(memory)).toBe(simd)
    const shared = new WebAssembly.Memory({ initial: 1, maximum: 4, shared: true })
    const onShared = heapSimd(shared)!
    const heap = new Float32Array(shared.buffer)
    heap.set([1, 2, 3, 4, 5], 0)
    heap.set([10, 20, 30, 40, 50], 8)
    onShared.add(0, 32, 5)
    expect(Array.from(heap.subarray(0, 6))).toEqual([11, 22, 33, 44, 55, 0])
  })

  it.each([0, 1, 3, 4, 13, 64])('add: dst += src over %i floats, float32 sums, nothing past the end', (n) => {
    const { simd, heap, fill } = setUp()
    const dst = fill(101, n)
    const src = fill(3001, n)
    simd.add(101 * 4, 3001 * 4, n)
    expect(Array.from(heap.subarray(101, 101 + n))).toEqual(Array.from(dst, (d, i) => f(d + src[i])))
    expect(heap[100]).toBeNaN()
    expect(heap[101 + n]).toBeNaN()
  })

  it.each([
    [37, 13],
    [5, 8],
    [1, 3],
    [0, 6],
  ])('sumRows: %i rows of %i columns summed in row order from zero', (rows, cols) => {
    const { simd, heap, fill } = setUp()
    const x = fill(7, rows * cols)
    const want = new Float32Array(cols)
    sumLeadingRows(x, want, cols)
    if (rows > 0) expect(Array.from(want)).not.toEqual(new Array(cols).fill(0))
    simd.sumRows(7 * 4, 5001 * 4, rows, cols)
    expect(Array.from(heap.subarray(5001, 5001 + cols))).toEqual(Array.from(want))
    expect(heap[5001 + cols]).toBeNaN()
  })

  it.each([
    [8, 3, 7, false],
    [16, 5, 12, true],
    [32, 4, 4, false],
    [32, 4, 9, true],
  ] as const)("rope: D=%i, T=%i, %i rows (transpose %s): ropeRows' bits", (D, T, rows, transpose) => {
    const { simd, heap, fill } = setUp()
    const x = fill(1, rows * D)
    const cos = fill(2001, T * D)
    const sin = fill(3001, T * D)
    const want = new Float32Array(rows * D)
    ropeRows(x, cos, sin, want, T, D, transpose)
    expect(simd.rope(4, 2001 * 4, 3001 * 4, 6001 * 4, rows, T, D, transpose)).toBe(true)
    expect(Array.from(heap.subarray(6001, 6001 + rows * D))).toEqual(Array.from(want))
    expect(heap[6001 + rows * D]).toBeNaN()
    expect(heap[6000]).toBeNaN()
  })

  it.each([0, 1, 3, 4, 7, 130])('scale and dot over %i floats: x·s as Math.fround, and Σ a·b in four lanes then the tail in order', (n) => {
    const { simd, heap, fill } = setUp()
    const a = fill(1, n)
    const b = fill(1001, n)
    simd.scale(4, 3001 * 4, n, 0.375)
    a.forEach((v, i) => expect(heap[3001 + i], `scale ${i}`).toBe(f(v * 0.375)))
    expect(Number.isNaN(heap[3001 + n])).toBe(true)
    const lanes = [0, 0, 0, 0]
    const vec = n - (n % 4)
    for (let i = 0; i < vec; i++) lanes[i % 4] = f(lanes[i % 4] + f(a[i] * b[i]))
    let want = f(f(lanes[0] + lanes[1]) + f(lanes[2] + lanes[3]))
    for (let i = vec; i < n; i++) want = f(want + f(a[i] * b[i]))
    expect(simd.dot(4, 1001 * 4, n)).toBe(want)
  })

  it('rope: a half width that is not a multiple of four is left to the caller, nothing written', () => {
    const { simd, heap, fill } = setUp()
    fill(1, 3 * 6)
    fill(2001, 3 * 6)
    fill(3001, 3 * 6)
    expect(simd.rope(4, 2001 * 4, 3001 * 4, 6001 * 4, 3, 3, 6, false)).toBe(false)
    expect(heap.subarray(6001, 6001 + 18).every(Number.isNaN)).toBe(true)
  })

  it.each([
    [3, 8],
    [5, 256],
    [2, 4096],
  ])('softmax: %i rows of %i, within 4e-6 of exact; 0 where exp underflows or the input is -inf; NaN stays NaN', (rows, cols) => {
    const { simd, heap, fill } = setUp()
    const x = fill(1, rows * cols).map((v, i) => v * 40 + (i % 3))
    x[1] = -Infinity // masked
    x[cols + 2] = x[cols + 3] - 120 // far below the row's max: exp underflows
    heap.set(x, 1)
    const out = 1 + rows * cols + 3
    expect(simd.softmax(4, out * 4, rows, cols)).toBe(true)
    for (let r = 0; r < rows; r++) {
      const row = Array.from(x.subarray(r * cols, (r + 1) * cols))
      const max = Math.max(...row)
      const sum = row.reduce((a, v) => a + Math.exp(v - max), 0)
      row.forEach((v, c) => {
        const want = Math.exp(v - max) / sum
        const got = heap[out + r * cols + c]
        if (v - max < -87.4) expect(got, `row ${r} col ${c}`).toBe(0)
        else expect(Math.abs(got - want), `row ${r} col ${c}`).toBeLessThanOrEqual(4e-6 * want)
      })
    }
    expect(heap[1 + 1]).toBe(-Infinity) // x untouched
    expect(heap[out + 1]).toBe(0)
    expect(heap[out + rows * cols]).toBeNaN()
    heap[1 + 5] = NaN
    simd.softmax(4, out * 4, 1, cols)
    expect(heap[out]).toBeNaN()
    expect(simd.softmax(4, out * 4, 1, cols - 2)).toBe(false) // not a multiple of 4: the caller's
  })

  it.each([
    [11, 0.1],
    [4, 0],
    [0, 0.1],
  ])('adamw over %i floats (weight decay %s): every operation rounded to float32 in order', (n, wd) => {
    const { simd, heap, fill } = setUp()
    const [p, m, v, g] = [fill(1, n), fill(1001, n), fill(2001, n).map(Math.abs), fill(3001, n)]
    if (n > 1) g[1] = 0 // a zero gradient
    heap.set(v, 2001)
    heap.set(g, 3001)
    const k: AdamWScalars = { b1: 0.9, b1c: 0.1, b2: 0.95, b2c: 0.05, decay: 1 - 1e-3 * wd, bc2: 0.3, eps: 1e-8, step: 2e-3 }
    simd.adamw(4, 1001 * 4, 2001 * 4, 3001 * 4, { p: 4001 * 4, m: 5001 * 4, v: 6001 * 4 }, n, k)
    const K = Object.fromEntries(Object.entries(k).map(([key, val]) => [key, f(val)])) as unknown as AdamWScalars
    for (let i = 0; i < n; i++) {
      const mNew = f(f(m[i] * K.b1) + f(g[i] * K.b1c))
      const vNew = f(f(v[i] * K.b2) + f(f(g[i] * g[i]) * K.b2c))
      const denom = f(f(f(Math.sqrt(vNew)) / K.bc2) + K.eps)
      const pNew = f(f(p[i] * K.decay) - f(f(mNew / denom) * K.step))
      expect([heap[4001 + i], heap[5001 + i], heap[6001 + i]], `element ${i}`).toEqual([pNew, mNew, vNew])
      expect(pNew).not.toBe(p[i])
    }
    for (const end of [4001, 5001, 6001]) expect(heap[end + n]).toBeNaN()
  })
})
