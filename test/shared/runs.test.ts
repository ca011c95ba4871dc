/** How runs read in lists: steps done of the total, and imported adapters as imported. */
import { describe, expect, it } from 'vitest'
import { isActive, stepsText } from '../../src/shared/runs'

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
