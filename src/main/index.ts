/**
 * Electron main process: one window, the Workbench service behind IPC, the engine in a
 * utilityProcess. Everything heavy happens in the engine; this process only routes.
 */
import { fileURLToPath } from 'node:url'
import { BrowserWindow, app } from 'electron'
import { APP_IDENTITY, APP_NAME } from './appInfo'
import { EngineClient } from './service/engineClient'
import { Workbench } from './service/workbench'
import { appLocation } from './hosts/electron/appUrl'
import { utilityProcessSpawner } from './hosts/electron/engine'
import { registerApi } from './hosts/electron/ipc'
import { handleAppProtocol, registerAppScheme } from './hosts/electron/protocol'
import { installMenu } from './hosts/electron/menu'
import { createMainWindow } from './hosts/electron/window'

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url))

// Before ready: the built renderer is served from app://workbench/, not file://.
registerAppScheme()

if (!app.requestSingleInstanceLock()) {
  app.quit()
} else {
  let mainWindow: BrowserWindow | null = null
  const location = appLocation(process.env, here('../renderer'), app.isPackaged)
  // DevTools and the dev server URL exist in development only.
  const development = !app.isPackaged && location.kind === 'dev'
  const engine = new EngineClient(utilityProcessSpawner(here('./engine.js')))
  const workbench = new Workbench({
    engine,
    host: 'electron',
    app: APP_IDENTITY,
    runtime: { node: process.versions.node, electron: process.versions.electron, platform: process.platform, arch: process.arch },
    firstRun: true,
  })
  const log = (message: string): void => workbench.log('warn', message, 'electron')

  app.setName(APP_NAME)
  app.on('second-instance', () => {
    if (!mainWindow) return
    if (mainWindow.isMinimized()) mainWindow.restore()
    mainWindow.focus()
  })

  const openWindow = (): void => {
    mainWindow = createMainWindow({ preload: here('../preload/index.cjs'), location, title: APP_NAME, log, devTools: development })
    mainWindow.on('closed', () => (mainWindow = null))
  }

  void app.whenReady().then(() => {
    if (location.kind === 'app') handleAppProtocol(location.dir)
    installMenu({ dev: development })
    registerApi(workbench, { window: () => mainWindow, location })
    // Start the engine while the window loads; a failure shows up in system.info.
    workbench.start().catch((e: unknown) => log(`engine: ${e instanceof Error ? e.message : String(e)}`))
    openWindow()
    app.on('activate', () => {
      if (BrowserWindow.getAllWindows().length === 0) openWindow()
    })
  })

  app.on('window-all-closed', () => {
    if (process.platform !== 'darwin') app.quit()
  })

  let closing = false
  app.on('will-quit', (event) => {
    if (closing) return
    closing = true
    event.preventDefault()
    void workbench.close().finally(() => app.quit())
  })
}
