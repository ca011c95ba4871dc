/**
 * The app:// scheme that serves the built renderer (instead of file://): the same resolution as
 * server mode (nothing outside the renderer folder, symbolic links included), with the same
 * security headers (CSP and friends). `appResponse` is pure Node and unit-tested; the Electron
 * registration is two calls.
 */
import { readFile } from 'node:fs/promises'
import { protocol } from 'electron'
import { SECURITY_HEADERS } from '../server/security'
import { resolveStatic } from '../server/static'
import { APP_HOST, APP_SCHEME } from './appUrl'

/** Must run before the app is ready: app:// behaves like https (standard, secure, fetch). */
export function registerAppScheme(): void {
  protocol.registerSchemesAsPrivileged([
    { scheme: APP_SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true, codeCache: true } },
  ])
}

/** Serves app://workbench/... from `rendererDir` (after the app is ready). */
export function handleAppProtocol(rendererDir: string): void {
  protocol.handle(APP_SCHEME, (request) => appResponse(rendererDir, request.url))
}

/** The response to an app:// request: the file, 404 for anything else, 403 for another host. */
export async function appResponse(rendererDir: string, url: string): Promise<Response> {
  const parsed = new URL(url)
  if (parsed.host !== APP_HOST) return new Response('not this app', { status: 403, headers: SECURITY_HEADERS })
  const file = await resolveStatic(rendererDir, parsed.pathname)
  if (!file) return new Response('not found', { status: 404, headers: SECURITY_HEADERS })
  return new Response(await readFile(file.path), {
    status: 200,
    headers: { ...SECURITY_HEADERS, 'Content-Type': file.type, 'Cache-Control': 'no-cache' },
  })
}
