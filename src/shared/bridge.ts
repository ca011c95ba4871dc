/**
 * The client shape of the API: one named method per operation (`workbench.models.inspect(dir)`)
 * and one event subscription returning its unsubscribe function.
 *
 * The preload exposes it as `window.workbench` over IPC; the browser build implements it over
 * HTTP + WebSocket. Both build it with `createBridge` from a generic `invoke`, so the mapping
 * from named methods to API methods is written once. Dependency-free (bundled into the preload).
 */
import type { ArgsOf, Method, ModelInfo, ResultOf, SystemInfo, Unsubscribe, WorkbenchApi, WorkbenchEvent } from './api'
import type { DatasetManifest, DatasetsImportArgs, DatasetsInspectArgs, InspectResult } from './dataset'

export interface WorkbenchBridge {
  system: {
    info(): Promise<SystemInfo>
  }
  models: {
    /** configOnly: a folder with config.json and no weights yet is described from its config (ModelsInspectArgs). */
    inspect(dir: string, opts?: { configOnly?: boolean }): Promise<ModelInfo>
    list: WorkbenchApi['models.list']
    plan: WorkbenchApi['models.plan']
    create: WorkbenchApi['models.create']
    link: WorkbenchApi['models.link']
    delete: WorkbenchApi['models.delete']
  }
  datasets: {
    inspect(args: DatasetsInspectArgs): Promise<InspectResult>
    import(args: DatasetsImportArgs): Promise<DatasetManifest>
    list(): Promise<DatasetManifest[]>
    cancel(file: string): Promise<number>
    delete: WorkbenchApi['datasets.delete']
  }
  runs: {
    start: WorkbenchApi['runs.start']
    auto: WorkbenchApi['runs.auto']
    list: WorkbenchApi['runs.list']
    get: WorkbenchApi['runs.get']
    cancel: WorkbenchApi['runs.cancel']
    delete: WorkbenchApi['runs.delete']
    resume: WorkbenchApi['runs.resume']
    export: WorkbenchApi['runs.export']
    handoff: WorkbenchApi['runs.handoff']
    importAdapter: WorkbenchApi['runs.importAdapter']
  }
  chat: {
    send: WorkbenchApi['chat.send']
    cancel: WorkbenchApi['chat.cancel']
  }
  conversations: {
    list: WorkbenchApi['conversations.list']
    save: WorkbenchApi['conversations.save']
    delete: WorkbenchApi['conversations.delete']
  }
  experts: {
    analyze: WorkbenchApi['experts.analyze']
  }
  eval: {
    run: WorkbenchApi['eval.run']
  }
  tasks: {
    cancel(taskId: string): Promise<boolean>
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
      inspect: (dir: string, opts?: { configOnly?: boolean }) =>
        invoke('models.inspect', opts?.configOnly ? { dir, configOnly: true } : { dir }),
      list: () => invoke('models.list', undefined),
      plan: (args) => invoke('models.plan', args),
      create: (args) => invoke('models.create', args),
      link: (args) => invoke('models.link', args),
      delete: (args) => invoke('models.delete', args),
    },
    datasets: {
      inspect: (args) => invoke('datasets.inspect', args),
      import: (args) => invoke('datasets.import', args),
      list: () => invoke('datasets.list', undefined),
      cancel: (file: string) => invoke('datasets.cancel', { file }),
      delete: (args) => invoke('datasets.delete', args),
    },
    runs: {
      start: (args) => invoke('runs.start', args),
      auto: (args) => invoke('runs.auto', args),
      list: () => invoke('runs.list', undefined),
      get: (args) => invoke('runs.get', args),
      cancel: (args) => invoke('runs.cancel', args),
      delete: (args) => invoke('runs.delete', args),
      resume: (args) => invoke('runs.resume', args),
      export: (args) => invoke('runs.export', args),
      handoff: (args) => invoke('runs.handoff', args),
      importAdapter: (args) => invoke('runs.importAdapter', args),
    },
    chat: {
      send: (args) => invoke('chat.send', args),
      cancel: (args) => invoke('chat.cancel', args),
    },
    conversations: {
      list: () => invoke('conversations.list', undefined),
      save: (args) => invoke('conversations.save', args),
      delete: (args) => invoke('conversations.delete', args),
    },
    experts: {
      analyze: (args) => invoke('experts.analyze', args),
    },
    eval: {
      run: (args) => invoke('eval.run', args),
    },
    tasks: {
      cancel: (taskId: string) => invoke('tasks.cancel', { taskId }),
    },
    onEvent: (listener) => subscribe(listener),
  }
}
