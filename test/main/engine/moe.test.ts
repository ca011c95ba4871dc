/**
 * The MoE block: a one-expert MoE is the dense FFN, capacity and token dropping on hand-computed
 * cases, every router variant, the auxiliary losses on hand-computed values, and no tensor leaks.
 * Training paths run on cpu and wasm.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend, type BackendName } from '../../../src/main/engine/backend'
import { generateGreedy } from '../../../src/main/engine/generate'
import { cvSquared, importanceLoss, loadBalancingLoss, loadLoss, loadThresholds, routerZLoss } from '../../../src/main/engine/losses'
import { MoeModel, validMask } from '../../../src/main/engine/model'
import { moeBlock } from '../../../src/main/engine/moe'
import { disposeGrads, lossAndGrads } from '../../../src/main/engine/objective'
import { plainWeights, Rng } from '../../../src/main/engine/ops'
import { decideRouting, expertCapacity, hashExperts, topkRows } from '../../../src/main/engine/router'
import { paramSpecs } from '../../../src/shared/modelConfig'
import { maxAbsDiff, randomIds, randomWeights, tinyConfig, tinyModel } from './helpers'

describe('routing decisions (pure)', () => {
  it('top-k is descending with the lowest index first on ties', () => {
    expect(Array.from(topkRows([0.1, 0.5, 0.2, 0.2], 1, 4, 3))).toEqual([1, 2, 3])
    expect(Array.from(topkRows([0.3, 0.3, 0.4, 0, 1, 0], 2, 3, 1))).toEqual([2, 1])
  })

  it('capacity = ceil(factor · tokens · k / experts)', () => {
    expect(expertCapacity(1, 8, 2, 4)).toBe(4)
    expect(expertCapacity(1.25, 8, 1, 4)).toBe(3)
    expect(expertCapacity(0.01, 8, 1, 4)).toBe(1)
  })

  it('drops assignments beyond capacity, first choices before second choices, tokens in order', () => {
    // 4 tokens, 2 experts, top-1, factor 1 → capacity 2. Everyone wants expert 0.
    const probs = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]
    const d = decideRouting(probs, 4, 2, { type: 'softmax_topk', k: 1, capacityFactor: 1 })
    expect(d.capacity).toBe(2)
    expect(Array.from(d.kept)).toEqual([1, 1, 0, 0])
    expect(d.dropped).toBe(2)
    expect(d.droppedTokens).toBe(2)
    expect(Array.from(d.index)).toEqual([0, 1])
    expect(Array.from(d.counts)).toEqual([2, 0])

    // 3 tokens, 3 experts, top-2, factor 1 → capacity 2. First choices: 0, 0, 1; second: 1, 1, 0.
    const p2 = [0.5, 0.3, 0.2, 0.6, 0.3, 0.1, 0.35, 0.45, 0.2]
    const d2 = decideRouting(p2, 3, 3, { type: 'softmax_topk', k: 2, capacityFactor: 1 })
    expect(Array.from(d2.topk)).toEqual([0, 1, 0, 1, 1, 0])
    // slot 0 fills e0 (t0, t1) and e1 (t2); slot 1: t0→e1 kept (2nd), t1→e1 dropped (full), t2→e0 dropped.
    expect(Array.from(d2.kept)).toEqual([1, 1, 1, 0, 1, 0])
    expect(d2.dropped).toBe(2)
    expect(d2.droppedTokens).toBe(0)
    // index grouped by expert, token order inside: e0 ← t0, t1; e1 ← t0, t2.
    expect(Array.from(d2.index)).toEqual([0, 1, 0, 2])
    expect(Array.from(d2.inverses[0])).toEqual([0, 1, 3])
    expect(Array.from(d2.inverses[1])).toEqual([2, 4, 4])
  })

  it('padding takes no capacity: the real tokens of the next row are not pushed out', () => {
    // Two rows of 2 (row 0 = one real token + padding), 2 experts, top-1, everyone wants expert 0.
    const probs = [0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]
    const unmasked = decideRouting(probs, 4, 2, { type: 'softmax_topk', k: 1, capacityFactor: 1 })
    expect(Array.from(unmasked.kept)).toEqual([1, 1, 0, 0]) // the padding took row 1's slot
    const valid = validMask([1, 2], 2, 2)
    expect(Array.from(valid)).toEqual([1, 0, 1, 1])
    const d = decideRouting(probs, 4, 2, { type: 'softmax_topk', k: 1, capacityFactor: 1, valid })
    // 3 real tokens: capacity ceil(1 · 3 · 1 / 2) = 2; the padding is not routed at all.
    expect(d.capacity).toBe(2)
    expect(Array.from(d.kept)).toEqual([1, 0, 1, 0])
    expect(d.dropped).toBe(1)
    expect(d.droppedTokens).toBe(1)
    expect(Array.from(d.index)).toEqual([0, 2])
    expect(() => decideRouting(probs, 4, 2, { type: 'softmax_topk', k: 1, capacityFactor: 1, valid: new Uint8Array(3) })).toThrow(
      /a validity mask of 3 rows for 4 tokens/,
    )
  })

  it('dropless routing keeps everything', () => {
    const d = decideRouting([0.9, 0.1, 0.8, 0.2, 0.7, 0.3], 3, 2, { type: 'softmax_topk', k: 1, capacityFactor: null })
    expect(d.capacity).toBeNull()
    expect(d.dropped).toBe(0)
    expect(Array.from(d.counts)).toEqual([3, 0])
  })

  it('hash routing is a fixed function of the token id, with k distinct experts', () => {
    for (let id = 0; id < 200; id++) {
      const e = hashExperts(id, 8, 3, 0)
      expect(new Set(e).size).toBe(3)
      expect(e.every((x) => x >= 0 && x < 8)).toBe(true)
      expect(hashExperts(id, 8, 3, 0)).toEqual(e)
    }
    // roughly balanced over many ids
    const counts = new Array(8).fill(0)
    for (let id = 0; id < 8000; id++) counts[hashExperts(id, 8, 1, 0)[0]]++
    for (const c of counts) expect(c).toBeGreaterThan(800)
    expect(hashExperts(5, 8, 2, 1)).not.toEqual(hashExperts(5, 8, 2, 0))
  })
})

for (const backend of ['cpu', 'wasm'] as BackendName[]) {
  describe(`MoE block on ${backend}`, () => {
    beforeAll(async () => {
      await initBackend(backend)
    })

    it('a one-expert MoE equals the dense FFN with the same weights, forward and backward', () => {
      const moeCfg = tinyConfig({ numExperts: 1, topK: 1 })
      // The same network with dense MLPs: qwen2_moe with every layer in mlp_only_layers.
      const denseCfg = tinyConfig({ family: 'qwen2_moe', numExperts: 1, topK: 1, mlpOnlyLayers: [0, 1], normTopkProb: false })
      const w = randomWeights(moeCfg, 3)
      const denseW = new Map<string, Float32Array>()
      const rename = (n: string): string =>
        n
          .replace(/block_sparse_moe\.experts\.0\.w1/, 'mlp.gate_proj')
          .replace(/block_sparse_moe\.experts\.0\.w3/, 'mlp.up_proj')
          .replace(/block_sparse_moe\.experts\.0\.w2/, 'mlp.down_proj')
      for (const [n, a] of w) if (!n.includes('.gate.weight')) denseW.set(rename(n), a)
      const moe = new MoeModel(moeCfg, w)
      const dense = new MoeModel(denseCfg, denseW)
      const batch = { inputIds: randomIds(2, 6, 32), labels: randomIds(2, 6, 32, 9) }
      try {
        const a = lossAndGrads(moe, batch)
        const b = lossAndGrads(dense, batch)
        // one expert: its weight is softmax of one logit = 1, and the aux loss is E·1·1 = 1
        expect(a.parts.aux).toBeCloseTo(1, 6)
        expect(a.parts.ce).toBeCloseTo(b.parts.ce, 5)
        for (const [name, g] of a.grads) {
          if (name.endsWith('.gate.weight')) {
            expect(Math.max(...Array.from(g.dataSync(), Math.abs)), name).toBeLessThan(1e-6)
            continue
          }
          expect(maxAbsDiff(g.dataSync(), b.grads.get(rename(name))!.dataSync()), name).toBeLessThan(1e-5)
        }
        disposeGrads(a.grads)
        disposeGrads(b.grads)
      } finally {
        moe.dispose()
        dense.dispose()
      }
    })

    it('token drop: in training about p of the tokens skip the experts (output 0), none in evaluation', () => {
      const c = tinyConfig({ tokenDrop: 0.3 })
      const model = new MoeModel(c, randomWeights(c, 5))
      try {
        tf.tidy(() => {
          const N = 400
          const h = tf.randomNormal([N, 16], 0, 1, 'float32', 12) as tf.Tensor2D
          const opts = { capacityFactor: null, tokenIds: new Int32Array(N) }
          const train = moeBlock(c, 0, model.weightSource, h, { ...opts, training: true, rng: new Rng(3) })
          const d = train.routing.decision
          expect(d.droppedTokens / N).toBeGreaterThan(0.22)
          expect(d.droppedTokens / N).toBeLessThan(0.38)
          const out = train.out.arraySync()
          for (let n = 0; n < N; n++) {
            const routed = Array.from({ length: c.topK }, (_, j) => d.kept[n * c.topK + j]).some(Boolean)
            if (!routed) expect(Math.max(...out[n].map(Math.abs))).toBe(0)
          }
          // The same seed drops the same tokens; evaluation drops none.
          const again = moeBlock(c, 0, model.weightSource, h, { ...opts, training: true, rng: new Rng(3) })
          expect(Array.from(again.routing.decision.kept)).toEqual(Array.from(d.kept))
          expect(moeBlock(c, 0, model.weightSource, h, { ...opts, training: false }).routing.decision.droppedTokens).toBe(0)
        })
      } finally {
        model.dispose()
      }
    })

    it('dropped tokens pass through the residual only, and the fraction is reported', () => {
      const c = tinyConfig({ numExperts: 2, topK: 1, router: { type: 'switch', capacityFactorTrain: 0.5, capacityFactorEval: null } })
      const model = new MoeModel(c, randomWeights(c, 5))
      try {
        tf.tidy(() => {
          const N = 8
          const h = tf.randomNormal([N, 16], 0, 1, 'float32', 11) as tf.Tensor2D
          const dropless = moeBlock(c, 0, model.weightSource, h, { training: false, capacityFactor: null, tokenIds: new Int32Array(N) })
          const capped = moeBlock(c, 0, model.weightSource, h, { training: false, capacityFactor: 0.5, tokenIds: new Int32Array(N) })
          const d = capped.routing.decision
          expect(d.capacity).toBe(2) // ceil(0.5 · 8 · 1 / 2)
          expect(d.counts[0]).toBeLessThanOrEqual(2)
          expect(d.counts[1]).toBeLessThanOrEqual(2)
          expect(d.dropped).toBe(8 - d.counts[0] - d.counts[1])
          expect(d.dropped).toBeGreaterThanOrEqual(4)
          const full = dropless.out.arraySync()
          const cut = capped.out.arraySync()
          for (let n = 0; n < N; n++) {
            if (d.kept[n]) expect(maxAbsDiff(cut[n], full[n])).toBeLessThan(1e-6)
            else expect(Math.max(...cut[n].map(Math.abs))).toBe(0)
          }
        })
        // the training capacity factor applies in training mode, the evaluation one otherwise
        const batch = { inputIds: randomIds(2, 8, 32), labels: randomIds(2, 8, 32, 3) }
        const train = lossAndGrads(model, batch, { training: true, rng: new Rng(1) })
        expect(train.parts.droppedFraction).toBeGreaterThan(0)
        // the fraction of all (token, choice) assignments dropped, over every layer
        const dropped = train.routing.reduce((a, r) => a + r.dropped, 0)
        const assignments = train.routing.reduce((a, r) => a + r.tokens * c.topK, 0)
        expect(assignments).toBe(2 * 8 * c.topK * c.numLayers) // rows · tokens · k · layers
        expect(train.parts.droppedFraction).toBeCloseTo(dropped / assignments, 12)
        disposeGrads(train.grads)
        const evalRun = lossAndGrads(model, batch, { training: false })
        expect(evalRun.parts.droppedFraction).toBe(0)
        disposeGrads(evalRun.grads)
      } finally {
        model.dispose()
      }
    })

    it('switch router: top-1 with the un-renormalised probability as weight', () => {
      const c = tinyConfig({ topK: 1, router: { type: 'switch' } })
      const m = new MoeModel(c, randomWeights(c, 2))
      try {
        tf.tidy(() => {
          const f = m.forward(randomIds(1, 5, 32))
          for (const r of f.routing) {
            const probs = tf.softmax(r.routerLogits).arraySync()
            for (let n = 0; n < 5; n++) {
              const e = r.decision.topk[n]
              expect(Math.max(...probs[n])).toBe(probs[n][e])
              expect(r.weights[n]).toBeCloseTo(probs[n][e], 6)
              expect(r.weights[n]).toBeLessThan(1)
            }
          }
        })
      } finally {
        m.dispose()
      }
    })

    it('noisy top-k: seeded noise while training, clean in evaluation, gradients reach the noise weights', () => {
      const c = tinyConfig({ router: { type: 'noisy_topk' } })
      const m = new MoeModel(c, randomWeights(c, 4, 0.5))
      const ids = randomIds(2, 8, 32)
      try {
        const choices = (training: boolean, seed: number): number[] =>
          tf.tidy(() => m.forward(ids, { training, rng: new Rng(seed) }).routing.flatMap((r) => Array.from(r.decision.topk)))
        expect(choices(true, 1)).toEqual(choices(true, 1))
        expect(choices(false, 1)).toEqual(choices(false, 2))
        expect(choices(true, 1)).not.toEqual(choices(false, 1))
        tf.tidy(() => {
          const r = m.forward(ids, { training: true, rng: new Rng(3) }).routing[0]
          for (let n = 0; n < 16; n++) expect(r.weights[2 * n] + r.weights[2 * n + 1]).toBeCloseTo(1, 6)
          expect(r.noiseStd).toBeDefined()
        })
        const g = lossAndGrads(m, { inputIds: ids, labels: randomIds(2, 8, 32, 5) }, { training: true, rng: new Rng(3) })
        const noiseGrad = g.grads.get('model.layers.0.block_sparse_moe.noise_gate.weight')!
        expect(Math.max(...Array.from(noiseGrad.dataSync(), Math.abs))).toBeGreaterThan(0)
        disposeGrads(g.grads)
      } finally {
        m.dispose()
      }
    })

    it('Shazeer importance and load losses: the objective gains coef × loss; the noise weights learn from the load loss', () => {
      const c = tinyConfig({ router: { type: 'noisy_topk' } })
      const m = new MoeModel(c, randomWeights(c, 4, 0.5))
      const batch = { inputIds: randomIds(2, 8, 32), labels: randomIds(2, 8, 32, 5) }
      const noiseName = 'model.layers.0.block_sparse_moe.noise_gate.weight'
      const opts = () => ({ training: true, rng: new Rng(3) })
      try {
        const off = lossAndGrads(m, batch, opts())
        expect(off.parts.importance).toBeGreaterThan(0.01)
        expect(off.parts.load).toBeGreaterThan(0.01)
        m.setKnobs({ routerImportanceLossCoef: 0.3, routerLoadLossCoef: 0.7 })
        const on = lossAndGrads(m, batch, opts())
        // The same routing and loss parts; the objective gains exactly the weighted terms.
        expect(on.parts.ce).toBe(off.parts.ce)
        expect(on.parts.importance).toBe(off.parts.importance)
        expect(on.parts.load).toBe(off.parts.load)
        expect(on.parts.loss - off.parts.loss).toBeCloseTo(0.3 * off.parts.importance + 0.7 * off.parts.load, 5)

        // The load loss alone: what it adds to the noise weights' gradient is the gradient of the
        // smooth (normal-CDF) load loss, and it is not zero (the assignment counts have none).
        m.setKnobs({ routerImportanceLossCoef: 0, routerLoadLossCoef: 1 })
        const load = lossAndGrads(m, batch, opts())
        const added = tf.tidy(() => tf.sub(load.grads.get(noiseName)!, off.grads.get(noiseName)!).dataSync())
        const noiseVar = m.params.get(noiseName)!
        const direct = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => loadLoss(m.forward(batch.inputIds, opts()).routing), [noiseVar])
          expect(value.dataSync()[0]).toBeCloseTo(off.parts.load, 6)
          return grads[noiseVar.name].dataSync()
        })
        const scale = Math.max(...Array.from(direct, Math.abs))
        expect(scale).toBeGreaterThan(1e-4)
        expect(maxAbsDiff(added, direct)).toBeLessThan(1e-5 * Math.max(1, scale))
        for (const r of [off, on, load]) disposeGrads(r.grads)
      } finally {
        m.dispose()
      }
    })

    it('noisy top-k ranks by the noisy logits while training and by the clean ones in evaluation; gates softmax over the chosen', () => {
      const c = tinyConfig({ router: { type: 'noisy_topk' } })
      const m = new MoeModel(c, randomWeights(c, 4, 0.5))
      try {
        tf.tidy(() => {
          const N = 12
          const h = tf.randomNormal([N, 16], 0, 1, 'float32', 21) as tf.Tensor2D
          const opts = { capacityFactor: null, tokenIds: new Int32Array(N) }
          const topkOf = (scores: number[][]) => scores.flatMap((row) => Array.from(topkRows(row, 1, row.length, 2)))
          const train = moeBlock(c, 0, m.weightSource, h, { ...opts, training: true, rng: new Rng(5) })
          const noisy = train.routing.noisyLogits!.arraySync()
          expect(Array.from(train.routing.decision.topk)).toEqual(topkOf(noisy))
          // the noise changed some choice, else this test would not tell noisy from clean ranking
          expect(topkOf(noisy)).not.toEqual(topkOf(train.routing.routerLogits.arraySync()))
          // each token's weights: softmax of its noisy logits over its chosen experts
          for (let n = 0; n < N; n++) {
            const [a, b] = [train.routing.decision.topk[2 * n], train.routing.decision.topk[2 * n + 1]]
            const ea = Math.exp(noisy[n][a])
            const eb = Math.exp(noisy[n][b])
            expect(train.routing.weights[2 * n]).toBeCloseTo(ea / (ea + eb), 5)
          }
          const evalRun = moeBlock(c, 0, m.weightSource, h, { ...opts, training: false })
          expect(evalRun.routing.noisyLogits).toBeUndefined()
          expect(Array.from(evalRun.routing.decision.topk)).toEqual(topkOf(evalRun.routing.routerLogits.arraySync()))
        })
      } finally {
        m.dispose()
      }
    })

    it('router jitter (HF Mixtral router_jitter_noise): while training, router and experts see h · U(1 − j, 1 + j); never in evaluation', () => {
      const j = 0.3
      const c = tinyConfig({ router: { jitter: j } })
      const plain = tinyConfig()
      const m = new MoeModel(c, randomWeights(c, 6, 0.5))
      try {
        tf.tidy(() => {
          const [N, H] = [10, 16]
          const h = tf.randomNormal([N, H], 0, 1, 'float32', 13) as tf.Tensor2D
          const opts = { capacityFactor: null, tokenIds: new Int32Array(N) }
          const u = new Rng(9).uniformArray(N * H, 1 - j, 1 + j)
          expect(Math.min(...u)).toBeGreaterThanOrEqual(1 - j)
          expect(Math.max(...u)).toBeLessThanOrEqual(1 + j)
          expect(Math.max(...u) - Math.min(...u)).toBeGreaterThan(j)
          const jittered = tf.mul(h, tf.tensor2d(u, [N, H])) as tf.Tensor2D
          const train = moeBlock(c, 0, m.weightSource, h, { ...opts, training: true, rng: new Rng(9) })
          const want = moeBlock(plain, 0, m.weightSource, jittered, { ...opts, training: false })
          expect(maxAbsDiff(train.routing.routerLogits.dataSync(), want.routing.routerLogits.dataSync())).toBeLessThan(1e-5)
          expect(Array.from(train.routing.decision.topk)).toEqual(Array.from(want.routing.decision.topk))
          expect(maxAbsDiff(train.out.dataSync(), want.out.dataSync())).toBeLessThan(1e-5)
          // evaluation: the plain hidden state
          const clean = moeBlock(plain, 0, m.weightSource, h, { ...opts, training: false })
          const evalRun = moeBlock(c, 0, m.weightSource, h, { ...opts, training: false })
          expect(maxAbsDiff(evalRun.out.dataSync(), clean.out.dataSync())).toBe(0)
          expect(maxAbsDiff(train.out.dataSync(), clean.out.dataSync())).toBeGreaterThan(1e-3)
          // no jitter, no dropout, no token drop: training needs no random stream at all
          const noRng = moeBlock(plain, 0, m.weightSource, h, { ...opts, training: true })
          expect(maxAbsDiff(noRng.out.dataSync(), clean.out.dataSync())).toBe(0)
        })
      } finally {
        m.dispose()
      }
    })

    it("expert dropout: while training, each expert's hidden units drop with probability p, the rest scaled by 1/(1 − p); never in evaluation", () => {
      const p = 0.5
      const c = tinyConfig({ numExperts: 1, topK: 1, expertDropout: p })
      const plain = tinyConfig({ numExperts: 1, topK: 1 })
      const m = new MoeModel(c, randomWeights(c, 7, 0.5))
      try {
        tf.tidy(() => {
          const N = 8
          const h = tf.randomNormal([N, 16], 0, 1, 'float32', 17) as tf.Tensor2D
          const opts = { capacityFactor: null, tokenIds: new Int32Array(N) }
          const w = m.weightSource
          const names = ['w1', 'w3', 'w2'].map((x) => w.get(`model.layers.0.block_sparse_moe.experts.0.${x}.weight`)) as tf.Tensor2D[]
          // one expert, weight 1: out = W2 · (mask · silu(W1 h) · W3 h), the mask drawn row by row from the run's stream
          const rng = new Rng(4)
          const g = tf.matMul(h, names[0], false, true)
          const act = tf.mul(tf.mul(g, tf.sigmoid(g)), tf.matMul(h, names[1], false, true)) as tf.Tensor2D
          const mask = Float32Array.from({ length: act.size }, () => (rng.next() >= p ? 1 / (1 - p) : 0))
          const zeros = mask.filter((v) => v === 0).length / mask.length
          expect(zeros).toBeGreaterThan(0.35)
          expect(zeros).toBeLessThan(0.65)
          const want = tf.matMul(tf.mul(act, tf.tensor2d(mask, act.shape)), names[2], false, true)
          const train = moeBlock(c, 0, w, h, { ...opts, training: true, rng: new Rng(4) })
          expect(maxAbsDiff(train.out.dataSync(), want.dataSync())).toBeLessThan(1e-5)
          const clean = moeBlock(plain, 0, w, h, { ...opts, training: false })
          expect(maxAbsDiff(moeBlock(c, 0, w, h, { ...opts, training: false }).out.dataSync(), clean.out.dataSync())).toBe(0)
          expect(maxAbsDiff(train.out.dataSync(), clean.out.dataSync())).toBeGreaterThan(1e-3)
          expect(() => moeBlock(c, 0, w, h, { ...opts, training: true })).toThrow(
            'training with router noise, jitter or expert dropout needs a seeded rng',
          )
        })
      } finally {
        m.dispose()
      }
    })

    it('hash router: choices follow token ids only, weights 1/k', () => {
      const c = tinyConfig({ router: { type: 'hash', hashSeed: 3 } })
      const a = new MoeModel(c, randomWeights(c, 1))
      const b = new MoeModel(c, randomWeights(c, 2))
      const ids = [[3, 5, 3, 9, 5, 3]]
      try {
        tf.tidy(() => {
          const ra = a.forward(ids).routing
          const rb = b.forward(ids).routing
          for (let l = 0; l < ra.length; l++) {
            expect(Array.from(ra[l].decision.topk)).toEqual(Array.from(rb[l].decision.topk))
            expect(Array.from(ra[l].decision.topk.slice(0, 2))).toEqual(hashExperts(3, 4, 2, 3))
            expect(Array.from(ra[l].decision.topk.slice(4, 6))).toEqual(hashExperts(3, 4, 2, 3))
            expect(Array.from(ra[l].weights)).toEqual(new Array(12).fill(0.5))
            // No learned router: statistics from the assignment (even over k experts), no router read.
            expect(ra[l].learned).toBe(false)
            expect(ra[l].entropy).toBeCloseTo(Math.log(2), 6)
          }
        })
        const g = lossAndGrads(a, { inputIds: ids, labels: ids }, { training: true, rng: new Rng(1) })
        expect(Number.isFinite(g.parts.loss)).toBe(true)
        // No auxiliary losses, and the unused gate gets no gradient.
        expect(g.parts.aux).toBe(0)
        expect(g.parts.z).toBe(0)
        expect(g.parts.importance).toBe(0)
        expect(g.parts.load).toBe(0)
        const gate = g.grads.get('model.layers.0.block_sparse_moe.gate.weight')!
        expect(tf.max(tf.abs(gate)).dataSync()[0]).toBe(0)
        disposeGrads(g.grads)
      } finally {
        a.dispose()
        b.dispose()
      }
    })

    it('softmax top-k with and without renormalisation', () => {
      for (const norm of [true, false]) {
        const c = tinyConfig({ family: 'olmoe', normTopkProb: norm, qkNorm: 'projection', numKvHeads: 4 })
        const m = new MoeModel(c, randomWeights(c, 6))
        try {
          tf.tidy(() => {
            const r = m.forward(randomIds(1, 4, 32)).routing[0]
            const probs = tf.softmax(r.routerLogits).arraySync()
            for (let n = 0; n < 4; n++) {
              const [e0, e1] = [r.decision.topk[2 * n], r.decision.topk[2 * n + 1]]
              const s = norm ? probs[n][e0] + probs[n][e1] : 1
              expect(r.weights[2 * n]).toBeCloseTo(probs[n][e0] / s, 6)
              expect(r.weights[2 * n + 1]).toBeCloseTo(probs[n][e1] / s, 6)
            }
          })
        } finally {
          m.dispose()
        }
      }
    })

    it('creates no lasting tensors: forward, gradients and generation', () => {
      const m = tinyModel({
        router: { type: 'noisy_topk', capacityFactorTrain: 1 },
        expertDropout: 0.1,
        hiddenDropout: 0.1,
        attentionDropout: 0.1,
      })
      const batch = { inputIds: randomIds(2, 6, 32), labels: randomIds(2, 6, 32, 2) }
      try {
        // warm up (backends allocate lazily), then count
        disposeGrads(lossAndGrads(m, batch, { training: true, rng: new Rng(1) }).grads)
        const before = tf.memory().numTensors
        for (let i = 0; i < 3; i++) {
          tf.tidy(() => {
            m.forward(batch.inputIds)
          })
          disposeGrads(lossAndGrads(m, batch, { training: true, rng: new Rng(i) }).grads)
          generateGreedy(m, [1, 2, 3], { maxNewTokens: 4, stopTokens: [] })
        }
        expect(tf.memory().numTensors).toBe(before)
      } finally {
        m.dispose()
      }
    })
  })
}

describe('auxiliary losses (hand-computed)', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  function fakeRouting(logits: number[][], topk: number[], k: number): Parameters<typeof loadBalancingLoss>[0][number] {
    const N = logits.length
    const E = logits[0].length
    const d = decideRouting(null, N, E, { type: 'hash', k, capacityFactor: null, tokenIds: new Int32Array(N) })
    d.topk.set(topk)
    const rl = tf.tensor2d(logits)
    return {
      layer: 0,
      routerLogits: rl,
      gates: tf.softmax(rl) as tf.Tensor2D,
      decision: d,
      weights: new Float32Array(N * k),
      entropy: 0,
      learned: true,
    }
  }

  it('load balancing = E · Σ f·P as HF computes it', () => {
    tf.tidy(() => {
      // 2 tokens, 2 experts, top-1: logits 0 → P = [0.5, 0.5]; both choose e0 → f = [1, 0]; loss = 2 · 0.5 = 1
      const r = fakeRouting(
        [
          [0, 0],
          [0, 0],
        ],
        [0, 0],
        1,
      )
      expect(loadBalancingLoss([r]).dataSync()[0]).toBeCloseTo(1, 6)
      // perfectly balanced choices with uniform P also give 1; skewed P with skewed f gives more
      const r2 = fakeRouting(
        [
          [Math.log(3), 0],
          [Math.log(3), 0],
        ],
        [0, 0],
        1,
      )
      expect(loadBalancingLoss([r2]).dataSync()[0]).toBeCloseTo(2 * 0.75, 6)
    })
  })

  it('z-loss = mean logsumexp²', () => {
    tf.tidy(() => {
      const r = fakeRouting(
        [
          [0, 0],
          [1, 1],
        ],
        [0, 1],
        1,
      )
      const expected = (Math.log(2) ** 2 + (1 + Math.log(2)) ** 2) / 2
      expect(routerZLoss([r]).dataSync()[0]).toBeCloseTo(expected, 5)
    })
  })

  it('importance and load losses are CV² of the per-expert sums', () => {
    tf.tidy(() => {
      expect(cvSquared(tf.tensor1d([1, 1, 1, 1])).dataSync()[0]).toBeCloseTo(0, 6)
      // [2, 0]: mean 1, variance 1 → 1
      expect(cvSquared(tf.tensor1d([2, 0])).dataSync()[0]).toBeCloseTo(1, 5)
      const r = fakeRouting(
        [
          [0, 0],
          [0, 0],
        ],
        [0, 0],
        1,
      )
      // gates = softmax → importance [1, 1] → 0; load counts [2, 0] → 1
      expect(importanceLoss([r]).dataSync()[0]).toBeCloseTo(0, 6)
      expect(loadLoss([r]).dataSync()[0]).toBeCloseTo(1, 5)
    })
  })

  it('importance = CV² of the gate sums, averaged over learned layers (hash layers take none)', () => {
    tf.tidy(() => {
      const r = fakeRouting(
        [
          [0, 0],
          [0, 0],
        ],
        [0, 0],
        1,
      )
      r.gates = tf.tensor2d([
        [0.7, 0.3],
        [0.6, 0.4],
      ])
      // sums [1.3, 0.7]: mean 1, variance 0.09 → 0.09
      expect(importanceLoss([r]).dataSync()[0]).toBeCloseTo(0.09, 6)
      const other = {
        ...r,
        layer: 1,
        gates: tf.tensor2d([
          [1, 0],
          [1, 0],
        ]),
      } // sums [2, 0] → 1
      expect(importanceLoss([r, other]).dataSync()[0]).toBeCloseTo((0.09 + 1) / 2, 6)
      expect(importanceLoss([r, { ...other, learned: false }]).dataSync()[0]).toBeCloseTo(0.09, 6)
      expect(loadLoss([{ ...other, learned: false }]).dataSync()[0]).toBe(0)
    })
  })

  it('routing entropy: the mean over tokens of the router softmax entropy (nats)', () => {
    // Token 0 is the unit vector e0 and the gate's first column is ln p: its probabilities are p.
    // Token 1 is e1 and the gate's second column is 0: uniform over 4 experts, entropy ln 4.
    const c = tinyConfig({})
    const p = [0.1, 0.2, 0.3, 0.4]
    const w = randomWeights(c, 1)
    const gate = new Float32Array(4 * 16)
    p.forEach((v, e) => (gate[e * 16] = Math.log(v)))
    w.set('model.layers.0.block_sparse_moe.gate.weight', gate)
    const h = new Float32Array(2 * 16)
    h[0] = 1
    h[16 + 1] = 1
    tf.tidy(() => {
      const tensors = new Map([...w].map(([n, a]) => [n, tf.tensor(a, paramSpecs(c).find((s) => s.name === n)!.shape)]))
      const r = moeBlock(
        c,
        0,
        plainWeights((n) => tensors.get(n)!),
        tf.tensor2d(h, [2, 16]),
        {
          training: false,
          capacityFactor: null,
          tokenIds: new Int32Array(2),
        },
      ).routing
      const hp = -p.reduce((a, v) => a + v * Math.log(v), 0)
      expect(r.entropy).toBeCloseTo((hp + Math.log(4)) / 2, 5)
      // token 0 takes experts 3 and 2 (the largest p), renormalised
      expect(Array.from(r.decision.topk.slice(0, 2))).toEqual([3, 2])
      expect(r.weights[0]).toBeCloseTo(0.4 / 0.7, 5)
    })
  })

  it('load thresholds: the k-th largest noisy logit among the other experts', () => {
    // k = 2 over [0.3, 0.9, 0.1, 0.5]: chosen experts (1, 3) compare with the 3rd largest (0.3), the others with the 2nd (0.5)
    expect(Array.from(loadThresholds([0.3, 0.9, 0.1, 0.5], 1, 4, 2))).toEqual([0.5, 0.3, 0.5, 0.3].map(Math.fround))
    expect(Array.from(loadThresholds([2, 1, 3], 1, 3, 1))).toEqual([3, 3, 2])
  })

  it('smooth load loss (noisy top-k while training) = CV² of Σ_n Φ((clean − threshold) / noise)', () => {
    // erf by Abramowitz & Stegun 7.1.26 (error below 1.5e-7)
    const erf = (x: number): number => {
      const s = Math.sign(x)
      const a = Math.abs(x)
      const t = 1 / (1 + 0.3275911 * a)
      const y = 1 - ((((1.061405429 * t - 1.453152073) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-a * a)
      return s * y
    }
    const phi = (z: number): number => 0.5 * (1 + erf(z / Math.SQRT2))
    tf.tidy(() => {
      const clean = [
        [1, 0, -1],
        [0, 0.5, 0],
      ]
      const noisy = [
        [1.2, 0.1, -0.5],
        [-0.3, 0.9, 0.2],
      ]
      const std = [
        [1, 1, 1],
        [0.5, 2, 1],
      ]
      const r = fakeRouting(clean, [0, 1], 1)
      r.noisyLogits = tf.tensor2d(noisy)
      r.noiseStd = tf.tensor2d(std)
      // top-1 thresholds: row 0 → [0.1, 1.2, 1.2], row 1 → [0.9, 0.2, 0.9]
      const z = [
        [(1 - 0.1) / 1, (0 - 1.2) / 1, (-1 - 1.2) / 1],
        [(0 - 0.9) / 0.5, (0.5 - 0.2) / 2, (0 - 0.9) / 1],
      ]
      const load = [0, 1, 2].map((e) => phi(z[0][e]) + phi(z[1][e]))
      const mean = load.reduce((a, b) => a + b) / 3
      const cv2 = load.reduce((a, b) => a + (b - mean) ** 2, 0) / 3 / mean ** 2
      expect(loadLoss([r]).dataSync()[0]).toBeCloseTo(cv2, 5)
      // the counts alone ([1, 1, 0]) would give 0.5
      expect(cv2).not.toBeCloseTo(0.5, 2)
      // thresholds read earlier (asynchronously) give the same value
      const t = loadThresholds(noisy.flat(), 2, 3, 1)
      expect(loadLoss([r], new Map([[0, t]])).dataSync()[0]).toBeCloseTo(cv2, 5)
    })
  })
})
