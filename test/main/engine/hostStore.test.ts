/**
 * The host store on a hand-made checkpoint: rows read the same in every storage, lazy reads count
 * exactly the bytes they read, gathered rows and their range check, and each refusal names what
 * is wrong (a missing tensor, a non-float dtype, NaN in the rows read, a name it does not hold).
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ExpertStorage } from '../../../src/shared/chat'
import { dequantizeInt8, HostStore, quantizeInt8, storageBytes } from '../../../src/main/engine/hostStore'
import { encodeFromFloat32, openCheckpointTensors, saveSafetensors, type TensorToWrite } from '../../../src/main/engine/safetensors'

const ROWS = 6
const COLS = 5
/** Small integers and halves: exact in bf16, f16 and (per-row scaled) int8 up to rounding. */
const W = Float32Array.from({ length: ROWS * COLS }, (_, i) => ((i * 7) % 11) - 5)
const rowsOf = (from: number, to: number): number[] => Array.from(W.subarray(from * COLS, to * COLS))

function checkpoint(extra: Record<string, TensorToWrite> = {}): ReturnType<typeof openCheckpointTensors>['index'] {
  const dir = mkdtempSync(join(tmpdir(), 'moe-hoststore-'))
  saveSafetensors(join(dir, 'model.safetensors'), {
    w: { dtype: 'F32', shape: [ROWS, COLS], data: W },
    half: { dtype: 'BF16', shape: [ROWS, COLS], data: encodeFromFloat32('BF16', W) },
    cube: { dtype: 'F32', shape: [ROWS, 1, COLS], data: W },
    ...extra,
  })
  return openCheckpointTensors(dir).index
}

describe('the host store', () => {
  it('returns the same rows in every storage, whole or a range; int8 within half a step per row', () => {
    const index = checkpoint()
    for (const storage of ['lazy', 'f32', 'f16', 'bf16', 'int8'] as ExpertStorage[]) {
      const store = new HostStore(storage, index)
      store.add({ name: 'w', shape: [ROWS, COLS] })
      expect(store.has('w')).toBe(true)
      expect(store.has('cube')).toBe(false)
      const tol = storage === 'int8' ? 5 / 127 / 2 + 1e-6 : 0
      for (const [from, to] of [
        [0, ROWS],
        [2, 5],
        [5, 6],
      ]) {
        const got = Array.from(store.matrix('w', [from, to]))
        expect(got.length, `${storage} ${from}..${to}`).toBe((to - from) * COLS)
        got.forEach((v, i) => expect(Math.abs(v - rowsOf(from, to)[i]), `${storage} ${from}..${to} [${i}]`).toBeLessThanOrEqual(tol))
      }
      expect(Array.from(store.matrix('w')).length).toBe(ROWS * COLS)
      expect(store.hostBytes, storage).toBe(storageBytes(storage, ROWS, COLS))
    }
  })

  it('reads lazily by offset, counting exactly the bytes read; building counts none', () => {
    const index = checkpoint()
    const lazy = new HostStore('lazy', index)
    expect(lazy.add({ name: 'w', shape: [ROWS, COLS] })).toBe(0)
    expect(lazy.bytesRead).toBe(0)
    expect(Array.from(lazy.matrix('w', [2, 4]))).toEqual(rowsOf(2, 4))
    expect(lazy.bytesRead).toBe(2 * COLS * 4)
    expect(Array.from(lazy.matrix('w', [2, 4]))).toEqual(rowsOf(2, 4)) // read again: counted again
    expect(lazy.bytesRead).toBe(4 * COLS * 4)
    // a bf16 tensor: 2 bytes a value; a rank-3 tensor: rows of all its trailing values
    lazy.add({ name: 'half', shape: [ROWS, COLS] })
    expect(Array.from(lazy.matrix('half', [1, 2]))).toEqual(rowsOf(1, 2))
    expect(lazy.bytesRead).toBe(4 * COLS * 4 + COLS * 2)
    lazy.add({ name: 'cube', shape: [ROWS, COLS] })
    expect(Array.from(lazy.matrix('cube', [3, 5]))).toEqual(rowsOf(3, 5))
    // an eager store reads the whole tensor while building, and reports it, but counts nothing
    const eager = new HostStore('f32', index)
    expect(eager.add({ name: 'w', shape: [ROWS, COLS] })).toBe(ROWS * COLS * 4)
    expect(eager.bytesRead).toBe(0)
    expect(eager.matrix('w')).toBe(eager.matrix('w')) // the held array itself, not a copy
  })

  it('gathers rows in any order with repeats, each row read once; refuses ids outside the vocabulary', () => {
    const lazy = new HostStore('lazy', checkpoint())
    lazy.add({ name: 'w', shape: [ROWS, COLS] })
    const got = lazy.gather('w', Int32Array.from([4, 0, 4, 5]))
    expect(Array.from(got)).toEqual([...rowsOf(4, 5), ...rowsOf(0, 1), ...rowsOf(4, 5), ...rowsOf(5, 6)])
    expect(lazy.bytesRead).toBe(3 * COLS * 4)
    for (const bad of [-1, ROWS])
      expect(() => lazy.gather('w', Int32Array.from([0, bad]))).toThrow(`token id ${bad} is out of range for a vocabulary of ${ROWS}`)
  })

  it('names what is wrong: a tensor the checkpoint lacks, one it does not hold, a non-float dtype, NaN in the rows read', () => {
    const bad = W.slice()
    bad[3 * COLS + 2] = NaN
    const index = checkpoint({
      ids: { dtype: 'I32', shape: [ROWS, COLS], data: Int32Array.from(W) },
      nan: { dtype: 'F32', shape: [ROWS, COLS], data: bad },
    })
    const store = new HostStore('lazy', index)
    expect(() => store.add({ name: 'missing', shape: [1, 1] })).toThrow('the checkpoint has no tensor missing')
    expect(() => store.matrix('w')).toThrow('the host store holds no w')
    store.add({ name: 'ids', shape: [ROWS, COLS] })
    expect(() => store.matrix('ids')).toThrow(/tensor "ids" has dtype I32; weights must be F32, F16 or BF16/)
    store.add({ name: 'nan', shape: [ROWS, COLS] })
    expect(Array.from(store.matrix('nan', [0, 3]))).toEqual(rowsOf(0, 3)) // rows without the NaN read fine
    expect(() => store.matrix('nan', [2, 5])).toThrow(
      /tensor "nan" holds 1 NaN or infinite value\(s\) in rows 2\.\.4; the checkpoint is damaged/,
    )
    expect(() => new HostStore('f32', index).add({ name: 'nan', shape: [ROWS, COLS] })).toThrow(/rows 0\.\.5/)
  })

  it('8-bit: a zero row keeps scale 1 and zeros; each row scaled by its own largest magnitude', () => {
    const w = Float32Array.from([0, 0, 0, 1, -2, 0.5])
    const { q, scale } = quantizeInt8(w, 2, 3)
    expect(Array.from(scale)).toEqual([1, Math.fround(2 / 127)])
    expect(Array.from(q)).toEqual([0, 0, 0, 64, -127, 32])
    const back = dequantizeInt8({ q, scale }, 2, 3)
    expect(Array.from(back.subarray(0, 3))).toEqual([0, 0, 0])
    expect(back[4]).toBeCloseTo(-2, 6)
  })
})
