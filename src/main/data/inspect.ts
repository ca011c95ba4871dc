/**
 * inspectDataset: reads a file once, streaming, and reports its layout, every invalid row
 * (line, field, problem), statistics and a page of rows as the model will see them. Writes
 * nothing. The same scan drives importDataset (./workspace.ts), which also writes the rows.
 */
import {
  type ColumnMapping,
  type DatasetFormat,
  type DatasetLayout,
  type DatasetProgress,
  type DatasetStats,
  type InspectResult,
  type NormalizedRow,
  type PreviewRow,
  type RowProblem,
  type Segment,
  type TokensRow,
  type ValidationReport,
  LAYOUT_FIELDS,
  joinExcerpt,
  rowKind,
  unspacedJoin,
} from '../../shared/dataset'
import { countTokens } from './encode'
import { DatasetError } from './errors'
import { type Detection, detectLayout, normalizeRecord, OPTIONAL_FIELDS, resolveMapping } from './layouts'
import { type DatasetSource, openSource } from './readers'
import { HashGroups, LengthAccumulator } from './stats'
import { type ChatTemplate, defaultChatTemplate, loadChatTemplate, rowSegments } from './template'
import type { ModelTokenizer } from './tokenizer'

export interface InspectOptions {
  /** Overrides the detected layout. */
  layout?: DatasetLayout
  /** Logical field → column, over the detected (or default) mapping, e.g. { instruction: 'question' }. */
  mapping?: ColumnMapping
  /** Rows longer than this many tokens (chat template applied) are invalid; needs `tokenizer`. */
  maxLength?: number
  /** The model's tokenizer: token statistics, the over-long check, token ids checked against its vocabulary. */
  tokenizer?: ModelTokenizer
  /** The chat template for previews and token counts (default: the tokenizer's model's, else the workbench default). */
  template?: ChatTemplate
  /** Overrides the format chosen from the extension. */
  format?: DatasetFormat
  /** Plain text files: a row per line (default) or per paragraph. */
  textUnit?: 'line' | 'paragraph'
  /** The page of valid rows to preview (default: the first 20). */
  preview?: { offset?: number; limit?: number }
  /** Problems listed in the report (default 100); all are counted. */
  problemLimit?: number
  signal?: AbortSignal
  onProgress?: (progress: DatasetProgress) => void
}

/** Records read to detect the layout and list the columns. */
const SAMPLE_RECORDS = 200
/** Longest stretch of work without yielding to the event loop (ms). */
const SLICE_MS = 20
/** Progress callbacks at most this often (ms), plus one at the end. */
const PROGRESS_INTERVAL_MS = 100

export async function inspectDataset(file: string, options: InspectOptions = {}): Promise<InspectResult> {
  const scan = await scanDataset(file, options)
  return scan.result
}

export interface ValidRow {
  row: NormalizedRow
  /** JSON of the row: what rows.jsonl holds, and what duplicates are compared by. */
  json: string
  duplicate: boolean
  /** Its group of equal rows: the index, among the valid rows, of the first one equal to it. */
  group: number
  line: number
}

export interface ScanResult {
  result: InspectResult
  source: DatasetSource
}

/**
 * The shared pass: detection, then every record validated and normalised; `sink` receives each
 * valid row in file order (awaited, so a writer applies backpressure).
 */
export async function scanDataset(
  file: string,
  options: InspectOptions,
  sink?: (valid: ValidRow) => void | Promise<void>,
): Promise<ScanResult> {
  const { signal, tokenizer } = options
  signal?.throwIfAborted()
  if (options.maxLength !== undefined && !(Number.isInteger(options.maxLength) && options.maxLength > 0)) {
    throw new DatasetError(`maxLength must be a positive whole number of tokens, got ${options.maxLength}`, 'maxLength')
  }
  const source = await openSource(file, options.format)
  const template = options.template ?? (tokenizer ? await loadChatTemplate(tokenizer.dir) : defaultChatTemplate())
  const bos = tokenizer?.addsBos ? (tokenizer.bosToken ?? '') : ''

  // 1. Detection from the first records.
  const sample: unknown[] = []
  const seen = new Set<string>(source.columns ?? [])
  for await (const r of source.records({ signal, textUnit: options.textUnit })) {
    if (r.value !== undefined) {
      sample.push(r.value)
      if (r.value !== null && typeof r.value === 'object' && !Array.isArray(r.value)) for (const k of Object.keys(r.value)) seen.add(k)
    }
    if (sample.length >= SAMPLE_RECORDS) break
  }
  const columns = [...seen]
  const detection: Detection | null =
    source.format === 'text' ? { layout: 'text', mapping: { text: 'text' } } : detectLayout(sample, columns)
  const layout = options.layout ?? detection?.layout ?? null

  const unit = source.unit
  const result: InspectResult = {
    file,
    format: source.format,
    bytes: source.bytes,
    layout,
    detectedLayout: detection?.layout ?? null,
    mapping: {},
    columns,
    report: { unit, total: 0, valid: 0, invalid: 0, problems: [], problemCount: 0 },
    stats: { rows: 0, duplicates: 0, chars: new LengthAccumulator().summary() },
    preview: [],
    template: { source: template.source, eosToken: template.eosToken },
  }
  const report = result.report
  const problemLimit = options.problemLimit ?? 100
  const addProblem = (line: number, field: string, message: string) => {
    report.problemCount++
    if (report.problems.length < problemLimit) report.problems.push({ line, field, message })
  }
  if (layout === null) {
    // Nothing to read rows as. Where not one record parsed (every line invalid JSON, say), the
    // report still says which lines and why: a layout is not what is wrong with such a file.
    if (sample.length === 0)
      for await (const record of source.records({ signal, textUnit: options.textUnit })) {
        report.total++
        if (record.error === undefined) continue
        report.invalid++
        addProblem(record.line, '', record.error)
      }
    if (sample.length === 0 && report.total === 0) throw noRows(file, source)
    return { result, source }
  }
  const base = detection !== null && layout === detection.layout ? detection.mapping : {}
  const mapping = resolveMapping(layout, { ...base, ...options.mapping }, columns)
  result.mapping = mapping
  // A table's columns are its header: a required field with no column of it is one problem of the
  // mapping, not "missing field" on every row (a field left unmapped in the app read so).
  if (source.format === 'csv' || source.format === 'tsv' || source.format === 'parquet')
    for (const field of LAYOUT_FIELDS[layout]) {
      const column = mapping[field] ?? field
      if (OPTIONAL_FIELDS.has(field) || columns.length === 0 || columns.includes(column)) continue
      throw new DatasetError(
        `mapping: the file has no column "${column}" for ${field}; map ${field} to one of its columns (${columns.join(', ')})`,
        `mapping.${field}`,
      )
    }

  // 2. The full pass.
  const previewOffset = options.preview?.offset ?? 0
  const previewEnd = previewOffset + (options.preview?.limit ?? 20)
  const chars = new LengthAccumulator()
  const tokenLengths = new LengthAccumulator()
  let trainableTokens = 0
  let totalTokens = 0
  let unspaced: DatasetStats['unspacedJoins']
  const hashes = new HashGroups()
  const cellsAreText = source.format === 'csv' || source.format === 'tsv'
  const normalizeOptions = { cellsAreText, vocabSize: tokenizer?.vocabSize }

  let bytesRead = 0
  let lastProgress = 0
  const progress = (phase: DatasetProgress['phase'], force = false) => {
    if (!options.onProgress) return
    const now = Date.now()
    if (!force && now - lastProgress < PROGRESS_INTERVAL_MS) return
    lastProgress = now
    options.onProgress({ phase, bytesRead, totalBytes: source.bytes, rows: report.total })
  }

  progress('reading', true)
  // Keep the event loop responsive (the service may run on Electron's main thread): yield every
  // SLICE_MS of work.
  let sliceStart = performance.now()
  for await (const record of source.records({
    signal,
    textUnit: options.textUnit,
    onBytes: (b) => {
      bytesRead = b
      progress('reading')
    },
  })) {
    report.total++
    if ((report.total & 255) === 0) progress('reading') // rows advance between reads too (CSV, Parquet)
    if ((report.total & 63) === 0 && performance.now() - sliceStart > SLICE_MS) {
      await new Promise((resolve) => setImmediate(resolve))
      signal?.throwIfAborted()
      sliceStart = performance.now()
    }
    if (record.error !== undefined) {
      report.invalid++
      addProblem(record.line, '', record.error)
      continue
    }
    const normalized = normalizeRecord(record.value, layout, mapping, normalizeOptions)
    if (normalized.row === undefined) {
      report.invalid++
      for (const p of normalized.problems) addProblem(record.line, p.field, p.message)
      continue
    }
    const row = normalized.row
    let tokens: { total: number; trainable: number } | undefined
    if (tokenizer) {
      try {
        tokens = countTokens(row, tokenizer, template)
      } catch (e) {
        report.invalid++
        addProblem(record.line, '', (e as Error).message)
        continue
      }
      if (options.maxLength !== undefined && tokens.total > options.maxLength) {
        report.invalid++
        addProblem(record.line, '', `too long: ${tokens.total} tokens, the limit is ${options.maxLength}`)
        continue
      }
      tokenLengths.add(tokens.total)
      totalTokens += tokens.total
      trainableTokens += tokens.trainable
    }
    const validIndex = report.valid
    report.valid++
    chars.add(contentLength(row))
    if ('completion' in row && unspacedJoin(row.prompt, row.completion)) {
      unspaced ??= { rows: 0, line: record.line, join: joinExcerpt(row.prompt, row.completion) }
      unspaced.rows++
    }
    const json = JSON.stringify(row)
    const group = hashes.group(json, validIndex)
    const duplicate = group !== validIndex
    if (duplicate) result.stats.duplicates++
    if (validIndex >= previewOffset && validIndex < previewEnd) {
      result.preview.push(previewRow(record.line, row, template, bos, tokenizer, tokens?.total))
    }
    if (sink) await sink({ row, json, duplicate, group, line: record.line })
  }
  bytesRead = source.bytes
  progress('reading', true)
  if (report.total === 0) throw noRows(file, source)

  const stats: DatasetStats = { rows: report.valid, duplicates: result.stats.duplicates, chars: chars.summary() }
  if (unspaced) stats.unspacedJoins = unspaced
  if (tokenizer) stats.tokens = { ...tokenLengths.summary(), tokenizer: tokenizer.dir, trainable: trainableTokens, total: totalTokens }
  result.stats = stats
  return { result, source }
}

/**
 * A file with nothing but a header (or an empty JSON array): one message, not an empty report
 * that said "nothing looks like a known layout" and "valid rows 1-0".
 */
function noRows(file: string, source: DatasetSource): DatasetError {
  const delimited = source.format === 'csv' || source.format === 'tsv'
  return new DatasetError(
    `${file} has no rows${delimited ? ' under its header line' : ''}: there is nothing to read; add rows, or choose the file that holds the data`,
    'file',
  )
}

/** Characters of a row's content (no template); token count for pre-tokenized rows. */
function contentLength(row: NormalizedRow): number {
  switch (rowKind(row)) {
    case 'chat':
      return (row as { messages: { content: string }[] }).messages.reduce((s, m) => s + m.content.length, 0)
    case 'completion':
      return (row as { prompt: string }).prompt.length + (row as { completion: string }).completion.length
    case 'text':
      return (row as { text: string }).text.length
    case 'tokens':
      return (row as TokensRow).input_ids.length
  }
}

function previewRow(
  line: number,
  row: NormalizedRow,
  template: ChatTemplate,
  bos: string,
  tokenizer: ModelTokenizer | undefined,
  tokens: number | undefined,
): PreviewRow {
  const preview: PreviewRow = { line, row, segments: [] }
  if (tokens !== undefined) preview.tokens = tokens
  try {
    preview.segments = rowKind(row) === 'tokens' ? tokenSegments(row as TokensRow, tokenizer) : rowSegments(row, template, { bos })
  } catch (e) {
    preview.error = (e as Error).message
  }
  return preview
}

/** Pre-tokenized rows: runs of trained / untrained tokens, decoded when a tokenizer is known. */
function tokenSegments(row: TokensRow, tokenizer: ModelTokenizer | undefined): Segment[] {
  const segments: Segment[] = []
  const labels = row.labels ?? row.input_ids
  let start = 0
  for (let i = 1; i <= row.input_ids.length; i++) {
    const trainable = labels[start] !== -100
    if (i < row.input_ids.length && (labels[i] !== -100) === trainable) continue
    const ids = row.input_ids.slice(start, i)
    segments.push({ text: tokenizer ? tokenizer.decode(ids) : ids.join(' ') + ' ', trainable })
    start = i
  }
  return segments
}

/** "line 3, messages[2].role: expected an assistant turn, got user" */
export function formatProblem(problem: RowProblem, unit: 'line' | 'row'): string {
  return `${unit} ${problem.line}${problem.field === '' ? '' : `, ${problem.field}`}: ${problem.message}`
}

/**
 * Why a file none of whose records could be read has no rows: its first problem and how many
 * more, for an import that stops there (rather than "layout not recognised", which it is not).
 */
export function unreadable(file: string, report: ValidationReport): string {
  const first = report.problems[0]
  const more = report.problemCount - 1
  return `${file}: not one of its ${report.total} records could be read (${first ? formatProblem(first, report.unit) : 'no details'}${more > 0 ? `; ${more} more like it` : ''}): fix the file, or choose the one that holds the data`
}
