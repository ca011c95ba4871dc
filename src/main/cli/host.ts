/**
 * The CLI as a host of the Workbench service (DESIGN.md): `train`, `chat`, `export`, `dataset`
 * and `eval` build the same service the app and server mode use, with its engine process, its
 * workspace and its defaults. Only the low-level engine tools (info, forward, generate) call the
 * engine code directly.
 */
import { existsSync, statSync } from 'node:fs'
import { resolve } from 'node:path'
import { ApiError, BACKEND_NAMES, type BackendName, type WorkbenchEvent } from '../../shared/api'
import { defaultWorkspace } from '../data/service'
import { EngineClient, forkSpawner } from '../service/engineClient'
import { defaultModelDir } from '../service/firstRun'
import { BUNDLED_ID } from '../service/methods'
import { listModelFolders } from '../service/workspace'
import { Workbench } from '../service/workbench'
import { UsageError, type CliIo, type ParsedValues } from './util'

export function workspaceFromFlag(values: ParsedValues): string {
  return typeof values.workspace === 'string' ? resolve(values.workspace) : defaultWorkspace()
}

const isFolder = (dir: string): boolean => existsSync(dir) && statSync(dir).isDirectory()

/**
 * A model named on the command line: a folder as given, else the id of one of the workspace's
 * models as `model list` shows it (`default`: the bundled model); null where it is neither.
 */
export function modelFolderOf(arg: string, values: ParsedValues): string | null {
  const abs = resolve(arg)
  if (isFolder(abs)) return abs
  // By id as `model list` shows it, else by name ("Default", "my-model (fine-tuned)"): exactly,
  // else regardless of case where that names one model only.
  const models = [{ id: BUNDLED_ID, name: BUNDLED_ID, dir: defaultModelDir() }, ...listModelFolders(workspaceFromFlag(values))]
  const named = byIdOrName(models, arg)
  const dir = named.length === 1 ? named[0].dir : null
  return dir && isFolder(dir) ? dir : null
}

/**
 * What `arg` names among a list's items: the item with that id; else those with that name; else
 * those whose id or name is `arg` regardless of case and surrounding spaces. More than one: the
 * caller asks for an id.
 */
export function byIdOrName<T extends { id: string; name: string }>(items: readonly T[], arg: string): T[] {
  const byId = items.find((x) => x.id === arg)
  if (byId) return [byId]
  const exact = items.filter((x) => x.name === arg)
  if (exact.length) return exact
  const fold = (s: string): string => s.trim().toLowerCase()
  return items.filter((x) => fold(x.id) === fold(arg) || fold(x.name) === fold(arg))
}

/**
 * The one item byIdOrName finds for `arg` (undefined: none); a name that names several is refused
 * with their ids, as `<kind> list` shows them (`where`: the workspace, `flag`: the option it came in).
 */
export function oneByIdOrName<T extends { id: string; name: string }>(
  items: readonly T[],
  arg: string,
  kind: 'dataset' | 'model' | 'run',
  { where, flag }: { where?: string; flag?: string } = {},
): T | undefined {
  const named = byIdOrName(items, arg)
  if (named.length > 1)
    throw new UsageError(
      `${flag ? `${flag}: ` : ''}"${arg}" names ${named.length} ${kind}s${where ? ` of ${where}` : ''} (${named.map((x) => x.id).join(', ')}): give one's id (see moe-workbench ${kind} list)`,
    )
  return named[0]
}

/**
 * A warning where `made` (just created) shares its name with others of `items` (case and spaces
 * aside, as byIdOrName matches), which commands taking the name then refuse as ambiguous;
 * null where the name is its own.
 */
export function namesakeWarning<T extends { id: string; name: string }>(kind: string, items: readonly T[], made: T): string | null {
  const fold = (s: string): string => s.trim().toLowerCase()
  const others = items.filter((x) => x.id !== made.id && fold(x.name) === fold(made.name))
  if (others.length === 0) return null
  return `warning: ${others.length === 1 ? `another ${kind} is` : `${others.length} other ${kind}s are`} named "${made.name}" (${others.map((x) => x.id).join(', ')}): where a command takes the name, give this one's id (${made.id}) instead, or delete the other`
}

/** modelFolderOf, or a usage error that says what --model takes. */
export function requireModelFolder(arg: string, values: ParsedValues, flag = '--model'): string {
  const dir = modelFolderOf(arg, values)
  if (dir) return dir
  throw new UsageError(
    `${flag}: ${resolve(arg)} is not a folder, and "${arg}" is not a model of the workspace ${workspaceFromFlag(values)} (moe-workbench model list shows them)`,
  )
}

export interface CliHost {
  workbench: Workbench
  workspace: string
  /** Calls a service method; errors keep their code and message. */
  api: Workbench['api']
  /** Resolves with the backend name once the engine is ready (starting it). */
  backend(): Promise<string>
  /** Listens to the service's events until close. */
  onEvent(listener: (e: WorkbenchEvent) => void): void
  /** Stops the engine (runs it trains are checkpointed and marked interrupted first). */
  close(): Promise<void>
}

/** Whether the workspace still holds the dataset `id` (a run's may have been deleted since). */
export async function datasetListed(host: CliHost, id: string): Promise<boolean> {
  return (await host.api['datasets.list'](undefined)).some((d) => d.id === id)
}

/** Opens the service for one CLI command: the workspace of --workspace, the backend of --backend. */
export function openHost(values: ParsedValues, io: CliIo): CliHost {
  const flag = values.backend
  if (flag !== undefined && flag !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(String(flag)))
    throw new UsageError(`--backend: unknown backend "${String(flag)}"; use one of ${BACKEND_NAMES.join(', ')} or auto`)
  const backend = flag === undefined || flag === 'auto' ? undefined : (flag as BackendName)
  const workspace = workspaceFromFlag(values)
  const workbench = new Workbench({
    engine: new EngineClient(forkSpawner(), { ...(backend && { backend }), stopTimeoutMs: 60_000 }),
    host: 'cli',
    workspace,
  })
  for (const r of workbench.repaired) io.err(`note: run ${r.id} was left running by a process that stopped; now ${r.status}: ${r.message}`)
  const offs: (() => void)[] = []
  let closed: Promise<void> | undefined
  return {
    workbench,
    workspace,
    api: workbench.api,
    backend: async () => {
      const ready = await workbench.engine.start()
      const skipped = ready.backend.attempts.filter((a) => !a.ok)
      io.err(`backend: ${ready.backend.name}${skipped.length ? ` (unavailable: ${skipped.map((a) => a.name).join(', ')})` : ''}`)
      return ready.backend.name
    },
    onEvent: (listener) => void offs.push(workbench.onEvent(listener)),
    close: () =>
      (closed ??= (async () => {
        await workbench.close()
        for (const off of offs) off()
      })()),
  }
}

/**
 * An ApiError from the service as a CLI error: invalid arguments are usage mistakes (exit 2),
 * named by the command's flag where `flags` maps the API field to it (outDir → --out).
 */
export function cliError(e: unknown, flags: Record<string, string> = {}): Error {
  if (e instanceof ApiError && e.code === 'invalid_argument') {
    const flag = e.field === undefined ? undefined : flags[e.field]
    return new UsageError(flag && e.message.startsWith(`${e.field}: `) ? `${flag}: ${e.message.slice(e.field!.length + 2)}` : e.message)
  }
  return e instanceof Error ? e : new Error(String(e))
}
