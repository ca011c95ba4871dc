/** The chart helpers' axes: a caller's settings added to the theme's, its label colour kept. */
import { describe, expect, it } from 'vitest'
import { categoryAxis, chartColours, valueAxis } from '../../src/renderer/src/charts/echarts'

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
