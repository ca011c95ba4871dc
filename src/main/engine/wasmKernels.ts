/**
 * Faster wasm kernels. TF.js 4.22's wasm Slice (and SplitV, made of it) first copies the whole
 * source tensor out of the heap into JavaScript (readSync), then the part wanted back in: slicing
 * 8 MB of routed tokens into 64 experts copied 512 MB. A contiguous slice (a range of rows) is now
 * one copy of the part, heap to heap; others take TF.js's own kernel. Also here: the row gathers
 * and sums of token dispatch, products on the native kernels where they are loaded
 * (nativeMatMul.ts), softmax by a SIMD loop or the native kernels, RoPE in one pass, sums over
 * leading axes without a transpose, SwiGLU's product and attention's scale, mask and softmax
 * gradient fused (the loops of wasmSimd.ts), and casts and copies that share a buffer instead of
 * copying it. Each gives TF.js's bits, or, for products and softmax, bits that depend on a row
 * alone (tested in wasmKernels.test.ts).
 */
import * as tf from '@tensorflow/tfjs'
import { nativeMatMul } from './nativeMatMul'
import { batchMatMulKernel } from './wasmExperts'
import { backendSimd } from './wasmSimd'

export interface WasmBackendLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array
}

/** A contiguous slice copied heap to heap; null where TF.js's own kernel must do it. */
function contiguousSlice(
  x: tf.TensorInfo,
  begin: number | number[],
  size: number | number[],
  backend: WasmBackendLike,
): tf.TensorInfo | null {
  if (x.dtype === 'string') return null
  const [b, s] = tf.slice_util.parseSliceParams(x as unknown as tf.Tensor, begin, size)
  if (!tf.slice_util.isSliceContinous(x.shape, b, s)) return null
  const offset = tf.slice_util.computeFlatOffset(b, tf.util.computeStrides(x.shape))
  const n = tf.util.sizeFromShape(s)
  const out = backend.makeOutput(s, x.dtype)
  // Views taken after the allocation (which may grow the heap).
  const src = backend.typedArrayFromHeap(x)
  backend.typedArrayFromHeap(out).set(src.subarray(offset, offset + n) as never)
  return out
}

/** Rows `index` of x (R, H) → (A, H), copied heap to heap. */
function gatherRowsKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const x = args.inputs.x!
  const index = (args.attrs as unknown as { index: Int32Array }).index
  const backend = args.backend as WasmBackendLike
  const H = x.shape[1]
  const out = backend.makeOutput([index.length, H], 'float32')
  const src = backend.typedArrayFromHeap(x) as Float32Array
  const dst = backend.typedArrayFromHeap(out)
  // copyWithin on one view of the whole heap: a subarray per row cost more than its copy.
  const heap = new Float32Array(src.buffer)
  const s = src.byteOffset / 4
  const d = dst.byteOffset / 4
  for (let a = 0; a < index.length; a++) heap.copyWithin(d + a * H, s + index[a] * H, s + index[a] * H + H)
  return out
}

/** out (rows, H) = 0, then out[index[n]] += x[n] for each row n of x (N, H) in order: an embedding's gradient. */
function scatterAddRowsKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const x = args.inputs.x!
  const { index, rows } = args.attrs as unknown as { index: Int32Array; rows: number }
  const backend = args.backend as WasmBackendLike
  const H = x.shape[1]
  const out = backend.makeOutput([rows, H], 'float32')
  const src = backend.typedArrayFromHeap(x) as Float32Array
  const dst = backend.typedArrayFromHeap(out) as Float32Array
  dst.fill(0)
  const simd = backendSimd(backend)
  if (simd) for (let n = 0; n < index.length; n++) simd.add(dst.byteOffset + index[n] * H * 4, src.byteOffset + n * H * 4, H)
  else scatterAddRows(dst, src, index, H)
  return out
}

/** dst[index[n]] += src[n] for each row n of src (N, H), in order (rows of width H). */
export function scatterAddRows(dst: Float32Array, src: Float32Array, index: Int32Array, H: number): void {
  for (let n = 0; n < index.length; n++) {
    const o = index[n] * H
    const i = n * H
    for (let h = 0; h < H; h++) dst[o + h] += src[i + h]
  }
}

/** Σ_j [z; 0][inverse_j] → (R, H), summed on the heap (the same order of additions as on the host). */
function gatherSumKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const z = args.inputs.z!
  const inverses = (args.attrs as unknown as { inverses: Int32Array[] }).inverses
  const backend = args.backend as WasmBackendLike
  const [A, H] = z.shape
  const R = inverses[0].length
  const out = backend.makeOutput([R, H], 'float32')
  const src = backend.typedArrayFromHeap(z) as Float32Array
  const dst = backend.typedArrayFromHeap(out) as Float32Array
  dst.fill(0)
  const simd = backendSimd(backend)
  if (!simd) addRowsBack(dst, src, inverses, A, H)
  else
    for (const inv of inverses)
      for (let r = 0; r < R; r++) if (inv[r] !== A) simd.add(dst.byteOffset + r * H * 4, src.byteOffset + inv[r] * H * 4, H)
  return out
}

/** dst (R, H) += Σ_j [src; 0][inverse_j]: each routed row of src (A, H) added to the row it came from. */
export function addRowsBack(dst: Float32Array, src: Float32Array, inverses: Int32Array[], A: number, H: number): void {
  const R = inverses[0].length
  for (const inv of inverses)
    for (let r = 0; r < R; r++) {
      const a = inv[r]
      if (a === A) continue
      const o = r * H
      const i = a * H
      for (let h = 0; h < H; h++) dst[o + h] += src[i + h]
    }
}

/**
 * Softmax over the last axis of x into a fresh output: the SIMD loop where its rows are a multiple
 * of 4 wide (wasmSimd.ts: 2048 × 4096 logits in ~25 ms, ONNX Runtime's ~34, TF.js's scalar exp 95),
 * else the native kernels; null where neither can (TF.js's kernel then). The choice depends on the
 * row width only, so a row's bits do not depend on how many rows came with it.
 */
function fastSoftmax(x: tf.TensorInfo, backend: WasmBackendLike): tf.TensorInfo | null {
  const cols = x.shape[x.shape.length - 1]
  const simd = backendSimd(backend)
  const native = nativeMatMul()
  if ((!simd || cols % 4 !== 0) && !native) return null
  const size = tf.util.sizeFromShape(x.shape)
  const out = backend.makeOutput(x.shape, 'float32')
  if (size === 0) return out
  const rows = size / cols
  // Views taken after the allocation (which may grow the heap).
  const [vx, vo] = [backend.typedArrayFromHeap(x) as Float32Array, backend.typedArrayFromHeap(out) as Float32Array]
  if (!simd?.softmax(vx.byteOffset, vo.byteOffset, rows, cols)) native!.softmax({ x: vx, out: vo, rows, cols })
  return out
}

/**
 * RoPE on x (…, T, D) with tables cos, sin (T, D): out = x·cos + rotate_half(x)·sin, where
 * rotate_half(x) = [−x₂, x₁] (the halves of the last axis); with `transpose`, its adjoint
 * g·cos + [y₂, −y₁] for y = g·sin (the gradient). One pass instead of split, negate, concat,
 * two multiplies and an add (and their gradients); every product and sum rounded to float32 as
 * those kernels round them, in the same order, so it gives the same bits (tested).
 */
export function ropeRows(
  x: Float32Array,
  cos: Float32Array,
  sin: Float32Array,
  out: Float32Array,
  T: number,
  D: number,
  transpose: boolean,
): void {
  const f = Math.fround
  const half = D / 2
  const rows = x.length / D
  for (let r = 0; r < rows; r++) {
    const o = r * D
    const t = (r % T) * D
    for (let j = 0; j < half; j++) {
      const a = x[o + j]
      const b = x[o + j + half]
      const c1 = cos[t + j]
      const c2 = cos[t + j + half]
      const s1 = sin[t + j]
      const s2 = sin[t + j + half]
      if (transpose) {
        out[o + j] = f(f(a * c1) + f(b * s2))
        out[o + j + half] = f(f(b * c2) - f(a * s1))
      } else {
        out[o + j] = f(f(a * c1) - f(b * s1))
        out[o + j + half] = f(f(b * c2) + f(a * s2))
      }
    }
  }
}

function ropeKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo {
  const { x, cos, sin } = args.inputs as Record<'x' | 'cos' | 'sin', tf.TensorInfo>
  const backend = args.backend as WasmBackendLike
  const [T, D] = cos.shape
  const out = backend.makeOutput(x.shape, 'float32')
  const transpose = (args.attrs as { transpose: boolean }).transpose
  const view = (t: tf.TensorInfo): Float32Array => backend.typedArrayFromHeap(t) as Float32Array
  const [vx, vc, vs, vo] = [view(x), view(cos), view(sin), view(out)]
  const simd = backendSimd(backend)
  if (!simd?.rope(vx.byteOffset, vc.byteOffset, vs.byteOffset, vo.byteOffset, vx.length / D, T, D, transpose))
    ropeRows(vx, vc, vs, vo, T, D, transpose)
  return out
}

/**
 * Σ over the leading `lead` axes of float32 x → the trailing shape: column sums over rows, in row
 * order, each addition rounded to float32 (TF.js's kernel transposes x first, then sums each
 * column in the same order: the same bits, without the transpose).
 */
export function sumLeadingRows(x: Float32Array, out: Float32Array, cols: number): void {
  out.fill(0)
  const rows = x.length / cols // (an empty x has no rows, whatever cols is: 0 / 0 is NaN)
  for (let r = 0; r < rows; r++) {
    const o = r * cols
    for (let c = 0; c < cols; c++) out[c] += x[o + c]
  }
}

/** j where a float32 Sum reduces exactly the leading axes 0..j−1 of a tensor of higher rank; 0 for any other sum. */
function leadingAxes(x: tf.TensorInfo, axis: number | number[]): number {
  if (x.dtype !== 'float32') return 0
  const axes = [...new Set(tf.util.parseAxisParam(axis, x.shape))].sort((a, b) => a - b)
  const lead = axes.length
  return lead > 0 && lead < x.shape.length && axes.every((a, i) => a === i) ? lead : 0
}

/** A real copy (a fresh buffer and tensor id), where Identity now shares (see below). */
function copyKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const x = args.inputs.x!
  const backend = args.backend as WasmBackendLike
  const out = backend.makeOutput(x.shape, x.dtype)
  backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(x) as never)
  return out
}

/** The fused element-wise kernels of wasmSimd.ts (used where its loops load: fusedWasmKernels). */
export const SILU_MUL = 'MoeWorkbenchSiluMul'
export const SILU_MUL_GRAD = 'MoeWorkbenchSiluMulGrad'
export const SCALE_ADD = 'MoeWorkbenchScaleAdd'
export const SOFTMAX_GRAD = 'MoeWorkbenchSoftmaxGrad'
export const MASKED_SOFTMAX = 'MoeWorkbenchMaskedSoftmax'

/** The byte address of t on the heap (take it after every allocation: the heap may grow). */
export const address = (backend: WasmBackendLike, t: tf.TensorInfo): number => backend.typedArrayFromHeap(t).byteOffset
/** How many rows of `cols` t holds (none where a row is empty). */
const rowsOf = (t: tf.TensorInfo, cols: number): number => (cols === 0 ? 0 : tf.util.sizeFromShape(t.shape) / cols)
/** A kernel's `scale` attribute. */
const scaleOf = (args: KernelArgs): number => (args.attrs as unknown as { scale: number }).scale

/** (g·s)·u, s = sigmoid(g): SwiGLU's product in one pass. */
function siluMulKernel(args: KernelArgs): tf.TensorInfo {
  const { g, s, u } = args.inputs as Record<'g' | 's' | 'u', tf.TensorInfo>
  const backend = args.backend as unknown as WasmBackendLike
  const out = backend.makeOutput(g.shape, 'float32')
  const at = (t: tf.TensorInfo): number => address(backend, t)
  backendSimd(backend)!.siluMul(at(g), at(s), at(u), at(out), tf.util.sizeFromShape(g.shape))
  return out
}

/** [dg, du] of siluMulKernel for dy. */
function siluMulGradKernel(args: KernelArgs): tf.TensorInfo[] {
  const { dy, g, s, u } = args.inputs as Record<'dy' | 'g' | 's' | 'u', tf.TensorInfo>
  const backend = args.backend as unknown as WasmBackendLike
  const [dg, du] = [backend.makeOutput(g.shape, 'float32'), backend.makeOutput(u.shape, 'float32')]
  const at = (t: tf.TensorInfo): number => address(backend, t)
  backendSimd(backend)!.siluMulGrad(at(dy), at(g), at(s), at(u), at(dg), at(du), tf.util.sizeFromShape(g.shape))
  return [dg, du]
}

/** x·scale + mask, the mask (the trailing dimensions of x) added to each of x's blocks. */
function scaleAddKernel(args: KernelArgs): tf.TensorInfo {
  const { x, mask } = args.inputs as Record<'x' | 'mask', tf.TensorInfo>
  const backend = args.backend as unknown as WasmBackendLike
  const out = backend.makeOutput(x.shape, 'float32')
  const [px, pm, po] = [x, mask, out].map((t) => address(backend, t))
  const block = tf.util.sizeFromShape(mask.shape)
  const simd = backendSimd(backend)!
  for (let at = 0; at < tf.util.sizeFromShape(x.shape); at += block) simd.scaleAdd(px + at * 4, pm, po + at * 4, block, scaleOf(args))
  return out
}

/**
 * softmax(x·scale + mask) over the last axis, the mask (R, S) on each of x's blocks, in one pass
 * (rows a multiple of 4 wide: the caller checks): the bits of SCALE_ADD then the SIMD softmax.
 */
function maskedSoftmaxKernel(args: KernelArgs): tf.TensorInfo {
  const { x, mask } = args.inputs as Record<'x' | 'mask', tf.TensorInfo>
  const backend = args.backend as unknown as WasmBackendLike
  const out = backend.makeOutput(x.shape, 'float32')
  const [R, S] = mask.shape
  const [px, pm, po] = [x, mask, out].map((t) => address(backend, t))
  backendSimd(backend)!.maskedSoftmax(px, pm, po, rowsOf(x, S), S, R, scaleOf(args))
  return out
}

/** The gradient of softmax (its output y, last axis) for dy, times scale. */
function softmaxGradKernel(args: KernelArgs): tf.TensorInfo {
  const { y, dy } = args.inputs as Record<'y' | 'dy', tf.TensorInfo>
  const backend = args.backend as unknown as WasmBackendLike
  const out = backend.makeOutput(y.shape, 'float32')
  const cols = y.shape[y.shape.length - 1]
  const [py, pdy, po] = [y, dy, out].map((t) => address(backend, t))
  backendSimd(backend)!.softmaxGrad(py, pdy, po, rowsOf(y, cols), cols, scaleOf(args))
  return out
}

/**
 * The MoE block's combine: out (N, H) = Σ_j ys[a]·gates[flatIndex[a]], a = inverses_j[n] (none
 * where a = A), rows added in the order of j from 0. The bits of gathering the routing weights,
 * multiplying the rows by them and summing each token's rows back (x·s + m, SCALE_ADD's f32
 * product then sum), in one pass instead of three kernels.
 */
function combineKernel(args: KernelArgs): tf.TensorInfo {
  const { ys, gates } = args.inputs as Record<'ys' | 'gates', tf.TensorInfo>
  const { flatIndex, inverses } = args.attrs as unknown as { flatIndex: Int32Array; inverses: Int32Array[] }
  const backend = args.backend as unknown as WasmBackendLike
  const [A, H] = ys.shape
  const N = gates.shape[0]
  const out = backend.makeOutput([N, H], 'float32')
  const g = backend.typedArrayFromHeap(gates) as Float32Array
  const po = address(backend, out)
  const py = address(backend, ys)
  backend.typedArrayFromHeap(out).fill(0)
  const simd = backendSimd(backend)!
  const row = H * 4
  for (const inv of inverses)
    for (let n = 0; n < N; n++) {
      const a = inv[n]
      if (a !== A) simd.scaleAdd(py + a * row, po + n * row, po + n * row, H, g[flatIndex[a]])
    }
  return out
}

/**
 * combineKernel's gradient for dy (N, H): [dys (A, H), dgates (N, E)] with dys[a] =
 * dy[index[a]]·gate and dgates[flatIndex[a]] = dy[index[a]] · ys[a] (DOT's four lanes), 0 for
 * the experts a token did not use.
 */
function combineGradKernel(args: KernelArgs): tf.TensorInfo[] {
  const { dy, ys, gates } = args.inputs as Record<'dy' | 'ys' | 'gates', tf.TensorInfo>
  const { index, flatIndex } = args.attrs as unknown as { index: Int32Array; flatIndex: Int32Array }
  const backend = args.backend as unknown as WasmBackendLike
  const [A, H] = ys.shape
  const dys = backend.makeOutput([A, H], 'float32')
  const dgates = backend.makeOutput(gates.shape, 'float32')
  const g = backend.typedArrayFromHeap(gates) as Float32Array
  const dg = backend.typedArrayFromHeap(dgates) as Float32Array
  dg.fill(0)
  const [pdy, py, pdys] = [dy, ys, dys].map((t) => address(backend, t))
  const simd = backendSimd(backend)!
  const row = H * 4
  for (let a = 0; a < A; a++) {
    const from = pdy + index[a] * row
    simd.scale(from, pdys + a * row, H, g[flatIndex[a]])
    dg[flatIndex[a]] = simd.dot(from, py + a * row, H)
  }
  return [dys, dgates]
}

export const COPY = 'MoeWorkbenchCopy'
export const COMBINE = 'MoeWorkbenchCombine'
export const COMBINE_GRAD = 'MoeWorkbenchCombineGrad'
export const GATHER_ROWS = 'MoeWorkbenchGatherRows'
export const GATHER_SUM = 'MoeWorkbenchGatherSum'
export const ROPE = 'MoeWorkbenchRope'
export const SCATTER_ADD_ROWS = 'MoeWorkbenchScatterAddRows'

let registered = false

type KernelArgs = Parameters<tf.KernelFunc>[0]

/** Replaces the wasm kernel `name` with `f`, which gets TF.js's own kernel for what it leaves to it. */
function override(name: string, f: (args: KernelArgs, original: tf.KernelFunc) => ReturnType<tf.KernelFunc>): void {
  const original = tf.getKernel(name, 'wasm')!.kernelFunc
  tf.unregisterKernel(name, 'wasm')
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: (args) => f(args, original) })
}

/** x itself under a new tensor: its buffer shared (one more reference), not copied. */
function shareBuffer({ inputs, backend }: KernelArgs): tf.TensorInfo {
  const x = inputs.x!
  ;(backend as unknown as { incRef(d: tf.DataId): void }).incRef(x.dataId)
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
}

/**
 * Whether the current backend runs the fused kernels above (SILU_MUL, SCALE_ADD and their
 * gradients): wasm (the only backend with a wasm heap), its kernels registered (registerWasmKernels),
 * with the SIMD loops loaded over its heap.
 */
export function fusedWasmKernels(): boolean {
  return backendSimd(tf.backend()) !== null && tf.getKernel(SILU_MUL, 'wasm') !== undefined
}

/** Replaces and adds the wasm backend's kernels above (once; call after the backend started). */
export function registerWasmKernels(): void {
  if (registered) return
  if (!tf.getKernel('Slice', 'wasm') || !tf.getKernel('SplitV', 'wasm') || !tf.getKernel('BatchMatMul', 'wasm')) return
  registered = true
  tf.registerKernel({ kernelName: COPY, backendName: 'wasm', kernelFunc: copyKernel as tf.KernelFunc })
  // Identity (tf.clone, and the copy TF.js makes of every tensor a gradient saves) shares the
  // buffer, as Reshape and the cpu backend's Identity do, instead of copying it: tensors are never
  // written in place, and the saved inputs of every layer (expert weights included) were copied
  // each step. A real copy, where one is needed, is the kernel above.
  override('Identity', shareBuffer)
  // Every float product by the native matmul where it is in use (nativeMatMul.ts); TF.js's
  // XNNPACK kernel otherwise, and for batches that broadcast other than one against many.
  override('BatchMatMul', (args, batchMatMul) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo }
    const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2))
    const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2))
    const native =
      nativeMatMul() !== null && a.dtype === 'float32' && b.dtype === 'float32' && (batchA === batchB || batchA === 1 || batchB === 1)
    return native ? batchMatMulKernel(args as never) : batchMatMul(args)
  })
  // Softmax on the last axis by the SIMD loop or the native kernels (every number of rows, so a
  // tensor's bits do not depend on how the engine batched it); TF.js's scalar-exp kernel otherwise.
  override('Softmax', (args, softmax) => {
    const x = args.inputs.logits!
    if (x.dtype !== 'float32' || x.shape.length === 0) return softmax(args)
    return fastSoftmax(x, args.backend as unknown as WasmBackendLike) ?? softmax(args)
  })
  // A sum over leading axes (a broadcast operand's gradient: a bias's, a norm weight's) without
  // TF.js's transpose: 4 ms for 2048 × 256 rows, now ~0.5.
  override('Sum', (args, sum) => {
    const x = args.inputs.x!
    const { axis, keepDims } = args.attrs as unknown as { axis: number | number[]; keepDims: boolean }
    const lead = leadingAxes(x, axis)
    if (lead === 0) return sum(args)
    const backend = args.backend as unknown as WasmBackendLike
    const rest = x.shape.slice(lead)
    const out = backend.makeOutput(keepDims ? [...x.shape.slice(0, lead).map(() => 1), ...rest] : rest, 'float32')
    const [vx, vo] = [backend.typedArrayFromHeap(x) as Float32Array, backend.typedArrayFromHeap(out) as Float32Array]
    const simd = backendSimd(backend)
    if (simd) simd.sumRows(vx.byteOffset, vo.byteOffset, vo.length === 0 ? 0 : vx.length / vo.length, vo.length)
    else sumLeadingRows(vx, vo, vo.length)
    return out
  })
  // A cast to the dtype x already has shares its buffer (as Identity does, above), instead of
  // copying it: every product's gradient casts its operand (2 M floats per expert layer).
  override('Cast', (args, cast) =>
    (args.attrs as unknown as { dtype: tf.DataType }).dtype === args.inputs.x!.dtype ? shareBuffer(args) : cast(args),
  )
  tf.registerKernel({ kernelName: ROPE, backendName: 'wasm', kernelFunc: ropeKernel as tf.KernelFunc })
  for (const [kernelName, kernelFunc] of [
    [SILU_MUL, siluMulKernel],
    [SILU_MUL_GRAD, siluMulGradKernel],
    [SCALE_ADD, scaleAddKernel],
    [SOFTMAX_GRAD, softmaxGradKernel],
    [MASKED_SOFTMAX, maskedSoftmaxKernel],
    [COMBINE, combineKernel],
    [COMBINE_GRAD, combineGradKernel],
  ] as const)
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as tf.KernelFunc })
  tf.registerKernel({ kernelName: GATHER_ROWS, backendName: 'wasm', kernelFunc: gatherRowsKernel as tf.KernelFunc })
  tf.registerKernel({ kernelName: SCATTER_ADD_ROWS, backendName: 'wasm', kernelFunc: scatterAddRowsKernel as tf.KernelFunc })
  tf.registerKernel({ kernelName: GATHER_SUM, backendName: 'wasm', kernelFunc: gatherSumKernel as tf.KernelFunc })
  const sliceKernel = tf.getKernel('Slice', 'wasm')!.kernelFunc // TF.js's own, for SplitV below
  override('Slice', (args, slice) => {
    const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] }
    return contiguousSlice(args.inputs.x!, begin, size, args.backend as unknown as WasmBackendLike) ?? slice(args)
  })
  override('SplitV', (args) => {
    const x = args.inputs.x!
    const { numOrSizeSplits, axis } = args.attrs as unknown as { numOrSizeSplits: number | number[]; axis: number }
    const ax = tf.util.parseAxisParam(axis, x.shape)[0]
    const sizes = tf.backend_util.prepareSplitSize(x as unknown as tf.Tensor, numOrSizeSplits, ax)
    const begin = new Array<number>(x.shape.length).fill(0)
    const size = x.shape.slice()
    return sizes.map((sz) => {
      size[ax] = sz
      const part =
        contiguousSlice(x, begin.slice(), size.slice(), args.backend as unknown as WasmBackendLike) ??
        (sliceKernel({ inputs: { x }, attrs: { begin: begin.slice(), size: size.slice() }, backend: args.backend }) as tf.TensorInfo)
      begin[ax] += sz
      return part
    })
  })
}
