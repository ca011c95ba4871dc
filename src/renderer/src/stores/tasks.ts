/**
 * Long operations this window started that answer only when done (exporting a run, loading a
 * model for chat, analysing experts): each gets a taskId, shows the task.progress events the
 * engine sends for it, and can be cancelled. Stores start them with `track`; components show
 * them with TaskProgress.vue, and the status bar lists them.
 */
import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import type { WorkbenchEvent } from '../../../shared/api'
import type { TaskOperation, TaskProgress } from '../../../shared/tasks'
import { useWorkbench } from '../api/client'
import { toUiError } from '../errors'
import { listener } from './listen'

export interface Task {
  id: string
  operation: TaskOperation
  /** What the user asked for, in words ("Exporting run-12"). */
  title: string
  /** What it works on, for the view that shows it (a run id, a model folder). */
  subject: string
  /** The latest progress, null until the engine's first report. */
  progress: TaskProgress | null
  cancelling: boolean
}

let counter = 0

/** A task id unique to this window: letters, digits and '-' (the API's id rule). */
export function newTaskId(operation: TaskOperation): string {
  const random = Math.random().toString(36).slice(2, 10)
  return `${operation.replace('.', '-')}-${Date.now().toString(36)}-${++counter}-${random}`
}

export const useTasksStore = defineStore('tasks', () => {
  const byId = ref<Record<string, Task>>({})
  const list = computed(() => Object.values(byId.value))

  /** Runs `call` as a task: shown from now until it settles, whatever the outcome. */
  async function track<T>(operation: TaskOperation, title: string, call: (taskId: string) => Promise<T>, subject = ''): Promise<T> {
    const id = newTaskId(operation)
    byId.value[id] = { id, operation, title, subject, progress: null, cancelling: false }
    try {
      return await call(id)
    } finally {
      delete byId.value[id]
    }
  }

  /** Asks the engine to stop a task; its call then rejects with code 'cancelled'. */
  async function cancel(id: string): Promise<void> {
    const task = byId.value[id]
    if (!task || task.cancelling) return
    task.cancelling = true
    try {
      await useWorkbench().tasks.cancel(id)
    } catch (e) {
      task.cancelling = false
      throw toUiError(e)
    }
  }

  /** The tasks of one operation on one subject (the export of a run, the analyses of a model). */
  function of(operation: TaskOperation, subject?: string): Task[] {
    return list.value.filter((t) => t.operation === operation && (subject === undefined || t.subject === subject))
  }

  function apply(event: WorkbenchEvent): void {
    if (event.type !== 'task.progress') return
    // Only tasks still under way here: a late event must not bring a finished one back.
    const task = byId.value[event.taskId]
    if (task) task.progress = event.progress
  }

  const listen = listener(apply)

  return { byId, list, track, cancel, of, apply, listen }
})
