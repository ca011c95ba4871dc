/**
 * AdamW with torch.optim.AdamW semantics (decoupled weight decay, bias-corrected moments):
 *   p ← p·(1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε)
 * State is kept per hub tensor name, so it saves and resumes with the checkpoint.
 */
import * as tf from '@tensorflow/tfjs'
import { ownedVariable } from './ops'

export interface AdamWOptions {
  lr: number
  betas?: [number, number]
  eps?: number
  weightDecay?: number
  /** Which parameters take weight decay (default: all, as torch does). */
  decay?: (name: string) => boolean
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
  private readonly m = new Map<string, tf.Variable>()
  private readonly v = new Map<string, tf.Variable>()

  constructor(opts: Omit<AdamWOptions, 'lr'>) {
    this.betas = opts.betas ?? [0.9, 0.999]
    this.eps = opts.eps ?? 1e-8
    this.weightDecay = opts.weightDecay ?? 0
    this.decay = opts.decay ?? (() => true)
  }

  /** Applies one update with learning rate lr to every parameter that has a gradient. */
  apply(params: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++
    const [b1, b2] = this.betas
    const t = this.step
    const stepSize = lr / (1 - Math.pow(b1, t))
    const bc2 = Math.sqrt(1 - Math.pow(b2, t))
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
