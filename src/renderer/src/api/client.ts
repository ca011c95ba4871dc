/**
 * The renderer's handle on the API. main.ts installs one transport at start (IPC in the app,
 * HTTP + WebSocket in a browser); stores get it from here. Only stores call it.
 */
import type { WorkbenchBridge } from '../../../shared/bridge'

let current: WorkbenchBridge | undefined

export function setWorkbench(client: WorkbenchBridge): void {
  current = client
}

export function useWorkbench(): WorkbenchBridge {
  if (!current) throw new Error('the workbench client is not installed (setWorkbench in main.ts)')
  return current
}
