/**
 * Progress and cancel for the engine's long operations (src/shared/tasks.ts).
 *
 * Work that takes `TaskHooks` reports each stage through `onProgress` and calls `pace()` between
 * units of work: pace yields to the event loop every few milliseconds, so a tasks.cancel message
 * gets in, and throws the 'cancelled' ApiError once the signal is aborted.
 */
import { ApiError, type WorkbenchEvent } from '../../shared/api'
import type { TaskOperation, TaskProgress } from '../../shared/tasks'

/** A stage's progress as the work reports it (the reporter adds the times). */
export type StageProgress = Omit<TaskProgress, 'elapsedSec' | 'etaSec'>

export interface TaskHooks {
  signal?: AbortSignal
  onProgress?: (p: StageProgress) => void
}

/** The error a cancelled operation rejects with. */
export function cancelledError(what: string): ApiError {
  return new ApiError('cancelled', `${what} was cancelled`)
}

function throwIfCancelled(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw cancelledError(what)
}

const YIELD_EVERY_MS = 25

/**
 * Lets other messages in while a loop runs: `await pace()` yields to the event loop on its first
 * call and whenever the last yield is more than a few ms ago, then throws if the task was cancelled.
 */
export function pacer(signal: AbortSignal | undefined, what: string, now: () => number = Date.now): () => Promise<void> {
  let last = -Infinity
  return async () => {
    if (now() - last >= YIELD_EVERY_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve))
      last = now()
    }
    throwIfCancelled(signal, what)
  }
}

const EMIT_EVERY_MS = 100

/**
 * Turns a task's stage reports into task.progress events: throttled to one per 100 ms, but
 * always on a new stage and when a stage completes; each carries the elapsed time and the stage's
 * ETA at its pace so far.
 */
export function progressReporter(
  emit: (event: WorkbenchEvent) => void,
  taskId: string,
  operation: TaskOperation,
  now: () => number = Date.now,
): (p: StageProgress) => void {
  const started = now()
  let stageKey = ''
  let stageStarted = started
  let lastEmit = -Infinity
  return (p) => {
    const t = now()
    const key = `${p.stage}/${p.label}`
    const newStage = key !== stageKey
    if (newStage) {
      stageKey = key
      stageStarted = t
    }
    const complete = p.total > 0 && p.done >= p.total
    if (!newStage && !complete && t - lastEmit < EMIT_EVERY_MS) return
    lastEmit = t
    const stageSec = (t - stageStarted) / 1000
    const etaSec = p.total > 0 && p.done > 0 && stageSec > 0 ? (stageSec * (p.total - p.done)) / p.done : complete ? 0 : null
    const progress: TaskProgress = { ...p, elapsedSec: (t - started) / 1000, etaSec }
    emit({ type: 'task.progress', taskId, operation, progress })
  }
}

/** The engine's cancellable tasks by id. */
export class EngineTasks {
  private readonly running = new Map<string, AbortController>()

  constructor(private readonly emit: (event: WorkbenchEvent) => void) {}

  /**
   * Runs `work` as the task `taskId` (no events and no cancel without one); the id is free again
   * once the work settles.
   */
  async run<T>(taskId: string | undefined, operation: TaskOperation, work: (hooks: TaskHooks) => Promise<T>): Promise<T> {
    if (taskId === undefined) return work({})
    if (this.running.has(taskId)) throw new ApiError('invalid_argument', `taskId: ${taskId} is already in use; choose a new id`, 'taskId')
    const controller = new AbortController()
    this.running.set(taskId, controller)
    try {
      return await work({ signal: controller.signal, onProgress: progressReporter(this.emit, taskId, operation) })
    } finally {
      this.running.delete(taskId)
    }
  }

  /** Aborts a task; false when no task has that id. */
  cancel(taskId: string): boolean {
    const c = this.running.get(taskId)
    c?.abort()
    return c !== undefined
  }
}
