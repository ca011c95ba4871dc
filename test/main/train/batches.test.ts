/** Batching on its own: the shuffle, padding, packing, a resumable stream and evaluation batches. */
import { describe, expect, it } from 'vitest'
import { BatchStream, epochOrder, evalBatches, packRows, padBatch, type Example } from '../../../src/main/train/batches'

const ex = (ids: number[], labels = ids): Example => ({ input_ids: ids, labels })

describe('epochOrder', () => {
  it('a permutation fixed by seed and epoch, different across epochs and seeds', () => {
    const a = epochOrder(50, 7, 0)
    expect([...a].sort((x, y) => x - y)).toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(epochOrder(50, 7, 0)).toEqual(a)
    expect(epochOrder(50, 7, 1)).not.toEqual(a)
    expect(epochOrder(50, 8, 0)).not.toEqual(a)
    expect(a).not.toEqual(Array.from({ length: 50 }, (_, i) => i))
    expect(epochOrder(1, 7, 0)).toEqual([0])
    expect(epochOrder(0, 7, 0)).toEqual([])
  })

  it('every position is reachable: each example lands first in some epoch', () => {
    const firsts = new Set(Array.from({ length: 200 }, (_, e) => epochOrder(4, 3, e)[0]))
    expect([...firsts].sort()).toEqual([0, 1, 2, 3])
    const lasts = new Set(Array.from({ length: 200 }, (_, e) => epochOrder(4, 3, e)[3]))
    expect([...lasts].sort()).toEqual([0, 1, 2, 3])
  })
})

describe('padBatch', () => {
  it('pads on the right to the longest, labels -100 on padding, counts real tokens', () => {
    expect(padBatch([ex([1, 2, 3], [-100, 2, 3]), ex([4])], 0)).toEqual({
      inputIds: [
        [1, 2, 3],
        [4, 0, 0],
      ],
      labels: [
        [-100, 2, 3],
        [4, -100, -100],
      ],
      tokens: 4,
      lengths: [3, 1],
    })
  })
})

describe('packRows', () => {
  it('rows of exactly maxLength; an example continues into the next row; its first token is never a target', () => {
    const rows = packRows([ex([1, 2, 3]), ex([4, 5, 6, 7]), ex([8, 9])], 4, 0)
    expect(rows).toEqual([
      { input_ids: [1, 2, 3, 4], labels: [-100, 2, 3, -100] },
      { input_ids: [5, 6, 7, 8], labels: [5, 6, 7, -100] },
    ]) // the leftover [9] is one token: nothing to learn from
  })

  it('a last row of two or more tokens is kept (padded); a single leftover token is dropped', () => {
    expect(packRows([ex([1, 2, 3, 4, 5, 6])], 4, 9)).toEqual([
      { input_ids: [1, 2, 3, 4], labels: [-100, 2, 3, 4] },
      { input_ids: [5, 6, 9, 9], labels: [5, 6, -100, -100] },
    ])
    expect(packRows([ex([1, 2, 3, 4, 5])], 4, 9)).toHaveLength(1)
    expect(packRows([ex([1, 2, 3, 4])], 4, 9)).toHaveLength(1)
  })
})

describe('BatchStream', () => {
  const examples = Array.from({ length: 5 }, (_, i) => ex([10 + i]))
  const firstIds = (b: { inputIds: number[][] }) => b.inputIds.map((r) => r[0] - 10)

  it("each example once per epoch in that epoch's order, the last batch short, then the next epoch", () => {
    const s = new BatchStream(examples, 2, 1, 0)
    expect(s.batchesPerEpoch).toBe(3)
    const epoch0 = [firstIds(s.next()), firstIds(s.next()), firstIds(s.next())]
    expect(epoch0.map((b) => b.length)).toEqual([2, 2, 1])
    expect(epoch0.flat()).toEqual(epochOrder(5, 1, 0))
    expect(s.position).toEqual({ epoch: 0, index: 5 })
    const next = firstIds(s.next())
    expect(s.position).toEqual({ epoch: 1, index: 2 })
    expect(next).toEqual(epochOrder(5, 1, 1).slice(0, 2))
  })

  it('resumes from a saved position with the batches it would have given', () => {
    const a = new BatchStream(examples, 2, 4, 0)
    for (let i = 0; i < 4; i++) a.next()
    const saved = a.position
    const rest = [firstIds(a.next()), firstIds(a.next())]
    const b = new BatchStream(examples, 2, 4, 0, saved)
    expect([firstIds(b.next()), firstIds(b.next())]).toEqual(rest)
  })

  it('refuses an empty split, saying so', () => {
    expect(() => new BatchStream([], 2, 0, 0)).toThrow('the training split has no examples')
  })
})

describe('evalBatches', () => {
  it('data order, the last batch short, at most `limit` batches (0: all)', () => {
    const examples = Array.from({ length: 5 }, (_, i) => ex([i]))
    expect(evalBatches(examples, 2, 0).map((b) => b.inputIds.map((r) => r[0]))).toEqual([[0, 1], [2, 3], [4]])
    expect(evalBatches(examples, 2, 0, 2)).toHaveLength(2)
    expect(evalBatches(examples, 2, 0, 0)).toHaveLength(3)
  })
})
