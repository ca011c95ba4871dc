/**
 * Expert analysis on a hand-made routing table: the share of choices per expert, co-activation
 * counts, the router entropy averaged over tokens (a text weighs its length) and each expert's
 * most frequent tokens.
 */
import { describe, expect, it } from 'vitest'
import { RoutingTally } from '../../../src/main/engineProcess/experts'

describe('expert analysis (hand-computed)', () => {
  it('load, co-activation, entropy and top tokens of two texts over two layers', () => {
    const tally = new RoutingTally(4, 2)
    // Text 1: tokens 7, 8, 7 (3 tokens), entropy 0.5 in layer 0 and 1.0 in layer 1.
    tally.add(
      [
        { layer: 0, decision: { topk: Int32Array.from([0, 1, 0, 2, 1, 0]) }, entropy: 0.5 },
        { layer: 1, decision: { topk: Int32Array.from([3, 2, 3, 2, 3, 2]) }, entropy: 1.0 },
      ],
      [7, 8, 7],
    )
    // Text 2: token 9 (1 token), entropy 1.3 in layer 0 and 0.2 in layer 1.
    tally.add(
      [
        { layer: 1, decision: { topk: Int32Array.from([0, 1]) }, entropy: 0.2 },
        { layer: 0, decision: { topk: Int32Array.from([2, 3]) }, entropy: 1.3 },
      ],
      [9],
    )
    const r = tally.result((id) => `t${id}`)
    expect(r.tokens).toBe(4)
    expect(r.layers.map((l) => l.layer)).toEqual([0, 1])
    const [l0, l1] = r.layers
    // layer 0 choices: (0,1) (0,2) (1,0) (2,3): expert 0 ×3, 1 ×2, 2 ×2, 3 ×1 of 8
    expect(l0.load).toEqual([3 / 8, 2 / 8, 2 / 8, 1 / 8])
    expect(l0.coactivation).toEqual([
      [3, 2, 1, 0],
      [2, 2, 0, 0],
      [1, 0, 2, 1],
      [0, 0, 1, 1],
    ])
    // entropy: (0.5 · 3 + 1.3 · 1) / 4 tokens
    expect(l0.entropy).toBeCloseTo((0.5 * 3 + 1.3) / 4, 12)
    expect(l1.entropy).toBeCloseTo((1.0 * 3 + 0.2) / 4, 12)
    expect(l1.load).toEqual([1 / 8, 1 / 8, 3 / 8, 3 / 8])
    expect(l1.coactivation[2][3]).toBe(3)
    expect(l1.coactivation[3][2]).toBe(3)
    expect(l1.coactivation[0][1]).toBe(1)
    // expert 0 of layer 0 saw token 7 twice and token 8 once, most frequent first
    expect(l0.topTokens[0]).toEqual([
      { text: 't7', count: 2 },
      { text: 't8', count: 1 },
    ])
    expect(l0.topTokens[3]).toEqual([{ text: 't9', count: 1 }])
    expect(l1.topTokens[1]).toEqual([{ text: 't9', count: 1 }])
  })

  it('no text: no layers; a layer with no choices has zero load, not NaN', () => {
    expect(new RoutingTally(2, 1).result(String)).toEqual({ tokens: 0, layers: [] })
    const t = new RoutingTally(2, 1)
    t.add([{ layer: 0, decision: { topk: new Int32Array(0) }, entropy: 0 }], [])
    expect(t.result(String).layers[0]).toMatchObject({ load: [0, 0], entropy: 0 })
  })
})
