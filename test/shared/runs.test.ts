/** How runs read in lists: steps done of the total, and imported adapters as imported. */
import { describe, expect, it } from 'vitest'
import { groupAlerts, isActive, stepsText, type ExpertAlert } from '../../src/shared/runs'

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

  it('keeps a message that does not name its expert whole, naming the expert before it', () => {
    const odd: ExpertAlert = { step: 5, layer: 0, expert: 1, kind: 'dead', message: 'no tokens at all' }
    expect(groupAlerts([odd]).map((g) => g.text)).toEqual(['layer 0 expert 1 no tokens at all'])
    expect(groupAlerts([])).toEqual([])
  })
})
