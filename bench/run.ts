/**
 * `npm run bench`: figures measured side by side in one run, written to bench/results/*.json.
 *
 * moe-layer: forward + backward time of one sparse MoE layer (router, top-k dispatch, experts,
 * combine) against a dense SwiGLU FFN with the same active FLOPs (intermediate = k · expert
 * width), on every backend that starts here. The ratio MoE / dense is the dispatch overhead.
 *
 * Options (env): BENCH_BACKENDS=wasm,cpu  BENCH_TOKENS=256
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { BACKEND_NAMES, initBackend, type BackendName } from '../src/main/engine/backend'
import { moeBlock } from '../src/main/engine/moe'
import { plainWeights, Rng, swiglu } from '../src/main/engine/ops'
import { paramSpecs, validateMoeConfig, type MoeConfig } from '../src/shared/modelConfig'

interface LayerResult {
  backend: BackendName
  tokens: number
  hidden: number
  expertWidth: number
  experts: number
  topK: number
  denseWidth: number
  activeGflopPerPass: number
  moeMs: number
  denseMs: number
  ratio: number
  moeGflops: number
  denseGflops: number
  iterations: number
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function timeIt(fn: () => void, minIters: number, budgetMs: number): { ms: number; iterations: number } {
  fn() // warm-up: kernels compile and buffers allocate on first use
  const times: number[] = []
  const start = performance.now()
  while (times.length < minIters || (performance.now() - start < budgetMs && times.length < 50)) {
    const t0 = performance.now()
    fn()
    times.push(performance.now() - t0)
  }
  return { ms: median(times), iterations: times.length }
}

function layerConfig(): MoeConfig {
  return validateMoeConfig({
    family: 'mixtral',
    vocabSize: 256,
    hiddenSize: 128,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 4,
    headDim: 32,
    intermediateSize: 256,
    expertIntermediateSize: 256,
    numExperts: 8,
    topK: 2,
    normTopkProb: true,
  })
}

function benchLayer(backend: BackendName, tokens: number): LayerResult {
  const c = layerConfig()
  const H = c.hiddenSize
  const I = c.expertIntermediateSize
  const denseWidth = c.topK * I
  const rng = new Rng(42)
  const vars = new Map<string, tf.Variable>()
  for (const s of paramSpecs(c)) {
    if (s.layer !== 0 || (s.kind !== 'router' && s.kind !== 'expert')) continue
    const n = s.shape.reduce((a, b) => a * b, 1)
    vars.set(s.name, tf.variable(tf.tensor(rng.normalArray(n).map((v) => v * 0.05), s.shape)))
  }
  const dense = [
    tf.variable(tf.tensor(rng.normalArray(denseWidth * H).map((v) => v * 0.05), [denseWidth, H])),
    tf.variable(tf.tensor(rng.normalArray(denseWidth * H).map((v) => v * 0.05), [denseWidth, H])),
    tf.variable(tf.tensor(rng.normalArray(denseWidth * H).map((v) => v * 0.05), [H, denseWidth])),
  ]
  const x = tf.randomNormal([tokens, H], 0, 1, 'float32', 1) as tf.Tensor2D
  const w = plainWeights((name: string): tf.Tensor => vars.get(name)!)
  const denseW = plainWeights((name: string): tf.Tensor => dense[Number(name)])
  const tokenIds = new Int32Array(tokens)

  const moeStep = (): void => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(moeBlock(c, 0, w, x, { training: true, capacityFactor: null, rng, tokenIds }).out)), [...vars.values()])
    value.dataSync()
    for (const g of Object.values(grads)) g.dataSync()
    tf.dispose([value, ...Object.values(grads)])
  }
  const denseStep = (): void => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(swiglu(x, denseW, ['0', '1', '2']))), dense)
    value.dataSync()
    for (const g of Object.values(grads)) g.dataSync()
    tf.dispose([value, ...Object.values(grads)])
  }
  const budget = backend === 'cpu' ? 4000 : 3000
  const minIters = backend === 'cpu' ? 3 : 10
  // Interleave so both see the same machine state.
  const d1 = timeIt(denseStep, minIters, budget / 2)
  const m1 = timeIt(moeStep, minIters, budget / 2)
  const d2 = timeIt(denseStep, minIters, budget / 2)
  const m2 = timeIt(moeStep, minIters, budget / 2)
  const denseMs = Math.min(d1.ms, d2.ms)
  const moeMs = Math.min(m1.ms, m2.ms)
  // forward + backward ≈ 3 × the forward's 2·N·H·3·width multiply-adds
  const activeGflop = (3 * 2 * tokens * H * 3 * denseWidth) / 1e9
  tf.dispose([x, ...vars.values(), ...dense])
  return {
    backend,
    tokens,
    hidden: H,
    expertWidth: I,
    experts: c.numExperts,
    topK: c.topK,
    denseWidth,
    activeGflopPerPass: activeGflop,
    moeMs,
    denseMs,
    ratio: moeMs / denseMs,
    moeGflops: activeGflop / (moeMs / 1000),
    denseGflops: activeGflop / (denseMs / 1000),
    iterations: m1.iterations + m2.iterations,
  }
}

async function main(): Promise<void> {
  const wanted = (process.env.BENCH_BACKENDS ?? BACKEND_NAMES.join(',')).split(',').map((s) => s.trim()) as BackendName[]
  const tokens = Number(process.env.BENCH_TOKENS ?? 256)
  const results: LayerResult[] = []
  const skipped: { backend: string; reason: string }[] = []
  for (const backend of wanted) {
    try {
      await initBackend(backend)
    } catch (e) {
      skipped.push({ backend, reason: (e as Error).message })
      continue
    }
    process.stderr.write(`bench: moe-layer on ${backend}...\n`)
    results.push(benchLayer(backend, tokens))
  }
  const record = {
    bench: 'moe-layer',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version, tfjs: tf.version.tfjs },
    description: 'forward+backward of one MoE layer (8 experts, top-2, dropless) vs a dense SwiGLU FFN with the same active FLOPs; median ms; ratio = moe/dense',
    results,
    skipped,
  }
  const dir = join(import.meta.dirname, 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'moe-layer.json')
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n')

  const rows = results.map((r) => [r.backend, String(r.tokens), r.denseMs.toFixed(2), r.moeMs.toFixed(2), r.ratio.toFixed(2), r.denseGflops.toFixed(2), r.moeGflops.toFixed(2)])
  const head = ['backend', 'tokens', 'dense ms', 'moe ms', 'moe/dense', 'dense GFLOP/s', 'moe GFLOP/s']
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i])).join('  ')
  console.log(`moe-layer: H=${results[0]?.hidden} expert width ${results[0]?.expertWidth}, 8 experts top-2 vs dense width ${results[0]?.denseWidth}, fwd+bwd`)
  console.log(line(head))
  for (const r of rows) console.log(line(r))
  for (const s of skipped) console.log(`skipped ${s.backend}: ${s.reason}`)
  console.log(`wrote ${file}`)
}

void main().catch((e: unknown) => {
  console.error(`bench: error: ${(e as Error).message}`)
  process.exitCode = 1
})
