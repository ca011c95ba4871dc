/**
 * ECharts, only the parts the workbench draws with (line, bar and heatmap charts on a cartesian
 * grid, tooltips, legends, a visual map and mark lines), on the canvas renderer: a fraction of the
 * full bundle.
 */
import { BarChart, HeatmapChart, LineChart } from 'echarts/charts'
import type { BarSeriesOption, HeatmapSeriesOption, LineSeriesOption } from 'echarts/charts'
import { GridComponent, LegendComponent, MarkLineComponent, TooltipComponent, VisualMapComponent } from 'echarts/components'
import type {
  GridComponentOption,
  LegendComponentOption,
  MarkLineComponentOption,
  TooltipComponentOption,
  VisualMapComponentOption,
} from 'echarts/components'
import { type ComposeOption, init, use } from 'echarts/core'
import { CanvasRenderer } from 'echarts/renderers'

use([
  LineChart,
  BarChart,
  HeatmapChart,
  GridComponent,
  TooltipComponent,
  LegendComponent,
  VisualMapComponent,
  MarkLineComponent,
  CanvasRenderer,
])

export type ChartOption = ComposeOption<
  | LineSeriesOption
  | BarSeriesOption
  | HeatmapSeriesOption
  | GridComponentOption
  | TooltipComponentOption
  | LegendComponentOption
  | VisualMapComponentOption
  | MarkLineComponentOption
>

export { init }

/** The page's colours (light or dark), read from the CSS variables of main.css. */
export function chartColours(): {
  text: string
  muted: string
  faint: string
  border: string
  accent: string
  danger: string
  surface: string
} {
  const style = typeof document === 'undefined' ? null : getComputedStyle(document.documentElement)
  const v = (name: string, fallback: string): string => style?.getPropertyValue(name).trim() || fallback
  return {
    text: v('--text', '#1d2330'),
    muted: v('--text-muted', '#5d6677'),
    faint: v('--text-faint', '#a3aab8'),
    border: v('--border', '#e3e6eb'),
    accent: v('--accent', '#3b5bdb'),
    danger: v('--danger', '#d6336c'),
    surface: v('--surface', '#ffffff'),
  }
}

/** What every chart shares: fonts, colours, a compact grid, an axis tooltip. */
export function baseOption(): ChartOption {
  const c = chartColours()
  return {
    animation: false,
    textStyle: { color: c.muted, fontFamily: 'system-ui, sans-serif', fontSize: 11 },
    grid: { left: 48, right: 16, top: 28, bottom: 28, containLabel: false },
    tooltip: {
      trigger: 'axis',
      confine: true,
      backgroundColor: c.surface,
      borderColor: c.border,
      textStyle: { color: c.text, fontSize: 12 },
    },
  }
}

export function valueAxis(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const c = chartColours()
  return {
    type: 'value',
    axisLine: { lineStyle: { color: c.border } },
    splitLine: { lineStyle: { color: c.border } },
    nameTextStyle: { color: c.muted },
    scale: true,
    ...extra,
    // A caller's label settings (a formatter) keep the theme's colour.
    axisLabel: { color: c.muted, ...(extra.axisLabel as object | undefined) },
  }
}

/** The smallest "round" number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × a power of ten) at or above x > 0: an axis top. */
export function niceCeil(x: number): number {
  if (!(x > 0) || !Number.isFinite(x)) return 1
  const mag = 10 ** Math.floor(Math.log10(x))
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8]) if (m * mag >= x * (1 - 1e-12)) return Number((m * mag).toPrecision(12))
  return 10 * mag
}

export function categoryAxis(data: (string | number)[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const c = chartColours()
  return {
    type: 'category',
    data,
    axisLine: { lineStyle: { color: c.border } },
    axisTick: { show: false },
    nameTextStyle: { color: c.muted },
    ...extra,
    axisLabel: { color: c.muted, ...(extra.axisLabel as object | undefined) },
  }
}

/** A stable colour per expert index (golden-angle hues), shared by charts and token colouring. */
export function expertHue(expert: number): number {
  return Math.round((expert * 137.508 + 210) % 360)
}

export function expertColour(expert: number, alpha = 1): string {
  return alpha === 1 ? `hsl(${expertHue(expert)} 62% 50%)` : `hsl(${expertHue(expert)} 62% 50% / ${alpha})`
}

/** A sequential blue ramp for shares (0 → 1) and a diverging one for differences. */
export const SHARE_RAMP = ['#f1f4ff', '#b9c6ff', '#7b93f5', '#3b5bdb', '#1b2f8a']
export const DIVERGING_RAMP = ['#c2255c', '#f783ac', '#f1f3f5', '#74c0fc', '#1864ab']
