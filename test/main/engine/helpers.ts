/** Tiny models with seeded random weights, for engine tests. */
import { paramSpecs, validateMoeConfig, type MoeConfig, type MoeConfigInput } from '../../../src/shared/modelConfig'
import { MoeModel } from '../../../src/main/engine/model'
import { Rng } from '../../../src/main/engine/ops'

export function tinyConfig(over: Partial<MoeConfigInput> = {}): MoeConfig {
  return validateMoeConfig({
    family: 'mixtral',
    vocabSize: 32,
    hiddenSize: 16,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 4,
    intermediateSize: 24,
    expertIntermediateSize: 24,
    numExperts: 4,
    topK: 2,
    normTopkProb: true,
    maxPositionEmbeddings: 64,
    ...over,
  })
}

/** Seeded weights: norms near 1, everything else N(0, scale²). */
export function randomWeights(config: MoeConfig, seed = 1, scale = 0.2): Map<string, Float32Array> {
  const rng = new Rng(seed)
  const out = new Map<string, Float32Array>()
  for (const s of paramSpecs(config)) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    const a = rng.normalArray(n)
    for (let i = 0; i < n; i++) a[i] = s.kind === 'norm' ? 1 + 0.1 * a[i] : scale * a[i]
    out.set(s.name, a)
  }
  return out
}

export function tinyModel(over: Partial<MoeConfigInput> = {}, seed = 1): MoeModel {
  const c = tinyConfig(over)
  return new MoeModel(c, randomWeights(c, seed))
}

export function randomIds(B: number, T: number, V: number, seed = 7): number[][] {
  const rng = new Rng(seed)
  return Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(rng.next() * V)))
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`)
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]))
  return m
}

/**
 * A backend named like none of the host backends ('wasm', 'cpu') but computing on the cpu one: the
 * engine's device code paths (what webgpu and native TensorFlow run: tf.gather fallbacks,
 * UnsortedSegmentSum, tf.slice) run here without a GPU. Registered once; returns its name.
 */
export async function useDeviceSim(): Promise<string> {
  const tf = await import('@tensorflow/tfjs')
  const { MathBackendCPU } = await import('@tensorflow/tfjs-backend-cpu')
  const name = 'device-sim'
  if (!tf.findBackend(name)) {
    tf.registerBackend(name, () => new MathBackendCPU())
    for (const k of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...k, backendName: name })
  }
  await tf.setBackend(name)
  await tf.ready()
  return name
}

export type MatMulPath = 'native' | 'XNNPACK'

/**
 * The matmul paths of the wasm backend a suite runs on: TF.js's XNNPACK kernels always, the
 * native one (onnxruntime-node) where it loads, and always in CI (MOE_WORKBENCH_REQUIRE_NATIVE_MATMUL=1),
 * where its absence is a failure, not a skip.
 */
export async function wasmMatMulPaths(): Promise<MatMulPath[]> {
  const { loadNativeMatMul } = await import('../../../src/main/engine/nativeMatMul')
  try {
    loadNativeMatMul(1)
    return ['native', 'XNNPACK']
  } catch (e) {
    if (process.env.MOE_WORKBENCH_REQUIRE_NATIVE_MATMUL === '1') throw e
    console.warn(`native matmul not tested: ${(e as Error).message}`)
    return ['XNNPACK']
  }
}

/**
 * Starts the wasm backend and makes its products run on `path` (until the returned function
 * restores what the backend chose).
 */
export async function useWasmMatMul(path: MatMulPath): Promise<() => void> {
  const { initBackend } = await import('../../../src/main/engine/backend')
  const { loadNativeMatMul, nativeMatMul, useNativeMatMul } = await import('../../../src/main/engine/nativeMatMul')
  await initBackend('wasm')
  const chosen = nativeMatMul()
  useNativeMatMul(path === 'native' ? (chosen ?? loadNativeMatMul(1)) : null)
  return () => useNativeMatMul(chosen)
}

/** op(a) · op(b) in plain JavaScript (float64 sums), a batch of one used for every item of the other. */
export function referenceMatMul(
  x: ArrayLike<number>,
  aShape: number[],
  y: ArrayLike<number>,
  bShape: number[],
  ta: boolean,
  tb: boolean,
): { shape: number[]; data: Float32Array } {
  const [ra, rb] = [aShape.length, bShape.length]
  const [m, k] = ta ? [aShape[ra - 1], aShape[ra - 2]] : [aShape[ra - 2], aShape[ra - 1]]
  const n = tb ? bShape[rb - 2] : bShape[rb - 1]
  const size = (s: number[]): number => s.slice(0, -2).reduce((p, d) => p * d, 1)
  const [batchA, batchB] = [size(aShape), size(bShape)]
  const batch = Math.max(batchA, batchB)
  const data = new Float32Array(batch * m * n)
  for (let i = 0; i < batch; i++) {
    const oa = batchA === 1 ? 0 : i * m * k
    const ob = batchB === 1 ? 0 : i * k * n
    for (let r = 0; r < m; r++)
      for (let c = 0; c < n; c++) {
        let s = 0
        for (let j = 0; j < k; j++) s += x[oa + (ta ? j * m + r : r * k + j)] * y[ob + (tb ? c * k + j : j * n + c)]
        data[(i * m + r) * n + c] = s
      }
  }
  return { shape: [...(batchA >= batchB ? aShape : bShape).slice(0, -2), m, n], data }
}
