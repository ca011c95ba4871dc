import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import type { RunRecord } from '../../../src/shared/runs'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import {
  FOLLOW_MS,
  ROUTING_KEEP,
  canResume,
  configDifferences,
  checkpointOptions,
  exportChoice,
  isActive,
  redoneSteps,
  resumeButton,
  runExports,
  useRunsStore,
} from '../../../src/renderer/src/stores/runs'
import { fakeBridge, runDetail, runRecord, stepMetrics } from '../fakeBridge'
import { useTasksStore } from '../../../src/renderer/src/stores/tasks'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

const flush = () => new Promise((resolve) => setTimeout(resolve, 0))

describe('exportChoice', () => {
  const run = { ...runRecord, name: 'capitals', totalSteps: 60 }
  it('offers a run still training only as a checkpoint, named and labelled "checkpoint step N of M"', () => {
    const running = exportChoice({ ...run, status: 'running', step: 33, lastCheckpoint: '/ws/runs/r/checkpoints/step-30' })
    expect(running).toEqual({
      final: false,
      label: 'checkpoint step 30 of 60',
      button: 'Export checkpoint step 30 of 60',
      placeholder: 'capitals (checkpoint step 30 of 60)',
      note: 'The run is still training: this exports its checkpoint step 30 of 60, not a final model; the name says so.',
    })
    const cancelled = exportChoice({ ...run, status: 'cancelled', step: 43, lastCheckpoint: 'C:\\ws\\runs\\r\\checkpoints\\step-43' })
    expect(cancelled).toMatchObject({ final: false, button: 'Export checkpoint step 43 of 60' })
    expect(cancelled.note).toBe(
      'The run was stopped before its end: this exports its checkpoint step 43 of 60, not a final model; the name says so.',
    )
    const at = { step: 43, lastCheckpoint: '/ws/runs/r/checkpoints/step-43' }
    expect(exportChoice({ ...run, ...at, status: 'interrupted' }).note).toMatch(/^The run was interrupted before its end: /)
    expect(exportChoice({ ...run, ...at, status: 'failed' }).note).toMatch(/^The run failed before its end: /)
    expect(exportChoice({ ...run, status: 'running', step: 3, lastCheckpoint: null })).toMatchObject({ final: false, label: null })
  })

  it('offers a completed run’s export as the final model', () => {
    expect(exportChoice({ ...run, status: 'completed', step: 60, lastCheckpoint: '/ws/runs/r/checkpoints/step-60' })).toEqual({
      final: true,
      label: null,
      button: 'Export',
      placeholder: 'capitals (fine-tuned)',
      note: null,
    })
    // A run given no name: its id without the time it starts with.
    const unnamed = { ...run, id: '2026-12-04T23-20-18-run-c9cb6d', name: undefined, status: 'completed' as const, step: 60 }
    expect(exportChoice(unnamed).placeholder).toBe('run-c9cb6d (fine-tuned)')
  })
})

describe('redoneSteps', () => {
  it('says which steps a resume trains again where the metrics go past the last checkpoint', () => {
    const ckpt = '/ws/runs/r/checkpoints/step-200'
    expect(redoneSteps({ status: 'interrupted', lastCheckpoint: ckpt }, 279)).toBe(
      'Stopped at step 279, after its last checkpoint (step 200): resuming trains steps 201-279 again.',
    )
    expect(redoneSteps({ status: 'failed', lastCheckpoint: ckpt }, 201)).toBe(
      'Stopped at step 201, after its last checkpoint (step 200): resuming trains step 201 again.',
    )
    expect(redoneSteps({ status: 'interrupted', lastCheckpoint: null }, 14)).toBe(
      'Stopped at step 14, before its first checkpoint: resuming trains steps 1-14 again, from the base model.',
    )
    // Nothing to redo: a cancel writes its checkpoint at the step it stops; no metrics; not resumable.
    expect(redoneSteps({ status: 'cancelled', lastCheckpoint: ckpt }, 200)).toBeNull()
    expect(redoneSteps({ status: 'interrupted', lastCheckpoint: ckpt }, undefined)).toBeNull()
    expect(redoneSteps({ status: 'completed', lastCheckpoint: ckpt }, 279)).toBeNull()
    expect(redoneSteps({ status: 'running', lastCheckpoint: ckpt }, 279)).toBeNull()
  })
})

describe('resumeButton', () => {
  it('resumes a run stopped before its first checkpoint (from the base model, saying so), busy while another action runs', () => {
    const early = { status: 'interrupted' as const, lastCheckpoint: null }
    expect(resumeButton(early, false)).toEqual({
      shown: true,
      disabled: false,
      title: 'No checkpoint was written: resuming starts it again from the base model',
    })
    expect(resumeButton({ status: 'cancelled', lastCheckpoint: '/ws/runs/r/checkpoints/step-200' }, false)).toEqual({
      shown: true,
      disabled: false,
      title: 'Continue from its last checkpoint (step 200)',
    })
    expect(resumeButton(early, true).disabled).toBe(true)
    expect(resumeButton({ status: 'completed', lastCheckpoint: null }, false).shown).toBe(false)
    expect(resumeButton({ status: 'running', lastCheckpoint: null }, false).shown).toBe(false)
  })
})

describe('checkpointOptions and an earlier checkpoint', () => {
  const dir = (s: number) => `/ws/runs/r/checkpoints/step-${s}`
  const kept = [20, 200, 300].map((step) => ({ step, dir: dir(step) }))
  it('lists the checkpoints newest first, the last and the best validation loss marked (only the last could be exported)', () => {
    const evals = [
      { step: 10, valLoss: 0.5 }, // lower, but not kept
      { step: 20, valLoss: 1.2346 },
      { step: 200, valLoss: 2 },
      { step: 300, valLoss: 3 },
    ]
    expect(checkpointOptions(kept, dir(300), evals)).toEqual([
      { step: 300, dir: dir(300), label: 'step 300 (last)', best: false },
      { step: 200, dir: dir(200), label: 'step 200', best: false },
      { step: 20, dir: dir(20), label: 'step 20 (best validation loss 1.235)', best: true },
    ])
    // A live run's newest checkpoint (its record's) before the list is read again; no evals: none marked
    expect(checkpointOptions(kept, dir(310), []).map((o) => o.label)).toEqual(['step 310 (last)', 'step 300', 'step 200', 'step 20'])
    // Validated at one kept checkpoint only (the end): best of nothing, none marked (an earlier one may be better).
    expect(
      checkpointOptions(kept, dir(300), [
        { step: 10, valLoss: 0.5 },
        { step: 300, valLoss: 3 },
      ]).some((o) => o.best),
    ).toBe(false)
    expect(
      checkpointOptions(kept, dir(300), [
        { step: 200, valLoss: NaN },
        { step: 300, valLoss: 3 },
      ]).some((o) => o.best),
    ).toBe(false)
    expect(checkpointOptions([], null, [])).toEqual([])
  })
  it('marks the one evaluated kept checkpoint best where it scored lowest of all the evaluations (a cancelled run)', () => {
    // Cancelled at step 121: kept 121 (the stop), 120 (a new best) and 90 (the checkpoint
    // interval); the earlier evaluations' checkpoints were pruned as the run went on.
    const keptAtStop = [90, 120, 121].map((step) => ({ step, dir: dir(step) }))
    const evals = [
      { step: 60, valLoss: 1.2986 },
      { step: 100, valLoss: 1.3211 },
      { step: 120, valLoss: 1.2899 },
    ]
    expect(checkpointOptions(keptAtStop, dir(121), evals).map((o) => o.label)).toEqual([
      'step 121 (last)',
      'step 120 (best validation loss 1.290)',
      'step 90',
    ])
    // An earlier evaluation scored lower: the kept one is best of nothing.
    expect(checkpointOptions(keptAtStop, dir(121), [...evals, { step: 40, valLoss: 1.1 }]).some((o) => o.best)).toBe(false)
    // Two evaluations, the kept one the lower: marked.
    expect(checkpointOptions(keptAtStop, dir(121), evals.slice(1)).find((o) => o.best)?.step).toBe(120)
    // No kept checkpoint was evaluated: none marked.
    expect(checkpointOptions(keptAtStop, dir(121), evals.slice(0, 2)).some((o) => o.best)).toBe(false)
  })
  it('marks the lowest of two or more evaluated kept checkpoints, wherever it is in the list, the earlier of a tie', () => {
    const best = (evals: { step: number; valLoss: number }[]) => checkpointOptions(kept, dir(300), evals).find((o) => o.best)?.step
    expect(
      best([
        { step: 10, valLoss: 0.5 },
        { step: 200, valLoss: 2 },
        { step: 300, valLoss: 3 },
      ]),
    ).toBe(200) // two kept compared
    expect(
      best([
        { step: 20, valLoss: 3 },
        { step: 200, valLoss: 2 },
        { step: 300, valLoss: 2.5 },
      ]),
    ).toBe(200)
    expect(
      best([
        { step: 20, valLoss: 2 },
        { step: 200, valLoss: 2 },
      ]),
    ).toBe(20)
  })
  it('names an earlier checkpoint of a completed run as a checkpoint, not the final model', () => {
    const run = { ...runRecord, name: 'capitals', totalSteps: 300, status: 'completed' as const, step: 300, lastCheckpoint: dir(300) }
    expect(exportChoice(run, 20)).toEqual({
      final: false,
      label: 'checkpoint step 20 of 300',
      button: 'Export checkpoint step 20 of 300',
      placeholder: 'capitals (checkpoint step 20 of 300)',
      note: "Step 20 is not the run's last checkpoint (step 300): this exports its checkpoint step 20 of 300, not a final model; the name says so.",
    })
    expect(exportChoice(run, 300)).toMatchObject({ final: true, placeholder: 'capitals (fine-tuned)' })
    expect(exportChoice(run, null)).toMatchObject({ final: true })
    expect(exportChoice({ ...run, status: 'cancelled', step: 85, lastCheckpoint: dir(85) }, 20).note).toMatch(
      /^Step 20 is not the run's last checkpoint \(step 85\): /,
    )
  })
})

describe('runExports', () => {
  it('lists the models exported from the run, newest first, with the checkpoint step each was written from', () => {
    const m = (name: string, provenance?: Record<string, unknown>) => ({ name, dir: `/ws/models/${name}`, provenance })
    const entries = [
      m('older', { fromRun: 'r1', exported: '2026-12-01T10:00:00.000Z', checkpoint: { step: 30 } }),
      m('other run', { fromRun: 'r2', exported: '2026-12-03T10:00:00.000Z', checkpoint: { step: 60 } }),
      m('bundled'),
      m('newer', { fromRun: 'r1', exported: '2026-12-02T10:00:00.000Z', checkpoint: { step: 60 } }),
      m('no step', { fromRun: 'r1' }),
    ]
    expect(runExports(entries, 'r1')).toEqual([
      { name: 'newer', dir: '/ws/models/newer', step: 60, exported: '2026-12-02T10:00:00.000Z' },
      { name: 'older', dir: '/ws/models/older', step: 30, exported: '2026-12-01T10:00:00.000Z' },
      { name: 'no step', dir: '/ws/models/no step', step: null, exported: '' },
    ])
    expect(runExports(entries, 'r3')).toEqual([])
  })
})

describe('useRunsStore', () => {
  it('deletes a run: it leaves the list and the open page; a refusal is thrown for the caller to show, the run kept', async () => {
    const runs = useRunsStore()
    await runs.refresh()
    await runs.open('run-1')
    fake.bridge.runs.delete.mockRejectedValueOnce(new ApiError('failed', 'run run-1 is running; cancel it first, then delete it'))
    await expect(runs.remove('run-1')).rejects.toMatchObject({ message: 'run run-1 is running; cancel it first, then delete it' })
    expect(runs.runs.map((r) => r.id)).toEqual(['run-1'])
    expect(runs.openId).toBe('run-1')
    await runs.remove('run-1')
    expect(fake.bridge.runs.delete).toHaveBeenLastCalledWith({ id: 'run-1' })
    expect(runs.runs).toEqual([])
    expect(runs.openId).toBeNull()
    expect(runs.record).toBeNull()
  })

  it('opens a run with its metrics, then appends live steps in place', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    expect(runs.steps).toHaveLength(2)
    expect(runs.routing).toHaveLength(2)
    const series = runs.steps
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(3) })
    // The same array grows (charts append instead of redrawing everything).
    expect(runs.steps).toBe(series)
    expect(runs.steps.map((s) => s.step)).toEqual([1, 2, 3])
    expect(runs.latest?.step).toBe(3)
    expect(runs.latestRouting?.layers[0].share).toEqual([0.4, 0.3, 0.2, 0.1])
    expect(runs.progress).toMatchObject({ step: 3, total: 10, fraction: 0.3, etaSec: 7 })
    // The list follows too.
    expect(runs.runs[0].step).toBe(3)
    // A repeated or older step is ignored.
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(2) })
    expect(runs.steps).toHaveLength(3)
  })

  it('lists a run followed live its checkpoints as they come, and those kept once it ends (only the last was offered)', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    expect(runs.checkpoints).toEqual([])
    const dir = (s: number) => `/ws/runs/run-1/checkpoints/step-${s}`
    for (const step of [5, 10]) fake.emit({ type: 'run.checkpoint', runId: 'run-1', step, dir: dir(step) })
    fake.emit({ type: 'run.checkpoint', runId: 'run-1', step: 10, dir: dir(10) }) // told twice: listed once
    fake.emit({ type: 'run.checkpoint', runId: 'other', step: 3, dir: '/ws/runs/other/checkpoints/step-3' })
    expect(runs.checkpoints).toEqual([
      { step: 5, dir: dir(5) },
      { step: 10, dir: dir(10) },
    ])
    // Ended: read again (the run pruned step 5 meanwhile)
    vi.mocked(fake.bridge.runs.get).mockResolvedValueOnce({ ...runDetail(), checkpoints: [{ step: 10, dir: dir(10) }] })
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'completed', step: 10 })
    await flush()
    expect(runs.checkpoints).toEqual([{ step: 10, dir: dir(10) }])
  })

  it('reads the list and the open run again when the connection is back (the steps sent meanwhile were missed)', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    const [lists, gets] = [fake.bridge.runs.list.mock.calls.length, fake.bridge.runs.get.mock.calls.length]
    fake.emit({ type: 'connection', connected: false })
    expect(fake.bridge.runs.list).toHaveBeenCalledTimes(lists)
    fake.emit({ type: 'connection', connected: true })
    expect(fake.bridge.runs.list).toHaveBeenCalledTimes(lists + 1)
    expect(fake.bridge.runs.get).toHaveBeenCalledTimes(gets + 1)
    expect(fake.bridge.runs.get).toHaveBeenLastCalledWith({ id: 'run-1' })
  })

  it("shows a reopened run's log from its detail, then the live lines after it", async () => {
    const runs = useRunsStore()
    runs.listen()
    fake.bridge.runs.get.mockResolvedValueOnce({ ...runDetail(), log: ['tokenising 36 rows', 'starting: 10 steps'] })
    await runs.open('run-1')
    expect(runs.logLines).toEqual(['tokenising 36 rows', 'starting: 10 steps'])
    fake.emit({ type: 'run.log', runId: 'run-1', line: 'eval at step 2' })
    expect(runs.logLines.at(-1)).toBe('eval at step 2')
  })

  it('re-reads a run another process trains (no events come for it) until it stops', async () => {
    vi.useFakeTimers()
    try {
      const runs = useRunsStore()
      runs.listen()
      let step = 2
      let elsewhere = true
      fake.bridge.runs.get.mockImplementation(async ({ id }: { id: string }) => ({
        ...runDetail({ ...runRecord, id, status: elsewhere ? 'running' : 'interrupted', step }, step),
        ...(elsewhere && { trainedElsewhere: 'moe-workbench train (pid 42 on box)' }),
      }))
      await runs.open('run-1')
      expect(runs.trainedElsewhere).toBe('moe-workbench train (pid 42 on box)')
      expect(runs.steps).toHaveLength(2)
      step = 5
      await vi.advanceTimersByTimeAsync(FOLLOW_MS)
      expect(runs.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5])
      expect(runs.runs.find((r) => r.id === 'run-1')?.step).toBe(5) // the list (and the status bar) follow
      step = 6
      elsewhere = false // stopped there
      await vi.advanceTimersByTimeAsync(FOLLOW_MS)
      expect(runs.record?.status).toBe('interrupted')
      expect(runs.trainedElsewhere).toBeNull()
      const reads = fake.bridge.runs.get.mock.calls.length
      await vi.advanceTimersByTimeAsync(5 * FOLLOW_MS)
      expect(fake.bridge.runs.get).toHaveBeenCalledTimes(reads)
      // A run of this service's own engine is never re-read: its events keep it current.
      await runs.open('run-1')
      await vi.advanceTimersByTimeAsync(5 * FOLLOW_MS)
      expect(fake.bridge.runs.get).toHaveBeenCalledTimes(reads + 1)
    } finally {
      vi.useRealTimers()
    }
  })

  it('keeps events that arrive while the run is loading and applies the new ones after', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    let answer: () => void = () => undefined
    fake.bridge.runs.get.mockImplementationOnce(() => new Promise((resolve) => (answer = () => resolve(runDetail(runRecord, 2)))))
    const opening = runs.open('run-1')
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(2) }) // already in the detail
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(3) })
    fake.emit({
      type: 'run.eval',
      runId: 'run-1',
      metrics: { step: 3, valLoss: 2.5, valAux: 0.02, valZ: 0.001, valDroppedFraction: 0, valTokens: 100 },
    })
    answer()
    await opening
    expect(runs.steps.map((s) => s.step)).toEqual([1, 2, 3])
    expect(runs.evals.map((e) => e.valLoss)).toEqual([2.5])
    expect(runs.record?.bestValLoss).toBe(2.5)
  })

  it('follows status, checkpoints, alerts and log lines of the open run', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    fake.emit({ type: 'run.checkpoint', runId: 'run-1', step: 2, dir: '/ws/runs/run-1/checkpoints/step-2' })
    expect(runs.record?.lastCheckpoint).toMatch(/step-2$/)
    const alert = {
      type: 'run.alert' as const,
      runId: 'run-1',
      step: 5,
      layer: 1,
      expert: 3,
      kind: 'dead' as const,
      message: 'expert 3 is dead',
    }
    fake.emit(alert)
    fake.emit(alert)
    expect(runs.alerts).toEqual([{ step: 5, layer: 1, expert: 3, kind: 'dead', message: 'expert 3 is dead' }])
    fake.emit({ type: 'run.log', runId: 'run-1', line: 'step 5' })
    expect(runs.logLines).toEqual(['step 5'])
    expect(runs.evaluation).toBeNull()
    const report = (exactMatch: number) => ({
      model: 'm',
      split: 'train' as const,
      n: 1,
      skipped: 0,
      exactMatch,
      f1: exactMatch,
      loss: 1,
      seconds: 1,
      items: [],
    })
    const evaluation = {
      checkpoint: '/ws/runs/run-1/checkpoints/step-2',
      step: 2,
      date: 'now',
      splits: [{ split: 'train' as const, before: report(0), after: report(1) }],
    }
    fake.emit({ type: 'run.evaluated', runId: 'other', evaluation })
    expect(runs.evaluation).toBeNull()
    fake.emit({ type: 'run.evaluated', runId: 'run-1', evaluation })
    expect(runs.evaluation?.splits[0].after.exactMatch).toBe(1)
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'failed', step: 5, message: 'out of memory' })
    expect(runs.record).toMatchObject({ status: 'failed', message: 'out of memory' })
    expect(runs.runs[0].status).toBe('failed')
    expect(isActive(runs.runs[0])).toBe(false)
    expect(canResume(runs.runs[0])).toBe(true)
  })

  it('redoes the steps after the checkpoint a resumed run went back to', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    for (let s = 3; s <= 6; s++) fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(s) })
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'cancelled', step: 6 })
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'running', step: 4 })
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(5, { loss: 9 }) })
    expect(runs.steps.map((s) => [s.step, s.loss === 9])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, false],
      [5, true],
    ])
    expect(runs.routing.at(-1)?.step).toBe(5)
    // Only right after a resume: otherwise an old step is a duplicate.
    fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(3) })
    expect(runs.steps).toHaveLength(5)
  })

  it('bounds the routing history', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    for (let s = 3; s < ROUTING_KEEP + 50; s++) fake.emit({ type: 'run.step', runId: 'run-1', metrics: stepMetrics(s) })
    expect(runs.routing).toHaveLength(ROUTING_KEEP)
    expect(runs.routing.at(-1)?.step).toBe(ROUTING_KEEP + 49)
  })

  it('does not mix in the metrics of other runs, and fetches the list for runs it does not know', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    fake.emit({ type: 'run.step', runId: 'elsewhere', metrics: stepMetrics(9) })
    expect(runs.steps).toHaveLength(2)
    await flush()
    expect(fake.bridge.runs.list).toHaveBeenCalledTimes(2)
  })

  it('starts a run and lists it, or keeps the refusal with its field', async () => {
    const runs = useRunsStore()
    const record = await runs.start({ model: '/m', dataset: 'd', config: { maxSteps: 5 }, name: 'mine' })
    expect(record).toMatchObject({ id: 'run-2', status: 'queued', name: 'mine' })
    expect(runs.runs[0].id).toBe('run-2')
    fake.bridge.runs.start.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'runs.start: config.optimizer.lr: must be positive', 'config.optimizer.lr'),
    )
    expect(await runs.start({ model: '/m', dataset: 'd' })).toBeNull()
    expect(runs.startError).toMatchObject({ field: 'config.optimizer.lr' })
  })

  it('cancels, resumes and exports, marking the run busy meanwhile and throwing what went wrong', async () => {
    const runs = useRunsStore()
    await runs.refresh()
    const cancelling = runs.cancel('run-1')
    expect(runs.busy['run-1']).toBe('cancel')
    await cancelling
    expect(runs.busy['run-1']).toBeUndefined()
    expect(runs.runs[0].status).toBe('cancelled')
    await runs.resume('run-1')
    expect(runs.runs[0].status).toBe('running')
    const entry = await runs.exportRun('run-1', { name: 'tuned', dtype: 'bfloat16' })
    expect(fake.bridge.runs.export).toHaveBeenCalledWith({ id: 'run-1', name: 'tuned', dtype: 'bfloat16', taskId: expect.any(String) })
    expect(entry.name).toBe('tuned')
    fake.bridge.runs.resume.mockRejectedValueOnce(new ApiError('failed', 'run-1 has no checkpoint to resume from'))
    await expect(runs.resume('run-1')).rejects.toMatchObject({ message: 'run-1 has no checkpoint to resume from', code: 'failed' })
    expect(runs.busy).toEqual({})
  })

  it('scores a checkpoint of a run as a task, on its split and rows; a refusal comes back as a UiError', async () => {
    const runs = useRunsStore()
    const tasks = useTasksStore()
    const report = {
      model: 'run run-1, step-20',
      split: 'validation',
      n: 3,
      skipped: 0,
      exactMatch: 2 / 3,
      f1: 0.8,
      loss: 0.5,
      seconds: 1,
      items: [],
    }
    let seen: string[] = []
    fake.bridge.eval.run.mockImplementationOnce(async () => {
      seen = tasks.of('eval.run', 'run-1').map((t) => t.title) // shown while it runs
      return report as never
    })
    const ckpt = '/ws/runs/run-1/checkpoints/step-20'
    await runs.open('run-1')
    // The service keeps each score with the run: the card lists them as the run folder has them.
    const kept = { date: '2026-12-04T10:00:00.000Z', step: 20, checkpoint: ckpt, dataset: 'd', report }
    fake.bridge.runs.get.mockResolvedValueOnce({ ...runDetail(), scores: [kept] } as never)
    await expect(runs.scoreCheckpoint('run-1', ckpt, 'validation', 7)).resolves.toEqual(report)
    expect(runs.scores).toEqual([kept])
    // Where the folder does not read just then, the answer is listed all the same.
    fake.bridge.eval.run.mockResolvedValueOnce(report as never)
    fake.bridge.runs.get.mockRejectedValueOnce(new ApiError('failed', 'server away'))
    await runs.scoreCheckpoint('run-1', ckpt, 'train', 7)
    expect(runs.scores.map((x) => [x.step, x.checkpoint, x.report])).toEqual([
      [20, ckpt, report],
      [20, ckpt, report],
    ])
    runs.close()
    expect(runs.scores).toEqual([])
    expect(fake.bridge.eval.run).toHaveBeenCalledWith({
      run: 'run-1',
      checkpoint: ckpt,
      split: 'validation',
      limit: 7,
      taskId: expect.any(String),
    })
    expect(seen).toEqual(['Scoring step-20 of run-1'])
    expect(tasks.of('eval.run')).toEqual([])
    fake.bridge.eval.run.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'checkpoint: /x is not a checkpoint of run run-1', 'checkpoint'),
    )
    await expect(runs.scoreCheckpoint('run-1', '/x', 'train', 7)).rejects.toMatchObject({ code: 'invalid_argument', field: 'checkpoint' })
  })

  it('shows the checkpoint a cancel wrote, though the cancel’s answer was read before it was', async () => {
    const runs = useRunsStore()
    runs.listen()
    await runs.refresh()
    await runs.open('run-1')
    const ckpt = (step: number) => `/ws/runs/run-1/checkpoints/step-${step}`
    fake.emit({ type: 'run.checkpoint', runId: 'run-1', step: 30, dir: ckpt(30) })
    let answer: (r: RunRecord) => void = () => undefined
    // (The fake's type says a cancel answers "cancelled"; this one answers with an older record.)
    fake.bridge.runs.cancel.mockImplementationOnce(() => new Promise((resolve) => (answer = (r) => resolve(r as never))))
    const cancelling = runs.cancel('run-1')
    // The event stream is faster than the answer: the cancel's checkpoint, then the status it ends in.
    fake.emit({ type: 'run.checkpoint', runId: 'run-1', step: 43, dir: ckpt(43) })
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'cancelled', step: 43, message: 'cancelled at step 43' })
    // The answer: run.json as it was when the service read it, before the engine stopped.
    answer({ ...runRecord, status: 'running', step: 43, totalSteps: 60, lastCheckpoint: ckpt(30) })
    await cancelling
    for (const r of [runs.record, runs.runs.find((x) => x.id === 'run-1')])
      expect(r).toMatchObject({ status: 'cancelled', step: 43, totalSteps: 60, lastCheckpoint: ckpt(43), message: 'cancelled at step 43' })
    // Later events apply as usual.
    fake.emit({ type: 'run.status', runId: 'run-1', status: 'running', step: 43 })
    expect(runs.record?.status).toBe('running')
  })

  it('loads runs to compare', async () => {
    const runs = useRunsStore()
    await runs.compare(['a', 'b'])
    expect(runs.compareRuns.map((d) => d.record.id)).toEqual(['a', 'b'])
    fake.bridge.runs.get.mockRejectedValueOnce(new ApiError('failed', 'no run "c"'))
    await runs.compare(['c'])
    expect(runs.compareRuns).toEqual([])
    expect(runs.compareError?.message).toBe('no run "c"')
  })
})

describe('configDifferences', () => {
  it('lists only what differs, the model and dataset by name, strings without JSON quotes', () => {
    const a = {
      record: {
        ...runRecord,
        baseModel: '/ws/models/switchy-feb28c',
        dataset: 'arith-1',
        config: { ...runRecord.config, method: 'lora' as const },
      },
    }
    const b = {
      record: {
        ...runRecord,
        baseModel: '/ws/models/hashy-0a1b2c',
        dataset: 'arith-1',
        config: { ...runRecord.config, method: 'full' as const },
      },
    }
    const names = { model: (dir: string) => (dir.includes('switchy') ? 'switchy' : 'hashy'), dataset: () => 'sample arithmetic' }
    expect(configDifferences([a, b], names)).toEqual([
      { key: 'model', values: ['switchy', 'hashy'] },
      { key: 'method', values: ['lora', 'full'] },
    ])
    const c = {
      record: {
        ...b.record,
        dataset: 'reversal-2',
        config: { ...b.record.config, optimizer: { ...b.record.config.optimizer, lr: 0.003 } },
      },
    }
    expect(configDifferences([b, c], { ...names, dataset: (id) => (id === 'arith-1' ? 'sample arithmetic' : 'word reversal') })).toEqual([
      { key: 'dataset', values: ['sample arithmetic', 'word reversal'] },
      { key: 'optimizer.lr', values: [String(b.record.config.optimizer.lr), '0.003'] },
    ])
    // A setting left empty says what that means, not "null".
    const d = (moe: object, maxSteps: number | null, budgetBytes: number | null, trainableLayers: number | null) => ({
      record: {
        ...b.record,
        config: {
          ...b.record.config,
          maxSteps,
          moe: { ...b.record.config.moe, ...moe },
          offload: { ...b.record.config.offload, budgetBytes },
          freeze: { ...b.record.config.freeze, trainableLayers },
        },
      },
    })
    expect(
      configDifferences([d({ capacityFactorTrain: null }, null, null, null), d({ capacityFactorTrain: 1 }, 40, 1024, 2)], names),
    ).toEqual([
      { key: 'freeze.trainableLayers', values: ['all', '2'] },
      { key: 'maxSteps', values: ['from epochs', '40'] },
      { key: 'moe.capacityFactorTrain', values: ["the model's own", '1'] },
      { key: 'offload.budgetBytes', values: ["the backend's default", '1024'] },
    ])
  })
})
