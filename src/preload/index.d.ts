import type { WorkbenchBridge } from '../shared/bridge'

declare global {
  interface Window {
    /** The API, exposed by the preload in the desktop app; absent in a browser (server mode). */
    workbench?: WorkbenchBridge & {
      /** The path of a dropped file or folder (desktop app only). */
      pathForFile?: (file: File) => string
    }
  }
}

export {}
