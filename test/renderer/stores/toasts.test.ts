import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { useToastsStore } from '../../../src/renderer/src/stores/toasts'

beforeEach(() => {
  setActivePinia(createPinia())
  vi.useFakeTimers()
})
afterEach(() => vi.useRealTimers())

describe('useToastsStore', () => {
  it('keeps errors with what to do until dismissed, and lets other notices go', () => {
    const toasts = useToastsStore()
    const id = toasts.error('Could not cancel the run', { message: 'the engine stopped', code: 'engine_unavailable' })
    toasts.success('Exported tuned')
    expect(toasts.toasts).toHaveLength(2)
    expect(toasts.toasts[0].hint).toMatch(/restarts on the next request/)
    vi.advanceTimersByTime(10_000)
    expect(toasts.toasts.map((t) => t.kind)).toEqual(['error'])
    toasts.dismiss(id)
    expect(toasts.toasts).toEqual([])
  })

  it('keeps a caution (warn) until dismissed, through a change of screen, as errors', () => {
    const toasts = useToastsStore()
    toasts.push({ kind: 'warn', title: 'Outside MoE Workbench', message: 'routes by hash' })
    toasts.push({ kind: 'info', title: 'Export cancelled', message: 'Nothing was written.' })
    vi.advanceTimersByTime(10_000)
    toasts.dismissTransient()
    expect(toasts.toasts.map((t) => t.kind)).toEqual(['warn'])
  })

  it('shows at most five', () => {
    const toasts = useToastsStore()
    for (let i = 0; i < 8; i++) toasts.error(`e${i}`, { message: 'x' })
    expect(toasts.toasts.map((t) => t.title)).toEqual(['e3', 'e4', 'e5', 'e6', 'e7'])
  })

  it('drops the notices that would leave by themselves on a change of screen, keeping errors', () => {
    const toasts = useToastsStore()
    toasts.success('Exported m', '/ws/models/m')
    toasts.error('Could not export', { message: 'disk full', code: 'failed' })
    toasts.push({ kind: 'info', title: 'Export cancelled', message: 'Nothing was written.' })
    toasts.dismissTransient()
    expect(toasts.toasts.map((t) => t.title)).toEqual(['Could not export'])
  })
})
