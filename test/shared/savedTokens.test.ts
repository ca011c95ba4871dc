import { describe, expect, it } from 'vitest'
import type { ConversationMessage, TokenRouting } from '../../src/shared/chat'
import { keepNewestRouting, packTokens, promptPieces, unpackPrompt, unpackTokens, type RoutedPiece } from '../../src/shared/savedTokens'

const routing = (position: number, experts: number[][], weights: number[][], layers = [1, 3]): TokenRouting => ({
  position,
  token: 100 + position,
  layers: layers.map((layer, i) => ({ layer, experts: experts[i], weights: weights[i] })),
})

const reply: RoutedPiece[] = [
  {
    text: 'Par',
    routing: routing(
      9,
      [
        [4, 1],
        [0, 7],
      ],
      [
        [0.612345678, 0.387654322],
        [0.5, 0.5],
      ],
    ),
  },
  {
    text: 'is',
    routing: routing(
      10,
      [
        [2, 3],
        [6, 5],
      ],
      [
        [0.9, 0.1],
        [0.75, 0.25],
      ],
    ),
  },
  { text: '.', routing: null },
]

describe('packTokens / unpackTokens', () => {
  it('keeps each token with its experts, the layers once and the weights to 4 decimals', () => {
    const saved = packTokens(reply)!
    expect(saved).toEqual({
      layers: [1, 3],
      pieces: [
        {
          text: 'Par',
          position: 9,
          token: 109,
          experts: [
            [4, 1],
            [0, 7],
          ],
          weights: [
            [0.6123, 0.3877],
            [0.5, 0.5],
          ],
        },
        {
          text: 'is',
          position: 10,
          token: 110,
          experts: [
            [2, 3],
            [6, 5],
          ],
          weights: [
            [0.9, 0.1],
            [0.75, 0.25],
          ],
        },
        { text: '.' },
      ],
    })
    const back = unpackTokens(JSON.parse(JSON.stringify(saved)), 'Paris.')!
    expect(back[0].routing).toEqual(
      routing(
        9,
        [
          [4, 1],
          [0, 7],
        ],
        [
          [0.6123, 0.3877],
          [0.5, 0.5],
        ],
      ),
    )
    expect(back.slice(1)).toEqual(reply.slice(1))
  })

  it('saves nothing for a reply without tokens, and text only for a token routed through other layers', () => {
    expect(packTokens([])).toBeUndefined()
    // Fewer layers, or as many but others: text only.
    const odd = [
      ...reply.slice(0, 2),
      { text: '!', routing: routing(11, [[1, 2]], [[0.5, 0.5]], [1]) },
      {
        text: '?',
        routing: routing(
          12,
          [
            [1, 2],
            [3, 4],
          ],
          [
            [0.5, 0.5],
            [0.5, 0.5],
          ],
          [1, 4],
        ),
      },
    ]
    const saved = packTokens(odd)!
    expect(saved.pieces.slice(2)).toEqual([{ text: '!' }, { text: '?' }])
    expect(unpackTokens(saved, 'Paris!?')!.map((p) => p.routing?.position ?? null)).toEqual([9, 10, null, null])
    // Routing of no token at all: the layers are empty and each token keeps its text.
    expect(packTokens([{ text: 'a', routing: null }])).toEqual({ layers: [], pieces: [{ text: 'a' }] })
  })

  it('reopens as text (null) what does not spell the reply or is malformed', () => {
    const saved = packTokens(reply)!
    expect(unpackTokens(saved, 'Paris!')).toBeNull()
    const broken = (f: (s: ReturnType<typeof structuredClone<typeof saved>>) => void): unknown => {
      const s = structuredClone(saved)
      f(s)
      return s
    }
    for (const bad of [
      null,
      'tokens',
      { layers: [1, 3] },
      { pieces: saved.pieces },
      broken((s) => (s.layers = [1, -3])),
      broken((s) => (s.pieces[0].text = 5 as never)),
      broken((s) => (s.pieces[1] = null as never)),
      broken((s) => delete s.pieces[0].token),
      // A piece with only one of its routing fields is malformed, not a token without routing.
      ...(['position', 'token', 'experts', 'weights'] as const).map((keep) =>
        broken((s) => (s.pieces[0] = { text: s.pieces[0].text, [keep]: s.pieces[0][keep] })),
      ),
      broken((s) => (s.pieces[0].text = ['Par'] as never)), // would join as the same text
      broken((s) => (s.pieces[0].position = 1.5)),
      broken((s) => (s.pieces[0].experts = [[4, 1]])), // one layer of two
      broken((s) => (s.pieces[0].experts![1] = [0, 'x' as never])),
      broken((s) => (s.pieces[0].weights![0] = [0.6])), // one weight for two experts
      broken((s) => (s.pieces[0].weights![1] = [Number.NaN, 0.5])),
    ])
      expect(unpackTokens(bad, 'Paris.'), JSON.stringify(bad)).toBeNull()
    expect(unpackTokens(saved, 'Paris.')).not.toBeNull()
  })
})

describe('keepNewestRouting', () => {
  const message = (content: string, bytes?: number): ConversationMessage => ({
    role: 'assistant',
    content,
    ...(bytes !== undefined && { tokens: { layers: [], pieces: [{ text: 'x'.repeat(bytes - 36) }] } }),
  })

  it('drops the routing of the earliest replies of either side, never a text', () => {
    const left = [message('a', 100), message('b', 100), message('c', 100)]
    const right = [message('A', 100), message('B'), message('C', 100)]
    expect(JSON.stringify(left[0].tokens).length).toBe(100)
    keepNewestRouting([left, right], 350)
    // Newest first: c and C (200), then b (300); a and A would pass 350.
    expect(left.map((m) => m.tokens !== undefined)).toEqual([false, true, true])
    expect(right.map((m) => m.tokens !== undefined)).toEqual([false, false, true])
    expect([...left, ...right].map((m) => m.content)).toEqual(['a', 'b', 'c', 'A', 'B', 'C'])
    const all = [message('a', 100), message('b', 100)]
    keepNewestRouting([all], 200)
    expect(all.every((m) => m.tokens)).toBe(true)
  })

  it("drops a reply's prompt after its own routing and before the older replies'", () => {
    const prompt = { layers: [], pieces: [{ text: 'x'.repeat(64) }] } // 100 bytes of JSON
    const side = [message('a', 100), message('b', 100), { ...message('c', 100), prompt }]
    keepNewestRouting([side], 250)
    expect(side.map((m) => [m.tokens !== undefined, m.prompt !== undefined])).toEqual([
      [false, false],
      [false, false],
      [true, true],
    ])
    const tight = [message('a', 100), { ...message('b', 100), prompt }]
    keepNewestRouting([tight], 150)
    expect(tight.map((m) => [m.tokens !== undefined, m.prompt !== undefined])).toEqual([
      [false, false],
      [true, false],
    ])
  })
})

describe('a saved prompt', () => {
  it('reopens as the chat shows it: its tokens, and the routing of those that had one; malformed, not at all', () => {
    const prompt = { tokens: ['Par', 'is', '?'], routing: [reply[0].routing!, { ...reply[1].routing!, position: 2 }] }
    // promptPieces: a routing by its position, the token's index in the prompt.
    expect(promptPieces(prompt).map((p) => p.routing?.position ?? null)).toEqual([null, null, 2])
    const withFirst = { ...prompt, routing: [{ ...reply[0].routing!, position: 0 }, prompt.routing[1]] }
    const saved = packTokens(promptPieces(withFirst))!
    expect(unpackPrompt(JSON.parse(JSON.stringify(saved)))).toEqual({
      tokens: ['Par', 'is', '?'],
      routing: [
        {
          ...withFirst.routing[0],
          layers: withFirst.routing[0].layers.map((l) => ({ ...l, weights: l.weights.map((w) => Math.round(w * 1e4) / 1e4) })),
        },
        withFirst.routing[1],
      ],
    })
    for (const bad of [
      null,
      'x',
      { layers: [1, 3] },
      { layers: [1, 3], pieces: [{ text: 1 }] },
      { layers: [1, 3], pieces: [{ text: 'a', position: -1 }] },
    ])
      expect(unpackPrompt(bad)).toBeNull()
  })
})
