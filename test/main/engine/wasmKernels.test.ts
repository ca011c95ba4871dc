/**
 * The wasm Slice and SplitV replacements: a contiguous part (a range of rows) is copied heap to
 * heap without reading the whole source back; any other part goes to TF.js's own kernel; values
 * are TF.js's in every case and dtype.
 */
import * as tf from '@tensorflow/tfjs'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { applyRope, ropeTables } from '../../../src/main/engine/model'
import { nativeMatMul, useNativeMatMul } from '../../../src/main/engine/nativeMatMul'
import { registerWasmKernels, ROPE } from '../../../src/main/engine/wasmKernels'
import { backendSimd } from '../../../src/main/engine/wasmSimd'
import { combineRows, embedLookup, permuteRows, siluMul, unpermuteRows } from '../../../src/main/engine/ops'
import { decideRouting } from '../../../src/main/engine/router'
import { maskedSoftmax } from '../../../src/main/engine/model'
import { useWasmMatMul, wasmMatMulPaths } from './helpers'

beforeAll(async () => {
  await initBackend('wasm')
  await tf.setBackend('wasm')
})

afterEach(() => {
  vi.restoreAllMocks()
})

/** The values as the cpu backend computes them (TF.js's reference; the inputs' data move over). */
function onCpu(f: () => tf.Tensor | tf.Tensor[]): number[][] {
  tf.setBackend('cpu')
  try {
    const out = f()
    return (Array.isArray(out) ? out : [out]).map((t) => Array.from(t.dataSync()))
  } finally {
    tf.setBackend('wasm')
  }
}

describe('wasm Slice and SplitV', () => {
  it('slices a range of rows without reading the source back, and other parts through TF.js, with the same values', () => {
    const x = tf.tensor3d(
      Array.from({ length: 4 * 3 * 5 }, (_, i) => i),
      [4, 3, 5],
    )
    const readSync = vi.spyOn(tf.backend() as unknown as { readSync(d: tf.DataId): unknown }, 'readSync')
    // rows 1..2 (contiguous)
    const rows = tf.slice(x, [1, 0, 0], [2, 3, 5])
    expect(readSync).not.toHaveBeenCalled()
    expect(Array.from(rows.dataSync())).toEqual(Array.from({ length: 30 }, (_, i) => 15 + i))
    // one row's middle columns (contiguous: a single run of memory)
    const run = tf.slice(x, [2, 1, 0], [1, 2, 5])
    expect(readSync).toHaveBeenCalledTimes(1) // (the dataSync above)
    expect(Array.from(run.dataSync())).toEqual(Array.from({ length: 10 }, (_, i) => 35 + i))
    readSync.mockClear()
    // a column block (not contiguous): TF.js's kernel, which reads the source
    const cols = tf.slice(x, [0, 0, 1], [4, 3, 2])
    expect(readSync).toHaveBeenCalled()
    const want = onCpu(() => tf.slice(x, [0, 0, 1], [4, 3, 2]))
    expect(Array.from(cols.dataSync())).toEqual(want[0])
    tf.dispose([x, rows, run, cols])
  })

  it('keeps the dtype of int32 and bool parts', () => {
    const i = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32')
    const s = tf.slice(i, [1, 0], [2, 2])
    expect(s.dtype).toBe('int32')
    expect(Array.from(s.dataSync())).toEqual([3, 4, 5, 6])
    const b = tf.tensor1d([true, false, true, true], 'bool')
    const t = tf.slice(b, [1], [2])
    expect(t.dtype).toBe('bool')
    expect(Array.from(t.dataSync())).toEqual([0, 1])
    tf.dispose([i, s, b, t])
  })

  it('splits along rows heap to heap and along columns through TF.js, each part in order', () => {
    const x = tf.tensor2d(
      Array.from({ length: 6 * 4 }, (_, i) => i),
      [6, 4],
    )
    const readSync = vi.spyOn(tf.backend() as unknown as { readSync(d: tf.DataId): unknown }, 'readSync')
    const parts = tf.split(x, [1, 3, 2], 0)
    expect(readSync).not.toHaveBeenCalled()
    expect(parts.map((p) => p.shape)).toEqual([
      [1, 4],
      [3, 4],
      [2, 4],
    ])
    expect(parts.map((p) => Array.from(p.dataSync()))).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
      [16, 17, 18, 19, 20, 21, 22, 23],
    ])
    const even = tf.split(x, 3, 0)
    expect(even.map((p) => Array.from(p.dataSync())[0])).toEqual([0, 8, 16])
    readSync.mockClear()
    const cols = tf.split(x, [3, 1], 1)
    expect(readSync).toHaveBeenCalled()
    expect(cols.map((p) => Array.from(p.dataSync()))).toEqual(onCpu(() => tf.split(x, [3, 1], 1)))
    tf.dispose([x, ...parts, ...even, ...cols])
  })

  it('registers once: a second call changes nothing', () => {
    const slice = tf.getKernel('Slice', 'wasm')
    const warn = vi.spyOn(console, 'warn')
    registerWasmKernels()
    expect(tf.getKernel('Slice', 'wasm')).toBe(slice)
    expect(warn).not.toHaveBeenCalled()
  })
})

describe('wasm RoPE kernel', () => {
  /** Forward and gradient (of Σ x'·w, w fixed) of applyRope on the current backend. */
  function ropeAndGrad(x: number[], w: number[], shape: [number, number, number, number], theta: number): number[][] {
    return tf.tidy(() => {
      const [, , T, D] = shape
      const { cos, sin } = ropeTables(theta, D, 3, T)
      const xt = tf.tensor4d(x, shape)
      const wt = tf.tensor4d(w, shape)
      const out = applyRope(xt, cos, sin)
      const grad = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(applyRope(v as tf.Tensor4D, cos, sin), wt)))(xt)
      return [Array.from(out.dataSync()), Array.from(grad.dataSync())]
    })
  }

  it('gives the bits of split, negate, concat, multiply and add, forward and backward, in one kernel each way', async () => {
    const shape: [number, number, number, number] = [2, 3, 5, 8]
    const n = 2 * 3 * 5 * 8
    const x = Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * 3.1)
    const w = Array.from({ length: n }, (_, i) => Math.cos(i * 0.3) * 1.3)
    const want = onCpu(() => ropeAndGrad(x, w, shape, 1e4).map((a) => tf.tensor(a)))
    const profile = await tf.profile(() => {
      const got = ropeAndGrad(x, w, shape, 1e4)
      expect(got[0]).toEqual(want[0])
      expect(got[1]).toEqual(want[1])
    })
    expect(profile.kernels.filter((k) => k.name === ROPE)).toHaveLength(3) // two forwards (one under tf.grad), one gradient
    expect(profile.kernels.map((k) => k.name)).not.toContain('Concat')
  })
})

describe('wasm kernels in the SIMD loops (wasmSimd.ts)', () => {
  const simd = () => {
    const loops = backendSimd(tf.backend())
    if (!loops) throw new Error('the SIMD loops did not load on the wasm backend')
    return loops
  }
  const random = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + seed) * 10 ** ((i % 5) - 2))

  it("dispatch's row sums and an embedding's gradient, on rows 7 wide (a vector and a tail): the JavaScript loops' bits (cpu)", () => {
    // 4 tokens, 6 routed rows (token 3 in one expert), width 7
    const index = new Int32Array([0, 2, 1, 3, 2, 0])
    const inverses = [new Int32Array([0, 2, 1, 3]), new Int32Array([5, 6, 4, 6])] // 6: not routed
    const x = random(4 * 7, 1)
    const z = random(6 * 7, 2)
    const ids = new Int32Array([2, 0, 2, 1, 2])
    const dy = random(5 * 7, 3)
    const run = (): tf.Tensor[] => [
      unpermuteRows(tf.tensor2d(z, [6, 7]), index, inverses),
      tf.grad((v: tf.Tensor) => tf.sum(tf.mul(permuteRows(v as tf.Tensor2D, index, inverses), tf.tensor2d(z, [6, 7]))))(
        tf.tensor2d(x, [4, 7]),
      ),
      tf.grad((t: tf.Tensor) => tf.sum(tf.mul(embedLookup(t as tf.Tensor2D, ids), tf.tensor2d(dy, [5, 7]))))(
        tf.tensor2d(random(3 * 7, 4), [3, 7]),
      ),
    ]
    const want = onCpu(run)
    const add = vi.spyOn(simd(), 'add')
    const got = run().map((t) => Array.from(t.dataSync()))
    expect(got).toEqual(want)
    // 6 routed rows summed back, twice (the unpermute, the permute's gradient); 5 embedding rows
    expect(add).toHaveBeenCalledTimes(2 * 6 + 5)
  })

  it('RoPE and leading-axis sums run there; a RoPE half width that is not a multiple of 4 takes the JavaScript loop, the same bits', async () => {
    const rope = vi.spyOn(simd(), 'rope')
    const sumRows = vi.spyOn(simd(), 'sumRows')
    for (const D of [8, 12]) {
      const shape: [number, number, number, number] = [1, 2, 3, D]
      const run = (): tf.Tensor[] => {
        const { cos, sin } = ropeTables(1e4, D, 3, 3)
        return [applyRope(tf.tensor4d(random(6 * D, D), shape), cos, sin)]
      }
      expect(
        run().map((t) => Array.from(t.dataSync())),
        `D=${D}`,
      ).toEqual(onCpu(run))
    }
    expect(rope.mock.results.map((r) => r.value)).toEqual([true, false])
    tf.sum(tf.tensor2d(random(9 * 7, 5), [9, 7]), 0).dispose()
    expect(sumRows).toHaveBeenCalledTimes(1)
  })
})

describe('fused SwiGLU product and attention softmax on wasm', () => {
  const random = (n: number, seed: number, scale = 1): number[] =>
    Array.from({ length: n }, (_, i) => Math.sin(i * 2.1 + seed) * scale * 10 ** ((i % 3) - 1))
  const bits = (ts: tf.Tensor[]): number[][] => ts.map((t) => Array.from(t.dataSync()))

  it("siluMul: (g·sigmoid(g))·u and both gradients with TF.js's kernels' bits, in one kernel each way", async () => {
    const [g, u, dy] = [random(3 * 37, 1, 4), random(3 * 37, 2), random(3 * 37, 3)].map((a) => tf.tensor2d(a, [3, 37]))
    const composed = (a: tf.Tensor, c: tf.Tensor): tf.Tensor => tf.mul(tf.mul(a, tf.sigmoid(a)), c)
    const want = bits([composed(g, u), ...tf.grads(composed)([g, u], dy)])
    const profile = await tf.profile(() => {
      const got = bits([siluMul(g, u), ...tf.grads((a: tf.Tensor, c: tf.Tensor) => siluMul(a, c))([g, u], dy)])
      expect(got).toEqual(want)
    })
    const names = profile.kernels.map((k) => k.name)
    expect(names.filter((n) => n === 'MoeWorkbenchSiluMul')).toHaveLength(2) // alone, and under tf.grads
    expect(names.filter((n) => n === 'MoeWorkbenchSiluMulGrad')).toHaveLength(1)
    expect(names).not.toContain('Multiply')
    // a broadcast operand keeps TF.js's kernels (and values)
    const row = tf.tensor1d(random(37, 4))
    expect(bits([siluMul(g, row)])).toEqual(bits([composed(g, row)]))
    // other backends: the composition
    const gu = (): [tf.Tensor, tf.Tensor] => [tf.tensor2d(random(3 * 37, 1, 4), [3, 37]), tf.tensor2d(random(3 * 37, 2), [3, 37])]
    expect(onCpu(() => siluMul(...gu()))).toEqual(onCpu(() => composed(...gu())))
  })

  it.each([37, 40])(
    "maskedSoftmax over rows %i wide: softmax(x·scale + mask) and its gradient with the composition's bits, the mask on every block",
    async (S) => {
      const [B, R] = [2, 5]
      const x = tf.tensor4d(random(B * 3 * R * S, 5, 6), [B, 3, R, S])
      const mask = tf.tensor2d(
        Array.from({ length: R * S }, (_, i) => (i % S > (i / S) * 7 + 3 ? -1e9 : 0)),
        [R, S],
      )
      const dy = tf.tensor4d(random(B * 3 * R * S, 6), [B, 3, R, S])
      const scale = 1 / Math.sqrt(32)
      const composed = (t: tf.Tensor): tf.Tensor => tf.softmax(tf.add(tf.mul(t, scale), mask))
      const want = bits([composed(x), tf.grad(composed)(x, dy)])
      expect(want[0].filter((v) => v === 0).length).toBeGreaterThan(0) // masked places
      const profile = await tf.profile(() => {
        const got = bits([maskedSoftmax(x, scale, mask), tf.grad((t: tf.Tensor) => maskedSoftmax(t, scale, mask))(x, dy)])
        expect(got).toEqual(want)
      })
      const names = profile.kernels.map((k) => k.name)
      // rows 4k wide: scale, mask and softmax in one kernel; else the scaled scores, then Softmax
      expect(names.filter((n) => n === (S % 4 === 0 ? 'MoeWorkbenchMaskedSoftmax' : 'MoeWorkbenchScaleAdd'))).toHaveLength(2)
      expect(names.filter((n) => n === 'Softmax')).toHaveLength(S % 4 === 0 ? 0 : 2)
      expect(names.filter((n) => n === 'MoeWorkbenchSoftmaxGrad')).toHaveLength(1)
      expect(names).not.toContain('Multiply')
      // a mask of another shape keeps TF.js's kernels, broadcasting it
      const column = tf.tensor2d(random(R, 7, 3), [R, 1])
      expect(bits([maskedSoftmax(x, scale, column)])).toEqual(bits([tf.softmax(tf.add(tf.mul(x, scale), column))]))
      // a mask that does not broadcast is refused, as TF.js refuses it
      expect(() => maskedSoftmax(x, scale, tf.zeros([2, S]) as tf.Tensor2D)).toThrow(/broadcast|shape/i)
      // and int32 scores
      const ints = tf.tensor4d(
        Array.from({ length: B * 3 * R * S }, (_, i) => (i % 11) - 5),
        [B, 3, R, S],
        'int32',
      )
      expect(bits([maskedSoftmax(ints, scale, mask)])).toEqual(bits([tf.softmax(tf.add(tf.mul(ints, scale), mask))]))
      // other backends: the composition (TF.js's cpu softmax)
      const onCpuWant = onCpu(() =>
        tf.softmax(tf.add(tf.mul(tf.tensor4d(x.dataSync(), x.shape), scale), tf.tensor2d(mask.dataSync(), [R, S]))),
      )
      expect(onCpu(() => maskedSoftmax(tf.tensor4d(x.dataSync(), x.shape), scale, tf.tensor2d(mask.dataSync(), [R, S])))).toEqual(onCpuWant)
    },
  )
})

describe("the MoE block's combine on wasm", () => {
  const random = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + seed) * 10 ** ((i % 3) - 1))

  it("sums each token's rows times its routing weights with the bits of gather, multiply and sum back, and the gradients, in one kernel each way", async () => {
    const [N, E, k, H] = [6, 4, 2, 7] // rows 7 wide: a vector and a tail
    // capacity 2 of 3 wanted by expert 0: one assignment dropped (its token keeps one expert)
    const scores = [0.9, 0.5, 0, 0, 0.8, 0, 0.4, 0, 0.7, 0, 0, 0.6, 0, 0.9, 0.3, 0, 0, 0, 0.8, 0.5, 0.1, 0.9, 0, 0]
    const d = decideRouting(scores, N, E, { type: 'softmax_topk', k, capacityFactor: 1 / 3 + 0.01, valid: new Uint8Array(N).fill(1) })
    expect(d.dropped).toBeGreaterThan(0)
    const A = d.index.length
    const ys = tf.tensor2d(random(A * H, 1), [A, H])
    const gates = tf.tensor2d(
      random(N * E, 2).map((v, i) => (d.flatInverse[i] === A ? 0 : v)),
      [N, E],
    )
    const dy = tf.tensor2d(random(N * H, 3), [N, H])
    // the composition (as on every other backend): the weights gathered, a product, the rows summed back
    const composed = (y: tf.Tensor, g: tf.Tensor): tf.Tensor =>
      unpermuteRows(
        tf.mul(y, permuteRows(tf.reshape(g, [N * E, 1]) as tf.Tensor2D, d.flatIndex, [d.flatInverse])) as tf.Tensor2D,
        d.index,
        d.inverses,
      )
    const want = [composed(ys, gates), ...tf.grads(composed)([ys, gates], dy)].map((t) => Array.from(t.dataSync()))
    const profile = await tf.profile(() => {
      const f = (y: tf.Tensor, g: tf.Tensor): tf.Tensor => combineRows(y as tf.Tensor2D, g as tf.Tensor2D, d)
      const got = [f(ys, gates), ...tf.grads(f)([ys, gates], dy)].map((t) => Array.from(t.dataSync()))
      expect(got[0]).toEqual(want[0]) // the output: the same bits
      expect(got[1]).toEqual(want[1]) // the rows' gradient: the same bits
      // the weights' gradient: the dot products in four lanes, within float32 rounding; exact zeros where unused
      got[2].forEach((v, i) => {
        if (d.flatInverse[i] === A) expect(v, `gate ${i}`).toBe(0)
        else expect(Math.abs(v - want[2][i]), `gate ${i}`).toBeLessThan(1e-6 * (1 + Math.abs(want[2][i])))
      })
      expect(got[2].filter((v) => v !== 0).length).toBe(A)
    })
    const names = profile.kernels.map((x) => x.name)
    expect(names.filter((n) => n === 'MoeWorkbenchCombine')).toHaveLength(2) // alone, and under tf.grads
    expect(names.filter((n) => n === 'MoeWorkbenchCombineGrad')).toHaveLength(1)
    expect(names).not.toContain('Multiply')
    // other backends: the composition
    const onCpuGot = onCpu(() => combineRows(tf.tensor2d(ys.dataSync(), [A, H]), tf.tensor2d(gates.dataSync(), [N, E]), d))
    expect(onCpuGot[0]).toEqual(onCpu(() => composed(tf.tensor2d(ys.dataSync(), [A, H]), tf.tensor2d(gates.dataSync(), [N, E])))[0])
    tf.dispose([ys, gates, dy])
  })
})

describe('wasm Softmax with the native kernels', () => {
  it('takes the SIMD loop for rows a multiple of 4 wide, native kernels or not: the reference within float32 rounding, a row alone the same bits', async () => {
    const loops = backendSimd(tf.backend())!
    const simdSoftmax = vi.spyOn(loops, 'softmax')
    const real = nativeMatMul()
    const nativeSoftmax = real ? vi.spyOn(real, 'softmax') : null
    const [rows, cols] = [37, 300]
    const data = Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.77) * 9)
    const want = onCpu(() => tf.softmax(tf.tensor2d(data, [rows, cols])))[0]
    try {
      for (const native of [real, null]) {
        useNativeMatMul(native)
        const got = tf.softmax(tf.tensor2d(data, [rows, cols])).dataSync()
        got.forEach((v, i) => expect(Math.abs(v - want[i]), `element ${i}`).toBeLessThan(4e-6 * Math.max(want[i], 1e-3)))
        const alone = tf.softmax(tf.tensor2d(data.slice(5 * cols, 6 * cols), [1, cols])).dataSync()
        expect(Array.from(alone)).toEqual(Array.from(got.slice(5 * cols, 6 * cols)))
      }
    } finally {
      useNativeMatMul(real)
    }
    expect(simdSoftmax).toHaveBeenCalledTimes(4)
    if (nativeSoftmax) expect(nativeSoftmax).not.toHaveBeenCalled()
  })

  it('takes the native softmax on every size, each row as the reference within float32 rounding, the same bits alone or in a batch', async () => {
    const paths = await wasmMatMulPaths()
    if (!paths.includes('native')) return
    const restore = await useWasmMatMul('native')
    const real = nativeMatMul()!
    let calls = 0
    useNativeMatMul({ ...real, softmax: (p) => (calls++, real.softmax(p)) })
    try {
      const rows = 37
      const cols = 301
      const data = Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.77) * 9)
      const x = tf.tensor3d(data, [1, rows, cols])
      const got = tf.softmax(x).dataSync()
      const alone = tf.softmax(tf.tensor2d(data.slice(5 * cols, 6 * cols), [1, cols])).dataSync()
      expect(calls).toBe(2)
      const want = onCpu(() => tf.softmax(tf.tensor3d(data, [1, rows, cols])))[0]
      got.forEach((v, i) => expect(Math.abs(v - want[i]), `element ${i}`).toBeLessThan(2e-6 * Math.max(want[i], 1e-3)))
      expect(Array.from(alone)).toEqual(Array.from(got.slice(5 * cols, 6 * cols)))
      // its gradient is TF.js's (from the output)
      const g = tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.softmax(v), tf.range(0, rows * cols).reshape([1, rows, cols]))))(x)
      const gWant = onCpu(() =>
        tf.grad((v: tf.Tensor) => tf.sum(tf.mul(tf.softmax(v), tf.range(0, rows * cols).reshape([1, rows, cols]))))(
          tf.tensor3d(data, [1, rows, cols]),
        ),
      )[0]
      Array.from(g.dataSync()).forEach((v, i) => expect(v, `gradient ${i}`).toBeCloseTo(gWant[i], 3))
      // empty: nothing to compute
      expect(tf.softmax(tf.zeros([0, 4])).shape).toEqual([0, 4])
      expect(tf.softmax(tf.zeros([4, 0])).shape).toEqual([4, 0])
      // without the native kernels: TF.js's own
      useNativeMatMul(null)
      const plain = tf.softmax(x).dataSync()
      expect(calls).toBe(3) // the two above, and the gradient's forward
      plain.forEach((v, i) => expect(Math.abs(v - want[i]), `TF.js element ${i}`).toBeLessThan(2e-6 * Math.max(want[i], 1e-3)))
      tf.dispose([x, g])
    } finally {
      useNativeMatMul(real)
      restore()
    }
  })
})

describe('wasm Sum over leading axes, and Cast to the same dtype', () => {
  it("sums leading axes column by column in row order, rounding each addition to float32 (TF.js's bits), keepDims or not", async () => {
    const [a, b, c] = [3, 5, 7]
    const data = Array.from({ length: a * b * c }, (_, i) => Math.sin(i * 2.3) * 10 ** ((i % 5) - 2))
    const x = tf.tensor3d(data, [a, b, c])
    const want = (lead: number): number[] => {
      const cols = lead === 1 ? b * c : c
      const out = new Array<number>(cols).fill(0)
      for (let r = 0; r < data.length / cols; r++)
        for (let j = 0; j < cols; j++) out[j] = Math.fround(out[j] + Math.fround(data[r * cols + j]))
      return out
    }
    const s0 = tf.sum(x, 0)
    expect(s0.shape).toEqual([b, c])
    expect(Array.from(s0.dataSync())).toEqual(want(1))
    const s01 = tf.sum(x, [1, 0], true)
    expect(s01.shape).toEqual([1, 1, c])
    // without TF.js's transpose (its kernel makes a transposed copy inside, and disposes it)
    const disposeData = vi.spyOn(tf.backend() as unknown as { disposeData(d: tf.DataId): unknown }, 'disposeData')
    tf.sum(x, 0).dispose()
    expect(disposeData).toHaveBeenCalledTimes(1) // the result only; TF.js's kernel also disposes its transposed copy
    expect(Array.from(s01.dataSync())).toEqual(want(2))
    // other axes: TF.js's kernel, the cpu backend's values
    for (const axis of [[1], [0, 2], [0, 1, 2]]) {
      const got = Array.from(tf.sum(x, axis).dataSync())
      const ref = onCpu(() => tf.sum(tf.tensor3d(data, [a, b, c]), axis))[0]
      got.forEach((v, i) => expect(v, `axis ${axis} element ${i}`).toBeCloseTo(ref[i], 3))
    }
    // int32 keeps TF.js's kernel and dtype
    const ints = tf.sum(tf.tensor2d([1, 2, 3, 4], [2, 2], 'int32'), 0)
    expect(ints.dtype).toBe('int32')
    expect(Array.from(ints.dataSync())).toEqual([4, 6])
    tf.dispose([x, s0, s01, ints])
  })

  it('casts to the same dtype by sharing the buffer (it outlives x), and converts other dtypes', () => {
    const x = tf.tensor1d([1.5, -2.25, 3])
    const buffers = (): number => tf.backend().numDataIds()
    const before = buffers()
    const same = tf.cast(x, 'float32')
    expect(buffers()).toBe(before) // nothing copied
    x.dispose()
    expect(Array.from(same.dataSync())).toEqual([1.5, -2.25, 3])
    const toInt = tf.cast(same, 'int32')
    expect(toInt.dtype).toBe('int32')
    expect(Array.from(toInt.dataSync())).toEqual([1, -2, 3])
    tf.dispose([same, toInt])
  })
})
