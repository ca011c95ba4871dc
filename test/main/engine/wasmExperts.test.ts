/**
 * The grouped expert kernels on wasm compute exactly what one linear per expert computes: the
 * same matmuls on the same operands, so outputs and every gradient are bit-identical, for experts
 * with no rows, one row or many, and frozen weights take no gradient. Every case runs on both
 * matmul paths: TF.js's XNNPACK kernels and the native one (onnxruntime-node).
 */
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { moeBlock } from '../../../src/main/engine/moe'
import {
  linear,
  mm,
  permuteRows,
  weightsSecond,
  plainWeights,
  Rng,
  swiglu,
  unpermuteRows,
  type Weights,
} from '../../../src/main/engine/ops'
import { groupedSwiglu, matMulWasm, type ExpertProjections } from '../../../src/main/engine/wasmExperts'
import { COPY } from '../../../src/main/engine/wasmKernels'
import { nativeMatMul } from '../../../src/main/engine/nativeMatMul'
import { paramSpecs } from '../../../src/shared/modelConfig'
import { LoraAdapters } from '../../../src/main/train/lora'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { maxAbsDiff, referenceMatMul, tinyConfig, tinyModel, useWasmMatMul, wasmMatMulPaths } from './helpers'

const H = 16
const F = 24

function randomTensor(rng: Rng, shape: number[], scale = 0.3): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1)
  return tf.tensor(
    rng.normalArray(n).map((v) => v * scale),
    shape,
  )
}

function matrixVar(rng: Rng, shape: [number, number], name: string, trainable = true): tf.Variable<tf.Rank.R2> {
  return tf.variable(randomTensor(rng, shape), trainable, name) as tf.Variable<tf.Rank.R2>
}

/** Plain [gate, up, down] matrices as the grouped kernels' projections. */
function projections(ws: (readonly [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D])[]): ExpertProjections[] {
  return ws.map(([g, u, d]) => [{ w: g }, { w: u }, { w: d }] as const)
}

/** Output and gradients (input, then each trainable weight) of f(x) · probe summed. */
function outAndGrads(
  f: (x: tf.Tensor2D) => tf.Tensor2D,
  x: tf.Variable<tf.Rank.R2>,
  vars: tf.Variable[],
  probe: tf.Tensor,
): { out: Float32Array; grads: Float32Array[] } {
  const out = tf.tidy(() => f(x).dataSync() as Float32Array)
  const { grads } = tf.variableGrads(() => tf.sum(tf.mul(f(x), probe)) as tf.Scalar, [x, ...vars])
  // a weight the function never read has no entry: its gradient is zero
  const list = [x, ...vars].map((v) => (grads[v.name]?.dataSync() as Float32Array | undefined) ?? new Float32Array(v.size))
  tf.dispose(Object.values(grads))
  return { out, grads: list }
}

describe.each(await wasmMatMulPaths())('grouped SwiGLU experts on wasm, %s matmul', (path) => {
  let restore = (): void => {}
  beforeAll(async () => {
    restore = await useWasmMatMul(path)
  })
  afterAll(() => restore())

  it('equals one SwiGLU per expert bit for bit, forward and backward, with empty, one-row and 40-row experts', () => {
    const rng = new Rng(5)
    const counts = [3, 0, 1, 40, 2] // 40 rows: the per-expert linear puts W second there
    const A = counts.reduce((a, b) => a + b, 0)
    const weights = counts.map(
      (_, e) => [matrixVar(rng, [F, H], `g${e}`), matrixVar(rng, [F, H], `u${e}`), matrixVar(rng, [H, F], `d${e}`)] as const,
    )
    const x = tf.variable(randomTensor(rng, [A, H], 1), true, 'x') as tf.Variable<tf.Rank.R2>
    const probe = randomTensor(rng, [A, H], 1)
    const vars = weights.flat()

    const grouped = outAndGrads((xx) => groupedSwiglu(xx, counts, projections(weights)), x, vars, probe)
    const perExpert = outAndGrads(
      (xx) => {
        const parts = tf.split(xx, counts) as tf.Tensor2D[]
        const w = plainWeights((name) => vars.find((v) => v.name === name)!)
        return tf.concat(
          parts.map((p, e) => (counts[e] === 0 ? p : swiglu(p, w, [`g${e}`, `u${e}`, `d${e}`]))),
          0,
        ) as tf.Tensor2D
      },
      x,
      vars,
      probe,
    )
    expect(grouped.out).toEqual(perExpert.out)
    expect(grouped.grads.length).toBe(perExpert.grads.length)
    grouped.grads.forEach((g, i) => expect(g, `gradient ${i}`).toEqual(perExpert.grads[i]))
    // the empty expert's weights get exact zeros, the others a real gradient
    expect(grouped.grads.slice(4, 7).every((g) => g.every((v) => v === 0))).toBe(true)
    expect(grouped.grads.slice(1, 4).every((g) => g.some((v) => v !== 0))).toBe(true)
    tf.dispose([...vars, x, probe])
  })

  it.skipIf(path !== 'native')(
    "runs each projection's experts as one native run, and each gradient's input and weight products as one",
    () => {
      const rng = new Rng(8)
      const counts = [5, 0, 3, 9] // 3 experts with rows
      const weights = counts.map(
        (_, e) => [matrixVar(rng, [F, H], `rg${e}`), matrixVar(rng, [F, H], `ru${e}`), matrixVar(rng, [H, F], `rd${e}`)] as const,
      )
      const x = tf.variable(randomTensor(rng, [17, H], 1), true, 'rx') as tf.Variable<tf.Rank.R2>
      const nm = nativeMatMul()!
      const before = nm.runs()
      const y = groupedSwiglu(x, counts, projections(weights))
      expect(nm.runs() - before).toBe(3) // gate, up, down: not one per expert
      const mid = nm.runs()
      const { grads } = tf.variableGrads(() => tf.sum(groupedSwiglu(x, counts, projections(weights))) as tf.Scalar, [x, ...weights.flat()])
      expect(nm.runs() - mid).toBe(3 + 3) // the forward again, then each projection's dx and dW together
      tf.dispose([y, ...Object.values(grads), ...weights.flat(), x])
    },
  )

  it('gives frozen weights no gradient and the trainable ones the same as before', () => {
    const rng = new Rng(9)
    const counts = [4, 3]
    const weights = counts.map(
      (_, e) => [matrixVar(rng, [F, H], `fg${e}`, e === 1), matrixVar(rng, [F, H], `fu${e}`), matrixVar(rng, [H, F], `fd${e}`)] as const,
    )
    const x = tf.variable(randomTensor(rng, [7, H], 1), true, 'fx') as tf.Variable<tf.Rank.R2>
    const trainable = weights.flat().filter((v) => v.trainable)
    const { grads } = tf.variableGrads(() => tf.sum(groupedSwiglu(x, counts, projections(weights))) as tf.Scalar, [x, ...trainable])
    expect(Object.keys(grads).sort()).toEqual(['fd0', 'fd1', 'fg1', 'fu0', 'fu1', 'fx'])
    tf.dispose([...Object.values(grads), ...weights.flat(), x])
  })

  it('is what the MoE block runs on wasm, with the same result as each expert through its own linear', async () => {
    const c = tinyConfig({ numExperts: 6, topK: 2 })
    const rng = new Rng(3)
    const vars = new Map<string, tf.Variable>()
    for (const s of paramSpecs(c))
      if (s.layer === 0 && (s.kind === 'router' || s.kind === 'expert'))
        vars.set(s.name, tf.variable(randomTensor(rng, s.shape), true, s.name))
    const N = 64 // ~21 rows per expert: the per-expert linear puts W second
    const h = tf.variable(randomTensor(rng, [N, c.hiddenSize], 1), true, 'h') as tf.Variable<tf.Rank.R2>
    const probe = randomTensor(rng, [N, c.hiddenSize], 1)
    const plain = plainWeights((name) => vars.get(name)!)
    const perExpertSource: Weights = { get: plain.get, linear: plain.linear } // no matrix(): one linear per expert
    const run = (w: Weights) => (x: tf.Tensor2D) =>
      moeBlock(c, 0, w, x, { training: false, capacityFactor: null, tokenIds: new Int32Array(N) }).out

    const kernels = async (w: Weights): Promise<string[]> =>
      (
        await tf.profile(() => {
          tf.dispose(run(w)(h))
        })
      ).kernels.map((k) => k.name)
    expect(await kernels(plain)).toContain('MoeWorkbenchGroupedLinear')
    expect(await kernels(perExpertSource)).not.toContain('MoeWorkbenchGroupedLinear')
    const list = [...vars.values()]
    const a = outAndGrads(run(plain), h, list, probe)
    const b = outAndGrads(run(perExpertSource), h, list, probe)
    expect(a.out).toEqual(b.out)
    a.grads.forEach((g, i) => expect(g, `gradient ${i}`).toEqual(b.grads[i]))
    // an expert's gradient is really there (the layer routed tokens to several experts)
    const names = [...vars.keys()]
    const touched = names.filter((n, i) => n.includes('experts') && a.grads[i + 1].some((v) => v !== 0))
    expect(touched.length).toBeGreaterThan(3)
    tf.dispose([...list, h, probe])
  })

  it('dispatches rows heap to heap: a gather and its transpose, with a token in two experts and one in one', () => {
    // 3 tokens, 5 routed rows: token 0 → rows 0 and 4, token 1 → row 2, token 2 → rows 1 and 3.
    const index = new Int32Array([0, 2, 1, 2, 0])
    const inverses = [new Int32Array([0, 2, 1]), new Int32Array([4, 5, 3])] // 5 = not routed
    const x = tf.variable(tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2]), true, 'dispatchX') as tf.Variable<tf.Rank.R2>
    expect(Array.from(permuteRows(x, index, inverses).dataSync())).toEqual([1, 2, 5, 6, 3, 4, 5, 6, 1, 2])
    const z = tf.tensor2d([1, 10, 2, 20, 3, 30, 4, 40, 5, 50], [5, 2])
    expect(Array.from(unpermuteRows(z, index, inverses).dataSync())).toEqual([6, 60, 3, 30, 6, 60])
    // backward of the gather sums each token's rows; of its transpose, gathers them
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(permuteRows(x, index, inverses), z)) as tf.Scalar, [x])
    expect(Array.from(grads.dispatchX.dataSync())).toEqual([6, 60, 3, 30, 6, 60])
    tf.dispose([x, z, grads.dispatchX])
  })

  it('multiplies batches and transposed operands item by item as TF.js does, with a batch of one reused', () => {
    const rng = new Rng(11)
    const cases: [number[], number[], boolean, boolean][] = [
      [[2, 3, 5, 4], [2, 3, 4, 6], false, false],
      [[2, 3, 5, 4], [2, 3, 6, 4], false, true],
      [[6, 4, 5], [6, 4, 3], true, false],
      [[2, 7, 4], [1, 4, 3], false, false],
      [[1, 7, 4], [3, 4, 2], false, false],
      [[5, 4], [6, 4], false, true],
      [[4, 5], [4, 6], true, false],
    ]
    for (const [sa, sb, ta, tb] of cases) {
      const a = randomTensor(rng, sa, 1)
      const b = randomTensor(rng, sb, 1)
      const ours = matMulWasm(a, b, ta, tb)
      const theirs = referenceMatMul(a.dataSync(), a.shape, b.dataSync(), b.shape, ta, tb)
      expect(ours.shape, `${sa} x ${sb}`).toEqual(theirs.shape)
      expect(maxAbsDiff(ours.dataSync(), theirs.data), `${sa} x ${sb} ${ta} ${tb}`).toBeLessThan(1e-5)
      tf.dispose([a, b, ours])
    }
  })

  it("attention's products: mm's gradients, with and without a transposed second operand, are TF.js's", () => {
    const rng = new Rng(12)
    const q = tf.variable(randomTensor(rng, [2, 2, 6, 4], 1), true, 'mmQ')
    const k = tf.variable(randomTensor(rng, [2, 2, 5, 4], 1), true, 'mmK')
    const probe = randomTensor(rng, [2, 2, 6, 5], 1)
    const f = (useMm: boolean) => {
      const { value, grads } = tf.variableGrads(
        () => tf.sum(tf.mul(useMm ? mm(q, k, true) : tf.matMul(q, k, false, true), probe)) as tf.Scalar,
        [q, k],
      )
      const r = [value.dataSync(), grads.mmQ.dataSync(), grads.mmK.dataSync()]
      tf.dispose([value, grads.mmQ, grads.mmK])
      return r
    }
    const [ours, theirs] = [f(true), f(false)]
    ours.forEach((o, i) => expect(maxAbsDiff(o, theirs[i]), `output ${i}`).toBeLessThan(1e-4))
    const v = tf.variable(randomTensor(rng, [2, 2, 5, 3], 1), true, 'mmV')
    const p2 = randomTensor(rng, [2, 2, 6, 3], 1)
    const g = (useMm: boolean) => {
      const { grads } = tf.variableGrads(() => tf.sum(tf.mul(useMm ? mm(probe, v) : tf.matMul(probe, v), p2)) as tf.Scalar, [v])
      const r = grads.mmV.dataSync()
      grads.mmV.dispose()
      return r
    }
    expect(maxAbsDiff(g(true), g(false))).toBeLessThan(1e-4)
    tf.dispose([q, k, v, probe, p2])
  })

  it('linear is x · Wᵀ with its gradients whichever slot W takes (many rows: a copy second; one row: W first)', () => {
    const rng = new Rng(13)
    const w = tf.variable(randomTensor(rng, [4, 8], 1), true, 'linW') as tf.Variable<tf.Rank.R2>
    for (const N of [64, 1]) {
      const x = tf.variable(randomTensor(rng, [N, 8], 1), true, `linX${N}`) as tf.Variable<tf.Rank.R2>
      const probe = randomTensor(rng, [N, 4], 1)
      const f = (ours: boolean) => {
        const { value, grads } = tf.variableGrads(
          () => tf.sum(tf.mul(ours ? linear(x, w) : tf.matMul(x, w, false, true), probe)) as tf.Scalar,
          [x, w],
        )
        const r = [value.dataSync(), grads[x.name].dataSync(), grads.linW.dataSync()]
        tf.dispose([value, ...Object.values(grads)])
        return r
      }
      const [ours, theirs] = [f(true), f(false)]
      ours.forEach((o, i) => expect(maxAbsDiff(o, theirs[i]), `N=${N} output ${i}`).toBeLessThan(1e-4))
      expect(maxAbsDiff(linear(x, w).dataSync(), tf.matMul(x, w, false, true).dataSync()), `N=${N} forward`).toBeLessThan(1e-5)
      // Either slot gives the same bits (XNNPACK sums each dot product in the same order): what
      // lets resident, grouped and paged experts, which choose differently, agree bit for bit.
      expect(Array.from(linear(x, w).dataSync()), `N=${N} W second vs W first`).toEqual(
        Array.from(tf.transpose(tf.matMul(w, tf.transpose(x))).dataSync()),
      )
      tf.dispose([x, probe])
    }
    w.dispose()
  })

  it('puts W second only where that moves fewer elements: training batches yes, decoding no', () => {
    expect(weightsSecond(2048, 256, 256)).toBe(true) // 131 k against 1.57 M
    expect(weightsSecond(2048, 256, 8)).toBe(true) // a router
    expect(weightsSecond(1, 4096, 4096)).toBe(false) // one decoded token of a 7B-class projection
    expect(weightsSecond(4, 4096, 14336)).toBe(false)
    // the boundary: 2·out·in against N·(2·in + out)
    expect(weightsSecond(8, 8, 8)).toBe(true) // 128 < 192
    expect(weightsSecond(5, 8, 8)).toBe(false) // 128 > 120
    expect(weightsSecond(6, 8, 8)).toBe(true) // 128 < 144
  })

  it('clone shares the buffer (saved tensors are not copied), a temporary copy of a weight does not', () => {
    const backend = tf.backend() as unknown as { getMemoryOffset(d: tf.DataId): number }
    const w = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2])
    const c = tf.clone(w)
    expect(backend.getMemoryOffset(c.dataId)).toBe(backend.getMemoryOffset(w.dataId))
    w.dispose() // the clone keeps the shared buffer alive
    expect(Array.from(c.dataSync())).toEqual([1, 2, 3, 4, 5, 6])
    const copy = tf.engine().runKernel(COPY, { x: c }, {}) as tf.Tensor
    expect(backend.getMemoryOffset(copy.dataId)).not.toBe(backend.getMemoryOffset(c.dataId))
    expect(Array.from(copy.dataSync())).toEqual([1, 2, 3, 4, 5, 6])
    tf.dispose([c, copy])
  })

  it('frees every scratch buffer it takes from the heap, forward and backward', () => {
    const module = (tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(p: number): void } }).wasm
    const [malloc, free] = [module._malloc, module._free]
    const rng = new Rng(14)
    const counts = [5, 3, 7]
    const weights = counts.map(
      (_, e) => [matrixVar(rng, [F, H], `lg${e}`), matrixVar(rng, [F, H], `lu${e}`), matrixVar(rng, [H, F], `ld${e}`)] as const,
    )
    const x = tf.variable(randomTensor(rng, [15, H], 1), true, 'leakX') as tf.Variable<tf.Rank.R2>
    const q = tf.variable(randomTensor(rng, [2, 3, 4], 1), true, 'leakQ')
    const k = tf.variable(randomTensor(rng, [2, 5, 4], 1), true, 'leakK')
    let live = 0
    module._malloc = (n: number): number => (live++, malloc.call(module, n))
    module._free = (ptr: number): void => (live--, free.call(module, ptr))
    try {
      const { value, grads } = tf.variableGrads(
        () => tf.add(tf.sum(groupedSwiglu(x, counts, projections(weights))), tf.sum(mm(q, k, true))) as tf.Scalar,
        [x, q, k, ...weights.flat()],
      )
      tf.dispose([value, ...Object.values(grads)])
      // every allocation of the kernels was freed: outputs by their disposal, scratch at once
      expect(live).toBe(0)
    } finally {
      module._malloc = malloc
      module._free = free
      tf.dispose([x, q, k, ...weights.flat()])
    }
  })

  it("LoRA on the experts runs grouped too, with the same bits as each expert through the adapter's own linear", async () => {
    const model = tinyModel({ numExperts: 6, topK: 2 }, 4)
    const c = model.config
    const lora = new LoraAdapters(model, validateRunConfig({ method: 'lora', lora: { rank: 3, targets: ['experts'] } }).lora, 7)
    for (const v of lora.B.values()) v.assign(tf.randomNormal(v.shape, 0, 0.1, 'float32', 3))
    const wrapped = lora.wrap(model.weightSource, { training: false })
    const perExpert: Weights = { get: wrapped.get, linear: wrapped.linear }
    const rng = new Rng(15)
    const N = 64
    const h = tf.variable(randomTensor(rng, [N, c.hiddenSize], 1), true, 'loraH') as tf.Variable<tf.Rank.R2>
    const probe = randomTensor(rng, [N, c.hiddenSize], 1)
    const run = (w: Weights) => (x: tf.Tensor2D) =>
      moeBlock(c, 0, w, x, { training: false, capacityFactor: null, tokenIds: new Int32Array(N) }).out
    const names = async (w: Weights): Promise<string[]> => (await tf.profile(() => tf.dispose(run(w)(h)))).kernels.map((k) => k.name)
    expect(await names(wrapped)).toContain('MoeWorkbenchGroupedLinear')
    const vars = [...lora.variables().values()]
    const a = outAndGrads(run(wrapped), h, vars, probe)
    const b = outAndGrads(run(perExpert), h, vars, probe)
    expect(a.out).toEqual(b.out)
    a.grads.forEach((g, i) => expect(g, `gradient ${i}`).toEqual(b.grads[i]))
    expect(a.grads.slice(1).filter((g) => g.some((v) => v !== 0)).length).toBeGreaterThan(6)
    // with adapter dropout in training, each expert goes through the adapter's own linear (its mask)
    const dropping = new LoraAdapters(
      model,
      validateRunConfig({ method: 'lora', lora: { rank: 3, dropout: 0.1, targets: ['experts'] } }).lora,
      7,
    )
    expect(await names(dropping.wrap(model.weightSource, { training: true, rng: new Rng(1) }))).not.toContain('MoeWorkbenchGroupedLinear')
    tf.dispose([h, probe])
    lora.dispose()
    dropping.dispose()
    model.dispose()
  })
})
