/**
 * The datasets.* methods of the Workbench service (src/main/service/workbench.ts): the API's
 * arguments turned into the library's options, progress turned into dataset.progress events.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type {
  DatasetManifest,
  DatasetProgress,
  DatasetProgressEvent,
  DatasetsImportArgs,
  DatasetsInspectArgs,
  InspectResult,
} from '../../shared/dataset'
import { ApiError } from '../../shared/api'
import { DatasetError } from './errors'
import { runDatasetWorker } from './workerClient'
import { listDatasets } from './workspace'

/** The workspace when none is configured: $MOE_WORKBENCH_WORKSPACE, else ~/moe-workbench. */
export function defaultWorkspace(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MOE_WORKBENCH_WORKSPACE?.trim()
  return configured ? resolve(configured) : join(homedir(), 'moe-workbench')
}

export interface DatasetMethods {
  'datasets.inspect': (args: DatasetsInspectArgs) => Promise<InspectResult>
  'datasets.import': (args: DatasetsImportArgs) => Promise<DatasetManifest>
  'datasets.list': (args: void) => Promise<DatasetManifest[]>
  'datasets.cancel': (args: { file: string }) => Promise<number>
}

/**
 * `ready` resolves before listing (a first start may still be importing the samples).
 */
export function datasetMethods(
  workspace: string,
  emit: (event: DatasetProgressEvent) => void,
  ready: () => Promise<void> = () => Promise.resolve(),
): DatasetMethods {
  /** Operations under way, by the file they read (what datasets.cancel names). */
  const running = new Map<string, Set<AbortController>>()
  const track = async <T>(file: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const controller = new AbortController()
    const set = running.get(file) ?? new Set<AbortController>()
    running.set(file, set.add(controller))
    try {
      return await work(controller.signal)
    } catch (e) {
      // A problem with one argument (a missing file, a mapped column the file lacks) is refused
      // by that field, as the schema's own checks are: a client can show it beside the input.
      if (e instanceof DatasetError && e.field !== undefined) throw new ApiError('invalid_argument', e.message, e.field)
      throw e
    } finally {
      set.delete(controller)
      if (set.size === 0) running.delete(file)
    }
  }
  const hooks = (operation: 'inspect' | 'import', file: string, signal: AbortSignal) => ({
    signal,
    onProgress: (progress: DatasetProgress) => emit({ type: 'dataset.progress', time: Date.now(), operation, file, progress }),
  })
  return {
    // Both run in a worker thread: tokenising a large file never blocks this thread.
    'datasets.inspect': (args) =>
      track(args.file, (signal) => runDatasetWorker('inspect', workspace, args, hooks('inspect', args.file, signal))),
    'datasets.import': (args) =>
      track(args.file, (signal) => runDatasetWorker('import', workspace, args, hooks('import', args.file, signal))),
    'datasets.cancel': async (args) => {
      const set = running.get(args.file)
      for (const c of set ?? []) c.abort()
      return set?.size ?? 0
    },
    'datasets.list': async () => {
      await ready()
      return listDatasets(workspace)
    },
  }
}
