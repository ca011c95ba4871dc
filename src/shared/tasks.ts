/**
 * Long operations that answer only when they are done (loading a model, exporting a run,
 * analysing expert usage) as every host sees them: the caller names the operation with a `taskId`
 * of its choosing, follows it through task.progress events and may stop it with tasks.cancel.
 * A cancelled operation rejects with the ApiError code 'cancelled' and leaves nothing half-written.
 * Types and dependency-free helpers only (the preload bundles this file).
 */

import { formatBytes } from './bytes'

/** The operations that report task.progress. */
export type TaskOperation = 'models.load' | 'runs.export' | 'experts.analyze' | 'eval.run'

/** What `done` and `total` count. */
export type TaskUnit = 'bytes' | 'texts' | 'items'

/** One stage of a task; a task goes through its stages in order (`stage` of `stages`), each with its own count. */
export interface TaskProgress {
  /** What the stage does, for people ("Loading the base model"). */
  label: string
  /** 1-based index of the stage, and how many the task has. */
  stage: number
  stages: number
  done: number
  /** 0 while the stage cannot tell how much there is (an indeterminate bar). */
  total: number
  unit: TaskUnit
  /** Seconds since the task started. */
  elapsedSec: number
  /** Seconds the stage still needs at its pace so far; null until it can tell. */
  etaSec: number | null
}

export interface TaskProgressEvent {
  type: 'task.progress'
  taskId: string
  operation: TaskOperation
  progress: TaskProgress
}

/** How far the current stage is, in [0, 1]; null while it cannot tell (an indeterminate bar). */
export function stageFraction(p: Pick<TaskProgress, 'done' | 'total'>): number | null {
  return p.total > 0 ? Math.min(1, Math.max(0, p.done / p.total)) : null
}

/**
 * Progress as lines of text for a log or a terminal ("Loading: 50% of 3.0 GiB", "Scoring: 3 of
 * 50", "Routing: 3 of 40 texts"): from the first unit done, every 2 s at most (the first line 2 s
 * from the start), nothing for a stage not begun or of unknown size. A stage that finishes gets
 * its closing line ("Scoring: 50 of 50") where a line was written for it, so a log does not end
 * on "5 of 7"; a stage too quick for any line stays silent.
 */
export function progressLines(
  emit: (line: string) => void,
  now: () => number = Date.now,
): (p: Pick<TaskProgress, 'label' | 'done' | 'total' | 'unit'>) => void {
  let last = now()
  /** The label of the stage a line was written for and that has not finished yet. */
  let open: string | null = null
  const line = (p: Pick<TaskProgress, 'label' | 'done' | 'total' | 'unit'>): string =>
    p.unit === 'bytes'
      ? `${p.label}: ${Math.floor((100 * Math.min(p.done, p.total)) / p.total)}% of ${formatBytes(p.total)}`
      : `${p.label}: ${Math.min(p.done, p.total)} of ${p.total}${p.unit === 'texts' ? ' texts' : ''}`
  return (p) => {
    if (p.done <= 0 || p.total <= 0) return
    if (p.done >= p.total) {
      if (open === p.label) {
        open = null
        emit(line(p))
      }
      return
    }
    if (now() - last < 2000) return
    last = now()
    open = p.label
    emit(line(p))
  }
}
