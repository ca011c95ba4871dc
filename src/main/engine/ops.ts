/**
 * Differentiable building blocks that every TF.js backend can run forward and backward.
 *
 * TF.js lacks gradients for TopK and Equal, and its wasm backend lacks UnsortedSegmentSum (the
 * gradient of gather). So routing decisions are made in JavaScript on downloaded router
 * probabilities (they carry no gradient anyway), and token dispatch is a pair of gathers whose
 * backward passes are gathers too: a token occupies at most one row per expert, so the transpose
 * of a dispatch is a gather by the inverse index (with a zero row for "not routed").
 */
import * as tf from '@tensorflow/tfjs'
import { matMulWasm } from './wasmExperts'
import { nativeMatMul } from './nativeMatMul'
import { custom, runKernel } from './kernelCall'
import type { RoutingDecision } from './router'
import {
  addRowsBack,
  COMBINE,
  COMBINE_GRAD,
  COPY,
  fusedWasmKernels,
  GATHER_ROWS,
  GATHER_SUM,
  SCATTER_ADD_ROWS,
  scatterAddRows,
  SILU_MUL,
  SILU_MUL_GRAD,
} from './wasmKernels'

/**
 * Backends whose tensors live in this process's memory: there, copying rows in JavaScript beats
 * their GatherV2 kernels by an order of magnitude (measured on wasm: ~2 ms for a 512×128 gather).
 */
function hostBackend(): boolean {
  const b = tf.getBackend()
  return b === 'wasm' || b === 'cpu'
}

/** Rows `index` of x (R, H) → (A, H). */
function gatherRows(x: tf.Tensor2D, index: Int32Array): tf.Tensor2D {
  if (!hostBackend()) return tf.gather(x, tf.tensor1d(index, 'int32'))
  if (tf.getBackend() === 'wasm') return runKernel(GATHER_ROWS, { x }, { index }) as tf.Tensor2D
  const H = x.shape[1]
  const src = x.dataSync() as Float32Array
  const out = new Float32Array(index.length * H)
  for (let a = 0; a < index.length; a++) out.set(src.subarray(index[a] * H, index[a] * H + H), a * H)
  return tf.tensor2d(out, [index.length, H])
}

/** Σ_j [z; 0][inverse_j]: rows of z (A, H) summed back to their R origins (index A = none) → (R, H). */
function gatherSum(z: tf.Tensor2D, inverses: Int32Array[]): tf.Tensor2D {
  const [A, H] = z.shape
  if (tf.getBackend() === 'wasm') return runKernel(GATHER_SUM, { z }, { inverses }) as tf.Tensor2D
  if (hostBackend()) {
    const src = z.dataSync() as Float32Array
    const R = inverses[0].length
    const out = new Float32Array(R * H)
    addRowsBack(out, src, inverses, A, H)
    return tf.tensor2d(out, [R, H])
  }
  const padded = tf.concat([z, tf.zeros([1, H])], 0) // (A+1, H)
  let out = tf.gather(padded, tf.tensor1d(inverses[0], 'int32')) // (R, H)
  for (let j = 1; j < inverses.length; j++) out = tf.add(out, tf.gather(padded, tf.tensor1d(inverses[j], 'int32')))
  return out as tf.Tensor2D
}

/** Gathers rows `index` of x (R, H) → (A, H). Backward: dx = Σ_j gather([dy; 0], inverse_j). */
export function permuteRows(x: tf.Tensor2D, index: Int32Array, inverses: Int32Array[]): tf.Tensor2D {
  // Index tensors are made where they are used: tensors captured from the forward scope are
  // already disposed when the backward pass runs.
  return custom(([input]) => {
    const value = gatherRows(input as tf.Tensor2D, index) // (A, H)
    const gradFunc = (dy: tf.Tensor): tf.Tensor => gatherSum(dy as tf.Tensor2D, inverses) // (R, H)
    return { value, gradFunc }
  }, x) as tf.Tensor2D
}

/**
 * The transpose of permuteRows: y (R, H) = Σ_j gather([z; 0], inverse_j), i.e. each row of z is
 * added back to the row it came from. Backward: dz = gather(dy, index).
 */
export function unpermuteRows(z: tf.Tensor2D, index: Int32Array, inverses: Int32Array[]): tf.Tensor2D {
  return custom(([input]) => {
    const value = gatherSum(input as tf.Tensor2D, inverses) // (R, H)
    const gradFunc = (dy: tf.Tensor): tf.Tensor => gatherRows(dy as tf.Tensor2D, index) // (A, H)
    return { value, gradFunc }
  }, z) as tf.Tensor2D
}

/**
 * The MoE block's combine: out (N, H) = Σ over token n's kept assignments a of ys[a] ·
 * gates[n, expert of a], differentiable in ys (A, H) and gates (N, E). On wasm with the fused
 * kernels one kernel each way (COMBINE: the bits of the ops below); elsewhere the routing weights
 * gathered, a product and the rows summed back.
 */
export function combineRows(ys: tf.Tensor2D, gates: tf.Tensor2D, d: RoutingDecision): tf.Tensor2D {
  if (!fusedWasmKernels()) {
    const [N, E] = gates.shape
    const ws = permuteRows(tf.reshape(gates, [N * E, 1]), d.flatIndex, [d.flatInverse]) // (A, 1)
    return unpermuteRows(tf.mul(ys, ws) as tf.Tensor2D, d.index, d.inverses) // (N, H)
  }
  const { index, flatIndex, inverses } = d
  return custom(
    ([y, g], save) => {
      save([y, g])
      return {
        value: runKernel(COMBINE, { ys: y, gates: g }, { flatIndex, inverses }) as tf.Tensor,
        gradFunc: (dy, [y2, g2]) => runKernel(COMBINE_GRAD, { dy, ys: y2, gates: g2 }, { index, flatIndex }) as tf.Tensor[],
      }
    },
    ys,
    gates,
  ) as tf.Tensor2D
}

/**
 * Embedding lookup: table (V, H), ids (N) → (N, H). Forward is a gather; backward scatters the
 * rows back with UnsortedSegmentSum on device backends (tensorflow, webgpu), and in JavaScript on
 * the host backends (wasm lacks the kernel; cpu is faster this way). Token ids repeat, so the inverse-gather trick above does not apply.
 */
export function embedLookup(table: tf.Tensor2D, ids: Int32Array): tf.Tensor2D {
  const V = table.shape[0]
  for (const id of ids) if (!(id >= 0 && id < V)) throw new RangeError(`token id ${id} is out of range for a vocabulary of ${V}`)
  return custom(([input]) => {
    const value = gatherRows(input as tf.Tensor2D, ids) // (N, H)
    const gradFunc = (dy: tf.Tensor): tf.Tensor => {
      // On wasm heap to heap: no copy of the gradient out to JavaScript and back in.
      if (tf.getBackend() === 'wasm') return runKernel(SCATTER_ADD_ROWS, { x: dy }, { index: ids, rows: V }) as tf.Tensor // (V, H)
      if (!hostBackend()) return tf.unsortedSegmentSum(dy, tf.tensor1d(ids, 'int32'), V) // (V, H)
      const H = dy.shape[1] as number
      const out = new Float32Array(V * H)
      scatterAddRows(out, dy.dataSync() as Float32Array, ids, H)
      return tf.tensor2d(out, [V, H])
    }
    return { value, gradFunc }
  }, table) as tf.Tensor2D
}

let variableCount = 0

/**
 * A variable holding `init`, which it takes over: tf.variable copies its initial value, so the
 * initial tensor is disposed here instead of lingering as a second copy of every weight.
 */
export function ownedVariable(init: tf.Tensor, trainable: boolean, name: string): tf.Variable {
  const v = tf.variable(init, trainable, `${name}#${++variableCount}`)
  init.dispose()
  return v
}

/**
 * (Batched) a · b, or a · bᵀ with `transposeB`. On wasm every product, forward and backward, goes
 * through matMulWasm: TF.js's wasm backend multiplies 10 to 25 times slower when asked for a
 * transposed operand or a batch (measured: 2.2 against 26 GFLOP/s), and its own matMul gradient
 * asks for exactly that. Other backends (native TensorFlow, cpu) handle transposed operands and
 * batches at no extra cost, so they keep TF.js's own matMul and gradient.
 */
export function mm<T extends tf.Tensor>(a: T, b: tf.Tensor, transposeB = false): T {
  if (!xnnpackMatMul()) return tf.matMul(a as tf.Tensor, b, false, transposeB) as T
  return custom(
    ([x, y], save) => {
      save([x, y])
      const value = matMulWasm(x, y, false, transposeB)
      const gradFunc = (dy: tf.Tensor, [xs, ys]: tf.Tensor[]): tf.Tensor[] =>
        transposeB
          ? [matMulWasm(dy, ys), matMulWasm(dy, xs, true, false)] // out = x·yᵀ: dx = dy·y, dy = dyᵀ·x
          : [matMulWasm(dy, ys, false, true), matMulWasm(xs, dy, true, false)]
      return { value, gradFunc }
    },
    a,
    b,
  ) as T
}

/**
 * Whether products run on TF.js's wasm XNNPACK kernels, which want untransposed operands (the
 * workarounds below); the native matmul (nativeMatMul.ts) takes transposed ones at no cost, as
 * the other backends do, and takes their plain paths.
 */
export function xnnpackMatMul(): boolean {
  return tf.getBackend() === 'wasm' && nativeMatMul() === null
}

/**
 * Σ xs, added one after another. tf.addN binds every input to one shader, and WebGPU allows 8
 * storage buffers per stage (Dawn's default limit, and most GPUs'): an AddN of a model's 65
 * gradient norms was an invalid pipeline there, and read back garbage without an error. The same
 * order, and so the same bits, as addN on cpu and wasm. 0 for no tensors.
 */
export function sumInOrder(xs: tf.Tensor[]): tf.Tensor {
  if (xs.length === 0) return tf.scalar(0)
  return xs.slice(1).reduce((sum, x) => tf.add(sum, x), xs[0])
}

/** Whether a gradient tape records the ops now (inside tf.grad, variableGrads or engine.gradients). */
export function recordingGradients(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn()
}

/**
 * Whether x (N, in) · Wᵀ (W: out × in) is cheaper on wasm with W in XNNPACK's weights slot (a
 * transposed or copied W, packed per call) than with W first ((W · xᵀ)ᵀ, no copy of W but xᵀ and
 * the result transposed): compares the elements each way moves. TF.js's wasm matMul packs its
 * second operand and caches the packing for as long as that tensor lives, so W itself is never
 * put there (a cached second copy of every weight); a temporary copy is, and is freed at once.
 * Measured on 2 threads, N = 2048, 256 → 256: forward 6.0 against 13.3 ms, dx 7.1 against 14.3;
 * one row (decoding) stays W-first, where copying W would cost 20x.
 */
export function weightsSecond(N: number, inDim: number, outDim: number): boolean {
  return 2 * outDim * inDim < N * (2 * inDim + outDim)
}

/** a · b with b a temporary (packed by XNNPACK, then freed with its packing). */
function timesTemporary(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const out = tf.matMul(a, b) as tf.Tensor2D
  b.dispose()
  return out
}

/**
 * x · Wᵀ on wasm: x · (a transposed copy of W) for many rows, (W · xᵀ)ᵀ for few (see
 * weightsSecond). The backward pass computes dx with linearInputGrad and dW = dyᵀ · x.
 */
function linearWasm(x: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  return custom(
    ([xx, ww], save) => {
      save([xx, ww])
      const [N, inDim] = xx.shape
      const value = weightsSecond(N, inDim, ww.shape[0])
        ? timesTemporary(xx as tf.Tensor2D, tf.transpose(ww) as tf.Tensor2D)
        : tf.transpose(tf.matMul(ww, tf.transpose(xx))) // (N, out)
      const gradFunc = (dy: tf.Tensor, [xs, ws]: tf.Tensor[]): tf.Tensor[] => [
        linearInputGrad(dy as tf.Tensor2D, ws as tf.Tensor2D),
        tf.matMul(tf.transpose(dy), xs), // dW = dyᵀ · x: (out, in)
      ]
      return { value, gradFunc }
    },
    x,
    w,
  ) as tf.Tensor2D
}

/**
 * dx = dy · W, the input's gradient of x · Wᵀ, as every backend's linear computes it (on wasm
 * dy · (a copy of W) for many rows, (Wᵀ · dyᵀ)ᵀ for few: see weightsSecond); paged weights use
 * it too, so their gradients equal the resident ones bit for bit.
 */
export function linearInputGrad(dy: tf.Tensor2D, w: tf.Tensor2D): tf.Tensor2D {
  if (!xnnpackMatMul()) return tf.matMul(dy, w)
  const [outDim, inDim] = w.shape
  if (weightsSecond(dy.shape[0], inDim, outDim)) return timesTemporary(dy, runKernel(COPY, { x: w }, {}) as tf.Tensor2D) // (N, in)
  return transposedTimes(w, tf.transpose(dy) as tf.Tensor2D) // (N, in)
}

/**
 * (Wᵀ · b)ᵀ on wasm with Wᵀ freed at once: a backward pass over a layer's experts would otherwise
 * hold a transposed copy of every weight it touched until the layer's gradient is done.
 */
function transposedTimes(w: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  const wT = tf.transpose(w)
  const out = tf.transpose(tf.matMul(wT, b)) as tf.Tensor2D
  wT.dispose()
  return out
}

/** y = x · Wᵀ (+ b), the nn.Linear convention: x (N, in), W (out, in) → (N, out). */
export function linear(x: tf.Tensor2D, w: tf.Tensor, b?: tf.Tensor): tf.Tensor2D {
  const w2 = w as tf.Tensor2D
  const y: tf.Tensor2D = xnnpackMatMul() ? linearWasm(x, w2) : tf.matMul(x, w2, false, true) // (N, out)
  return b ? (tf.add(y, b) as tf.Tensor2D) : y
}

/** RMSNorm as in HF (fp32): x · rsqrt(mean(x²) + eps) · weight, over the last axis. */
export function rmsNorm<T extends tf.Tensor>(x: T, weight: tf.Tensor, eps: number): T {
  const variance = meanSquare(x)
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(variance, eps))), weight) as T
}

/**
 * mean(x², last axis, keepDims), with the gradient TF.js's Square and Mean gradients compute,
 * dy/n · 2x, in the same operations (the same bits), but without the ones tensor of x's shape
 * Mean's gradient builds in JavaScript and copies to the device (2 MB per norm of 2048 × 256).
 */
export function meanSquare<T extends tf.Tensor>(x: T): T {
  const n = x.shape[x.rank - 1]
  return custom(([xx], save) => {
    save([xx])
    return { value: tf.mean(tf.square(xx), -1, true), gradFunc: (dy, [saved]) => tf.mul(tf.div(dy, n), tf.mul(saved, 2)) }
  }, x) as T
}

/** A weight with its low-rank adapter: x · Wᵀ + (x · Aᵀ) · Bᵀ · scale. */
export interface LowRank {
  base: tf.Tensor2D
  a: tf.Tensor2D
  b: tf.Tensor2D
  scale: number
}

/**
 * Where a forward pass gets its weights. The plain source reads the model's tensors; adapters
 * (LoRA) add their low-rank path in `linear`, and expert offloading pages weights in in `get`.
 */
export interface Weights {
  /** A weight tensor by hub name. */
  get(name: string): tf.Tensor
  /** x · Wᵀ (+ b) for the weight `name` and the optional bias `bias`: x (N, in) → (N, out). */
  linear(x: tf.Tensor2D, name: string, bias?: string): tf.Tensor2D
  /**
   * The weight itself where `linear(x, name)` is exactly x · Wᵀ with it (resident, not computed in
   * chunks, no adapter), so a kernel may multiply it directly; undefined otherwise.
   */
  matrix?(name: string): tf.Tensor2D | undefined
  /**
   * For a weight with a low-rank adapter: the base matrix, A, B and the scale, where `linear(x,
   * name)` is exactly x · Wᵀ + (x · Aᵀ) · Bᵀ · scale (resident base, no adapter dropout in force);
   * undefined otherwise.
   */
  lowRank?(name: string): LowRank | undefined
  /** Told after each sparse layer: its input and expert counts (expert offloading prefetches here). */
  afterMoe?(layer: number, h: tf.Tensor2D, counts: ArrayLike<number>): void
  /** Embedding rows of token ids (N) → (N, H) when the embedding is not on the device (paged models). */
  embed?(ids: Int32Array): tf.Tensor2D
}

/**
 * x · Wᵀ for a matrix taken in row chunks (lm_head along the vocabulary), resident or paged, as
 * one tape node, so the input's gradient is summed over the chunks in one order whichever chunks
 * are on the device: resident and paged lm_heads give the same gradients bit for bit. `chunk(r, n)`
 * returns rows [r, r + n) of W on the device (`owned`: the caller disposes it after use); `whole`,
 * where W is resident, lets wasm multiply it at once (each logit is one row of W times x, so
 * the result is the chunks' own) and gives W its gradient.
 */
export function chunkedLinear(
  x: tf.Tensor2D,
  V: number,
  rows: number,
  chunk: (from: number, count: number, forward: boolean) => { w: tf.Tensor2D; owned: boolean },
  whole?: tf.Tensor2D,
): tf.Tensor2D {
  const starts: number[] = []
  for (let r = 0; r < V; r += rows) starts.push(r)
  // W takes a gradient only where training wants one (a frozen lm_head would cost a V × H copy).
  const wholeGrad = whole !== undefined && (whole as tf.Variable).trainable !== false
  const wasm = xnnpackMatMul()
  return custom(
    (ins, save) => {
      const [xx] = ins
      save(ins)
      let value: tf.Tensor2D
      if (whole && wasm) value = tf.transpose(tf.matMul(whole, tf.transpose(xx))) as tf.Tensor2D
      else {
        const parts = starts.map((r) => {
          const c = chunk(r, Math.min(rows, V - r), true)
          const y = linear(xx as tf.Tensor2D, c.w)
          if (c.owned) c.w.dispose()
          return y
        })
        value = parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor2D)
      }
      const gradFunc = (dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] => {
        const N = dy.shape[0] as number
        // wasm: dyᵀ once, so each chunk's rows are a contiguous slice (see linearInputGrad).
        const dyT = wasm ? (tf.transpose(dy) as tf.Tensor2D) : undefined
        let dx: tf.Tensor2D | undefined
        for (const r of starts) {
          const n = Math.min(rows, V - r)
          const c = chunk(r, n, false)
          const part = dyT
            ? transposedTimes(c.w, n === V ? dyT : tf.slice(dyT, [r, 0], [n, N]))
            : linearInputGrad(n === V ? (dy as tf.Tensor2D) : tf.slice(dy as tf.Tensor2D, [0, r], [N, n]), c.w)
          if (c.owned) c.w.dispose()
          dx = dx ? (tf.add(dx, part) as tf.Tensor2D) : part
        }
        return wholeGrad ? [dx!, dyT ? tf.matMul(dyT, saved[0]) : tf.matMul(dy, saved[0], true, false)] : [dx!]
      }
      return { value, gradFunc }
    },
    ...(wholeGrad ? [x, whole!] : [x]),
  ) as tf.Tensor2D
}

/**
 * Rows [from, from + count) of a resident matrix. TF.js's wasm slice copies the whole source out
 * of the heap first (400 MB for a 64 MB lm_head chunk): there the rows are copied from the heap
 * directly.
 */
function rowsOf(w: tf.Tensor2D, from: number, count: number): { w: tf.Tensor2D; owned: boolean } {
  const H = w.shape[1]
  if (tf.getBackend() !== 'wasm') return { w: tf.slice(w, [from, 0], [count, H]), owned: true }
  // A fresh view each time: the heap may have grown (and moved) since the last one.
  const heap = (tf.backend() as unknown as { typedArrayFromHeap(t: tf.Tensor): Float32Array }).typedArrayFromHeap(w)
  return { w: tf.tensor2d(heap.subarray(from * H, (from + count) * H), [count, H]), owned: true }
}

/**
 * Weights read straight from a lookup. `chunked` names matrices computed in row chunks (lm_head,
 * along the vocabulary: see units.ts headChunkRows), concatenated.
 */
export function plainWeights(get: (name: string) => tf.Tensor, chunked: ReadonlyMap<string, number> = new Map()): Weights {
  return {
    get,
    linear: (x, name, bias) => {
      const b = bias === undefined ? undefined : get(bias)
      const rows = chunked.get(name)
      const w = get(name) as tf.Tensor2D
      if (rows === undefined || rows >= w.shape[0]) return linear(x, w, b)
      const y = chunkedLinear(x, w.shape[0], rows, (from, count) => rowsOf(w, from, count), w) // (N, V)
      return b ? (tf.add(y, b) as tf.Tensor2D) : y
    },
    matrix: (name) => {
      const w = get(name) as tf.Tensor2D
      const rows = chunked.get(name)
      return rows === undefined || rows >= w.shape[0] ? w : undefined
    },
  }
}

/**
 * silu(g)·u = (g·sigmoid(g))·u, SwiGLU's product. On wasm, one pass each way after TF.js's
 * sigmoid (wasmSimd.ts) where TF.js makes two multiplies forward and eight kernels backward over
 * (tokens × width) floats: the same operations in the same order, so the same bits (tested).
 */
export function siluMul(g: tf.Tensor, u: tf.Tensor): tf.Tensor {
  if (!fusedWasmKernels() || !tf.util.arraysEqual(g.shape, u.shape)) return tf.mul(tf.mul(g, tf.sigmoid(g)), u)
  return custom(
    ([gg, uu], save) => {
      const s = tf.sigmoid(gg)
      save([gg, s, uu])
      return {
        value: runKernel(SILU_MUL, { g: gg, s, u: uu }, {}) as tf.Tensor,
        gradFunc: (dy, [g2, s2, u2]) => runKernel(SILU_MUL_GRAD, { dy, g: g2, s: s2, u: u2 }, {}) as tf.Tensor[],
      }
    },
    g,
    u,
  )
}

/** SwiGLU MLP: down(silu(gate(x)) · up(x)), with optional dropout on the product. */
export function swiglu(
  x: tf.Tensor2D,
  w: Weights,
  [gate, up, down]: readonly [string, string, string],
  dropout?: (t: tf.Tensor2D) => tf.Tensor2D,
): tf.Tensor2D {
  const g = w.linear(x, gate) // (N, I)
  let hidden = siluMul(g, w.linear(x, up)) as tf.Tensor2D // (N, I)
  if (dropout) hidden = dropout(hidden)
  return w.linear(hidden, down) // (N, H)
}

/** A small, fast, seedable PRNG (mulberry32) for routing noise, jitter and dropout masks. */
export class Rng {
  private s: number
  constructor(seed: number) {
    this.s = seed >>> 0
  }
  /** The generator's state: `Rng.at(state)` continues exactly from here. */
  get state(): number {
    return this.s
  }
  static at(state: number): Rng {
    const r = new Rng(0)
    r.s = state >>> 0
    return r
  }
  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0)
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  /** Standard normal (Box-Muller). */
  normal(): number {
    let u = 0
    while (u === 0) u = this.next()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.next())
  }
  uniformArray(n: number, lo = 0, hi = 1): Float32Array {
    const a = new Float32Array(n)
    for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * this.next()
    return a
  }
  normalArray(n: number): Float32Array {
    const a = new Float32Array(n)
    for (let i = 0; i < n; i++) a[i] = this.normal()
    return a
  }
}

/** Inverted dropout with a mask drawn from rng: kept values are scaled by 1/(1-p). */
export function dropout<T extends tf.Tensor>(x: T, p: number, rng: Rng): T {
  if (p <= 0) return x
  const n = x.size
  const mask = new Float32Array(n)
  const scale = 1 / (1 - p)
  for (let i = 0; i < n; i++) mask[i] = rng.next() >= p ? scale : 0
  return tf.mul(x, tf.tensor(mask, x.shape)) as T
}
