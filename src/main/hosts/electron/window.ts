/** The app's one window, locked down: isolated, sandboxed, no new windows, no navigation away. */
import { BrowserWindow, shell } from 'electron'
import { type AppLocation, isAppUrl } from './appUrl'

export interface WindowOptions {
  preload: string
  location: AppLocation
  title: string
  icon?: string
  log?: (message: string) => void
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
    webPreferences: {
      preload: options.preload,
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webviewTag: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      spellcheck: false,
    },
  })
  win.once('ready-to-show', () => win.show())
  restrictNavigation(win, options.location, log)

  if (options.location.kind === 'dev') void win.loadURL(options.location.url)
  else void win.loadFile(options.location.file)
  return win
}

/** Denies new windows (https links open in the user's browser) and navigation off the app. */
export function restrictNavigation(win: BrowserWindow, location: AppLocation, log: (message: string) => void): void {
  const contents = win.webContents
  contents.setWindowOpenHandler(({ url }) => {
    if (url.startsWith('https://')) void shell.openExternal(url)
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
}
