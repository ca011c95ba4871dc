/**
 * First start: put the bundled sample datasets into the workspace, once.
 *
 * The project ships resources/ (built by `npm run build:default-model`):
 *
 * ```
 * resources/default-model/   the default model, a Hugging Face checkpoint folder (BF16)
 * resources/samples/         index.json, the sample datasets, heldout.json
 * ```
 *
 * seedWorkspace imports every dataset listed in samples/index.json with the dataset library (10%
 * validation split, token statistics from the default model's tokenizer), then writes a marker
 * file in the workspace. With the marker present it does nothing, so it is safe to call at every
 * start, and a user who deletes a sample never sees it come back. It only ever adds dataset
 * folders under fresh ids, never replaces or removes anything; a sample that is already in the
 * workspace (same name and same bytes, e.g. after a start interrupted before the marker was
 * written) is not imported twice.
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { DatasetManifest } from '../../shared/dataset'
import { loadTokenizer, type ModelTokenizer } from '../data/tokenizer'
import { importDataset, listDatasets } from '../data/workspace'
import { writeJsonAtomic } from '../util/atomic'

/** The marker in the workspace root: written once the samples are in. */
export const FIRST_RUN_MARKER = '.first-run.json'

/** The bundled default model's folder name inside resources/. */
export const DEFAULT_MODEL_DIR = 'default-model'

/** resources/samples/index.json */
export interface SamplesIndex {
  version: 1
  /** The model the samples are made for, relative to the samples folder. */
  model: string
  /** Held-out prompts and answers per task, relative to the samples folder. */
  heldOut: string
  datasets: SampleEntry[]
}

export interface SampleEntry {
  task: string
  /** File name inside the samples folder. */
  file: string
  /** Display name of the imported dataset. */
  name: string
  layout: string
  description: string
  rows: number
}

export interface FirstRunMarker {
  version: 1
  seededAt: string
  resources: string
  datasets: { id: string; name: string; file: string }[]
}

export interface SeedOptions {
  /** Fraction of each sample held out for validation (default 0.1). */
  validation?: number
  /**
   * Model folder whose tokenizer gives the token statistics of the imported samples; default the
   * bundled default model when present; null: no token statistics.
   */
  modelDir?: string | null
  signal?: AbortSignal
  log?: (line: string) => void
}

export interface SeedResult {
  /** True when this call imported the samples (and wrote the marker). */
  seeded: boolean
  /** The sample datasets in the workspace: imported now, or (when already seeded) still present. */
  datasets: DatasetManifest[]
}

/**
 * The project's resources/ folder: $MOE_WORKBENCH_RESOURCES when set, else the first `resources`
 * folder holding the default model or the samples, looking from this module's folder upwards
 * (out/main/*.js → ../../resources when built, src/main/service → ../../../resources from
 * sources), then beside a packaged Electron app (process.resourcesPath). Falls back to the
 * built-code location when none exists.
 */
export function resourcesDir(env: NodeJS.ProcessEnv = process.env): string {
  const configured = env.MOE_WORKBENCH_RESOURCES?.trim()
  if (configured) return resolve(configured)
  const here = dirname(fileURLToPath(import.meta.url))
  const holdsResources = (dir: string): boolean =>
    existsSync(join(dir, 'samples', 'index.json')) || existsSync(join(dir, DEFAULT_MODEL_DIR, 'config.json'))
  let dir = here
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'resources')
    if (holdsResources(candidate)) return candidate
    const parent = dirname(dir)
    if (parent === dir) break
    dir = parent
  }
  const packaged = (process as { resourcesPath?: string }).resourcesPath
  if (packaged) {
    for (const candidate of [join(packaged, 'resources'), packaged]) if (holdsResources(candidate)) return candidate
  }
  return resolve(here, '..', '..', 'resources')
}

/** The bundled default model's folder, or null when resources/ has none. */
export function defaultModelDir(resources: string = resourcesDir()): string | null {
  const dir = join(resources, DEFAULT_MODEL_DIR)
  return existsSync(join(dir, 'config.json')) ? dir : null
}

/** Reads resources/samples/index.json; null when the resources have no samples. */
export function readSamplesIndex(resources: string): SamplesIndex | null {
  const file = join(resources, 'samples', 'index.json')
  if (!existsSync(file)) return null
  const index = JSON.parse(readFileSync(file, 'utf8')) as SamplesIndex
  if (index.version !== 1 || !Array.isArray(index.datasets))
    throw new Error(`${file}: unsupported samples index (version ${String(index.version)})`)
  return index
}

export function readFirstRunMarker(workspace: string): FirstRunMarker | null {
  const file = join(workspace, FIRST_RUN_MARKER)
  if (!existsSync(file)) return null
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as FirstRunMarker
  } catch {
    // A marker that cannot be read still means "seeded": never import the samples again.
    return { version: 1, seededAt: '', resources: '', datasets: [] }
  }
}

const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

/** One seeding per workspace at a time within this process. */
const inFlight = new Map<string, Promise<SeedResult>>()

/**
 * Imports the sample datasets into a workspace that has not been seeded yet (see the module
 * comment). Idempotent; concurrent calls for one workspace share one seeding.
 */
export function seedWorkspace(workspace: string, resources: string = resourcesDir(), opts: SeedOptions = {}): Promise<SeedResult> {
  const key = resolve(workspace)
  const running = inFlight.get(key)
  if (running) return running
  const p = seed(key, resolve(resources), opts).finally(() => inFlight.delete(key))
  inFlight.set(key, p)
  return p
}

async function seed(workspace: string, resources: string, opts: SeedOptions): Promise<SeedResult> {
  const log = opts.log ?? (() => {})
  const existing = await listDatasets(workspace)
  const marker = readFirstRunMarker(workspace)
  if (marker) {
    const ids = new Set(marker.datasets.map((d) => d.id))
    return { seeded: false, datasets: existing.filter((m) => ids.has(m.id)) }
  }
  const index = readSamplesIndex(resources)
  if (!index) {
    log(`first run: no sample datasets in ${resources}; nothing to import`)
    return { seeded: false, datasets: [] }
  }
  const samplesDir = join(resources, 'samples')
  let tokenizer: ModelTokenizer | undefined
  const modelDir = opts.modelDir === undefined ? defaultModelDir(resources) : opts.modelDir
  if (modelDir) {
    try {
      tokenizer = await loadTokenizer(modelDir)
    } catch (e) {
      log(`first run: no token statistics (${(e as Error).message})`)
    }
  }
  const datasets: DatasetManifest[] = []
  for (const entry of index.datasets) {
    opts.signal?.throwIfAborted()
    const file = join(samplesDir, entry.file)
    const hash = sha256(file)
    const already = existing.find((m) => m.name === entry.name && m.source.sha256 === hash)
    if (already) {
      log(`first run: ${entry.name} is already in the workspace (${already.id})`)
      datasets.push(already)
      continue
    }
    const manifest = await importDataset(workspace, file, {
      name: entry.name,
      split: { validation: opts.validation ?? 0.1, seed: 0 },
      tokenizer,
      signal: opts.signal,
    })
    log(
      `first run: imported ${entry.name} as ${manifest.id} (${manifest.split.train} training, ${manifest.split.validationRows} validation rows)`,
    )
    datasets.push(manifest)
  }
  const record: FirstRunMarker = {
    version: 1,
    seededAt: new Date().toISOString(),
    resources,
    datasets: datasets.map((m, i) => ({ id: m.id, name: m.name, file: index.datasets[i].file })),
  }
  writeJsonAtomic(join(workspace, FIRST_RUN_MARKER), record)
  return { seeded: true, datasets }
}
