import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { parseHash, toHash, useNavStore } from '../../../src/renderer/src/stores/nav'

beforeEach(() => setActivePinia(createPinia()))

describe('nav', () => {
  it('reads and writes the screen and its parameters in the hash', () => {
    expect(parseHash('#/train?run=abc&x=1')).toEqual({ view: 'train', params: { run: 'abc', x: '1' } })
    expect(parseHash('')).toEqual({ view: 'home', params: {} })
    expect(parseHash('#/nowhere')).toEqual({ view: 'home', params: {} })
    expect(toHash('chat', { model: '/m/a b' })).toBe('#/chat?model=%2Fm%2Fa+b')
    expect(parseHash(toHash('chat', { model: '/m/a b' }))).toEqual({ view: 'chat', params: { model: '/m/a b' } })
  })

  it('follows the address and stops following it', () => {
    const listeners = new Map<string, () => void>()
    const win = {
      location: { hash: '#/datasets' },
      addEventListener: vi.fn((type: string, fn: () => void) => listeners.set(type, fn)),
      removeEventListener: vi.fn((type: string) => listeners.delete(type)),
    }
    const nav = useNavStore()
    const stop = nav.syncWithLocation(win as unknown as Window)
    expect(nav.view).toBe('datasets')
    win.location.hash = '#/experts?model=x'
    listeners.get('popstate')?.()
    expect(nav.view).toBe('experts')
    expect(nav.params).toEqual({ model: 'x' })
    stop()
    expect(listeners.size).toBe(0)
  })

  it('goes to a screen (without a window in tests)', () => {
    const nav = useNavStore()
    nav.go('train', { run: 'r1' })
    expect(nav.view).toBe('train')
    expect(nav.params).toEqual({ run: 'r1' })
  })
})
