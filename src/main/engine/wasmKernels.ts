/**
 * Faster wasm kernels for contiguous slices and for the row gathers of token dispatch. TF.js 4.22's wasm Slice (and SplitV, made of it)
 * first copies the whole source tensor out of the heap into JavaScript (readSync), then the part
 * wanted back in: slicing 8 MB of routed tokens into 64 experts copied 512 MB. A contiguous slice
 * (a range of rows) is now one copy of the part, heap to heap; others take TF.js's own kernel.
 */
import * as tf from '@tensorflow/tfjs'
import { nativeMatMul } from './nativeMatMul'
import { batchMatMulKernel } from './wasmExperts'

interface WasmBackendLike {
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
  const dst = backend.typedArrayFromHeap(out) as Float32Array
  for (let a = 0; a < index.length; a++) dst.set(src.subarray(index[a] * H, index[a] * H + H), a * H)
  return out
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
  addRowsBack(dst, src, inverses, A, H)
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

/** A real copy (a fresh buffer and tensor id), where Identity now shares (see below). */
function copyKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const x = args.inputs.x!
  const backend = args.backend as WasmBackendLike
  const out = backend.makeOutput(x.shape, x.dtype)
  backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(x) as never)
  return out
}

export const COPY = 'MoeWorkbenchCopy'
export const GATHER_ROWS = 'MoeWorkbenchGatherRows'
export const GATHER_SUM = 'MoeWorkbenchGatherSum'

let registered = false

/** Replaces the wasm backend's Slice and SplitV kernels (once; call after the backend started). */
export function registerWasmKernels(): void {
  if (registered) return
  const slice = tf.getKernel('Slice', 'wasm')
  const splitV = tf.getKernel('SplitV', 'wasm')
  if (!slice || !splitV || !tf.getKernel('BatchMatMul', 'wasm')) return
  registered = true
  tf.registerKernel({ kernelName: COPY, backendName: 'wasm', kernelFunc: copyKernel as tf.KernelFunc })
  // Identity (tf.clone, and the copy TF.js makes of every tensor a gradient saves) shares the
  // buffer, as Reshape and the cpu backend's Identity do, instead of copying it: tensors are never
  // written in place, and the saved inputs of every layer (expert weights included) were copied
  // each step. A real copy, where one is needed, is the kernel above.
  tf.unregisterKernel('Identity', 'wasm')
  tf.registerKernel({
    kernelName: 'Identity',
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const x = inputs.x!
      ;(backend as unknown as { incRef(d: tf.DataId): void }).incRef(x.dataId)
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype }
    },
  })
  // Every float product by the native matmul where it is in use (nativeMatMul.ts); TF.js's
  // XNNPACK kernel otherwise, and for batches that broadcast other than one against many.
  const batchMatMul = tf.getKernel('BatchMatMul', 'wasm')!.kernelFunc
  tf.unregisterKernel('BatchMatMul', 'wasm')
  tf.registerKernel({
    kernelName: 'BatchMatMul',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo }
      const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2))
      const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2))
      const native =
        nativeMatMul() !== null && a.dtype === 'float32' && b.dtype === 'float32' && (batchA === batchB || batchA === 1 || batchB === 1)
      return native ? batchMatMulKernel(args as never) : batchMatMul(args)
    },
  })
  tf.registerKernel({ kernelName: GATHER_ROWS, backendName: 'wasm', kernelFunc: gatherRowsKernel as tf.KernelFunc })
  tf.registerKernel({ kernelName: GATHER_SUM, backendName: 'wasm', kernelFunc: gatherSumKernel as tf.KernelFunc })
  const sliceKernel = slice.kernelFunc
  tf.unregisterKernel('Slice', 'wasm')
  tf.registerKernel({
    kernelName: 'Slice',
    backendName: 'wasm',
    kernelFunc: (args) => {
      const { begin, size } = args.attrs as unknown as { begin: number[]; size: number[] }
      return contiguousSlice(args.inputs.x!, begin, size, args.backend as unknown as WasmBackendLike) ?? sliceKernel(args)
    },
  })
  tf.unregisterKernel('SplitV', 'wasm')
  tf.registerKernel({
    kernelName: 'SplitV',
    backendName: 'wasm',
    kernelFunc: (args) => {
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
    },
  })
}
