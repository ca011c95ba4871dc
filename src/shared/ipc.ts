/** Electron IPC channel names, shared by the main process and the preload. */
import type { Method } from './api'

/** One invoke channel per API method: `workbench:models.inspect`. */
export function ipcChannel(method: Method): string {
  return `workbench:${method}`
}

/** The one push channel: main -> renderer, carrying WorkbenchEvent values. */
export const IPC_EVENT_CHANNEL = 'workbench:event'
