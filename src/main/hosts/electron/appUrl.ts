/**
 * Where the app's pages come from, and whether a URL is one of them. Used to limit navigation
 * and to trust IPC senders. Pure (no electron import) so it is unit-tested directly.
 *
 * The built renderer is served from the custom scheme app://workbench/ (./protocol.ts), not
 * file://: a file:// page shares its origin with every file on disk. The Vite dev server is used
 * only in development (not packaged, ELECTRON_RENDERER_URL set by electron-vite dev).
 */

/** The custom scheme and host of the built renderer. */
export const APP_SCHEME = 'app'
export const APP_HOST = 'workbench'
export const APP_ORIGIN = `${APP_SCHEME}://${APP_HOST}`

export type AppLocation =
  /** `electron-vite dev`: the renderer is served by Vite at this URL. */
  | { kind: 'dev'; url: string }
  /** Built: the renderer's files in `dir`, served as app://workbench/. */
  | { kind: 'app'; dir: string; url: string }

/**
 * The dev server only in development; otherwise the built renderer folder over app://. A packaged
 * app ignores ELECTRON_RENDERER_URL (anyone could set it to point the app at their own page).
 */
export function appLocation(env: NodeJS.ProcessEnv, rendererDir: string, packaged: boolean): AppLocation {
  const dev = env.ELECTRON_RENDERER_URL
  return !packaged && dev ? { kind: 'dev', url: dev } : { kind: 'app', dir: rendererDir, url: `${APP_ORIGIN}/index.html` }
}

/** True for the app's own pages (any path, hash or query on its origin), false for anything else. */
export function isAppUrl(url: string, location: AppLocation): boolean {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return false
  }
  if (location.kind === 'dev') return parsed.origin === new URL(location.url).origin
  return parsed.protocol === `${APP_SCHEME}:` && parsed.host === APP_HOST
}

/**
 * Links the app may open in the user's browser: https only, to the documentation and model hubs
 * the UI links to. Anything else (file:, custom schemes, other sites) is refused.
 */
export const EXTERNAL_HOSTS = [
  'huggingface.co',
  'github.com',
  'docs.github.com',
  'arxiv.org',
  'pytorch.org',
  'llamafactory.readthedocs.io',
  'docs.axolotl.ai',
  'www.deepspeed.ai',
]

export function isAllowedExternal(url: string): boolean {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return false
  }
  return parsed.protocol === 'https:' && parsed.username === '' && parsed.password === '' && EXTERNAL_HOSTS.includes(parsed.hostname)
}
