/**
 * Server mode's gatekeeping, pure functions: the token, the Host check (DNS rebinding) and the
 * Origin check (cross-site requests), and the headers every response carries.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { realpathSync } from 'node:fs'
import { homedir } from 'node:os'
import type { IncomingHttpHeaders } from 'node:http'
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path'

/** A random 32-byte token, hex (64 characters), as Jupyter prints at start. */
export function newToken(): string {
  return randomBytes(32).toString('hex')
}

/** The token a request carries: `Authorization: Bearer T`, else `?token=T`. */
export function requestToken(headers: IncomingHttpHeaders, url: URL): string | undefined {
  const auth = headers.authorization
  if (auth) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth)
    return m ? m[1] : undefined
  }
  return url.searchParams.get('token') ?? undefined
}

export function tokenMatches(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '[::1]', '::1'])

export function isLoopback(host: string): boolean {
  return LOOPBACK_NAMES.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host)
}

export interface HostPolicy {
  /** The address the server is bound to (as given: 127.0.0.1, ::1, 0.0.0.0...). */
  boundHost: string
  port: number
  /**
   * Names (host names or addresses) a non-loopback server answers to, besides loopback names:
   * --host and --allow-host, and for a wildcard bind this machine's addresses and name.
   */
  allowedHosts?: readonly string[]
}

/** Bracket-free, lower-case host name, as URL parsing gives it. */
function normalHost(h: string): string {
  return h.toLowerCase().replace(/^\[|\]$/g, '')
}

/**
 * The Host header must name this server. Bound to loopback, only loopback names are accepted:
 * a page on evil.example that rebinds its name to 127.0.0.1 sends `Host: evil.example`. Bound to
 * another address, the names in `allowedHosts` (and loopback) are accepted, nothing else.
 */
export function hostAllowed(hostHeader: string | undefined, policy: HostPolicy): boolean {
  if (hostHeader === undefined) return true // HTTP/1.0 and raw clients; the token still applies
  let url: URL
  try {
    url = new URL(`http://${hostHeader}`)
  } catch {
    return false
  }
  const port = url.port === '' ? 80 : Number(url.port)
  if (port !== policy.port) return false
  if (isLoopback(url.hostname)) return true
  if (isLoopback(policy.boundHost)) return false
  const name = normalHost(url.hostname)
  return (policy.allowedHosts ?? []).some((h) => normalHost(h) === name)
}

/** The Host names a server bound to `bind` accepts besides loopback (see HostPolicy.allowedHosts). */
export function allowedHostNames(bind: string, extra: readonly string[], machine: { hostname: string; addresses: string[] }): string[] {
  const names = new Set<string>(extra)
  if (bind === '0.0.0.0' || bind === '::' || bind === '') {
    names.add(machine.hostname)
    for (const a of machine.addresses) names.add(a)
  } else if (!isLoopback(bind)) names.add(bind)
  return [...names]
}

// ---------------------------------------------------------------------------------------------
// Folders a server-mode client may name

/** Whether `path` is `root` or inside it (both absolute, already resolved). */
export function isInside(path: string, root: string): boolean {
  const rel = relative(root, path)
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))
}

/**
 * The real location of a path, following symbolic links; for a path that does not exist yet
 * (an export's output folder), its nearest existing parent's real location plus the rest.
 */
export function realLocation(path: string): string {
  let p = resolve(path)
  const rest: string[] = []
  for (;;) {
    try {
      return join(realpathSync(p), ...rest.reverse())
    } catch {
      const parent = dirname(p)
      if (parent === p) return resolve(path)
      rest.push(basename(p))
      p = parent
    }
  }
}

/** What a refusal of a path outside the allowed folders says to do (the models list says it otherwise). */
export const OUTSIDE_ADVICE = 'start the server with --allow-dir to add one'

/**
 * In server mode every path a request names must lie under an allowed folder (--allow-dir;
 * default the workspace, the user's home and the bundled resources): with the token a client
 * could otherwise read any file the server's user can. Returns the first refused field, or null.
 */
export function refusedPath(
  paths: readonly { field: string; path: string }[],
  roots: readonly string[],
): { field: string; path: string; message: string } | null {
  const real = roots.map((r) => realLocation(r))
  for (const { field, path: given } of paths) {
    // Checked as the schema reads it: trimmed (" /etc/x" is the service's "/etc/x").
    const path = given.trim()
    // An empty path (spaces only too) is the schema's to refuse ("must not be empty"), not a
    // place to check.
    if (path === '') continue
    // A shell's "~" means nothing to the server's file system: say so, not "a relative path".
    if (/^~($|[\\/])/.test(path))
      return {
        field,
        path,
        message: `${field}: ${path} starts with "~", which only a shell expands; write the full path (${path.replace(/^~/, homedir())})`,
      }
    // Relative to the server's working folder, which a browser's user cannot see: said as such
    // (it read "outside the folders this server may read and write").
    if (!isAbsolute(path)) return { field, path, message: `${field}: ${path} is a relative path; write its full path on the server` }
    const where = realLocation(path)
    if (!real.some((r) => isInside(where, r))) {
      // A link inside an allowed folder to a place outside it: said as such (it read "/home/me/x
      // is outside the folders …" of a path under /home/me).
      const linked = where !== resolve(path) && real.some((r) => isInside(resolve(path), r))
      return {
        field,
        path,
        message: `${field}: ${path}${linked ? ` is a link to ${where}, which is` : ' is'} outside the folders this server may read and write (${roots.join(', ')}); ${OUTSIDE_ADVICE}`,
      }
    }
  }
  return null
}

/**
 * Only the server's own origin may call it from a browser. A missing Origin is a non-browser
 * client (curl, scripts), which the token alone admits; browsers always send Origin on POST and
 * on WebSocket handshakes.
 */
export function originAllowed(origin: string | undefined, hostHeader: string | undefined): boolean {
  if (origin === undefined) return true
  if (hostHeader === undefined) return false
  return origin === `http://${hostHeader}`
}

/** The renderer's Content Security Policy (as index.html's meta tag, plus what only a header can say). */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  // The page URL carries the token: never send it on in a Referer.
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
  'Permissions-Policy': 'camera=(), microphone=(), geolocation=(), usb=(), serial=()',
}
