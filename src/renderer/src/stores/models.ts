/**
 * Models: the ones the workbench knows (bundled, made in the workspace, linked from disk), a
 * folder inspected before linking it, the fit planner's verdict for a device budget, and new
 * models made from a preset.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { FitPlan, ModelEntry, ModelInfo, ModelsCreateArgs } from '../../../shared/api'
import { useWorkbench } from '../api/client'
import { type UiError, toUiError } from '../errors'

export interface PlanState {
  budgetBytes: number
  plan: FitPlan | null
  error: UiError | null
  loading: boolean
}

/** The inspector's name for the folder field ("dir: ..." meant nothing on screen). */
const FOLDER_LABEL = { dir: 'Checkpoint folder' }

export const useModelsStore = defineStore('models', () => {
  const entries = ref<ModelEntry[]>([])
  const listLoading = ref(false)
  const listError = ref<UiError | null>(null)
  /** Whether the list was loaded at least once. */
  const loaded = ref(false)

  const inspected = ref<ModelInfo | null>(null)
  const inspecting = ref(false)
  /** The last inspection's error, with the field it concerns when the server named one. */
  const inspectError = ref<UiError | null>(null)

  const linking = ref(false)
  const linkError = ref<UiError | null>(null)

  const creating = ref(false)
  const createError = ref<UiError | null>(null)

  /** Fit plans by model folder, for the budget last asked. */
  const plans = ref<Record<string, PlanState>>({})

  /** Models that read (info present), bundled first. */
  const usable = computed(() => entries.value.filter((m) => m.info !== null))
  const bundled = computed(() => entries.value.find((m) => m.source === 'bundled') ?? null)

  /** The list being fetched, for an ensureLoaded that comes meanwhile. */
  let inFlight: Promise<void> | null = null
  function refresh(): Promise<void> {
    const p = (inFlight = fetchList().finally(() => {
      if (inFlight === p) inFlight = null
    }))
    return p
  }
  async function fetchList(): Promise<void> {
    listLoading.value = true
    listError.value = null
    try {
      const list = await useWorkbench().models.list()
      const order = { bundled: 0, workspace: 1, linked: 2 } as const
      entries.value = [...list].sort((a, b) => order[a.source] - order[b.source])
      loaded.value = true
    } catch (e) {
      listError.value = toUiError(e)
    } finally {
      listLoading.value = false
    }
  }

  /**
   * Loads the list unless it was loaded already; waits for one being fetched (the app's start
   * fetches it: a screen opened meanwhile, on a reload, found no bundled model to preselect).
   */
  async function ensureLoaded(): Promise<void> {
    if (inFlight) await inFlight
    else if (!loaded.value) await refresh()
  }

  function byDir(dir: string): ModelEntry | undefined {
    return entries.value.find((m) => m.dir === dir)
  }

  /** A model folder's name as listed, else its folder name. */
  function displayName(dir: string): string {
    return byDir(dir)?.name ?? dir.split(/[\\/]/).pop() ?? dir
  }

  async function inspect(dir: string): Promise<void> {
    if (!dir.trim()) {
      // The service would say "dir: must not be empty".
      inspected.value = null
      inspectError.value = {
        message: 'Type the path of a checkpoint folder (config.json and *.safetensors).',
        field: 'dir',
        code: 'invalid_argument',
      }
      return
    }
    inspecting.value = true
    inspectError.value = null
    try {
      // A folder whose download is not done (config.json, no weights yet) is shown from its config.
      inspected.value = await useWorkbench().models.inspect(dir, { configOnly: true })
      // A budget was asked already: whether this one fits too (before its weights are fetched, for a config alone).
      if (planBudget !== null) void plan(inspected.value.dir, planBudget)
    } catch (e) {
      inspected.value = null
      inspectError.value = toUiError(e, FOLDER_LABEL)
    } finally {
      inspecting.value = false
    }
  }

  /** Registers a folder; returns the entry, or null with linkError set. */
  async function link(dir: string, name?: string): Promise<ModelEntry | null> {
    linking.value = true
    linkError.value = null
    try {
      const entry = await useWorkbench().models.link(name ? { dir, name } : { dir })
      upsert(entry)
      return entry
    } catch (e) {
      linkError.value = toUiError(e, { ...FOLDER_LABEL, name: 'Name' })
      return null
    } finally {
      linking.value = false
    }
  }

  /** What the refused create sent: the refusal holds for that model, not one changed since. */
  let createErrorArgs = ''
  /**
   * The last create's refusal where `args` are what it sent, else null: a 47 B-parameter refusal
   * stayed under the form after switching to a 2.6 M preset.
   */
  function createErrorFor(args: ModelsCreateArgs): UiError | null {
    return createError.value && JSON.stringify(args) === createErrorArgs ? createError.value : null
  }

  async function create(args: ModelsCreateArgs): Promise<ModelEntry | null> {
    creating.value = true
    createError.value = null
    createErrorArgs = JSON.stringify(args)
    try {
      const entry = await useWorkbench().models.create(args)
      upsert(entry)
      return entry
    } catch (e) {
      createError.value = toUiError(e)
      return null
    } finally {
      creating.value = false
    }
  }

  /** Asks the fit planner about one model for a budget (bytes). */
  async function plan(dir: string, budgetBytes: number): Promise<void> {
    plans.value = { ...plans.value, [dir]: { budgetBytes, plan: plans.value[dir]?.plan ?? null, error: null, loading: true } }
    let next: PlanState
    try {
      next = { budgetBytes, plan: await useWorkbench().models.plan({ dir, budgetBytes }), error: null, loading: false }
    } catch (e) {
      next = { budgetBytes, plan: null, error: toUiError(e), loading: false }
    }
    // A newer request for another budget wins.
    if (plans.value[dir]?.budgetBytes === budgetBytes) plans.value = { ...plans.value, [dir]: next }
  }

  /** The budget the plans answer (the last Check fit), or null. */
  let planBudget: number | null = null
  /** The Models screen's budget field as typed (kept while the app is open, with the plans it asked). */
  const fitBudget = ref('')

  /** Plans every readable model for the budget, and the folder inspected (not linked yet: it is planned from its config.json). */
  async function planAll(budgetBytes: number): Promise<void> {
    planBudget = budgetBytes
    const dirs = new Set(usable.value.map((m) => m.dir))
    if (inspected.value) dirs.add(inspected.value.dir)
    await Promise.all([...dirs].map((dir) => plan(dir, budgetBytes)))
  }

  /** Forgets every plan (the budget they answered is no longer the one asked). */
  function clearPlans(): void {
    planBudget = null
    plans.value = {}
  }

  /** Removes a model from the workspace (a linked one's folder stays on disk); throws the UiError to show. */
  async function remove(id: string): Promise<void> {
    try {
      await useWorkbench().models.delete({ id })
    } catch (e) {
      throw toUiError(e)
    }
    const gone = entries.value.find((m) => m.id === id)
    entries.value = entries.value.filter((m) => m.id !== id)
    if (gone) {
      const { [gone.dir]: _plan, ...rest } = plans.value
      plans.value = rest
    }
  }

  function upsert(entry: ModelEntry): void {
    const i = entries.value.findIndex((m) => m.id === entry.id)
    entries.value = i < 0 ? [...entries.value, entry] : entries.value.map((m, j) => (j === i ? entry : m))
  }

  return {
    entries,
    listLoading,
    listError,
    loaded,
    usable,
    bundled,
    inspected,
    inspecting,
    inspectError,
    linking,
    linkError,
    creating,
    createError,
    createErrorFor,
    plans,
    fitBudget,
    refresh,
    ensureLoaded,
    byDir,
    displayName,
    inspect,
    link,
    create,
    plan,
    planAll,
    clearPlans,
    upsert,
    remove,
  }
})
