/**
 * POST /upload in server mode: the token and Origin checks, the size limit (refused from the
 * header before the body is read, or as the bytes pass it), a plain file name, an atomic write
 * into <workspace>/uploads, and the uploaded file read by the same datasets.inspect/import.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { request } from 'node:http'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type RunningServer, startServer } from '../../../../src/main/hosts/server/server'
import { cleanOldUploads, safeUploadName, UPLOAD_KEEP_MS } from '../../../../src/main/hosts/server/upload'
import { EngineClient } from '../../../../src/main/service/engineClient'
import { Workbench } from '../../../../src/main/service/workbench'
import { LAYOUTS } from '../../data/helpers'
import { fakeSpawner } from '../../service/fakeEngine'

const LIMIT = 64 * 1024
let server: RunningServer
let workspace: string
const uploads = (): string => join(workspace, 'uploads')
/** Everything in the upload area, partial files included. */
function stored(): string[] {
  if (!existsSync(uploads())) return []
  return readdirSync(uploads(), { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => d.name)
}

let root: string
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'moe-upload-'))
  workspace = join(root, 'workspace')
  const renderer = join(root, 'renderer')
  mkdirSync(renderer, { recursive: true })
  writeFileSync(join(renderer, 'index.html'), '<!doctype html>')
  const workbench = new Workbench({ engine: new EngineClient(fakeSpawner().spawner), host: 'server', workspace })
  // --allow-dir without the workspace: the upload area is readable all the same.
  server = await startServer({ rendererDir: renderer, workbench, token: 'u'.repeat(64), maxUploadBytes: LIMIT, allowDirs: [LAYOUTS] })
})

afterAll(async () => {
  await server.close()
  await server.workbench.close()
  rmSync(root, { recursive: true, force: true })
})

const auth = (): Record<string, string> => ({ Authorization: `Bearer ${server.token}` })
const octet = { 'Content-Type': 'application/octet-stream' }

async function upload(name: string, body: BodyInit, headers: Record<string, string> = { ...auth(), ...octet }) {
  const res = await fetch(`${server.origin}/upload?name=${encodeURIComponent(name)}`, { method: 'POST', headers, body })
  return {
    status: res.status,
    body: (await res.json()) as {
      result?: { file: string; name: string; bytes: number }
      error?: { code: string; message: string; field?: string }
    },
  }
}

describe('POST /upload', () => {
  it('stores the file under its own name in the workspace, then inspects and imports it like any path', async () => {
    const data = readFileSync(join(LAYOUTS, 'alpaca.jsonl'))
    const r = await upload('capitals.jsonl', data)
    expect(r.status).toBe(200)
    const file = r.body.result!.file
    expect(r.body.result).toMatchObject({ name: 'capitals.jsonl', bytes: data.length })
    expect(file.startsWith(uploads() + '/')).toBe(true)
    expect(file.endsWith('/capitals.jsonl')).toBe(true)
    expect(readFileSync(file)).toEqual(data)
    expect(stored().filter((n) => n.endsWith('.part'))).toEqual([])

    const api = async (method: string, args: unknown) => {
      const res = await fetch(`${server.origin}/api/${method}`, {
        method: 'POST',
        headers: { ...auth(), 'Content-Type': 'application/json' },
        body: JSON.stringify(args),
      })
      return (await res.json()) as { result?: Record<string, unknown>; error?: unknown }
    }
    const inspected = await api('datasets.inspect', { file })
    expect(inspected.result).toMatchObject({ layout: 'alpaca', report: { valid: 3, invalid: 0 } })
    const imported = await api('datasets.import', { file, name: 'capitals', split: { validation: 0 } })
    expect(imported.result).toMatchObject({ name: 'capitals', counts: { rows: 3 } })
    // The same name again is another upload, not an overwrite.
    const again = await upload('capitals.jsonl', 'x')
    expect(again.body.result!.file).not.toBe(file)
    expect(readFileSync(file)).toEqual(data)
  })

  it('tells the page its size limit', async () => {
    const res = await fetch(`${server.origin}/upload`, { headers: auth() })
    expect(await res.json()).toEqual({ result: { maxBytes: LIMIT } })
  })

  it('refuses without the token or from another Origin, and stores nothing', async () => {
    const before = stored()
    expect((await upload('a.jsonl', '{}', octet)).status).toBe(401)
    expect((await upload('a.jsonl', '{}', { ...auth(), ...octet, Origin: 'http://evil.example' })).status).toBe(403)
    expect((await fetch(`${server.origin}/upload`)).status).toBe(401)
    expect(stored()).toEqual(before)
  })

  it('refuses a form post (not application/octet-stream)', async () => {
    const r = await upload('a.jsonl', '{}', { ...auth(), 'Content-Type': 'text/plain' })
    expect(r.status).toBe(415)
  })

  it.each(['../escape.jsonl', 'a/b.jsonl', 'a\\b.jsonl', '.bashrc', '', 'bad\u0007.jsonl', ` ${'x'}.jsonl`, `${'é'.repeat(200)}.jsonl`])(
    'refuses the unsafe name %j, naming the field',
    async (name) => {
      const before = stored()
      const r = await upload(name, '{}')
      expect(r.status).toBe(400)
      expect(r.body.error).toMatchObject({ code: 'invalid_argument', field: 'name' })
      expect(stored()).toEqual(before)
    },
  )

  it('refuses a declared size over the limit before reading the body', async () => {
    // Headers that announce 10 MiB, and only a few bytes sent: the answer comes without the rest.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${server.origin}/upload?name=big.jsonl`, {
        method: 'POST',
        headers: { ...auth(), ...octet, 'Content-Length': String(10 << 20) },
      })
      req.on('response', (res) => {
        let body = ''
        res.on('data', (c: Buffer) => (body += c.toString()))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      })
      req.on('error', reject)
      req.write('{"text": "the start of a large file"}\n')
    })
    expect(answer.status).toBe(413)
    expect(JSON.parse(answer.body).error.message).toBe(
      'file: 10.0 MiB, over the upload limit of 64.0 KiB; copy it to the server (scp, rsync) and type its path instead',
    )
    expect(stored().some((n) => n.startsWith('big'))).toBe(false)
  }, 10_000)

  it('stops a body without a length as soon as it passes the limit, keeping nothing', async () => {
    const before = stored()
    const chunks = new ReadableStream({
      start(c) {
        for (let i = 0; i < 40; i++) c.enqueue(new TextEncoder().encode('x'.repeat(16 << 10)))
        c.close()
      },
    })
    const res = await fetch(`${server.origin}/upload?name=stream.jsonl`, {
      method: 'POST',
      headers: { ...auth(), ...octet },
      body: chunks,
      duplex: 'half',
    } as RequestInit).catch((e: unknown) => e)
    // The server answers 413 and closes; the client may see the answer or the closed connection.
    if (res instanceof Response) expect(res.status).toBe(413)
    await new Promise((r) => setTimeout(r, 100))
    expect(stored()).toEqual(before)
    // And it still serves.
    expect((await upload('small.txt', 'hello\n')).status).toBe(200)
  })

  it('keeps nothing of an upload that breaks off', async () => {
    const before = stored()
    await new Promise<void>((resolve) => {
      const req = request(`${server.origin}/upload?name=cut.jsonl`, {
        method: 'POST',
        headers: { ...auth(), ...octet, 'Content-Length': '1000' },
      })
      req.on('error', () => resolve())
      req.write('{"text": "half', () => setTimeout(() => req.destroy(), 50))
      req.on('close', () => resolve())
    })
    await new Promise((r) => setTimeout(r, 100))
    expect(stored()).toEqual(before)
  })
})

describe('cleanOldUploads', () => {
  it('removes upload folders older than a week that no dataset came from, keeping new ones, imported ones and partial files', () => {
    const ws = mkdtempSync(join(tmpdir(), 'moe-upload-clean-'))
    const area = join(ws, 'uploads')
    const folder = (name: string, ageDays: number): string => {
      const dir = join(area, name)
      mkdirSync(dir, { recursive: true })
      writeFileSync(join(dir, 'rows.jsonl'), '{}\n')
      const t = (Date.now() - ageDays * 86_400_000) / 1000
      utimesSync(dir, t, t)
      return dir
    }
    const refused = folder('2026-01-01-aaaaaa', 8)
    const imported = folder('2026-01-02-bbbbbb', 30)
    const recent = folder('2026-01-03-cccccc', 6)
    // the same name's prefix is not the folder: /uploads/x-1 does not hold /uploads/x-10/...
    const prefix = folder('2026-01-04-dd', 9)
    folder('2026-01-04-dd0', 9)
    writeFileSync(join(area, '.0123.part'), 'partial')
    expect(UPLOAD_KEEP_MS).toBe(7 * 86_400_000)
    const removed = cleanOldUploads(ws, [join(imported, 'rows.jsonl'), join(`${prefix}0`, 'rows.jsonl')])
    expect(removed.sort()).toEqual([refused, prefix].sort())
    expect(readdirSync(area).sort()).toEqual(['.0123.part', '2026-01-02-bbbbbb', '2026-01-03-cccccc', '2026-01-04-dd0'])
    expect(existsSync(recent)).toBe(true)
    // no upload area: nothing to do
    expect(cleanOldUploads(join(ws, 'none'), [])).toEqual([])
    rmSync(ws, { recursive: true, force: true })
  })
})

describe('safeUploadName', () => {
  it('keeps a plain file name, in NFC', () => {
    expect(safeUploadName('Capitals & haiku (v2).jsonl')).toBe('Capitals & haiku (v2).jsonl')
    expect(safeUploadName('cafe\u0301.csv')).toBe('café.csv')
  })
})
