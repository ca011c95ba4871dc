/**
 * AdamW's fused update (cpu: a JavaScript loop; wasm: WebAssembly SIMD) against TF.js's
 * element-wise kernels: the same bits, step after step, with and without weight decay, on sizes
 * with and without a tail past the last four lanes; and the update against torch's formula.
 */
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { AdamW } from '../../../src/main/engine/optimizer'
import { Rng } from '../../../src/main/engine/ops'
import { useDeviceSim } from './helpers'

function setUp(seed: number) {
  const rng = new Rng(seed)
  const shapes: Record<string, number[]> = { 'a.weight': [7, 5], 'b.bias': [5], 'c.weight': [3, 4, 2] }
  const params = new Map<string, tf.Variable>()
  for (const [name, shape] of Object.entries(shapes)) {
    const n = shape.reduce((x, y) => x * y, 1)
    const init = tf.tensor(rng.normalArray(n), shape)
    params.set(name, tf.variable(init))
    init.dispose()
  }
  const grads = (step: number): Map<string, tf.Tensor> => {
    const r = new Rng(seed * 100 + step)
    const out = new Map<string, tf.Tensor>()
    for (const [name, p] of params) {
      const g = r.normalArray(p.size).map((v, i) => (i % 7 === 3 ? 0 : v * 10 ** ((i % 5) - 3)))
      out.set(name, tf.tensor(g, p.shape))
    }
    return out
  }
  return { params, grads }
}

async function run(fused: boolean, steps: number): Promise<Map<string, Float32Array>> {
  const { params, grads } = setUp(3)
  const opt = new AdamW({ betas: [0.9, 0.95], eps: 1e-8, weightDecay: 0.1, decay: (n) => !n.endsWith('.bias'), fused })
  for (let s = 0; s < steps; s++) {
    const g = grads(s)
    opt.apply(params, g, 1e-3 * (s + 1))
    tf.dispose([...g.values()])
  }
  const out = new Map<string, Float32Array>()
  for (const [name, p] of params) out.set(name, (await p.data()) as Float32Array)
  const state = await opt.stateAsync()
  for (const [name, m] of state.m) out.set(`m.${name}`, m)
  for (const [name, v] of state.v) out.set(`v.${name}`, v)
  opt.dispose()
  tf.dispose([...params.values()])
  return out
}

describe('AdamW', () => {
  it.each(['cpu', 'wasm'] as const)("%s: the fused update gives the element-wise kernels' bits, and really runs", async (backend) => {
    await initBackend(backend)
    const kernels = await run(false, 5)
    const before = tf.memory().numTensors
    const fused = await run(true, 5)
    expect(tf.memory().numTensors).toBe(before)
    expect([...fused.keys()]).toEqual([...kernels.keys()])
    for (const [name, want] of kernels) expect(Array.from(fused.get(name)!), name).toEqual(Array.from(want))
    // the fused path is in use: one kernel per parameter, no Square or Sqrt
    const { params, grads } = setUp(1)
    const opt = new AdamW({ weightDecay: 0.1 })
    const g = grads(0)
    const profile = await tf.profile(() => opt.apply(params, g, 1e-3))
    const names = profile.kernels.map((k) => k.name)
    expect(names.filter((n) => n === 'MoeWorkbenchAdamW')).toHaveLength(params.size)
    expect(names).not.toContain('Sqrt')
    opt.dispose()
    tf.dispose([...params.values(), ...g.values()])
  })

  it('other backends (webgpu, native TensorFlow: here a stand-in) keep the element-wise kernels', async () => {
    await useDeviceSim()
    const { params, grads } = setUp(1)
    const opt = new AdamW({ weightDecay: 0.1 })
    const g = grads(0)
    const names = (await tf.profile(() => opt.apply(params, g, 1e-3))).kernels.map((k) => k.name)
    expect(names).not.toContain('MoeWorkbenchAdamW')
    expect(names).toContain('Sqrt')
    opt.dispose()
    tf.dispose([...params.values(), ...g.values()])
  })

  it("one step is torch.optim.AdamW's formula", async () => {
    await initBackend('cpu')
    const p = tf.variable(tf.tensor1d([1, -2, 0.5]))
    const g = tf.tensor1d([0.1, 0, -3])
    const opt = new AdamW({ betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01 })
    const params = new Map([['w', p]])
    opt.apply(params, new Map([['w', g]]), 0.1)
    opt.apply(params, new Map([['w', g]]), 0.1)
    // by hand, in double, two steps
    const want = [1, -2, 0.5].map((p0, i) => {
      const gi = [0.1, 0, -3][i]
      let x = p0
      let m = 0
      let v = 0
      for (let t = 1; t <= 2; t++) {
        x *= 1 - 0.1 * 0.01
        m = 0.9 * m + 0.1 * gi
        v = 0.999 * v + 0.001 * gi * gi
        x -= (0.1 / (1 - 0.9 ** t)) * (m / (Math.sqrt(v) / Math.sqrt(1 - 0.999 ** t) + 1e-8))
      }
      return x
    })
    const got = Array.from(await p.data())
    got.forEach((x, i) => expect(x).toBeCloseTo(want[i], 5))
    opt.dispose()
    tf.dispose([p, g])
  })
})

describe('AdamW state (resume)', () => {
  it('state() then load() into a fresh optimiser continues bit for bit; a state for another model is refused', async () => {
    await initBackend('wasm')
    const opts = { betas: [0.9, 0.95] as [number, number], weightDecay: 0.1, decay: (n: string) => !n.endsWith('.bias') }
    const a = setUp(5)
    const b = setUp(5)
    const straight = new AdamW(opts)
    const first = new AdamW(opts)
    for (let s = 0; s < 2; s++) {
      const g1 = a.grads(s)
      const g2 = b.grads(s)
      straight.apply(a.params, g1, 1e-2)
      first.apply(b.params, g2, 1e-2)
      tf.dispose([...g1.values(), ...g2.values()])
    }
    const saved = first.state()
    expect(saved.step).toBe(2)
    expect([...saved.m.keys()].sort()).toEqual(['a.weight', 'b.bias', 'c.weight'])
    expect(saved).toEqual(await first.stateAsync())
    first.dispose()
    const resumed = new AdamW(opts)
    resumed.load(saved, b.params)
    for (let s = 2; s < 4; s++) {
      const g1 = a.grads(s)
      const g2 = b.grads(s)
      straight.apply(a.params, g1, 1e-2)
      resumed.apply(b.params, g2, 1e-2)
      tf.dispose([...g1.values(), ...g2.values()])
    }
    for (const [name, p] of a.params) expect(b.params.get(name)!.dataSync(), name).toEqual(p.dataSync())
    expect(resumed.state()).toEqual(straight.state())
    // a state naming a parameter the model lacks, or missing a second moment
    const other = new AdamW(opts)
    const stray = { step: 1, m: new Map([['z.weight', new Float32Array(2)]]), v: new Map([['z.weight', new Float32Array(2)]]) }
    expect(() => other.load(stray, b.params)).toThrow(
      'optimizer state: parameter z.weight does not exist in the model or has no second moment',
    )
    const noV = { step: 1, m: new Map([['b.bias', new Float32Array(5)]]), v: new Map<string, Float32Array>() }
    expect(() => other.load(noV, b.params)).toThrow('optimizer state: parameter b.bias does not exist')
    const g = new Map([['nope', tf.zeros([1])]])
    expect(() => other.apply(b.params, g, 1e-2)).toThrow('optimizer: gradient for unknown parameter nope')
    tf.dispose([...g.values()])
    for (const o of [straight, resumed, other]) o.dispose()
    tf.dispose([...a.params.values(), ...b.params.values()])
  })
})
