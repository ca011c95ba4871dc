/**
 * The client shape of the API: one named method per operation (`workbench.models.inspect(dir)`)
 * and one event subscription returning its unsubscribe function.
 *
 * The preload exposes it as `window.workbench` over IPC; the browser build implements it over
 * HTTP + WebSocket. Both build it with `createBridge` from a generic `invoke`, so the mapping
 * from named methods to API methods is written once. Dependency-free (bundled into the preload).
 */
import type { ArgsOf, Method, ModelInfo, ResultOf, SystemInfo, Unsubscribe, WorkbenchEvent } from './api'
import type { DatasetManifest, DatasetsImportArgs, DatasetsInspectArgs, InspectResult } from './dataset'

export interface WorkbenchBridge {
  system: {
    info(): Promise<SystemInfo>
  }
  models: {
    inspect(dir: string): Promise<ModelInfo>
  }
  datasets: {
    inspect(args: DatasetsInspectArgs): Promise<InspectResult>
    import(args: DatasetsImportArgs): Promise<DatasetManifest>
    list(): Promise<DatasetManifest[]>
  }
  /** Subscribes to the event stream; returns the function that unsubscribes. */
  onEvent(listener: (event: WorkbenchEvent) => void): Unsubscribe
}

export type Invoke = <M extends Method>(method: M, args: ArgsOf<M>) => Promise<ResultOf<M>>
export type Subscribe = (listener: (event: WorkbenchEvent) => void) => Unsubscribe

export function createBridge(invoke: Invoke, subscribe: Subscribe): WorkbenchBridge {
  return {
    system: {
      info: () => invoke('system.info', undefined),
    },
    models: {
      inspect: (dir: string) => invoke('models.inspect', { dir }),
    },
    datasets: {
      inspect: (args) => invoke('datasets.inspect', args),
      import: (args) => invoke('datasets.import', args),
      list: () => invoke('datasets.list', undefined),
    },
    onEvent: (listener) => subscribe(listener),
  }
}
