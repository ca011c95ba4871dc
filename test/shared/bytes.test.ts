import { describe, expect, it } from 'vitest'
import { formatBudget, formatNeed } from '../../src/shared/bytes'
import { formatOffloadStats } from '../../src/main/cli/commands'
import type { OffloadStats } from '../../src/shared/chat'

describe('formatBudget and formatNeed: sizes in messages about budgets', () => {
  it('a budget rounds down and a need rounds up, at each unit', () => {
    expect(formatBudget(3e6)).toBe('2.8 MiB') // 2.86
    expect(formatNeed(3e6)).toBe('2.9 MiB')
    expect(formatBudget(8e9)).toBe('7.45 GiB') // 7.4506
    expect(formatNeed(8e9)).toBe('7.46 GiB')
    expect(formatBudget(1500)).toBe('1.4 KiB') // 1.46
    expect(formatNeed(1500)).toBe('1.5 KiB')
    expect(formatBudget(1000.6)).toBe('1000 B')
    expect(formatNeed(1000.2)).toBe('1001 B')
    // exact sizes stay exact (no 1.1 MiB for 1 MiB by a rounding error)
    expect(formatNeed(2 ** 20)).toBe('1.0 MiB')
    expect(formatBudget(2 ** 30)).toBe('1.00 GiB')
  })

  it("the paging statistics show the budget as the planner's messages do (3 MB: 2.8 MiB in both)", () => {
    const stats = { budgetBytes: 3e6, cacheBytes: 0, residentBytes: 0, peakBytes: 0, bytesMoved: 0, bytesRead: 0, layers: [] }
    expect(formatOffloadStats(stats as unknown as OffloadStats)[0]).toMatch(/^paging: budget 2\.8 MiB; /)
  })
})
