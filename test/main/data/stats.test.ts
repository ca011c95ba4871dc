/** Length statistics as the dataset report shows them. */
import { describe, expect, it } from 'vitest'
import { LengthAccumulator } from '../../../src/main/data/stats'

const summary = (lengths: number[]) => {
  const acc = new LengthAccumulator()
  for (const l of lengths) acc.add(l)
  return acc.summary()
}

describe('LengthAccumulator', () => {
  it('gives the median of an even count as the mean of the middle two (rows of 6 and 10 read "median 6")', () => {
    expect(summary([10, 6])).toMatchObject({ count: 2, min: 6, median: 8, p95: 10, max: 10, mean: 8 })
    expect(summary([1, 2, 3, 100])).toMatchObject({ median: 2.5, p95: 100 })
  })

  it('gives the middle value of an odd count, and nearest-rank 95th percentiles', () => {
    expect(summary([5, 1, 9])).toMatchObject({ median: 5, min: 1, max: 9 })
    expect(summary(Array.from({ length: 100 }, (_, i) => i + 1))).toMatchObject({ median: 50.5, p95: 95 })
    expect(summary([])).toEqual({ count: 0, min: 0, median: 0, p95: 0, max: 0, mean: 0, histogram: [] })
    // past its first allocation, every length still counts
    expect(summary(Array.from({ length: 5000 }, (_, i) => 4999 - i))).toMatchObject({
      count: 5000,
      min: 0,
      median: 2499.5,
      p95: 4749,
      max: 4999,
    })
  })
})
