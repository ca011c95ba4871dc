/**
 * The loss functions on hand-computed cases: causal-LM cross-entropy (shift, ignore index, bad
 * labels), the layer-by-layer shares of the load-balancing and z losses, choice fractions, and
 * when the load loss takes its smooth estimator.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import {
  causalLmLoss,
  choiceFractions,
  IGNORE_INDEX,
  loadBalancingLoss,
  loadBalancingTerm,
  loadLoss,
  loadTerm,
  loadThresholds,
  loadThresholdsAsync,
  routerZLoss,
  routerZTerm,
  smoothLoad,
} from '../../../src/main/engine/losses'
import type { LayerRouting } from '../../../src/main/engine/moe'
import { decideRouting } from '../../../src/main/engine/router'
import { nativeMatMul, useNativeMatMul } from '../../../src/main/engine/nativeMatMul'
import { useWasmMatMul, wasmMatMulPaths } from './helpers'

beforeAll(async () => {
  await initBackend('cpu')
})

/** A learned layer's routing with the given router logits and choices (no capacity). */
function routing(layer: number, logits: number[][], topk: number[], k: number, extra: Partial<LayerRouting> = {}): LayerRouting {
  const N = logits.length
  const E = logits[0].length
  const d = decideRouting(null, N, E, { type: 'hash', k, capacityFactor: null, tokenIds: new Int32Array(N) })
  d.topk.set(topk)
  const rl = tf.tensor2d(logits)
  return {
    layer,
    routerLogits: rl,
    gates: tf.softmax(rl) as tf.Tensor2D,
    decision: d,
    weights: new Float32Array(N * k),
    entropy: 0,
    learned: true,
    ...extra,
  }
}

const logSoftmax = (row: number[]): number[] => {
  const m = Math.max(...row)
  const lse = m + Math.log(row.reduce((a, v) => a + Math.exp(v - m), 0))
  return row.map((v) => v - lse)
}

// B = 2, T = 3, V = 3; targets (b0, t0) -> 2, (b0, t1) -> 1, (b1, t1) -> 0; (b1, t0) is ignored
const CE_CASE = {
  logits: [
    [
      [1, 0, -1],
      [0, 2, 0],
      [5, 5, 5],
    ],
    [
      [0.5, 0.5, 3],
      [-1, 1, 0],
      [9, 9, 9],
    ],
  ],
  labels: [
    [7, 2, 1],
    [7, -100, 0],
  ],
}

describe('causal-LM cross-entropy', () => {
  it('position t predicts labels[t+1]; the mean over targets that are not -100', () => {
    expect(IGNORE_INDEX).toBe(-100)
    const { logits, labels } = CE_CASE
    tf.tidy(() => {
      const r = causalLmLoss(tf.tensor3d(logits), labels)
      // targets: (b0, t0) → 2, (b0, t1) → 1, (b1, t1) → 0; (b1, t0) is ignored; the last position predicts nothing
      const want = -(logSoftmax(logits[0][0])[2] + logSoftmax(logits[0][1])[1] + logSoftmax(logits[1][1])[0]) / 3
      expect(r.targets).toBe(3)
      expect(r.loss.dataSync()[0]).toBeCloseTo(want, 5)
    })
  })

  it('its gradient is (softmax - one-hot) / targets on rows with a target, 0 elsewhere, on cpu and on wasm', async () => {
    const { logits, labels } = CE_CASE
    // targets: (b0, t0) -> 2, (b0, t1) -> 1, (b1, t1) -> 0
    const targetOf = (b: number, t: number): number | undefined =>
      (({ '0,0': 2, '0,1': 1, '1,1': 0 }) as Record<string, number>)[`${b},${t}`]
    const want: number[] = []
    logits.forEach((row, b) =>
      row.forEach((l, t) => {
        const y = targetOf(b, t)
        const p = logSoftmax(l).map(Math.exp)
        l.forEach((_, v) => want.push(y === undefined ? 0 : (p[v] - (v === y ? 1 : 0)) / 3))
      }),
    )
    const runs: [string, () => Promise<() => void>][] = [['cpu', async () => (await initBackend('cpu'), () => {})]]
    for (const path of await wasmMatMulPaths()) runs.push([`wasm (${path})`, () => useWasmMatMul(path)])
    for (const [backend, start] of runs) {
      const restore = await start()
      try {
        const x = tf.variable(tf.tensor3d(logits), true, `ceLogits-${backend}`)
        const { value, grads } = tf.variableGrads(() => causalLmLoss(x as tf.Variable<tf.Rank.R3>, labels).loss, [x])
        const wantLoss = -(logSoftmax(logits[0][0])[2] + logSoftmax(logits[0][1])[1] + logSoftmax(logits[1][1])[0]) / 3
        expect(value.dataSync()[0], backend).toBeCloseTo(wantLoss, 5)
        const got = Array.from(grads[x.name].dataSync())
        got.forEach((g, i) => expect(g, `${backend} gradient ${i}`).toBeCloseTo(want[i], 6))
        tf.dispose([x, value, ...Object.values(grads)])
      } finally {
        restore()
        await initBackend('cpu')
      }
    }
  })

  it("a target far below the rest (p under float32's range) costs its full logsumexp, not Infinity, on every path", async () => {
    // row 0: target 1 at 2 (loss logsumexp(0, 2, 1) − 2); row 1: target 1 at 5 against two at 200
    // (p = e^-195 / 2: loss 195 + ln 2); row 2 predicts nothing, but lies next to row 1 in memory
    const logits = [
      [
        [0, 2, 1],
        [200, 5, 200],
        [300, 0, 0],
      ],
    ]
    const labels = [[0, 1, 1]]
    const want = (Math.log(1 + Math.exp(2) + Math.exp(1)) - 2 + 195 + Math.log(2)) / 2
    const runs: [string, () => Promise<() => void>][] = [['cpu', async () => (await initBackend('cpu'), () => {})]]
    for (const path of await wasmMatMulPaths()) runs.push([`wasm (${path})`, () => useWasmMatMul(path)])
    for (const [backend, start] of runs) {
      const restore = await start()
      try {
        const loss = causalLmLoss(tf.tensor3d(logits), labels).loss
        expect(loss.dataSync()[0], backend).toBeCloseTo(want, 4)
        if (backend === 'wasm (native)') {
          // its softmax is the native one (one call)
          const real = nativeMatMul()!
          let calls = 0
          useNativeMatMul({ ...real, softmax: (p) => (calls++, real.softmax(p)) })
          try {
            expect(causalLmLoss(tf.tensor3d(logits), labels).loss.dataSync()[0]).toBeCloseTo(want, 4)
          } finally {
            useNativeMatMul(real)
          }
          expect(calls).toBe(1)
        }
      } finally {
        restore()
        await initBackend('cpu')
      }
    }
  })

  it('two positions are enough for one target; fewer (none at all included), or no target, give 0 and no NaN', () => {
    tf.tidy(() => {
      const two = causalLmLoss(
        tf.tensor3d([
          [
            [0, Math.log(3)],
            [0, 0],
          ],
        ]),
        [[0, 1]],
      )
      expect(two.targets).toBe(1)
      expect(two.loss.dataSync()[0]).toBeCloseTo(-Math.log(3 / 4), 6)
      const empty = causalLmLoss(tf.zeros([1, 0, 2]) as tf.Tensor3D, [[]])
      expect(empty.targets).toBe(0)
      expect(empty.loss.dataSync()[0]).toBe(0)
      const one = causalLmLoss(tf.tensor3d([[[0, 1]]]), [[1]])
      expect(one.targets).toBe(0)
      expect(one.loss.dataSync()[0]).toBe(0)
      const none = causalLmLoss(
        tf.tensor3d([
          [
            [0, 1],
            [1, 0],
          ],
        ]),
        [[-100, -100]],
      )
      expect(none.targets).toBe(0)
      expect(none.loss.dataSync()[0]).toBe(0)
    })
  })

  it('refuses labels of another shape, and labels that are not token ids or -100, naming them', () => {
    tf.tidy(() => {
      const logits = tf.zeros([2, 3, 4]) as tf.Tensor3D
      expect(() => causalLmLoss(logits, [[1, 2, 3]])).toThrow('labels must be [2, 3] like input_ids')
      expect(() =>
        causalLmLoss(logits, [
          [1, 2, 3],
          [1, 2],
        ]),
      ).toThrow('labels must be [2, 3] like input_ids')
      const bad =
        (y: number): (() => unknown) =>
        () =>
          causalLmLoss(logits, [
            [0, 0, 0],
            [0, 0, y],
          ])
      expect(bad(4)).toThrow('labels[1][2] = 4 is not a token id below 4 or -100')
      expect(bad(-1)).toThrow('labels[1][2] = -1 is not a token id below 4 or -100')
      expect(bad(1.5)).toThrow('labels[1][2] = 1.5 is not a token id below 4 or -100')
      expect(bad(3)).not.toThrow()
    })
  })
})

describe('layer-by-layer shares of the auxiliary losses', () => {
  it('choice fractions over the learned layers; the load-balancing and z terms sum to the whole losses', () => {
    tf.tidy(() => {
      const a = routing(
        0,
        [
          [0, 1, 2],
          [1, 0, 0],
        ],
        [2, 1, 0, 2],
        2,
      )
      const b = routing(
        1,
        [
          [3, 0, 0],
          [0, 0, 1],
          [0, 2, 0],
        ],
        [0, 1, 2, 0, 1, 0],
        2,
      )
      const hash = { ...routing(2, [[0, 0, 0]], [1, 2], 2), learned: false }
      const { f, rows } = choiceFractions([a, b, hash])
      // 5 rows of learned layers; choices: e0 ×4, e1 ×3, e2 ×3 (the hash layer's are not counted)
      expect(rows).toBe(5)
      expect(Array.from(f)).toEqual([4 / 5, 3 / 5, 3 / 5].map(Math.fround))
      const whole = loadBalancingLoss([a, b, hash]).dataSync()[0]
      const parts = loadBalancingTerm(a.routerLogits, f, rows).dataSync()[0] + loadBalancingTerm(b.routerLogits, f, rows).dataSync()[0]
      expect(parts).toBeCloseTo(whole, 6)
      // by hand: E · Σ_e f_e · mean_n p_ne with f over all choices of both layers
      const p = [a, b].flatMap((r) => r.routerLogits.arraySync().map((row) => logSoftmax(row).map(Math.exp)))
      const P = [0, 1, 2].map((e) => p.reduce((s, row) => s + row[e], 0) / 5)
      expect(whole).toBeCloseTo(3 * (P[0] * (4 / 5) + P[1] * (3 / 5) + P[2] * (3 / 5)), 5)
      const z = routerZLoss([a, b, hash]).dataSync()[0]
      expect(routerZTerm(a.routerLogits, rows).dataSync()[0] + routerZTerm(b.routerLogits, rows).dataSync()[0]).toBeCloseTo(z, 5)
      // by hand: mean over the 5 rows of logsumexp², logsumexp = x_0 − log p_0
      const lse2 = [a, b].flatMap((r) => r.routerLogits.arraySync().map((row) => (row[0] - logSoftmax(row)[0]) ** 2))
      expect(z).toBeCloseTo(lse2.reduce((s, v) => s + v, 0) / 5, 5)
      expect(choiceFractions([])).toEqual({ f: new Float32Array(0), rows: 0 })
      expect(choiceFractions([hash]).rows).toBe(0)
    })
  })
})

describe('the load loss estimator', () => {
  it('smooth only with noise, noisy logits and k below E; thresholds read asynchronously match', async () => {
    const noisy = [
      [1.2, 0.1, -0.5],
      [-0.3, 0.9, 0.2],
    ]
    const clean = [
      [1, 0, -1],
      [0, 0.5, 0],
    ]
    const std = tf.tensor2d([
      [1, 1, 1],
      [0.5, 2, 1],
    ])
    const noisyT = tf.tensor2d(noisy)
    const base = routing(4, clean, [0, 1], 1)
    const smooth = { ...base, noiseStd: std as tf.Tensor2D, noisyLogits: noisyT as tf.Tensor2D }
    expect(smoothLoad(smooth)).toBe(true)
    expect(smoothLoad(base)).toBe(false)
    expect(smoothLoad({ ...smooth, noiseStd: undefined })).toBe(false)
    expect(smoothLoad({ ...smooth, noisyLogits: undefined })).toBe(false)
    // k = E: every expert is chosen, no threshold exists: the counts, not NaN
    const all = routing(4, clean, [0, 1, 2, 1, 0, 2], 3, { noiseStd: std as tf.Tensor2D, noisyLogits: noisyT as tf.Tensor2D })
    expect(smoothLoad(all)).toBe(false)
    expect(loadLoss([all]).dataSync()[0]).toBe(0)

    const t = await loadThresholdsAsync([smooth, { ...base, layer: 5 }])
    expect([...t.keys()]).toEqual([4])
    expect(Array.from(t.get(4)!)).toEqual(Array.from(loadThresholds(noisy.flat(), 2, 3, 1)))
    // Without thresholds the term falls back to the counts ([1, 1, 0] → 0.5), with them it is smooth.
    expect(loadTerm(smooth).dataSync()[0]).toBeCloseTo(0.5, 5)
    expect(loadTerm(smooth, t.get(4)).dataSync()[0]).not.toBeCloseTo(0.5, 2)
    expect(loadTerm(smooth, t.get(4)).dataSync()[0]).toBeCloseTo(loadLoss([smooth]).dataSync()[0], 6)
    tf.dispose([std, noisyT])
  })
})
