/**
 * The wasm Slice and SplitV replacements: a contiguous part (a range of rows) is copied heap to
 * heap without reading the whole source back; any other part goes to TF.js's own kernel; values
 * are TF.js's in every case and dtype.
 */
import * as tf from '@tensorflow/tfjs'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { registerWasmKernels } from '../../../src/main/engine/wasmKernels'

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
