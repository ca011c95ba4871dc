/**
 * AdamW with torch.optim.AdamW semantics (decoupled weight decay, bias-corrected moments):
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
 * State is kept per hub tensor name, so it saves and resumes with the checkpoint.
 *
 * On the cpu backend the update is one fused pass per parameter (a kernel over the tensors'
 * arrays) instead of eleven element-wise kernels, each a JavaScript loop of its own: the update of
 * the bundled 2.7 M-parameter model went from 680 to 45 ms. On wasm it is the same pass in
 * WebAssembly SIMD on the heap (wasmSimd.ts; the fused loop in JavaScript was slower there than
 * TF.js's SIMD kernels, 181 against 86 ms for issue 16's 15.5 M parameters; the SIMD pass reads
 * each array once where the kernels read and wrote eleven). Both round to float32 after every
 * operation in the same order as the kernels, so they give the same bits (tested). Other
 * backends keep TF.js's kernels.
 */
import * as tf from '@tensorflow/tfjs'
import { runKernel } from './kernelCall'
import { ownedVariable } from './ops'
import { address, type WasmBackendLike } from './wasmKernels'
import { backendSimd } from './wasmSimd'

/** The scalars of one update, as the element-wise path makes them (float32 scalar tensors). */
interface UpdateScalars {
  b1: number
  b2: number
  /** 1 − lr·wd, or null without weight decay. */
  decay: number | null
  bc2: number
  eps: number
  stepSize: number
}

const FUSED_KERNEL = 'MoeWorkbenchAdamW'

/**
 * One AdamW update over the parameter's memory: writes p', m', v' from p, m, v, g. Every
 * intermediate is rounded to float32 (Math.fround) in the element-wise path's order; float32
 * +, −, ×, ÷ and √ computed in double and rounded once are exactly the float32 operations.
 */
function fusedAdamWUpdate(
  p: Float32Array,
  m: Float32Array,
  v: Float32Array,
  g: Float32Array,
  out: { p: Float32Array; m: Float32Array; v: Float32Array },
  k: UpdateScalars,
): void {
  const f = Math.fround
  const b1 = f(k.b1)
  const b1c = f(1 - k.b1)
  const b2 = f(k.b2)
  const b2c = f(1 - k.b2)
  const bc2 = f(k.bc2)
  const eps = f(k.eps)
  const step = f(k.stepSize)
  const decay = k.decay === null ? 1 : f(k.decay)
  const decays = k.decay !== null
  const { p: op, m: om, v: ov } = out
  const n = p.length
  for (let i = 0; i < n; i++) {
    const gi = g[i]
    const mNew = f(f(m[i] * b1) + f(gi * b1c))
    const vNew = f(f(v[i] * b2) + f(f(gi * gi) * b2c))
    const decayed = decays ? f(p[i] * decay) : p[i]
    const denom = f(f(f(Math.sqrt(vNew)) / bc2) + eps)
    op[i] = f(decayed - f(f(mNew / denom) * step))
    om[i] = mNew
    ov[i] = vNew
  }
}

interface CpuBackend {
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo
  data: { get(dataId: tf.DataId): { values: Float32Array } }
}

function fusedKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { p, m, v, g } = args.inputs as Record<'p' | 'm' | 'v' | 'g', tf.TensorInfo>
  const b = args.backend as CpuBackend
  const n = tf.util.sizeFromShape(p.shape)
  const out = { p: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n) }
  const read = (t: tf.TensorInfo): Float32Array => b.data.get(t.dataId).values
  fusedAdamWUpdate(read(p), read(m), read(v), read(g), out, args.attrs as unknown as UpdateScalars)
  return [out.p, out.m, out.v].map((values) => b.makeTensorInfo(p.shape, 'float32', values))
}

/** The update on the wasm heap, by the SIMD loop (only registered where it loads). */
function fusedWasmKernel(args: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap }): tf.TensorInfo[] {
  const { p, m, v, g } = args.inputs as Record<'p' | 'm' | 'v' | 'g', tf.TensorInfo>
  const b = args.backend as WasmBackendLike
  const k = args.attrs as unknown as UpdateScalars
  const outs = [0, 1, 2].map(() => b.makeOutput(p.shape, 'float32'))
  // Addresses taken after the allocations (which may grow the heap).
  const [pa, ma, va, ga, po, mo, vo] = [p, m, v, g, ...outs].map((t) => address(b, t))
  const scalars = { b1: k.b1, b1c: 1 - k.b1, b2: k.b2, b2c: 1 - k.b2, decay: k.decay ?? 1, bc2: k.bc2, eps: k.eps, step: k.stepSize }
  backendSimd(b)!.adamw(pa, ma, va, ga, { p: po, m: mo, v: vo }, tf.util.sizeFromShape(p.shape), scalars)
  return outs
}

const registered = new Set<string>()

/** Whether the fused update runs on the current backend (registering its kernel the first time). */
function fusedHere(): boolean {
  const name = tf.getBackend()
  const kernel = name === 'cpu' ? fusedKernel : backendSimd(tf.backend()) ? fusedWasmKernel : null // wasm, its loops loaded
  if (!kernel) return false
  if (!registered.has(name)) {
    registered.add(name)
    tf.registerKernel({ kernelName: FUSED_KERNEL, backendName: name, kernelFunc: kernel as unknown as tf.KernelFunc })
  }
  return true
}

export interface AdamWOptions {
  lr: number
  betas?: [number, number]
  eps?: number
  weightDecay?: number
  /** Which parameters take weight decay (default: all, as torch does). */
  decay?: (name: string) => boolean
  /** The fused update where the backend has it (cpu, wasm); false: TF.js's element-wise kernels everywhere. */
  fused?: boolean
}

export interface AdamWState {
  step: number
  m: Map<string, Float32Array>
  v: Map<string, Float32Array>
}

export class AdamW {
  step = 0
  readonly betas: [number, number]
  readonly eps: number
  readonly weightDecay: number
  private readonly decay: (name: string) => boolean
  private readonly fused: boolean
  private readonly m = new Map<string, tf.Variable>()
  private readonly v = new Map<string, tf.Variable>()

  constructor(opts: Omit<AdamWOptions, 'lr'>) {
    this.betas = opts.betas ?? [0.9, 0.999]
    this.eps = opts.eps ?? 1e-8
    this.weightDecay = opts.weightDecay ?? 0
    this.decay = opts.decay ?? (() => true)
    this.fused = opts.fused ?? true
  }

  /** Applies one update with learning rate lr to every parameter that has a gradient. */
  apply(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++
    const [b1, b2] = this.betas
    const t = this.step
    const stepSize = lr / (1 - Math.pow(b1, t))
    const bc2 = Math.sqrt(1 - Math.pow(b2, t))
    const fused = this.fused && fusedHere()
    for (const [name, g] of grads) {
      const p = params.get(name)
      if (!p) throw new Error(`optimizer: gradient for unknown parameter ${name}`)
      let m = this.m.get(name)
      let v = this.v.get(name)
      if (!m || !v) {
        m = ownedVariable(tf.zerosLike(p), false, `adam_m.${name}`)
        v = ownedVariable(tf.zerosLike(p), false, `adam_v.${name}`)
        this.m.set(name, m)
        this.v.set(name, v)
      }
      const wd = this.decay(name) ? this.weightDecay : 0
      if (fused) {
        const scalars: UpdateScalars = { b1, b2, decay: wd > 0 ? 1 - lr * wd : null, bc2, eps: this.eps, stepSize }
        tf.tidy(() => {
          const [pNew, mNew, vNew] = runKernel(FUSED_KERNEL, { p, m: m!, v: v!, g }, scalars) as tf.Tensor[]
          p.assign(pNew)
          m!.assign(mNew)
          v!.assign(vNew)
        })
        continue
      }
      tf.tidy(() => {
        const mNew = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1))
        const vNew = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2))
        const decayed = wd > 0 ? tf.mul(p, 1 - lr * wd) : p
        const denom = tf.add(tf.div(tf.sqrt(vNew), bc2), this.eps)
        p.assign(tf.sub(decayed, tf.mul(tf.div(mNew, denom), stepSize)))
        m.assign(mNew)
        v.assign(vNew)
      })
    }
  }

  /** state() reading back asynchronously (every backend; webgpu needs it). */
  async stateAsync(): Promise<AdamWState> {
    const m = new Map<string, Float32Array>()
    const v = new Map<string, Float32Array>()
    for (const [k, t] of this.m) m.set(k, (await t.data()) as Float32Array)
    for (const [k, t] of this.v) v.set(k, (await t.data()) as Float32Array)
    return { step: this.step, m, v }
  }

  state(): AdamWState {
    const m = new Map<string, Float32Array>()
    const v = new Map<string, Float32Array>()
    for (const [k, t] of this.m) m.set(k, t.dataSync() as Float32Array)
    for (const [k, t] of this.v) v.set(k, t.dataSync() as Float32Array)
    return { step: this.step, m, v }
  }

  load(state: AdamWState, params: Map<string, tf.Variable>): void {
    this.dispose()
    this.step = state.step
    for (const [k, arr] of state.m) {
      const p = params.get(k)
      const vArr = state.v.get(k)
      if (!p || !vArr) throw new Error(`optimizer state: parameter ${k} does not exist in the model or has no second moment`)
      this.m.set(k, ownedVariable(tf.tensor(arr, p.shape), false, `adam_m.${k}`))
      this.v.set(k, ownedVariable(tf.tensor(vArr, p.shape), false, `adam_v.${k}`))
    }
  }

  dispose(): void {
    for (const t of this.m.values()) t.dispose()
    for (const t of this.v.values()) t.dispose()
    this.m.clear()
    this.v.clear()
  }
}
