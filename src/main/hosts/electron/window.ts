/** The app's one window, locked down: isolated, sandboxed, no new windows, no navigation away. */
import { BrowserWindow, shell } from 'electron'
import { type AppLocation, isAllowedExternal, isAppUrl } from './appUrl'

export interface WindowOptions {
  preload: string
  location: AppLocation
  title: string
  icon?: string
  log?: (message: string) => void
  /** DevTools can be opened (development only). */
  devTools?: boolean
}

/** The window's webPreferences: isolated, sandboxed, no Node, no webviews, DevTools only when asked. */
export function windowPreferences(preload: string, devTools: boolean): Electron.WebPreferences {
  return {
    preload,
    contextIsolation: true,
    sandbox: true,
    nodeIntegration: false,
    nodeIntegrationInWorker: false,
    nodeIntegrationInSubFrames: false,
    webviewTag: false,
    webSecurity: true,
    allowRunningInsecureContent: false,
    spellcheck: false,
    devTools,
  }
}

export function createMainWindow(options: WindowOptions): BrowserWindow {
  const log = options.log ?? (() => {})
  const win = new BrowserWindow({
    width: 1280,
    height: 840,
    minWidth: 800,
    minHeight: 560,
    show: false,
    title: options.title,
    backgroundColor: '#f6f7f9',
    ...(options.icon ? { icon: options.icon } : {}),
    webPreferences: windowPreferences(options.preload, options.devTools ?? false),
  })
  win.once('ready-to-show', () => win.show())
  restrictNavigation(win, options.location, log)

  void win.loadURL(options.location.url)
  return win
}

/**
 * Denies new windows (links to the allowed documentation hosts open in the user's browser),
 * navigation off the app, webviews, and every permission request and check.
 */
export function restrictNavigation(win: BrowserWindow, location: AppLocation, log: (message: string) => void): void {
  const contents = win.webContents
  contents.setWindowOpenHandler(({ url }) => {
    if (isAllowedExternal(url)) void shell.openExternal(url)
    else log(`denied a new window for ${url}`)
    return { action: 'deny' }
  })
  const guard = (event: { url: string; preventDefault(): void }): void => {
    if (isAppUrl(event.url, location)) return
    event.preventDefault()
    log(`blocked navigation to ${event.url}`)
  }
  contents.on('will-navigate', guard)
  contents.on('will-redirect', guard)
  contents.on('will-attach-webview', (event) => event.preventDefault())
  // The app needs no device or media permission.
  contents.session.setPermissionRequestHandler((_wc, _permission, callback) => callback(false))
  contents.session.setPermissionCheckHandler(() => false)
}
