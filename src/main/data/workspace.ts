/**
 * Datasets in the workspace:
 *
 * ```
 * <workspace>/datasets/<id>/manifest.json   name, source, layout, mapping, counts, stats, split
 *                           original.<ext>   byte copy of the imported file (never the file itself)
 *                           rows.jsonl       the normalised rows, one per line
 *                           split.json       {"validation": [indices into rows.jsonl]}
 * ```
 *
 * An import copies the original first and parses the copy, so the rows always match the copy.
 * Everything is written into `<workspace>/datasets/.import-<id>/`, fsynced, then renamed into
 * place in one step: a crash or a cancel leaves either no dataset or a whole one (a stale
 * `.import-*` folder at worst, which listings ignore and the next import removes).
 */
import { createHash, randomBytes } from 'node:crypto'
import { constants, createReadStream } from 'node:fs'
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises'
import { basename, extname, join, resolve } from 'node:path'
import { type DatasetManifest, type DatasetSplit, type NormalizedRow, nothingParsed } from '../../shared/dataset'
import { DatasetError } from './errors'
import { type InspectOptions, scanDataset, unreadable } from './inspect'
import { readLines } from './readers'
import { validationIndices } from './stats'
import { slug } from '../util/slug'

export interface ImportOptions extends InspectOptions {
  /** Display name (default: the file name without extension). */
  name?: string
  /** Import the valid rows even when some are invalid (they are left out and listed in the manifest). */
  acceptInvalid?: boolean
  /** Validation split: fraction of rows held out (default 0.1; 0: none) and seed (default 0). */
  split?: { validation?: number; seed?: number }
  /** Leave out exact duplicates of earlier rows (default false). */
  dedupe?: boolean
}

const IMPORT_PREFIX = '.import-'
/** Stale import folders older than this are removed by the next import. */
const STALE_IMPORT_MS = 60 * 60 * 1000

export function datasetsDir(workspace: string): string {
  return join(workspace, 'datasets')
}

const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,79}$/

export function datasetDir(workspace: string, id: string): string {
  if (!ID_PATTERN.test(id)) throw new DatasetError(`invalid dataset id ${JSON.stringify(id)}`)
  return join(datasetsDir(workspace), id)
}

/** A new id: the name's slug, the time and a random suffix (sorts by creation within a name). */
function newId(name: string): string {
  return `${slug(name, 'dataset')}-${Date.now().toString(36)}${randomBytes(3).toString('hex')}`
}

/**
 * Imports a file into the workspace (see the module comment). Rejects, writing nothing, when
 * rows are invalid and acceptInvalid is not set, when the layout is unknown, or when cancelled
 * through `signal`.
 */
export async function importDataset(workspace: string, file: string, options: ImportOptions = {}): Promise<DatasetManifest> {
  const { signal } = options
  signal?.throwIfAborted()
  const source = resolve(file)
  const ratio = options.split?.validation ?? 0.1
  const seed = options.split?.seed ?? 0
  if (!(ratio >= 0 && ratio < 1))
    throw new DatasetError(`split.validation must be at least 0 and below 1, got ${ratio}`, 'split.validation')
  if (!Number.isInteger(seed)) throw new DatasetError(`split.seed must be a whole number, got ${seed}`, 'split.seed')
  const before = await stat(source).catch(() => {
    throw new DatasetError(`cannot read ${source}: no such file`, 'file')
  })
  if (!before.isFile()) throw new DatasetError(`${source} is not a file`, 'file')

  const root = datasetsDir(workspace)
  await mkdir(root, { recursive: true })
  await removeStaleImports(root)
  const name = options.name?.trim() || basename(source, extname(source))
  const id = newId(name)
  const tmp = join(root, `${IMPORT_PREFIX}${id}`)
  await mkdir(tmp)
  try {
    // 1. The byte copy, checked against the file's size and time before and after.
    const ext =
      extname(source)
        .toLowerCase()
        .replace(/[^.a-z0-9]/g, '') || '.dat'
    const original = `original${ext}`
    const copy = join(tmp, original)
    await copyFile(source, copy, constants.COPYFILE_FICLONE)
    const after = await stat(source)
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs) {
      throw new DatasetError(`${source} changed while it was being copied; import it again once it is complete`)
    }
    signal?.throwIfAborted()

    // 2. One pass over the copy: validate, normalise, write the rows.
    const rows = await open(join(tmp, 'rows.jsonl'), 'w')
    let written = 0
    let deduplicated = 0
    // Each written row's group of equal rows, used once a copy is seen (the split keeps copies together).
    const groupOf: number[] = []
    let copies = false
    let buffered: string[] = []
    let bufferedChars = 0
    const flush = async () => {
      if (buffered.length === 0) return
      await rows.write(buffered.join(''))
      buffered = []
      bufferedChars = 0
    }
    let scan
    try {
      scan = await scanDataset(copy, { ...options, format: options.format }, async (valid) => {
        if (valid.duplicate && options.dedupe) {
          deduplicated++
          return
        }
        buffered.push(valid.json, '\n')
        bufferedChars += valid.json.length + 1
        groupOf.push(valid.group)
        if (valid.duplicate) copies = true
        written++
        if (bufferedChars >= 1 << 20) await flush()
      })
      await flush()
      await rows.sync()
    } finally {
      await rows.close()
    }
    const { result } = scan
    if (nothingParsed(result)) throw new DatasetError(unreadable(source, result.report))
    if (result.layout === null) {
      throw new DatasetError(
        `could not detect the layout of ${source} (columns: ${result.columns.join(', ') || 'none'}): choose a layout (alpaca, sharegpt, messages, completion, text, tokens) and map the columns`,
      )
    }
    const { report } = result
    if (report.valid === 0) throw new DatasetError(`${source} has no valid rows (${report.invalid} invalid); see the inspection report`)
    if (report.invalid > 0 && !options.acceptInvalid) {
      throw new DatasetError(
        `${report.invalid} of ${report.total} rows are invalid; inspect the file to see why, or import again with acceptInvalid: true to import only the ${report.valid} valid rows`,
      )
    }
    options.onProgress?.({ phase: 'writing', bytesRead: before.size, totalBytes: before.size, rows: report.total })

    // 3. The split, the source hash, the manifest.
    const validation = validationIndices(written, ratio, seed, copies ? groupOf : undefined)
    await writeFileSynced(join(tmp, 'split.json'), `{"validation":[${validation.join(',')}]}\n`)
    const manifest: DatasetManifest = {
      version: 1,
      id,
      name,
      source: { path: source, format: result.format, bytes: before.size, sha256: await sha256(copy, signal) },
      layout: result.layout,
      mapping: result.mapping,
      counts: {
        read: report.total,
        valid: report.valid,
        invalid: report.invalid,
        duplicates: result.stats.duplicates,
        deduplicated,
        rows: written,
      },
      stats: result.stats,
      split: { validation: ratio, seed, train: written - validation.length, validationRows: validation.length },
      problems: report.problems,
      files: { original, rows: 'rows.jsonl', split: 'split.json' },
      createdAt: new Date().toISOString(),
    }
    await writeFileSynced(join(tmp, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n')
    signal?.throwIfAborted()

    // 4. Into place, in one rename.
    await syncDir(tmp)
    await rename(tmp, datasetDir(workspace, id))
    await syncDir(root)
    options.onProgress?.({ phase: 'done', bytesRead: before.size, totalBytes: before.size, rows: report.total })
    return manifest
  } catch (e) {
    await rm(tmp, { recursive: true, force: true })
    throw e
  }
}

async function writeFileSynced(file: string, text: string): Promise<void> {
  const handle = await open(file, 'w')
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function syncDir(dir: string): Promise<void> {
  // Makes the rename durable; some platforms (Windows) cannot open folders: best effort there.
  try {
    const handle = await open(dir, 'r')
    try {
      await handle.sync()
    } finally {
      await handle.close()
    }
  } catch {
    // ignore
  }
}

async function sha256(file: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20, signal })) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

async function removeStaleImports(root: string): Promise<void> {
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (!entry.isDirectory() || !entry.name.startsWith(IMPORT_PREFIX)) continue
    const path = join(root, entry.name)
    const info = await stat(path).catch(() => null)
    if (info && Date.now() - info.mtimeMs > STALE_IMPORT_MS) await rm(path, { recursive: true, force: true })
  }
}

/** The datasets of a workspace, newest first. Folders without a readable manifest are skipped. */
export async function listDatasets(workspace: string): Promise<DatasetManifest[]> {
  let entries
  try {
    entries = await readdir(datasetsDir(workspace), { withFileTypes: true })
  } catch {
    return []
  }
  const manifests: DatasetManifest[] = []
  for (const entry of entries) {
    if (!entry.isDirectory() || !ID_PATTERN.test(entry.name)) continue
    try {
      manifests.push(JSON.parse(await readFile(join(datasetsDir(workspace), entry.name, 'manifest.json'), 'utf8')) as DatasetManifest)
    } catch {
      // not a dataset (or not one this version can read)
    }
  }
  return manifests.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1))
}

/** One dataset's manifest; DatasetError when there is none. */
export async function readManifest(workspace: string, id: string): Promise<DatasetManifest> {
  try {
    return JSON.parse(await readFile(join(datasetDir(workspace, id), 'manifest.json'), 'utf8')) as DatasetManifest
  } catch (e) {
    if (e instanceof DatasetError) throw e
    throw new DatasetError(`no dataset ${JSON.stringify(id)} in ${workspace}`)
  }
}

/** The normalised rows of a dataset, streamed in file order; with `split`, that split's rows only. */
export async function* readRows(workspace: string, id: string, split?: DatasetSplit): AsyncGenerator<NormalizedRow> {
  const manifest = await readManifest(workspace, id)
  const dir = datasetDir(workspace, id)
  let inValidation: Uint8Array | null = null
  if (split !== undefined) {
    const { validation } = JSON.parse(await readFile(join(dir, manifest.files.split), 'utf8')) as { validation: number[] }
    inValidation = new Uint8Array(manifest.counts.rows)
    for (const i of validation) inValidation[i] = 1
  }
  let index = 0
  for await (const line of readLines(join(dir, manifest.files.rows))) {
    if (line.text === '') continue
    const i = index++
    if (inValidation !== null && (inValidation[i] === 1) !== (split === 'validation')) continue
    yield JSON.parse(line.text) as NormalizedRow
  }
}

/** Deletes a dataset (its folder) from the workspace. */
export async function deleteDataset(workspace: string, id: string): Promise<void> {
  const dir = datasetDir(workspace, id)
  await readManifest(workspace, id)
  // Rename first so a crash midway never leaves a half-deleted dataset that still lists.
  const doomed = join(datasetsDir(workspace), `${IMPORT_PREFIX}deleted-${id}`)
  await rename(dir, doomed)
  await rm(doomed, { recursive: true, force: true })
}
