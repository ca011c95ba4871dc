/**
 * New-model presets, declared once: the Models screen's "new model" form, models.create's
 * defaults in the engine, and the scripts that make models all start from these.
 */
import { FAMILY_QK_NORM, type Family, type MoeConfigInput, type RouterType } from './modelConfig'

/** What a family fixes whatever the size: the q/k norm, Mixtral's renormalised top-k, Qwen2-MoE's shared expert. */
export function familyTraits(family: Family): Partial<MoeConfigInput> {
  return {
    family,
    qkNorm: FAMILY_QK_NORM[family],
    ...(family === 'mixtral' && { normTopkProb: true }),
    ...(family === 'qwen3_moe' && { normTopkProb: true }),
  }
}

/** The small architecture models.create fills in for fields a request leaves out. */
export const SMALL_ARCHITECTURE = {
  hiddenSize: 128,
  numLayers: 4,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 256,
  expertIntermediateSize: 256,
  numExperts: 8,
  topK: 2,
  maxPositionEmbeddings: 1024,
} as const satisfies Partial<MoeConfigInput>

/** A preset as the form edits it. */
export interface PresetArchitecture {
  family: Family
  numLayers: number
  hiddenSize: number
  numHeads: number
  expertIntermediateSize: number
  numExperts: number
  topK: number
  router: RouterType
  normTopkProb: boolean
  /** qwen2_moe only; 0 = none. */
  sharedExpertIntermediateSize: number
}

export interface ModelPreset {
  id: string
  label: string
  draft: PresetArchitecture
}

const small = { numLayers: 4, hiddenSize: 128, numHeads: 4, router: 'softmax_topk' as const, sharedExpertIntermediateSize: 0 }

export const MODEL_PRESETS: ModelPreset[] = [
  {
    id: 'mixtral-tiny',
    label: 'Mixtral, 8 experts, top-2',
    draft: { ...small, family: 'mixtral', expertIntermediateSize: 256, numExperts: 8, topK: 2, normTopkProb: true },
  },
  {
    id: 'qwen3-moe-tiny',
    label: 'Qwen3-MoE, 16 experts, top-4 (per-head q/k norm)',
    draft: { ...small, family: 'qwen3_moe', expertIntermediateSize: 96, numExperts: 16, topK: 4, normTopkProb: true },
  },
  {
    id: 'qwen2-moe-tiny',
    label: 'Qwen2-MoE with a shared expert',
    draft: {
      ...small,
      family: 'qwen2_moe',
      expertIntermediateSize: 128,
      numExperts: 8,
      topK: 2,
      normTopkProb: false,
      sharedExpertIntermediateSize: 256,
    },
  },
  {
    id: 'olmoe-tiny',
    label: 'OLMoE, 16 experts, top-4',
    draft: { ...small, family: 'olmoe', expertIntermediateSize: 128, numExperts: 16, topK: 4, normTopkProb: false },
  },
  {
    id: 'switch',
    label: 'Switch Transformer (top-1)',
    draft: { ...small, family: 'mixtral', expertIntermediateSize: 256, numExperts: 8, topK: 1, router: 'switch', normTopkProb: true },
  },
  {
    id: 'hash',
    label: 'Hash routing (no learned router)',
    draft: { ...small, family: 'mixtral', expertIntermediateSize: 256, numExperts: 8, topK: 1, router: 'hash', normTopkProb: true },
  },
]
