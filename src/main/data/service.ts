/**
 * The datasets.* methods of the Workbench service (src/main/service/workbench.ts): the API's
 * arguments turned into the library's options, progress turned into dataset.progress events.
 */
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import type { DatasetManifest, DatasetProgressEvent, DatasetsImportArgs, DatasetsInspectArgs, InspectResult } from '../../shared/dataset'
import { type InspectOptions, inspectDataset } from './inspect'
import { loadChatTemplate } from './template'
import { loadTokenizer } from './tokenizer'
import { importDataset, listDatasets } from './workspace'

/** The workspace when none is configured: $MOE_WORKBENCH_WORKSPACE, else ~/moe-workbench. */
export function defaultWorkspace(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MOE_WORKBENCH_WORKSPACE?.trim()
  return configured ? resolve(configured) : join(homedir(), 'moe-workbench')
}

export interface DatasetMethods {
  'datasets.inspect': (args: DatasetsInspectArgs) => Promise<InspectResult>
  'datasets.import': (args: DatasetsImportArgs) => Promise<DatasetManifest>
  'datasets.list': (args: void) => Promise<DatasetManifest[]>
}

export function datasetMethods(workspace: string, emit: (event: DatasetProgressEvent) => void): DatasetMethods {
  const readOptions = async (args: DatasetsInspectArgs, operation: 'inspect' | 'import'): Promise<InspectOptions> => {
    const options: InspectOptions = {
      layout: args.layout,
      mapping: args.mapping,
      maxLength: args.maxLength,
      format: args.format,
      textUnit: args.textUnit,
      preview: args.preview,
      onProgress: (progress) => emit({ type: 'dataset.progress', time: Date.now(), operation, file: args.file, progress }),
    }
    if (args.model !== undefined) {
      options.tokenizer = await loadTokenizer(args.model)
      options.template = await loadChatTemplate(args.model)
    }
    return options
  }
  return {
    'datasets.inspect': async (args) => inspectDataset(args.file, await readOptions(args, 'inspect')),
    'datasets.import': async (args) =>
      importDataset(workspace, args.file, {
        ...(await readOptions(args, 'import')),
        name: args.name,
        acceptInvalid: args.acceptInvalid,
        split: args.split,
        dedupe: args.dedupe,
      }),
    'datasets.list': () => listDatasets(workspace),
  }
}
