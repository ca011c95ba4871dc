/** How runs read in lists: steps done of the total, and imported adapters as imported. */
import { describe, expect, it } from 'vitest'
import {
  evaluationText,
  runName,
  groupAlerts,
  isActive,
  stepsText,
  statusLine,
  STATUS_LABELS,
  type EvalReport,
  type ExpertAlert,
} from '../../src/shared/runs'

describe('stepsText', () => {
  it('reads steps of the total, "?" while the total is unknown', () => {
    expect(stepsText({ step: 120, totalSteps: 300 })).toBe('120/300')
    expect(stepsText({ step: 0, totalSteps: 0 })).toBe('0/?')
  })

  it('reads an imported adapter as imported, with the steps its trainer saved where it saved them', () => {
    expect(stepsText({ step: 1200, totalSteps: 1200, importedFrom: '/x/adapter' })).toBe('imported · 1200 steps')
    expect(stepsText({ step: 0, totalSteps: 0, importedFrom: '/x/adapter' })).toBe('imported')
  })
})

describe('runName', () => {
  it("is the run's name, or its id without the time it starts with", () => {
    expect(runName({ id: '2026-12-04T23-20-18-run-c9cb6d', name: 'capitals' })).toBe('capitals')
    expect(runName({ id: '2026-12-04T23-20-18-run-c9cb6d' })).toBe('run-c9cb6d')
    expect(runName({ id: '2026-12-04T23-20-18-my-run-0a1b2c' })).toBe('my-run-0a1b2c')
    // not a time, or nothing after it: the id as it is
    expect(runName({ id: 'capitals-run' })).toBe('capitals-run')
    expect(runName({ id: 'v2-2026-12-04T23-20-18-x' })).toBe('v2-2026-12-04T23-20-18-x')
    expect(runName({ id: '2026-12-04T23-20-18-' })).toBe('2026-12-04T23-20-18-')
  })
})

describe('isActive', () => {
  it('is true while a run waits or trains, false once it stopped', () => {
    expect(['queued', 'created', 'running'].every((status) => isActive({ status: status as never }))).toBe(true)
    expect(['completed', 'failed', 'cancelled', 'interrupted'].some((status) => isActive({ status: status as never }))).toBe(false)
  })
})

describe('groupAlerts', () => {
  const dead = (step: number, layer: number, expert: number): ExpertAlert => ({
    step,
    layer,
    expert,
    kind: 'dead',
    message: `layer ${layer} expert ${expert} took under 1.0% of tokens for 20 steps: raise moe.auxLossCoef`,
  })

  it("tells a step's experts of one kind once, by layer, in the order they came", () => {
    const collapse: ExpertAlert = { step: 20, layer: 2, expert: 0, kind: 'collapse', message: 'layer 2 expert 0 took over 90% of tokens' }
    expect(groupAlerts([dead(20, 1, 2), dead(20, 1, 3), collapse, dead(20, 3, 5), dead(40, 1, 4)])).toEqual([
      {
        step: 20,
        kind: 'dead',
        count: 3,
        text: 'layer 1 experts 2, 3; layer 3 expert 5 took under 1.0% of tokens for 20 steps: raise moe.auxLossCoef',
      },
      { step: 20, kind: 'collapse', count: 1, text: 'layer 2 expert 0 took over 90% of tokens' },
      { step: 40, kind: 'dead', count: 1, text: 'layer 1 expert 4 took under 1.0% of tokens for 20 steps: raise moe.auxLossCoef' },
    ])
  })

  it('says where the experts of an alert stand at the latest routing step: back in the band, or still out', () => {
    const share = (layer: number, values: Record<number, number>) => ({
      layer,
      share: Array.from({ length: 8 }, (_, e) => values[e] ?? 0.125),
      entropy: 1,
    })
    const latest = { step: 300, layers: [share(0, { 2: 0.057 }), share(1, { 4: 0.002, 5: 0.0 })] }
    const [recovered, still, mixed] = groupAlerts([dead(59, 0, 2), dead(60, 1, 4), dead(80, 1, 4), dead(80, 0, 2)], latest)
    expect(recovered).toMatchObject({ now: 'at step 300: 5.7%, back in the band', recovered: true })
    // Recovered, it gives no advice; still out of the band, it does.
    expect(recovered.text).toBe('layer 0 expert 2 took under 1.0% of tokens for 20 steps')
    expect(still).toMatchObject({ now: 'at step 300: 0.2%, still out of the band', recovered: false })
    expect(still.text).toMatch(/: raise moe.auxLossCoef$/)
    expect(mixed).toMatchObject({
      now: 'at step 300: layer 1 expert 4 0.2%, layer 0 expert 2 5.7%, 1 of 2 back in the band',
      recovered: false,
    })
    const collapse: ExpertAlert = { step: 20, layer: 0, expert: 3, kind: 'collapse', message: 'layer 0 expert 3 took over 90% of tokens' }
    expect(groupAlerts([collapse], { step: 40, layers: [share(0, { 3: 0.95 })] })[0].now).toBe('at step 40: 95.0%, still out of the band')
    expect(
      groupAlerts([collapse], { step: 40, layers: [share(0, { 3: 0.95 })] }, { deadShare: 0.01, collapseShare: 0.97 })[0].recovered,
    ).toBe(true)
    // nothing later than the alert, or no such layer: nothing said
    expect(groupAlerts([dead(300, 0, 2)], latest)[0].now).toBeUndefined()
    expect(groupAlerts([dead(20, 7, 2)], latest)[0].now).toBeUndefined()
    expect(groupAlerts([dead(20, 0, 2)], null)[0].now).toBeUndefined()
  })

  it('keeps a message that does not name its expert whole, naming the expert before it', () => {
    const odd: ExpertAlert = { step: 5, layer: 0, expert: 1, kind: 'dead', message: 'no tokens at all' }
    expect(groupAlerts([odd]).map((g) => g.text)).toEqual(['layer 0 expert 1 no tokens at all'])
    expect(groupAlerts([])).toEqual([])
  })
})

describe('evaluationText', () => {
  const report = (n: number, exactMatch: number, f1: number): EvalReport => ({ n, exactMatch, f1 }) as EvalReport
  it('reads base → tuned, with the rows in the right number ("1 rows" read wrong)', () => {
    expect(evaluationText({ split: 'validation', before: report(20, 0, 0.1), after: report(20, 1, 1) })).toBe(
      'exact match 0% → 100%, F1 0.10 → 1.00 (20 rows)',
    )
    expect(evaluationText({ split: 'train', before: report(1, 0, 0), after: report(1, 0, 0.5) })).toBe(
      'exact match 0% → 0%, F1 0.00 → 0.50 (1 row)',
    )
  })
})

describe('statusLine: a run status and why, in the words of the app', () => {
  it('a stop by the Stop button reads "stopped"; the status is said once; none without a message', () => {
    expect(statusLine({ status: 'cancelled', message: 'stopped at step 40' })).toBe('stopped at step 40')
    expect(statusLine({ status: 'cancelled', message: 'tokenising dataset d was cancelled' })).toBe(
      'stopped: tokenising dataset d was cancelled',
    )
    // records written before the Stop wording keep their message as it was
    expect(statusLine({ status: 'cancelled', message: 'cancelled at step 3' })).toBe('cancelled at step 3')
    expect(statusLine({ status: 'completed', message: 'completed 400 steps' })).toBe('completed 400 steps')
    expect(statusLine({ status: 'failed', message: 'out of memory' })).toBe('failed: out of memory')
    expect(statusLine({ status: 'interrupted', message: null })).toBe('interrupted')
    expect(statusLine({ status: 'running' })).toBe('running')
    expect(STATUS_LABELS.cancelled).toBe('stopped')
  })
})
