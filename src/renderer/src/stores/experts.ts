/**
 * Expert usage of a model over a text or a dataset (experts.analyze), and of a second model over
 * the same input, to show how fine-tuning moved the routing.
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import type { ExpertAnalysis, ExpertsAnalyzeArgs } from '../../../shared/chat'
import { useWorkbench } from '../api/client'
import { type UiError, isCancelled, toUiError } from '../errors'
import { useModelsStore } from './models'
import { useTasksStore } from './tasks'

/** The subject the Experts screen's analyses carry in the tasks store. */
const STORE_SUBJECT = 'experts-screen'

export interface AnalyzeForm {
  model: string
  /** The second model to compare with ('' = none). */
  compareModel: string
  source: 'text' | 'dataset'
  text: string
  dataset: string
  maxRows: number
}

export interface LayerDiff {
  layer: number
  /** Per expert: load of the second model minus the first. */
  load: number[]
  entropy: number
}

/** The second analysis minus the first, for the layers both have with the same expert count. */
export function routingDiff(a: ExpertAnalysis, b: ExpertAnalysis): LayerDiff[] {
  const out: LayerDiff[] = []
  for (const la of a.layers) {
    const lb = b.layers.find((l) => l.layer === la.layer)
    if (!lb || lb.load.length !== la.load.length) continue
    out.push({ layer: la.layer, load: la.load.map((x, e) => lb.load[e] - x), entropy: lb.entropy - la.entropy })
  }
  return out
}

/** What a comparison needs alike: the sparse layers, and the experts of each. */
export interface RoutingLayout {
  name: string
  sparseLayers: readonly number[]
  numExperts: number
}

/**
 * Why two models' routing cannot be laid side by side (different sparse layers or experts per
 * layer), in words; null where it can. 8 experts beside 16 showed the first 8 of each and an empty
 * difference, with no word why.
 */
export function incomparable(a: RoutingLayout, b: RoutingLayout): string | null {
  const same = a.numExperts === b.numExperts && a.sparseLayers.join() === b.sparseLayers.join()
  if (same) return null
  const describe = (m: RoutingLayout): string =>
    `${m.name} has ${m.numExperts} experts per layer in ${m.sparseLayers.length === 1 ? 'sparse layer' : 'sparse layers'} ${m.sparseLayers.join(', ')}`
  return `${describe(a)}, ${describe(b)}: a comparison needs the same experts in the same layers (a model and its fine-tuned copy). Analyse each on its own.`
}

/** An analysis's layout, as it came back. */
function layoutOf(name: string, a: ExpertAnalysis): RoutingLayout {
  return { name, sparseLayers: a.layers.map((l) => l.layer), numExperts: Math.max(0, ...a.layers.map((l) => l.load.length)) }
}

/**
 * A layer's largest changes in load, largest first, at most `n`, each as the percentage points the
 * table shows (one decimal): changes that round to 0.0 are none (two equal models have no moves).
 */
export function biggestMoves(load: readonly number[], n = 3): { expert: number; points: string; down: boolean }[] {
  return load
    .map((v, expert) => ({ expert, v, points: (Math.abs(v) * 100).toFixed(1) }))
    .filter((m) => m.points !== '0.0')
    .sort((a, b) => Math.abs(b.v) - Math.abs(a.v))
    .slice(0, n)
    .map(({ expert, v, points }) => ({ expert, points: `${v < 0 ? '−' : '+'}${points}`, down: v < 0 }))
}

export const useExpertsStore = defineStore('experts', () => {
  const form = ref<AnalyzeForm>({ model: '', compareModel: '', source: 'text', text: '', dataset: '', maxRows: 200 })
  // Whole analyses (co-activation matrices, top tokens): replaced, never tracked deeply.
  const analysis = shallowRef<ExpertAnalysis | null>(null)
  const comparison = shallowRef<ExpertAnalysis | null>(null)
  const analyzing = ref(false)
  /** What the shown analysis routed (the form may have changed since). */
  const analyzedWith = shallowRef<{ source: 'text' | 'dataset'; dataset: string; maxRows: number } | null>(null)
  const error = ref<UiError | null>(null)

  const diff = computed(() => (analysis.value && comparison.value ? routingDiff(analysis.value, comparison.value) : null))

  function argsFor(model: string): ExpertsAnalyzeArgs {
    const f = form.value
    return f.source === 'text' ? { model, text: f.text } : { model, dataset: f.dataset, maxRows: f.maxRows }
  }

  async function analyze(): Promise<void> {
    // One analysis (or comparison) at a time: Cancel stops it first.
    if (analyzing.value) return
    const f = form.value
    error.value = null
    if (!f.model) {
      error.value = { message: 'Pick a model to analyse.', field: 'model' }
      return
    }
    if (f.source === 'text' && !f.text.trim()) {
      error.value = { message: 'Write or paste some text to route.', field: 'text' }
      return
    }
    if (f.source === 'dataset' && !f.dataset) {
      error.value = { message: 'Pick a dataset.', field: 'dataset' }
      return
    }
    // An emptied number field reads '' (v-model.number): say what to type, not "not a string".
    const rows: unknown = f.maxRows
    if (f.source === 'dataset' && !(typeof rows === 'number' && Number.isInteger(rows) && rows >= 1 && rows <= 10_000)) {
      error.value = { message: 'Rows: type how many of the dataset’s rows to route, a whole number from 1 to 10000.', field: 'maxRows' }
      return
    }
    const models = useModelsStore()
    const infoOf = (dir: string): RoutingLayout | null => {
      const info = models.entries.find((m) => m.dir === dir)?.info
      return info ? { name: models.displayName(dir), sparseLayers: info.sparseLayers, numExperts: info.numExperts } : null
    }
    const [la, lb] = [infoOf(f.model), f.compareModel ? infoOf(f.compareModel) : null]
    const refused = la && lb ? incomparable(la, lb) : null
    if (refused) {
      error.value = { message: refused, field: 'compareModel' }
      forgetResult()
      return
    }
    analyzing.value = true
    // What is routed, as the form says now (it may change while the analysis runs).
    const routed = { source: f.source, dataset: f.dataset, maxRows: f.maxRows }
    const tasks = useTasksStore()
    const analyse = (model: string): Promise<ExpertAnalysis> =>
      tasks.track(
        'experts.analyze',
        `Analysing ${useModelsStore().displayName(model)}`,
        (taskId) => useWorkbench().experts.analyze({ ...argsFor(model), taskId }),
        STORE_SUBJECT,
      )
    const runs = [analyse(f.model), f.compareModel ? analyse(f.compareModel) : Promise.resolve(null)] as const
    try {
      const [first, second] = await Promise.all(runs)
      // A model the list could not read beforehand is checked on what came back.
      const late = second
        ? incomparable(layoutOf(models.displayName(f.model), first), layoutOf(models.displayName(f.compareModel), second))
        : null
      if (late) error.value = { message: late, field: 'compareModel' }
      analysis.value = first
      comparison.value = late ? null : second
      analyzedWith.value = routed
    } catch (e) {
      // One failed or was cancelled: stop the other too, and say why unless the user stopped it.
      await cancel()
      if (!isCancelled(e)) {
        error.value = toUiError(e, { maxRows: 'Rows', text: 'Text', dataset: 'Dataset', model: 'Model' })
        forgetResult()
      }
    } finally {
      await Promise.allSettled(runs)
      analyzing.value = false
    }
  }

  /**
   * The last result, once an analysis of another choice failed: shown under the error, it read as
   * the new choice's. A cancel keeps it (nothing else was asked for).
   */
  function forgetResult(): void {
    analysis.value = null
    comparison.value = null
    analyzedWith.value = null
  }

  /** The analyses under way, for the view's progress bars. */
  const running = computed(() => useTasksStore().of('experts.analyze', STORE_SUBJECT))

  /** Stops the analyses under way (each rejects with 'cancelled'; the previous result stays). */
  async function cancel(): Promise<void> {
    const tasks = useTasksStore()
    await Promise.allSettled(running.value.map((t) => tasks.cancel(t.id)))
  }

  return { form, analysis, analyzedWith, comparison, analyzing, running, error, diff, analyze, cancel }
})
