/**
 * Routing decisions on their own (pure JavaScript, no backend): top-k order, capacity filled
 * slot-major, the dispatch plan's indices, padding, and hash routing pinned to its published hash.
 */
import { describe, expect, it } from 'vitest'
import { decideRouting, expertCapacity, hash32, hashExperts, selectionMask, topkRows } from '../../../src/main/engine/router'

const arr = (a: ArrayLike<number>): number[] => Array.from(a)

describe('topkRows', () => {
  it('descending, lowest index first on ties, NaN last, -Infinity still chosen when needed', () => {
    expect(arr(topkRows([0.2, 0.5, 0.5, 0.1], 1, 4, 4))).toEqual([1, 2, 0, 3])
    expect(arr(topkRows([Number.NaN, 0.5, Number.NaN], 1, 3, 3))).toEqual([1, 0, 2])
    expect(arr(topkRows([-Infinity, -Infinity], 1, 2, 2))).toEqual([0, 1])
    expect(arr(topkRows([1, 2, 3, 6, 5, 4], 2, 3, 2))).toEqual([2, 1, 0, 1])
  })

  it('refuses k outside [1, E]', () => {
    expect(() => topkRows([1, 2], 1, 2, 0)).toThrow('top-k: k must be in [1, 2], got 0')
    expect(() => topkRows([1, 2], 1, 2, 3)).toThrow('top-k: k must be in [1, 2], got 3')
  })
})

describe('expertCapacity', () => {
  it('ceil(factor · tokens · k / experts), at least 1', () => {
    expect(expertCapacity(0.5, 3, 2, 2)).toBe(2)
    expect(expertCapacity(1, 4, 1, 2)).toBe(2)
    expect(expertCapacity(0.001, 4, 1, 2)).toBe(1)
  })
})

describe('decideRouting', () => {
  // t0 prefers e0, t1 e1, t2 e0
  const scores = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4]

  it('fills capacity slot-major: every first choice before any second choice', () => {
    const d = decideRouting(scores, 3, 2, { type: 'softmax_topk', k: 2, capacityFactor: 0.5 })
    expect(d.capacity).toBe(2)
    expect(arr(d.topk)).toEqual([0, 1, 1, 0, 0, 1])
    // t1's and t2's second choices find their experts full
    expect(arr(d.kept)).toEqual([1, 1, 1, 0, 1, 0])
    expect(d.dropped).toBe(2)
    expect(d.droppedTokens).toBe(0)
    expect(arr(d.counts)).toEqual([2, 2])
    expect(arr(d.offsets)).toEqual([0, 2, 4])
    // within an expert, token order
    expect(arr(d.index)).toEqual([0, 2, 0, 1])
    expect(arr(d.flatIndex)).toEqual([0, 4, 1, 3])
    expect(arr(d.flatInverse)).toEqual([0, 2, 4, 3, 1, 4])
    expect(d.inverses.map(arr)).toEqual([
      [0, 3, 1],
      [2, 4, 4],
    ])
    expect({ N: d.N, E: d.E, k: d.k }).toEqual({ N: 3, E: 2, k: 2 })
  })

  it('counts tokens that lost every assignment', () => {
    const d = decideRouting(scores, 3, 2, { type: 'softmax_topk', k: 2, capacityFactor: 0.01 })
    expect(d.capacity).toBe(1)
    expect(arr(d.kept)).toEqual([1, 0, 1, 0, 0, 0])
    expect(d.dropped).toBe(4)
    expect(d.droppedTokens).toBe(1)
  })

  it('dropless keeps everything', () => {
    const d = decideRouting(scores, 3, 2, { type: 'softmax_topk', k: 2, capacityFactor: null })
    expect(d.capacity).toBeNull()
    expect(arr(d.kept)).toEqual([1, 1, 1, 1, 1, 1])
    expect(d.dropped).toBe(0)
    expect(arr(d.counts)).toEqual([3, 3])
  })

  it('padding is not routed, takes no capacity and does not size it', () => {
    const d = decideRouting(scores, 3, 2, { type: 'softmax_topk', k: 2, capacityFactor: 0.5, valid: new Uint8Array([1, 0, 1]) })
    expect(d.capacity).toBe(1) // 2 real tokens
    expect(arr(d.kept)).toEqual([1, 1, 0, 0, 0, 0])
    expect(d.dropped).toBe(2)
    expect(d.droppedTokens).toBe(1)
    expect(arr(d.counts)).toEqual([1, 1])
    expect(d.inverses.map(arr)).toEqual([
      [0, 2, 2],
      [1, 2, 2],
    ])
  })

  it('says what is missing', () => {
    expect(() => decideRouting(null, 2, 2, { type: 'softmax_topk', k: 1, capacityFactor: null })).toThrow(
      'softmax_topk routing needs router scores',
    )
    expect(() => decideRouting(null, 2, 2, { type: 'hash', k: 1, capacityFactor: null })).toThrow(
      'hash routing needs the token id of each of the 2 rows',
    )
    expect(() => decideRouting(null, 2, 2, { type: 'hash', k: 1, capacityFactor: null, tokenIds: new Int32Array(3) })).toThrow(
      'hash routing needs the token id of each of the 2 rows',
    )
    expect(() => decideRouting([1, 0, 0, 1], 2, 2, { type: 'softmax_topk', k: 1, capacityFactor: null, valid: new Uint8Array(1) })).toThrow(
      'routing: a validity mask of 1 rows for 2 tokens',
    )
  })

  it('hash routing ignores scores and sends each token id to its hashed experts', () => {
    const tokenIds = new Int32Array([0, 1, 2, 3])
    const d = decideRouting(null, 4, 8, { type: 'hash', k: 2, capacityFactor: null, tokenIds, hashSeed: 0 })
    expect(arr(d.topk)).toEqual([3, 5, 6, 7, 7, 0, 1, 4])
  })

  it('the selection mask marks chosen experts before capacity', () => {
    const d = decideRouting(scores, 3, 2, { type: 'softmax_topk', k: 1, capacityFactor: 0.01 })
    expect(arr(d.kept)).toEqual([1, 1, 0])
    expect(arr(selectionMask(d))).toEqual([1, 0, 0, 1, 1, 0])
  })
})

describe('hash routing is stable across versions (saved hash-routed models route the same)', () => {
  it('hash32 is lowbias32 (values from an independent implementation)', () => {
    expect([0, 1, 2, 12345, 0xffffffff].map(hash32)).toEqual([0, 1753845952, 3507691905, 2435775735, 1734902346])
  })

  it('hashExperts: k distinct experts, pinned for known ids and seeds', () => {
    expect([0, 1, 2, 3, 100].map((t) => hashExperts(t, 8, 2, 0))).toEqual([
      [3, 5],
      [6, 7],
      [7, 0],
      [1, 4],
      [4, 2],
    ])
    expect(hashExperts(7, 64, 6, 3)).toEqual([0, 7, 2, 11, 23, 52])
    expect([...hashExperts(9, 5, 5, 1)].sort()).toEqual([0, 1, 2, 3, 4])
  })
})
