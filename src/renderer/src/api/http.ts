/**
 * The API over HTTP + WebSocket, for the browser in server mode: POST /api/<method> for
 * requests, one WebSocket on /events for the event stream (opened while anyone listens,
 * reconnected with backoff). The token travels in the Authorization header, and in the query
 * for the WebSocket (browsers cannot set its headers).
 *
 * Without a valid token nothing can work: a page opened without one asks for nothing, and the
 * first request the server refuses (401) ends the event stream and every later request at once,
 * with the one error saying how to get the link (onUnauthorized hears it once).
 */
import { ApiError, type Unsubscribe, type WorkbenchEvent } from '../../../shared/api'
import { type Invoke, type WorkbenchBridge, createBridge } from '../../../shared/bridge'

export interface HttpOptions {
  /** `http://127.0.0.1:PORT` */
  origin: string
  token: string | undefined
  fetch?: typeof fetch
  WebSocket?: typeof WebSocket
  /** Called once, when the page turns out to have no valid token. */
  onUnauthorized?: (error: ApiError) => void
}

/** What to do without a valid token: the page's link is printed by `moe-workbench serve`. */
export function tokenHelp(origin: string): string {
  return `Open the link that “moe-workbench serve” printed when it started: ${origin}/?token=… If the server was restarted, it printed a new one (started with MOE_WORKBENCH_TOKEN or --token, it keeps the one given); if the link is lost, stop the server and start it again.`
}

export function httpBridge(options: HttpOptions): WorkbenchBridge {
  const doFetch = options.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a))
  /** Set once the page has no valid token: nothing is asked of the server after that. */
  let refused: ApiError | undefined =
    options.token === undefined
      ? new ApiError('unauthorized', `This page was opened without its access token. ${tokenHelp(options.origin)}`)
      : undefined
  let told = false
  const unauthorized = (error: ApiError): ApiError => {
    refused ??= error
    if (!told) {
      told = true
      events.refuse(refused.message)
      options.onUnauthorized?.(refused)
    }
    events.shutdown()
    return refused
  }
  const invoke: Invoke = async (method, args) => {
    if (refused) throw unauthorized(refused)
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
    if (payload.error !== undefined) {
      const error = ApiError.from(payload.error)
      if (error.code === 'unauthorized')
        throw unauthorized(new ApiError('unauthorized', `This page's access token is not the server's. ${tokenHelp(options.origin)}`))
      throw error
    }
    throw new ApiError('failed', `${method}: unexpected HTTP ${res.status}`)
  }
  const events = new EventSocket(eventsUrl(options.origin, options.token), options.WebSocket ?? WebSocket, {
    allowed: () => refused === undefined,
    // A browser does not say why a WebSocket handshake failed: a cheap request tells a refused
    // token (then no more retries) from a server that is away (retry with backoff).
    check: () =>
      invoke('system.info', undefined).then(
        () => true,
        (e: unknown) => !(e instanceof ApiError && e.code === 'unauthorized'),
      ),
  })
  return createBridge(invoke, (listener) => events.subscribe(listener))
}

function eventsUrl(origin: string, token: string | undefined): string {
  const url = new URL('/events', origin)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  if (token) url.searchParams.set('token', token)
  return url.href
}

interface SocketPolicy {
  /** Whether the stream may be opened at all (false once the token is known to be refused). */
  allowed(): boolean
  /** After a handshake that failed: whether to try again (false: the token was refused). */
  check(): Promise<boolean>
}

/** One shared WebSocket for every listener; closed when the last one leaves. */
class EventSocket {
  private readonly listeners = new Set<(event: WorkbenchEvent) => void>()
  private socket: WebSocket | undefined
  private retry: ReturnType<typeof setTimeout> | undefined
  private delayMs = 500
  /** The stream dropped and has not reopened yet (listeners were told). */
  private lost = false

  constructor(
    private readonly url: string,
    private readonly Socket: typeof WebSocket,
    private readonly policy: SocketPolicy,
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
    if (!this.policy.allowed()) return
    const ws = new this.Socket(this.url)
    let opened = false
    this.socket = ws
    ws.onopen = () => {
      opened = true
      this.delayMs = 500
      if (this.lost) {
        this.lost = false
        this.emit({ type: 'connection', connected: true })
      }
    }
    ws.onmessage = (message) => {
      let event: WorkbenchEvent
      try {
        event = JSON.parse(String(message.data)) as WorkbenchEvent
      } catch {
        return
      }
      this.emit(event)
    }
    ws.onclose = () => {
      if (this.socket !== ws) return
      this.socket = undefined
      if (this.listeners.size === 0 || !this.policy.allowed()) return
      // Listeners hear of a server that is away once (not of a refused token: that is its own error).
      const away = (): void => {
        if (this.lost || this.listeners.size === 0) return
        this.lost = true
        this.emit({ type: 'connection', connected: false })
      }
      // The server restarted or the network blinked: try again, backing off up to 10 s.
      const again = (): void => {
        if (this.retry || this.socket || this.listeners.size === 0 || !this.policy.allowed()) return
        this.retry = setTimeout(() => {
          this.retry = undefined
          if (this.listeners.size > 0) this.open()
        }, this.delayMs)
        this.delayMs = Math.min(this.delayMs * 2, 10_000)
      }
      if (opened) {
        away()
        again()
      } else
        void this.policy.check().then((retry) => {
          if (!retry) return
          away()
          again()
        })
    }
  }

  private emit(event: WorkbenchEvent): void {
    for (const listener of this.listeners) listener(event)
  }

  /** Tells the listeners the token was refused (nothing can work after that). */
  refuse(message: string): void {
    this.emit({ type: 'connection', connected: false, refused: message })
  }

  shutdown(): void {
    if (this.retry) clearTimeout(this.retry)
    this.retry = undefined
    const ws = this.socket
    this.socket = undefined
    ws?.close(1000)
  }
}
