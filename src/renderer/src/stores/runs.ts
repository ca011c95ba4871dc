/**
 * Fine-tuning runs: the list, starting one, and the open run's metrics as they stream in
 * (run.* events). The series the charts draw live in shallowRefs and grow in place; each change
 * calls triggerRef once, so a chart appends what is new instead of Vue tracking every point.
 */
import { defineStore } from 'pinia'
import { computed, markRaw, ref, shallowRef, triggerRef } from 'vue'
import type { Dtype, ModelEntry, WorkbenchEvent } from '../../../shared/api'
import type {
  CheckpointScore,
  EvalMetrics,
  EvalReport,
  EvalSplit,
  ExpertAlert,
  LayerShare,
  RunDetail,
  RunEvaluation,
  RunEvent,
  RunRecord,
  RunsStartArgs,
  StepMetrics,
} from '../../../shared/runs'
import { ACTIVE_STATUSES, RESUMABLE_STATUSES, STATUS_LABELS, bestKeptEval, runName, isActive, redoneRange } from '../../../shared/runs'
import { useWorkbench } from '../api/client'
import { type UiError, toUiError } from '../errors'
import { listener } from './listen'
import { useTasksStore } from './tasks'

export type StepRow = Omit<StepMetrics, 'layers'>
export interface RoutingPoint {
  step: number
  layers: LayerShare[]
}

/** Routing snapshots kept for the open run (the entropy chart's history). */
export const ROUTING_KEEP = 1000
export const LOG_KEEP = 300
/** How often the open run is re-read when another process trains it (RunDetail.trainedElsewhere). */
export const FOLLOW_MS = 3000

export { ACTIVE_STATUSES, isActive }

export function canResume(record: Pick<RunRecord, 'status'>): boolean {
  return RESUMABLE_STATUSES.includes(record.status)
}

/**
 * The run card's Resume button: offered where the run can be resumed, busy while another action
 * on it runs; a run stopped before its first checkpoint resumes too, from the base model (the
 * button was disabled there without a word, though the run's message said resume would start it
 * again and the CLI did).
 */
export function resumeButton(
  record: Pick<RunRecord, 'status' | 'lastCheckpoint'>,
  busy: boolean,
): { shown: boolean; disabled: boolean; title: string } {
  const from = checkpointStep(record.lastCheckpoint)
  return {
    shown: canResume(record),
    disabled: busy,
    title: record.lastCheckpoint
      ? `Continue from its last checkpoint${from === null ? '' : ` (step ${from})`}`
      : 'No checkpoint was written: resuming starts it again from the base model',
  }
}

/**
 * A stopped run whose metrics go past its last checkpoint (it crashed or was killed between two):
 * the steps a resume trains again, in words; null where nothing is redone. The card showed "step
 * 279 of 1500" and curves to 279 beside "last checkpoint step-200", and a resume quietly dropped
 * 201-279.
 */
export function redoneSteps(record: Pick<RunRecord, 'status' | 'lastCheckpoint'>, metricsStep: number | undefined): string | null {
  const range = redoneRange(record.status, checkpointStep(record.lastCheckpoint), metricsStep)
  if (!range) return null
  const { from } = range
  const steps = from + 1 === metricsStep ? `step ${metricsStep}` : `steps ${from + 1}-${metricsStep}`
  return from > 0
    ? `Stopped at step ${metricsStep}, after its last checkpoint (step ${from}): resuming trains ${steps} again.`
    : `Stopped at step ${metricsStep}, before its first checkpoint: resuming trains ${steps} again, from the base model.`
}

/** The step of a checkpoint folder (`…/checkpoints/step-30`), or null. */
export function checkpointStep(dir: string | null | undefined): number | null {
  const m = dir ? /(?:^|[\\/])step-(\d+)[\\/]?$/.exec(dir) : null
  return m ? Number(m[1]) : null
}

export interface ExportChoice {
  /** The run's final model (a completed run); otherwise a checkpoint on the way. */
  final: boolean
  /** "checkpoint step 30 of 60" (what the service adds to the exported model's name), or null when final. */
  label: string | null
  button: string
  /** The name the service gives when none is typed. */
  placeholder: string
  /** Said next to the form when the export is not the final model. */
  note: string | null
}

/** A model exported from a run, as the run card lists it. */
export interface RunExport {
  name: string
  dir: string
  /** The checkpoint step it was written from (null where the model's provenance does not say). */
  step: number | null
  /** When, ISO (empty where not recorded). */
  exported: string
}

/**
 * The models exported from run `runId`, newest first, read from the models' provenance: the run
 * card says what was made (an export's only word was a toast gone in seconds, and Export again
 * silently wrote a second copy).
 */
export function runExports(entries: readonly Pick<ModelEntry, 'name' | 'dir' | 'provenance'>[], runId: string): RunExport[] {
  const out: RunExport[] = []
  for (const m of entries) {
    const p = m.provenance
    if (p?.fromRun !== runId) continue
    const ckpt = p.checkpoint as { step?: unknown } | undefined
    out.push({
      name: m.name,
      dir: m.dir,
      step: typeof ckpt?.step === 'number' ? ckpt.step : null,
      exported: typeof p.exported === 'string' ? p.exported : '',
    })
  }
  return out.sort((a, b) => b.exported.localeCompare(a.exported))
}

/** A checkpoint Export can write, as the run card offers it. */
export interface CheckpointOption {
  step: number
  dir: string
  /** "step 300 (last)", "step 20 (best validation loss 1.234)". */
  label: string
  /** The kept checkpoint of the lowest validation loss. */
  best: boolean
}

/**
 * The checkpoints Export can write, newest first: the run's last, and the one of its best
 * validation loss marked (the curves' advice names it; only the last could be exported).
 */
export function checkpointOptions(
  checkpoints: readonly { step: number; dir: string }[],
  lastCheckpoint: string | null,
  evals: readonly Pick<EvalMetrics, 'step' | 'valLoss'>[],
): CheckpointOption[] {
  const dirs = new Map(checkpoints.map((c) => [c.step, c.dir]))
  const last = checkpointStep(lastCheckpoint)
  if (last !== null && lastCheckpoint) dirs.set(last, lastCheckpoint) // a live run's newest, before the list is read again
  const best = bestKeptEval((step) => dirs.has(step), evals)
  return [...dirs.keys()]
    .sort((a, b) => b - a)
    .map((step, i) => ({
      step,
      dir: dirs.get(step)!,
      label: `step ${step}${i === 0 ? ' (last)' : ''}${best?.step === step ? ` (best validation loss ${best.valLoss.toFixed(3)})` : ''}`,
      best: best?.step === step,
    }))
}

/**
 * How the run card offers an export: a run not completed exports a checkpoint, and says which;
 * `step` chooses a checkpoint other than the last (an earlier one is never the final model).
 */
export function exportChoice(
  record: Pick<RunRecord, 'id' | 'name' | 'status' | 'step' | 'totalSteps' | 'lastCheckpoint'>,
  chosen: number | null = null,
): ExportChoice {
  const name = runName(record)
  const last = checkpointStep(record.lastCheckpoint)
  if (record.status === 'completed' && (chosen === null || chosen === last))
    return { final: true, label: null, button: 'Export', placeholder: `${name} (fine-tuned)`, note: null }
  const step = chosen ?? last
  const of = record.totalSteps > 0 ? ` of ${record.totalSteps}` : ''
  if (step === null)
    return {
      final: false,
      label: null,
      button: 'Export',
      placeholder: name,
      note: isActive(record) ? 'Nothing to export yet: the first checkpoint comes later in the run.' : null,
    }
  const label = `checkpoint step ${step}${of}`
  const why =
    step !== last
      ? `Step ${step} is not the run's last checkpoint${last === null ? '' : ` (step ${last})`}`
      : isActive(record)
        ? 'The run is still training'
        : // Its last checkpoint's step, not where it stopped: a crash stops it past that ("stopped
          // at step 183" beside "Stopped at step 216" on the same card).
          `The run ${record.status === 'failed' ? 'failed' : `was ${STATUS_LABELS[record.status]}`} before its end`
  return {
    final: false,
    label,
    button: `Export ${label}`,
    placeholder: `${name} (${label})`,
    note: `${why}: this exports its ${label}, not a final model; the name says so.`,
  }
}

/** What an event says about the run's record (its card and list entry); null: nothing. */
export function recordFields(event: RunEvent): Partial<RunRecord> | null {
  switch (event.type) {
    case 'run.status': {
      const fields: Partial<RunRecord> = { status: event.status, step: event.step, updated: new Date().toISOString() }
      if (event.message !== undefined) fields.message = event.message
      return fields
    }
    case 'run.step':
      return { step: event.metrics.step, totalSteps: event.metrics.totalSteps }
    case 'run.checkpoint':
      return { lastCheckpoint: event.dir }
    default:
      return null
  }
}

/**
 * The settings in which runs differ (dotted config keys, the model and dataset first), a value per
 * run as the user reads it: names for the model and dataset (not a folder path or an id), strings
 * without JSON quotes, '–' where a run lacks the key.
 */
/** What a setting left empty (null) means, as Compare shows it: a raw "null" said nothing. */
function unset(key: string): string {
  if (key.startsWith('moe.')) return "the model's own"
  if (key === 'maxSteps') return 'from epochs'
  if (key === 'offload.budgetBytes') return "the backend's default"
  if (key.startsWith('freeze.')) return 'all'
  return 'none'
}

export function configDifferences(
  details: readonly Pick<RunDetail, 'record'>[],
  names: { model(dir: string): string; dataset(id: string): string },
): { key: string; values: string[] }[] {
  const flat = (obj: unknown, prefix = '', out: Record<string, string> = {}): Record<string, string> => {
    if (obj !== null && typeof obj === 'object' && !Array.isArray(obj)) {
      for (const [k, v] of Object.entries(obj)) flat(v, prefix ? `${prefix}.${k}` : k, out)
    } else out[prefix] = typeof obj === 'string' ? obj : obj === null ? unset(prefix) : JSON.stringify(obj)
    return out
  }
  const configs = details.map((d) =>
    flat({
      model: names.model(d.record.baseModel),
      dataset: d.record.dataset === undefined ? null : names.dataset(d.record.dataset),
      ...d.record.config,
    }),
  )
  const keys = [...new Set(configs.flatMap((c) => Object.keys(c)))]
  return keys.filter((k) => new Set(configs.map((c) => c[k])).size > 1).map((k) => ({ key: k, values: configs.map((c) => c[k] ?? '–') }))
}

export const useRunsStore = defineStore('runs', () => {
  const runs = ref<RunRecord[]>([])
  const listLoading = ref(false)
  const listError = ref<UiError | null>(null)

  const openId = ref<string | null>(null)
  const record = ref<RunRecord | null>(null)
  const detailLoading = ref(false)
  const detailError = ref<UiError | null>(null)
  const steps = shallowRef<StepRow[]>([])
  const evals = shallowRef<EvalMetrics[]>([])
  const routing = shallowRef<RoutingPoint[]>([])
  const alerts = ref<ExpertAlert[]>([])
  /** The open run's before/after evaluation (eval.json), when it has one. */
  const evaluation = shallowRef<RunEvaluation | null>(null)
  const logLines = shallowRef<string[]>([])
  /** The open run's complete checkpoints when it was read (a live run's newest is its record's lastCheckpoint). */
  const checkpoints = shallowRef<{ step: number; dir: string }[]>([])
  /** The open run's checkpoint scores, oldest first (its scores.jsonl). */
  const scores = shallowRef<CheckpointScore[]>([])

  const starting = ref(false)
  const startError = ref<UiError | null>(null)
  /** What the refused start sent: a field's refusal holds for the value it was given, not the one typed since. */
  const startErrorArgs = ref<RunsStartArgs | null>(null)

  /** The action under way per run id. */
  const busy = ref<Record<string, 'cancel' | 'resume' | 'export' | 'delete'>>({})

  const compareRuns = shallowRef<RunDetail[]>([])
  const compareLoading = ref(false)
  const compareError = ref<UiError | null>(null)

  const latest = computed(() => steps.value.at(-1) ?? null)
  const latestRouting = computed(() => routing.value.at(-1) ?? null)
  const progress = computed(() => {
    const r = record.value
    if (!r) return null
    const total = latest.value?.totalSteps ?? r.totalSteps
    const step = Math.max(latest.value?.step ?? 0, r.step)
    return { step, total, fraction: total > 0 ? Math.min(1, step / total) : 0, etaSec: latest.value?.etaSec ?? null }
  })
  const recent = computed(() => [...runs.value].sort((a, b) => b.updated.localeCompare(a.updated)))
  const active = computed(() => runs.value.filter(isActive))

  async function refresh(): Promise<void> {
    listLoading.value = true
    listError.value = null
    try {
      runs.value = await useWorkbench().runs.list()
    } catch (e) {
      listError.value = toUiError(e)
    } finally {
      listLoading.value = false
    }
  }

  /** Events for the run being opened that arrive before runs.get answers. */
  let pending: RunEvent[] = []
  /** The open run went back to running (a resume): its next step may repeat earlier ones. */
  let resumed = false

  /** Who trains the open run where that is another process (the CLI): then it is re-read every FOLLOW_MS. */
  const trainedElsewhere = ref<string | null>(null)
  let followTimer: ReturnType<typeof setTimeout> | undefined

  function showDetail(detail: RunDetail): void {
    record.value = detail.record
    upsert(detail.record)
    steps.value = [...detail.steps]
    evals.value = [...detail.evals]
    routing.value = detail.routing.slice(-ROUTING_KEEP)
    alerts.value = [...detail.alerts]
    evaluation.value = detail.evaluation ?? null
    checkpoints.value = detail.checkpoints ?? []
    scores.value = detail.scores ?? []
    trainedElsewhere.value = detail.trainedElsewhere ?? null
    logLines.value = (detail.log ?? []).slice(-LOG_KEEP)
  }

  /** Re-reads what the open run keeps on disk, its checkpoints and their scores; false where it could not. */
  async function rereadKept(id: string): Promise<boolean> {
    try {
      const detail = await useWorkbench().runs.get({ id })
      if (openId.value === id) {
        checkpoints.value = detail.checkpoints ?? []
        scores.value = detail.scores ?? []
      }
      return true
    } catch {
      // the list as it was: an export of a checkpoint gone since is refused, naming those kept
      return false
    }
  }

  /** Re-reads a run another process trains (its steps reach this service through the folder only, no events). */
  function follow(id: string): void {
    clearTimeout(followTimer)
    followTimer = undefined
    if (openId.value !== id || !trainedElsewhere.value) return
    followTimer = setTimeout(async () => {
      followTimer = undefined
      try {
        const detail = await useWorkbench().runs.get({ id })
        if (openId.value !== id || detailLoading.value) return
        showDetail(detail)
      } catch {
        // the next read may work (the server away a moment); the connection's own state says more
      }
      follow(id)
    }, FOLLOW_MS)
  }

  async function open(id: string): Promise<void> {
    clearTimeout(followTimer)
    trainedElsewhere.value = null
    openId.value = id
    record.value = runs.value.find((r) => r.id === id) ?? null
    steps.value = []
    evals.value = []
    routing.value = []
    alerts.value = []
    evaluation.value = null
    checkpoints.value = []
    scores.value = []
    logLines.value = []
    pending = []
    resumed = false
    detailLoading.value = true
    detailError.value = null
    try {
      const detail = await useWorkbench().runs.get({ id })
      if (openId.value !== id) return
      showDetail(detail)
      follow(id)
      const buffered = pending
      pending = []
      detailLoading.value = false
      for (const event of buffered) apply(event)
    } catch (e) {
      if (openId.value === id) detailError.value = toUiError(e)
    } finally {
      if (openId.value === id) detailLoading.value = false
    }
  }

  function close(): void {
    clearTimeout(followTimer)
    trainedElsewhere.value = null
    openId.value = null
    record.value = null
    steps.value = []
    evals.value = []
    routing.value = []
    alerts.value = []
    evaluation.value = null
    checkpoints.value = []
    scores.value = []
    logLines.value = []
  }

  async function start(args: RunsStartArgs): Promise<RunRecord | null> {
    starting.value = true
    startError.value = null
    startErrorArgs.value = null
    try {
      const started = await useWorkbench().runs.start(args)
      upsert(started)
      return started
    } catch (e) {
      startError.value = toUiError(e)
      startErrorArgs.value = JSON.parse(JSON.stringify(args)) as RunsStartArgs
      return null
    } finally {
      starting.value = false
    }
  }

  async function act<T>(id: string, action: 'cancel' | 'resume' | 'export' | 'delete', call: () => Promise<T>): Promise<T> {
    busy.value = { ...busy.value, [id]: action }
    try {
      return await call()
    } finally {
      const { [id]: _done, ...rest } = busy.value
      busy.value = rest
    }
  }

  /** Per run, the events heard while a request answering with its record is under way. */
  const heard = new Map<string, RunEvent[]>()

  /**
   * A request that answers with the run's record (cancel, resume). The answer was read when the
   * request was served, and events sent after that (the checkpoint a cancel writes, the status it
   * ends in) may travel faster on the event stream than the answer does: those heard meanwhile are
   * applied again over the answer, so the card never goes back to an older checkpoint or status.
   */
  async function updateFrom(id: string, action: 'cancel' | 'resume', call: () => Promise<RunRecord>): Promise<void> {
    const events: RunEvent[] = []
    heard.set(id, events)
    try {
      const answer = await act(id, action, call)
      upsert(answer)
      for (const event of events) {
        const fields = recordFields(event)
        if (fields) patch(id, fields)
      }
    } catch (e) {
      throw toUiError(e)
    } finally {
      if (heard.get(id) === events) heard.delete(id)
    }
  }

  /** Throws the UiError for the caller to show (a toast: these buttons have no form). */
  async function cancel(id: string): Promise<void> {
    await updateFrom(id, 'cancel', () => useWorkbench().runs.cancel({ id }))
  }

  /** Deletes a run that is not training (its checkpoints too); it leaves the list, and the page if open. */
  async function remove(id: string): Promise<void> {
    try {
      await act(id, 'delete', () => useWorkbench().runs.delete({ id }))
    } catch (e) {
      throw toUiError(e)
    }
    runs.value = runs.value.filter((r) => r.id !== id)
    if (openId.value === id) close()
  }

  async function resume(id: string): Promise<void> {
    if (openId.value === id) resumed = true
    await updateFrom(id, 'resume', () => useWorkbench().runs.resume({ id }))
  }

  async function exportRun(
    id: string,
    options: { name?: string; dtype?: Dtype; checkpoint?: string; outDir?: string } = {},
  ): Promise<ModelEntry> {
    try {
      return await act(id, 'export', () =>
        useTasksStore().track('runs.export', `Exporting ${id}`, (taskId) => useWorkbench().runs.export({ id, ...options, taskId }), id),
      )
    } catch (e) {
      throw toUiError(e)
    }
  }

  /**
   * Scores one of a run's checkpoints on the run's own dataset: the greedy answers "Did it learn?"
   * gives for the last checkpoint, for any kept one (the best validation loss is often earlier).
   */
  async function scoreCheckpoint(id: string, checkpoint: string, split: Exclude<EvalSplit, 'all'>, limit: number): Promise<EvalReport> {
    const name = checkpoint.split(/[\\/]/).pop()
    try {
      const report = await useTasksStore().track(
        'eval.run',
        `Scoring ${name} of ${id}`,
        (taskId) => useWorkbench().eval.run({ run: id, checkpoint, split, limit, taskId }),
        id,
      )
      // The service kept it in the run folder: the card lists it from there (it stays after a reload),
      // or, where the folder did not read just now, from this answer until it does.
      const step = checkpointStep(checkpoint)
      if (!(await rereadKept(id)) && openId.value === id && step !== null)
        scores.value = [...scores.value, { date: new Date().toISOString(), step, checkpoint, dataset: record.value?.dataset ?? '', report }]
      return report
    } catch (e) {
      throw toUiError(e)
    }
  }

  /** Loads runs to overlay (their whole metrics). */
  async function compare(ids: string[]): Promise<void> {
    compareLoading.value = true
    compareError.value = null
    try {
      compareRuns.value = await Promise.all(ids.map((id) => useWorkbench().runs.get({ id })))
    } catch (e) {
      compareError.value = toUiError(e)
      compareRuns.value = []
    } finally {
      compareLoading.value = false
    }
  }

  function clearCompare(): void {
    compareRuns.value = []
    compareError.value = null
  }

  function upsert(next: RunRecord): void {
    const i = runs.value.findIndex((r) => r.id === next.id)
    runs.value = i < 0 ? [next, ...runs.value] : runs.value.map((r, j) => (j === i ? next : r))
    if (openId.value === next.id) record.value = next
  }

  function patch(id: string, fields: Partial<RunRecord>): void {
    const i = runs.value.findIndex((r) => r.id === id)
    if (i >= 0) runs.value = runs.value.map((r, j) => (j === i ? { ...r, ...fields } : r))
    if (openId.value === id && record.value) record.value = { ...record.value, ...fields }
  }

  /** Drops the open run's points from `step` on. */
  function rewind(step: number): void {
    steps.value = steps.value.filter((r) => r.step < step)
    evals.value = evals.value.filter((r) => r.step < step)
    routing.value = routing.value.filter((r) => r.step < step)
  }

  let refreshQueued = false
  function apply(event: RunEvent): void {
    heard.get(event.runId)?.push(event)
    const known = runs.value.some((r) => r.id === event.runId)
    if (!known && !refreshQueued) {
      // A run started elsewhere (another window, the CLI through the service): fetch the list.
      refreshQueued = true
      void refresh().finally(() => (refreshQueued = false))
    }
    const isOpen = event.runId === openId.value
    if (isOpen && detailLoading.value) {
      pending.push(event)
      return
    }
    switch (event.type) {
      case 'run.status': {
        if (isOpen && event.status === 'running' && record.value && record.value.status !== 'running') resumed = true
        patch(event.runId, recordFields(event)!)
        // Ended: the checkpoints kept now (the run prunes all but the newest and the best as it goes).
        if (isOpen && !isActive({ status: event.status })) void rereadKept(event.runId)
        break
      }
      case 'run.step': {
        const { layers, ...row } = event.metrics
        patch(event.runId, recordFields(event)!)
        if (!isOpen) break
        const last = steps.value.at(-1)
        if (last && row.step <= last.step) {
          if (!resumed) break
          // Resumed from a checkpoint before the last step shown: the run redoes those steps.
          rewind(row.step)
        }
        resumed = false
        steps.value.push(row)
        triggerRef(steps)
        if (layers.length) {
          routing.value.push({ step: row.step, layers })
          if (routing.value.length > ROUTING_KEEP) routing.value.splice(0, routing.value.length - ROUTING_KEEP)
          triggerRef(routing)
        }
        break
      }
      case 'run.eval': {
        if (!isOpen) break
        const last = evals.value.at(-1)
        if (last && event.metrics.step <= last.step) break
        evals.value.push(event.metrics)
        triggerRef(evals)
        const best = record.value?.bestValLoss
        if (best === null || best === undefined || event.metrics.valLoss < best) patch(event.runId, { bestValLoss: event.metrics.valLoss })
        break
      }
      case 'run.alert': {
        if (!isOpen) break
        const { type: _type, runId: _runId, ...alert } = event
        if (
          !alerts.value.some((a) => a.step === alert.step && a.layer === alert.layer && a.expert === alert.expert && a.kind === alert.kind)
        )
          alerts.value.push(alert)
        break
      }
      case 'run.checkpoint':
        patch(event.runId, recordFields(event)!)
        // A run followed live lists its checkpoints as they come (its card offered only the last).
        if (isOpen && !checkpoints.value.some((c) => c.step === event.step))
          checkpoints.value = [...checkpoints.value, { step: event.step, dir: event.dir }]
        break
      case 'run.evaluated':
        if (isOpen) evaluation.value = markRaw(event.evaluation)
        break
      case 'run.log': {
        if (!isOpen) break
        const lines = logLines.value
        lines.push(event.line)
        if (lines.length > LOG_KEEP) lines.splice(0, lines.length - LOG_KEEP)
        triggerRef(logLines)
        break
      }
    }
  }

  function onEvent(event: WorkbenchEvent): void {
    if (event.type.startsWith('run.')) apply(event as RunEvent)
    // Back from a lost connection: the steps and statuses sent meanwhile were missed.
    if (event.type === 'connection' && event.connected) {
      void refresh()
      if (openId.value) void open(openId.value)
    }
  }

  const listen = listener(onEvent)

  return {
    runs,
    listLoading,
    listError,
    recent,
    active,
    openId,
    record,
    detailLoading,
    detailError,
    steps,
    evals,
    routing,
    alerts,
    evaluation,
    checkpoints,
    scores,
    trainedElsewhere,
    logLines,
    latest,
    latestRouting,
    progress,
    starting,
    startError,
    startErrorArgs,
    busy,
    compareRuns,
    compareLoading,
    compareError,
    refresh,
    open,
    close,
    start,
    cancel,
    remove,
    resume,
    exportRun,
    scoreCheckpoint,
    compare,
    clearCompare,
    onEvent,
    listen,
  }
})
