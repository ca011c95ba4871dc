/**
 * `moe-workbench dataset import FILE`, `dataset inspect FILE` and `dataset list`: the service's
 * datasets.* methods in the terminal, with the validation report and statistics.
 */
import { existsSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import {
  DATASET_LAYOUTS,
  LAYOUT_FIELDS,
  type DatasetLayout,
  type DatasetManifest,
  type DatasetsInspectArgs,
  type InspectResult,
  nothingParsed,
  unspacedJoinsText,
  preferencePrompt,
  unreadColumns,
} from '../../shared/dataset'
import { formatProblem, unreadable } from '../data/inspect'
import { readModelConfig } from '../engine/modelConfigFile'
import { readSamplesIndex, resourcesDir } from '../service/firstRun'
import { formatBytes } from './commands'
import { cliError, namesakeWarning, oneByIdOrName, openHost, requireModelFolder, workspaceFromFlag, type CliHost } from './host'
import { UsageError, type CliIo, type ParsedValues } from './util'

export { workspaceFromFlag }

/** --map field=column (repeatable) → a column mapping. */
function mappingFromFlags(values: ParsedValues): Record<string, string> | undefined {
  const maps = (values.map as string[] | undefined) ?? []
  if (maps.length === 0) return undefined
  const out: Record<string, string> = {}
  for (const m of maps) {
    const eq = m.indexOf('=')
    if (eq <= 0 || eq === m.length - 1) throw new UsageError(`--map ${m}: expected field=column, e.g. --map instruction=question`)
    out[m.slice(0, eq)] = m.slice(eq + 1)
  }
  return out
}

const fieldsText = (): string => DATASET_LAYOUTS.map((l) => `${l}: ${LAYOUT_FIELDS[l].join(', ')}`).join('; ')

/** A word as a shell argument: quoted where it has more than letters, digits and . = - _ / */
const shellWord = (s: string): string => (/^[\w.=/-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`)

/**
 * What to do with a file whose layout was not recognised: the import that names the layout and
 * the column of each field (with the file's first two columns as prompt and completion where it
 * has two or more, the commonest such file: a question and its answer), and every layout's fields.
 */
export function unrecognisedLayout(file: string, columns: string[]): string {
  const prompt = preferencePrompt(columns)
  if (prompt !== null)
    return `the layout of ${file} was not recognised: its chosen and rejected columns make it a preference dataset (for DPO or ORPO), and the workbench trains on answers, not on a preference between two; to fine-tune on the chosen answers: moe-workbench dataset import ${shellWord(file)} --layout completion ${shellWord(`--map=prompt=${prompt}`)} --map=completion=chosen`
  const example =
    columns.length >= 2
      ? `--layout completion ${shellWord(`--map=prompt=${columns[0]}`)} ${shellWord(`--map=completion=${columns[1]}`)}`
      : '--layout LAYOUT --map FIELD=COLUMN'
  return `the layout of ${file} was not recognised (columns: ${columns.join(', ') || 'none'}); name it and the column of each field: moe-workbench dataset import ${shellWord(file)} ${example} (the layouts' fields: ${fieldsText()})`
}

/**
 * The layout --map's fields belong to: --layout's, each field checked against it, or (without
 * --layout) the one layout that has them all (a mapping was ignored without --layout, and the
 * file read as having no rows).
 */
function layoutOfMapping(mapping: Record<string, string>, layout: DatasetLayout | undefined): DatasetLayout {
  const fields = Object.keys(mapping)
  const has = (l: DatasetLayout, f: string): boolean => (LAYOUT_FIELDS[l] as readonly string[]).includes(f)
  if (layout !== undefined) {
    const stray = fields.find((f) => !has(layout, f))
    if (stray !== undefined)
      throw new UsageError(
        `--map ${stray}=${mapping[stray]}: layout ${layout} has no field "${stray}"; its fields: ${LAYOUT_FIELDS[layout].join(', ')}`,
      )
    return layout
  }
  const fitting = DATASET_LAYOUTS.filter((l) => fields.every((f) => has(l, f)))
  if (fitting.length === 1) return fitting[0]
  const stray = fields.find((f) => !DATASET_LAYOUTS.some((l) => has(l, f)))
  throw new UsageError(
    stray !== undefined
      ? `--map ${stray}=${mapping[stray]}: no layout has a field "${stray}"; the fields are ${fieldsText()}`
      : `--map: ${fields.join(', ')} are fields of different layouts; pass --layout (${fieldsText()})`,
  )
}

/** The read options of inspect and import, as the service's arguments. */
function readArgs(values: ParsedValues, file: string): DatasetsInspectArgs {
  const layout = values.layout as string | undefined
  if (layout !== undefined && !(DATASET_LAYOUTS as readonly string[]).includes(layout))
    throw new UsageError(`--layout: "${layout}" must be one of ${DATASET_LAYOUTS.join(', ')}`)
  const mapping = mappingFromFlags(values)
  const chosen = mapping ? layoutOfMapping(mapping, layout as DatasetLayout | undefined) : layout
  const unit = values['text-unit']
  if (unit !== undefined && unit !== 'line' && unit !== 'paragraph')
    throw new UsageError(`--text-unit: "${String(unit)}" must be line or paragraph (paragraphs: text between blank lines)`)
  return {
    file,
    ...(unit !== undefined && { textUnit: unit }),
    ...(chosen !== undefined && { layout: chosen as DatasetLayout }),
    ...(mapping && { mapping }),
    ...(typeof values.model === 'string' && { model: requireModelFolder(values.model, values) }),
  }
}

/**
 * Prints dataset.progress for `file` about once a second, from a second in (a small file's only
 * line was "reading 0 B of 2.2 KiB (0%), 0 rows", before its report).
 */
function progressPrinter(host: CliHost, file: string, io: CliIo): void {
  let last = performance.now()
  host.onEvent((e) => {
    if (e.type !== 'dataset.progress' || e.file !== file) return
    const p = e.progress
    const now = performance.now()
    if (now - last < 1000 || p.phase === 'done' || p.bytesRead === 0) return
    last = now
    io.err(
      `${p.phase} ${formatBytes(p.bytesRead)} of ${formatBytes(p.totalBytes)} (${Math.floor((100 * p.bytesRead) / Math.max(1, p.totalBytes))}%), ${p.rows} rows`,
    )
  })
}

/** " (not read: id, source)": the columns the layout passes over, or nothing. */
function unreadNote(r: InspectResult): string {
  const unread = unreadColumns(r.columns, r.layout, r.mapping)
  return unread.length ? ` (not read: ${unread.join(', ')})` : ''
}

/** Rows not read at all: the layout was not recognised (rows read and all invalid are counted). */
export const unread = (r: InspectResult): boolean => r.layout === null && r.report.total === 0

/**
 * The report and statistics of an inspection, as terminal lines; with the model's positions
 * (--model), the rows longer than them, which training cuts.
 */
export function describeInspection(r: InspectResult, positions?: number): string[] {
  const lines = [
    `file       ${r.file} (${r.format}, ${formatBytes(r.bytes)})`,
    `layout     ${r.layout ?? 'not recognised'}${r.detectedLayout && r.layout !== r.detectedLayout ? ` (detected ${r.detectedLayout})` : ''}; columns ${r.columns.join(', ') || '-'}${unreadNote(r)}`,
    unread(r)
      ? 'rows       not read: they are read once the layout is known'
      : `rows       ${r.report.valid} valid, ${r.report.invalid} invalid of ${r.report.total}; ${r.stats.duplicates} duplicate(s)`,
  ]
  const t = r.stats.tokens
  if (t) lines.push(`tokens     min ${t.min}, median ${t.median}, p95 ${t.p95}, max ${t.max}; ${t.trainable} of ${t.total} trainable`)
  if (t && positions !== undefined && t.max > positions)
    lines.push(
      `           ${t.p95 > positions ? 'more than 5% of the rows' : 'some rows'} (up to ${t.max} tokens) pass the model's ${positions} positions: training cuts them, and eval cannot answer them`,
    )
  // Token-id rows are measured in their ids (the line said "characters"), once where a tokenizer measured them too.
  const ids = r.layout === 'tokens'
  if (!unread(r) && !(ids && t))
    lines.push(
      `${ids ? 'tokens    ' : 'characters'} min ${r.stats.chars.min}, median ${r.stats.chars.median}, p95 ${r.stats.chars.p95}, max ${r.stats.chars.max}`,
    )
  if (r.stats.unspacedJoins) lines.push(`warning    ${unspacedJoinsText(r.stats.unspacedJoins, r.stats.rows, r.report.unit)}`)
  for (const p of r.report.problems) lines.push(`  ${formatProblem(p, r.report.unit)}`)
  if (r.report.problemCount > r.report.problems.length)
    lines.push(`  ... and ${r.report.problemCount - r.report.problems.length} more problems`)
  return lines
}

/** The sample datasets shipped with the app, as paths (none where the resources have none). */
function sampleFiles(): string[] {
  try {
    const resources = resourcesDir()
    return (readSamplesIndex(resources)?.datasets ?? []).map((d) => join(resources, 'samples', d.file)).filter((f) => existsSync(f))
  } catch {
    return []
  }
}

/** A model folder's max_position_embeddings, or undefined where its config does not read. */
function modelPositions(dir: string): number | undefined {
  try {
    return readModelConfig(resolve(dir)).maxPositionEmbeddings
  } catch {
    return undefined
  }
}

function describeManifest(m: DatasetManifest): string {
  return `${m.id}  ${m.name}  ${m.layout}  ${m.counts.rows} row${m.counts.rows === 1 ? '' : 's'} (${m.split.train} train, ${m.split.validationRows} validation)  from ${m.source.path}`
}

export async function datasetCommand(values: ParsedValues, io: CliIo, positionals: string[]): Promise<number> {
  const [sub, file] = positionals
  if (sub !== 'import' && sub !== 'inspect' && sub !== 'list' && sub !== 'delete')
    throw new UsageError('use: moe-workbench dataset import FILE | dataset inspect FILE | dataset list | dataset delete ID')
  if (sub === 'delete') {
    if (!file) throw new UsageError('give the dataset id: moe-workbench dataset delete ID (dataset list shows them)')
    const host = openHost(values, io)
    try {
      // By id or by the name dataset list shows, as --dataset takes it.
      const id = oneByIdOrName(await host.api['datasets.list'](), file, 'dataset')?.id ?? file
      await host.api['datasets.delete']({ id })
      io.out(`deleted dataset ${id} from ${host.workspace} (the file it was imported from stays)`)
      return 0
    } catch (e) {
      throw cliError(e, { id: 'ID' })
    } finally {
      await host.close()
    }
  }
  if (sub !== 'list' && !file) throw new UsageError(`give the file: moe-workbench dataset ${sub} FILE`)
  const path = file === undefined ? '' : resolve(file)
  if (sub !== 'list' && !existsSync(path))
    throw new UsageError(`${path} does not exist: check the path (relative paths start at ${process.cwd()})`)
  if (sub !== 'list' && statSync(path).isDirectory()) throw new UsageError(`${path} is a folder: give the data file inside it`)
  if (sub !== 'list' && !statSync(path).isFile()) throw new UsageError(`${path} is not a regular file`)
  const args = sub === 'list' ? undefined : readArgs(values, path)
  const ratio = values['val-ratio'] === undefined ? 0.1 : Number(values['val-ratio'])
  if (!(ratio >= 0 && ratio < 1)) throw new UsageError(`--val-ratio: "${String(values['val-ratio'])}" must be a number in [0, 1)`)
  const host = openHost(values, io)
  try {
    if (sub === 'list') {
      const all = await host.api['datasets.list']()
      if (all.length === 0) {
        io.out(`no datasets in ${host.workspace}: import one with moe-workbench dataset import FILE`)
        // The app's first start imports the samples; a CLI workspace is left as the user makes it.
        const samples = sampleFiles()
        if (samples.length) io.out(`samples to try (made for the bundled model): ${samples.join(', ')}`)
      }
      for (const m of all) io.out(describeManifest(m))
      return 0
    }
    progressPrinter(host, path, io)
    const onSignal = (): void => {
      io.err('\ncancelling (nothing is left behind)...')
      void host.api['datasets.cancel']({ file: path })
    }
    process.once('SIGINT', onSignal)
    try {
      const inspected = await host.api['datasets.inspect'](args!)
      const positions = args!.model === undefined ? undefined : modelPositions(args!.model)
      for (const line of describeInspection(inspected, positions)) io.out(line)
      // inspect exits as import would (1 where it refuses the file), so a script can check a file
      // first: an unrecognised layout exited 0 from inspect and 1 from import.
      if (sub === 'inspect') {
        if (unread(inspected)) io.err(unrecognisedLayout(path, inspected.columns))
        else if (nothingParsed(inspected)) io.err(unreadable(path, inspected.report))
        else if (inspected.layout === null) io.err(unrecognisedLayout(path, inspected.columns))
        else if (inspected.report.invalid > 0)
          io.err(
            `${inspected.report.invalid} of ${inspected.report.total} rows are invalid: import refuses the file unless --accept-invalid (it then imports the ${inspected.report.valid === 1 ? 'one valid row' : `${inspected.report.valid} valid rows`})`,
          )
        else return 0
        return 1
      }
      if (nothingParsed(inspected)) throw new Error(unreadable(path, inspected.report))
      if (inspected.layout === null) throw new Error(unrecognisedLayout(path, inspected.columns))
      if (inspected.report.invalid > 0 && !values['accept-invalid']) {
        io.err(
          `${inspected.report.invalid} of ${inspected.report.total} rows are invalid; fix them, or pass --accept-invalid to import the ${inspected.report.valid === 1 ? 'one valid row' : `${inspected.report.valid} valid rows`}`,
        )
        return 1
      }
      const m = await host.api['datasets.import']({
        ...args!,
        ...(typeof values.name === 'string' && { name: values.name }),
        acceptInvalid: Boolean(values['accept-invalid']),
        split: { validation: ratio, seed: 0 },
        dedupe: Boolean(values.dedupe),
      })
      io.out(`imported ${describeManifest(m)}`)
      io.out(`workspace  ${host.workspace}`)
      const all = await host.api['datasets.list']()
      const namesake = namesakeWarning('dataset', all, m)
      if (namesake) io.err(namesake)
      // The same bytes imported before (a script run twice): a second copy, said with its twin's id.
      const twins = all.filter((d) => d.id !== m.id && d.source.sha256 === m.source.sha256)
      if (twins.length > 0)
        io.err(
          `note: the same file contents were imported before as ${twins.map((d) => `"${d.name}" (${d.id})`).join(', ')}; this import is another copy: moe-workbench dataset delete ID removes one you do not need`,
        )
      return 0
    } finally {
      process.off('SIGINT', onSignal)
    }
  } catch (e) {
    throw cliError(e)
  } finally {
    await host.close()
  }
}
