/**
 * Parity with Hugging Face transformers: golden outputs from test/fixtures/moe-reference (a PyTorch
 * port of HF's Mixtral, Qwen2-MoE, OLMoE and Qwen3-MoE), within the tolerances each expected.json states.
 * Every check runs on cpu and wasm with synchronous reads and the one-tape backward, and on cpu,
 * wasm and webgpu (SwiftShader where no GPU driver is installed) with asynchronous reads and the
 * layer-by-layer backward.
 */
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { initBackend, type BackendName } from '../../../src/main/engine/backend'
import { loadModel } from '../../../src/main/engine/checkpoint'
import { deviceLock, read, scopedAsync } from '../../../src/main/engine/device'
import { generateAsync, generateGreedy } from '../../../src/main/engine/generate'
import { causalLmLoss, loadBalancingLoss, routerZLoss } from '../../../src/main/engine/losses'
import type { MoeModel } from '../../../src/main/engine/model'
import { disposeGrads, lossAndGrads, lossAndGradsLayerwise, objective } from '../../../src/main/engine/objective'
import { AdamW } from '../../../src/main/engine/optimizer'
import { loadSafetensors, type LoadedTensor } from '../../../src/main/engine/safetensors'
import { useWasmMatMul, wasmMatMulPaths, type MatMulPath } from './helpers'
import { prepareWebGpu } from './webgpuEnv'

const FIXTURES = join(__dirname, '../../fixtures/moe-reference')
const FAMILIES = ['mixtral', 'qwen2_moe', 'olmoe', 'qwen3_moe'] as const

interface Tol {
  rtol: number
  atol: number
}
interface Case {
  name: string
  input_ids: number[][]
  labels: number[][]
  ce_loss: number
  aux_loss: number
  total_loss: number
  router_z_loss: number
  adamw: { loss_before: number; total_loss_after_step: number[] }
  generate: { prompt_ids: number[]; new_token_ids: number[]; max_new_tokens: number }
  grad_zero_tensors: string[]
  bf16?: { ce_loss: number; aux_loss: number; total_loss: number; router_z_loss: number }
}
interface Expected {
  summary: { sparse_layers: number[]; top_k: number }
  param_names: string[]
  optimizer: { lr: number; betas: [number, number]; eps: number; weight_decay: number; steps: number }
  tolerances: Record<string, Tol> & { grads: { rtol: number; atol_relative_to_tensor_max_abs: number } }
  cases: Case[]
}

function fixture(family: string): { meta: Expected; tensors: Map<string, LoadedTensor> } {
  const dir = join(FIXTURES, family)
  return {
    meta: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected,
    tensors: loadSafetensors(join(dir, 'expected.safetensors')).tensors,
  }
}

/** max over elements of |a − e| / (atol + rtol·|e|): ≤ 1 means within tolerance. */
function worst(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tol): number {
  expect(actual.length).toBe(expected.length)
  let w = 0
  for (let i = 0; i < expected.length; i++) {
    const r = Math.abs(actual[i] - expected[i]) / (tol.atol + tol.rtol * Math.abs(expected[i]))
    if (!(r <= w)) w = Number.isNaN(r) ? Infinity : Math.max(w, r)
  }
  return w
}

function within(actual: number, expected: number, tol: Tol): void {
  expect(Math.abs(actual - expected), `${actual} vs ${expected}`).toBeLessThanOrEqual(tol.atol + tol.rtol * Math.abs(expected))
}

const webgpuMissing = prepareWebGpu()

/** Everything a forward gives, read back to the host. */
interface ForwardData {
  logits: Float32Array
  routing: { layer: number; routerLogits: Float32Array; topk: number[]; weights: Float32Array }[]
  ce: number
  aux: number
  z: number
  loss: number
}

/**
 * A forward with its losses, read back synchronously (`sync`: forward, objective) or
 * asynchronously (forwardAsync under the device lock: the only way on webgpu).
 */
async function forwardData(model: MoeModel, inputIds: number[][], labels: number[][], sync: boolean): Promise<ForwardData> {
  const collect = async (
    o: Omit<ReturnType<typeof objective>, 'importance' | 'load'>,
    read: (t: tf.Tensor) => Promise<Float32Array>,
  ): Promise<ForwardData> => ({
    logits: await read(o.logits),
    routing: await Promise.all(
      o.routing.map(async (r) => ({
        layer: r.layer,
        routerLogits: await read(r.routerLogits),
        topk: Array.from(r.decision.topk),
        weights: r.weights,
      })),
    ),
    ce: (await read(o.ce))[0],
    aux: (await read(o.aux))[0],
    z: (await read(o.z))[0],
    loss: (await read(o.loss))[0],
  })
  if (sync) {
    const o = objective(model, { inputIds, labels })
    const out = await collect(o, async (t) => t.dataSync() as Float32Array)
    tf.dispose([o.logits, o.ce, o.aux, o.z, o.importance, o.load, o.loss, ...o.routing.flatMap((r) => [r.routerLogits, r.gates])])
    return out
  }
  return deviceLock.run(() =>
    scopedAsync(async () => {
      const c = model.config
      const f = await model.forwardAsync(inputIds)
      const { loss: ce } = causalLmLoss(f.logits, labels)
      const aux = loadBalancingLoss(f.routing)
      const z = routerZLoss(f.routing)
      const loss = tf.add(tf.add(ce, tf.mul(aux, c.routerAuxLossCoef)), tf.mul(z, c.routerZLossCoef)) as tf.Scalar
      return collect({ logits: f.logits, routing: f.routing, ce, aux, z, loss, targets: 0 }, read)
    }),
  )
}

/**
 * (backend, path, wasm's matmul): the one-tape sync path where reads can be synchronous, the
 * async layer-by-layer path everywhere; wasm on each matmul path it has (native and XNNPACK).
 */
const wasmPaths = await wasmMatMulPaths()
const RUNS: [BackendName, boolean, MatMulPath?][] = [
  ['cpu', true],
  ['cpu', false],
  ...wasmPaths.map((p): [BackendName, boolean, MatMulPath] => ['wasm', true, p]),
  ['wasm', false, wasmPaths[0]],
  ['webgpu', false],
]

for (const [backend, sync, matmul] of RUNS) {
  if (backend === 'webgpu' && webgpuMissing) {
    describe.skip(`parity on webgpu: ${webgpuMissing}`, () => {})
    continue
  }
  describe(`parity with HF transformers on ${backend}${matmul ? `, ${matmul} matmul` : ''} (${sync ? 'synchronous reads, one tape' : 'asynchronous reads, layer by layer'})`, () => {
    let restore = (): void => {}
    beforeAll(async () => {
      await initBackend(backend)
      if (matmul) restore = await useWasmMatMul(matmul)
    })
    afterAll(() => restore())

    for (const family of FAMILIES) {
      describe(family, () => {
        const { meta, tensors } = fixture(family)
        const T = (name: string): LoadedTensor => {
          const t = tensors.get(name)
          if (!t) throw new Error(`fixture tensor ${name} missing`)
          return t
        }
        let model: MoeModel
        beforeAll(() => {
          model = loadModel(join(FIXTURES, family))
        })
        afterAll(() => model.dispose())

        const grads = (m: MoeModel, batch: { inputIds: number[][]; labels: number[][] }) =>
          sync ? Promise.resolve(lossAndGrads(m, batch)) : deviceLock.run(() => lossAndGradsLayerwise(m, batch))
        const values = async (g: tf.Tensor): Promise<Float32Array> => (sync ? (g.dataSync() as Float32Array) : read(g))

        for (const c of meta.cases) {
          it(`${c.name}: logits, router logits, top-k choices and weights, losses`, async () => {
            const o = await forwardData(model, c.input_ids, c.labels, sync)
            expect(worst(o.logits, T(`${c.name}.logits`).data, meta.tolerances.logits)).toBeLessThanOrEqual(1)
            expect(o.routing.map((r) => r.layer)).toEqual(meta.summary.sparse_layers)
            for (const r of o.routing) {
              const L = `layer${r.layer}`
              expect(worst(r.routerLogits, T(`${c.name}.router_logits.${L}`).data, meta.tolerances.router_logits)).toBeLessThanOrEqual(1)
              expect(r.topk).toEqual(Array.from(T(`${c.name}.topk_indices.${L}`).data))
              expect(worst(r.weights, T(`${c.name}.topk_weights.${L}`).data, meta.tolerances.topk_weights)).toBeLessThanOrEqual(1)
            }
            within(o.ce, c.ce_loss, meta.tolerances.ce_loss)
            within(o.aux, c.aux_loss, meta.tolerances.aux_loss)
            within(o.loss, c.total_loss, meta.tolerances.total_loss)
            within(o.z, c.router_z_loss, meta.tolerances.router_z_loss)
          })

          it(`${c.name}: gradient of the total loss for every tensor`, async () => {
            const { parts, grads: g } = await grads(model, { inputIds: c.input_ids, labels: c.labels })
            try {
              within(parts.loss, c.total_loss, meta.tolerances.total_loss)
              expect([...g.keys()].sort()).toEqual([...meta.param_names].sort())
              const tol = meta.tolerances.grads
              for (const name of meta.param_names) {
                const actual = await values(g.get(name)!)
                const expected = T(`${c.name}.grad.${name}`).data
                if (c.grad_zero_tensors.includes(name)) {
                  expect(Math.max(...Array.from(actual, Math.abs)), name).toBeLessThanOrEqual(1e-7)
                  continue
                }
                let maxAbs = 0
                for (const v of expected) maxAbs = Math.max(maxAbs, Math.abs(v))
                const w = worst(actual, expected, { rtol: tol.rtol, atol: tol.atol_relative_to_tensor_max_abs * maxAbs })
                expect(w, `gradient of ${name}`).toBeLessThanOrEqual(1)
              }
            } finally {
              disposeGrads(g)
            }
          })

          it(`${c.name}: three AdamW steps reproduce the recorded losses`, async () => {
            const m = loadModel(join(FIXTURES, family))
            const o = meta.optimizer
            const opt = new AdamW({ betas: o.betas, eps: o.eps, weightDecay: o.weight_decay })
            const batch = { inputIds: c.input_ids, labels: c.labels }
            try {
              for (let s = 0; s < o.steps; s++) {
                const { parts, grads: g } = await grads(m, batch)
                if (s === 0) within(parts.loss, c.adamw.loss_before, meta.tolerances.adamw_losses)
                opt.apply(m.params, g, o.lr)
                disposeGrads(g)
                const after = (await forwardData(m, batch.inputIds, batch.labels, sync)).loss
                within(after, c.adamw.total_loss_after_step[s], meta.tolerances.adamw_losses)
              }
            } finally {
              opt.dispose()
              m.dispose()
            }
          })

          for (const useCache of [false, true]) {
            it(`${c.name}: greedy generation ${useCache ? 'with' : 'without'} the KV cache`, async () => {
              const g = c.generate
              const opts = { maxNewTokens: g.max_new_tokens, useCache, stopTokens: [], keepStepLogits: true, sampling: { greedy: true } }
              const r = sync ? generateGreedy(model, g.prompt_ids, opts) : await generateAsync(model, g.prompt_ids, opts)
              expect(r.newTokens).toEqual(g.new_token_ids)
              expect(r.outputIds).toEqual(Array.from(T(`${c.name}.generate.output_ids`).data))
              const steps = new Float32Array(r.stepLogits!.flatMap((x) => Array.from(x)))
              expect(worst(steps, T(`${c.name}.generate.step_logits`).data, meta.tolerances.generate_step_logits)).toBeLessThanOrEqual(1)
            })
          }
        }

        if (family === 'mixtral') {
          it('BF16 checkpoint: logits, choices and losses of the bf16 weights', async () => {
            const bf = loadModelFromFile(join(FIXTURES, family), 'model-bf16.safetensors')
            try {
              for (const c of meta.cases) {
                const f = await forwardData(bf, c.input_ids, c.labels, sync)
                expect(worst(f.logits, T(`bf16.${c.name}.logits`).data, meta.tolerances.bf16_logits)).toBeLessThanOrEqual(1)
                for (const r of f.routing) expect(r.topk).toEqual(Array.from(T(`bf16.${c.name}.topk_indices.layer${r.layer}`).data))
                within(f.ce, c.bf16!.ce_loss, meta.tolerances.ce_loss)
                within(f.aux, c.bf16!.aux_loss, meta.tolerances.aux_loss)
                within(f.z, c.bf16!.router_z_loss, meta.tolerances.router_z_loss)
              }
            } finally {
              bf.dispose()
            }
          })
        }
      })
    }
  })
}

/** Loads the fixture folder with another weights file in place of model.safetensors. */
function loadModelFromFile(dir: string, file: string): MoeModel {
  // A model folder holds model.safetensors; build one for the bf16 weights in a temp folder.
  const tmp = mkdtempSync(join(tmpdir(), 'moe-bf16-'))
  copyFileSync(join(dir, 'config.json'), join(tmp, 'config.json'))
  copyFileSync(join(dir, file), join(tmp, 'model.safetensors'))
  return loadModel(tmp)
}
