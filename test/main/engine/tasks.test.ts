/**
 * Task progress and cancel: progress events throttled to one per 100 ms (always on a new stage and
 * at completion) with elapsed time and the stage's ETA; pace() yielding to the event loop and
 * throwing once cancelled; task ids that cannot be reused while their work runs.
 */
import { describe, expect, it } from 'vitest'
import { EngineTasks, pacer, progressReporter, type StageProgress } from '../../../src/main/engine/tasks'
import type { WorkbenchEvent } from '../../../src/shared/api'
import type { TaskOperation } from '../../../src/shared/tasks'

const stage = (done: number, total: number, s = 1, label = 'Loading'): StageProgress => ({
  label,
  stage: s,
  stages: 2,
  done,
  total,
  unit: 'bytes',
})

/** A progress reporter on a clock the test sets, and the events it emitted. */
function recorder(taskId: string, operation: TaskOperation, start = 0) {
  const clock = { now: start }
  const events: WorkbenchEvent[] = []
  const report = progressReporter(
    (e) => events.push(e),
    taskId,
    operation,
    () => clock.now,
  )
  return { clock, events, report }
}

const progressOf = (events: WorkbenchEvent[]) => events.map((e) => (e as Extract<WorkbenchEvent, { type: 'task.progress' }>).progress)

describe('progressReporter', () => {
  it('throttles to one event per 100 ms, except a new stage or a completed one; times and ETA from the stage pace', () => {
    const { clock, events, report } = recorder('t1', 'models.load', 1_000)
    clock.now = 1_500
    report(stage(0, 100)) // a new stage: emitted; nothing done yet, so no ETA
    expect(events).toHaveLength(1)
    expect(events[0]).toMatchObject({ type: 'task.progress', taskId: 't1', operation: 'models.load' })
    expect(progressOf(events)[0]).toMatchObject({ done: 0, total: 100, elapsedSec: 0.5, etaSec: null, label: 'Loading', unit: 'bytes' })
    clock.now = 1_599
    report(stage(10, 100)) // 99 ms later: dropped
    expect(events).toHaveLength(1)
    clock.now = 1_600
    report(stage(20, 100)) // 100 ms: emitted; 20 done in 0.1 s, 80 to go → 0.4 s
    expect(events).toHaveLength(2)
    expect(progressOf(events)[1].elapsedSec).toBeCloseTo(0.6, 9)
    expect(progressOf(events)[1].etaSec).toBeCloseTo(0.4, 9)
    clock.now = 1_610
    report(stage(100, 100)) // complete: emitted at once, ETA 0
    expect(events).toHaveLength(3)
    expect(progressOf(events)[2].etaSec).toBe(0)
    clock.now = 1_620
    report(stage(0, 10, 2, 'Checking')) // a new stage: emitted at once, its clock restarts
    expect(events).toHaveLength(4)
    expect(progressOf(events)[3]).toMatchObject({ stage: 2, label: 'Checking', etaSec: null })
    clock.now = 1_720
    report(stage(5, 10, 2, 'Checking'))
    expect(progressOf(events)[4].etaSec).toBeCloseTo(0.1, 9) // 5 in 0.1 s (since 1_620), 5 to go
    expect(progressOf(events)[4].elapsedSec).toBeCloseTo(0.72, 9)
  })

  it('a stage with no total has no ETA, and is never "complete"', () => {
    const { clock, events, report } = recorder('t', 'eval.run', 0)
    report(stage(0, 0))
    clock.now = 10
    report(stage(3, 0)) // within 100 ms and not complete: dropped
    expect(events).toHaveLength(1)
    clock.now = 200
    report(stage(7, 0))
    expect(events).toHaveLength(2)
    expect(progressOf(events)[1].etaSec).toBeNull()
  })

  it("no ETA while nothing is done, nor at a stage's first report (no pace yet)", () => {
    const { clock, events, report } = recorder('t', 'eval.run', 0)
    const eta = () => progressOf(events).at(-1)!.etaSec
    report(stage(5, 10)) // half done at once: no time has passed in the stage
    expect(eta()).toBeNull()
    report(stage(0, 10, 2))
    clock.now = 500
    report(stage(0, 10, 2)) // 0.5 s in, nothing done
    expect(events).toHaveLength(3)
    expect(eta()).toBeNull()
  })

  it('a stage completed at its first report has ETA 0', () => {
    const { events, report } = recorder('t', 'runs.export', 5)
    report(stage(4, 4))
    expect(progressOf(events)[0].etaSec).toBe(0)
  })
})

describe('pacer', () => {
  it('yields to the event loop on its first call and again once 25 ms have passed, and throws once cancelled', async () => {
    const ac = new AbortController()
    let clock = 0
    const pace = pacer(ac.signal, 'loading x', () => clock)
    const yields = async () => {
      let ran = false
      setImmediate(() => (ran = true))
      await pace()
      return ran
    }
    expect(await yields()).toBe(true) // the first call lets a queued callback in
    clock = 24
    expect(await yields()).toBe(false) // 24 ms after the last yield: not yet
    clock = 25
    expect(await yields()).toBe(true)
    clock = 49
    expect(await yields()).toBe(false) // counted from the last yield
    // no signal: never cancelled
    await expect(pacer(undefined, 'x', () => clock)()).resolves.toBeUndefined()
    ac.abort()
    await expect(pace()).rejects.toMatchObject({ code: 'cancelled', message: 'loading x was cancelled' })
  })
})

describe('EngineTasks', () => {
  it('runs work with a signal and progress under its id, refuses an id in use, frees it when done, and cancels by id', async () => {
    const events: WorkbenchEvent[] = []
    const tasks = new EngineTasks((e) => events.push(e))
    let release!: () => void
    let signal: AbortSignal | undefined
    const running = tasks.run('a', 'models.load', async (hooks) => {
      signal = hooks.signal
      hooks.onProgress?.(stage(1, 2))
      await new Promise<void>((r) => (release = r))
      return 'done'
    })
    await Promise.resolve()
    expect(events[0]).toMatchObject({ type: 'task.progress', taskId: 'a', operation: 'models.load' })
    await expect(tasks.run('a', 'models.load', async () => 1)).rejects.toMatchObject({
      code: 'invalid_argument',
      message: 'taskId: a is already in use; choose a new id',
    })
    expect(tasks.cancel('nope')).toBe(false)
    expect(tasks.cancel('a')).toBe(true)
    expect(signal?.aborted).toBe(true)
    release()
    expect(await running).toBe('done')
    // free again, and a failed task frees it too
    await expect(tasks.run('a', 'models.load', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
    expect(await tasks.run('a', 'models.load', async () => 2)).toBe(2)
    expect(tasks.cancel('a')).toBe(false)
  })

  it('without an id: no signal, no progress events', async () => {
    const events: WorkbenchEvent[] = []
    const tasks = new EngineTasks((e) => events.push(e))
    const hooks = await tasks.run(undefined, 'models.load', async (h) => h)
    expect(hooks).toEqual({})
    expect(events).toEqual([])
  })
})
