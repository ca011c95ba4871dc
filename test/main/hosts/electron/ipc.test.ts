import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { METHODS, type Envelope, type ModelInfo } from '../../../../src/shared/api'

// electron is mocked the way electron/fiddle's tests/setup.ts does: only what ipc.ts touches.
const electron = vi.hoisted(() => ({
  handlers: new Map<string, (event: unknown, ...args: unknown[]) => Promise<unknown>>(),
}))
vi.mock('electron', () => ({
  ipcMain: {
    handle: vi.fn((channel: string, fn: (event: unknown, ...args: unknown[]) => Promise<unknown>) => {
      if (electron.handlers.has(channel)) throw new Error(`second handler for ${channel}`)
      electron.handlers.set(channel, fn)
    }),
    removeHandler: vi.fn((channel: string) => electron.handlers.delete(channel)),
  },
}))

import { EngineClient } from '../../../../src/main/service/engineClient'
import { Workbench } from '../../../../src/main/service/workbench'
import { isTrustedSender, registerApi, type SenderPolicy } from '../../../../src/main/hosts/electron/ipc'
import { IPC_EVENT_CHANNEL } from '../../../../src/shared/ipc'
import { fakeSpawner } from '../../service/fakeEngine'

const APP_DIR = '/opt/moe-workbench/out/renderer'
const APP_URL = 'app://workbench/index.html'

function fakeWindow() {
  const webContents = { send: vi.fn(), isDestroyed: () => false }
  return { webContents, isDestroyed: vi.fn(() => false) }
}

type FakeWindow = ReturnType<typeof fakeWindow>

function eventFrom(sender: unknown, frame: { url: string; parent: unknown } | null = { url: APP_URL, parent: null }) {
  return { sender, senderFrame: frame, frameId: 1, processId: 1, type: 'frame' }
}

function invoke(channel: string, event: unknown, args: unknown): Promise<unknown> {
  const handler = electron.handlers.get(channel)
  if (!handler) throw new Error(`no handler for ${channel}`)
  return handler(event, args)
}

let win: FakeWindow
let policy: SenderPolicy
let workbench: Workbench
let children: ReturnType<typeof fakeSpawner>['children']
let unregister: () => void

beforeEach(() => {
  win = fakeWindow()
  policy = { window: () => win as never, location: { kind: 'app', dir: APP_DIR, url: APP_URL } }
  const fake = fakeSpawner()
  children = fake.children
  workbench = new Workbench({ engine: new EngineClient(fake.spawner), host: 'electron' })
  unregister = registerApi(workbench, policy)
})

afterEach(async () => {
  unregister()
  await workbench.close()
})

describe('Electron IPC host', () => {
  it('registers one channel per API method and removes them all', () => {
    expect([...electron.handlers.keys()].sort()).toEqual(METHODS.map((m) => `workbench:${m}`).sort())
    unregister()
    expect(electron.handlers.size).toBe(0)
    unregister = () => {}
  })

  it('answers the app window with an Envelope', async () => {
    const result = (await invoke('workbench:models.inspect', eventFrom(win.webContents), { dir: '/models/tiny' })) as Envelope<ModelInfo>
    expect(result).toMatchObject({ ok: true, value: { dir: '/models/tiny', family: 'mixtral' } })
  })

  it('rejects a bad payload naming the field, before the engine sees it', async () => {
    const result = await invoke('workbench:models.inspect', eventFrom(win.webContents), { dir: 7 })
    expect(result).toEqual({
      ok: false,
      error: { code: 'invalid_argument', field: 'dir', message: 'models.inspect: dir: must be a string, not a number' },
    })
    expect(children).toHaveLength(0)
  })

  it.each([
    ['another webContents', () => eventFrom({ send: vi.fn() })],
    ['a subframe of the app window', () => eventFrom(win.webContents, { url: APP_URL, parent: {} })],
    ['the app window showing a foreign page', () => eventFrom(win.webContents, { url: 'https://evil.example/', parent: null })],
    ['another local file', () => eventFrom(win.webContents, { url: 'file:///tmp/evil.html', parent: null })],
    [
      'the renderer as a file',
      () => eventFrom(win.webContents, { url: 'file:///opt/moe-workbench/out/renderer/index.html', parent: null }),
    ],
    ['a frame that navigated away (senderFrame null)', () => eventFrom(win.webContents, null)],
  ])('refuses %s', async (_what, makeEvent) => {
    await expect(invoke('workbench:system.info', makeEvent(), undefined)).rejects.toThrow(/not the app's window/)
    expect(children).toHaveLength(0)
  })

  it('refuses everything once the window is gone', async () => {
    win.isDestroyed.mockReturnValue(true)
    await expect(invoke('workbench:system.info', eventFrom(win.webContents), undefined)).rejects.toThrow(/not the app's window/)
  })

  it('forwards service events to the window', () => {
    workbench.log('info', 'hello from the service')
    expect(win.webContents.send).toHaveBeenCalledWith(
      IPC_EVENT_CHANNEL,
      expect.objectContaining({ type: 'log', message: 'hello from the service' }),
    )
  })
})

describe('isTrustedSender in development', () => {
  it('trusts the Vite dev server origin only', () => {
    const w = fakeWindow()
    const dev: SenderPolicy = { window: () => w as never, location: { kind: 'dev', url: 'http://localhost:5173' } }
    const ok = eventFrom(w.webContents, { url: 'http://localhost:5173/#/runs', parent: null })
    const bad = eventFrom(w.webContents, { url: 'http://localhost:5174/', parent: null })
    expect(isTrustedSender(ok as never, dev)).toBe(true)
    expect(isTrustedSender(bad as never, dev)).toBe(false)
  })
})
