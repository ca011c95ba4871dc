/**
 * The default model's architecture and its initial weights.
 */
import { paramSpecs, validateMoeConfig, type MoeConfig } from '../../src/shared/modelConfig'
import { Random } from './random'

/**
 * A small Mixtral: 4 layers, every one sparse with 8 experts and top-2 routing, grouped-query
 * attention (4 query heads, 2 key/value heads). About 2.9M parameters, 1.0M active per token.
 */
export function defaultModelConfig(vocabSize: number, ids: { bos: number; eos: number; pad: number }, tieWordEmbeddings = true): MoeConfig {
  return validateMoeConfig({
    family: 'mixtral',
    vocabSize,
    hiddenSize: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 32,
    intermediateSize: 192,
    expertIntermediateSize: 192,
    numExperts: 8,
    topK: 2,
    normTopkProb: true,
    maxPositionEmbeddings: 512,
    ropeTheta: 10000,
    rmsNormEps: 1e-5,
    routerAuxLossCoef: 0.01,
    tieWordEmbeddings,
    bosTokenId: ids.bos,
    eosTokenId: ids.eos,
    padTokenId: ids.pad,
  })
}

/**
 * GPT-2-style initialisation from a seed: N(0, 0.02²) everywhere, norms at 1, and the
 * projections back into the residual stream (o_proj, the experts' w2) scaled by 1/√(2·layers).
 */
export function initialWeights(config: MoeConfig, seed: number): Map<string, Float32Array> {
  const r = new Random(seed)
  const normal = (): number => {
    let u = 0
    while (u === 0) u = r.next()
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.next())
  }
  const out = new Map<string, Float32Array>()
  const residualScale = 1 / Math.sqrt(2 * config.numLayers)
  for (const s of paramSpecs(config)) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    const a = new Float32Array(n)
    if (s.kind === 'norm') a.fill(1)
    else {
      const std = /o_proj|\.w2\.|down_proj/.test(s.name) ? 0.02 * residualScale : 0.02
      for (let i = 0; i < n; i++) a[i] = std * normal()
    }
    out.set(s.name, a)
  }
  return out
}
