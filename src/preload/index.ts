/**
 * The preload: exposes `window.workbench` (src/shared/bridge.ts), one named method per
 * operation and `onEvent` returning its unsubscribe. Never ipcRenderer itself, never a generic
 * send. Sandboxed: bundled into one CommonJS file that imports only `electron`.
 */
import { type IpcRendererEvent, contextBridge, ipcRenderer, webUtils } from 'electron'
import type { Envelope, WorkbenchEvent } from '../shared/api'
import { type Invoke, type Subscribe, createBridge } from '../shared/bridge'
import { IPC_EVENT_CHANNEL, ipcChannel } from '../shared/ipc'

const invoke: Invoke = async (method, args) => {
  const envelope = (await ipcRenderer.invoke(ipcChannel(method), args)) as Envelope<never>
  if (envelope.ok) return envelope.value
  // A plain object, not an Error: contextBridge copies an Error's message only, and the renderer
  // needs the code and the field (it rebuilds an ApiError from this).
  throw { name: 'ApiError', ...envelope.error }
}

const subscribe: Subscribe = (listener) => {
  const relay = (_event: IpcRendererEvent, event: WorkbenchEvent): void => listener(event)
  ipcRenderer.on(IPC_EVENT_CHANNEL, relay)
  return () => void ipcRenderer.removeListener(IPC_EVENT_CHANNEL, relay)
}

contextBridge.exposeInMainWorld('workbench', {
  ...createBridge(invoke, subscribe),
  /**
   * The path of a file or folder dropped on the window (Electron 32 removed File.path). Only the
   * preload can ask; the renderer then passes the path to the API like a typed one.
   */
  pathForFile: (file: File): string => webUtils.getPathForFile(file),
})
