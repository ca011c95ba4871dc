/**
 * Fine-tuning runs as every host sees them: status, streamed metrics, the run record. Types only,
 * so the renderer can import them.
 */
import type { RunConfig, RunConfigInput } from './runConfig'

/**
 * Where a run stands. `interrupted`: its process stopped (a quit, Ctrl-C, a kill) after keeping
 * what it could; like `cancelled` and `failed`, it resumes from its last checkpoint.
 */
export type RunStatus = 'queued' | 'created' | 'running' | 'completed' | 'cancelled' | 'interrupted' | 'failed'

/**
 * The run.log lines that end a completed run's evaluation without a report (a run.evaluated event
 * ends it otherwise): whoever follows a run to its end waits for one of the three.
 */
export const EVAL_STOPPED = 'evaluation stopped'
export const EVAL_NOTHING = 'nothing to evaluate'

/**
 * A status as the app's screens name it: a run stopped with the Stop button (`cancelled`) kept a
 * checkpoint of the step it reached and resumes from it, which "cancelled" did not say.
 */
export const STATUS_LABELS: Readonly<Record<RunStatus, string>> = {
  queued: 'queued',
  created: 'created',
  running: 'running',
  completed: 'completed',
  cancelled: 'stopped',
  interrupted: 'interrupted',
  failed: 'failed',
}

/**
 * A run's status and why, as the app names it ("stopped at step 40", for the Stop button's
 * cancelled); the status said once ("completed: completed 400 steps" said it twice).
 */
export function statusLine(r: { status: RunStatus; message?: string | null }): string {
  const label = STATUS_LABELS[r.status]
  if (!r.message) return label
  return r.message.startsWith(label) || r.message.startsWith(r.status) ? r.message : `${label}: ${r.message}`
}

/** Statuses a run can be resumed from. */
export const RESUMABLE_STATUSES: readonly RunStatus[] = ['cancelled', 'interrupted', 'failed']

/**
 * The evaluation of lowest (finite) validation loss among those at a kept checkpoint's step: the
 * checkpoint the run card and `run show` mark as the best. Null where fewer than two kept
 * checkpoints were evaluated, unless the one that was scored lowest of all the run's evaluations
 * (a cancelled run keeps its best and the newest, whose evaluations were pruned with their
 * checkpoints); one alone is otherwise best of nothing: a run validated only at its end marked its
 * last checkpoint best, though an earlier one scored better.
 */
export function bestKeptEval<E extends { step: number; valLoss: number }>(kept: (step: number) => boolean, evals: readonly E[]): E | null {
  let best: E | null = null
  let compared = 0
  let lowest = Infinity
  let evaluated = 0
  for (const e of evals) {
    if (!Number.isFinite(e.valLoss)) continue
    evaluated++
    lowest = Math.min(lowest, e.valLoss)
    if (kept(e.step)) {
      compared++
      if (best === null || e.valLoss < best.valLoss) best = e
    }
  }
  return compared >= 2 || (best !== null && evaluated >= 2 && best.valLoss <= lowest) ? best : null
}

/**
 * The steps a resume of a stopped run trains again: after its last checkpoint (`checkpointStep`,
 * null: none, from the base model) up to the step its metrics reached; null where there are none.
 */
export function redoneRange(
  status: RunStatus,
  checkpointStep: number | null,
  metricsStep: number | undefined,
): { from: number; to: number } | null {
  const from = checkpointStep ?? 0
  if (!RESUMABLE_STATUSES.includes(status) || metricsStep === undefined || metricsStep <= from) return null
  return { from, to: metricsStep }
}

/**
 * A run as lists, its card and its exports name it: its name, or for a run given none its id
 * without the time it starts with ("run-c9cb6d", not "2026-12-04T23-20-18-run-c9cb6d": the lists
 * show the date beside it, and an export's folder name ran out at "…-run-c9cb6d-fine-tune").
 */
export function runName(record: Pick<RunRecord, 'id' | 'name'>): string {
  return record.name ?? record.id.replace(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-(?=.)/, '')
}

/** Statuses of a run still under way (waiting or training). */
export const ACTIVE_STATUSES = ['queued', 'created', 'running'] as const

export function isActive(record: Pick<RunRecord, 'status'>): boolean {
  return (ACTIVE_STATUSES as readonly string[]).includes(record.status)
}

/** One sparse layer's routing over a step. */
export interface LayerShare {
  layer: number
  /** Fraction of the layer's kept (token, expert) assignments each expert took. */
  share: number[]
  /** Mean router entropy (nats). */
  entropy: number
  /** Tokens this layer routed to no expert over the step (capacity or token drop; padding excluded). */
  droppedTokens?: number
}

export interface StepMetrics {
  step: number
  totalSteps: number
  epoch: number
  loss: number
  ce: number
  aux: number
  z: number
  /** Shazeer et al. 2017 importance and load losses (absent from runs logged before they were). */
  importance?: number
  load?: number
  lr: number
  gradNorm: number
  droppedFraction: number
  /** Tokens processed in this step (padding excluded). */
  tokens: number
  tokensPerSec: number
  elapsedSec: number
  etaSec: number
  layers: LayerShare[]
}

export interface EvalMetrics {
  step: number
  valLoss: number
  valAux: number
  valZ: number
  valImportance?: number
  valLoad?: number
  valDroppedFraction: number
  valTokens: number
}

export interface ExpertAlert {
  step: number
  layer: number
  expert: number
  kind: 'dead' | 'collapse'
  message: string
}

/** Alerts of one step and kind with the same advice, told once (groupAlerts). */
export interface AlertGroup {
  step: number
  kind: ExpertAlert['kind']
  /** "layer 1 experts 2, 3; layer 2 expert 7 took under 1.0% of tokens for 20 steps: raise ..." */
  text: string
  count: number
  /**
   * Where its experts stand at the latest routing step, when it is later than the alert: "at step
   * 300: 5.7%, back in the band" (an alert read as standing after its expert had long recovered).
   */
  now?: string
  /** Every expert of it back in the band at that step. */
  recovered?: boolean
}

/**
 * Alerts as people read them: those of one step and kind (a narrow dataset leaves several experts
 * idle at once) as one line naming every expert, in the order they came, instead of a line each
 * that repeats the same advice.
 */
export function groupAlerts(
  alerts: readonly ExpertAlert[],
  latest?: { step: number; layers: readonly LayerShare[] } | null,
  band: { deadShare: number; collapseShare: number } = { deadShare: 0.01, collapseShare: 0.9 },
): AlertGroup[] {
  const groups = new Map<string, { step: number; kind: ExpertAlert['kind']; rest: string; layers: Map<number, number[]> }>()
  for (const a of alerts) {
    const who = `layer ${a.layer} expert ${a.expert} `
    const rest = a.message.startsWith(who) ? a.message.slice(who.length) : a.message
    const key = `${a.step} ${a.kind} ${rest}`
    let g = groups.get(key)
    if (!g) groups.set(key, (g = { step: a.step, kind: a.kind, rest, layers: new Map() }))
    const experts = g.layers.get(a.layer) ?? []
    g.layers.set(a.layer, [...experts, a.expert])
  }
  return [...groups.values()].map(({ step, kind, rest, layers }) => {
    const group: AlertGroup = {
      step,
      kind,
      count: [...layers.values()].reduce((n, es) => n + es.length, 0),
      text: `${[...layers].map(([layer, es]) => `layer ${layer} expert${es.length > 1 ? 's' : ''} ${es.join(', ')}`).join('; ')} ${rest}`,
    }
    if (!latest || latest.step <= step) return group
    const shares: { who: string; share: number }[] = []
    for (const [layer, es] of layers) {
      const l = latest.layers.find((x) => x.layer === layer)
      for (const e of es) if (l && l.share[e] !== undefined) shares.push({ who: `layer ${layer} expert ${e}`, share: l.share[e] })
    }
    if (shares.length === 0) return group
    const inBand = (s: number): boolean => (kind === 'dead' ? s >= band.deadShare : s <= band.collapseShare)
    const pct = (s: number): string => `${(s * 100).toFixed(1)}%`
    const one = shares.length === 1
    const back = shares.filter((x) => inBand(x.share))
    group.recovered = back.length === shares.length
    group.now = `at step ${latest.step}: ${shares.map((x) => (one ? pct(x.share) : `${x.who} ${pct(x.share)}`)).join(', ')}, ${
      group.recovered
        ? 'back in the band'
        : back.length === 0
          ? 'still out of the band'
          : `${back.length} of ${shares.length} back in the band`
    }`
    // Back in the band: what to change no longer applies ("…for 20 steps: raise moe.auxLossCoef…").
    if (group.recovered) group.text = group.text.replace(/: (?:raise|lower)\b.*$/, '')
    return group
  })
}

/** Per sparse layer, the experts ESFT trains. */
export type ExpertSelection = Record<string, number[]>

/** run.json: what a run is and where it stands. */
export interface RunRecord {
  id: string
  /** A display name (defaults to the id). */
  name?: string
  status: RunStatus
  config: RunConfig
  baseModel: string
  /** The dataset id it trains on (runs started from the app or the service). */
  dataset?: string
  created: string
  updated: string
  step: number
  totalSteps: number
  bestValLoss: number | null
  lastCheckpoint: string | null
  message?: string
  esft?: ExpertSelection
  /**
   * The adapter folder an imported run came from (runs.importAdapter): trained elsewhere, it has
   * no dataset, metrics or settings here to run again, and `step` is what its trainer saved (0: unknown).
   */
  importedFrom?: string
}

/** A run's steps for lists: "120/300", "40/?" before the total is known, "imported · 1200 steps" or "imported". */
export function stepsText(r: Pick<RunRecord, 'step' | 'totalSteps' | 'importedFrom'>): string {
  if (r.importedFrom !== undefined) return r.step > 0 ? `imported · ${r.step} steps` : 'imported'
  return `${r.step}/${r.totalSteps || '?'}`
}

/** A run with its metrics so far (what the run view draws). */
/** Which rows an evaluation scores: the split the run trained on, the held-out one, or both. */
export type EvalSplit = 'train' | 'validation' | 'all'

/** Scores a model folder or a run's checkpoint on a workspace dataset (progress: task.progress for taskId). */
export interface EvalRunArgs {
  /** A model folder, or (instead) a run id of the workspace: its last checkpoint, adapters applied. */
  model?: string
  run?: string
  /** With `run`: one of its checkpoint folders (checkpoints/step-N), instead of its last. */
  checkpoint?: string
  /** Dataset id; default the run's own. */
  dataset?: string
  /** Default 'validation' ('train': exactly the rows a run trained on). */
  split?: EvalSplit
  /** Rows scored at most, spread over the split (default 50). */
  limit?: number
  taskId?: string
}

/** One scored answer. */
export interface EvalItem {
  /** The question as the user wrote it (the last user turn, or the completion's prompt). */
  prompt: string
  expected: string
  generated: string
  /** Equal after normalisation (case, surrounding whitespace and punctuation). */
  exact: boolean
  /** Token-level F1 of the words (SQuAD's). */
  f1: number
  /** Loss of the expected answer given the prompt; null when nothing of it fits. */
  loss: number | null
}

export interface EvalReport {
  /** The model evaluated: a folder, or a run's checkpoint. */
  model: string
  split: EvalSplit
  /** Rows scored, and rows without an answer to score (raw text, token rows). */
  n: number
  skipped: number
  exactMatch: number
  f1: number
  loss: number | null
  seconds: number
  items: EvalItem[]
}

/** A run's before/after evaluation: the base model and the run's checkpoint on the same rows. */
export interface RunEvaluation {
  checkpoint: string
  step: number
  date: string
  splits: { split: Exclude<EvalSplit, 'all'>; before: EvalReport; after: EvalReport }[]
}

/**
 * One score of a run's checkpoint on its own dataset (eval.run with a run): kept in the run folder's
 * scores.jsonl, oldest first, so a score outlives the page or command that asked for it.
 */
export interface CheckpointScore {
  date: string
  /** The checkpoint's step (its folder step-N). */
  step: number
  checkpoint: string
  /** The dataset scored (the run's own unless another was named). */
  dataset: string
  report: EvalReport
}

/** A run's method as its card and the CLI say it: "full", "lora", "freeze", and "+ ESFT" where ESFT chose the experts. */
export function methodText(c: Pick<RunConfig, 'method' | 'esft'>): string {
  return `${c.method}${c.esft.enabled ? ' + ESFT' : ''}`
}

/**
 * The MoE settings a run set itself (the rest are the model's own), as "capacityFactorTrain 1,
 * auxLossCoef 0.1"; null where it set none.
 */
export function moeSettingsText(moe: RunConfig['moe']): string | null {
  const set = Object.entries(moe).filter(([, v]) => v !== null)
  return set.length ? set.map(([k, v]) => `${k} ${String(v)}`).join(', ') : null
}

/** One split of a before/after evaluation in words: "exact match 0% → 100%, F1 0.00 → 1.00 (20 rows)". */
export function evaluationText(s: RunEvaluation['splits'][number]): string {
  return `exact match ${(100 * s.before.exactMatch).toFixed(0)}% → ${(100 * s.after.exactMatch).toFixed(0)}%, F1 ${s.before.f1.toFixed(2)} → ${s.after.f1.toFixed(2)} (${s.after.n} ${s.after.n === 1 ? 'row' : 'rows'})`
}

export interface RunDetail {
  record: RunRecord
  steps: Omit<StepMetrics, 'layers'>[]
  evals: EvalMetrics[]
  /** Routing shares over the run, oldest first: at most 200 snapshots spread evenly, the latest among them. */
  routing: { step: number; layers: LayerShare[] }[]
  alerts: ExpertAlert[]
  /** The latest before/after evaluation (eval.json), if any. */
  evaluation: RunEvaluation | null
  /** The complete checkpoints on disk, oldest first (what export and eval can take). */
  checkpoints?: { step: number; dir: string }[]
  /** Its checkpoints' scores (scores.jsonl), oldest first. */
  scores?: CheckpointScore[]
  /** The run log's last lines (its `log` file, without the times), oldest first. */
  log?: string[]
  /**
   * Who trains it, where that is another process than this service's engine (the CLI, another
   * server): its progress reaches this service only through the run folder, not as events.
   */
  trainedElsewhere?: string
}

/** What exporting a run wrote. */
export interface RunExportResult {
  outDir: string
  files: string[]
  mergedLora: boolean
  /** Max |adapter − merged| logit difference measured before writing (LoRA). */
  mergeError?: number
  /** What a user of the folder outside MoE Workbench must know (a routing transformers does not have). */
  warnings?: string[]
}

export interface RunsStartArgs {
  /** Model folder (an HF checkpoint). */
  model: string
  /** The run's id (its folder name in the workspace's runs/); default: made from the time and name. Must be new. */
  id?: string
  /** Dataset id in the workspace. */
  dataset: string
  config?: RunConfigInput
  name?: string
}

export type RunEvent =
  | { type: 'run.status'; runId: string; status: RunStatus; step: number; message?: string }
  | { type: 'run.step'; runId: string; metrics: StepMetrics }
  | { type: 'run.eval'; runId: string; metrics: EvalMetrics }
  | { type: 'run.checkpoint'; runId: string; step: number; dir: string }
  | ({ type: 'run.alert'; runId: string } & ExpertAlert)
  | { type: 'run.log'; runId: string; line: string }
  | { type: 'run.evaluated'; runId: string; evaluation: RunEvaluation }
