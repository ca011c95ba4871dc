/**
 * Server mode: the built renderer and the API over HTTP + WebSocket, for driving a headless box
 * from a browser (and for the end-to-end tests).
 *
 *   POST /api/<method>   JSON body = the method's arguments (empty for none)
 *                        200 {"result": ...} | 4xx/5xx {"error": {"code", "message", "field"?}}
 *   GET  /events         WebSocket; each message is one WorkbenchEvent as JSON
 *   POST /upload?name=N  the body is a file (Content-Type: application/octet-stream), stored in
 *                        <workspace>/uploads: 200 {"result": {"file", "name", "bytes"}}; then
 *                        datasets.inspect / datasets.import read `file` like any other path
 *   GET  /upload         {"result": {"maxBytes"}}: the largest upload taken
 *   GET  /*              the renderer's files
 *
 * Binds 127.0.0.1 by default. Every API and WebSocket request needs the token (Authorization:
 * Bearer, or ?token=) and, from a browser, the server's own Origin; a loopback-bound server also
 * refuses foreign Host names (DNS rebinding).
 */
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { homedir, hostname, networkInterfaces } from 'node:os'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import { ApiError, type ApiErrorCode, type BackendName, type ModelEntry, type Unsubscribe, isMethod } from '../../../shared/api'
import { EngineClient, forkSpawner } from '../../service/engineClient'
import { Workbench } from '../../service/workbench'
import { pathsOf } from '../../../shared/schema'
import { resourcesDir } from '../../service/firstRun'
import { listDatasets } from '../../data/workspace'
import {
  SECURITY_HEADERS,
  allowedHostNames,
  hostAllowed,
  newToken,
  originAllowed,
  OUTSIDE_ADVICE,
  refusedPath,
  requestToken,
  tokenMatches,
  type HostPolicy,
} from './security'
import { resolveStatic } from './static'
import {
  DEFAULT_MAX_UPLOAD_BYTES,
  UploadTooLarge,
  cleanOldUploads,
  cleanPartialUploads,
  receiveUpload,
  safeUploadName,
  tooLarge,
  uploadsDir,
} from './upload'

export interface ServerOptions {
  /** Interface to bind; default 127.0.0.1. */
  host?: string
  /** Port; 0 (default) picks a free one. */
  port?: number
  /** The API token; default: a fresh random one. */
  token?: string
  /** The built renderer (out/renderer). */
  rendererDir: string
  /** The service to serve; default: a new one with its own engine (stopped on close). */
  workbench?: Workbench
  /** The engine's backend when the server creates the service. */
  backend?: BackendName
  /**
   * Folders whose files requests may name (datasets to read, models, export targets), besides the
   * workspace and the bundled resources, which are always allowed (the app cannot work without
   * them); default: the user's home folder. Paths elsewhere get 403.
   */
  allowDirs?: string[]
  /** Extra Host names a non-loopback server answers to (--allow-host), besides --host itself. */
  allowHosts?: string[]
  /** The largest file POST /upload takes (default DEFAULT_MAX_UPLOAD_BYTES). */
  maxUploadBytes?: number
}

export interface RunningServer {
  /** The page URL, token included: `http://127.0.0.1:PORT/?token=...`. */
  url: string
  /** The origin: `http://127.0.0.1:PORT`. */
  origin: string
  token: string
  port: number
  workbench: Workbench
  close(): Promise<void>
  /** The folders requests may name. */
  allowDirs: string[]
  /** Host names accepted besides loopback (empty on a loopback-bound server). */
  allowedHosts: string[]
}

const MAX_BODY_BYTES = 1 << 20
/** A client this far behind on events is dropped rather than buffered without bound. */
const MAX_WS_BUFFER_BYTES = 16 << 20
const HEARTBEAT_MS = 30_000

const STATUS: Record<ApiErrorCode, number> = {
  invalid_argument: 400,
  unauthorized: 401,
  forbidden: 403,
  unknown_method: 404,
  failed: 422,
  engine_unavailable: 503,
  /** The caller stopped it: no standard code fits; 409 says the request did not complete as asked. */
  cancelled: 409,
}

export function statusOf(code: ApiErrorCode): number {
  return STATUS[code]
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const bindHost = options.host ?? '127.0.0.1'
  const token = options.token ?? newToken()
  const ownsWorkbench = options.workbench === undefined
  const workbench =
    options.workbench ??
    new Workbench({
      engine: new EngineClient(forkSpawner(), options.backend ? { backend: options.backend } : {}),
      host: 'server',
      firstRun: true,
    })
  let port = options.port ?? 0
  // The workspace, the bundled model and samples, and the upload area (the server writes it
  // itself) are always readable: --allow-dir only chose the rest (it replaced them, so the
  // bundled model's tokenizer was refused in the dataset inspection).
  const allowDirs = [
    ...new Set([workbench.workspace, resourcesDir(), ...(options.allowDirs ?? [homedir()]), uploadsDir(workbench.workspace)]),
  ]
  const maxUploadBytes = options.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES
  cleanPartialUploads(workbench.workspace)
  // Old uploads no dataset came from, once the datasets are listed (nothing waits on it).
  void listDatasets(workbench.workspace)
    .then((ds) =>
      cleanOldUploads(
        workbench.workspace,
        ds.flatMap((d) => (typeof d.source?.path === 'string' ? [d.source.path] : [])),
      ),
    )
    .catch(() => {})
  const allowedHosts = allowedHostNames(bindHost, options.allowHosts ?? [], {
    hostname: hostname(),
    addresses: Object.values(networkInterfaces())
      .flat()
      .map((i) => i?.address)
      .filter((a): a is string => typeof a === 'string'),
  })
  const hostPolicy = (): HostPolicy => ({ boundHost: bindHost, port, allowedHosts })

  const sockets = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 })
  const server: Server = createServer((req, res) => {
    handleHttp(req, res).catch((e: unknown) => {
      if (!res.headersSent)
        sendJson(res, 500, { error: { code: 'failed', message: `internal error: ${e instanceof Error ? e.message : String(e)}` } })
      else res.destroy()
    })
  })

  /** Host, token and Origin checks shared by the API and the WebSocket; undefined = admitted. */
  function refuse(req: IncomingMessage, url: URL): ApiError | undefined {
    const denied = check(req, url)
    // The operator should see attempts: a wrong token or a foreign page probing the port.
    // Only the path is logged, never the query (it may hold a token).
    if (denied) workbench.log('warn', `refused ${req.method ?? 'GET'} ${url.pathname}: ${denied.message}`, 'server')
    return denied
  }

  function check(req: IncomingMessage, url: URL): ApiError | undefined {
    if (!hostAllowed(req.headers.host, hostPolicy()))
      return new ApiError('forbidden', `Host ${JSON.stringify(req.headers.host)} is not this server`)
    if (!tokenMatches(requestToken(req.headers, url), token))
      return new ApiError('unauthorized', 'a valid token is required: open the URL the server printed at start (it ends in ?token=...)')
    if (!originAllowed(req.headers.origin, req.headers.host))
      return new ApiError('forbidden', `Origin ${JSON.stringify(req.headers.origin)} may not call this server`)
    return undefined
  }

  async function handleHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://placeholder')
    if (url.pathname === '/api' || url.pathname.startsWith('/api/')) return handleApi(req, res, url)
    if (url.pathname === '/upload') return handleUpload(req, res, url)
    if (url.pathname === '/events') return sendError(res, new ApiError('failed', '/events is a WebSocket endpoint'), 426)

    if (!hostAllowed(req.headers.host, hostPolicy())) return sendError(res, new ApiError('forbidden', 'unknown Host'))
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD')
      return sendError(res, new ApiError('failed', `${req.method} is not allowed here`), 405)
    }
    const file = await resolveStatic(options.rendererDir, url.pathname)
    if (!file) return sendError(res, new ApiError('failed', `not found: ${url.pathname}`), 404)
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'Content-Type': file.type,
      'Content-Length': String(file.size),
      'Cache-Control': 'no-cache',
    })
    if (req.method === 'HEAD') return void res.end()
    file.stream().pipe(res)
  }

  async function handleApi(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const denied = refuse(req, url)
    if (denied) return sendError(res, denied)
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'POST')
      return sendError(res, new ApiError('failed', `use POST for ${url.pathname}`), 405)
    }
    let method: string
    try {
      method = decodeURIComponent(url.pathname.slice('/api/'.length))
    } catch {
      return sendError(res, new ApiError('invalid_argument', `the path ${url.pathname} has a malformed percent-escape`))
    }
    if (!isMethod(method)) return sendError(res, new ApiError('unknown_method', `unknown method ${JSON.stringify(method)}`))

    const type = req.headers['content-type']
    let raw: string
    try {
      raw = await readBody(req)
    } catch (e) {
      if (!(e instanceof BodyTooLarge)) throw e
      // Answer at once and close the connection: the rest of the body is discarded, not read.
      res.setHeader('Connection', 'close')
      sendError(res, new ApiError('invalid_argument', e.message, 'body'), 413)
      res.once('finish', () => setTimeout(() => req.socket.destroy(), 1000).unref())
      return
    }
    let args: unknown = undefined
    if (raw.trim() !== '') {
      // JSON only: a cross-site form cannot send it without a CORS preflight.
      if (!type || !/^application\/json\b/i.test(type))
        return sendError(res, new ApiError('invalid_argument', 'body: send JSON with Content-Type: application/json'), 415)
      try {
        args = JSON.parse(raw)
      } catch (e) {
        return sendError(
          res,
          new ApiError('invalid_argument', `body: invalid JSON (${e instanceof Error ? e.message : String(e)})`, 'body'),
        )
      }
    }
    const outside = refusedPath(pathsOf(method, args), allowDirs)
    if (outside) {
      workbench.log('warn', `refused ${method}: ${outside.message}`, 'server')
      return sendError(res, new ApiError('forbidden', `${method}: ${outside.message}`, outside.field))
    }
    try {
      let result = await workbench.call(method, args)
      // Models linked from elsewhere (a CLI export to another folder) that this server may not
      // read are listed as unusable, with what to do, not offered to fail at the first use.
      if (method === 'models.list')
        result = (result as ModelEntry[]).map((m) => {
          const outside = refusedPath([{ field: 'dir', path: m.dir }], allowDirs)
          if (!outside) return m
          // Its folder is fine: re-linking it (the card's usual advice) would be refused the same way.
          const error = outside.message.replace(/^dir: /, '').replace(`; ${OUTSIDE_ADVICE}`, '')
          return { ...m, info: null, error, fix: 'Start the server with --allow-dir and its folder (or a folder above it) to use it here.' }
        })
      // A method without a result (a delete) answers {"result": null}: JSON has no undefined, and
      // {} read as a broken answer (conversations.delete failed in the browser with "unexpected HTTP 200").
      sendJson(res, 200, { result: result ?? null })
    } catch (e) {
      sendError(res, ApiError.from(e))
    }
  }

  /** Answers at once and closes the connection: the rest of the body is discarded, not read. */
  function refuseBody(req: IncomingMessage, res: ServerResponse, error: ApiError, status: number): void {
    res.setHeader('Connection', 'close')
    sendError(res, error, status)
    res.once('finish', () => setTimeout(() => req.socket.destroy(), 1000).unref())
  }

  async function handleUpload(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const denied = refuse(req, url)
    if (denied) return refuseBody(req, res, denied, statusOf(denied.code))
    if (req.method === 'GET') return sendJson(res, 200, { result: { maxBytes: maxUploadBytes } })
    if (req.method !== 'POST') {
      res.setHeader('Allow', 'GET, POST')
      return refuseBody(req, res, new ApiError('failed', `use POST for ${url.pathname}`), 405)
    }
    // Not a type a cross-site form can send without a CORS preflight (the Origin check still applies).
    if (!/^application\/octet-stream\b/i.test(req.headers['content-type'] ?? ''))
      return refuseBody(
        req,
        res,
        new ApiError('invalid_argument', 'body: send the file as Content-Type: application/octet-stream', 'body'),
        415,
      )
    let name: string
    try {
      name = safeUploadName(url.searchParams.get('name'))
    } catch (e) {
      return refuseBody(req, res, ApiError.from(e), 400)
    }
    const declared = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length'])
    // Refused from the header alone: none of the body is read.
    if (declared !== null && declared > maxUploadBytes) {
      workbench.log('warn', `refused an upload of ${declared} bytes (limit ${maxUploadBytes})`, 'server')
      return refuseBody(req, res, tooLarge(declared, maxUploadBytes), 413)
    }
    try {
      const uploaded = await receiveUpload(req, { workspace: workbench.workspace, name, maxBytes: maxUploadBytes })
      workbench.log('info', `received ${uploaded.name} (${uploaded.bytes} bytes) into ${uploaded.file}`, 'server')
      sendJson(res, 200, { result: uploaded })
    } catch (e) {
      const error = ApiError.from(e)
      if (res.destroyed || req.socket.destroyed) return
      refuseBody(req, res, error, error instanceof UploadTooLarge ? 413 : statusOf(error.code))
    }
  }

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // An upgrading socket is no longer the HTTP server's, nor its error handler: a client that
    // resets it (a refused page reconnecting, a port probe) would be an unhandled 'error' that
    // ends the process. ws adds its own while it accepts one.
    socket.on('error', () => socket.destroy())
    const url = new URL(req.url ?? '/', 'http://placeholder')
    const reject = (status: number, message: string): void => {
      socket.end(
        `HTTP/1.1 ${status} ${message}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
      )
    }
    if (url.pathname !== '/events') return reject(404, 'Not Found')
    const denied = refuse(req, url)
    if (denied) return reject(statusOf(denied.code), denied.code === 'unauthorized' ? 'Unauthorized' : 'Forbidden')
    sockets.handleUpgrade(req, socket, head, (ws) => sockets.emit('connection', ws, req))
  })

  const alive = new WeakSet<WebSocket>()
  sockets.on('connection', (ws: WebSocket) => {
    alive.add(ws)
    ws.on('pong', () => alive.add(ws))
    // Clients have nothing to say on this stream; anything they send is ignored.
    const off: Unsubscribe = workbench.onEvent((event) => {
      if (ws.readyState !== WebSocket.OPEN) return
      if (ws.bufferedAmount > MAX_WS_BUFFER_BYTES) return ws.close(1013, 'too far behind on events')
      ws.send(JSON.stringify(event))
    })
    ws.on('close', off)
    ws.on('error', off)
  })
  const heartbeat = setInterval(() => {
    for (const ws of sockets.clients) {
      if (!alive.has(ws)) {
        ws.terminate()
        continue
      }
      alive.delete(ws)
      ws.ping()
    }
  }, HEARTBEAT_MS)
  heartbeat.unref()

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, bindHost, () => {
      server.off('error', reject)
      resolve()
    })
  })
  port = (server.address() as AddressInfo).port
  const origin = `http://${urlHost(bindHost)}:${port}`

  let closing: Promise<void> | undefined
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      clearInterval(heartbeat)
      for (const ws of sockets.clients) ws.close(1001, 'server shutting down')
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeIdleConnections()
        setTimeout(() => server.closeAllConnections(), 2000).unref()
      })
      for (const ws of sockets.clients) ws.terminate()
      sockets.close()
      if (ownsWorkbench) await workbench.close()
    })())

  return { url: `${origin}/?token=${token}`, origin, token, port, workbench, close, allowDirs, allowedHosts }
}

/** The host part of a URL for a bind address: IPv6 in brackets, unspecified addresses as loopback. */
export function urlHost(bindHost: string): string {
  if (bindHost === '0.0.0.0' || bindHost === '::' || bindHost === '') return '127.0.0.1'
  return bindHost.includes(':') ? `[${bindHost}]` : bindHost
}

class BodyTooLarge extends Error {}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'])
    const tooLarge = (): BodyTooLarge =>
      new BodyTooLarge(`body: larger than ${MAX_BODY_BYTES} bytes (the limit of one API request); send less at once`)
    if (declared > MAX_BODY_BYTES) {
      req.resume() // discard
      return reject(tooLarge())
    }
    const chunks: Buffer[] = []
    let size = 0
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > MAX_BODY_BYTES) {
        chunks.length = 0
        req.off('data', onData)
        req.resume() // discard the rest
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    }
    req.on('data', onData)
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': String(Buffer.byteLength(text)),
    'Cache-Control': 'no-store',
  })
  res.end(text)
}

function sendError(res: ServerResponse, error: ApiError, status = statusOf(error.code)): void {
  sendJson(res, status, { error: error.toJSON() })
}
