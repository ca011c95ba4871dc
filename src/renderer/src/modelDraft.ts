/**
 * The "new model" form: presets, the config it sends to models.create, and inline validation
 * with the shared model-config schema (so the form refuses what the service would refuse).
 */
import type { ModelsCreateArgs } from '../../shared/api'
import { type Family, type RouterType, countParams, moeConfigSchema } from '../../shared/modelConfig'

export interface ModelDraft {
  name: string
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
  seed: number
  /** Model folder whose tokenizer the new model takes ('' = the bundled model's). */
  tokenizerFrom: string
}

export interface ModelPreset {
  id: string
  label: string
  draft: Omit<ModelDraft, 'name' | 'seed' | 'tokenizerFrom'>
}

export const MODEL_PRESETS: ModelPreset[] = [
  {
    id: 'mixtral-tiny',
    label: 'Mixtral, 8 experts, top-2',
    draft: {
      family: 'mixtral',
      numLayers: 4,
      hiddenSize: 128,
      numHeads: 4,
      expertIntermediateSize: 256,
      numExperts: 8,
      topK: 2,
      router: 'softmax_topk',
      normTopkProb: true,
      sharedExpertIntermediateSize: 0,
    },
  },
  {
    id: 'qwen2-moe-tiny',
    label: 'Qwen2-MoE with a shared expert',
    draft: {
      family: 'qwen2_moe',
      numLayers: 4,
      hiddenSize: 128,
      numHeads: 4,
      expertIntermediateSize: 128,
      numExperts: 8,
      topK: 2,
      router: 'softmax_topk',
      normTopkProb: false,
      sharedExpertIntermediateSize: 256,
    },
  },
  {
    id: 'olmoe-tiny',
    label: 'OLMoE, 16 experts, top-4',
    draft: {
      family: 'olmoe',
      numLayers: 4,
      hiddenSize: 128,
      numHeads: 4,
      expertIntermediateSize: 128,
      numExperts: 16,
      topK: 4,
      router: 'softmax_topk',
      normTopkProb: false,
      sharedExpertIntermediateSize: 0,
    },
  },
  {
    id: 'switch',
    label: 'Switch Transformer (top-1)',
    draft: {
      family: 'mixtral',
      numLayers: 4,
      hiddenSize: 128,
      numHeads: 4,
      expertIntermediateSize: 256,
      numExperts: 8,
      topK: 1,
      router: 'switch',
      normTopkProb: true,
      sharedExpertIntermediateSize: 0,
    },
  },
  {
    id: 'hash',
    label: 'Hash routing (no learned router)',
    draft: {
      family: 'mixtral',
      numLayers: 4,
      hiddenSize: 128,
      numHeads: 4,
      expertIntermediateSize: 256,
      numExperts: 8,
      topK: 1,
      router: 'hash',
      normTopkProb: true,
      sharedExpertIntermediateSize: 0,
    },
  },
]

export function draftFromPreset(preset: ModelPreset, name = ''): ModelDraft {
  return { ...preset.draft, name, seed: 0, tokenizerFrom: '' }
}

/** The architecture the form describes (what models.create receives as `config`). */
export function draftConfig(d: ModelDraft): ModelsCreateArgs['config'] {
  const config: ModelsCreateArgs['config'] = {
    family: d.family,
    numLayers: d.numLayers,
    hiddenSize: d.hiddenSize,
    numHeads: d.numHeads,
    numKvHeads: d.numHeads,
    headDim: d.numHeads > 0 ? d.hiddenSize / d.numHeads : NaN,
    intermediateSize: d.expertIntermediateSize * Math.max(1, d.topK),
    expertIntermediateSize: d.expertIntermediateSize,
    numExperts: d.numExperts,
    topK: d.topK,
    normTopkProb: d.family === 'mixtral' ? true : d.normTopkProb,
    qkNorm: d.family === 'olmoe',
    router: { type: d.router },
  }
  if (d.family === 'qwen2_moe') config.sharedExpertIntermediateSize = d.sharedExpertIntermediateSize
  return config
}

export function draftArgs(d: ModelDraft): ModelsCreateArgs {
  const args: ModelsCreateArgs = { name: d.name.trim(), config: draftConfig(d), seed: d.seed }
  if (d.tokenizerFrom) args.tokenizerFrom = d.tokenizerFrom
  return args
}

/** Field -> problem, keyed by the draft's field names. Empty when the draft is valid. */
export function draftIssues(d: ModelDraft): Record<string, string> {
  const issues: Record<string, string> = {}
  if (!d.name.trim()) issues.name = 'Give the model a name.'
  if (d.numHeads > 0 && Number.isInteger(d.hiddenSize) && d.hiddenSize % d.numHeads !== 0)
    issues.numHeads = `width ${d.hiddenSize} must divide into ${d.numHeads} heads`
  if (!Number.isInteger(d.seed) || d.seed < 0) issues.seed = 'a whole number ≥ 0'
  // The rest is the shared schema's business (vocabSize comes from the tokenizer; any will do here).
  const r = moeConfigSchema.safeParse({ ...draftConfig(d), vocabSize: 1 })
  if (!r.success)
    for (const issue of r.error.issues) {
      const path = issue.path.map(String)
      const key = path[0] === 'router' ? 'router' : path[0] === 'headDim' || path[0] === 'numKvHeads' ? 'numHeads' : (path[0] ?? 'name')
      issues[key] ??= issue.message
    }
  return issues
}

/** Parameters of the drafted model without its embeddings (the vocabulary comes with the tokenizer). */
export function draftParams(d: ModelDraft): { total: number; active: number } | null {
  const r = moeConfigSchema.safeParse({ ...draftConfig(d), vocabSize: 1, tieWordEmbeddings: true })
  if (!r.success) return null
  const counts = countParams(r.data)
  const embedding = r.data.hiddenSize
  return { total: counts.total - embedding, active: counts.active - embedding }
}
