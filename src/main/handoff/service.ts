/**
 * The service side of runs.handoff and runs.importAdapter. A handoff streams the dataset's rows
 * and writes small files (asynchronous I/O, as dataset imports do on the service's thread); an
 * import reads and converts adapter tensors, so it runs in the engine process.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ApiError, type WorkbenchApi } from '../../shared/api'
import { validateRunConfig, type RunConfig } from '../../shared/runConfig'
import type { EngineClient } from '../service/engineClient'
import { newRunId, readRun, runsDir } from '../service/workspace'
import { HandoffError, writeHandoff, type HandoffSource } from './handoff'

export interface HandoffContext {
  engine: EngineClient
  workspace: string
}

function requireFolder(dir: string, field: string): void {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new ApiError('invalid_argument', `${field}: ${dir} is not a folder`, field)
}

export function handoffMethods(ctx: HandoffContext): Pick<WorkbenchApi, 'runs.handoff' | 'runs.importAdapter'> {
  const { workspace } = ctx
  return {
    'runs.handoff': async (args) => {
      let source: HandoffSource
      if (args.run !== undefined) {
        if (args.config !== undefined || args.model !== undefined)
          throw new ApiError('invalid_argument', 'run: give a run, or a config with a model and a dataset, not both', 'run')
        const record = readRun(workspace, args.run)
        const dataset = args.dataset ?? record.dataset
        if (!dataset)
          throw new ApiError(
            'invalid_argument',
            `dataset: run ${args.run} was started outside the workspace (no dataset id); name one`,
            'dataset',
          )
        source = { config: record.config, modelDir: record.baseModel, dataset, from: record.id, ...(record.esft && { esft: record.esft }) }
      } else {
        if (args.model === undefined) throw new ApiError('invalid_argument', 'model: give the base model folder (or a run)', 'model')
        if (args.dataset === undefined)
          throw new ApiError('invalid_argument', 'dataset: give a dataset of the workspace (or a run)', 'dataset')
        // The schema validated the config and filled its defaults at the boundary.
        source = {
          config: (args.config as RunConfig | undefined) ?? validateRunConfig({}),
          modelDir: args.model,
          dataset: args.dataset,
          from: 'a run config',
        }
      }
      requireFolder(source.modelDir, args.run !== undefined ? 'run.baseModel' : 'model')
      try {
        return await writeHandoff(source, {
          workspace,
          target: args.target,
          outDir: args.outDir,
          modelRef: args.modelRef,
          copyModel: args.copyModel,
          nodes: args.nodes,
          gpusPerNode: args.gpusPerNode,
          gpuMemoryGiB: args.gpuMemoryGiB,
        })
      } catch (e) {
        if (e instanceof HandoffError) {
          const field = /^(\w+):/.exec(e.message)?.[1]
          throw new ApiError('invalid_argument', e.message, field)
        }
        throw e
      }
    },
    'runs.importAdapter': async (args) => {
      requireFolder(args.dir, 'dir')
      let model = args.model
      if (model === undefined) {
        // PEFT records the base model it was trained on: use it when it is a folder here.
        let base: unknown
        try {
          base = (JSON.parse(readFileSync(join(args.dir, 'adapter_config.json'), 'utf8')) as Record<string, unknown>)
            .base_model_name_or_path
        } catch {
          base = undefined
        }
        if (typeof base === 'string' && existsSync(join(resolve(args.dir), base, 'config.json'))) model = resolve(args.dir, base)
        else if (typeof base === 'string' && existsSync(join(base, 'config.json'))) model = base
        else
          throw new ApiError(
            'invalid_argument',
            `model: give the base model folder (the adapter names ${typeof base === 'string' ? JSON.stringify(base) : 'no base model'}, which is not a model folder here)`,
            'model',
          )
      }
      requireFolder(model, 'model')
      return ctx.engine.request('adapters.import', {
        dir: resolve(args.dir),
        model: resolve(model),
        runsRoot: runsDir(workspace),
        runId: newRunId(args.name ?? 'imported-adapter'),
        name: args.name,
      })
    },
  }
}
