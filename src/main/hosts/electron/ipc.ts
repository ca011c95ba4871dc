/**
 * The Electron host of the API: one invoke channel per method, registered through one typed
 * `handle()` wrapper. Every call passes the same guard (the sender must be the app's window, its
 * top frame, showing the app's page; see electron/fiddle src/main/ipc.ts) and is validated
 * against the shared schema before it reaches the service. Results and errors travel as an
 * Envelope, so the renderer gets the error's code and field, not Electron's wrapped message.
 */
import { type BrowserWindow, type IpcMainInvokeEvent, ipcMain } from 'electron'
import { ApiError, type ArgsOf, type Envelope, METHODS, type Method, type ResultOf, type Unsubscribe } from '../../../shared/api'
import { IPC_EVENT_CHANNEL, ipcChannel } from '../../../shared/ipc'
import { validateArgs } from '../../../shared/schema'
import type { Workbench } from '../../service/workbench'
import { type AppLocation, isAppUrl } from './appUrl'

export interface SenderPolicy {
  /** The app's window, or null while there is none. */
  window: () => BrowserWindow | null
  location: AppLocation
}

/** Whether an IPC message comes from the app's own page in the app's own window. */
export function isTrustedSender(event: IpcMainInvokeEvent, policy: SenderPolicy): boolean {
  const win = policy.window()
  if (!win || win.isDestroyed()) return false
  if (event.sender !== win.webContents) return false
  const frame = event.senderFrame
  // null: the frame navigated away or was destroyed; a parent: a subframe. Neither is the app.
  if (!frame || frame.parent !== null) return false
  return isAppUrl(frame.url, policy.location)
}

export class UntrustedSenderError extends Error {}

/**
 * Registers `impl` for `method`: guard, validate, run, wrap in an Envelope. Returns the
 * function that removes the handler.
 */
export function handle<K extends Method>(method: K, impl: (args: ArgsOf<K>) => Promise<ResultOf<K>>, policy: SenderPolicy): Unsubscribe {
  const channel = ipcChannel(method)
  ipcMain.handle(channel, async (event, raw: unknown): Promise<Envelope<ResultOf<K>>> => {
    if (!isTrustedSender(event, policy)) {
      // Not an Envelope: a foreign page learns nothing beyond the refusal.
      throw new UntrustedSenderError(
        `${channel}: refused a message from a sender that is not the app's window (${event.senderFrame?.url ?? 'unknown frame'})`,
      )
    }
    try {
      const args = validateArgs(method, raw)
      return { ok: true, value: await impl(args) }
    } catch (e) {
      return { ok: false, error: ApiError.from(e).toJSON() }
    }
  })
  return () => ipcMain.removeHandler(channel)
}

/**
 * Serves every API method of `workbench` over IPC and forwards its events to the window.
 * Returns the function that undoes all of it.
 */
export function registerApi(workbench: Workbench, policy: SenderPolicy): Unsubscribe {
  const removers = METHODS.map((method) => handle(method, (args) => workbench.call(method, args), policy))
  const offEvents = workbench.onEvent((event) => {
    const win = policy.window()
    if (win && !win.isDestroyed() && !win.webContents.isDestroyed()) win.webContents.send(IPC_EVENT_CHANNEL, event)
  })
  return () => {
    offEvents()
    for (const remove of removers) remove()
  }
}
