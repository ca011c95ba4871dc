import { describe, expect, it, vi } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { httpBridge } from '../../../src/renderer/src/api/http'
import { takeToken, withApiErrors } from '../../../src/renderer/src/api/transport'
import { fakeBridge } from '../fakeBridge'

function fakeWindow(href: string, stored: Record<string, string> = {}) {
  const storage = new Map(Object.entries(stored))
  const win = {
    location: new URL(href),
    sessionStorage: { getItem: (k: string) => storage.get(k) ?? null, setItem: (k: string, v: string) => void storage.set(k, v) },
    history: { state: null, replaceState: vi.fn((_s: unknown, _t: string, url: string) => (win.location = new URL(url, win.location))) },
  }
  return win
}

describe('takeToken', () => {
  it('takes the token from the URL, keeps it for the tab and removes it from the address bar', () => {
    const win = fakeWindow('http://127.0.0.1:5000/?token=abc#/models')
    expect(takeToken(win as never)).toBe('abc')
    expect(win.location.href).toBe('http://127.0.0.1:5000/#/models')
    // After a reload, without the query:
    expect(takeToken(win as never)).toBe('abc')
  })

  it('has no token when neither the URL nor the tab has one', () => {
    expect(takeToken(fakeWindow('http://127.0.0.1:5000/') as never)).toBeUndefined()
  })
})

describe('withApiErrors', () => {
  it('turns the preload’s plain error objects back into ApiErrors', async () => {
    const { bridge } = fakeBridge()
    bridge.models.inspect.mockRejectedValueOnce({
      name: 'ApiError',
      code: 'invalid_argument',
      message: 'models.inspect: dir: bad',
      field: 'dir',
    })
    const wrapped = withApiErrors(bridge)
    const error = await wrapped.models.inspect('x').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(ApiError)
    expect(error).toMatchObject({ code: 'invalid_argument', field: 'dir' })
    expect((await wrapped.system.info()).host).toBe('server')
  })
})

describe('httpBridge', () => {
  const noSocket = vi.fn() as unknown as typeof WebSocket

  it('POSTs JSON with the bearer token and unwraps the result', async () => {
    const fetch = vi.fn(async () => new Response(JSON.stringify({ result: { dir: '/m' } }), { status: 200 }))
    const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 't0k', fetch, WebSocket: noSocket })
    expect(await bridge.models.inspect('/m')).toEqual({ dir: '/m' })
    expect(fetch).toHaveBeenCalledWith('http://127.0.0.1:5000/api/models.inspect', {
      method: 'POST',
      headers: { Authorization: 'Bearer t0k', 'Content-Type': 'application/json' },
      body: '{"dir":"/m"}',
    })
    await bridge.system.info()
    expect(fetch).toHaveBeenLastCalledWith('http://127.0.0.1:5000/api/system.info', {
      method: 'POST',
      headers: { Authorization: 'Bearer t0k' },
    })
  })

  it('rejects with the server’s ApiError, or a clear one when the server is unreachable', async () => {
    const fetch = vi.fn(
      async () =>
        new Response(JSON.stringify({ error: { code: 'invalid_argument', message: 'models.inspect: dir: bad', field: 'dir' } }), {
          status: 400,
        }),
    )
    const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 't', fetch, WebSocket: noSocket })
    await expect(bridge.models.inspect('')).rejects.toMatchObject({ code: 'invalid_argument', field: 'dir' })
    fetch.mockRejectedValueOnce(new TypeError('Failed to fetch'))
    await expect(bridge.models.inspect('')).rejects.toMatchObject({ message: expect.stringContaining('cannot reach the workbench server') })
  })
})
