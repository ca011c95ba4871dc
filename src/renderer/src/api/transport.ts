/**
 * Chooses how the renderer reaches the API: the preload's `window.workbench` in the desktop app,
 * else HTTP + WebSocket to the server that served this page, with the token from the page URL.
 * Either way the rest of the UI sees one WorkbenchBridge.
 */
import { ApiError } from '../../../shared/api'
import type { WorkbenchBridge } from '../../../shared/bridge'
import { httpBridge } from './http'
import { type Uploader, httpUploader } from './upload'

const TOKEN_KEY = 'moe-workbench.token'

export function chooseTransport(win: Window = window): WorkbenchBridge {
  if (win.workbench) return withApiErrors(win.workbench)
  return httpBridge({
    origin: win.location.origin,
    token: takeToken(win),
    // A refused token stays refused (the server prints a new one when it restarts): forget it.
    onUnauthorized: () => win.sessionStorage.removeItem(TOKEN_KEY),
  })
}

/** Server mode's uploader (the desktop app has none: its file dialog and drops give paths). */
export function chooseUploader(win: Window = window): Uploader | null {
  if (win.workbench) return null
  return httpUploader({ origin: win.location.origin, token: takeToken(win) })
}

/**
 * The server's token: from `?token=` on first load (then removed from the address bar, so it is
 * not bookmarked or shared by accident) and kept for this tab in sessionStorage.
 */
export function takeToken(win: Window): string | undefined {
  const url = new URL(win.location.href)
  const fromUrl = url.searchParams.get('token')
  if (fromUrl) {
    win.sessionStorage.setItem(TOKEN_KEY, fromUrl)
    url.searchParams.delete('token')
    win.history.replaceState(win.history.state, '', url.pathname + url.search + url.hash)
    return fromUrl
  }
  return win.sessionStorage.getItem(TOKEN_KEY) ?? undefined
}

/**
 * The preload rejects with plain `{code, message, field}` objects (contextBridge would strip an
 * Error's properties); turn them back into ApiError, so callers see the same errors as over HTTP.
 */
export function withApiErrors(bridge: WorkbenchBridge): WorkbenchBridge {
  const wrap =
    (fn: (...args: unknown[]) => Promise<unknown>) =>
    async (...args: unknown[]): Promise<unknown> => {
      try {
        return await fn(...args)
      } catch (e) {
        throw ApiError.from(e)
      }
    }
  // Every namespace's methods (system.info, models.inspect...); onEvent passes through.
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(bridge)) {
    out[key] =
      typeof value === 'object' && value !== null
        ? Object.fromEntries(
            Object.entries(value as Record<string, unknown>).map(([name, fn]) => [
              name,
              typeof fn === 'function' ? wrap(fn as (...args: unknown[]) => Promise<unknown>) : fn,
            ]),
          )
        : value
  }
  return out as unknown as WorkbenchBridge
}
