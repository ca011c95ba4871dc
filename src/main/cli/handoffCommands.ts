/**
 * `moe-workbench handoff` (the service's runs.handoff) and `moe-workbench adapter import` (its
 * runs.importAdapter): hand a run to LLaMA-Factory or axolotl, bring the adapter back.
 */
import { gib } from '../handoff/deepspeed'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { isAbsolute, join, resolve } from 'node:path'
import { HANDOFF_TARGETS, notCarried, type HandoffTarget } from '../../shared/handoff'
import { applyOverrides } from '../../shared/runConfig'
import { parseBytes } from './commands'
import { cliError, openHost, requireModelFolder } from './host'
import { locateRun, resolveDataset } from './trainCommands'
import { parseJsonFile, UsageError, type CliIo, type ParsedValues } from './util'

function positiveInt(values: ParsedValues, flag: string): number | undefined {
  const v = values[flag]
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag}: "${String(v)}" must be a whole number, at least 1`)
  return n
}

/** A run config file (JSON) with --set overrides. */
function readConfigFile(file: string, sets: string[]): Record<string, unknown> {
  const base = parseJsonFile(file, readFileSync(file, 'utf8'), (m) => new UsageError(m))
  if (typeof base !== 'object' || base === null || Array.isArray(base))
    throw new UsageError(`${file}: must hold a JSON object (a run config)`)
  // A run.json holds its config under "config".
  const obj = base as Record<string, unknown>
  const config = 'config' in obj && 'status' in obj && typeof obj.config === 'object' ? (obj.config as Record<string, unknown>) : obj
  return applyOverrides(config, sets)
}

export async function handoffCommand(values: ParsedValues, io: CliIo, positionals: string[]): Promise<number> {
  if (positionals.length !== 1) throw new UsageError('handoff takes one RUN (a run folder, id or name) or CONFIG (a run config .json)')
  const target = values.target
  if (typeof target !== 'string' || !(HANDOFF_TARGETS as readonly string[]).includes(target))
    throw new UsageError(`--target: ${target === undefined ? 'missing' : `"${String(target)}"`}; use one of ${HANDOFF_TARGETS.join(', ')}`)
  if (typeof values.out !== 'string' || values.out === '')
    throw new UsageError('--out DIR is required: the folder to write (missing or empty)')
  const arg = positionals[0]
  const asFile = resolve(arg)
  const isConfig = existsSync(asFile) && statSync(asFile).isFile()
  const located = isConfig ? undefined : locateRun(arg, values)
  if (isConfig && (typeof values.model !== 'string' || typeof values.dataset !== 'string'))
    throw new UsageError('a run config needs --model DIR and --dataset ID|FILE (a dataset of the workspace, or a file to import)')
  if (!isConfig && values.set !== undefined) throw new UsageError('--set applies to a CONFIG file; a run hands off its own config')
  const gpuMemory = values['gpu-memory'] === undefined ? undefined : parseBytes(String(values['gpu-memory']), '--gpu-memory') / 2 ** 30
  const host = openHost(located?.workspace ? { ...values, workspace: located.workspace } : values, io)
  try {
    // The config and model are checked before a dataset file is imported for them.
    const config = isConfig ? readConfigFile(asFile, (values.set as string[] | undefined) ?? []) : undefined
    const model = isConfig ? requireModelFolder(String(values.model), values) : undefined
    // A file is imported first (as train and eval do), so the job folder gets the workspace's copy.
    const dataset = typeof values.dataset === 'string' ? await resolveDataset(host, values.dataset, 0.1, io) : undefined
    const r = await host.api['runs.handoff']({
      target: target as HandoffTarget,
      outDir: resolve(values.out),
      ...(isConfig
        ? {
            config: config!,
            model: model!,
            dataset: dataset!,
          }
        : { run: located!.id, ...(dataset && { dataset }) }),
      ...(typeof values['model-ref'] === 'string' && { modelRef: values['model-ref'] }),
      ...(values['copy-model'] === true && { copyModel: true }),
      ...(positiveInt(values, 'nodes') !== undefined && { nodes: positiveInt(values, 'nodes') }),
      ...(positiveInt(values, 'gpus-per-node') !== undefined && { gpusPerNode: positiveInt(values, 'gpus-per-node') }),
      ...(gpuMemory !== undefined && { gpuMemoryGiB: gpuMemory }),
    })
    io.out(`wrote ${r.outDir} for ${r.target}: ${r.files.join(', ')}`)
    io.out(`model      ${r.modelRef}`)
    // The default (neither --copy-model nor --model-ref): a path the cluster must see as it is here.
    if (values['model-ref'] === undefined && values['copy-model'] !== true && isAbsolute(r.modelRef))
      io.err(
        `note: model: the cluster reads ${r.modelRef} as this machine's path (a shared file system); otherwise give --copy-model (a copy inside the folder) or --model-ref HUB_ID`,
      )
    io.out(
      `deepspeed  ZeRO-${r.deepspeed.stage}${r.deepspeed.offload ? ' with CPU offload' : ''} (${r.deepspeed.file}), about ${gib(r.memoryPerDevice)} per device`,
    )
    const none = notCarried(r.mapping)
    io.out(
      `settings   ${r.mapping.filter((m) => m.equivalent === 'mapped').length} mapped; ${none.length ? `in use with no equivalent there: ${none.join(', ')}` : 'every setting in use carries'}; the table is in README.md`,
    )
    for (const w of r.warnings) io.err(`note: ${w}`)
    io.out('launch (from the folder):')
    for (const l of r.launch.single) io.out(`  ${l}`)
    return 0
  } catch (e) {
    // A run whose dataset was deleted since: say how to hand it off anyway (it said only "no dataset X").
    if (!isConfig && typeof values.dataset !== 'string' && e instanceof Error && /\bno dataset \S+ in\b/.test(e.message))
      throw new UsageError(`${e.message}: the run's dataset was deleted; hand the run off with another: --dataset ID|FILE`)
    throw cliError(e, {
      outDir: '--out',
      modelRef: '--model-ref',
      nodes: '--nodes',
      gpusPerNode: '--gpus-per-node',
      gpuMemoryGiB: '--gpu-memory',
    })
  } finally {
    await host.close()
  }
}

export async function adapterCommand(values: ParsedValues, io: CliIo, positionals: string[]): Promise<number> {
  const [sub, dir, ...rest] = positionals
  if (sub !== 'import' || dir === undefined || rest.length)
    throw new UsageError('usage: moe-workbench adapter import DIR [--model BASE] [--name NAME] (DIR: a PEFT adapter folder)')
  const abs = resolve(dir)
  if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new UsageError(`${abs} is not a folder`)
  if (!existsSync(join(abs, 'adapter_config.json')))
    throw new UsageError(
      `${abs} has no adapter_config.json: not a PEFT adapter folder${existsSync(join(abs, 'config.json')) ? ' (it is a model folder: use it directly with --model)' : ''}`,
    )
  const host = openHost(values, io)
  try {
    const record = await host.api['runs.importAdapter']({
      dir: abs,
      ...(typeof values.model === 'string' && { model: requireModelFolder(values.model, values) }),
      ...(typeof values.name === 'string' && { name: values.name }),
    })
    io.out(`imported as run ${record.id} on ${record.baseModel}`)
    io.out(record.message ?? '')
    io.out(
      `evaluate: moe-workbench eval --model ${record.id}${values.workspace ? ` --workspace ${String(values.workspace)}` : ''} --dataset ID`,
    )
    io.out(`merge:    moe-workbench export ${record.id}${values.workspace ? ` --workspace ${String(values.workspace)}` : ''} --out DIR`)
    return 0
  } catch (e) {
    throw cliError(e)
  } finally {
    await host.close()
  }
}
