/**
 * moe-products: the matrix products of one MoE layer's experts alone, against its dense twin's, on
 * the native matmul the wasm backend uses (onnxruntime-node's MLAS): what the products by
 * themselves cost, without routing, gather, combine or the elementwise ops around them. The 9
 * products of a SwiGLU forward and backward (gate, up, down; each gradient's input and weight
 * products), three ways:
 *
 * - dense: the dense twin (intermediate = k · expert width), one product each, as the engine runs it;
 * - grouped: 8 experts, top-2, balanced (A/E rows each), as the engine runs them: one run of one
 *   node per expert for a projection, one of two per expert for its gradient (wasmExperts.ts);
 * - batched: the same products as one node per projection over stacked expert weights (E, out,
 *   in), equal rows per expert. The engine keeps each expert's matrices as separate tensors, so it
 *   cannot run this; balanced routing makes it a lower bound (real routing pads each expert to the
 *   fullest one's rows).
 *
 * The three run in turn, round by round (this VM's speed moves from one second to the next);
 * ratios are the medians of each round's ratio to dense. The products write into buffers made
 * once (the engine's outputs are new tensors each step), so each figure is below what a step sees.
 */
import type { MatMulOperands, NativeMatMul } from '../src/main/engine/nativeMatMul'

export interface ProductsResult {
  tokens: number
  hidden: number
  expertWidth: number
  experts: number
  topK: number
  denseUs: number
  groupedUs: number
  batchedUs: number
  groupedRatio: number
  batchedRatio: number
  rounds: number
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

/** The three ways' products of one layer size, each as a function that runs all 9. */
export function productSets(
  nm: NativeMatMul,
  T: number,
  H: number,
  I: number,
  E = 8,
  K = 2,
): Record<'dense' | 'grouped' | 'batched', () => void> & { expertOutputs: Float32Array[] } {
  let seed = 1
  const rnd = (n: number): Float32Array =>
    Float32Array.from({ length: n }, () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31 - 0.5) * 0.1)
  const D = K * I
  const A = T * K
  const c = A / E
  const op = (
    a: Float32Array,
    b: Float32Array,
    out: Float32Array,
    m: number,
    k: number,
    n: number,
    ta = false,
    tb = false,
    batch = 1,
  ): MatMulOperands => ({
    a,
    b,
    out,
    batchA: batch,
    batchB: batch,
    m,
    k,
    n,
    transposeA: ta,
    transposeB: tb,
  })
  // dense: x (T, H); weights (D, H), (D, H), (H, D) as nn.Linear stores them
  const x = rnd(T * H)
  const [wg, wu, wd] = [rnd(D * H), rnd(D * H), rnd(H * D)]
  const [g, u, h, dh, dg] = [rnd(T * D), rnd(T * D), rnd(T * D), rnd(T * D), rnd(T * D)]
  const [y, dy, dx] = [rnd(T * H), rnd(T * H), rnd(T * H)]
  const [dwg, dwu, dwd] = [rnd(D * H), rnd(D * H), rnd(H * D)]
  const dense = (): void => {
    nm.matMul(op(x, wg, g, T, H, D, false, true))
    nm.matMul(op(x, wu, u, T, H, D, false, true))
    nm.matMul(op(h, wd, y, T, D, H, false, true))
    nm.matMulMany([op(dy, wd, dh, T, H, D), op(dy, h, dwd, H, T, D, true)])
    nm.matMulMany([op(dg, wg, dx, T, D, H), op(dg, x, dwg, D, T, H, true)])
    nm.matMulMany([op(dh, wu, dx, T, D, H), op(dh, x, dwu, D, T, H, true)])
  }
  // experts: routed rows xs (A, H) in expert order, c rows each; expert weights (I, H), (I, H), (H, I)
  const xs = rnd(A * H)
  const [gs, us, hs, dhs, dgs] = [rnd(A * I), rnd(A * I), rnd(A * I), rnd(A * I), rnd(A * I)]
  const [ys, dys, dxs] = [rnd(A * H), rnd(A * H), rnd(A * H)]
  const stacked = [rnd(E * I * H), rnd(E * I * H), rnd(E * H * I)]
  const stackedGrads = [rnd(E * I * H), rnd(E * I * H), rnd(E * H * I)]
  const each = (t: Float32Array): Float32Array[] =>
    Array.from({ length: E }, (_, e) => t.subarray((e * t.length) / E, ((e + 1) * t.length) / E))
  const [Wg, Wu, Wd] = stacked.map(each)
  const [dWg, dWu, dWd] = stackedGrads.map(each)
  const rows = (t: Float32Array, e: number, w: number): Float32Array => t.subarray(e * c * w, (e + 1) * c * w)
  const experts = Array.from({ length: E }, (_, e) => e)
  const grouped = (): void => {
    nm.matMulMany(experts.map((e) => op(rows(xs, e, H), Wg[e], rows(gs, e, I), c, H, I, false, true)))
    nm.matMulMany(experts.map((e) => op(rows(xs, e, H), Wu[e], rows(us, e, I), c, H, I, false, true)))
    nm.matMulMany(experts.map((e) => op(rows(hs, e, I), Wd[e], rows(ys, e, H), c, I, H, false, true)))
    nm.matMulMany(
      experts.flatMap((e) => [
        op(rows(dys, e, H), Wd[e], rows(dhs, e, I), c, H, I),
        op(rows(dys, e, H), rows(hs, e, I), dWd[e], H, c, I, true),
      ]),
    )
    nm.matMulMany(
      experts.flatMap((e) => [
        op(rows(dgs, e, I), Wg[e], rows(dxs, e, H), c, I, H),
        op(rows(dgs, e, I), rows(xs, e, H), dWg[e], I, c, H, true),
      ]),
    )
    nm.matMulMany(
      experts.flatMap((e) => [
        op(rows(dhs, e, I), Wu[e], rows(dxs, e, H), c, I, H),
        op(rows(dhs, e, I), rows(xs, e, H), dWu[e], I, c, H, true),
      ]),
    )
  }
  const batched = (): void => {
    nm.matMul(op(xs, stacked[0], gs, c, H, I, false, true, E))
    nm.matMul(op(xs, stacked[1], us, c, H, I, false, true, E))
    nm.matMul(op(hs, stacked[2], ys, c, I, H, false, true, E))
    nm.matMulMany([op(dys, stacked[2], dhs, c, H, I, false, false, E), op(dys, hs, stackedGrads[2], H, c, I, true, false, E)])
    nm.matMulMany([op(dgs, stacked[0], dxs, c, I, H, false, false, E), op(dgs, xs, stackedGrads[0], I, c, H, true, false, E)])
    nm.matMulMany([op(dhs, stacked[1], dxs, c, I, H, false, false, E), op(dhs, xs, stackedGrads[1], I, c, H, true, false, E)])
  }
  return { dense, grouped, batched, expertOutputs: [gs, us, ys, dhs, dxs, ...stackedGrads] }
}

/** The three ways at one layer size, `rounds` rounds after 3 of warm-up. */
export function benchProducts(nm: NativeMatMul, tokens: number, hidden: number, expertWidth: number, rounds = 40): ProductsResult {
  const sets = productSets(nm, tokens, hidden, expertWidth)
  const names = ['dense', 'grouped', 'batched'] as const
  for (let i = 0; i < 3; i++) for (const n of names) sets[n]()
  // The two ways make the same products into the same buffers: a layout slip would time other work.
  sets.grouped()
  const want = sets.expertOutputs.map((o) => o.slice())
  sets.batched()
  sets.expertOutputs.forEach((o, i) => {
    const worst = o.reduce((m, v, j) => Math.max(m, Math.abs(v - want[i][j])), 0)
    if (!(worst <= 1e-4)) throw new Error(`moe-products: batched output ${i} differs from grouped by ${worst}`)
  })
  const us: Record<(typeof names)[number], number[]> = { dense: [], grouped: [], batched: [] }
  for (let r = 0; r < rounds; r++)
    for (const n of names) {
      const t0 = performance.now()
      sets[n]()
      us[n].push((performance.now() - t0) * 1000)
    }
  const ratio = (n: 'grouped' | 'batched'): number => median(us[n].map((v, i) => v / us.dense[i]))
  return {
    tokens,
    hidden,
    expertWidth,
    experts: 8,
    topK: 2,
    denseUs: median(us.dense),
    groupedUs: median(us.grouped),
    batchedUs: median(us.batched),
    groupedRatio: ratio('grouped'),
    batchedRatio: ratio('batched'),
    rounds,
  }
}
