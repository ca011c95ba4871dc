/**
 * Uploads in server mode: a dataset file sent from the browser lands in the workspace's upload
 * area, where the path field and the import read it like any file on the server.
 *
 *   <workspace>/uploads/<time>-<random>/<name>     one folder per upload, the file's own name kept
 *   <workspace>/uploads/.<random>.part             while it arrives (removed on any failure)
 *
 * A size over the limit is refused from Content-Length before a byte is read, or as soon as the
 * bytes counted pass it; the file appears under its name only once it is complete (a rename).
 * An import copies the rows into the workspace, so an upload is a staging copy: a server that
 * starts removes the ones older than a week that no dataset was imported from (cleanOldUploads).
 */
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { join, resolve, sep } from 'node:path'
import { ApiError } from '../../../shared/api'

/** The largest upload a server takes unless told otherwise (larger files: copy them, type the path). */
export const DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024 ** 3

export const uploadsDir = (workspace: string): string => join(workspace, 'uploads')

/** A size for messages: 1.5 GiB, 12.0 MiB, 900 bytes. */
export function sizeText(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`
  return `${bytes} bytes`
}

/** The refusal of a file over the limit (HTTP 413). */
export class UploadTooLarge extends ApiError {}

/** The refusal of a file over the limit, saying what to do instead. */
export function tooLarge(bytes: number | null, maxBytes: number): UploadTooLarge {
  const size = bytes === null ? 'larger than' : `${sizeText(bytes)}, over`
  return new UploadTooLarge(
    'invalid_argument',
    `file: ${size} the upload limit of ${sizeText(maxBytes)}; copy it to the server (scp, rsync) and type its path instead`,
    'file',
  )
}

/**
 * The file name an upload is stored under: the name the browser gave, which must be a plain file
 * name (no folder, no control characters, not hidden, at most 255 bytes). Throws an ApiError
 * naming the field `name`.
 */
export function safeUploadName(raw: string | null): string {
  const refuse = (why: string): never => {
    throw new ApiError('invalid_argument', `name: ${why}`, 'name')
  }
  if (raw === null || raw.trim() === '') return refuse('give the file name (?name=train.jsonl)')
  const name = raw.normalize('NFC')
  if (/[/\\]/.test(name)) refuse(`${JSON.stringify(raw)} names a folder; send the file name alone`)
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(name)) refuse('the file name holds control characters')
  if (name.startsWith('.')) refuse(`${JSON.stringify(raw)} is a hidden or relative name; rename the file`)
  if (name !== name.trim()) refuse('the file name starts or ends with spaces')
  if (Buffer.byteLength(name) > 255) refuse('the file name is longer than 255 bytes')
  return name
}

export interface ReceiveOptions {
  workspace: string
  name: string
  maxBytes: number
}

export interface Uploaded {
  /** Where the file now is: give it to datasets.inspect / datasets.import. */
  file: string
  name: string
  bytes: number
}

/**
 * Streams the request body into the upload area. Rejects with an ApiError (the size limit, a
 * connection that broke off, a full disk), having removed what it wrote. The caller checks
 * Content-Length first; this counts the bytes as they come whatever the header said.
 */
export function receiveUpload(req: IncomingMessage, options: ReceiveOptions): Promise<Uploaded> {
  const root = uploadsDir(options.workspace)
  mkdirSync(root, { recursive: true })
  const part = join(root, `.${randomBytes(8).toString('hex')}.part`)
  const out = createWriteStream(part, { flags: 'wx' })
  let bytes = 0
  return new Promise<Uploaded>((resolve, reject) => {
    let settled = false
    const fail = (error: ApiError): void => {
      if (settled) return
      settled = true
      req.unpipe(out)
      out.destroy()
      rmSync(part, { force: true })
      reject(error)
    }
    req.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (bytes > options.maxBytes) fail(tooLarge(null, options.maxBytes))
    })
    const brokeOff = (): void => fail(new ApiError('failed', 'file: the upload broke off before the end; nothing was kept', 'file'))
    req.on('aborted', brokeOff)
    req.on('close', () => {
      if (!req.complete) brokeOff()
    })
    req.on('error', (e) => fail(new ApiError('failed', `file: the upload failed (${e.message}); nothing was kept`, 'file')))
    out.on('error', (e) => fail(new ApiError('failed', `file: cannot write ${root} (${e.message}); nothing was kept`, 'file')))
    out.on('finish', () => {
      if (settled) return
      if (!req.complete) return brokeOff()
      try {
        const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')
        const dir = join(root, `${stamp}-${randomBytes(3).toString('hex')}`)
        mkdirSync(dir)
        const file = join(dir, options.name)
        renameSync(part, file)
        settled = true
        resolve({ file, name: options.name, bytes })
      } catch (e) {
        fail(
          new ApiError('failed', `file: cannot store the upload (${e instanceof Error ? e.message : String(e)}); nothing was kept`, 'file'),
        )
      }
    })
    req.pipe(out)
  })
}

/** Removes partial uploads left by a server that stopped mid-upload (older than `olderThanMs`). */
export function cleanPartialUploads(workspace: string, olderThanMs = 60 * 60 * 1000): void {
  const root = uploadsDir(workspace)
  let names: string[]
  try {
    names = readdirSync(root)
  } catch {
    return
  }
  const now = Date.now()
  for (const n of names) {
    if (!n.startsWith('.') || !n.endsWith('.part')) continue
    const file = join(root, n)
    try {
      if (now - statSync(file).mtimeMs > olderThanMs) rmSync(file, { force: true })
    } catch {
      // gone already
    }
  }
}

/** How long an upload no dataset was imported from is kept (a week: time to fix and import it). */
export const UPLOAD_KEEP_MS = 7 * 24 * 60 * 60 * 1000

/**
 * Removes the upload folders older than `olderThanMs` that hold no file in `imported` (the source
 * paths of the workspace's datasets): uploads whose import was refused, or never made, piled up.
 * Returns the folders removed; one that cannot be read or removed is left as it is.
 */
export function cleanOldUploads(workspace: string, imported: readonly string[], olderThanMs = UPLOAD_KEEP_MS, now = Date.now()): string[] {
  const root = uploadsDir(workspace)
  let names: string[]
  try {
    names = readdirSync(root)
  } catch {
    return []
  }
  const sources = imported.map((p) => resolve(p))
  const removed: string[] = []
  for (const n of names) {
    if (n.startsWith('.')) continue // a partial upload: cleanPartialUploads'
    const dir = join(root, n)
    try {
      if (!statSync(dir).isDirectory() || now - statSync(dir).mtimeMs <= olderThanMs) continue
      if (sources.some((p) => p.startsWith(dir + sep))) continue
      rmSync(dir, { recursive: true, force: true })
      removed.push(dir)
    } catch {
      // gone already, or not ours to remove
    }
  }
  return removed
}
