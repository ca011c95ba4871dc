/**
 * `npm run bench`: figures measured side by side in one run, written to bench/results/*.json.
 *
 * moe-layer: forward + backward time of one sparse MoE layer (router, top-k dispatch, experts,
 * combine) against a dense SwiGLU FFN with the same active FLOPs (intermediate = k · expert
 * width), on every backend that starts here. The ratio MoE / dense is the dispatch overhead. A
 * small layer (hidden 128, experts 256 wide) at 256 and 2048 tokens, and the peer configuration's
 * layer (hidden 256, experts 512 wide) at its batch of 2048 tokens. Beside it, the same sizes in
 * PyTorch eager as Hugging Face computes Mixtral's sparse block (bench/torch_layer.py; on 1 and 2
 * threads under the engine's malloc settings; skipped with its reason where torch is missing): the
 * ratio a CPU peer reaches, where issue 16's 1.15 is a GPU figure (MegaBlocks).
 *
 * train-step: tokens/s of full training steps (forward, backward, AdamW) of a small Mixtral-family
 * model against a dense model with the same active parameters (every layer a SwiGLU of width
 * k · expert width), on each backend.
 *
 * offload: decode tokens/s and cache hit rate of the small Mixtral with its experts offloaded, at
 * 100%, 50%, 25% and 12.5% of the expert bytes, prefetch on and off (wasm, or the first backend).
 *
 * peer: training tokens/s of the configuration issue 16 measured (hidden 256, 4 layers, 8 heads
 * with 4 KV heads, 8 experts top-2, expert width 512, vocab 4096; batch 8 × 256) on wasm with 1 and
 * 2 threads (each a child process, with the engine process's V8 flags and malloc settings), against
 * Hugging Face transformers' MixtralForCausalLM in PyTorch eager with 1 and 2 threads, each as
 * shipped and with the engine's malloc settings (bench/torch_peer.py; skipped with its reason where
 * torch is missing; BENCH_PYTHON picks the interpreter, else the first of python3 and
 * /usr/bin/python3 that has torch). Ratio: our best / its best.
 *
 * Every in-process section runs under the engine's malloc settings (the bench starts itself again
 * with them), as the engine does in the app.
 *
 * moe-products: the experts' products alone on the native matmul (bench/products.ts): the MoE
 * layer's products against its dense twin's, as the engine runs them and as one node per projection
 * over stacked weights (a lower bound), at the layer sizes above.
 *
 * quick: the bundled model's Quick fine-tune through the built CLI on bench/data/capitals.csv, on 1
 * and 2 threads (bench/quick.ts; BENCH_QUICK_BEFORE=DIR adds another built checkout, side by side).
 *
 * Options (env): BENCH_BACKENDS=wasm,cpu  BENCH_TOKENS=256,2048  BENCH_SKIP=peer,peer-layer,offload,quick,products  BENCH_PYTHON=python3
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { BACKEND_NAMES, initBackend, type BackendName } from '../src/main/engine/backend'
import { moeBlock } from '../src/main/engine/moe'
import { plainWeights, Rng, swiglu } from '../src/main/engine/ops'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { loadModel, saveModel } from '../src/main/engine/checkpoint'
import { generate } from '../src/main/engine/generate'
import { planPlacement } from '../src/main/engine/plan'
import { countParams, paramSpecs, validateMoeConfig, type MoeConfig, type MoeConfigInput } from '../src/shared/modelConfig'
import { MoeModel } from '../src/main/engine/model'
import { ENGINE_V8_FLAGS, engineEnv } from '../src/main/service/engineClient'
import { asShipped, benchQuick } from './quick'
import { trainStepBench } from './trainStep'
import { benchProducts, type ProductsResult } from './products'
import { nativeMatMul } from '../src/main/engine/nativeMatMul'

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

/** [f's ms, g's ms] of alternating runs (after one warm-up run of each), at least minIters pairs, then up to budgetMs or 50 pairs. */
function timePairs(f: () => void, g: () => void, minIters: number, budgetMs: number): [number, number][] {
  f()
  g()
  const pairs: [number, number][] = []
  const start = performance.now()
  while (pairs.length < minIters || (performance.now() - start < budgetMs && pairs.length < 50)) {
    const t0 = performance.now()
    f()
    const t1 = performance.now()
    g()
    pairs.push([t1 - t0, performance.now() - t1])
  }
  return pairs
}

/** One layer's size: hidden and expert widths. */
interface LayerSize {
  hidden: number
  expertWidth: number
}
/** The small layer, where per-kernel overheads weigh most. */
const SMALL_LAYER: LayerSize = { hidden: 128, expertWidth: 256 }

function layerConfig({ hidden, expertWidth }: LayerSize): MoeConfig {
  return validateMoeConfig({
    family: 'mixtral',
    vocabSize: 256,
    hiddenSize: hidden,
    numLayers: 1,
    numHeads: 4,
    numKvHeads: 4,
    headDim: hidden / 4,
    intermediateSize: expertWidth,
    expertIntermediateSize: expertWidth,
    numExperts: 8,
    topK: 2,
    normTopkProb: true,
  })
}

/**
 * Waits for a step's loss and gradients to be computed, and frees them: one element of each read
 * back (an asynchronous backend finishes the work first), not the whole gradient. Reading every
 * gradient to JavaScript is no part of forward and backward (training keeps them where they are,
 * for the optimizer), and it weighed on the MoE side by its total parameters (4x its dense twin's
 * here): at 256 tokens, 0.55 of its ~7 ms against 0.16 ms for the dense layer.
 */
function settle(value: tf.Tensor, grads: tf.NamedTensorMap): void {
  value.dataSync()
  for (const g of Object.values(grads)) tf.tidy(() => tf.slice(tf.reshape(g, [-1]), 0, 1).dataSync())
  tf.dispose([value, ...Object.values(grads)])
}

function benchLayer(backend: BackendName, tokens: number, size: LayerSize = SMALL_LAYER): LayerResult {
  const c = layerConfig(size)
  const H = c.hiddenSize
  const I = c.expertIntermediateSize
  const denseWidth = c.topK * I
  const rng = new Rng(42)
  const vars = new Map<string, tf.Variable>()
  for (const s of paramSpecs(c)) {
    if (s.layer !== 0 || (s.kind !== 'router' && s.kind !== 'expert')) continue
    const n = s.shape.reduce((a, b) => a * b, 1)
    vars.set(
      s.name,
      tf.variable(
        tf.tensor(
          rng.normalArray(n).map((v) => v * 0.05),
          s.shape,
        ),
      ),
    )
  }
  const dense = [
    tf.variable(
      tf.tensor(
        rng.normalArray(denseWidth * H).map((v) => v * 0.05),
        [denseWidth, H],
      ),
    ),
    tf.variable(
      tf.tensor(
        rng.normalArray(denseWidth * H).map((v) => v * 0.05),
        [denseWidth, H],
      ),
    ),
    tf.variable(
      tf.tensor(
        rng.normalArray(denseWidth * H).map((v) => v * 0.05),
        [H, denseWidth],
      ),
    ),
  ]
  // The layer's input is a variable: in a network its gradient is needed (for the layers below),
  // and without it the dense side would skip its gate and up projections' input gradients (2 of
  // its 9 products) where the MoE side computes them.
  const x = tf.variable(tf.randomNormal([tokens, H], 0, 1, 'float32', 1)) as tf.Variable<tf.Rank.R2>
  const w = plainWeights((name: string): tf.Tensor => vars.get(name)!)
  const denseW = plainWeights((name: string): tf.Tensor => dense[Number(name)])
  const tokenIds = new Int32Array(tokens)

  const moeStep = (): void => {
    const { value, grads } = tf.variableGrads(
      () => tf.mean(tf.square(moeBlock(c, 0, w, x, { training: true, capacityFactor: null, rng, tokenIds }).out)),
      [...vars.values(), x],
    )
    settle(value, grads)
  }
  const denseStep = (): void => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(swiglu(x, denseW, ['0', '1', '2']))), [...dense, x])
    settle(value, grads)
  }
  const budget = backend === 'cpu' ? 8000 : 6000
  const minIters = backend === 'cpu' ? 6 : 20
  // Alternate step by step, so each pair sees the same machine state (this VM's speed moves from
  // one second to the next): the ratio is the median of the pairs' ratios.
  const pairs = timePairs(denseStep, moeStep, minIters, budget)
  const denseMs = median(pairs.map(([d]) => d))
  const moeMs = median(pairs.map(([, m]) => m))
  const ratio = median(pairs.map(([d, m]) => m / d))
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
    ratio,
    moeGflops: activeGflop / (moeMs / 1000),
    denseGflops: activeGflop / (denseMs / 1000),
    iterations: pairs.length,
  }
}

interface OffloadResult {
  backend: BackendName
  budgetFraction: number
  prefetch: boolean
  storage: string
  tokensPerSec: number
  hitRate: number
  prefetchAccuracy: number
  bytesMovedPerToken: number
}

function benchOffload(backend: BackendName): OffloadResult[] {
  const c = validateMoeConfig(SMALL_MIXTRAL)
  const rng = new Rng(11)
  const weights = new Map<string, Float32Array>()
  for (const s of paramSpecs(c))
    weights.set(
      s.name,
      rng.normalArray(s.shape.reduce((a, b) => a * b, 1)).map((v) => (s.kind === 'norm' ? 1 : v * 0.08)),
    )
  const dir = mkdtempSync(join(tmpdir(), 'moe-bench-'))
  const m0 = new MoeModel(c, weights)
  saveModel(m0, dir)
  m0.dispose()
  const modelBytes = planPlacement(c, { budgetBytes: 1e12 }).fit.modelBytes
  const prompt = Array.from({ length: 16 }, (_, i) => (i * 37 + 5) % c.vocabSize)
  const out: OffloadResult[] = []
  // The budget covers everything on the device (KV cache and activations too), so the smallest
  // one the planner accepts, found by bisection, replaces fractions below it.
  const fits = (b: number): boolean => planPlacement(c, { budgetBytes: b, contextTokens: 64 }).fit.fits
  let [lo, hi] = [1, modelBytes * 2]
  while (hi - lo > 1024) {
    const mid = Math.floor((lo + hi) / 2)
    if (fits(mid)) hi = mid
    else lo = mid
  }
  const budgets = [...new Set([1, 0.5, 0.25, 0.125].map((f) => Math.max(hi, Math.round(modelBytes * f))))]
  for (const budgetBytes of budgets)
    for (const prefetch of [false, true]) {
      const fraction = budgetBytes / modelBytes
      // The device budget as a fraction of the model's float32 bytes: what does not fit pages.
      const m = loadModel(dir, { offload: { budgetBytes, storage: 'f32', prefetch }, contextTokens: 64 })
      generate(m, prompt, { maxNewTokens: 2, stopTokens: [] }) // warm-up
      const r = generate(m, prompt, { maxNewTokens: 32, stopTokens: [], sampling: { temperature: 1, seed: 3 } })
      const s = m.pagingStats() ?? { hitRate: 1, prefetchAccuracy: 0, bytesMoved: 0 }
      out.push({
        backend,
        budgetFraction: fraction,
        prefetch,
        storage: 'f32',
        tokensPerSec: (r.newTokens.length - 1) / (r.decodeMs / 1000),
        hitRate: s.hitRate,
        prefetchAccuracy: s.prefetchAccuracy,
        bytesMovedPerToken: s.bytesMoved / (r.newTokens.length + 2),
      })
      m.dispose()
    }
  const m = loadModel(dir)
  generate(m, prompt, { maxNewTokens: 2, stopTokens: [] })
  const r = generate(m, prompt, { maxNewTokens: 32, stopTokens: [], sampling: { temperature: 1, seed: 3 } })
  out.unshift({
    backend,
    budgetFraction: 1,
    prefetch: false,
    storage: 'resident',
    tokensPerSec: (r.newTokens.length - 1) / (r.decodeMs / 1000),
    hitRate: 1,
    prefetchAccuracy: 0,
    bytesMovedPerToken: 0,
  })
  m.dispose()
  return out
}

interface TrainResult {
  backend: BackendName
  model: string
  totalParams: number
  activeParams: number
  tokensPerStep: number
  msPerStep: number
  tokensPerSec: number
  steps: number
}

const SMALL_MIXTRAL: MoeConfigInput = {
  family: 'mixtral',
  vocabSize: 512,
  hiddenSize: 128,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 32,
  intermediateSize: 256,
  expertIntermediateSize: 256,
  numExperts: 8,
  topK: 2,
  normTopkProb: true,
}

/** The dense model with the MoE's active parameters: every MLP a SwiGLU of width k · expert width. */
const DENSE_TWIN: MoeConfigInput = {
  ...SMALL_MIXTRAL,
  family: 'qwen2_moe',
  intermediateSize: 512,
  numExperts: 1,
  topK: 1,
  normTopkProb: false,
  qkvBias: false,
  mlpOnlyLayers: [0, 1, 2, 3],
}

function benchTrain(backend: BackendName, name: string, input: MoeConfigInput, batch: number, seq: number, steps: number): TrainResult {
  const c = validateMoeConfig(input)
  const bench = trainStepBench(c, batch, seq, 0.05)
  const t = timeIt(bench.step, steps, 0)
  bench.dispose()
  const counts = countParams(c)
  return {
    backend,
    model: name,
    totalParams: counts.total,
    activeParams: counts.active,
    tokensPerStep: batch * seq,
    msPerStep: t.ms,
    tokensPerSec: (batch * seq) / (t.ms / 1000),
    steps: t.iterations,
  }
}

function fmt(x: unknown, digits = 0): string {
  return typeof x === 'number' ? x.toFixed(digits) : '–'
}

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i])).join('  ')
  return [line(head), ...rows.map(line)].join('\n')
}

/** The configuration issue 16 measured PyTorch on (15.5 M parameters). */
const PEER = {
  family: 'mixtral' as const,
  vocabSize: 4096,
  hiddenSize: 256,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 32,
  intermediateSize: 512,
  expertIntermediateSize: 512,
  numExperts: 8,
  topK: 2,
  normTopkProb: true,
  maxPositionEmbeddings: 1024,
  batch: 8,
  seq: 256,
  steps: 3,
}

interface PeerRun {
  side: 'engine' | 'pytorch'
  threads: number
  /** PyTorch run with the engine's malloc settings too (they speed it up on this VM as well). */
  engineMalloc?: boolean
  tokensPerSec?: number
  msPerStep?: number
  skipped?: string
  detail?: Record<string, unknown>
}

/**
 * The interpreter for the PyTorch side: BENCH_PYTHON, else the first of `python3` and Debian's
 * /usr/bin/python3 that imports torch (python3-torch installs into the system Python, which a
 * pyenv or venv `python3` on the PATH does not see); `python3` when none does, to report its reason.
 */
let peerPythonFound: string | undefined
function peerPython(): string {
  if (process.env.BENCH_PYTHON) return process.env.BENCH_PYTHON
  peerPythonFound ??=
    ['python3', '/usr/bin/python3'].find(
      (py) => spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore', timeout: 60_000 }).status === 0,
    ) ?? 'python3'
  return peerPythonFound
}

/** A child process's result: the JSON object on its last line of output. */
const lastJsonLine = (out: string): Record<string, unknown> => JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, unknown>

/**
 * A bench/ Python script's JSON line (its last line of output), or why there is none: the
 * script's own {"skipped": reason} (torch missing: exit 3), else the error's first line.
 */
function pythonJson(script: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> | { skipped: string } {
  try {
    const out = execFileSync(peerPython(), [join(import.meta.dirname, script), ...args], { env, encoding: 'utf8', timeout: 1_800_000 })
    return lastJsonLine(out)
  } catch (e) {
    const err = e as { stdout?: string; message: string }
    const line = err.stdout?.trim().split('\n').at(-1)
    let reason = err.message.split('\n')[0]
    try {
      if (line) reason = (JSON.parse(line) as { skipped?: string }).skipped ?? reason
    } catch {
      // not JSON: the error message says it
    }
    return { skipped: reason }
  }
}

/** One side of the peer comparison in its own process; its JSON line. */
function peerRun(side: PeerRun['side'], threads: number, engineMalloc = false): PeerRun {
  const json = JSON.stringify(PEER)
  if (side === 'pytorch') {
    const r = pythonJson(
      'torch_peer.py',
      ['--threads', String(threads), '--config', json],
      engineMalloc ? engineEnv(process.env) : asShipped(process.env),
    )
    if ('skipped' in r) return { side, threads, engineMalloc, skipped: String(r.skipped) }
    return { side, threads, engineMalloc, tokensPerSec: r.tokensPerSec as number, msPerStep: r.msPerStep as number, detail: r }
  }
  try {
    const out = execFileSync(process.execPath, [...ENGINE_V8_FLAGS, '--import', 'tsx', join(import.meta.dirname, 'peer.ts'), json], {
      env: engineEnv({ ...process.env, MOE_WORKBENCH_THREADS: String(threads) }),
      encoding: 'utf8',
      timeout: 1_800_000,
    })
    const r = lastJsonLine(out)
    return { side, threads, tokensPerSec: r.tokensPerSec as number, msPerStep: r.msPerStep as number, detail: r }
  } catch (e) {
    return { side, threads, skipped: (e as Error).message.split('\n')[0] }
  }
}

/** One size of the MoE layer in PyTorch eager (bench/torch_layer.py), on some threads. */
interface PeerLayerResult {
  tokens: number
  hidden: number
  expertWidth: number
  threads: number
  denseMs: number
  moeMs: number
  ratio: number
  pairs: number
}

/**
 * The moe-layer figure's peer: the same layer sizes in PyTorch eager (Hugging Face's Mixtral
 * sparse block against its dense twin), on 1 and 2 threads, under the engine's malloc settings:
 * as shipped, glibc hands the dense twin's 8 MB intermediates back to the system after each use
 * and faults them in again, which the experts' smaller ones escape (measured here: dense 54 ms
 * against 19, ratios below 1), so that setting would flatter the peer's ratio. Each run's results,
 * or why it was skipped.
 */
function benchPeerLayers(sizes: [number, number, number][]): { results: PeerLayerResult[]; skipped: string[] } {
  const results: PeerLayerResult[] = []
  const skipped: string[] = []
  for (const threads of [1, 2]) {
    process.stderr.write(`bench: moe-layer in PyTorch eager, ${threads} thread(s)...\n`)
    const r = pythonJson('torch_layer.py', ['--threads', String(threads), '--sizes', JSON.stringify(sizes)], engineEnv(process.env))
    if ('skipped' in r) skipped.push(`${threads} thread(s): ${String(r.skipped)}`)
    else for (const x of r.results as Omit<PeerLayerResult, 'threads'>[]) results.push({ ...x, threads })
  }
  return { results, skipped }
}

interface PeerRecord {
  bench: 'peer'
  config: typeof PEER
  runs: PeerRun[]
  engineBest: number | null
  pytorchBest: number | null
  ratio: number | null
  threadScaling: number | null
}

function benchPeer(): PeerRecord {
  const runs: PeerRun[] = []
  for (const threads of [1, 2]) {
    process.stderr.write(`bench: peer, engine on wasm with ${threads} thread(s)...\n`)
    runs.push(peerRun('engine', threads))
    process.stderr.write(`bench: peer, PyTorch eager with ${threads} thread(s)...\n`)
    runs.push(peerRun('pytorch', threads))
    // PyTorch's best includes it under the engine's malloc settings (GLIBC_TUNABLES), which
    // spare its allocator the same page faults (1362-1529 -> 1939-2403 tokens/s here, 1 thread).
    process.stderr.write(`bench: peer, PyTorch eager with ${threads} thread(s) and the engine's malloc settings...\n`)
    runs.push(peerRun('pytorch', threads, true))
  }
  const best = (side: PeerRun['side']): number | null => {
    const xs = runs.filter((r) => r.side === side && r.tokensPerSec).map((r) => r.tokensPerSec!)
    return xs.length ? Math.max(...xs) : null
  }
  const ours = best('engine')
  const theirs = best('pytorch')
  const one = runs.find((r) => r.side === 'engine' && r.threads === 1)?.tokensPerSec
  const two = runs.find((r) => r.side === 'engine' && r.threads === 2)?.tokensPerSec
  return {
    bench: 'peer',
    config: PEER,
    runs,
    engineBest: ours,
    pytorchBest: theirs,
    ratio: ours && theirs ? ours / theirs : null,
    threadScaling: one && two ? two / one : null,
  }
}

async function main(): Promise<void> {
  const wanted = (process.env.BENCH_BACKENDS ?? BACKEND_NAMES.join(',')).split(',').map((s) => s.trim()) as BackendName[]
  // The layer at a small and a training-sized batch: per-kernel overheads weigh most at the first.
  const tokenCounts = (process.env.BENCH_TOKENS ?? '256,2048').split(',').map((t) => Number(t.trim()))
  const skip = new Set((process.env.BENCH_SKIP ?? '').split(',').map((x) => x.trim()))
  const results: LayerResult[] = []
  const trainResults: TrainResult[] = []
  let offloadResults: OffloadResult[] = []
  const productResults: ProductsResult[] = []
  const skipped: { backend: string; reason: string }[] = []
  for (const backend of wanted) {
    try {
      await initBackend(backend)
    } catch (e) {
      skipped.push({ backend, reason: (e as Error).message })
      continue
    }
    process.stderr.write(`bench: moe-layer on ${backend}...\n`)
    // cpu runs at about 1 GFLOP/s: the small batch only
    for (const tokens of backend === 'cpu' ? tokenCounts.slice(0, 1) : tokenCounts) results.push(benchLayer(backend, tokens))
    // The layer of the peer configuration at its batch (8 × 256 tokens), where its 8 experts get
    // ~512 rows each: the figure for a training-sized layer (not on cpu, ~1 GFLOP/s).
    if (backend !== 'cpu')
      results.push(benchLayer(backend, PEER.batch * PEER.seq, { hidden: PEER.hiddenSize, expertWidth: PEER.expertIntermediateSize }))
    // The experts' products alone, on the native matmul wasm uses: what routing and the rest add
    // aside, and a bound for experts stacked into one tensor per projection (bench/products.ts).
    const native = nativeMatMul()
    if (backend === 'wasm' && native && !skip.has('products')) {
      process.stderr.write(`bench: moe-products on ${native.library}, ${native.threads} thread(s)...\n`)
      for (const tokens of tokenCounts) productResults.push(benchProducts(native, tokens, SMALL_LAYER.hidden, SMALL_LAYER.expertWidth))
      productResults.push(benchProducts(native, PEER.batch * PEER.seq, PEER.hiddenSize, PEER.expertIntermediateSize))
    }
    process.stderr.write(`bench: train-step on ${backend}...\n`)
    const [batch, seq, steps] = backend === 'cpu' ? [2, 32, 2] : [8, 64, 5]
    trainResults.push(benchTrain(backend, 'mixtral 8x top-2', SMALL_MIXTRAL, batch, seq, steps))
    trainResults.push(benchTrain(backend, 'dense twin', DENSE_TWIN, batch, seq, steps))
    if (offloadResults.length === 0 && !skip.has('offload')) {
      process.stderr.write(`bench: offload on ${backend}...\n`)
      offloadResults = benchOffload(backend)
    }
  }
  // The same layer sizes in PyTorch eager, after the engine's sections (one process at a time on the cores).
  const layerSizes: [number, number, number][] = [
    ...tokenCounts.map((t): [number, number, number] => [t, SMALL_LAYER.hidden, SMALL_LAYER.expertWidth]),
    [PEER.batch * PEER.seq, PEER.hiddenSize, PEER.expertIntermediateSize],
  ]
  const peerLayers = skip.has('peer-layer') ? null : benchPeerLayers(layerSizes)
  const record = {
    bench: 'moe-layer',
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      memGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      tfjs: tf.version.tfjs,
    },
    description:
      'forward+backward of one MoE layer (8 experts, top-2, dropless) vs a dense SwiGLU FFN with the same active FLOPs, both with the input gradient, the gradients left where they are (one element of each read, to wait for them); the two run alternately; median ms of each; ratio = median of the pairs moe/dense',
    results,
    skipped,
    ...(peerLayers && {
      peer: {
        description:
          "the same layer sizes in PyTorch eager (bench/torch_layer.py: Hugging Face's Mixtral sparse block, its loop over experts, against a dense SwiGLU of width 2 × expert width), forward + backward with the input gradient, alternating, ratio = median of the pairs moe/dense; on 1 and 2 threads under the engine's malloc settings; best = for each size, the run whose MoE layer was fastest",
        results: peerLayers.results,
        best: layerSizes.flatMap(([tokens, hidden, expertWidth]) => {
          const runs = peerLayers.results.filter((r) => r.tokens === tokens && r.hidden === hidden && r.expertWidth === expertWidth)
          return runs.length ? [runs.reduce((a, b) => (b.moeMs < a.moeMs ? b : a))] : []
        }),
        skipped: peerLayers.skipped,
      },
    }),
  }
  const dir = join(import.meta.dirname, 'results')
  mkdirSync(dir, { recursive: true })
  const file = join(dir, 'moe-layer.json')
  writeFileSync(file, JSON.stringify(record, null, 2) + '\n')

  const trainRecord = {
    bench: 'train-step',
    date: record.date,
    machine: record.machine,
    description:
      'tokens/s of full training steps (fwd+bwd+AdamW) of a 4-layer Mixtral-family model (8 experts, top-2) and of a dense model with the same active parameters; ratio = moe ms/step over dense ms/step',
    results: trainResults,
    ratios: Object.fromEntries(
      [...new Set(trainResults.map((r) => r.backend))].map((b) => {
        const moe = trainResults.find((r) => r.backend === b && r.model !== 'dense twin')!
        const dense = trainResults.find((r) => r.backend === b && r.model === 'dense twin')!
        return [b, moe.msPerStep / dense.msPerStep]
      }),
    ),
  }
  writeFileSync(join(dir, 'train-step.json'), JSON.stringify(trainRecord, null, 2) + '\n')
  if (productResults.length > 0) {
    const native = nativeMatMul()!
    writeFileSync(
      join(dir, 'moe-products.json'),
      JSON.stringify(
        {
          bench: 'moe-products',
          date: record.date,
          machine: { ...record.machine, matmul: native.library, threads: native.threads },
          description:
            "the 9 products of an MoE layer's SwiGLU experts (forward, input and weight gradients) alone on the native matmul, against its dense twin's: grouped = as the engine runs them (a run of one node per expert); batched = one node per projection over stacked expert weights with equal rows (a lower bound: the engine keeps experts as separate tensors); medians of microseconds, ratios = medians of each round's ratio to dense",
          results: productResults,
        },
        null,
        2,
      ) + '\n',
    )
    console.log(`\nmoe-products: the experts' 9 products alone, ${native.library}, ${native.threads} thread(s)`)
    console.log(
      table(
        ['H', 'expert width', 'tokens', 'dense µs', 'grouped µs', 'batched µs', 'grouped/dense', 'batched/dense'],
        productResults.map((r) => [
          String(r.hidden),
          String(r.expertWidth),
          String(r.tokens),
          r.denseUs.toFixed(0),
          r.groupedUs.toFixed(0),
          r.batchedUs.toFixed(0),
          r.groupedRatio.toFixed(2),
          r.batchedRatio.toFixed(2),
        ]),
      ),
    )
  }
  if (!skip.has('peer')) {
    const peer = { ...benchPeer(), date: record.date, machine: record.machine }
    writeFileSync(join(dir, 'peer.json'), JSON.stringify(peer, null, 2) + '\n')
    console.log(
      `\npeer (training, ${PEER.batch}×${PEER.seq} tokens/step): engine best ${fmt(peer.engineBest)} tokens/s, PyTorch eager best ${fmt(peer.pytorchBest)} tokens/s, ratio ${fmt(peer.ratio, 2)}, engine 2 threads / 1 thread ${fmt(peer.threadScaling, 2)}`,
    )
    for (const r of peer.runs as PeerRun[]) {
      const what = `${r.side} with ${r.threads} thread(s)${r.engineMalloc ? " and the engine's malloc settings" : ''}`
      console.log(r.skipped ? `  ${what} skipped: ${r.skipped}` : `  ${what}: ${fmt(r.tokensPerSec)} tokens/s`)
    }
  }

  if (!skip.has('quick')) {
    const runs = benchQuick()
    writeFileSync(
      join(dir, 'quick.json'),
      JSON.stringify(
        {
          bench: 'quick',
          date: record.date,
          machine: record.machine,
          description:
            "the bundled model's Quick fine-tune (CLI train, no --config) on bench/data/capitals.csv: training seconds, wall seconds with import and both evaluations, exact match on the training questions before -> after",
          runs,
        },
        null,
        2,
      ) + '\n',
    )
    console.log('\nquick fine-tune of the bundled model (capitals CSV, 300 steps)')
    console.log(
      table(
        ['checkout', 'threads', 'train s', 'wall s', 'exact match'],
        runs.map((r) => [
          r.checkout,
          String(r.threads),
          r.skipped ? `skipped: ${r.skipped}` : fmt(r.trainSeconds ?? null, 1),
          fmt(r.wallSeconds ?? null, 1),
          r.exactMatchAfter === undefined
            ? ''
            : `${Math.round((r.exactMatchBefore ?? 0) * 100)}% -> ${Math.round(r.exactMatchAfter * 100)}%`,
        ]),
      ),
    )
  }

  console.log('moe-layer: 8 experts top-2 vs a dense SwiGLU of width 2 × expert width, fwd+bwd')
  console.log(
    table(
      ['backend', 'H', 'expert width', 'tokens', 'dense ms', 'moe ms', 'moe/dense', 'dense GFLOP/s', 'moe GFLOP/s'],
      results.map((r) => [
        r.backend,
        String(r.hidden),
        String(r.expertWidth),
        String(r.tokens),
        r.denseMs.toFixed(2),
        r.moeMs.toFixed(2),
        r.ratio.toFixed(2),
        r.denseGflops.toFixed(2),
        r.moeGflops.toFixed(2),
      ]),
    ),
  )
  if (record.peer) {
    const layerBackends = [...new Set(results.map((r) => r.backend))]
    console.log(
      "\nmoe-layer beside PyTorch eager (HF Mixtral's sparse block vs its dense twin): moe/dense; PyTorch on the thread count where its MoE layer was fastest",
    )
    console.log(
      table(
        ['H', 'expert width', 'tokens', ...layerBackends, 'PyTorch', 'PyTorch threads'],
        record.peer.best.map((p) => [
          String(p.hidden),
          String(p.expertWidth),
          String(p.tokens),
          ...layerBackends.map((b) =>
            fmt(results.find((r) => r.backend === b && r.tokens === p.tokens && r.hidden === p.hidden)?.ratio ?? null, 2),
          ),
          p.ratio.toFixed(2),
          String(p.threads),
        ]),
      ),
    )
    for (const s of record.peer.skipped) console.log(`skipped PyTorch moe-layer, ${s}`)
  }
  console.log('\ntrain-step: 4 layers, H=128, fwd+bwd+AdamW')
  console.log(
    table(
      ['backend', 'model', 'params', 'active', 'tokens/step', 'ms/step', 'tokens/s', 'moe/dense'],
      trainResults.map((r) => [
        r.backend,
        r.model,
        String(r.totalParams),
        String(r.activeParams),
        String(r.tokensPerStep),
        r.msPerStep.toFixed(1),
        r.tokensPerSec.toFixed(0),
        r.model === 'dense twin' ? '' : trainRecord.ratios[r.backend].toFixed(2),
      ]),
    ),
  )
  for (const s of skipped) console.log(`skipped ${s.backend}: ${s.reason}`)
  // A section skipped (BENCH_SKIP=offload) keeps its last results: it wrote an empty file over them.
  if (skip.has('offload')) {
    console.log(`wrote ${file} and ${join(dir, 'train-step.json')}`)
    return
  }
  writeFileSync(
    join(dir, 'offload.json'),
    JSON.stringify(
      {
        bench: 'offload',
        date: record.date,
        machine: record.machine,
        description:
          'decode of 32 sampled tokens after a 16-token prompt, small Mixtral (4 layers, 8 experts top-2), device budget a fraction of the model float32 bytes, paged weights in f32 on the host',
        results: offloadResults,
      },
      null,
      2,
    ) + '\n',
  )
  console.log('\noffload: decode tokens/s and cache hit rate against the expert budget')
  console.log(
    table(
      ['backend', 'storage', 'budget', 'prefetch', 'tokens/s', 'hit rate', 'prefetch acc', 'KiB moved/token'],
      offloadResults.map((r) => [
        r.backend,
        r.storage,
        `${Number((r.budgetFraction * 100).toFixed(1))}%`,
        r.prefetch ? 'on' : 'off',
        r.tokensPerSec.toFixed(1),
        r.hitRate.toFixed(2),
        r.prefetch ? r.prefetchAccuracy.toFixed(2) : '',
        (r.bytesMovedPerToken / 1024).toFixed(0),
      ]),
    ),
  )
  console.log(`wrote ${file}, ${join(dir, 'train-step.json')} and ${join(dir, 'offload.json')}`)
}

// The in-process sections run under the engine process's malloc settings (engineEnv) and V8 flags
// (ENGINE_V8_FLAGS), as the engine does in the app: the bench starts itself again with them where
// they are missing.
const env = engineEnv(process.env)
if (env !== process.env || !ENGINE_V8_FLAGS.every((f) => process.execArgv.includes(f))) {
  const r = spawnSync(process.execPath, [...ENGINE_V8_FLAGS, ...process.execArgv, ...process.argv.slice(1)], {
    env: engineEnv(process.env),
    stdio: 'inherit',
  })
  process.exit(r.status ?? 1)
}
void main().catch((e: unknown) => {
  console.error(`bench: error: ${(e as Error).message}`)
  process.exitCode = 1
})
