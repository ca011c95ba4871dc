import { describe, expect, it, vi } from 'vitest'
import { ApiError, type WorkbenchEvent } from '../../../src/shared/api'
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

  /** A WebSocket stand-in: the test opens, closes and counts its instances. */
  function socketKind() {
    const made: { url: string; onopen?: () => void; onclose?: () => void; closed: boolean }[] = []
    class Socket {
      onopen?: () => void
      onclose?: () => void
      onmessage?: () => void
      closed = false
      constructor(readonly url: string) {
        made.push(this)
      }
      close(): void {
        this.closed = true
      }
    }
    return { made, Socket: Socket as unknown as typeof WebSocket }
  }
  const refusedBody = () =>
    new Response(JSON.stringify({ error: { code: 'unauthorized', message: 'a valid token is required' } }), { status: 401 })

  it('asks nothing of the server and opens no event stream without a token, and says how to get the link', async () => {
    const fetch = vi.fn(async () => new Response('{}'))
    const { made, Socket } = socketKind()
    const onUnauthorized = vi.fn()
    const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: undefined, fetch, WebSocket: Socket, onUnauthorized })
    bridge.onEvent(() => undefined)
    const error = await bridge.system.info().catch((e: unknown) => e)
    expect(error).toMatchObject({ code: 'unauthorized' })
    expect((error as Error).message).toBe(
      'This page was opened without its access token. Open the link that “moe-workbench serve” printed when it started: http://127.0.0.1:5000/?token=… If the server was restarted, it printed a new one (started with MOE_WORKBENCH_TOKEN or --token, it keeps the one given); if the link is lost, stop the server and start it again.',
    )
    await expect(bridge.runs.list()).rejects.toMatchObject({ code: 'unauthorized' })
    expect(fetch).not.toHaveBeenCalled()
    expect(made).toHaveLength(0)
    expect(onUnauthorized).toHaveBeenCalledTimes(1)
  })

  it('stops the event stream for good once the server refuses the token, and asks nothing more', async () => {
    vi.useFakeTimers()
    try {
      const fetch = vi.fn(async () => refusedBody())
      const { made, Socket } = socketKind()
      const onUnauthorized = vi.fn()
      const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 'stale', fetch, WebSocket: Socket, onUnauthorized })
      bridge.onEvent(() => undefined)
      expect(made).toHaveLength(1)
      // The handshake is refused; the browser says only that the socket closed.
      made[0].onclose?.()
      await vi.advanceTimersByTimeAsync(60_000)
      expect(made).toHaveLength(1)
      expect(fetch).toHaveBeenCalledTimes(1) // the check that told a refused token from a server away
      await expect(bridge.models.list()).rejects.toMatchObject({
        code: 'unauthorized',
        message: expect.stringMatching(/^This page's access token is not the server's\. Open the link/),
      })
      expect(fetch).toHaveBeenCalledTimes(1)
      expect(onUnauthorized).toHaveBeenCalledTimes(1)
    } finally {
      vi.useRealTimers()
    }
  })

  it('a refused request closes an open event stream', async () => {
    const fetch = vi.fn(async () => refusedBody())
    const { made, Socket } = socketKind()
    const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 'stale', fetch, WebSocket: Socket })
    bridge.onEvent(() => undefined)
    made[0].onopen?.()
    await expect(bridge.system.info()).rejects.toMatchObject({ code: 'unauthorized' })
    expect(made[0].closed).toBe(true)
    made[0].onclose?.()
    expect(made).toHaveLength(1)
  })

  it('tells listeners once when the server goes away and once when it is back, and a refused token after a restart', async () => {
    vi.useFakeTimers()
    try {
      let up = false
      const fetch = vi.fn(async (): Promise<Response> => {
        if (!up) throw new TypeError('Failed to fetch')
        return refusedBody() // back, but restarted: a new token
      })
      const { made, Socket } = socketKind()
      const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 't', fetch, WebSocket: Socket })
      const heard: WorkbenchEvent[] = []
      bridge.onEvent((e) => heard.push(e))
      made[0].onopen?.()
      expect(heard).toEqual([]) // a first open is no news
      made[0].onclose?.() // the server stopped
      expect(heard).toEqual([{ type: 'connection', connected: false }])
      await vi.advanceTimersByTimeAsync(600)
      made[1].onclose?.() // still away: retried, not told again
      await vi.advanceTimersByTimeAsync(1100)
      expect(made).toHaveLength(3)
      made[2].onopen?.() // back
      expect(heard).toEqual([
        { type: 'connection', connected: false },
        { type: 'connection', connected: true },
      ])
      made[2].onclose?.()
      up = true
      await vi.advanceTimersByTimeAsync(600)
      made[3].onclose?.() // the handshake is refused: the check finds the token is not the server's
      await vi.advanceTimersByTimeAsync(60_000)
      expect(heard.slice(2)).toEqual([
        { type: 'connection', connected: false },
        { type: 'connection', connected: false, refused: expect.stringMatching(/^This page's access token is not the server's/) },
      ])
      expect(made).toHaveLength(4)
    } finally {
      vi.useRealTimers()
    }
  })

  it('keeps retrying the event stream, with backoff, while the server is away', async () => {
    vi.useFakeTimers()
    try {
      const fetch = vi.fn(async (): Promise<Response> => {
        throw new TypeError('Failed to fetch')
      })
      const { made, Socket } = socketKind()
      const bridge = httpBridge({ origin: 'http://127.0.0.1:5000', token: 't', fetch, WebSocket: Socket })
      bridge.onEvent(() => undefined)
      made[0].onclose?.()
      await vi.advanceTimersByTimeAsync(600)
      expect(made).toHaveLength(2)
      made[1].onopen?.()
      made[1].onclose?.() // a stream that was open drops: retried without a check
      await vi.advanceTimersByTimeAsync(600)
      expect(made).toHaveLength(3)
      expect(fetch).toHaveBeenCalledTimes(1)
    } finally {
      vi.useRealTimers()
    }
  })
})
