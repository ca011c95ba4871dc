/**
 * A run's settings against the model it trains: what the trainer would refuse once the run
 * exists (LoRA targets and rank, freeze selectors, a packed length), found before it is
 * created, each with the setting to change and the value the model allows. models.plan (and so
 * runs.start) refuses a run with any; the trainer keeps its own checks for runs resumed elsewhere.
 */
import { isSparseLayer, paramSpecs, type MoeConfig } from '../../shared/modelConfig'
import { LORA_TARGETS, type RunConfig } from '../../shared/runConfig'
import { trainableCount } from './freeze'
import { loraTargetNames } from './lora'

export interface ConfigProblem {
  /** The run config's path of the setting to change ("lora.rank"). */
  field: string
  message: string
}

/** What in `cfg` the model `c` cannot train with; none where it can. */
export function runConfigProblems(cfg: RunConfig, c: MoeConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const add = (field: string, message: string): void => void problems.push({ field, message })
  const specs = paramSpecs(c)
  const hash = c.router.type === 'hash'
  if (cfg.moe.topK !== null && cfg.moe.topK > c.numExperts)
    add('moe.topK', `${cfg.moe.topK} is more than the model's ${c.numExperts} experts per layer; use at most ${c.numExperts}`)
  if (cfg.method === 'lora') {
    const { targets, rank } = cfg.lora
    if (hash && targets.includes('router'))
      add('lora.targets', '"router" adapts nothing on a hash-routed model (it never reads its router); drop it from lora.targets')
    const names = loraTargetNames(specs, hash ? targets.filter((t) => t !== 'router') : targets)
    if (names.length === 0) {
      const usable = LORA_TARGETS.filter((t) => loraTargetNames(specs, [t]).length > 0 && !(hash && t === 'router'))
      add('lora.targets', `${JSON.stringify(targets)} match no layer of this ${c.family} model; choose from ${usable.join(', ')}`)
    } else {
      const shapes = new Map(specs.map((s) => [s.name, s.shape]))
      const smallest = names.reduce((best, n) => (Math.min(...shapes.get(n)!) < Math.min(...shapes.get(best)!) ? n : best))
      const side = Math.min(...shapes.get(smallest)!)
      if (rank > side)
        add(
          'lora.rank',
          `${rank} exceeds the smaller side of ${smallest} [${shapes.get(smallest)!.join(', ')}]; use at most ${side}, or leave its part out of lora.targets`,
        )
    }
  }
  const f = cfg.freeze
  for (const [layer, experts] of Object.entries(f.experts)) {
    const l = Number(layer)
    if (l >= c.numLayers || !isSparseLayer(c, l))
      add(
        `freeze.experts.${layer}`,
        l >= c.numLayers
          ? `layer ${layer} is not a sparse layer of this model (it has ${c.numLayers} layers, 0-${c.numLayers - 1})`
          : `layer ${layer} is a dense layer of this model: it has no experts to freeze`,
      )
    const outside = experts.filter((e) => e >= c.numExperts)
    if (outside.length)
      add(
        `freeze.experts.${layer}`,
        `expert ${outside.join(', ')} out of range: the model has ${c.numExperts} experts, 0-${c.numExperts - 1}`,
      )
  }
  if (cfg.method === 'freeze' && f.trainableLayers !== null && Math.abs(f.trainableLayers) > c.numLayers)
    add('freeze.trainableLayers', `${f.trainableLayers} exceeds the model's ${c.numLayers} layers; use at most ${c.numLayers}`)
  if (cfg.method !== 'lora' && !cfg.esft.enabled && problems.length === 0 && trainableCount(c, cfg) === 0)
    add(
      'freeze',
      `the settings leave nothing to train on this model${hash ? ' (a hash router has no weights to train)' : ''}; unfreeze something or use LoRA`,
    )
  // Packed rows are maxLength tokens each (unpacked ones are cut at the model's positions).
  if (cfg.data.packing && cfg.data.maxLength > c.maxPositionEmbeddings)
    add(
      'data.maxLength',
      `${cfg.data.maxLength} exceeds the model's max_position_embeddings ${c.maxPositionEmbeddings}, and packing fills every row to it; use at most ${c.maxPositionEmbeddings}`,
    )
  return problems
}
