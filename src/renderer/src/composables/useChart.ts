/**
 * An ECharts instance bound to an element for a component's lifetime: created on mount, resized
 * with its box, disposed on unmount. `schedule` coalesces updates (live metrics arrive many times
 * a second; the chart redraws at most every `throttleMs`).
 */
import { type Ref, onBeforeUnmount, onMounted, shallowRef } from 'vue'
import type { EChartsType } from 'echarts/core'
import { type ChartOption, init } from '../charts/echarts'

export interface ChartHandle {
  chart: Readonly<Ref<EChartsType | null>>
  /** setOption now (merging unless `replace`). */
  set(option: ChartOption, replace?: boolean): void
  /** Runs `update` soon, once per throttle window however often it is asked. */
  schedule(update: () => void): void
}

export function useChart(el: Ref<HTMLElement | null>, options: { throttleMs?: number; onReady?: () => void } = {}): ChartHandle {
  const chart = shallowRef<EChartsType | null>(null)
  const throttleMs = options.throttleMs ?? 250
  let observer: ResizeObserver | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  let queued: (() => void) | undefined
  let last = 0

  onMounted(() => {
    if (!el.value) return
    chart.value = init(el.value, undefined, { renderer: 'canvas' })
    observer = new ResizeObserver(() => chart.value?.resize())
    observer.observe(el.value)
    options.onReady?.()
    if (queued) flush()
  })

  onBeforeUnmount(() => {
    if (timer) clearTimeout(timer)
    timer = undefined
    queued = undefined
    observer?.disconnect()
    chart.value?.dispose()
    chart.value = null
  })

  function flush(): void {
    timer = undefined
    const update = queued
    queued = undefined
    if (!update || !chart.value) {
      queued = update
      return
    }
    last = Date.now()
    update()
  }

  function schedule(update: () => void): void {
    queued = update
    if (timer || !chart.value) return
    const wait = Math.max(0, last + throttleMs - Date.now())
    timer = setTimeout(flush, wait)
  }

  function set(option: ChartOption, replace = false): void {
    chart.value?.setOption(option, replace ? { notMerge: true } : { lazyUpdate: true })
  }

  return { chart, set, schedule }
}
