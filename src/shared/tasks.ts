/**
 * Long operations that answer only when they are done (loading a model, exporting a run,
 * analysing expert usage) as every host sees them: the caller names the operation with a `taskId`
 * of its choosing, follows it through task.progress events and may stop it with tasks.cancel.
 * A cancelled operation rejects with the ApiError code 'cancelled' and leaves nothing half-written.
 * Types and dependency-free helpers only (the preload bundles this file).
 */

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
