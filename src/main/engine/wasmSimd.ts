/**
 * Element-wise loops over the wasm heap in WebAssembly SIMD, for the kernels this engine adds to
 * TF.js's wasm backend.
 *
 * Those kernels (wasmKernels.ts: the row sums of token dispatch, an embedding's gradient, RoPE, a
 * norm weight's gradient; optimizer.ts: AdamW) were JavaScript loops over Float32Array views of
 * the heap: V8 runs them at ~4 ns an element here (a float32 load, a double add, a float32 store),
 * where four lanes of f32x4 run at memory speed. Others fuse what TF.js runs as chains of
 * element-wise kernels, each a pass over memory (SwiGLU's product, attention's scale, mask and
 * softmax gradient), and a softmax with a vectorised exp. This module is under four kilobytes of
 * WebAssembly, assembled below, that imports TF.js's own wasm memory (the threaded build's shared
 * one too), so it reads and writes the tensors where they lie. Each lane of f32x4.add, sub, mul,
 * div and sqrt is the IEEE float32 operation, so every result but the softmax's has the bits of
 * the float32 operations it replaces, in the same order (tested against the JavaScript loops and
 * TF.js's kernels); the softmax is within 2 ulp of exact, and a row's bits depend on that row only.
 *
 * Null where the runtime refuses the module (no WebAssembly SIMD): the JavaScript loops and
 * TF.js's kernels remain.
 */

const I32 = 0x7f
const F32 = 0x7d
const V128 = 0x7b

function uleb(n: number): number[] {
  const out: number[] = []
  do {
    let b = n & 0x7f
    n >>>= 7
    if (n !== 0) b |= 0x80
    out.push(b)
  } while (n !== 0)
  return out
}

function sleb(n: number): number[] {
  const out: number[] = []
  for (;;) {
    const b = n & 0x7f
    n >>= 7
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) return [...out, b]
    out.push(b | 0x80)
  }
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()]
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body]
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'utf8')]

// --- instructions ---
const get = (i: number): number[] => [0x20, ...uleb(i)]
const set = (i: number): number[] => [0x21, ...uleb(i)]
const i32 = (n: number): number[] => [0x41, ...sleb(n)]
const I32_ADD = [0x6a]
const I32_MUL = [0x6c]
const I32_AND = [0x71]
const I32_REM_U = [0x70]
const I32_GE_U = [0x4f]
const BR_IF_OUT = [0x0d, 1] // from inside the loop of `loop` below: leave its block
const F32_LOAD = [0x2a, 2, 0]
const F32_STORE = [0x38, 2, 0]
const V128_LOAD = [0xfd, 0x00, 0, 0]
const V128_STORE = [0xfd, 0x0b, 0, 0]
const SPLAT = [0xfd, 0x13]
const CALL = (f: number): number[] => [0x10, ...uleb(f)]

/** f32 and f32x4 arithmetic, by name. */
type Arith = 'add' | 'sub' | 'mul' | 'div' | 'sqrt'
const SCALAR: Record<Arith, number[]> = { add: [0x92], sub: [0x93], mul: [0x94], div: [0x95], sqrt: [0x91] }
const SIMD: Record<Arith, number[]> = {
  add: [0xfd, 0xe4, 0x01],
  sub: [0xfd, 0xe5, 0x01],
  mul: [0xfd, 0xe6, 0x01],
  div: [0xfd, 0xe7, 0x01],
  sqrt: [0xfd, 0xe3, 0x01],
}

/** for (i = i; i < end; i += step) body, with i and end locals (unsigned compare). */
function loop(i: number, end: number, step: number, body: number[]): number[] {
  // prettier-ignore
  return [
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(i), ...get(end), ...I32_GE_U, ...BR_IF_OUT,
    ...body,
    ...get(i), ...i32(step), ...I32_ADD, ...set(i),
    0x0c, 0, // br loop
    0x0b, 0x0b, // end, end
  ]
}

/**
 * An element-wise pass over n floats: a vector loop over the first n & ~3, then a scalar one.
 * `body(simd, at)` is the code of one step; `at(ptr)` pushes the address of the current element
 * of the array whose address is in local `ptr` (byte offset o, a local, added to it).
 */
function elementwise(n: number, o: number, end: number, body: (simd: boolean, at: (ptr: number) => number[]) => number[]): number[] {
  const at = (ptr: number): number[] => [...get(ptr), ...get(o), ...I32_ADD]
  // prettier-ignore
  return [
    ...i32(0), ...set(o),
    ...get(n), ...i32(-4), ...I32_AND, ...i32(4), ...I32_MUL, ...set(end),
    ...loop(o, end, 16, body(true, at)),
    ...get(n), ...i32(4), ...I32_MUL, ...set(end),
    ...loop(o, end, 4, body(false, at)),
  ]
}

interface Fn {
  name: string
  params: number[]
  results: number[]
  locals: number[]
  body: number[]
}

// add(dst, src, n): dst[i] += src[i], i < n.
const ADD: Fn = (() => {
  const [dst, src, n, o, end] = [0, 1, 2, 3, 4]
  return {
    name: 'add',
    params: [I32, I32, I32],
    results: [],
    locals: [I32, I32],
    body: elementwise(n, o, end, (simd, at) => {
      const [load, store, add] = simd ? [V128_LOAD, V128_STORE, SIMD.add] : [F32_LOAD, F32_STORE, SCALAR.add]
      return [...at(dst), ...at(dst), ...load, ...at(src), ...load, ...add, ...store]
    }),
  }
})()

// sum_rows(x, out, rows, cols): out[c] += x[r][c] for r in order (out zeroed by the caller).
const SUM_ROWS: Fn = (() => {
  const [x, out, rows, cols, r, row] = [0, 1, 2, 3, 4, 5]
  // prettier-ignore
  return {
    name: 'sum_rows',
    params: [I32, I32, I32, I32],
    results: [],
    locals: [I32, I32],
    body: [
      ...i32(0), ...set(r), ...get(x), ...set(row),
      ...loop(r, rows, 1, [
        ...get(out), ...get(row), ...get(cols), ...CALL(0), // add(out, row, cols)
        ...get(row), ...get(cols), ...i32(4), ...I32_MUL, ...I32_ADD, ...set(row),
      ]),
    ],
  }
})()

/**
 * rope(x, cos, sin, out, rows, T, D): each row r of x (rows, D) with the tables' row r mod T.
 * Forward: [a·c₁ − b·s₁, b·c₂ + a·s₂]; with `transpose` (the gradient): [a·c₁ + b·s₂, b·c₂ − a·s₁],
 * for the halves a, b of the row and c, s of the tables. D/2 must be a multiple of 4.
 */
function ropeFn(transpose: boolean): Fn {
  const [x, cos, sin, out, rows, T, D] = [0, 1, 2, 3, 4, 5, 6]
  const [r, o, halfB, xr, cr, sr, or] = [7, 8, 9, 10, 11, 12, 13]
  const [a, b, c1, c2, s1, s2] = [14, 15, 16, 17, 18, 19]
  // prettier-ignore
  const addr = (base: number, upper: boolean): number[] => [
    ...get(base), ...get(o), ...I32_ADD, ...(upper ? [...get(halfB), ...I32_ADD] : []),
  ]
  const ld = (base: number, upper: boolean, into: number): number[] => [...addr(base, upper), ...V128_LOAD, ...set(into)]
  const prod = (p: number, q: number): number[] => [...get(p), ...get(q), ...SIMD.mul]
  const lo = transpose ? [...prod(a, c1), ...prod(b, s2), ...SIMD.add] : [...prod(a, c1), ...prod(b, s1), ...SIMD.sub]
  const hi = transpose ? [...prod(b, c2), ...prod(a, s1), ...SIMD.sub] : [...prod(b, c2), ...prod(a, s2), ...SIMD.add]
  // prettier-ignore
  const rowOf = (base: number, row: number[], into: number): number[] => [
    ...get(base), ...row, ...get(D), ...I32_MUL, ...i32(4), ...I32_MUL, ...I32_ADD, ...set(into),
  ]
  return {
    name: transpose ? 'rope_t' : 'rope',
    params: [I32, I32, I32, I32, I32, I32, I32],
    results: [],
    locals: [I32, I32, I32, I32, I32, I32, I32, V128, V128, V128, V128, V128, V128],
    // prettier-ignore
    body: [
      ...get(D), ...i32(2), ...I32_MUL, ...set(halfB), // D/2 floats: 2·D bytes
      ...i32(0), ...set(r),
      ...loop(r, rows, 1, [
        ...rowOf(x, get(r), xr),
        ...rowOf(out, get(r), or),
        ...rowOf(cos, [...get(r), ...get(T), ...I32_REM_U], cr),
        ...rowOf(sin, [...get(r), ...get(T), ...I32_REM_U], sr),
        ...i32(0), ...set(o),
        ...loop(o, halfB, 16, [
          ...ld(xr, false, a), ...ld(xr, true, b),
          ...ld(cr, false, c1), ...ld(cr, true, c2),
          ...ld(sr, false, s1), ...ld(sr, true, s2),
          ...addr(or, false), ...lo, ...V128_STORE,
          ...addr(or, true), ...hi, ...V128_STORE,
        ]),
      ]),
    ],
  }
}

/**
 * adamw(p, m, v, g, pOut, mOut, vOut, n, β1, 1−β1, β2, 1−β2, decay, bc2, ε, step): optimizer.ts's
 * update, each operation rounded to float32 in its order:
 *   m' = m·β1 + g·(1−β1);  v' = v·β2 + (g·g)·(1−β2);  p' = p·decay − (m' / (√v' / bc2 + ε))·step
 */
const ADAMW: Fn = (() => {
  const [p, m, v, g, po, mo, vo, n] = [0, 1, 2, 3, 4, 5, 6, 7]
  const scalars = [8, 9, 10, 11, 12, 13, 14, 15] // b1 b1c b2 b2c decay bc2 eps step (f32)
  const [o, end] = [16, 17]
  const splats = [18, 19, 20, 21, 22, 23, 24, 25] // the scalars, splatted
  const [mv, vv] = [26, 27] // m', v' of the current step (v128; the scalar pass uses 28, 29)
  const [ms, vs] = [28, 29]
  const [b1, b1c, b2, b2c, decay, bc2, eps, step] = [0, 1, 2, 3, 4, 5, 6, 7]
  return {
    name: 'adamw',
    params: [I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32, F32],
    results: [],
    locals: [I32, I32, V128, V128, V128, V128, V128, V128, V128, V128, V128, V128, F32, F32],
    body: [
      ...scalars.flatMap((s, i) => [...get(s), ...SPLAT, ...set(splats[i])]),
      ...elementwise(n, o, end, (simd, at) => {
        const [load, store, op] = simd ? [V128_LOAD, V128_STORE, SIMD] : [F32_LOAD, F32_STORE, SCALAR]
        const k = (j: number): number[] => get(simd ? splats[j] : scalars[j])
        const [mNew, vNew] = simd ? [mv, vv] : [ms, vs]
        // prettier-ignore
        return [
          ...at(m), ...load, ...k(b1), ...op.mul, ...at(g), ...load, ...k(b1c), ...op.mul, ...op.add, ...set(mNew),
          ...at(v), ...load, ...k(b2), ...op.mul, ...at(g), ...load, ...at(g), ...load, ...op.mul, ...k(b2c), ...op.mul, ...op.add,
          ...set(vNew),
          ...at(mo), ...get(mNew), ...store,
          ...at(vo), ...get(vNew), ...store,
          ...at(po),
          ...at(p), ...load, ...k(decay), ...op.mul,
          ...get(mNew), ...get(vNew), ...op.sqrt, ...k(bc2), ...op.div, ...k(eps), ...op.add, ...op.div, ...k(step), ...op.mul,
          ...op.sub, ...store,
        ]
      }),
    ],
  }
})()

/** An element-wise function of `ins` input arrays and `outs` output arrays over n floats. */
function map(fnName: string, ins: number, outs: number, scalars: number, body: (op: Op) => number[]): Fn {
  const arrays = ins + outs
  const n = arrays
  const k0 = n + 1 // f32 scalars
  const [o, end] = [k0 + scalars, k0 + scalars + 1]
  const splat0 = end + 1 // v128 copies of the scalars
  const tmp0 = splat0 + scalars // two scratch locals of each kind
  const locals = [I32, I32, ...Array(scalars).fill(V128), V128, V128, F32, F32]
  return {
    name: fnName,
    params: [...Array(arrays).fill(I32), I32, ...Array(scalars).fill(F32)],
    results: [],
    locals,
    body: [
      ...Array.from({ length: scalars }, (_, i) => [...get(k0 + i), ...SPLAT, ...set(splat0 + i)]).flat(),
      ...elementwise(n, o, end, (simd, at) => {
        const [load, store, arith] = simd ? [V128_LOAD, V128_STORE, SIMD] : [F32_LOAD, F32_STORE, SCALAR]
        return body({
          arith,
          load: (i) => [...at(i), ...load],
          store: (j, value) => [...at(ins + j), ...value, ...store],
          scalar: (i) => get(simd ? splat0 + i : k0 + i),
          tmp: (i) => (simd ? tmp0 + i : tmp0 + 2 + i),
        })
      }),
    ],
  }
}

interface Op {
  arith: Record<Arith, number[]>
  /** Pushes the current element of input i. */
  load(i: number): number[]
  /** Stores `value` (code that pushes it) as the current element of output j. */
  store(j: number, value: number[]): number[]
  /** Pushes scalar i (splatted in the vector pass). */
  scalar(i: number): number[]
  /** A scratch local (0 or 1) of the current pass's type. */
  tmp(i: number): number
}

// silu_mul(g, s, u, out, n): out = (g·s)·u, s = sigmoid(g) (TF.js's): SwiGLU's product.
const SILU_MUL = map('silu_mul', 3, 1, 0, ({ arith, load, store }) =>
  store(0, [...load(0), ...load(1), ...arith.mul, ...load(2), ...arith.mul]),
)

// silu_mul_grad(dy, g, s, u, dg, du, n): TF.js's gradients of (g·s)·u through Mul, Mul and
// Sigmoid: a = dy·u; du = dy·(g·s); dg = a·s + (a·g)·(s·(1 − s)).
const SILU_MUL_GRAD = map('silu_mul_grad', 4, 2, 1, ({ arith, load, store, scalar, tmp }) => {
  const a = tmp(0)
  // prettier-ignore
  return [
    ...load(0), ...load(3), ...arith.mul, ...set(a),
    ...store(1, [...load(0), ...load(1), ...load(2), ...arith.mul, ...arith.mul]),
    ...store(0, [
      ...get(a), ...load(2), ...arith.mul,
      ...get(a), ...load(1), ...arith.mul, ...load(2), ...scalar(0), ...load(2), ...arith.sub, ...arith.mul, ...arith.mul,
      ...arith.add,
    ]),
  ]
})

// scale_add(x, m, out, n, scale): out = x·scale + m (attention's scaled, masked scores).
const SCALE_ADD = map('scale_add', 2, 1, 1, ({ arith, load, store, scalar }) =>
  store(0, [...load(0), ...scalar(0), ...arith.mul, ...load(1), ...arith.add]),
)

/**
 * softmax_grad(y, dy, out, rows, cols, scale): TF.js's gradient of softmax over rows of y, times
 * scale: with p = dy·y, out = (p − (Σ p)·y)·scale, the row sum in order from 0 as TF.js's Sum.
 */
const SOFTMAX_GRAD: Fn = (() => {
  const [y, dy, out, rows, cols, scale] = [0, 1, 2, 3, 4, 5]
  const [r, o, end, sum, at, sv, kv] = [6, 7, 8, 9, 10, 11, 12]
  const addr = (base: number): number[] => [...get(base), ...get(at), ...I32_ADD, ...get(o), ...I32_ADD]
  // A row's vector pass, then its scalar tail (addr adds the row's offset to the pass's o).
  const pass = (code: (simd: boolean) => number[]): number[] => elementwise(cols, o, end, code)
  // prettier-ignore
  const product = (simd: boolean): number[] => {
    const [load, store, op] = simd ? [V128_LOAD, V128_STORE, SIMD] : [F32_LOAD, F32_STORE, SCALAR]
    return [...addr(out), ...addr(dy), ...load, ...addr(y), ...load, ...op.mul, ...store]
  }
  // prettier-ignore
  const result = (simd: boolean): number[] => {
    const [load, store, op] = simd ? [V128_LOAD, V128_STORE, SIMD] : [F32_LOAD, F32_STORE, SCALAR]
    const [s, k] = simd ? [sv, kv] : [sum, scale]
    return [
      ...addr(out), ...addr(out), ...load, ...get(s), ...addr(y), ...load, ...op.mul, ...op.sub, ...get(k), ...op.mul, ...store,
    ]
  }
  // prettier-ignore
  return {
    name: 'softmax_grad',
    params: [I32, I32, I32, I32, I32, F32],
    results: [],
    locals: [I32, I32, I32, F32, I32, V128, V128],
    body: [
      ...get(scale), ...SPLAT, ...set(kv),
      ...i32(0), ...set(r), ...i32(0), ...set(at),
      ...loop(r, rows, 1, [
        ...pass(product),
        // the row sum, one float at a time
        ...f32(0), ...set(sum),
        ...i32(0), ...set(o), ...get(cols), ...i32(4), ...I32_MUL, ...set(end),
        ...loop(o, end, 4, [...get(sum), ...addr(out), ...F32_LOAD, ...SCALAR.add, ...set(sum)]),
        ...get(sum), ...SPLAT, ...set(sv),
        ...pass(result),
        ...get(at), ...get(cols), ...i32(4), ...I32_MUL, ...I32_ADD, ...set(at),
      ]),
    ],
  }
})()

/** f32.const v. */
function f32(v: number): number[] {
  return [0x43, ...new Uint8Array(Float32Array.of(v).buffer)]
}
/** 0x1.MMMMMMp{e} (a C hex float: mantissa digits after the point, six of them). */
const hexFloat = (digits: string, e: number): number => (1 + parseInt(digits, 16) / 2 ** 24) * 2 ** e

const V_MAX = [0xfd, 0xe9, 0x01]
const V_LT = [0xfd, 0x43]
const V_ANDNOT = [0xfd, 0x4f]
const V_NEAREST = [0xfd, 0x6a]
const I32X4_TRUNC_SAT = [0xfd, 0xf8, 0x01]
const I32X4_ADD = [0xfd, 0xae, 0x01]
const I32X4_SHL = [0xfd, 0xab, 0x01]
const I32X4_SPLAT = [0xfd, 0x11]
const LANE = (i: number): number[] => [0xfd, 0x1f, i] // f32x4.extract_lane
const F32_MAX = [0x97]

/**
 * softmax_rows(x, out, rows, cols): the softmax of each row (cols a multiple of 4): its max, then
 * exp(x − max) by XNNPACK's rr2-p5 approximation (2^n · p(t), Cody-Waite reduction, a degree-5
 * minimax polynomial: within 2 ulp; 0 below the float32 normal range), summed in four lanes
 * combined in a fixed order, then each divided by the sum. One row at a time on one thread: the
 * bits of a row do not depend on the others or on the thread count.
 * masked_softmax_rows(x, out, rows, cols, mask, maskRows, scale): the same of x·scale + mask, with
 * mask row r mod maskRows (attention's scores), each x·scale + m made again where it is read
 * instead of written out and read back: the bits of softmax_rows over scale_add's output.
 */
function softmaxRowsFn(masked: boolean): Fn {
  const [x, out, rows, cols, mask, maskRows, scale] = [0, 1, 2, 3, 4, 5, 6]
  const L = masked ? 7 : 4 // the first local
  const [r, o, end, at, mrow] = [L, L + 1, L + 2, L + 3, L + 4]
  const [vmax, vsum, vz, vn, vs, vt, vp, vscale] = [L + 5, L + 6, L + 7, L + 8, L + 9, L + 10, L + 11, L + 12]
  const [log2e, mLn2Hi, mLn2Lo, c1, c2, c3, c4, c5, cutoff] = Array.from({ length: 9 }, (_, i) => L + 13 + i)
  const constants: [number, number][] = [
    [log2e, Math.LOG2E],
    [mLn2Hi, -hexFloat('62E400', -1)],
    [mLn2Lo, -hexFloat('7F7D1C', -20)],
    [c1, hexFloat('FFFFF6', -1)],
    [c2, hexFloat('FFFDC6', -2)],
    [c3, hexFloat('555A80', -3)],
    [c4, hexFloat('573A1A', -5)],
    [c5, hexFloat('0F9F9C', -7)],
    [cutoff, -hexFloat('5D589E', 6)],
  ]
  const addr = (base: number): number[] => [...get(base), ...get(at), ...I32_ADD, ...get(o), ...I32_ADD]
  const mul = SIMD.mul
  const add = SIMD.add
  // prettier-ignore
  const value = masked // the current four values of the row: x, or x·scale + mask
    ? [...addr(x), ...V128_LOAD, ...get(vscale), ...mul, ...get(mrow), ...get(o), ...I32_ADD, ...V128_LOAD, ...add]
    : [...addr(x), ...V128_LOAD]
  // prettier-ignore
  const exp = [ // vz → exp(vz) on the stack, vz ≤ 0
    ...get(vz), ...get(log2e), ...mul, ...V_NEAREST, ...set(vn),
    ...get(vn), ...I32X4_TRUNC_SAT, ...i32(127), ...I32X4_SPLAT, ...I32X4_ADD, ...i32(23), ...I32X4_SHL, ...set(vs),
    ...get(vz), ...get(vn), ...get(mLn2Hi), ...mul, ...add, ...get(vn), ...get(mLn2Lo), ...mul, ...add, ...set(vt),
    ...get(c5), ...get(vt), ...mul, ...get(c4), ...add,
    ...get(vt), ...mul, ...get(c3), ...add,
    ...get(vt), ...mul, ...get(c2), ...add,
    ...get(vt), ...mul, ...get(c1), ...add, ...set(vp),
    ...get(vt), ...get(vs), ...mul, ...get(vp), ...mul, ...get(vs), ...add,
    ...get(vz), ...get(cutoff), ...V_LT, ...V_ANDNOT,
  ]
  // prettier-ignore
  return {
    name: masked ? 'masked_softmax_rows' : 'softmax_rows',
    params: masked ? [I32, I32, I32, I32, I32, I32, F32] : [I32, I32, I32, I32],
    results: [],
    locals: [I32, I32, I32, I32, I32, ...Array(17).fill(V128)],
    body: [
      ...constants.flatMap(([local, v]) => [...f32(v), ...SPLAT, ...set(local)]),
      ...(masked ? [...get(scale), ...SPLAT, ...set(vscale)] : []),
      ...get(cols), ...i32(4), ...I32_MUL, ...set(end),
      ...i32(0), ...set(r), ...i32(0), ...set(at),
      ...loop(r, rows, 1, [
        ...(masked ? [...get(mask), ...get(r), ...get(maskRows), ...I32_REM_U, ...get(end), ...I32_MUL, ...I32_ADD, ...set(mrow)] : []),
        ...f32(-Infinity), ...SPLAT, ...set(vmax),
        ...i32(0), ...set(o),
        ...loop(o, end, 16, [...get(vmax), ...value, ...V_MAX, ...set(vmax)]),
        ...get(vmax), ...LANE(0), ...get(vmax), ...LANE(1), ...F32_MAX,
        ...get(vmax), ...LANE(2), ...get(vmax), ...LANE(3), ...F32_MAX, ...F32_MAX, ...SPLAT, ...set(vmax),
        ...f32(0), ...SPLAT, ...set(vsum),
        ...i32(0), ...set(o),
        ...loop(o, end, 16, [
          ...value, ...get(vmax), ...SIMD.sub, ...set(vz),
          ...addr(out), ...exp, ...set(vp), ...get(vp), ...V128_STORE,
          ...get(vsum), ...get(vp), ...add, ...set(vsum),
        ]),
        ...get(vsum), ...LANE(0), ...get(vsum), ...LANE(1), ...SCALAR.add,
        ...get(vsum), ...LANE(2), ...get(vsum), ...LANE(3), ...SCALAR.add, ...SCALAR.add, ...SPLAT, ...set(vsum),
        ...i32(0), ...set(o),
        ...loop(o, end, 16, [...addr(out), ...addr(out), ...V128_LOAD, ...get(vsum), ...SIMD.div, ...V128_STORE]),
        ...get(at), ...get(end), ...I32_ADD, ...set(at),
      ]),
    ],
  }
}

// scale(x, out, n, s): out = x·s (a routed row's gradient, its routing weight s).
const SCALE = map('scale', 1, 1, 1, ({ arith, load, store, scalar }) => store(0, [...load(0), ...scalar(0), ...arith.mul]))

/**
 * dot(a, b, n) → Σ a[i]·b[i], in four lanes (element i in lane i mod 4) combined as
 * (l0 + l1) + (l2 + l3), then the tail of n mod 4 in order: a routing weight's gradient.
 */
const DOT: Fn = (() => {
  const [a, b, n, o, end, acc, sum] = [0, 1, 2, 3, 4, 5, 6]
  const at = (ptr: number): number[] => [...get(ptr), ...get(o), ...I32_ADD]
  // prettier-ignore
  return {
    name: 'dot',
    params: [I32, I32, I32],
    results: [F32],
    locals: [I32, I32, V128, F32],
    body: [
      ...f32(0), ...SPLAT, ...set(acc),
      ...i32(0), ...set(o),
      ...get(n), ...i32(-4), ...I32_AND, ...i32(4), ...I32_MUL, ...set(end),
      ...loop(o, end, 16, [...get(acc), ...at(a), ...V128_LOAD, ...at(b), ...V128_LOAD, ...SIMD.mul, ...SIMD.add, ...set(acc)]),
      ...get(acc), ...LANE(0), ...get(acc), ...LANE(1), ...SCALAR.add,
      ...get(acc), ...LANE(2), ...get(acc), ...LANE(3), ...SCALAR.add, ...SCALAR.add, ...set(sum),
      ...get(n), ...i32(4), ...I32_MUL, ...set(end),
      ...loop(o, end, 4, [...get(sum), ...at(a), ...F32_LOAD, ...at(b), ...F32_LOAD, ...SCALAR.mul, ...SCALAR.add, ...set(sum)]),
      ...get(sum),
    ],
  }
})()

const FNS: Fn[] = [
  ADD,
  SUM_ROWS,
  ropeFn(false),
  ropeFn(true),
  ADAMW,
  SILU_MUL,
  SILU_MUL_GRAD,
  SCALE_ADD,
  SOFTMAX_GRAD,
  softmaxRowsFn(false),
  softmaxRowsFn(true),
  SCALE,
  DOT,
]

/** The module: FNS over an imported memory "env"."memory" (a shared one, or not). */
export function simdModuleBytes(shared = false): Uint8Array {
  const types = FNS.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec(f.results.map((t) => [t]))])
  // memory, limits: min 0 and no max; shared (the threaded build's), min 0, max 4 GiB
  const limits = shared ? [0x03, 0x00, ...uleb(65536)] : [0x00, 0x00]
  const imports = [[...name('env'), ...name('memory'), 0x02, ...limits]]
  const code = FNS.map((f) => {
    const body = [...vec(f.locals.map((t) => [1, t])), ...f.body, 0x0b]
    return [...uleb(body.length), ...body]
  })
  // prettier-ignore
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...section(1, vec(types)), ...section(2, vec(imports)),
    ...section(3, vec(FNS.map((_, i) => uleb(i)))), ...section(7, vec(FNS.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(code)),
  ])
}

/** Scalars of one AdamW update (see optimizer.ts): decay is 1 without weight decay. */
export interface AdamWScalars {
  b1: number
  b1c: number
  b2: number
  b2c: number
  decay: number
  bc2: number
  eps: number
  step: number
}

/** The loops, on byte addresses of float32 arrays in the memory they were made for. */
export interface HeapSimd {
  /** dst[i] += src[i], i < n. */
  add(dst: number, src: number, n: number): void
  /** out[c] = Σ_r x[r][c] over rows in order, from 0. */
  sumRows(x: number, out: number, rows: number, cols: number): void
  /** ropeRows (wasmKernels.ts) on x (rows, D), tables (T, D); D/2 a multiple of 4 (else false, and nothing done). */
  rope(x: number, cos: number, sin: number, out: number, rows: number, T: number, D: number, transpose: boolean): boolean
  adamw(p: number, m: number, v: number, g: number, out: { p: number; m: number; v: number }, n: number, k: AdamWScalars): void
  /** out = (g·s)·u over n floats (s = sigmoid(g)). */
  siluMul(g: number, s: number, u: number, out: number, n: number): void
  /** dg, du of siluMul for its gradient dy, as TF.js's Mul, Mul and Sigmoid gradients make them. */
  siluMulGrad(dy: number, g: number, s: number, u: number, dg: number, du: number, n: number): void
  /** out = x·scale + m over n floats. */
  scaleAdd(x: number, m: number, out: number, n: number, scale: number): void
  /** out = x·s over n floats. */
  scale(x: number, out: number, n: number, s: number): void
  /** Σ a[i]·b[i] over n floats, in four lanes (see DOT). */
  dot(a: number, b: number, n: number): number
  /** The softmax of each row of x (rows, cols) into out; cols a multiple of 4 (else false, and nothing done). */
  softmax(x: number, out: number, rows: number, cols: number): boolean
  /**
   * The softmax of each row r of x·scale + mask (mask row r mod maskRows) into out; cols a
   * multiple of 4 (else false, and nothing done): softmax over scaleAdd's output, without it.
   */
  maskedSoftmax(x: number, mask: number, out: number, rows: number, cols: number, maskRows: number, scale: number): boolean
  /** TF.js's softmax gradient over rows of (y, dy), times scale: (dy·y − Σ(dy·y)·y)·scale. */
  softmaxGrad(y: number, dy: number, out: number, rows: number, cols: number, scale: number): void
}

const made = new WeakMap<WebAssembly.Memory, HeapSimd | null>()

/** The loops over `memory` (shared or not), or null where the runtime refuses them (no SIMD). */
export function heapSimd(memory: WebAssembly.Memory): HeapSimd | null {
  if (made.has(memory)) return made.get(memory)!
  let simd: HeapSimd | null = null
  const shared = typeof SharedArrayBuffer !== 'undefined' && memory.buffer instanceof SharedArrayBuffer
  try {
    const inst = new WebAssembly.Instance(new WebAssembly.Module(simdModuleBytes(shared) as BufferSource), { env: { memory } })
    const e = inst.exports as Record<string, (...args: number[]) => void>
    simd = {
      add: (dst, src, n) => e.add(dst, src, n),
      sumRows: (x, out, rows, cols) => {
        new Uint8Array(memory.buffer, out, cols * 4).fill(0)
        e.sum_rows(x, out, rows, cols)
      },
      rope: (x, cos, sin, out, rows, T, D, transpose) => {
        if (D % 8 !== 0) return false
        ;(transpose ? e.rope_t : e.rope)(x, cos, sin, out, rows, T, D)
        return true
      },
      adamw: (p, m, v, g, out, n, k) =>
        e.adamw(p, m, v, g, out.p, out.m, out.v, n, k.b1, k.b1c, k.b2, k.b2c, k.decay, k.bc2, k.eps, k.step),
      siluMul: (g, s, u, out, n) => e.silu_mul(g, s, u, out, n),
      siluMulGrad: (dy, g, s, u, dg, du, n) => e.silu_mul_grad(dy, g, s, u, dg, du, n, 1),
      scaleAdd: (x, m, out, n, scale) => e.scale_add(x, m, out, n, scale),
      scale: (x, out, n, k) => e.scale(x, out, n, k),
      dot: (a, b, n) => (e.dot as unknown as (...args: number[]) => number)(a, b, n),
      softmax: (x, out, rows, cols) => {
        if (cols % 4 !== 0) return false
        e.softmax_rows(x, out, rows, cols)
        return true
      },
      maskedSoftmax: (x, mask, out, rows, cols, maskRows, scale) => {
        if (cols % 4 !== 0) return false
        e.masked_softmax_rows(x, out, rows, cols, mask, maskRows, scale)
        return true
      },
      softmaxGrad: (y, dy, out, rows, cols, scale) => e.softmax_grad(y, dy, out, rows, cols, scale),
    }
  } catch {
    simd = null
  }
  made.set(memory, simd)
  return simd
}

/**
 * The loops over a TF.js wasm backend's memory, or null: the single-threaded build's Emscripten
 * module exports its memory (`asm.memory`), the threaded build imports a shared one (`wasmMemory`).
 */
export function backendSimd(backend: unknown): HeapSimd | null {
  const wasm = (backend as { wasm?: { wasmMemory?: unknown; asm?: { memory?: unknown } } }).wasm
  const memory = wasm?.wasmMemory ?? wasm?.asm?.memory
  return memory instanceof WebAssembly.Memory ? heapSimd(memory) : null
}
