import { describe, expect, it, vi } from 'vitest'

const electron = vi.hoisted(() => ({ openExternal: vi.fn(async () => {}) }))
vi.mock('electron', () => ({ shell: { openExternal: electron.openExternal }, BrowserWindow: vi.fn() }))

import { restrictNavigation, windowPreferences } from '../../../../src/main/hosts/electron/window'

function fakeWindow() {
  const listeners = new Map<string, (event: { url: string; preventDefault(): void }) => void>()
  let openHandler: ((details: { url: string }) => { action: string }) | undefined
  const permission = {
    handler: undefined as undefined | ((wc: unknown, p: string, cb: (ok: boolean) => void) => void),
    check: undefined as undefined | ((wc: unknown, p: string) => boolean),
  }
  const webContents = {
    setWindowOpenHandler: (h: typeof openHandler) => (openHandler = h),
    on: (name: string, l: (event: { url: string; preventDefault(): void }) => void) => listeners.set(name, l),
    session: {
      setPermissionRequestHandler: (h: typeof permission.handler) => (permission.handler = h),
      setPermissionCheckHandler: (h: typeof permission.check) => (permission.check = h),
    },
  }
  return {
    win: { webContents } as never,
    open: (url: string) => openHandler!({ url }),
    navigate: (name: string, url: string) => {
      const event = { url, preventDefault: vi.fn() }
      listeners.get(name)!(event)
      return event.preventDefault.mock.calls.length > 0
    },
    permission,
  }
}

describe('restrictNavigation', () => {
  const location = { kind: 'app', dir: '/app/out/renderer', url: 'app://workbench/index.html' } as const

  it('denies every new window; links to the allowed hosts go to the browser, others nowhere', () => {
    const w = fakeWindow()
    const log = vi.fn()
    restrictNavigation(w.win, location, log)
    expect(w.open('https://huggingface.co/docs')).toEqual({ action: 'deny' })
    expect(electron.openExternal).toHaveBeenCalledWith('https://huggingface.co/docs')
    expect(w.open('file:///etc/passwd')).toEqual({ action: 'deny' })
    expect(log).toHaveBeenCalledWith(expect.stringContaining('file:///etc/passwd'))
    expect(w.open('https://evil.example/')).toEqual({ action: 'deny' })
    expect(electron.openExternal).not.toHaveBeenCalledWith('https://evil.example/')
  })

  it('keeps navigation and redirects inside the app', () => {
    const w = fakeWindow()
    restrictNavigation(w.win, location, () => {})
    expect(w.navigate('will-navigate', 'app://workbench/index.html#/runs')).toBe(false)
    expect(w.navigate('will-navigate', 'file:///app/out/renderer/index.html')).toBe(true)
    expect(w.navigate('will-navigate', 'https://evil.example/')).toBe(true)
    expect(w.navigate('will-redirect', 'http://127.0.0.1:8080/')).toBe(true)
  })

  it('grants no permission', () => {
    const w = fakeWindow()
    restrictNavigation(w.win, location, () => {})
    const cb = vi.fn()
    w.permission.handler!(undefined, 'media', cb)
    expect(cb).toHaveBeenCalledWith(false)
    expect(w.permission.check!(undefined, 'clipboard-read')).toBe(false)
  })

  it('locks the window down, DevTools only in development', () => {
    const prod = windowPreferences('/p.cjs', false)
    expect(prod).toMatchObject({ contextIsolation: true, sandbox: true, nodeIntegration: false, webviewTag: false, devTools: false })
    expect(windowPreferences('/p.cjs', true).devTools).toBe(true)
  })
})
