/**
 * Matrix products (and row softmax) on the CPU's native SIMD, for the wasm backend.
 *
 * WebAssembly has 128-bit SIMD and no fused multiply-add, so TF.js's wasm matmul (XNNPACK) runs
 * at 10-28 GFLOP/s per core here, where the same core's AVX2/AVX-512 sgemm reaches 70-140. ONNX
 * Runtime's npm package (onnxruntime-node) ships its CPU library prebuilt for Linux and Windows
 * (x64, arm64) and macOS (arm64) inside the package itself, so a plain `npm install` brings a native
 * sgemm (MLAS) with no compiler and no download. This module runs com.microsoft's FusedMatMul
 * (batched, either operand transposed, batch dimensions broadcast; one node a product, or one
 * graph of a node per product for independent products such as an MoE layer's experts), through the
 * binding's synchronous `run`, on views of the wasm heap: the inputs are read where they lie and
 * the product is written straight into the output tensor's buffer (the binding's own copy of it
 * aside: below). The softmax of
 * attention and of the cross-entropy runs there too (ONNX's Softmax: MLAS's vectorised exp).
 *
 * The binding copies every output it returns into a new JavaScript buffer (onnxruntime-node
 * 1.30: `ArrayBuffer::New` and a memcpy, "TODO: optimize memory"), a copy this module throws
 * away. For a large output that copy cost more than the product: a fresh allocation the size of
 * the output, its page faults, and a pass through memory (the language model head's 2048 × 256 ·
 * 256 × 4096, 32 MB out: 111-116 ms in one call on 2 threads, 18-25 ms as 32 calls of 64 rows,
 * 1 MB each). So a product is made in parts whose outputs stay about the size of a core's cache:
 * batch items, or rows of an item where A's rows lie together (`productParts`).
 *
 * Bit-identical across thread counts (MLAS splits the output into tiles, never the reduction:
 * checked for every operand layout in nativeMatMul.test.ts, and on a training step in
 * threads.test.ts). ONNX Runtime refuses views of a
 * SharedArrayBuffer, so the engine pairs it with the single-threaded wasm build, and the threads
 * go to the products instead (backend.ts).
 */
import { createRequire } from 'node:module'

const requireHere = createRequire(import.meta.url)

interface OrtTensor {
  readonly dims: readonly number[]
}
type OrtTensorCtor = new (type: 'float32', data: Float32Array, dims: number[]) => OrtTensor

interface OrtSession {
  loadModel(buffer: ArrayBufferLike, offset: number, length: number, options: object): void
  run(feeds: Record<string, OrtTensor>, fetches: Record<string, OrtTensor>, options: object): unknown
  dispose(): void
}

interface OrtBinding {
  binding: { InferenceSession: new () => OrtSession }
  initOrt(): void
}

// --- the ONNX model: a protobuf message written by hand (a few fields of onnx.proto3) ---

function varint(n: number): number[] {
  const out: number[] = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return out
}
const tag = (field: number, wire: 0 | 2): number[] => varint(field * 8 + wire)
const int = (field: number, n: number): number[] => [...tag(field, 0), ...varint(n)]
const msg = (field: number, body: number[]): number[] => [...tag(field, 2), ...varint(body.length), ...body]
const str = (field: number, s: string): number[] => msg(field, [...Buffer.from(s, 'utf8')])

/** ValueInfoProto: a float tensor of the given rank, every dimension unknown (any size at run time). */
function floatInput(name: string, rank = 3): number[] {
  const shape = Array.from({ length: rank }, () => msg(1, [])).flat() // TensorShapeProto: empty dims
  const tensorType = [...int(1, 1), ...msg(2, shape)] // elem_type FLOAT, shape
  return [...str(1, name), ...msg(2, msg(1, tensorType))] // name, type { tensor_type }
}

/** ModelProto of Y = Softmax(X) over the last axis of X (rows, cols); ONNX opset 13. */
export function softmaxModel(): Uint8Array {
  const node = [...str(1, 'X'), ...str(2, 'Y'), ...str(4, 'Softmax')]
  const graph = [...msg(1, node), ...msg(11, floatInput('X', 2)), ...msg(12, floatInput('Y', 2))]
  const opset = [...str(1, ''), ...int(2, 13)] // opset 13: the axis is the last by default
  return Uint8Array.from([...int(1, 8), ...msg(8, opset), ...msg(7, graph)])
}

/** How a product reads its operands: transA · 2 + transB. */
export type OperandLayout = 0 | 1 | 2 | 3

/**
 * ModelProto of independent products, node i: Y{i} = op(A{i}) · op(B{i}), com.microsoft
 * FusedMatMul with transA / transB from layouts[i] (no names it does not need); one layout: the
 * single product with inputs A, B and output Y.
 */
export function fusedMatMulModel(layouts: readonly OperandLayout[]): Uint8Array {
  const attr = (name: string, v: number): number[] => msg(5, [...str(1, name), ...int(3, v), ...int(20, 2)]) // type INT
  const id = (i: number): string => (layouts.length === 1 ? '' : String(i))
  const nodes: number[] = []
  const inputs: number[] = []
  const outputs: number[] = []
  layouts.forEach((layout, i) => {
    const [a, b, y] = ['A', 'B', 'Y'].map((n) => n + id(i))
    nodes.push(
      ...msg(1, [
        ...str(1, a),
        ...str(1, b),
        ...str(2, y),
        ...str(3, `n${i}`),
        ...str(4, 'FusedMatMul'),
        ...attr('transA', layout >= 2 ? 1 : 0),
        ...attr('transB', layout % 2),
        ...str(7, 'com.microsoft'),
      ]),
    )
    inputs.push(...msg(11, floatInput(a)), ...msg(11, floatInput(b)))
    outputs.push(...msg(12, floatInput(y)))
  })
  const opset = [...str(1, 'com.microsoft'), ...int(2, 1)]
  return Uint8Array.from([...int(1, 8), ...msg(8, opset), ...msg(7, [...nodes, ...inputs, ...outputs])]) // ir_version 8
}

/** Products smaller than this run on the calling thread alone (the same bits: see above). */
const POOL_MIN_FLOP = 8e6
/** Softmaxes smaller than this run on the calling thread alone (rows are never split: the same bits). */
const POOL_MIN_ELEMENTS = 1 << 16

/**
 * The most floats one call should write (1 MB): the binding's copy of a call's output stays in the
 * cache and its allocation is reused (see above; 64 rows of the 4096-wide head were the fastest
 * split measured: 16 rows 28-43 ms, 64 rows 18-31, 128 rows 24-31, 512 rows 43-50, all 2048 111-125).
 */
export const CALL_MAX_OUTPUT = 1 << 18
/** Fewest rows a split item's part takes (each call packs B again: fewer rows would mostly pack). */
export const CALL_MIN_ROWS = 64
/**
 * The largest B (floats, 16 MB) whose item is split into runs of rows: each run packs B again,
 * which costs little while B stays in the cache and more than the copy it saves once B is read
 * from memory each time (a 7B model's 4096 × 14336 expert, 235 MB: one call, its copy a few % of it).
 */
export const CALL_MAX_SHARED_B = 1 << 22

/** One call's part of a product: batch items [item, item + items), rows [row, row + rows) of each. */
export interface ProductPart {
  item: number
  items: number
  row: number
  rows: number
}

/** `n` things in `parts` runs whose sizes differ by one at most: [start, count] of each. */
function even(n: number, parts: number): [number, number][] {
  return Array.from({ length: parts }, (_, i): [number, number] => {
    const start = Math.floor((i * n) / parts)
    return [start, Math.floor(((i + 1) * n) / parts) - start]
  })
}

/**
 * How a (batch, m, k) · (batch, k, n) product is split into calls whose outputs are at most
 * `maxOutput` floats: whole when it fits; else groups of batch items; else, item by item, runs of
 * at least CALL_MIN_ROWS rows where A is not transposed (a transposed A's rows are its columns)
 * and B is at most CALL_MAX_SHARED_B; otherwise an item is one call. Each output element is still
 * one call's dot product over the whole of k, so the split changes no bits (tested).
 */
export function productParts(
  batch: number,
  m: number,
  k: number,
  n: number,
  transposeA: boolean,
  maxOutput = CALL_MAX_OUTPUT,
): ProductPart[] {
  const per = m * n
  // As many items a call as fit (all of them where the product fits; none to make where it is empty).
  if (per <= maxOutput)
    return even(batch, Math.ceil(batch / Math.floor(maxOutput / per))).map(([item, items]) => ({ item, items, row: 0, rows: m }))
  // As many runs as the output needs, but none under CALL_MIN_ROWS rows.
  const count = Math.max(1, Math.min(Math.ceil(m / Math.max(1, Math.floor(maxOutput / n))), Math.floor(m / CALL_MIN_ROWS)))
  const runs: [number, number][] = !transposeA && k * n <= CALL_MAX_SHARED_B ? even(m, count) : [[0, m]]
  const parts: ProductPart[] = []
  for (let item = 0; item < batch; item++) for (const [row, rows] of runs) parts.push({ item, items: 1, row, rows })
  return parts
}

/** Row-major float32 operands: a (batchA, m, k) or, transposed, (batchA, k, m); b likewise (k, n) or (n, k). */
export interface MatMulOperands {
  a: Float32Array
  b: Float32Array
  /** Where the product (max(batchA, batchB), m, n) is written. */
  out: Float32Array
  batchA: number
  batchB: number
  m: number
  k: number
  n: number
  transposeA: boolean
  transposeB: boolean
}

/** Row-major float32 (rows, cols): the softmax of each row of x, written to out. */
export interface SoftmaxOperands {
  x: Float32Array
  out: Float32Array
  rows: number
  cols: number
}

export interface NativeMatMul {
  /** What multiplies: a line for the backend report. */
  readonly library: string
  readonly threads: number
  /** out = op(a) · op(b), batch by batch (a batch of 1 is used for every item of the other). */
  matMul(p: MatMulOperands): void
  /**
   * Independent products (the experts' of one projection, a gradient's input and weight
   * products) as one ONNX Runtime run of one node per call part: each product's bits are the
   * ones matMul makes, at a fraction of the calls' cost (see GROUP_MAX_NODES).
   */
  matMulMany(ps: readonly MatMulOperands[]): void
  /**
   * Softmax of each row, on MLAS's vectorised exp: TF.js's wasm exp is scalar
   * (a 2048 × 4096 exp took 95 ms). Each row is one thread's, so the bits do not depend on the
   * thread count.
   */
  softmax(p: SoftmaxOperands): void
  /** How many ONNX Runtime runs the products and softmaxes have made (a product may take several: see productParts). */
  runs(): number
  /** How many of matMulMany's graphs are loaded now (at most GROUP_MAX_GRAPHS). */
  graphs(): number
}

/**
 * The most products one run of matMulMany makes (a graph's nodes: an MoE layer's projection is
 * one node per expert, its gradient two). One run instead of a call per expert: a call is a trip
 * through the binding and, on a pool, a wake-up of its threads; in one run the pool's threads
 * spin from one product to the next and stop when the run returns. Measured, 8 experts' x · Wᵀ
 * of 128 → 256 on 2 threads: 64 rows each 285 µs as 8 calls on one thread, 289 as one run; 256
 * rows 997 / 756; 512 rows 1749 (8 calls on the pool) / 1389.
 */
export const GROUP_MAX_NODES = 64
/** The most graphs matMulMany keeps made (one per count of nodes of each layout, and pool). */
export const GROUP_MAX_GRAPHS = 256

const threadOptions = (threads: number, spin: boolean): object => ({
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
  // Pool threads sleep between products instead of spinning: the engine's thread runs the other
  // ops between them, and a spinning pool took its CPU (measured, 2 threads on 2 CPUs: 1020
  // tokens/s spinning, 1586 not; 1 thread 1330). A grouped run's threads spin between its
  // products and stop as it returns (force_spinning_stop).
  extra: { session: spin ? { intra_op: { allow_spinning: '1' }, force_spinning_stop: '1' } : { intra_op: { allow_spinning: '0' } } },
})

/**
 * Loads ONNX Runtime's CPU library with `threads` threads for its products. Throws with the
 * reason where it cannot (the package missing, or its library not loading on this platform).
 */
export function loadNativeMatMul(threads: number, maxOutput = CALL_MAX_OUTPUT): NativeMatMul {
  const { binding, initOrt } = requireHere('onnxruntime-node/dist/binding') as OrtBinding
  const { Tensor } = requireHere('onnxruntime-node') as { Tensor: OrtTensorCtor }
  const version = (requireHere('onnxruntime-node/package.json') as { version: string }).version
  initOrt()
  const open = (bytes: Uint8Array, intraThreads: number, spin: boolean): OrtSession => {
    const s = new binding.InferenceSession()
    s.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, threadOptions(intraThreads, spin))
    return s
  }
  // Sessions by model (0-3: the products, by their OperandLayout; 4: the softmax) and pool (+ 5).
  // A number, not a string or a closure, per call: a small model makes thousands of calls a step.
  const sessions: OrtSession[] = []
  const SOFTMAX = 4
  const session = (model: number, pool: boolean): OrtSession => {
    const key = model + (pool ? 5 : 0)
    return (sessions[key] ??= open(
      model === SOFTMAX ? softmaxModel() : fusedMatMulModel([model as OperandLayout]),
      pool ? threads : 1,
      false,
    ))
  }
  // matMulMany's graphs, by their nodes' layouts and pool.
  const groups = new Map<string, OrtSession>()
  const group = (layouts: OperandLayout[], pool: boolean): OrtSession => {
    const key = (pool ? 'p' : 's') + layouts.join('')
    let s = groups.get(key)
    if (!s) {
      // A bound on what they hold, whatever a model's routing makes of them.
      if (groups.size >= GROUP_MAX_GRAPHS) {
        for (const g of groups.values()) g.dispose()
        groups.clear()
      }
      groups.set(key, (s = open(fusedMatMulModel(layouts), pool ? threads : 1, pool)))
    }
    return s
  }
  let runs = 0
  /** Each call part of a product: its operands as ONNX Runtime tensors, its layout and work. */
  const partsOf = (
    p: MatMulOperands,
    each: (A: OrtTensor, B: OrtTensor, Y: OrtTensor, layout: OperandLayout, flop: number) => void,
  ): void => {
    // An empty product is no call at all; an empty reduction (k = 0) is ONNX Runtime's: it writes zeros.
    const { m, k, n, transposeA: ta, transposeB: tb } = p
    const batch = Math.max(p.batchA, p.batchB)
    for (const { item, items, row, rows } of productParts(batch, m, k, n, ta, maxOutput)) {
      const batchA = p.batchA > 1 ? items : 1
      const batchB = p.batchB > 1 ? items : 1
      const a0 = (p.batchA > 1 ? item * m * k : 0) + row * k // rows < m only where A is not transposed
      const b0 = p.batchB > 1 ? item * k * n : 0
      const o0 = (item * m + row) * n
      const A = new Tensor('float32', p.a.subarray(a0, a0 + batchA * rows * k), ta ? [batchA, k, rows] : [batchA, rows, k])
      const B = new Tensor('float32', p.b.subarray(b0, b0 + batchB * k * n), tb ? [batchB, n, k] : [batchB, k, n])
      const Y = new Tensor('float32', p.out.subarray(o0, o0 + items * rows * n), [items, rows, n])
      each(A, B, Y, ((ta ? 2 : 0) + (tb ? 1 : 0)) as OperandLayout, 2 * items * rows * k * n)
    }
  }
  // Waking the pool costs more than a small product gains from it (measured, 2 threads on 2
  // CPUs: 64x128x256 97 against 82 µs on one thread; even at 8 MFLOP; 2x faster at 130).
  const pooled = (flop: number): boolean => threads > 1 && flop >= POOL_MIN_FLOP
  const run = (p: MatMulOperands): void =>
    partsOf(p, (A, B, Y, layout, flop) => {
      session(layout, pooled(flop)).run({ A, B }, { Y }, {})
      runs++
    })
  const many = (ps: readonly MatMulOperands[]): void => {
    const parts: { A: OrtTensor; B: OrtTensor; Y: OrtTensor; layout: OperandLayout; flop: number }[] = []
    for (const p of ps) partsOf(p, (A, B, Y, layout, flop) => parts.push({ A, B, Y, layout, flop }))
    // By layout (the products are independent): a graph is then known by how many nodes of each
    // layout it has, whichever experts are empty or frozen, so the graphs made stay few.
    parts.sort((a, b) => a.layout - b.layout)
    for (let at = 0; at < parts.length; at += GROUP_MAX_NODES) {
      const chunk = parts.slice(at, at + GROUP_MAX_NODES)
      const pool = pooled(chunk.reduce((s, x) => s + x.flop, 0))
      if (chunk.length === 1) session(chunk[0].layout, pool).run({ A: chunk[0].A, B: chunk[0].B }, { Y: chunk[0].Y }, {})
      else {
        const feeds: Record<string, OrtTensor> = {}
        const fetches: Record<string, OrtTensor> = {}
        chunk.forEach((x, i) => {
          feeds[`A${i}`] = x.A
          feeds[`B${i}`] = x.B
          fetches[`Y${i}`] = x.Y
        })
        group(
          chunk.map((x) => x.layout),
          pool,
        ).run(feeds, fetches, {})
      }
      runs++
    }
  }
  const softmax = (p: SoftmaxOperands): void => {
    // Rows in parts of about maxOutput floats (the binding's copy of each output: see above).
    for (const [row, rows] of even(p.rows, Math.max(1, Math.ceil((p.rows * p.cols) / maxOutput)))) {
      const X = new Tensor('float32', p.x.subarray(row * p.cols, (row + rows) * p.cols), [rows, p.cols])
      const Y = new Tensor('float32', p.out.subarray(row * p.cols, (row + rows) * p.cols), [rows, p.cols])
      const pool = threads > 1 && rows > 1 && rows * p.cols >= POOL_MIN_ELEMENTS
      session(SOFTMAX, pool).run({ X }, { Y }, {})
      runs++
    }
  }
  // Loads the library now, so a broken install is reported when the backend starts.
  session(0, false)
  return {
    library: `onnxruntime-node ${version} (MLAS)`,
    threads,
    matMul: run,
    matMulMany: many,
    softmax,
    runs: () => runs,
    graphs: () => groups.size,
  }
}

let active: NativeMatMul | null = null

/** The native products the wasm kernels use, or null (XNNPACK's own). Set once by backend.ts. */
export function nativeMatMul(): NativeMatMul | null {
  return active
}

export function useNativeMatMul(n: NativeMatMul | null): void {
  active = n
}
