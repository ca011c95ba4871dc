import { describe, expect, it } from 'vitest'
import { formatDuration, formatMetric, parseBytes, visibleToken } from '../../src/renderer/src/format'

describe('format', () => {
  it('reads sizes the way people type them', () => {
    expect(parseBytes('8 GiB')).toBe(8 * 1024 ** 3)
    expect(parseBytes('512MB')).toBe(512e6)
    expect(parseBytes('1.5g')).toBe(1.5 * 1024 ** 3)
    expect(parseBytes('4096')).toBe(4096)
    expect(parseBytes('lots')).toBeNull()
    expect(parseBytes('0 MB')).toBeNull()
    expect(parseBytes('3 parsecs')).toBeNull()
  })

  it('writes durations and metrics compactly', () => {
    expect(formatDuration(9)).toBe('9 s')
    expect(formatDuration(75)).toBe('1 min 15 s')
    expect(formatDuration(3725)).toBe('1 h 2 min')
    expect(formatDuration(-1)).toBe('–')
    expect(formatMetric(2.34567)).toBe('2.346')
    expect(formatMetric(0.000123)).toBe('1.23e-4')
    expect(formatMetric(null)).toBe('–')
  })

  it('makes whitespace tokens visible', () => {
    expect(visibleToken(' the')).toBe('·the')
    expect(visibleToken('\n\t')).toBe('↵→')
    expect(visibleToken('')).toBe('∅')
  })
})
