/**
 * Where the app's pages come from, and whether a URL is one of them. Used to limit navigation
 * and to trust IPC senders. Pure (no electron import) so it is unit-tested directly.
 */
import { pathToFileURL } from 'node:url'

export type AppLocation =
  /** `electron-vite dev`: the renderer is served by Vite at this URL. */
  | { kind: 'dev'; url: string }
  /** Built: the renderer is this index.html file. */
  | { kind: 'file'; file: string }

export function appLocation(env: NodeJS.ProcessEnv, rendererIndex: string, packaged: boolean): AppLocation {
  const dev = env.ELECTRON_RENDERER_URL
  return !packaged && dev ? { kind: 'dev', url: dev } : { kind: 'file', file: rendererIndex }
}

/** True for the app's own page (any hash or query), false for anything else. */
export function isAppUrl(url: string, location: AppLocation): boolean {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return false
  }
  if (location.kind === 'dev') return parsed.origin === new URL(location.url).origin
  return parsed.protocol === 'file:' && parsed.pathname === pathToFileURL(location.file).pathname
}
