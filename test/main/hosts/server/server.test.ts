import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import type { WorkbenchEvent } from '../../../../src/shared/api'
import { type RunningServer, startServer } from '../../../../src/main/hosts/server/server'
import { EngineClient } from '../../../../src/main/service/engineClient'
import { Workbench } from '../../../../src/main/service/workbench'
import { fakeSpawner } from '../../service/fakeEngine'
import { resourcesDir } from '../../../../src/main/service/firstRun'
import { linkModelFolder } from '../../../../src/main/service/workspace'

let root: string
let server: RunningServer
let children: ReturnType<typeof fakeSpawner>['children']

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'moe-server-'))
  await mkdir(join(root, 'renderer', 'assets'), { recursive: true })
  await writeFile(join(root, 'renderer', 'index.html'), '<!doctype html><title>app</title>')
  await writeFile(join(root, 'renderer', 'assets', 'app.js'), 'console.log(1)')
  await writeFile(join(root, 'secret.txt'), 'TOP-SECRET-CONTENT')
  await symlink(join(root, 'secret.txt'), join(root, 'renderer', 'assets', 'link.txt'))
  const fake = fakeSpawner()
  children = fake.children
  const workbench = new Workbench({ engine: new EngineClient(fake.spawner), host: 'server' })
  server = await startServer({ rendererDir: join(root, 'renderer'), workbench, token: 'a'.repeat(64), allowDirs: [root, '/models'] })
})

afterAll(async () => {
  await server.close()
  await server.workbench.close()
  await rm(root, { recursive: true, force: true })
})

const auth = () => ({ Authorization: `Bearer ${server.token}` })

async function api(method: string, body?: unknown, headers: Record<string, string> = auth()) {
  const res = await fetch(`${server.origin}/api/${method}`, {
    method: 'POST',
    headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
  return {
    status: res.status,
    headers: res.headers,
    body: (await res.json()) as { result?: unknown; error?: { code: string; message: string; field?: string } },
  }
}

describe('server mode', () => {
  it('prints a loopback URL that carries the token', () => {
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/?token=${'a'.repeat(64)}`)
  })

  it('answers API calls with the token', async () => {
    const r = await api('models.inspect', { dir: '/models/tiny' })
    expect(r.status).toBe(200)
    expect(r.body.result).toMatchObject({ dir: '/models/tiny', family: 'mixtral' })
    expect(r.headers.get('cache-control')).toBe('no-store')
    const q = await fetch(`${server.origin}/api/system.info?token=${server.token}`, { method: 'POST' })
    expect(q.status).toBe(200)
  })

  it('answers a method without a result (a delete) with {"result": null}, which the browser reads as done', async () => {
    const saved = await api('conversations.save', { title: 't', model: '/models/tiny', messages: [] })
    const id = (saved.body.result as { id: string }).id
    const r = await api('conversations.delete', { id })
    expect(r).toMatchObject({ status: 200, body: { result: null } }) // it was {}: "unexpected HTTP 200"
    expect(((await api('conversations.list')).body.result as { id: string }[]).map((c) => c.id)).not.toContain(id)
  })

  it('refuses a request without the token (401) or with a wrong one', async () => {
    expect((await api('system.info', undefined, {})).status).toBe(401)
    const wrong = await api('system.info', undefined, { Authorization: `Bearer ${'b'.repeat(64)}` })
    expect(wrong.status).toBe(401)
    expect(wrong.body.error?.code).toBe('unauthorized')
  })

  it('refuses a foreign Origin (403) even with the token', async () => {
    const r = await api('system.info', undefined, { ...auth(), Origin: 'http://evil.example' })
    expect(r.status).toBe(403)
    expect(r.body.error?.code).toBe('forbidden')
    expect((await api('system.info', undefined, { ...auth(), Origin: server.origin })).status).toBe(200)
  })

  it('rejects a bad payload with 400 naming the field', async () => {
    const r = await api('models.inspect', { dir: 42 })
    expect(r.status).toBe(400)
    expect(r.body.error).toMatchObject({ code: 'invalid_argument', field: 'dir' })
    expect(r.body.error?.message).toMatch(/dir/)
    const broken = await api('models.inspect', '{"dir": ')
    expect(broken.status).toBe(400)
    expect(broken.body.error?.message).toMatch(/^body: invalid JSON/)
  })

  it('answers an oversized body with 413 (not a reset connection), and a malformed escape with 400', async () => {
    const big = await fetch(`${server.origin}/api/models.inspect`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/json' },
      body: JSON.stringify({ dir: 'x'.repeat(2 << 20) }),
    })
    expect(big.status).toBe(413)
    expect(((await big.json()) as { error: { message: string } }).error.message).toMatch(/larger than 1048576 bytes/)
    // Streamed without a Content-Length: the limit applies as the bytes arrive.
    const chunks = new ReadableStream({
      start(c) {
        for (let i = 0; i < 40; i++) c.enqueue(new TextEncoder().encode('x'.repeat(64 << 10)))
        c.close()
      },
    })
    const streamed = await fetch(`${server.origin}/api/models.inspect`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/json' },
      body: chunks,
      duplex: 'half',
    } as RequestInit)
    expect(streamed.status).toBe(413)
    const escape = await fetch(`${server.origin}/api/models.%E0%A4%A`, { method: 'POST', headers: auth() })
    expect(escape.status).toBe(400)
    expect(((await escape.json()) as { error: { message: string } }).error.message).toMatch(/malformed percent-escape/)
    // The server still answers afterwards.
    expect((await api('models.inspect', { dir: '/models/tiny' })).status).toBe(200)
  })

  it('refuses paths outside the allowed folders with 403 naming the field, before the service sees them', async () => {
    const r = await api('datasets.inspect', { file: '/etc/passwd' })
    expect(r.status).toBe(403)
    expect(r.body.error).toMatchObject({ code: 'forbidden', field: 'file', message: expect.stringMatching(/outside the folders/) })
    const inside = await api('models.inspect', { dir: join(root, 'renderer') })
    expect(inside.status).toBe(200)
    // --allow-dir adds folders: the workspace and the bundled resources stay allowed.
    expect(server.allowDirs).toEqual(expect.arrayContaining([root, '/models', server.workbench.workspace, resourcesDir()]))
  })

  it('lists a linked model it may not read as unusable, saying how to allow it', async () => {
    const elsewhere = await mkdtemp(join(tmpdir(), 'moe-linked-'))
    const outside = linkModelFolder(server.workbench.workspace, elsewhere, 'exported elsewhere')
    const inside = linkModelFolder(server.workbench.workspace, join(root, 'renderer'), 'linked inside')
    try {
      const listed = (await api('models.list')).body.result as { dir: string; info: unknown; error?: string; fix?: string }[]
      // What to do is --allow-dir, not the card's usual "Fix or re-link the folder" (a re-link is refused the same way).
      expect(listed.find((m) => m.dir === elsewhere)).toMatchObject({
        info: null,
        error: expect.stringMatching(/is outside the folders this server may read and write \([^)]*\)$/),
        fix: 'Start the server with --allow-dir and its folder (or a folder above it) to use it here.',
      })
      expect(listed.find((m) => m.dir === join(root, 'renderer'))?.error ?? '').not.toMatch(/outside the folders/)
    } finally {
      await rm(join(server.workbench.workspace, 'models', outside.id), { recursive: true, force: true })
      await rm(join(server.workbench.workspace, 'models', inside.id), { recursive: true, force: true })
      await rm(elsewhere, { recursive: true, force: true })
    }
  })

  it('refuses non-JSON bodies, unknown methods and GET on the API', async () => {
    const form = await fetch(`${server.origin}/api/models.inspect`, {
      method: 'POST',
      headers: { ...auth(), 'Content-Type': 'application/x-www-form-urlencoded' },
      body: 'dir=/x',
    })
    expect(form.status).toBe(415)
    expect((await api('system.reboot')).status).toBe(404)
    expect((await fetch(`${server.origin}/api/system.info`, { headers: auth() })).status).toBe(405)
  })

  it('serves the renderer with security headers, and nothing outside it', async () => {
    const page = await fetch(`${server.origin}/`)
    expect(page.status).toBe(200)
    expect(await page.text()).toContain('<title>app</title>')
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'")
    expect(page.headers.get('x-content-type-options')).toBe('nosniff')
    expect(page.headers.get('referrer-policy')).toBe('no-referrer')
    const js = await fetch(`${server.origin}/assets/app.js`)
    expect(js.headers.get('content-type')).toMatch(/^text\/javascript/)
    for (const path of ['/assets/..%2f..%2fsecret.txt', '/..%2fsecret.txt', '/assets/link.txt', '/assets/missing.js']) {
      const res = await fetch(`${server.origin}${path}`)
      expect(res.status, path).toBe(404)
      expect(await res.text()).not.toContain('TOP-SECRET-CONTENT')
    }
  })

  it('refuses a foreign Host (DNS rebinding)', async () => {
    const { request } = await import('node:http')
    const status = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, path: '/', headers: { Host: `evil.example:${server.port}` } }, (res) => {
        res.resume()
        resolve(res.statusCode ?? 0)
      })
      req.on('error', reject)
      req.end()
    })
    expect(status).toBe(403)
  })

  it('streams events over /events to a client with the token and the right Origin', async () => {
    const url = `${server.origin.replace('http', 'ws')}/events?token=${server.token}`
    const ws = new WebSocket(url, { headers: { Origin: server.origin } })
    await new Promise((resolve, reject) => {
      ws.once('open', resolve)
      ws.once('error', reject)
    })
    const received = new Promise<WorkbenchEvent>((resolve) => ws.once('message', (data) => resolve(JSON.parse(String(data)))))
    server.workbench.log('info', 'over the wire')
    expect(await received).toMatchObject({ type: 'log', message: 'over the wire' })
    ws.close()
  })

  it.each([
    ['no token', '', {}, 401],
    ['a foreign Origin', `?token=${'a'.repeat(64)}`, { Origin: 'http://evil.example' }, 403],
  ])('refuses a WebSocket with %s', async (_what, query, headers, status) => {
    const ws = new WebSocket(`${server.origin.replace('http', 'ws')}/events${query}`, { headers })
    const code = await new Promise<number>((resolve) => {
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0))
      ws.once('open', () => resolve(101))
      ws.once('error', () => {})
    })
    expect(code).toBe(status)
  })

  it('survives clients that reset the connection it refuses (the server exited on an unhandled ECONNRESET)', async () => {
    const { port } = new URL(server.origin)
    const request = `GET /events?token=wrong HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`
    for (let i = 0; i < 20; i++)
      await new Promise<void>((resolve) => {
        const s = connect(Number(port), '127.0.0.1', () => {
          s.write(request)
          // Reset once the refusal is read (the server waits for the end of a closed socket), or at once.
          if (i % 2) s.resetAndDestroy()
          else s.once('data', () => s.resetAndDestroy())
        })
        s.on('close', () => resolve())
        s.on('error', () => {})
      })
    await new Promise((r) => setTimeout(r, 100))
    const res = await api('system.info')
    expect(res.status).toBe(200)
  })

  it('has started exactly one engine for all of this', () => {
    expect(children).toHaveLength(1)
  })
})
