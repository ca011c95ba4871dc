/**
 * The new-run form: every knob of the run config (src/shared/runConfig.ts), presets, and inline
 * validation with the shared runConfigSchema, so the form refuses what the service would refuse
 * and says so next to the field.
 */
import { defineStore } from 'pinia'
import { computed, ref, watch } from 'vue'
import type { RunsStartArgs } from '../../../shared/runs'
import { getPath, type RunConfig, runConfigSchema } from '../../../shared/runConfig'
import { plainIssue, routingFacts } from '../../../shared/modelConfig'
import type { FitPlan } from '../../../shared/chat'
import type { AutoChoice } from '../../../shared/autoConfig'
import { useWorkbench } from '../api/client'
import { type UiError, toUiError } from '../errors'
import { formatBytes, parseBytes, sizeProblem } from '../format'
import { useRunsStore } from './runs'
import { useModelsStore } from './models'
import { useDatasetsStore } from './datasets'
import { preflight, rowTokensFor, typicalLr, type Advice } from '../../../shared/guidance'

export function defaultRunConfig(): RunConfig {
  return runConfigSchema.parse({})
}

export interface RunPreset {
  id: string
  label: string
  description: string
  /**
   * Sets the preset's values on c; `totalParams` (null: no model chosen yet) scales what depends on
   * the model's size, `trainRows` (null: no dataset chosen yet) what depends on the run's length.
   */
  apply: (c: RunConfig, model: { totalParams: number | null; trainRows?: number | null }) => void
  /** Chosen by the service from the model and dataset (runs.auto); `apply` is not used. */
  auto?: boolean
}

/** The automatic preset's id: settings chosen from the dataset and the model. */
export const QUICK_PRESET = 'quick'

export const RUN_PRESETS: RunPreset[] = [
  {
    id: QUICK_PRESET,
    label: 'Quick',
    description: "Chosen from this dataset's size and lengths and the model's size; the choices and reasons are listed.",
    auto: true,
    apply: () => undefined,
  },
  {
    id: 'quick-lora',
    label: 'LoRA, 60 steps',
    description: "Rank-8 adapters on attention and experts, 60 steps at LoRA's usual rate for the model's size: minutes on a CPU.",
    apply: (c, model) => {
      c.method = 'lora'
      c.lora = { rank: 8, alpha: 16, dropout: 0, targets: ['attention', 'experts'] }
      c.optimizer.lr = typicalLr('lora', model.totalParams ?? 7e9)
      c.schedule = { type: 'cosine', warmupSteps: 5, minLrRatio: 0.1 }
      c.batchSize = 4
      c.maxSteps = 60
      c.evalEvery = 20
      c.checkpointEvery = 30
    },
  },
  {
    id: 'full',
    label: 'Full fine-tune',
    description:
      "Every weight, one epoch, the usual full fine-tune rate for the model's size, with warm-up (10 steps, or a tenth of a shorter run).",
    apply: (c, model) => {
      c.method = 'full'
      c.optimizer.lr = typicalLr('full', model.totalParams ?? 7e9)
      c.batchSize = 8
      c.epochs = 1
      // 10 steps of warm-up, or a tenth of a shorter run (a 2-step run never reached its rate).
      const steps = model.trainRows ? Math.ceil(model.trainRows / c.batchSize) * c.epochs : null
      c.schedule = { type: 'cosine', warmupSteps: steps === null ? 10 : Math.min(10, Math.floor(steps / 10)), minLrRatio: 0.1 }
      c.maxSteps = null
      c.evalEvery = 50
      c.checkpointEvery = 100
    },
  },
  {
    id: 'esft',
    label: 'ESFT',
    description: 'Expert-specialised: train only the experts the data routes to most (DeepSeek ESFT).',
    apply: (c, model) => {
      c.method = 'full'
      c.esft = { enabled: true, score: 'gate', threshold: 0.2, scoringBatches: 16 }
      c.freeze = { ...c.freeze, attention: true, embeddings: true }
      c.optimizer.lr = typicalLr('full', model.totalParams ?? 7e9)
      c.maxSteps = 100
      c.evalEvery = 25
    },
  },
  {
    id: 'freeze-router',
    label: 'Frozen router',
    description: 'Full training with the router and embeddings fixed, so routing stays as it was.',
    apply: (c, model) => {
      c.method = 'freeze'
      c.freeze = { ...c.freeze, router: true, embeddings: true }
      c.optimizer.lr = typicalLr('freeze', model.totalParams ?? 7e9)
      c.maxSteps = 100
    },
  },
]

/** Writes a dotted path of a plain object (the parents exist in a RunConfig). */
export function setPath(obj: object, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = obj as Record<string, unknown>
  for (const key of keys.slice(0, -1)) node = node[key] as Record<string, unknown>
  node[keys[keys.length - 1]] = value
}

/** "0: 1, 3; 2: 0" <-> {"0": [1, 3], "2": [0]} (experts kept fixed per layer). */
export function parseExpertMap(text: string): Record<string, number[]> | string {
  const out: Record<string, number[]> = {}
  for (const part of text.split(/[;\n]/).map((p) => p.trim())) {
    if (!part) continue
    const m = /^(\d+)\s*:\s*([\d\s,]*)$/.exec(part)
    if (!m) return `“${part}” is not “layer: expert, expert”`
    const experts = m[2]
      .split(',')
      .map((e) => e.trim())
      .filter(Boolean)
      .map(Number)
    out[m[1]] = [...new Set([...(out[m[1]] ?? []), ...experts])].sort((a, b) => a - b)
  }
  return out
}

export function formatExpertMap(map: Record<string, number[]>): string {
  return Object.entries(map)
    .map(([layer, experts]) => `${layer}: ${experts.join(', ')}`)
    .join('; ')
}

export const useTrainFormStore = defineStore('trainForm', () => {
  const config = ref<RunConfig>(defaultRunConfig())
  const model = ref('')
  const dataset = ref('')
  /** Run again of a run whose dataset was deleted: its id, said under the empty picker. */
  const deletedDataset = ref<string | null>(null)
  const name = ref('')
  const presetId = ref<string | null>(null)
  /** What the user typed for freeze.experts (parsed into the config when it reads). */
  const frozenExpertsText = ref('')
  /** The user tried to start: show every problem, including empty required fields. */
  const attempted = ref(false)
  /** What the user typed for the device budget ("" = the backend's default). */
  const budgetText = ref('')
  /** The fit planner's answer for this model, budget and run config. */
  const plan = ref<{ plan: FitPlan | null; error: UiError | null; loading: boolean }>({ plan: null, error: null, loading: false })

  /** Config field (dotted path) -> problem, from the shared schema. */
  const configIssues = computed<Record<string, string>>(() => {
    const out: Record<string, string> = {}
    const parsed = parseExpertMap(frozenExpertsText.value)
    if (typeof parsed === 'string') out['freeze.experts'] = parsed
    if (budgetText.value.trim() && parseBytes(budgetText.value) === null)
      out['offload.budgetBytes'] = `${sizeProblem(budgetText.value)}, or leave it empty for the backend's default`
    const r = runConfigSchema.safeParse(config.value)
    if (!r.success) for (const issue of r.error.issues) out[issue.path.map(String).join('.') || '(config)'] ??= plainIssue(issue.message)
    // What the chosen model allows, said as it is typed (the service refuses it at Start).
    const experts = useModelsStore().entries.find((m) => m.dir === model.value)?.info?.numExperts
    const topK = config.value.moe.topK
    if (experts !== undefined && typeof topK === 'number' && topK > experts)
      out['moe.topK'] ??= `at most the model's ${experts} experts per layer`
    return out
  })

  /** Every problem shown next to a field: the form's own and the service's last refusal. */
  const errors = computed<Record<string, string>>(() => {
    const out: Record<string, string> = { ...configIssues.value }
    if (attempted.value && !model.value) out.model = 'Choose the model to fine-tune.'
    if (!dataset.value && deletedDataset.value)
      out.dataset = `The run's dataset (${deletedDataset.value}) was deleted: choose another, or import its file again under Datasets.`
    else if (attempted.value && !dataset.value) out.dataset = 'Choose a dataset (import one under Datasets).'
    // The service's refusal of a field, while the field still holds the value it refused (a rank
    // of 100000 refused, then set to 8 by a preset, kept the red message under the 8).
    const runs = useRunsStore()
    const server = runs.startError
    if (server?.field) {
      const key = server.field.replace(/^config\./, '')
      const sent = runs.startErrorArgs
      const current = { model: model.value, dataset: dataset.value, name: name.value.trim() || undefined, config: config.value }
      const same = sent === null || JSON.stringify(getPath(sent, server.field)) === JSON.stringify(getPath(current, server.field))
      // Under the field, its name is said already ("config.moe.topK: 20 is more than...").
      if (same) out[key] ??= server.message.replace(`${server.field}: `, '').replace(`${key}: `, '')
    }
    return out
  })

  const valid = computed(() => Object.keys(configIssues.value).length === 0 && !!model.value && !!dataset.value)

  /** What the models list knows of the chosen model (null before one is chosen, or where it is unreadable). */
  const modelInfo = computed(() => useModelsStore().entries.find((m) => m.dir === model.value)?.info ?? null)

  /** Settings that will not work for this model and dataset, with why and a value to try (the user may go on). */
  const warnings = computed<Advice[]>(() => {
    const info = modelInfo.value
    const ds = useDatasetsStore().list.find((d) => d.id === dataset.value)
    if (!info || !ds || Object.keys(configIssues.value).length) return []
    return preflight(config.value, {
      trainRows: ds.split.train,
      valRows: ds.split.validationRows,
      totalParams: info.params.total,
      vocabSize: info.vocabSize ?? 0,
      modelCapacityFactor: typeof info.knobDefaults?.capacityFactorTrain === 'number' ? info.knobDefaults.capacityFactorTrain : null,
      rowTokens: rowTokensFor(ds.stats, model.value),
      routerType: info.routerType,
    })
  })

  /** How the chosen model routes (top-k, router): the model's, not a knob of the run; '' before one is chosen. */
  const routing = computed(() => (modelInfo.value ? routingFacts(modelInfo.value) : ''))

  function get(path: string): unknown {
    return getPath(config.value, path)
  }

  function set(path: string, value: unknown): void {
    setPath(config.value, path, value)
    presetId.value = null
  }

  /** The device budget as typed: a size, or empty for the backend's default. */
  function setBudget(text: string): void {
    budgetText.value = text
    const bytes = text.trim() ? parseBytes(text) : null
    if (!text.trim() || bytes !== null) config.value.offload.budgetBytes = bytes
    plan.value = { plan: null, error: null, loading: false }
  }

  /** Asks the fit planner whether the run fits the budget (adapters, optimiser state, activations included). */
  async function checkPlan(): Promise<void> {
    if (!model.value) {
      plan.value = { plan: null, error: { message: 'Choose the base model first.', field: 'model' }, loading: false }
      return
    }
    plan.value = { plan: plan.value.plan, error: null, loading: true }
    const { budgetBytes, storage } = config.value.offload
    try {
      const answer = await useWorkbench().models.plan({
        dir: model.value,
        ...(budgetBytes !== null && { budgetBytes }),
        storage,
        run: JSON.parse(JSON.stringify(config.value)) as RunConfig,
      })
      plan.value = { plan: answer, error: null, loading: false }
    } catch (e) {
      plan.value = { plan: null, error: toUiError(e), loading: false }
    }
  }

  function setFrozenExperts(text: string): void {
    frozenExpertsText.value = text
    const parsed = parseExpertMap(text)
    if (typeof parsed !== 'string') config.value.freeze.experts = parsed
    presetId.value = null
  }

  function applyPreset(id: string): void {
    const preset = RUN_PRESETS.find((p) => p.id === id)
    if (!preset) return
    if (preset.auto) {
      presetId.value = id
      void applyAuto()
      return
    }
    const next = defaultRunConfig()
    preset.apply(next, {
      totalParams: modelInfo.value?.params.total ?? null,
      trainRows: useDatasetsStore().list.find((d) => d.id === dataset.value)?.split.train ?? null,
    })
    useConfig(next)
    autoChoices.value = null
    presetId.value = id
  }

  function useConfig(next: RunConfig): void {
    // The device budget belongs to the machine, not to the preset; the experts per token to the
    // model the user is shaping (no preset sets it: one replaced a typed top-k without a word).
    next.offload = { ...config.value.offload }
    next.moe.topK = config.value.moe.topK
    config.value = next
    frozenExpertsText.value = formatExpertMap(next.freeze.experts)
  }

  /** The Quick preset's choices and their reasons (kept when the user changes a setting; null: Quick not applied). */
  const autoChoices = ref<{ choices: AutoChoice[]; steps: number } | null>(null)
  const autoState = ref<{ loading: boolean; error: UiError | null }>({ loading: false, error: null })
  let autoSeq = 0

  /** Asks the service for the Quick preset's settings; they replace the form's. */
  async function applyAuto(): Promise<void> {
    autoChoices.value = null
    if (!model.value || !dataset.value) {
      autoState.value = {
        loading: false,
        error: { message: 'Choose the model and the dataset first: the Quick settings are chosen from them.' },
      }
      return
    }
    const seq = ++autoSeq
    autoState.value = { loading: true, error: null }
    try {
      const auto = await useWorkbench().runs.auto({ model: model.value, dataset: dataset.value })
      if (seq !== autoSeq) return
      autoState.value = { loading: false, error: null }
      // The user changed a setting (or chose another preset) while the service chose: theirs wins.
      if (presetId.value !== QUICK_PRESET) return
      useConfig(runConfigSchema.parse(auto.config))
      autoChoices.value = { choices: auto.choices, steps: auto.steps }
    } catch (e) {
      if (seq === autoSeq) autoState.value = { loading: false, error: toUiError(e) }
    }
  }

  // Another model or dataset: the Quick settings are chosen again for it.
  // A preset follows the model and dataset it is for (Quick chooses again; the others scale with the model).
  watch([model, dataset], () => {
    if (presetId.value) applyPreset(presetId.value)
  })

  function reset(): void {
    config.value = defaultRunConfig()
    frozenExpertsText.value = ''
    budgetText.value = ''
    presetId.value = null
    autoChoices.value = null
    autoState.value = { loading: false, error: null }
    attempted.value = false
    deletedDataset.value = null
  }

  /**
   * A field the form should bring into view and focus once shown (a dotted path, "moe.auxLossCoef"):
   * what a copied run is being run again to change (its expert alerts' advice). The form clears it.
   */
  const focus = ref<string | null>(null)

  /** Starts from another run's settings (the "Run again" of a past run), bringing `focusPath` into view. */
  function copyFrom(run: { config: RunConfig; baseModel: string; dataset?: string; name?: string }, focusPath?: string): void {
    focus.value = focusPath ?? null
    config.value = runConfigSchema.parse(JSON.parse(JSON.stringify(run.config)))
    frozenExpertsText.value = formatExpertMap(config.value.freeze.experts)
    const b = config.value.offload.budgetBytes
    // Shown as a size where that reads back exactly, else in bytes.
    budgetText.value = b === null ? '' : parseBytes(formatBytes(b)) === b ? formatBytes(b) : `${b} B`
    model.value = run.baseModel
    // A dataset deleted since: the picker would stand empty without a word.
    const kept = run.dataset !== undefined && useDatasetsStore().exists(run.dataset)
    dataset.value = kept ? run.dataset! : ''
    deletedDataset.value = kept ? null : (run.dataset ?? null)
    name.value = run.name ? `${run.name} (again)` : ''
    presetId.value = null
    autoChoices.value = null
  }

  function startArgs(): RunsStartArgs {
    const args: RunsStartArgs = {
      model: model.value,
      dataset: dataset.value,
      config: JSON.parse(JSON.stringify(config.value)) as RunConfig,
    }
    if (name.value.trim()) args.name = name.value.trim()
    return args
  }

  /** Validates, then starts the run; returns its id, or null with the problems shown. */
  async function start(): Promise<string | null> {
    attempted.value = true
    if (!valid.value) return null
    const record = await useRunsStore().start(startArgs())
    if (record) attempted.value = false
    return record?.id ?? null
  }

  return {
    config,
    model,
    dataset,
    name,
    presetId,
    autoChoices,
    autoState,
    frozenExpertsText,
    attempted,
    budgetText,
    plan,
    setBudget,
    checkPlan,
    configIssues,
    errors,
    valid,
    warnings,
    routing,
    get,
    set,
    setFrozenExperts,
    applyPreset,
    reset,
    copyFrom,
    focus,
    startArgs,
    start,
  }
})
