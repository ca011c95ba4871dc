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
