/**
 * The "new model" form: presets, the config it sends to models.create, and inline validation
 * with the shared model-config schema (so the form refuses what the service would refuse).
 */
import type { ModelsCreateArgs } from '../../shared/api'
import { countParams, moeConfigSchema, plainIssue } from '../../shared/modelConfig'
import { MODEL_PRESETS, familyTraits, type ModelPreset, type PresetArchitecture } from '../../shared/modelPresets'

export interface ModelDraft extends PresetArchitecture {
  name: string
  seed: number
  /** Model folder whose tokenizer the new model takes ('' = the bundled model's). */
  tokenizerFrom: string
}

export { MODEL_PRESETS, type ModelPreset }

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
    normTopkProb: d.normTopkProb,
    ...familyTraits(d.family),
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

/** The config's own names in the schema's messages, as the form labels those fields. */
const FORM_LABELS: Record<string, string> = {
  topK: 'Top-k',
  numExperts: 'Experts per layer',
  numLayers: 'Layers',
  numHeads: 'Attention heads',
}
const formLabels = (message: string): string => message.replace(/\b(topK|numExperts|numLayers|numHeads)\b/g, (k) => FORM_LABELS[k])

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
      issues[key] ??= formLabels(plainIssue(issue.message))
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
