/** Generation: sampling filters, seeds, stop rules, cancel and the routing trace. */
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { argmax, generate, sampleToken } from '../../../src/main/engine/generate'
import { Rng } from '../../../src/main/engine/ops'
import { tinyModel } from './helpers'

describe('sampling', () => {
  const logits = Float32Array.from([1, 3, 2, 0.5, 2.9])

  it('top-k 1, tiny top-p and greedy all pick the argmax', () => {
    const rng = new Rng(1)
    expect(argmax(logits)).toBe(1)
    for (let i = 0; i < 20; i++) {
      expect(sampleToken(logits, [], { topK: 1 }, rng)).toBe(1)
      expect(sampleToken(logits, [], { topP: 0.01 }, rng)).toBe(1)
      expect(sampleToken(logits, [], { greedy: true, temperature: 5 }, rng)).toBe(1)
    }
  })

  it('follows the softmax at temperature 1 and sharpens at low temperature', () => {
    const rng = new Rng(3)
    const counts = new Array(5).fill(0)
    const n = 20000
    for (let i = 0; i < n; i++) counts[sampleToken(logits, [], {}, rng)]++
    const z = Array.from(logits, Math.exp)
    const s = z.reduce((a, b) => a + b, 0)
    counts.forEach((c, i) => expect(Math.abs(c / n - z[i] / s)).toBeLessThan(0.015))
    const cold = new Array(5).fill(0)
    for (let i = 0; i < 2000; i++) cold[sampleToken(logits, [], { temperature: 0.05 }, rng)]++
    expect(cold[1] + cold[4]).toBe(2000)
  })

  it('top-k, top-p and min-p keep only the allowed tokens', () => {
    const rng = new Rng(5)
    const seen = (s: Parameters<typeof sampleToken>[2]): Set<number> => {
      const out = new Set<number>()
      for (let i = 0; i < 3000; i++) out.add(sampleToken(logits, [], s, rng))
      return out
    }
    expect(seen({ topK: 2 })).toEqual(new Set([1, 4]))
    // p ≈ [.06, .40, .15, .04, .36]: the top two hold .76
    expect(seen({ topP: 0.7 })).toEqual(new Set([1, 4]))
    // min-p 0.3 of .40 = .12 keeps 1, 4, 2
    expect(seen({ minP: 0.3 })).toEqual(new Set([1, 4, 2]))
    // HF order: top-p on what top-k kept, renormalised. Top-2 (.40, .36) renormalised is
    // (.53, .47): top-p 0.5 keeps token 1 alone (on the whole vocabulary .40 < .5 would keep both).
    expect(seen({ topK: 2, topP: 0.5 })).toEqual(new Set([1]))
    expect(seen({ topK: 2, topP: 0.6 })).toEqual(new Set([1, 4]))
  })

  it('repetition penalty discourages tokens already in the sequence', () => {
    expect(sampleToken(logits, [1], { greedy: true, repetitionPenalty: 1.5 }, new Rng(0))).toBe(4)
    expect(sampleToken(logits, [1], { greedy: true }, new Rng(0))).toBe(1)
  })

  it('rejects a non-positive temperature', () => {
    expect(() => sampleToken(logits, [], { temperature: 0 }, new Rng(0))).toThrow(/temperature must be > 0/)
  })

  it('stays finite for large logits (the softmax is shifted by its maximum)', () => {
    const big = Float32Array.from([1000, 999, 990])
    const rng = new Rng(2)
    const counts = [0, 0, 0]
    for (let i = 0; i < 4000; i++) counts[sampleToken(big, [], {}, rng)]++
    // softmax(1000, 999, 990) ≈ (.731, .269, .00003)
    expect(counts[0] / 4000).toBeGreaterThan(0.69)
    expect(counts[0] / 4000).toBeLessThan(0.77)
    expect(counts[0] + counts[1]).toBeGreaterThan(3990)
    const hot = [0, 0, 0]
    for (let i = 0; i < 4000; i++) hot[sampleToken(big, [], { temperature: 10 }, rng)]++
    // at temperature 10: softmax(100, 99.9, 99) ≈ (.42, .38, .17)
    expect(hot[2] / 4000).toBeGreaterThan(0.12)
  })

  it('repetition penalty divides positive logits and multiplies negative ones (HF); it must be positive', () => {
    const z = Float32Array.from([2, -1, 1.5, -3])
    // token 0 (2 → 1) falls below token 2 (1.5)
    expect(sampleToken(z, [0], { greedy: true, repetitionPenalty: 2 }, new Rng(0))).toBe(2)
    // a negative logit is pushed further down (-1 → -2, below -1.5), not halved towards 0
    const neg = Float32Array.from([-1, -1.5])
    expect(sampleToken(neg, [0], { greedy: true, repetitionPenalty: 2 }, new Rng(0))).toBe(1)
    // the same token twice in the history is penalised once
    expect(sampleToken(Float32Array.from([2, 1.1]), [0, 0], { greedy: true, repetitionPenalty: 1.5 }, new Rng(0))).toBe(0)
    expect(() => sampleToken(z, [0], { greedy: true, repetitionPenalty: 0 }, new Rng(0))).toThrow('repetition penalty must be > 0, got 0')
    expect(() => sampleToken(z, [0], { greedy: true, repetitionPenalty: -1 }, new Rng(0))).toThrow('repetition penalty must be > 0')
    // a penalty of 1, or nothing generated yet, changes nothing
    expect(sampleToken(z, [], { greedy: true, repetitionPenalty: 0 }, new Rng(0))).toBe(0)
  })

  it('min-p keeps tokens down to its share of the top probability; top-p keeps the fewest tokens reaching it', () => {
    const z = Float32Array.from([0.5, 0.3, 0.2].map(Math.log))
    const rng = new Rng(9)
    const seen = (s: Parameters<typeof sampleToken>[2], n = 1500): Set<number> => {
      const out = new Set<number>()
      for (let i = 0; i < n; i++) out.add(sampleToken(z, [], s, rng))
      return out
    }
    expect(seen({ minP: 0.39 })).toEqual(new Set([0, 1, 2])) // floor .195
    expect(seen({ minP: 0.41 })).toEqual(new Set([0, 1])) // floor .205
    expect(seen({ topP: 0.45 })).toEqual(new Set([0]))
    expect(seen({ topP: 0.75 })).toEqual(new Set([0, 1]))
    // topK 0, topP 1 and minP 0 filter nothing
    expect(seen({ topK: 0, topP: 1, minP: 0 })).toEqual(new Set([0, 1, 2]))
  })
})

describe('generate', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('is reproducible for a seed, and cached equals uncached', () => {
    const m = tinyModel({}, 4)
    try {
      const s = { temperature: 1.2, topK: 10, seed: 42 }
      const a = generate(m, [1, 2, 3], { maxNewTokens: 12, sampling: s, stopTokens: [] })
      const b = generate(m, [1, 2, 3], { maxNewTokens: 12, sampling: s, stopTokens: [], useCache: false })
      const c = generate(m, [1, 2, 3], { maxNewTokens: 12, sampling: { ...s, seed: 43 }, stopTokens: [] })
      expect(a.newTokens).toHaveLength(12)
      expect(b.newTokens).toEqual(a.newTokens)
      expect(c.newTokens).not.toEqual(a.newTokens)
    } finally {
      m.dispose()
    }
  })

  it('stops on stop tokens, stop sequences, callbacks and cancel', () => {
    const m = tinyModel({}, 4)
    try {
      const free = generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [] })
      const t = free.newTokens
      expect(generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [t[2]] })).toMatchObject({
        stoppedBy: 'stop_token',
        newTokens: t.slice(0, t.indexOf(t[2]) + 1),
      })
      expect(generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [], stopSequences: [[t[3], t[4]]] }).stoppedBy).toBe('stop_sequence')
      expect(generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [], onToken: (_, i) => i < 1 }).newTokens).toHaveLength(2)
      const ac = new AbortController()
      const r = generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [], signal: ac.signal, onToken: (_, i) => void (i === 2 && ac.abort()) })
      expect(r).toMatchObject({ stoppedBy: 'cancelled' })
      expect(r.newTokens).toHaveLength(3)
    } finally {
      m.dispose()
    }
  })

  it('refuses an empty prompt, a bad length and ids outside the vocabulary, naming them', () => {
    const m = tinyModel({}, 4)
    try {
      expect(() => generate(m, [], { maxNewTokens: 2 })).toThrow('prompt_ids: the prompt must hold at least one token')
      for (const n of [-1, 1.5, Number.NaN])
        expect(() => generate(m, [1], { maxNewTokens: n })).toThrow(`max_new_tokens must be a non-negative integer, got ${n}`)
      for (const bad of [32, -1, 2.5])
        expect(() => generate(m, [1, bad], { maxNewTokens: 2 })).toThrow(
          `prompt_ids: ${bad} is not a token id of this model (vocabulary 32)`,
        )
      // 0 new tokens: nothing generated, and the last id of the vocabulary is a token
      expect(generate(m, [31], { maxNewTokens: 0 })).toMatchObject({ newTokens: [], outputIds: [31], stoppedBy: 'max_new_tokens' })
    } finally {
      m.dispose()
    }
  })

  it("greedy by default; the config's EOS stops it unless stopTokens say otherwise; step logits and timings on request", async () => {
    const m = tinyModel({}, 4)
    try {
      const free = generate(m, [1, 2], { maxNewTokens: 6, stopTokens: [], keepStepLogits: true })
      expect(free.stepLogits).toHaveLength(6)
      free.stepLogits!.forEach((l, i) => expect(argmax(l)).toBe(free.newTokens[i]))
      expect(free.prefillMs).toBeGreaterThan(0)
      expect(free.decodeMs).toBeGreaterThan(0)
      expect(free.prefillMs + free.decodeMs).toBeLessThan(60_000) // milliseconds
      expect(generate(m, [1, 2], { maxNewTokens: 6, stopTokens: [] }).stepLogits).toBeUndefined()
      // the model's eos_token_id is the default stop token
      const k = Math.max(
        0,
        free.newTokens.findIndex((t, i) => i > 0 && !free.newTokens.slice(0, i).includes(t)),
      )
      const eosModel = tinyModel({ eosTokenId: free.newTokens[k] }, 4)
      try {
        expect(generate(eosModel, [1, 2], { maxNewTokens: 6 })).toMatchObject({
          stoppedBy: 'stop_token',
          newTokens: free.newTokens.slice(0, k + 1),
        })
        expect(generate(eosModel, [1, 2], { maxNewTokens: 6, stopTokens: [] }).newTokens).toEqual(free.newTokens)
      } finally {
        eosModel.dispose()
      }
      // generateAsync gives the same tokens
      const { generateAsync } = await import('../../../src/main/engine/generate')
      expect((await generateAsync(m, [1, 2], { maxNewTokens: 6, stopTokens: [] })).newTokens).toEqual(free.newTokens)
    } finally {
      m.dispose()
    }
  })

  it('a stop sequence matches only at the end of what was generated, whole', () => {
    const m = tinyModel({}, 4)
    try {
      const t = generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [] }).newTokens
      // a sequence longer than what was generated so far, an empty one, and a partial match do not stop it
      const r = generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [], stopSequences: [[], [t[0], 99], t.concat([0])] })
      expect(r).toMatchObject({ stoppedBy: 'max_new_tokens', newTokens: t })
      // the first two tokens, as a sequence, stop it after the second
      expect(generate(m, [1, 2], { maxNewTokens: 8, stopTokens: [], stopSequences: [[t[0], t[1]]] })).toMatchObject({
        stoppedBy: 'stop_sequence',
        newTokens: t.slice(0, 2),
      })
    } finally {
      m.dispose()
    }
  })

  it('routeLastToken reports the routing of the last new token too', () => {
    const m = tinyModel({}, 4)
    try {
      for (const useCache of [true, false]) {
        const positions: number[] = []
        const r = generate(m, [5, 6, 7], {
          maxNewTokens: 3,
          stopTokens: [],
          useCache,
          routeLastToken: true,
          onRouting: (p) => positions.push(...p.map((x) => x.position)),
        })
        expect(positions).toEqual([0, 1, 2, 3, 4, 5])
        expect(r.newTokens).toHaveLength(3)
      }
    } finally {
      m.dispose()
    }
  })

  it('reports the routing of every prompt and generated position', () => {
    const m = tinyModel({}, 4)
    try {
      for (const useCache of [true, false]) {
        const trace: { position: number; token: number; layers: { layer: number; experts: number[]; weights: number[] }[] }[] = []
        const r = generate(m, [5, 6, 7], { maxNewTokens: 4, stopTokens: [], useCache, onRouting: (p) => trace.push(...p) })
        // every position that went through the model: the prompt and all but the last new token
        expect(trace.map((p) => p.position)).toEqual([0, 1, 2, 3, 4, 5])
        expect(trace.map((p) => p.token)).toEqual(r.outputIds.slice(0, 6))
        for (const p of trace) {
          expect(p.layers.map((l) => l.layer)).toEqual([0, 1])
          for (const l of p.layers) {
            expect(l.experts).toHaveLength(2)
            expect(l.weights[0] + l.weights[1]).toBeCloseTo(1, 5)
          }
        }
      }
    } finally {
      m.dispose()
    }
  })
})

describe('a long prompt in chunks', () => {
  it('prefills through the KV cache chunk by chunk: the same logits, tokens and prompt routing as one pass', async () => {
    const { initBackend } = await import('../../../src/main/engine/backend')
    const { PREFILL_CHUNK } = await import('../../../src/main/engine/generate')
    const { tinyModel } = await import('./helpers')
    await initBackend('cpu')
    const m = tinyModel({ maxPositionEmbeddings: 2 * PREFILL_CHUNK + 64, vocabSize: 50 })
    const prompt = Array.from({ length: 2 * PREFILL_CHUNK + 17 }, (_, i) => (i * 13 + 7) % 50)
    const routed: number[][] = []
    const chunked = generate(m, prompt, {
      maxNewTokens: 4,
      stopTokens: [],
      keepStepLogits: true,
      onRouting: (p) => routed.push(p.map((x) => x.position)),
    })
    const whole = generate(m, prompt, { maxNewTokens: 4, stopTokens: [], keepStepLogits: true, useCache: false })
    expect(chunked.newTokens).toEqual(whole.newTokens)
    for (let s = 0; s < 4; s++) {
      let d = 0
      chunked.stepLogits![s].forEach((v, i) => (d = Math.max(d, Math.abs(v - whole.stepLogits![s][i]))))
      expect(d).toBeLessThan(1e-4)
    }
    // The prompt's routing arrives once, every position in order.
    expect(routed[0]).toEqual(prompt.map((_, i) => i))
    m.dispose()
  })
})
