/**
 * Routing decisions: which experts each token goes to, which assignments an expert's capacity
 * drops, and the dispatch plan that moves tokens to experts and back.
 *
 * Decisions are discrete and carry no gradient, so they are made here in JavaScript on the router
 * scores read back from the backend. The routing weights that multiply expert outputs are computed
 * as tensors in moe.ts, so gradients reach the router through them (as in HF: top-k has no
 * gradient, the softmax does).
 */
import type { RouterType } from '../../shared/modelConfig'

export interface RoutingDecision {
  /** Tokens (rows), experts, and choices per token. */
  N: number
  E: number
  k: number
  /** (N, k) chosen experts per token, in descending score order. */
  topk: Int32Array
  /** (N, k) 1 where the assignment was kept, 0 where an expert's capacity dropped it. */
  kept: Uint8Array
  /** Capacity per expert, or null when dropless. */
  capacity: number | null
  /** Number of dropped (token, expert) assignments. */
  dropped: number
  /** Tokens with no kept assignment at all (they pass through the residual only). */
  droppedTokens: number
  /** (A) token row of each kept assignment, grouped by expert, token order within an expert. */
  index: Int32Array
  /** (E + 1) start of each expert's rows in `index`. */
  offsets: Int32Array
  /** k arrays (N): position in `index` of token n's j-th kept assignment, or A if none. */
  inverses: Int32Array[]
  /** (A) row of the assignment in the flattened (N·E) routing-weight matrix: token·E + expert. */
  flatIndex: Int32Array
  /** (N·E) position in `index` of (token, expert), or A if not assigned. */
  flatInverse: Int32Array
  /** (E) kept assignments per expert. */
  counts: Int32Array
}

export interface RoutingOptions {
  type: RouterType
  k: number
  /** null = dropless. */
  capacityFactor: number | null
  /** Token ids of the rows, for hash routing. */
  tokenIds?: Int32Array
  hashSeed?: number
  /** (N) 1 for a real token, 0 for padding: padding is not routed and takes no capacity. */
  valid?: Uint8Array
}

/** Expert capacity as in Switch/GShard: ceil(factor · tokens · k / experts), at least 1. */
export function expertCapacity(factor: number, N: number, k: number, E: number): number {
  return Math.max(1, Math.ceil((factor * N * k) / E))
}

/** A 32-bit integer hash (lowbias32) used by hash routing: fixed, seedable, well mixed. */
export function hash32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0
  x = Math.imul(x, 0x7feb352d) >>> 0
  x = (x ^ (x >>> 15)) >>> 0
  x = Math.imul(x, 0x846ca68b) >>> 0
  return (x ^ (x >>> 16)) >>> 0
}

/** The k experts hash routing assigns to a token id: the first k of a hash-seeded shuffle. */
export function hashExperts(tokenId: number, E: number, k: number, seed: number): number[] {
  const order = Array.from({ length: E }, (_, i) => i)
  let h = hash32((tokenId ^ Math.imul(seed + 1, 0x9e3779b1)) >>> 0)
  for (let j = 0; j < k; j++) {
    h = hash32((h + j + 1) >>> 0)
    const r = j + (h % (E - j))
    ;[order[j], order[r]] = [order[r], order[j]]
  }
  return order.slice(0, k)
}

/**
 * Top-k of each row of scores (N, E), descending, lowest expert index first on ties
 * (torch.topk's order for distinct values).
 */
export function topkRows(scores: ArrayLike<number>, N: number, E: number, k: number): Int32Array {
  if (!(k >= 1 && k <= E)) throw new RangeError(`top-k: k must be in [1, ${E}], got ${k}`)
  const out = new Int32Array(N * k)
  const chosen = new Uint8Array(E)
  for (let n = 0; n < N; n++) {
    chosen.fill(0)
    const row = n * E
    for (let j = 0; j < k; j++) {
      let best = -1
      let bestV = -Infinity
      for (let e = 0; e < E; e++) {
        const v = scores[row + e]
        if (!chosen[e] && (best < 0 || v > bestV || (Number.isNaN(bestV) && !Number.isNaN(v)))) {
          best = e
          bestV = v
        }
      }
      chosen[best] = 1
      out[n * k + j] = best
    }
  }
  return out
}

/**
 * Decides routing for N tokens over E experts from the scores (N, E) the router type ranks by
 * (probabilities, or noisy logits). Capacity is filled slot-major (every token's first choice
 * before any second choice), tokens in order, as GShard does.
 */
export function decideRouting(scores: ArrayLike<number> | null, N: number, E: number, opts: RoutingOptions): RoutingDecision {
  const { k } = opts
  let topk: Int32Array
  if (opts.type === 'hash') {
    if (!opts.tokenIds || opts.tokenIds.length !== N) throw new Error(`hash routing needs the token id of each of the ${N} rows`)
    topk = new Int32Array(N * k)
    for (let n = 0; n < N; n++) topk.set(hashExperts(opts.tokenIds[n], E, k, opts.hashSeed ?? 0), n * k)
  } else {
    if (!scores) throw new Error(`${opts.type} routing needs router scores`)
    topk = topkRows(scores, N, E, k)
  }

  const valid = opts.valid
  if (valid && valid.length !== N) throw new Error(`routing: a validity mask of ${valid.length} rows for ${N} tokens`)
  let real = N
  if (valid) for (let n = 0; n < N; n++) real -= valid[n] ? 0 : 1
  // Capacity counts real tokens only: padding neither takes a slot nor sizes the experts.
  const capacity = opts.capacityFactor == null ? null : expertCapacity(opts.capacityFactor, real, k, E)
  const kept = new Uint8Array(N * k)
  const counts = new Int32Array(E)
  let dropped = 0
  for (let j = 0; j < k; j++) {
    for (let n = 0; n < N; n++) {
      if (valid && !valid[n]) continue
      const e = topk[n * k + j]
      if (capacity === null || counts[e] < capacity) {
        kept[n * k + j] = 1
        counts[e]++
      } else dropped++
    }
  }
  let droppedTokens = 0
  for (let n = 0; n < N; n++) {
    if (valid && !valid[n]) continue
    let any = 0
    for (let j = 0; j < k; j++) any |= kept[n * k + j]
    if (!any) droppedTokens++
  }

  const offsets = new Int32Array(E + 1)
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e] + counts[e]
  const A = offsets[E]
  const index = new Int32Array(A)
  const flatIndex = new Int32Array(A)
  const flatInverse = new Int32Array(N * E).fill(A)
  const inverses = Array.from({ length: k }, () => new Int32Array(N).fill(A))
  const fill = offsets.slice(0, E)
  // Token order within each expert: walk tokens, then their slots.
  for (let n = 0; n < N; n++) {
    for (let j = 0; j < k; j++) {
      if (!kept[n * k + j]) continue
      const e = topk[n * k + j]
      const pos = fill[e]++
      index[pos] = n
      flatIndex[pos] = n * E + e
      flatInverse[n * E + e] = pos
      inverses[j][n] = pos
    }
  }
  return { N, E, k, topk, kept, capacity, dropped, droppedTokens, index, offsets, inverses, flatIndex, flatInverse, counts }
}

/** (N, E) 0/1 mask of chosen experts (before capacity), for the routing-weight computation. */
export function selectionMask(d: RoutingDecision): Float32Array {
  const m = new Float32Array(d.N * d.E)
  for (let n = 0; n < d.N; n++) for (let j = 0; j < d.k; j++) m[n * d.E + d.topk[n * d.k + j]] = 1
  return m
}
