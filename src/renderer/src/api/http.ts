/**
 * The API over HTTP + WebSocket, for the browser in server mode: POST /api/<method> for
 * requests, one WebSocket on /events for the event stream (opened while anyone listens,
 * reconnected with backoff). The token travels in the Authorization header, and in the query
 * for the WebSocket (browsers cannot set its headers).
 */
import { ApiError, type Unsubscribe, type WorkbenchEvent } from '../../../shared/api'
import { type Invoke, type WorkbenchBridge, createBridge } from '../../../shared/bridge'

export interface HttpOptions {
  /** `http://127.0.0.1:PORT` */
  origin: string
  token: string | undefined
  fetch?: typeof fetch
  WebSocket?: typeof WebSocket
}

export function httpBridge(options: HttpOptions): WorkbenchBridge {
  const doFetch = options.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a))
  const invoke: Invoke = async (method, args) => {
    const headers: Record<string, string> = {}
    if (options.token) headers.Authorization = `Bearer ${options.token}`
    if (args !== undefined) headers['Content-Type'] = 'application/json'
    let res: Response
    try {
      res = await doFetch(`${options.origin}/api/${method}`, {
        method: 'POST',
        headers,
        ...(args === undefined ? {} : { body: JSON.stringify(args) }),
      })
    } catch (e) {
      throw new ApiError('failed', `cannot reach the workbench server at ${options.origin} (${e instanceof Error ? e.message : String(e)})`)
    }
    let body: unknown
    try {
      body = await res.json()
    } catch {
      throw new ApiError('failed', `${method}: the server answered HTTP ${res.status} without JSON`)
    }
    const payload = (body ?? {}) as { result?: unknown; error?: unknown }
    if (res.ok && 'result' in payload) return payload.result as never
    if (payload.error !== undefined) throw ApiError.from(payload.error)
    throw new ApiError('failed', `${method}: unexpected HTTP ${res.status}`)
  }
  const events = new EventSocket(eventsUrl(options.origin, options.token), options.WebSocket ?? WebSocket)
  return createBridge(invoke, (listener) => events.subscribe(listener))
}

function eventsUrl(origin: string, token: string | undefined): string {
  const url = new URL('/events', origin)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  if (token) url.searchParams.set('token', token)
  return url.href
}

/** One shared WebSocket for every listener; closed when the last one leaves. */
class EventSocket {
  private readonly listeners = new Set<(event: WorkbenchEvent) => void>()
  private socket: WebSocket | undefined
  private retry: ReturnType<typeof setTimeout> | undefined
  private delayMs = 500

  constructor(
    private readonly url: string,
    private readonly Socket: typeof WebSocket,
  ) {}

  subscribe(listener: (event: WorkbenchEvent) => void): Unsubscribe {
    this.listeners.add(listener)
    if (!this.socket && !this.retry) this.open()
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) this.shutdown()
    }
  }

  private open(): void {
    const ws = new this.Socket(this.url)
    this.socket = ws
    ws.onopen = () => (this.delayMs = 500)
    ws.onmessage = (message) => {
      let event: WorkbenchEvent
      try {
        event = JSON.parse(String(message.data)) as WorkbenchEvent
      } catch {
        return
      }
      for (const listener of this.listeners) listener(event)
    }
    ws.onclose = () => {
      if (this.socket !== ws) return
      this.socket = undefined
      if (this.listeners.size === 0) return
      // The server restarted or the network blinked: try again, backing off up to 10 s.
      this.retry = setTimeout(() => {
        this.retry = undefined
        if (this.listeners.size > 0) this.open()
      }, this.delayMs)
      this.delayMs = Math.min(this.delayMs * 2, 10_000)
    }
  }

  private shutdown(): void {
    if (this.retry) clearTimeout(this.retry)
    this.retry = undefined
    const ws = this.socket
    this.socket = undefined
    ws?.close(1000)
  }
}
