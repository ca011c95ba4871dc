import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { stageFraction, type TaskProgress } from '../../../src/shared/tasks'
import { validateArgs } from '../../../src/shared/schema'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { newTaskId, useTasksStore } from '../../../src/renderer/src/stores/tasks'
import { fakeBridge } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

const progress = (over: Partial<TaskProgress> = {}): TaskProgress => ({
  label: 'Loading',
  stage: 1,
  stages: 1,
  done: 10,
  total: 40,
  unit: 'bytes',
  elapsedSec: 1,
  etaSec: 3,
  ...over,
})

describe('useTasksStore', () => {
  it('shows a task from its start until its call settles, with the progress the engine reports for it', async () => {
    const tasks = useTasksStore()
    tasks.listen()
    let finish: (v: string) => void = () => undefined
    let id = ''
    const call = tasks.track(
      'runs.export',
      'Exporting run-1',
      (taskId) => {
        id = taskId
        return new Promise<string>((resolve) => (finish = resolve))
      },
      'run-1',
    )
    expect(tasks.of('runs.export', 'run-1')).toMatchObject([{ id, title: 'Exporting run-1', progress: null, cancelling: false }])
    expect(tasks.of('runs.export', 'run-2')).toEqual([])
    fake.emit({ type: 'task.progress', taskId: id, operation: 'runs.export', progress: progress() })
    fake.emit({ type: 'task.progress', taskId: 'someone-else', operation: 'runs.export', progress: progress({ done: 39 }) })
    expect(tasks.byId[id].progress).toMatchObject({ done: 10, total: 40 })
    expect(Object.keys(tasks.byId)).toEqual([id])
    finish('ok')
    expect(await call).toBe('ok')
    expect(tasks.list).toEqual([])
    // A late event does not bring a finished task back.
    fake.emit({ type: 'task.progress', taskId: id, operation: 'runs.export', progress: progress({ done: 40 }) })
    expect(tasks.list).toEqual([])
  })

  it('removes a task whose call fails, and passes the failure on', async () => {
    const tasks = useTasksStore()
    await expect(
      tasks.track('experts.analyze', 'x', async () => Promise.reject(new ApiError('cancelled', 'x was cancelled'))),
    ).rejects.toMatchObject({
      code: 'cancelled',
    })
    expect(tasks.list).toEqual([])
  })

  it('cancels through tasks.cancel once, and lets the user try again when that call fails', async () => {
    const tasks = useTasksStore()
    let id = ''
    const call = tasks.track('models.load', 'Loading m', (taskId) => {
      id = taskId
      return new Promise(() => undefined)
    })
    void call
    await tasks.cancel(id)
    expect(fake.bridge.tasks.cancel).toHaveBeenCalledWith(id)
    expect(tasks.byId[id].cancelling).toBe(true)
    await tasks.cancel(id)
    expect(fake.bridge.tasks.cancel).toHaveBeenCalledTimes(1)

    tasks.byId[id].cancelling = false
    fake.bridge.tasks.cancel.mockRejectedValueOnce(new ApiError('engine_unavailable', 'the engine stopped'))
    await expect(tasks.cancel(id)).rejects.toMatchObject({ code: 'engine_unavailable' })
    expect(tasks.byId[id].cancelling).toBe(false)
  })

  it('makes ids the API accepts, each new', () => {
    const ids = new Set(Array.from({ length: 50 }, () => newTaskId('experts.analyze')))
    expect(ids.size).toBe(50)
    for (const taskId of ids) expect(validateArgs('tasks.cancel', { taskId })).toEqual({ taskId })
  })
})

describe('stageFraction', () => {
  it('is done over total, clamped, and null while the total is unknown', () => {
    expect(stageFraction({ done: 10, total: 40 })).toBe(0.25)
    expect(stageFraction({ done: 50, total: 40 })).toBe(1)
    expect(stageFraction({ done: 0, total: 0 })).toBeNull()
  })
})
