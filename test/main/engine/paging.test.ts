/**
 * Whole-model paging within a device budget: at every placement the planner makes (experts paged;
 * attention of some or all layers paged; lm_head in vocabulary chunks; the embedding gathered from
 * the host), a paged model gives exactly the resident model's logits, tokens and LoRA gradients
 * (bit-identical on cpu and wasm), for every host storage; compressed storage stays within stated
 * error; the cache never exceeds its budget and counts experts, not matrices; the planner refuses
 * with numbers before anything is allocated; cache policies and prefetch each have a test.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import type { MoeConfigInput } from '../../../src/shared/modelConfig'
import type { ExpertStorage } from '../../../src/shared/chat'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { initBackend, type BackendName } from '../../../src/main/engine/backend'
import { loadModel, PlanError, saveModel } from '../../../src/main/engine/checkpoint'
import { generate } from '../../../src/main/engine/generate'
import { dequantizeInt8, HostStore, quantizeInt8 } from '../../../src/main/engine/hostStore'
import { MoeModel } from '../../../src/main/engine/model'
import { disposeGrads, lossAndGrads } from '../../../src/main/engine/objective'
import { UnitCache } from '../../../src/main/engine/paging'
import { defaultBudget, deviceLimit, hostStorageOf, planPlacement, type Placement } from '../../../src/main/engine/plan'
import { openCheckpointTensors } from '../../../src/main/engine/safetensors'
import { Rng } from '../../../src/main/engine/ops'
import { headChunkRows, headTensor, modelUnits, setHeadChunkBytes, smallSpecs, unitIndex } from '../../../src/main/engine/units'
import { paramSpecs } from '../../../src/shared/modelConfig'
import { LoraAdapters } from '../../../src/main/train/lora'
import { randomIds, randomWeights, tinyConfig } from './helpers'

const FIX = join(__dirname, '../../fixtures/moe-reference')

function folder(over: Partial<MoeConfigInput> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'moe-page-'))
  // Weights large against a short context's activations, so every kind of placement happens.
  const c = tinyConfig({ numLayers: 3, numExperts: 8, vocabSize: 256, hiddenSize: 32, headDim: 8, expertIntermediateSize: 48, ...over })
  const m = new MoeModel(c, randomWeights(c, 9, 0.3))
  saveModel(m, dir)
  m.dispose()
  return dir
}

/** Budgets that give distinct placements, from the smallest that fits to all resident. */
function placements(dir: string, storage: ExpertStorage = 'f32'): { budget: number; placement: Placement }[] {
  const c = loadModel(dir).config
  const out: { budget: number; placement: Placement }[] = []
  const seen = new Set<string>()
  for (let budget = 16_000; budget < 40e6; budget = Math.ceil(budget * 1.04)) {
    const p = planPlacement(c, { budgetBytes: budget, storage, contextTokens: 8, backend: 'cpu', hostLimitBytes: 1e9 })
    if (!p.fit.fits) continue
    const key = `${p.fit.fitsResident}|${p.fit.pagedLayers.join(',')}|${p.fit.headChunks}|${p.fit.embedding}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ budget, placement: p })
  }
  return out
}

// lm_head in chunks of 16 rows (the default is 64 MiB): chunked resident and paged alike.
setHeadChunkBytes(16 * 32 * 4)

const logitsOf = (m: MoeModel, ids: number[][]): Float32Array => tf.tidy(() => m.forward(ids).logits.dataSync() as Float32Array)

for (const backend of ['cpu', 'wasm'] as BackendName[])
  describe(`whole-model paging on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend)
    })

    it('every placement, every exact storage: the resident logits, tokens and LoRA gradients, bit for bit', () => {
      for (const tied of [false, true]) {
        const dir = folder({ tieWordEmbeddings: tied })
        const ids = randomIds(2, 6, 256, 3)
        const resident = loadModel(dir)
        const want = logitsOf(resident, ids)
        const wantTokens = generate(resident, [1, 2, 3], { maxNewTokens: 4, stopTokens: [] }).newTokens
        const loraCfg = validateRunConfig({ method: 'lora', lora: { rank: 2, targets: ['attention', 'experts', 'lm_head'] } }).lora
        const gradsOf = (m: MoeModel): Map<string, Float32Array> => {
          const lora = new LoraAdapters(m, loraCfg, 5)
          for (const v of lora.B.values()) v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', 3))
          const batch = { inputIds: ids, labels: randomIds(2, 6, 256, 4) }
          const r = lossAndGrads(m, batch, { weights: lora.wrap(m.weightSource, { training: false }) }, lora.variables())
          const out = new Map([...r.grads].map(([n, g]) => [n, g.dataSync() as Float32Array]))
          disposeGrads(r.grads)
          lora.dispose()
          return out
        }
        const wantGrads = gradsOf(resident)
        resident.dispose()
        const seen = placements(dir)
        // The sweep reaches every kind of placement.
        expect(seen.some((p) => p.placement.fit.fitsResident)).toBe(true)
        expect(seen.some((p) => p.placement.fit.headChunks > 1)).toBe(true)
        expect(seen.some((p) => p.placement.fit.pagedLayers.length === 3)).toBe(true)
        expect(seen.some((p) => p.placement.fit.pagedLayers.length > 0 && p.placement.fit.pagedLayers.length < 3)).toBe(true)
        for (const { budget, placement } of seen)
          for (const storage of ['f32', 'lazy'] as ExpertStorage[]) {
            const what = `${tied ? 'tied, ' : ''}${storage}, ${placement.fit.message}`
            const m = loadModel(dir, { offload: { budgetBytes: budget, storage, prefetch: true }, contextTokens: 8 })
            try {
              expect(Boolean(m.paging), what).toBe(!placement.fit.fitsResident)
              expect(Array.from(logitsOf(m, ids)), what).toEqual(Array.from(want))
              expect(generate(m, [1, 2, 3], { maxNewTokens: 4, stopTokens: [] }).newTokens, what).toEqual(wantTokens)
              const got = gradsOf(m)
              for (const [n, g] of wantGrads) expect(Array.from(got.get(n)!), `${what}: ${n}`).toEqual(Array.from(g))
              const s = m.pagingStats()
              if (s) {
                expect(s.peakBytes, what).toBeLessThanOrEqual(placement.cacheBytes)
                expect(s.misses, what).toBeGreaterThan(0)
                if (storage === 'lazy') expect(s.bytesRead, what).toBeGreaterThan(0)
                else expect(s.bytesRead, what).toBe(0)
              }
            } finally {
              m.dispose()
            }
          }
      }
    }, 240_000)

    it('the fixture checkpoints of every family run fully paged with the reference tokens', () => {
      for (const family of ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe']) {
        const ref = loadModel(join(FIX, family))
        const want = generate(ref, [5, 9, 11], { maxNewTokens: 6, stopTokens: [] }).newTokens
        const c = ref.config
        ref.dispose()
        // The smallest budget that fits: everything pages.
        let budget = 8_000
        while (!planPlacement(c, { budgetBytes: budget, contextTokens: 16, backend }).fit.fits) budget = Math.ceil(budget * 1.1)
        const m = loadModel(join(FIX, family), { offload: { budgetBytes: budget, storage: 'lazy' }, contextTokens: 16 })
        expect(m.paging!.placement.fit.embedding).toBe('host')
        expect(generate(m, [5, 9, 11], { maxNewTokens: 6, stopTokens: [] }).newTokens, family).toEqual(want)
        m.dispose()
      }
    })
  })

describe('paging, on wasm', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('compressed storage: 8-bit within 2% of the logit range, f16 and bf16 closer, host bytes smaller', () => {
    const dir = folder()
    const ids = randomIds(2, 6, 256, 4)
    const resident = loadModel(dir)
    const want = logitsOf(resident, ids)
    const c = resident.config
    resident.dispose()
    let range = 0
    for (const v of want) range = Math.max(range, Math.abs(v))
    // The largest paged placement: experts paged (and the embedding gathered), the rest resident.
    // (Where attention is compressed too, a near-tie in a random tiny model's routing can flip.)
    const all = placements(dir).filter((p) => !p.placement.fit.fitsResident)
    const smallest = all[all.length - 1].budget
    const errors: Record<string, number> = {}
    const f32Bytes = planPlacement(c, { budgetBytes: smallest, storage: 'f32', contextTokens: 8, backend: 'wasm', hostLimitBytes: 1e9 }).fit
      .hostBytes
    for (const storage of ['f16', 'bf16', 'int8'] as ExpertStorage[]) {
      const m = loadModel(dir, { offload: { budgetBytes: smallest, storage }, contextTokens: 8 })
      const got = logitsOf(m, ids)
      let err = 0
      for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]))
      errors[storage] = err / range
      // int8: a quarter of the bytes plus a float32 scale per row
      expect(m.paging!.store.hostBytes).toBeLessThan(storage === 'int8' ? 0.35 * f32Bytes : 0.55 * f32Bytes)
      expect(m.paging!.store.hostBytes).toBe(m.paging!.placement.fit.hostBytes)
      m.dispose()
    }
    expect(errors.int8).toBeLessThan(0.03)
    expect(errors.f16).toBeLessThan(0.003)
    expect(errors.bf16).toBeLessThan(0.02)
    expect(errors.f16).toBeGreaterThan(0)
  })

  it('8-bit quantisation round-trips within half a step per channel', () => {
    const w = Float32Array.from([0.5, -1, 0.25, 0, 2, -2, 1, 0.001])
    const q = quantizeInt8(w, 2, 4)
    const back = dequantizeInt8(q, 2, 4)
    for (let i = 0; i < 8; i++) expect(Math.abs(back[i] - w[i])).toBeLessThanOrEqual(q.scale[Math.floor(i / 4)] / 2 + 1e-7)
  })

  it('keeps device memory within the budget, as the planner predicted it', () => {
    const dir = folder()
    for (const { budget, placement } of placements(dir)) {
      const before = tf.memory().numBytes
      const m = loadModel(dir, { offload: { budgetBytes: budget, storage: 'f32', prefetch: true }, contextTokens: 8 })
      let peak = 0
      generate(m, randomIds(1, 4, 256, 5)[0], {
        maxNewTokens: 4,
        stopTokens: [],
        onToken: () => void (peak = Math.max(peak, tf.memory().numBytes - before)),
      })
      const resident = [...m.params.values()].reduce((a, v) => a + v.size * 4, 0)
      expect(resident, placement.fit.message).toBe(placement.fit.fitsResident ? placement.fit.modelBytes : placement.fit.residentBytes)
      // What stays on the device between tokens: resident weights, the cache, the KV cache.
      expect(peak, placement.fit.message).toBeLessThanOrEqual(budget)
      m.dispose()
    }
  })

  it('the planner refuses with the numbers, before allocating anything', () => {
    const c = tinyConfig()
    const tiny = planPlacement(c, { budgetBytes: 1000, contextTokens: 64 })
    expect(tiny.fit.fits).toBe(false)
    expect(tiny.fit.message).toMatch(
      /does not fit: .* need [\d.]+ (KiB|MiB), more than the budget of .* raise the budget to at least [\d.]+ (KiB|MiB) or plan for a shorter context \(Context in Chat's budget settings, the CLI's --context\)$/,
    )
    expect(planPlacement(c, { budgetBytes: 1e9 }).fit).toMatchObject({ fits: true, fitsResident: true })
    // Just under the smallest budget that fits: the amount it names (rounded up) fits, and the
    // need does not read as the budget it exceeds ("need 8.1 MiB, more than the budget of 8.1 MiB").
    const fits = (b: number): boolean => planPlacement(c, { budgetBytes: b, contextTokens: 64 }).fit.fits
    let [lo, hi] = [1000, 1e9]
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2)
      if (fits(mid)) hi = mid
      else lo = mid
    }
    const missed = planPlacement(c, { budgetBytes: hi - 1, contextTokens: 64 }).fit.message
    const [, need, unit] = /raise the budget to at least ([\d.]+) (KiB|MiB)/.exec(missed)!
    const named = Number(need) * (unit === 'MiB' ? 2 ** 20 : 1024)
    expect(named, missed).toBeGreaterThanOrEqual(hi)
    expect(fits(named)).toBe(true)
    const [, needText, budgetText] = /need ([\d.]+ \w+), more than the budget of ([\d.]+ \w+)/.exec(missed)!
    expect(needText, missed).not.toBe(budgetText)
    const wasm = planPlacement(c, { budgetBytes: 4 * 2 ** 30, backend: 'wasm' })
    // A budget beyond the wasm heap is planned at its ceiling, and the plan says so.
    expect(wasm.fit).toMatchObject({ fits: true, budgetBytes: 4 * 2 ** 30 - 384 * 2 ** 20 })
    expect(wasm.fit.message).toMatch(/\(planned for 3\.6\d GiB of the 4.00 GiB asked, all the wasm backend can use: the wasm heap is 4 GiB/)
    expect(planPlacement(c, { budgetBytes: 2 ** 30, backend: 'wasm' }).fit.message).not.toMatch(/planned for/)
    const big = planPlacement(c, { budgetBytes: 30_000, storage: 'f32', contextTokens: 4, hostLimitBytes: 100 })
    expect(big.fit.message).toMatch(
      /the f32 host store of the paged weights needs .* more than the .* this machine allows; use storage "lazy"/,
    )
    const full = planPlacement(c, {
      budgetBytes: 30_000,
      contextTokens: 4,
      training: { method: 'full', trainableParams: 1e5, batch: 2, seqLength: 8 },
    })
    expect(full.fit.message).toMatch(/full fine-tuning keeps every trained weight on the device: .* use LoRA/)
    const before = tf.memory()
    expect(() => loadModel(join(FIX, 'mixtral'), { offload: { budgetBytes: 1000, storage: 'f32' } })).toThrow(PlanError)
    expect(() => loadModel(join(FIX, 'mixtral'), { offload: { budgetBytes: 1000, storage: 'f32' } })).toThrow(/mixtral: does not fit/)
    expect(tf.memory().numTensors).toBe(before.numTensors)
    expect(tf.memory().numBytes).toBe(before.numBytes)
  })

  it('a training plan reserves adapters, gradients and optimiser state', () => {
    const c = tinyConfig({ numLayers: 3, numExperts: 8, vocabSize: 256, hiddenSize: 32, headDim: 8, expertIntermediateSize: 48 })
    const infer = planPlacement(c, { budgetBytes: 400_000, contextTokens: 8 })
    const train = planPlacement(c, { budgetBytes: 400_000, training: { method: 'lora', trainableParams: 2000, batch: 1, seqLength: 8 } })
    expect(train.fit.fits).toBe(true)
    expect(train.fit.trainingBytes).toBe(2000 * 16)
    expect(train.fit.kvCacheBytes).toBe(0)
    expect(train.fit.cacheBytes).toBeLessThan(infer.fit.cacheBytes)
  })

  it("a run's top-k plans its activations and a page cache that holds a token's experts of a layer", () => {
    const c = tinyConfig({ numLayers: 3, numExperts: 8, vocabSize: 256, hiddenSize: 32, headDim: 8, expertIntermediateSize: 48 })
    const training = { method: 'lora' as const, trainableParams: 2000, batch: 4, seqLength: 64 }
    const own = planPlacement(c, { budgetBytes: 1e9, training })
    const same = planPlacement(c, { budgetBytes: 1e9, training: { ...training, topK: c.topK } })
    const more = planPlacement(c, { budgetBytes: 1e9, training: { ...training, topK: 6 } })
    expect(same.fit.activationBytes).toBe(own.fit.activationBytes)
    expect(more.fit.activationBytes).toBeGreaterThan(own.fit.activationBytes)
    // the smallest budget that pages names one layer's k experts, the run's k
    const floor = planPlacement(c, { budgetBytes: 1000, training: { ...training, topK: 6 } })
    expect(floor.fit.message).toMatch(/one layer's 6 experts, as a token uses them/)
  })
})

describe('the unit cache', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  /** A cache over a tiny model's experts, room for `capacity` experts. */
  function cacheOf(
    capacity: number,
    policy: 'lru' | 'lfu',
  ): { cache: UnitCache; expert: (l: number, e: number) => ReturnType<typeof modelUnits>[number] } {
    const dir = folder()
    const c = loadModel(dir).config
    const { index } = openCheckpointTensors(dir)
    const units = modelUnits(c).filter((u) => u.kind === 'expert')
    const store = new HostStore('lazy', index)
    for (const u of units) for (const p of u.parts) store.add({ name: p.name, shape: p.shape })
    const cache = new UnitCache(store, capacity * units[0].bytes, policy)
    return { cache, expert: (l, e) => units.find((u) => u.id === `expert:${l}:${e}`)! }
  }

  it('counts an expert once per use, not once per matrix', () => {
    const { cache, expert } = cacheOf(4, 'lru')
    const u = expert(0, 1)
    // A forward use fetches gate (counted), up and down; a backward re-fetch is not counted.
    for (let part = 0; part < 3; part++) cache.get(u, part === 0)
    cache.get(u, false)
    for (let part = 0; part < 3; part++) cache.get(u, part === 0)
    expect(cache.stats('lazy')).toMatchObject({ hits: 1, misses: 1, hitRate: 0.5 })
  })

  it('LRU evicts the least recently used, LFU the least frequently routed: known sequences, known hits', () => {
    const seq = (cache: UnitCache, expert: (l: number, e: number) => never, order: number[]): number => {
      for (const e of order) cache.get(expert(0, e), true)
      return cache.stats('lazy').hits
    }
    // Capacity 2; 0 is routed often (LFU keeps it), but 1 and 2 were used after it (LRU drops it).
    const order = [0, 0, 0, 1, 2, 0]
    const lru = cacheOf(2, 'lru')
    const lfu = cacheOf(2, 'lfu')
    lfu.cache.observe(0, [9, 1, 1, 0, 0, 0, 0, 0])
    expect(seq(lru.cache, lru.expert as never, order)).toBe(2) // 0,0 hit; 1,2 miss; 0 evicted → miss
    expect(seq(lfu.cache, lfu.expert as never, order)).toBe(3) // 0 survives as the most routed
  })

  it('prefetch loads what the next layer will use: hits that would be misses, and the unused ones counted', () => {
    const { cache, expert } = cacheOf(4, 'lru')
    cache.prefetch([expert(1, 2), expert(1, 3)])
    cache.get(expert(1, 2), true)
    cache.get(expert(1, 5), true)
    cache.get(expert(1, 6), true)
    cache.get(expert(1, 7), true) // evicts the unused prefetched 3
    expect(cache.stats('lazy')).toMatchObject({ prefetched: 2, prefetchUsed: 1, prefetchUnused: 1, hits: 1, misses: 3 })
    const none = cacheOf(4, 'lru')
    none.cache.get(none.expert(1, 2), true)
    expect(none.cache.stats('lazy')).toMatchObject({ prefetched: 0, hits: 0, misses: 1 })
  })

  it('LFU decays: an expert routed heavily long ago loses to one routed steadily since (LRU or no decay keep the wrong one)', () => {
    // Capacity 2. Expert 0 was routed `heavy` times, then expert 1 once per layer pass for 20
    // passes: with the 0.9 decay, 0 weighs heavy · 0.9^20 and 1 weighs Σ 0.9^i = 8.78.
    const play = (heavy: number): number => {
      const { cache, expert } = cacheOf(2, 'lfu')
      cache.observe(0, [heavy, 0, 0, 0, 0, 0, 0, 0])
      for (let i = 0; i < 20; i++) cache.observe(0, [0, 1, 0, 0, 0, 0, 0, 0])
      // 1 then 0 (1 is the least recently used), then 2 evicts one of them; then 1 twice.
      for (const e of [1, 0, 2, 1, 1]) cache.get(expert(0, e), true)
      const hits = cache.stats('lazy').hits
      cache.dispose()
      return hits
    }
    // 50 · 0.9^20 = 6.08 < 8.78: 0 goes, 1 stays: two hits. (LRU, or LFU without the decay, drop 1: one hit.)
    expect(play(50)).toBe(2)
    // 75 · 0.9^20 = 9.12 > 8.78: 1 goes: one hit (a faster decay would keep 1).
    expect(play(75)).toBe(1)
  })

  it('LFU breaks ties (unrouted experts) by recency, as LRU', () => {
    const play = (policy: 'lru' | 'lfu'): number => {
      const { cache, expert } = cacheOf(2, policy)
      // 0, 1, 0 again, then 2 evicts the least recently used (1); 1 is then a miss, 0 a hit.
      for (const e of [0, 1, 0, 2, 1, 0]) cache.get(expert(0, e), true)
      const hits = cache.stats('lazy').hits
      cache.dispose()
      return hits
    }
    expect(play('lru')).toBe(1)
    expect(play('lfu')).toBe(1)
  })

  it("a paged model prefetches the next layer's experts from the router: known hits with prefetch, none without", () => {
    // Attention and experts add nothing, so every layer's router sees the same hidden state: the
    // prediction (the next layer's router on this layer's input) is exact.
    const c = tinyConfig({ numLayers: 3, numExperts: 8, vocabSize: 256, hiddenSize: 32, headDim: 8, expertIntermediateSize: 48 })
    const w = randomWeights(c, 9, 0.3)
    for (const [n, a] of w) {
      if (/\.w2\.weight$|o_proj\.weight$/.test(n)) a.fill(0)
      if (/norm\.weight$/.test(n)) a.fill(1)
    }
    // Layer l's router is layer 0's with its experts rotated by 3l: layer l routes a token to
    // layer 0's experts shifted by 3l, which only the next layer's own router predicts.
    const gate0 = w.get('model.layers.0.block_sparse_moe.gate.weight')!.slice()
    for (let l = 1; l < 3; l++) {
      const g = w.get(`model.layers.${l}.block_sparse_moe.gate.weight`)!
      for (let e = 0; e < 8; e++) g.set(gate0.subarray(((e + 3 * l) % 8) * 32, ((e + 3 * l) % 8) * 32 + 32), e * 32)
    }
    const dir = mkdtempSync(join(tmpdir(), 'moe-prefetch-'))
    const resident = new MoeModel(c, w)
    saveModel(resident, dir)
    // A budget that pages experts only, with room for two layers' worth of them.
    let budget = 16_000
    let plan = planPlacement(c, { budgetBytes: budget, storage: 'f32', contextTokens: 8, backend: 'cpu' })
    while (!(plan.fit.fits && plan.fit.cachedExperts >= 16 && plan.paged.every((u) => u.kind === 'expert'))) {
      budget = Math.ceil(budget * 1.05)
      plan = planPlacement(c, { budgetBytes: budget, storage: 'f32', contextTokens: 8, backend: 'cpu' })
    }
    expect(plan.fit.fitsResident).toBe(false)
    const statsOf = (ids: number[][], prefetch: boolean) => {
      const m = loadModel(dir, { offload: { budgetBytes: budget, storage: 'f32', prefetch }, contextTokens: 8 })
      try {
        tf.tidy(() => void m.forward(ids))
        return m.pagingStats()!
      } finally {
        m.dispose()
      }
    }
    try {
      // One token, top-2, three sparse layers: layer 0 misses its 2 experts; layers 1 and 2 find
      // theirs prefetched (2 each).
      expect(statsOf([[5]], true)).toMatchObject({ misses: 2, hits: 4, prefetched: 4, prefetchUsed: 4, prefetchUnused: 0 })
      expect(statsOf([[5]], false)).toMatchObject({ misses: 6, hits: 0, prefetched: 0 })
      // Four tokens: the top ceil(k·√N) = 4 experts by summed probability are prefetched per next
      // layer; the used ones among them are hits, the rest of the experts the tokens use are misses.
      const ids = [[5, 17, 200, 33]]
      const r = tf.tidy(() => {
        const f = resident.forward(ids).routing[0]
        return { topk: Array.from(f.decision.topk), probs: tf.sum(tf.softmax(f.routerLogits), 0).dataSync() }
      })
      const used = new Set(r.topk)
      const predicted = new Set(
        Array.from(r.probs, (v, e) => [v, e] as const)
          .sort((a, b) => b[0] - a[0])
          .slice(0, 4)
          .map(([, e]) => e),
      )
      const hitsPerLayer = [...used].filter((e) => predicted.has(e)).length
      expect(hitsPerLayer).toBeGreaterThan(0)
      expect(statsOf(ids, true)).toMatchObject({
        prefetched: 8,
        hits: 2 * hitsPerLayer,
        misses: used.size + 2 * (used.size - hitsPerLayer),
        prefetchUsed: 2 * hitsPerLayer,
      })
      expect(statsOf(ids, false)).toMatchObject({ prefetched: 0, hits: 0, misses: 3 * used.size })
    } finally {
      resident.dispose()
    }
  })

  it('accounts for every use: hits and misses per layer and for other units, bytes moved and held, the peak', () => {
    const dir = folder()
    const c = loadModel(dir).config
    const { index } = openCheckpointTensors(dir)
    const all = modelUnits(c)
    const store = new HostStore('lazy', index)
    for (const u of all) for (const p of u.parts) store.add({ name: p.name, shape: p.shape })
    const ex = (l: number, e: number) => all.find((u) => u.id === `expert:${l}:${e}`)!
    const attn = all.find((u) => u.kind === 'attention' && u.layer === 0)!
    const [A, B] = [attn.bytes, ex(0, 0).bytes]
    const cache = new UnitCache(store, A + 2 * B)
    cache.get(attn, true) // other: miss
    cache.get(attn, true) // other: hit
    cache.get(ex(1, 0), true) // layer 1: miss
    cache.get(ex(1, 0), false) // a backward re-fetch: not counted
    cache.get(ex(0, 3), true) // layer 0: miss (full now)
    cache.get(ex(0, 3), true) // layer 0: hit
    expect(cache.stats('int8')).toEqual({
      budgetBytes: A + 2 * B,
      cacheBytes: A + 2 * B,
      residentBytes: A + 2 * B,
      peakBytes: A + 2 * B,
      bytesMoved: A + 2 * B,
      bytesRead: store.bytesRead,
      hits: 1,
      misses: 2,
      hitRate: 1 / 3,
      otherHits: 1,
      otherMisses: 1,
      // sorted by layer, though layer 1 was seen first
      layers: [
        { layer: 0, hits: 1, misses: 1 },
        { layer: 1, hits: 0, misses: 1 },
      ],
      prefetched: 0,
      prefetchUsed: 0,
      prefetchUnused: 0,
      prefetchAccuracy: 0,
      storage: 'int8',
      policy: 'lfu',
    })
    expect(cache.residentBytes).toBe(A + 2 * B)
    const tensors = tf.memory().numTensors
    cache.dispose()
    expect(cache.residentBytes).toBe(0)
    expect(tf.memory().numTensors).toBe(tensors - attn.parts.length - 2 * ex(0, 0).parts.length)
  })

  it('prefetch: at most the room one unit leaves, held units not loaded again, a use counted once, an unused one when evicted', () => {
    const { cache, expert } = cacheOf(3, 'lru')
    const B = expert(0, 0).bytes
    const e = (i: number) => expert(2, i)
    cache.prefetch([e(1), e(2), e(3), e(4)]) // room 3B − B: e1 and e2
    expect(cache.stats('lazy')).toMatchObject({ prefetched: 2, residentBytes: 2 * B, bytesMoved: 2 * B })
    cache.get(e(1), true)
    cache.get(e(1), true) // used once already: not a second prefetch use
    cache.prefetch([e(2), e(5)]) // e2 is held: only e5 loads
    cache.get(e(6), true) // evicts e2 (least recent), prefetched and never used
    expect(cache.stats('lazy')).toMatchObject({
      prefetched: 3,
      prefetchUsed: 1,
      prefetchUnused: 1,
      prefetchAccuracy: 1 / 3,
      hits: 2,
      misses: 1,
      bytesMoved: 4 * B,
      residentBytes: 3 * B,
      peakBytes: 3 * B,
      cacheBytes: 3 * B,
      policy: 'lru',
    })
    expect(cache.capacityFor(B)).toBe(3)
    expect(cache.capacityFor(B + 1)).toBe(2)
    expect(cache.capacityFor(0)).toBe(0)
    cache.dispose()
  })

  it('refuses a unit larger than the whole cache, naming it and the sizes', () => {
    const { cache, expert } = cacheOf(1, 'lru')
    const B = expert(0, 1).bytes
    const small = new UnitCache(cache.store, B - 1, 'lru')
    expect(() => small.get(expert(0, 1), true)).toThrow(
      `paging: expert:0:1 takes ${B} bytes, more than the cache's ${B - 1}; raise the budget`,
    )
    // exactly the budget fits
    expect(() => cache.get(expert(0, 1), true)).not.toThrow()
    cache.dispose()
  })

  it('never holds more than its budget', () => {
    const { cache, expert } = cacheOf(3, 'lfu')
    const rng = new Rng(4)
    for (let i = 0; i < 60; i++) cache.get(expert(Math.floor(rng.next() * 3), Math.floor(rng.next() * 8)), true)
    const s = cache.stats('lazy')
    expect(s.peakBytes).toBeLessThanOrEqual(s.budgetBytes)
    expect(s.residentBytes).toBeLessThanOrEqual(s.budgetBytes)
    cache.dispose()
  })
})

describe('model units (what the planner places and the cache pages)', () => {
  it('an expert, attention, dense MLP and shared expert per layer, lm_head in row chunks; every tensor in exactly one place', () => {
    // qwen2_moe: layer 0 dense (mlp_only_layers), layer 1 sparse with a shared expert; H = 16
    const c = tinyConfig({
      family: 'qwen2_moe',
      vocabSize: 30,
      mlpOnlyLayers: [0],
      sharedExpertIntermediateSize: 8,
      intermediateSize: 20,
      expertIntermediateSize: 12,
    })
    const before = setHeadChunkBytes(7 * 16 * 4) // 7 rows of lm_head per chunk
    try {
      expect(headChunkRows(c)).toBe(7)
      const units = modelUnits(c)
      expect(units.map((u) => u.id)).toEqual([
        'attention:0',
        'mlp:0',
        'attention:1',
        'expert:1:0',
        'expert:1:1',
        'expert:1:2',
        'expert:1:3',
        'shared:1',
        'head:0',
        'head:1',
        'head:2',
        'head:3',
        'head:4',
      ])
      const byId = new Map(units.map((u) => [u.id, u]))
      expect(byId.get('attention:1')!.parts.map((p) => [p.name, p.shape])).toEqual([
        ['model.layers.1.self_attn.q_proj.weight', [16, 16]],
        ['model.layers.1.self_attn.k_proj.weight', [8, 16]],
        ['model.layers.1.self_attn.v_proj.weight', [8, 16]],
        ['model.layers.1.self_attn.o_proj.weight', [16, 16]],
      ])
      expect(byId.get('mlp:0')!.parts.map((p) => [p.name, p.shape])).toEqual([
        ['model.layers.0.mlp.gate_proj.weight', [20, 16]],
        ['model.layers.0.mlp.up_proj.weight', [20, 16]],
        ['model.layers.0.mlp.down_proj.weight', [16, 20]],
      ])
      expect(byId.get('expert:1:2')).toMatchObject({ kind: 'expert', layer: 1, expert: 2, bytes: 3 * 12 * 16 * 4 })
      expect(byId.get('expert:1:2')!.parts.map((p) => [p.name, p.shape])).toEqual([
        ['model.layers.1.mlp.experts.2.gate_proj.weight', [12, 16]],
        ['model.layers.1.mlp.experts.2.up_proj.weight', [12, 16]],
        ['model.layers.1.mlp.experts.2.down_proj.weight', [16, 12]],
      ])
      expect(byId.get('shared:1')).toMatchObject({ kind: 'shared', layer: 1, bytes: 3 * 8 * 16 * 4 })
      expect(byId.get('shared:1')!.parts[2]).toEqual({ name: 'model.layers.1.mlp.shared_expert.down_proj.weight', shape: [16, 8] })
      expect(byId.get('attention:0')).not.toHaveProperty('expert')
      // lm_head: 30 rows in chunks of 7, the last one short, each with its row range
      const heads = units.filter((u) => u.kind === 'head')
      expect(heads.map((u) => u.parts[0].rows)).toEqual([
        [0, 7],
        [7, 14],
        [14, 21],
        [21, 28],
        [28, 30],
      ])
      expect(heads.map((u) => u.parts[0].shape)).toEqual([
        [7, 16],
        [7, 16],
        [7, 16],
        [7, 16],
        [2, 16],
      ])
      expect(heads.every((u) => u.parts[0].name === 'lm_head.weight' && u.layer === undefined)).toBe(true)
      expect(heads[4].bytes).toBe(2 * 16 * 4)
      // every weight is in one unit, among the small tensors, or the embedding; none twice
      const inUnits = units.filter((u) => u.kind !== 'head').flatMap((u) => u.parts.map((p) => p.name))
      const small = smallSpecs(c).map((s) => s.name)
      const all = paramSpecs(c).map((s) => s.name)
      expect(new Set(inUnits).size).toBe(inUnits.length)
      expect([...inUnits, ...small, 'model.embed_tokens.weight', 'lm_head.weight'].sort()).toEqual([...all].sort())
      expect(small).toContain('model.layers.1.mlp.gate.weight')
      expect(small).toContain('model.layers.1.mlp.shared_expert_gate.weight')
      expect(small).toContain('model.norm.weight')
      expect(small).not.toContain('model.embed_tokens.weight')
      // unitIndex: each tensor to its unit and part; lm_head chunks are found by row instead
      const index = unitIndex(units)
      expect(index.get('model.layers.1.mlp.experts.3.down_proj.weight')).toEqual({ unit: byId.get('expert:1:3'), part: 2 })
      expect(index.get('model.layers.0.self_attn.k_proj.weight')!.part).toBe(1)
      expect(index.has('lm_head.weight')).toBe(false)
      expect(index.size).toBe(inUnits.length)
    } finally {
      setHeadChunkBytes(before)
    }
  })

  it('a tied lm_head reads the embedding; a chunk is never below one row nor above the vocabulary', () => {
    const tied = tinyConfig({ tieWordEmbeddings: true })
    expect(headTensor(tied)).toBe('model.embed_tokens.weight')
    expect(headTensor(tinyConfig())).toBe('lm_head.weight')
    expect(modelUnits(tied).filter((u) => u.kind === 'head')[0].parts[0].name).toBe('model.embed_tokens.weight')
    const before = setHeadChunkBytes(1)
    try {
      expect(headChunkRows(tied)).toBe(1)
      expect(modelUnits(tied).filter((u) => u.kind === 'head')).toHaveLength(tied.vocabSize)
      setHeadChunkBytes(2 ** 40)
      expect(headChunkRows(tied)).toBe(tied.vocabSize)
      expect(modelUnits(tied).filter((u) => u.kind === 'head')).toHaveLength(1)
    } finally {
      expect(setHeadChunkBytes(before)).toBe(2 ** 40)
    }
  })
})

describe('the fit planner at its boundaries', () => {
  // tinyConfig: H 16, 2 layers of 4 experts (top-2, width 24), vocabulary 32
  const c = tinyConfig()
  const ctx = { contextTokens: 16 }
  const resident = planPlacement(c, { budgetBytes: 1e9, ...ctx }).fit
  const reserve = resident.kvCacheBytes + resident.activationBytes
  const expertBytes = 3 * 24 * 16 * 4
  const cacheFloor = 2 * expertBytes // a token's top-2 experts: more than any other unit
  const small = planPlacement(c, { budgetBytes: 1, ...ctx }).fit.residentBytes // norms and routers
  const attentionBytes = (16 * 16 * 2 + 8 * 16 * 2) * 4
  const headBytes = 32 * 16 * 4

  it('everything resident exactly when weights and the reserve fit', () => {
    expect(resident).toMatchObject({
      fits: true,
      fitsResident: true,
      residentBytes: resident.modelBytes,
      cachedExperts: 8,
      totalExperts: 8,
    })
    expect(resident.predictedBytes).toBe(resident.modelBytes + reserve)
    expect(resident.kvCacheBytes).toBe(2 * 2 * 2 * 4 * 16 * 4) // K and V × layers × KV heads × head dim × tokens × 4 bytes
    expect(resident.message).toMatch(/^fits resident: .* of KV cache \(16 tokens\) and .* of activations within /)
    const exact = planPlacement(c, { budgetBytes: resident.modelBytes + reserve, ...ctx })
    expect(exact.fit.fitsResident).toBe(true)
    expect(exact.embedOnHost).toBe(false)
    expect(exact.paged).toEqual([])
    expect(exact.resident.size).toBe(paramSpecs(c).length)
    expect(planPlacement(c, { budgetBytes: resident.modelBytes + reserve - 1, ...ctx }).fit.fitsResident).toBe(false)
  })

  it("the smallest budget pages everything but norms and routers, with a cache for one token's experts", () => {
    const floor = small + reserve + cacheFloor
    const p = planPlacement(c, { budgetBytes: floor, ...ctx })
    expect(p.fit).toMatchObject({
      fits: true,
      fitsResident: false,
      residentBytes: small,
      cacheBytes: cacheFloor,
      expertBudgetBytes: cacheFloor,
      cachedExperts: 2,
      embedding: 'host',
      headChunks: 1,
      pagedLayers: [0, 1],
      predictedBytes: floor,
    })
    expect(p.embedOnHost).toBe(true)
    expect(p.paged.map((u) => u.id)).toEqual([
      'attention:0',
      'attention:1',
      'head:0',
      ...[0, 1].flatMap((l) => [0, 1, 2, 3].map((e) => `expert:${l}:${e}`)),
    ])
    expect(p.fit.message).toMatch(
      /lm_head paged in 1 chunk, attention of 2 of 2 layers paged, a .* cache holding 2 of 8 experts \(2 sparse layers × 4\); paged weights read from the checkpoint files as needed$/,
    )
    // a byte less: refused, naming what it would take
    const under = planPlacement(c, { budgetBytes: floor - 1, ...ctx })
    expect(under.fit.fits).toBe(false)
    expect(under.fit.residentBytes).toBe(small)
    expect(under.resident.size).toBe(0)
    // What the cache floor is, by name ("one token's experts" was the largest paged tensor's size).
    expect(under.fit.message).toMatch(
      /a cache for the weights paged in at once \([\d.]+ KiB: (the largest paged tensor|one layer's 2 experts, as a token uses them)\)/,
    )
  })

  it('attention, then lm_head, become resident as the budget allows, the cache keeping its floor', () => {
    const floor = small + reserve + cacheFloor
    const oneLayer = planPlacement(c, { budgetBytes: floor + attentionBytes, ...ctx })
    expect(oneLayer.fit.pagedLayers).toEqual([1])
    expect(oneLayer.resident.has('model.layers.0.self_attn.q_proj.weight')).toBe(true)
    expect(oneLayer.resident.has('model.layers.1.self_attn.q_proj.weight')).toBe(false)
    expect(oneLayer.fit.residentBytes).toBe(small + attentionBytes)
    const both = planPlacement(c, { budgetBytes: floor + 2 * attentionBytes, ...ctx })
    expect(both.fit.pagedLayers).toEqual([])
    expect(both.fit.headChunks).toBe(1)
    const head = planPlacement(c, { budgetBytes: floor + 2 * attentionBytes + headBytes, ...ctx })
    expect(head.fit.headChunks).toBe(0)
    expect(head.resident.has('lm_head.weight')).toBe(true)
    expect(head.paged.every((u) => u.kind === 'expert')).toBe(true)
    expect(head.fit.message).toMatch(
      /^fits with paging: .* resident \(norms, routers, attention, lm_head\), the embedding gathered from the host, a /,
    )
    // what is left over goes to the cache: one more expert's worth holds one more expert
    const more = planPlacement(c, { budgetBytes: floor + 2 * attentionBytes + headBytes + expertBytes, ...ctx })
    expect(more.fit.cachedExperts).toBe(3)
    expect(more.fit.cacheBytes).toBe(cacheFloor + expertBytes)
  })

  it('a host store is planned in its own format: 8-bit for experts and MLPs, 16-bit for attention, lm_head and the embedding', () => {
    expect(hostStorageOf('int8', 'expert')).toBe('int8')
    expect(hostStorageOf('int8', 'mlp')).toBe('int8')
    expect(hostStorageOf('int8', 'shared')).toBe('int8')
    expect(hostStorageOf('int8', 'attention')).toBe('bf16')
    expect(hostStorageOf('int8', 'head')).toBe('bf16')
    expect(hostStorageOf('int8', 'embed')).toBe('bf16')
    expect(hostStorageOf('f16', 'attention')).toBe('f16')
    const floor = small + reserve + cacheFloor
    const f32 = planPlacement(c, { budgetBytes: floor, storage: 'f32', ...ctx, hostLimitBytes: 1e9 })
    // every paged tensor and the embedding, at 4 bytes a value
    const values = 2 * (attentionBytes / 4) + 32 * 16 + 8 * (expertBytes / 4) + 32 * 16
    expect(f32.fit.hostBytes).toBe(values * 4)
    expect(f32.fit.message).toMatch(/kept on the host as f32 \(/)
    const lazy = planPlacement(c, { budgetBytes: floor, ...ctx, hostLimitBytes: 0 })
    expect(lazy.fit.fits).toBe(true) // lazy keeps nothing on the host (but the counts are shown)
    const refused = planPlacement(c, { budgetBytes: floor, storage: 'int8', ...ctx, hostLimitBytes: 100 })
    expect(refused.fit.fits).toBe(false)
    expect(refused.fit.message).toMatch(/or a smaller one \(lazy\)$/)
    expect(planPlacement(c, { budgetBytes: floor, storage: 'f16', ...ctx, hostLimitBytes: 100 }).fit.message).toMatch(
      /or a smaller one \(int8\)$/,
    )
  })

  it('default budgets: the environment (bytes or 4GB-style), else by backend; wasm capped below its 4 GiB heap', () => {
    expect(defaultBudget('wasm', { MOE_WORKBENCH_DEVICE_BUDGET: '4GB' })).toBe(4e9)
    expect(defaultBudget('wasm', { MOE_WORKBENCH_DEVICE_BUDGET: '1.5 GiB' })).toBe(1.5 * 2 ** 30)
    expect(defaultBudget('cpu', { MOE_WORKBENCH_DEVICE_BUDGET: '123456' })).toBe(123456)
    expect(defaultBudget('cpu', { MOE_WORKBENCH_DEVICE_BUDGET: '512kib' })).toBe(512 * 1024)
    expect(defaultBudget('webgpu', { MOE_WORKBENCH_DEVICE_BUDGET: '300 MB' })).toBe(3e8)
    expect(defaultBudget('webgpu', { MOE_WORKBENCH_DEVICE_BUDGET: '2mib' })).toBe(2 * 2 ** 20)
    expect(defaultBudget('webgpu', { MOE_WORKBENCH_DEVICE_BUDGET: '7kb' })).toBe(7000)
    expect(defaultBudget('webgpu', { MOE_WORKBENCH_DEVICE_BUDGET: '9b' })).toBe(9)
    // not a size: the backend's default
    expect(defaultBudget('wasm', { MOE_WORKBENCH_DEVICE_BUDGET: 'lots' })).toBe(3 * 2 ** 30)
    expect(defaultBudget('wasm', {})).toBe(3 * 2 ** 30)
    expect(defaultBudget('webgpu', {})).toBe(4 * 2 ** 30)
    expect(defaultBudget('tfjs-node-gpu', {})).toBe(4 * 2 ** 30)
    for (const b of ['cpu', 'tfjs-node', undefined] as const) expect(defaultBudget(b, {})).toBe(Math.floor(totalmem() * 0.4))
    expect(deviceLimit('wasm')).toBe(4 * 2 ** 30 - 384 * 2 ** 20)
    expect(deviceLimit('webgpu')).toBeNull()
    expect(deviceLimit(undefined)).toBeNull()
    // The CPU backends' device memory is this machine's: 80% of it at most.
    expect(deviceLimit('cpu', 10e9)).toBe(8e9)
    expect(deviceLimit('tfjs-node', 10e9)).toBe(8e9)
    expect(deviceLimit('cpu')).toBe(Math.floor(totalmem() * 0.8))
    expect(deviceLimit('tfjs-node-gpu', 10e9)).toBeNull()
  })
})
