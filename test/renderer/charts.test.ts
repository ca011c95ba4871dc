/** The chart helpers' axes: a caller's settings added to the theme's, its label colour kept. */
import { describe, expect, it } from 'vitest'
import { categoryAxis, chartColours, niceCeil, valueAxis } from '../../src/renderer/src/charts/echarts'

describe('axes', () => {
  it("keep the theme's label colour beside a caller's label settings (a formatter, hidden overlaps)", () => {
    const muted = chartColours().muted
    const formatter = (v: number): string => `${v}%`
    expect(valueAxis({ axisLabel: { formatter } }).axisLabel).toEqual({ color: muted, formatter })
    expect(valueAxis({ axisLabel: { hideOverlap: true }, name: 'step' })).toMatchObject({
      name: 'step',
      axisLabel: { color: muted, hideOverlap: true },
    })
    expect(valueAxis().axisLabel).toEqual({ color: muted })
    expect(categoryAxis(['a'], { axisLabel: { rotate: 30 } }).axisLabel).toEqual({ color: muted, rotate: 30 })
  })
})

describe('niceCeil', () => {
  it('tops an axis at the next round number, so a reference line above the bars (ln 8) shows', () => {
    expect(niceCeil(Math.log(8))).toBe(2.5)
    expect(niceCeil(Math.log(16))).toBe(3)
    expect(niceCeil(2)).toBe(2)
    expect(niceCeil(0.125)).toBe(0.15)
    expect(niceCeil(0.07)).toBe(0.08)
    expect(niceCeil(9)).toBe(10)
    expect(niceCeil(1.1)).toBe(1.2)
    expect(niceCeil(0)).toBe(1)
    expect(niceCeil(NaN)).toBe(1)
  })
})
