/**
 * The renderer's handle on the API. main.ts installs one transport at start (IPC in the app,
 * HTTP + WebSocket in a browser); stores get it from here. Only stores call it.
 *
 * Server mode also has an uploader (files from the browser into the server's workspace); the
 * desktop app has none (its files are on the same machine, named by path).
 */
import type { WorkbenchBridge } from '../../../shared/bridge'
import type { Uploader } from './upload'

let current: WorkbenchBridge | undefined
let uploader: Uploader | null = null

export function setUploader(next: Uploader | null): void {
  uploader = next
}

/** The uploader of server mode, or null (the desktop app). */
export function useUploader(): Uploader | null {
  return uploader
}

export function setWorkbench(client: WorkbenchBridge): void {
  current = client
}

export function useWorkbench(): WorkbenchBridge {
  if (!current) throw new Error('the workbench client is not installed (setWorkbench in main.ts)')
  return current
}
