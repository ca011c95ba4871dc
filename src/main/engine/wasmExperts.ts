/**
 * The experts of a sparse layer on wasm as a handful of kernels instead of hundreds.
 *
 * TF.js's wasm backend has no grouped matmul (its batched matmul runs a naive loop: 2.4 GFLOP/s
 * against 37 for the same work as separate matmuls, measured on 2 threads), and every op costs a
 * fixed dispatch overhead that an MoE layer pays per expert: a SwiGLU over 8 experts was 525
 * kernels forward and backward where its dense twin was 66. Here each projection of all experts
 * is one kernel that calls TF.js's own XNNPACK matmul once per expert on views into one buffer
 * (MegaBlocks' grouped GEMM, on the wasm heap), and the elementwise SiLU·up runs once over all
 * experts' rows.
 *
 * Layout: activations between the projections are kept "blocked-transposed": expert e's c_e rows
 * of width d are stored as one (d, c_e) block, the blocks one after another in routing order. In
 * that layout W_e · x_eᵀ is exactly the (fast, untransposed) matmul the wasm linear already uses,
 * so the numbers are bit-identical to computing each expert separately, with 2 grouped transposes
 * forward instead of 6 per expert projection.
 */
import * as tf from '@tensorflow/tfjs'
import { custom, runKernel } from './kernelCall'
import { nativeMatMul, type MatMulOperands } from './nativeMatMul'
import { siluMul } from './ops'

interface WasmModule {
  cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void
  _malloc(bytes: number): number
  _free(ptr: number): void
  HEAPU8: Uint8Array
  tfjs: { registerTensor(id: number, size: number, ptr: number): void; disposeData(id: number): void }
}

interface WasmBackend {
  wasm: WasmModule
  dataIdMap: { get(dataId: tf.DataId): { id: number; memoryOffset: number } }
  dataIdNextNumber: number
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo
}

const F32 = 4

type MatMulFn = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  ta: number,
  tb: number,
  outId: number,
) => void
type TransposeFn = (xId: number, xShape: Uint8Array, rank: number, dtype: number, outId: number, perm: Uint8Array, permRank: number) => void

interface NativeLayout {
  transposeA?: boolean
  transposeB?: boolean
  batchA?: number
  batchB?: number
}

const bound = new WeakMap<WasmModule, { matMul: MatMulFn; transpose: TransposeFn }>()

const bytes = (xs: number[]): Uint8Array => new Uint8Array(new Int32Array(xs).buffer)
const PERM = bytes([1, 0])

/**
 * One kernel call's access to the heap: raw XNNPACK matmuls and transposes on views (tensor ids
 * registered over parts of existing buffers, never freed as memory) and scratch buffers.
 */
class Heap {
  private readonly views: number[] = []
  private readonly scratch: number[] = []
  private readonly fns: { matMul: MatMulFn; transpose: TransposeFn }

  constructor(readonly b: WasmBackend) {
    let fns = bound.get(b.wasm)
    if (!fns) {
      fns = {
        matMul: b.wasm.cwrap('BatchMatMul', null, [
          'number',
          'array',
          'number',
          'number',
          'array',
          'number',
          'number',
          'number',
          'number',
        ]) as MatMulFn,
        transpose: b.wasm.cwrap('Transpose', null, ['number', 'array', 'number', 'number', 'number', 'array', 'number']) as TransposeFn,
      }
      bound.set(b.wasm, fns)
    }
    this.fns = fns
  }

  ptr(t: tf.TensorInfo): number {
    return this.b.dataIdMap.get(t.dataId).memoryOffset
  }

  /** A tensor id over `size` floats at `ptr` (released by done(), its memory untouched). */
  view(ptr: number, size: number): number {
    const id = this.b.dataIdNextNumber++
    this.b.wasm.tfjs.registerTensor(id, size, ptr)
    this.views.push(id)
    return id
  }

  alloc(floats: number): number {
    const p = this.b.wasm._malloc(Math.max(1, floats) * F32) >>> 0
    this.scratch.push(p)
    return p
  }

  output(shape: number[]): tf.TensorInfo {
    return this.b.makeOutput(shape, 'float32')
  }

  /** A float32 view of `floats` at byte address `ptr` (taken after every allocation: the heap may grow). */
  f32(ptr: number, floats: number): Float32Array {
    return new Float32Array(this.b.wasm.HEAPU8.buffer, ptr, floats)
  }

  /** The native matmul's operands for out (batch, m, n) = op(a) · op(b) at these addresses (see nativeMatMul). */
  private operands(a: number, b: number, out: number, m: number, k: number, n: number, t: NativeLayout): MatMulOperands {
    const { transposeA = false, transposeB = false, batchA = 1, batchB = 1 } = t
    return {
      a: this.f32(a, batchA * m * k),
      b: this.f32(b, batchB * k * n),
      out: this.f32(out, Math.max(batchA, batchB) * m * n),
      batchA,
      batchB,
      m,
      k,
      n,
      transposeA,
      transposeB,
    }
  }

  /**
   * out (batch, m, n) = op(a) · op(b) by the native matmul, a transposed operand read as it is
   * stored ((k, m) for a, (n, k) for b), a batch of 1 used for every item of the other.
   */
  nativeMatMul(a: number, b: number, out: number, m: number, k: number, n: number, t: NativeLayout = {}): void {
    nativeMatMul()!.matMul(this.operands(a, b, out, m, k, n, t))
  }

  /**
   * Independent native products, as nativeMatMul's arguments, in one run (matMulMany); called
   * once every buffer they touch is allocated (an allocation may move the heap).
   */
  nativeMatMuls(products: readonly Parameters<Heap['nativeMatMul']>[]): void {
    nativeMatMul()!.matMulMany(products.map(([a, b, out, m, k, n, t = {}]) => this.operands(a, b, out, m, k, n, t)))
  }

  /** out (m, n) = a (m, k) · b (k, n), all row-major at the given addresses. */
  matMul(a: number, b: number, out: number, m: number, k: number, n: number): void {
    if (nativeMatMul()) return this.nativeMatMul(a, b, out, m, k, n)
    this.fns.matMul(this.view(a, m * k), bytes([1, m, k]), 3, this.view(b, k * n), bytes([1, k, n]), 3, 0, 0, this.view(out, m * n))
  }

  /** out (c, r) = in (r, c)ᵀ. */
  transpose(src: number, dst: number, r: number, c: number): void {
    if (r === 1 || c === 1) this.b.wasm.HEAPU8.copyWithin(dst, src, src + r * c * F32)
    else this.fns.transpose(this.view(src, r * c), bytes([r, c]), 2, 0, this.view(dst, r * c), PERM, 2)
  }

  zero(ptr: number, floats: number): void {
    this.b.wasm.HEAPU8.fill(0, ptr, ptr + floats * F32)
  }

  done(): void {
    for (const id of this.views) this.b.wasm.tfjs.disposeData(id)
    for (const p of this.scratch) this.b.wasm._free(p)
    this.views.length = 0
    this.scratch.length = 0
  }
}

function withHeap<T>(backend: unknown, f: (h: Heap) => T): T {
  const h = new Heap(backend as WasmBackend)
  try {
    return f(h)
  } finally {
    h.done()
  }
}

interface GroupAttrs {
  counts: number[]
  /** Row layout (the native matmul: transposed operands cost nothing) instead of blocks. */
  rows: boolean
}

/** Rows (A, d) ↔ blocks: expert e's rows as one (d, c_e) block. */
function blockTransposeKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { counts, dim, toBlocks } = args.attrs as unknown as GroupAttrs & { dim: number; toBlocks: boolean }
  const A = counts.reduce((s, c) => s + c, 0)
  return withHeap(args.backend, (h) => {
    const out = h.output(toBlocks ? [A * dim] : [A, dim])
    const src = h.ptr(args.inputs.x!)
    const dst = h.ptr(out)
    let at = 0
    for (const c of counts) {
      if (c > 0) {
        const o = at * dim * F32
        if (toBlocks) h.transpose(src + o, dst + o, c, dim)
        else h.transpose(src + o, dst + o, dim, c)
      }
      at += c
    }
    return out
  })
}

/**
 * Blocks (in, c_e) → blocks (out, c_e) = W_e (out, in) · block; with `rows` (the native matmul),
 * rows (c_e, in) → rows (c_e, out) = x_e · W_eᵀ, as nn.Linear multiplies.
 */
function groupedLinearKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { counts, inDim, outDim, rows } = args.attrs as unknown as GroupAttrs & { inDim: number; outDim: number }
  const A = counts.reduce((s, c) => s + c, 0)
  return withHeap(args.backend, (h) => {
    const out = h.output([A * outDim])
    const x = h.ptr(args.inputs.x!)
    const y = h.ptr(out)
    const products: Parameters<Heap['nativeMatMul']>[] = []
    let at = 0
    counts.forEach((c, e) => {
      const w = h.ptr(args.inputs[`w${e}`]!)
      if (c > 0 && rows) products.push([x + at * inDim * F32, w, y + at * outDim * F32, c, inDim, outDim, { transposeB: true }])
      else if (c > 0) h.matMul(w, x + at * inDim * F32, y + at * outDim * F32, outDim, inDim, c)
      at += c
    })
    if (products.length > 0) h.nativeMatMuls(products)
    return out
  })
}

/**
 * The backward pass of groupedLinear: dx blocks (in, c_e) = W_eᵀ · dy_e, and dW_e (out, in) =
 * dy_e · x_eᵀ for the experts in `wantDw` (with x_e back in rows). With `rows`: dx rows = dy_e ·
 * W_e and dW_e = dy_eᵀ · x_e, the products (and so the bits) of nn.Linear's gradient.
 */
function groupedLinearGradKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { counts, inDim, outDim, wantDx, wantDw, rows } = args.attrs as unknown as GroupAttrs & {
    inDim: number
    outDim: number
    wantDx: boolean
    wantDw: boolean[]
  }
  const A = counts.reduce((s, c) => s + c, 0)
  const maxC = Math.max(0, ...counts)
  return withHeap(args.backend, (h) => {
    const outs: tf.TensorInfo[] = []
    const dx = wantDx ? h.output([A * inDim]) : null
    if (dx) outs.push(dx)
    const dy = h.ptr(args.inputs.dy!)
    const x = h.ptr(args.inputs.x!)
    const wT = wantDx && !rows ? h.alloc(inDim * outDim) : 0
    const xRows = wantDw.some(Boolean) && !rows ? h.alloc(maxC * inDim) : 0
    const products: Parameters<Heap['nativeMatMul']>[] = [] // the native ones, run together once every output exists
    let at = 0
    counts.forEach((c, e) => {
      const dyE = dy + at * outDim * F32
      if (dx && c > 0) {
        const w = h.ptr(args.inputs[`w${e}`]!)
        if (rows) products.push([dyE, w, h.ptr(dx) + at * inDim * F32, c, outDim, inDim])
        else {
          h.transpose(w, wT, outDim, inDim) // (in, out)
          h.matMul(wT, dyE, h.ptr(dx) + at * inDim * F32, inDim, outDim, c)
        }
      }
      if (wantDw[e]) {
        const dw = h.output([outDim, inDim])
        if (c > 0 && rows) products.push([dyE, x + at * inDim * F32, h.ptr(dw), outDim, c, inDim, { transposeA: true }])
        else if (c > 0) {
          h.transpose(x + at * inDim * F32, xRows, inDim, c) // (c, in)
          h.matMul(dyE, xRows, h.ptr(dw), outDim, c, inDim)
        } else h.zero(h.ptr(dw), outDim * inDim)
        outs.push(dw)
      }
      at += c
    })
    if (products.length > 0) h.nativeMatMuls(products)
    return outs
  })
}

/**
 * Batched a · b (optionally either transposed) as one XNNPACK matmul per batch item on views:
 * TF.js's own wasm BatchMatMul takes a naive loop for any batch over 1 or any transposed operand
 * (2-2.5 GFLOP/s against 25-38 for the same work as 2-D matmuls, measured on 2 threads); attention's
 * (B, heads, T, d) products were half of a training step. A transposed operand is transposed item
 * by item into scratch first. Batch dimensions must be equal (a batch of 1 is reused for all).
 */
export function batchMatMulKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { transposeA, transposeB } = args.attrs as unknown as { transposeA: boolean; transposeB: boolean }
  const a = args.inputs.a!
  const b = args.inputs.b!
  const ra = a.shape.length
  const rb = b.shape.length
  const [m, k] = transposeA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]]
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1]
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2))
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2))
  const batch = Math.max(batchA, batchB)
  const outer = (batchA >= batchB ? a : b).shape.slice(0, -2)
  return withHeap(args.backend, (h) => {
    const out = h.output([...outer, m, n])
    const pa = h.ptr(a)
    const pb = h.ptr(b)
    const po = h.ptr(out)
    if (nativeMatMul()) {
      h.nativeMatMul(pa, pb, po, m, k, n, { transposeA, transposeB, batchA, batchB })
      return out
    }
    const aT = transposeA ? h.alloc(m * k) : 0
    const bT = transposeB ? h.alloc(k * n) : 0
    for (let i = 0; i < batch; i++) {
      let ai = pa + (batchA === 1 ? 0 : i * m * k * F32)
      let bi = pb + (batchB === 1 ? 0 : i * k * n * F32)
      if (transposeA) {
        if (batchA > 1 || i === 0) h.transpose(ai, aT, k, m)
        ai = aT
      }
      if (transposeB) {
        if (batchB > 1 || i === 0) h.transpose(bi, bT, n, k)
        bi = bT
      }
      h.matMul(ai, bi, po + i * m * n * F32, m, k, n)
    }
    return out
  })
}

/**
 * a · b (either transposed) on wasm: TF.js's own kernel where it is fast (2-D, untransposed),
 * else the per-item kernel above. Not differentiable by itself (see ops.ts mm).
 */
export function matMulWasm(a: tf.Tensor, b: tf.Tensor, transposeA = false, transposeB = false): tf.Tensor {
  if (nativeMatMul()) return tf.matMul(a, b, transposeA, transposeB) // the native BatchMatMul (wasmKernels.ts)
  if (a.rank === 2 && b.rank === 2 && !transposeA && !transposeB) return tf.matMul(a, b)
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2))
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2))
  if (batchA !== batchB && batchA !== 1 && batchB !== 1) return tf.matMul(a, b, transposeA, transposeB)
  registerWasmExpertKernels()
  return runKernel(KERNELS.batchMatMul, { a, b }, { transposeA, transposeB }) as tf.Tensor
}

const KERNELS = {
  batchMatMul: 'MoeWorkbenchBatchMatMul',
  blockTranspose: 'MoeWorkbenchBlockTranspose',
  groupedLinear: 'MoeWorkbenchGroupedLinear',
  groupedLinearGrad: 'MoeWorkbenchGroupedLinearGrad',
} as const

let registered = false

/** Registers the grouped kernels on the wasm backend (once). */
export function registerWasmExpertKernels(): void {
  if (registered) return
  registered = true
  tf.registerKernel({ kernelName: KERNELS.batchMatMul, backendName: 'wasm', kernelFunc: batchMatMulKernel as tf.KernelFunc })
  tf.registerKernel({ kernelName: KERNELS.blockTranspose, backendName: 'wasm', kernelFunc: blockTransposeKernel as tf.KernelFunc })
  tf.registerKernel({ kernelName: KERNELS.groupedLinear, backendName: 'wasm', kernelFunc: groupedLinearKernel as tf.KernelFunc })
  tf.registerKernel({
    kernelName: KERNELS.groupedLinearGrad,
    backendName: 'wasm',
    kernelFunc: groupedLinearGradKernel as unknown as tf.KernelFunc,
  })
}

function blockTranspose(x: tf.Tensor, counts: number[], dim: number, toBlocks: boolean): tf.Tensor {
  return custom(
    ([xx]) => ({
      value: runKernel(KERNELS.blockTranspose, { x: xx }, { counts, dim, toBlocks }) as tf.Tensor,
      gradFunc: (dy) => runKernel(KERNELS.blockTranspose, { x: dy }, { counts, dim, toBlocks: !toBlocks }) as tf.Tensor,
    }),
    x,
  )
}

/**
 * Blocks (in, c_e) of x → blocks (out, c_e) = W_e · block, W_e (out, in), or rows → rows with
 * `rows`; frozen weights take no gradient.
 */
function groupedLinear(x: tf.Tensor, ws: tf.Tensor2D[], counts: number[], rows: boolean): tf.Tensor {
  const [outDim, inDim] = ws[0].shape
  const trainable = ws.map((w) => (w as tf.Variable).trainable !== false)
  const inputsOf = (xx: tf.Tensor, learn: tf.Tensor[]): Record<string, tf.Tensor> => {
    let j = 0
    return Object.fromEntries([['x', xx], ...ws.map((w, e) => [`w${e}`, trainable[e] ? learn[j++] : w])])
  }
  return custom(
    ([xx, ...learn], save) => {
      save([xx, ...learn])
      return {
        value: runKernel(KERNELS.groupedLinear, inputsOf(xx, learn), { counts, inDim, outDim, rows }) as tf.Tensor,
        gradFunc: (dy, [xs, ...ls]) => {
          const { x: _x, ...wInputs } = inputsOf(xs, ls)
          return runKernel(
            KERNELS.groupedLinearGrad,
            { dy, x: xs, ...wInputs },
            { counts, inDim, outDim, wantDx: true, wantDw: trainable, rows },
          ) as tf.Tensor[]
        },
      }
    },
    x,
    ...ws.filter((_, e) => trainable[e]),
  )
}

/** One projection of an expert: its matrix (nn.Linear layout), and its LoRA adapter if it has one. */
export interface Projection {
  w: tf.Tensor2D
  lora?: { a: tf.Tensor2D; b: tf.Tensor2D; scale: number }
}

/** An expert's [gate, up, down]. */
export type ExpertProjections = readonly [Projection, Projection, Projection]

/**
 * One projection of every expert on blocks xT: W_e · block, plus (B_e · (A_e · block)) · scale
 * where the experts have adapters (all of them, one scale: the caller checks). The same
 * operations in the same order as the per-expert linear with its LoRA path, so the same bits.
 */
function projectAll(xT: tf.Tensor, ps: Projection[], counts: number[], rows: boolean): tf.Tensor {
  const base = groupedLinear(
    xT,
    ps.map((p) => p.w),
    counts,
    rows,
  )
  const lora = ps[0].lora
  if (!lora) return base
  const low = groupedLinear(
    groupedLinear(
      xT,
      ps.map((p) => p.lora!.a),
      counts,
      rows,
    ),
    ps.map((p) => p.lora!.b),
    counts,
    rows,
  )
  return tf.add(base, tf.mul(low, lora.scale))
}

/**
 * The SwiGLU experts of one layer on routed rows xs (A, H), sorted by expert with `counts[i]`
 * rows for expert i of `experts` (a projection adapted on all experts or none): (A, H), as per
 * expert down(silu(gate(x)) · up(x)). With the native matmul the rows stay rows (it reads
 * transposed operands as stored), and each product is the one the expert's own linear makes.
 */
export function groupedSwiglu(xs: tf.Tensor2D, counts: number[], experts: ExpertProjections[]): tf.Tensor2D {
  registerWasmExpertKernels()
  const [A, H] = xs.shape
  const rows = nativeMatMul() !== null
  const xT = rows ? tf.reshape(xs, [A * H]) : blockTranspose(xs, counts, H, true)
  const project = (x: tf.Tensor, p: 0 | 1 | 2): tf.Tensor =>
    projectAll(
      x,
      experts.map((e) => e[p]),
      counts,
      rows,
    )
  const g = project(xT, 0)
  const hidden = siluMul(g, project(xT, 1))
  const down = project(hidden, 2)
  return (rows ? tf.reshape(down, [A, H]) : blockTranspose(down, counts, H, false)) as tf.Tensor2D
}
