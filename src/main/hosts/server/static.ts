/** Serves the built renderer's files, and nothing outside its folder. */
import { createReadStream } from 'node:fs'
import { realpath, stat } from 'node:fs/promises'
import { extname, resolve, sep } from 'node:path'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.ttf': 'font/ttf',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
}

export interface StaticFile {
  path: string
  size: number
  type: string
  stream: () => NodeJS.ReadableStream
}

/**
 * The file under `root` named by `rawPathname` (a URL pathname, still percent-encoded), or
 * undefined. `/` is index.html; paths without an extension fall back to index.html (client-side
 * routes); anything that escapes `root`, even through a symlink, is refused.
 */
export async function resolveStatic(root: string, rawPathname: string): Promise<StaticFile | undefined> {
  let pathname: string
  try {
    pathname = decodeURIComponent(rawPathname)
  } catch {
    return undefined
  }
  if (pathname.includes('\0') || pathname.includes('\\')) return undefined
  const realRoot = await realpath(root)
  const wanted = pathname === '/' || pathname === '' ? '/index.html' : pathname
  const candidates = extname(wanted) === '' ? [wanted, '/index.html'] : [wanted]
  for (const candidate of candidates) {
    const full = resolve(realRoot, '.' + candidate)
    if (!within(realRoot, full)) return undefined
    try {
      const real = await realpath(full)
      if (!within(realRoot, real)) return undefined
      const info = await stat(real)
      if (!info.isFile()) continue
      return {
        path: real,
        size: info.size,
        type: TYPES[extname(real).toLowerCase()] ?? 'application/octet-stream',
        stream: () => createReadStream(real),
      }
    } catch {
      // Missing: try the next candidate.
    }
  }
  return undefined
}

function within(root: string, path: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep)
}
