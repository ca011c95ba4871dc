/**
 * Reading dataset files record by record: JSON Lines, plain text and CSV/TSV stream (bounded
 * memory, whatever the file size); Parquet streams by row group; a JSON array is read whole and
 * refused above MAX_JSON_BYTES.
 *
 * Every record carries its 1-based line (JSONL, text, CSV/TSV: the line where the record starts)
 * or row number (JSON array element, Parquet row), and either a value or the reason it could not
 * be read (invalid UTF-8, invalid JSON...). Invalid UTF-8 is found per line with a fatal
 * TextDecoder, so one bad line spoils one record, not the file.
 */
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { extname } from 'node:path'
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import Papa from 'papaparse'
import type { DatasetFormat } from '../../shared/dataset'
import { DatasetError, mb } from './errors'

/** JSON arrays are parsed whole (JSON.parse needs the whole text): larger files are refused. */
export const MAX_JSON_BYTES = 256 * 1024 * 1024
/** A single line (record) longer than this is reported and skipped rather than buffered. */
export const MAX_LINE_BYTES = 64 * 1024 * 1024

export interface SourceRecord {
  /** 1-based line or row number (see ReadOptions / ValidationReport.unit). */
  line: number
  /** The record: an object for JSONL/JSON/CSV/Parquet, `{ text }` for plain text. */
  value?: unknown
  /** Why the record could not be read; the record is invalid. */
  error?: string
}

export interface ReadOptions {
  signal?: AbortSignal
  /** Called as bytes of the file are consumed (cumulative). */
  onBytes?: (bytesRead: number) => void
  /** Plain text: one record per line (default) or per paragraph (blank-line separated). */
  textUnit?: 'line' | 'paragraph'
}

export interface DatasetSource {
  format: DatasetFormat
  bytes: number
  /** What record numbers count: file lines or rows. */
  unit: 'line' | 'row'
  /** Column names, when the format declares them (CSV header, Parquet schema). */
  columns?: string[]
  records(options?: ReadOptions): AsyncGenerator<SourceRecord>
}

const EXTENSIONS: Record<string, DatasetFormat> = {
  '.jsonl': 'jsonl',
  '.ndjson': 'jsonl',
  '.json': 'json',
  '.csv': 'csv',
  '.tsv': 'tsv',
  '.tab': 'tsv',
  '.parquet': 'parquet',
  '.pq': 'parquet',
  '.txt': 'text',
  '.text': 'text',
  '.md': 'text',
}

export function formatFromExtension(file: string): DatasetFormat | null {
  return EXTENSIONS[extname(file).toLowerCase()] ?? null
}

/**
 * Opens a dataset file: picks the format from the extension (a .json file whose first value is
 * not an array, or that is too big to read whole, is read as JSON Lines) and reads the metadata
 * it needs. Throws DatasetError for a missing file, an unknown extension or a refused JSON file.
 */
export async function openSource(file: string, format?: DatasetFormat): Promise<DatasetSource> {
  let info
  try {
    info = await stat(file)
  } catch {
    throw new DatasetError(`cannot read ${file}: no such file`, 'file')
  }
  if (!info.isFile()) throw new DatasetError(`${file} is not a file`, 'file')
  const bytes = info.size
  const chosen = format ?? formatFromExtension(file)
  if (chosen === null) {
    throw new DatasetError(`${file}: unknown file type "${extname(file)}" (expected .jsonl, .json, .csv, .tsv, .parquet or .txt)`, 'file')
  }
  if (bytes === 0) throw new DatasetError(`${file} is empty (0 bytes): there are no rows to read. ${CHOOSE_ANOTHER}`)
  if (chosen !== 'parquet') await requireText(file, chosen)
  switch (chosen) {
    case 'jsonl':
      // Named JSON Lines, holding one JSON document (an array, or a pretty-printed object): every
      // line was an invalid row and the layout "not recognised". Read as the JSON it is, unless
      // the format was chosen.
      if (format === undefined && (await isOneJsonDocument(file))) return openJson(file, bytes)
      return { format: 'jsonl', bytes, unit: 'line', records: (o) => jsonlRecords(file, o) }
    case 'text':
      // A .txt export of JSON Lines (an object a line) was read as raw text: every row a line of
      // JSON, trained on as prose. Read as the JSON Lines it is, unless the format was chosen.
      if (format === undefined && (await isJsonLines(file)))
        return { format: 'jsonl', bytes, unit: 'line', records: (o) => jsonlRecords(file, o) }
      return { format: 'text', bytes, unit: 'line', columns: ['text'], records: (o) => textRecords(file, o) }
    case 'csv':
    case 'tsv': {
      const delimiter = chosen === 'tsv' ? '\t' : csvDelimiter(await firstLine(file))
      return { format: chosen, bytes, unit: 'line', records: (o) => delimitedRecords(file, delimiter, o) }
    }
    case 'parquet':
      return openParquet(file, bytes)
    case 'json':
      return openJson(file, bytes)
  }
}

// ---------------------------------------------------------------------------------------------
// Is it text at all?

const CHOOSE_ANOTHER = 'Choose the file that holds the data: JSON Lines, JSON, CSV, TSV or plain text in UTF-8, or Parquet.'

const FORMAT_NAMES: Record<Exclude<DatasetFormat, 'parquet'>, string> = {
  jsonl: 'JSON Lines',
  json: 'JSON',
  csv: 'CSV',
  tsv: 'TSV',
  text: 'plain text',
}

/** Bytes looked at to tell text from binary data. */
export const SNIFF_BYTES = 64 * 1024

/**
 * Why a text format's file is not text, judged from its first bytes, with what to do: a known
 * binary signature, NUL bytes (never in UTF-8 text; what git and grep look for) beyond a stray one
 * or two, or mostly control characters. null: text (perhaps with a few bytes of another encoding, which the
 * per-line UTF-8 check reports by line).
 */
export function notText(head: Uint8Array, format: Exclude<DatasetFormat, 'parquet'>): string | null {
  const starts = (...sig: number[]): boolean => sig.every((b, i) => head[i] === b)
  const kind = FORMAT_NAMES[format]
  if (starts(0x50, 0x41, 0x52, 0x31))
    return `is not ${kind} text: it is a Parquet file. Give it the extension .parquet, or choose the format parquet.`
  if (starts(0x1f, 0x8b))
    return `is not ${kind} text: it is compressed (gzip). Decompress it first (gunzip), then choose the file that gives.`
  if (starts(0x50, 0x4b, 0x03, 0x04))
    return `is not ${kind} text: it is a zip archive (an .xlsx spreadsheet is one). Extract it, or export the sheet as CSV.`
  if (starts(0xff, 0xfe) || starts(0xfe, 0xff)) return `is UTF-16 text, and ${kind} files are read as UTF-8. Save it again as UTF-8.`
  let control = 0
  let nul = 0
  let oddNul = 0
  head.forEach((b, i) => {
    if (b === 0) {
      nul++
      oddNul += i % 2
    }
    // Control characters other than tab, line feed, vertical tab, form feed, carriage return and escape.
    else if (b < 0x20 && !(b >= 0x09 && b <= 0x0d) && b !== 0x1b) control++
  })
  // A NUL or two in text (a stray byte in one row) is that row's problem: the row check names its
  // line and field, and the other rows import. More is binary data, or UTF-16 saved without its
  // byte-order mark (every other byte NUL).
  if (nul > Math.max(2, head.length / 1000)) {
    // NULs at odd places: little-endian, its text at even ones; at even places: big-endian.
    const textAt = oddNul >= 0.9 * nul ? 0 : oddNul <= 0.1 * nul ? 1 : null
    if (textAt !== null && utf16Text(head, textAt))
      return `is UTF-16 text (without a byte-order mark), and ${kind} files are read as UTF-8. Save it again as UTF-8.`
    return `is not a text file: it holds binary data (NUL bytes), and a ${kind} file must be text. ${CHOOSE_ANOTHER}`
  }
  control += nul
  if (control > 0 && control >= 0.1 * head.length)
    return `is not a text file: it holds binary data (mostly control characters), and a ${kind} file must be text. ${CHOOSE_ANOTHER}`
  return null
}

/**
 * Whether the bytes at `parity` (the other bytes being NULs) read as text: printable ASCII, tab,
 * line feed or carriage return, nine in ten at least (UTF-16 of Latin text; a binary file whose
 * NULs happen to fall every other byte has control bytes between them).
 */
function utf16Text(head: Uint8Array, parity: 0 | 1): boolean {
  let text = 0
  let all = 0
  for (let i = parity; i < head.length; i += 2) {
    const b = head[i]
    all++
    if ((b >= 0x20 && b < 0x7f) || b === 0x09 || b === 0x0a || b === 0x0d) text++
  }
  return all > 0 && text >= 0.9 * all
}

const BLANK = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20])
const BOM = [0xef, 0xbb, 0xbf]

/**
 * Refuses, saying what to do, a file of a text format that is not text or holds nothing but
 * blank lines: otherwise it reads as no rows at all ("0 rows read · 0 valid · 0 invalid"). Reads
 * the first SNIFF_BYTES, and further only while every byte is blank.
 */
async function requireText(file: string, format: Exclude<DatasetFormat, 'parquet'>): Promise<void> {
  const stream = createReadStream(file, { highWaterMark: SNIFF_BYTES })
  let offset = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (offset === 0) {
        const problem = notText(chunk.subarray(0, SNIFF_BYTES), format)
        if (problem) throw new DatasetError(`${file} ${problem}`)
      }
      for (let i = 0; i < chunk.length; i++) {
        const at = offset + i
        if (BLANK.has(chunk[i]) || (at < BOM.length && chunk[i] === BOM[at])) continue
        return
      }
      offset += chunk.length
    }
  } finally {
    stream.destroy()
  }
  throw new DatasetError(`${file} holds only blank lines and spaces: there are no rows to read. ${CHOOSE_ANOTHER}`)
}

// ---------------------------------------------------------------------------------------------
// Lines

export interface Line {
  line: number
  /** The line without its terminator ('\n' or '\r\n'); decoded with replacement when badUtf8. */
  text: string
  badUtf8: boolean
  /** The line was longer than MAX_LINE_BYTES; text is '' and the bytes were skipped. */
  tooLong: boolean
}

const fatal = new TextDecoder('utf-8', { fatal: true })
const lenient = new TextDecoder('utf-8')

function decodeLine(bytes: Uint8Array, line: number): Line {
  let end = bytes.length
  if (end > 0 && bytes[end - 1] === 13) end-- // \r\n
  const body = end === bytes.length ? bytes : bytes.subarray(0, end)
  try {
    // The default ignoreBOM: false drops a byte order mark at the start of the file's first line.
    return { line, text: fatal.decode(body), badUtf8: false, tooLong: false }
  } catch {
    return { line, text: lenient.decode(body), badUtf8: true, tooLong: false }
  }
}

/** The lines of a file, streamed (1 MiB reads), each decoded on its own. */
export async function* readLines(file: string, options: ReadOptions = {}): AsyncGenerator<Line> {
  const stream = createReadStream(file, { highWaterMark: 1 << 20, signal: options.signal })
  let pending: Buffer[] = []
  let pendingBytes = 0
  let skipping = false // inside an over-long line
  let line = 0
  let read = 0
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      read += chunk.length
      let start = 0
      for (;;) {
        const nl = chunk.indexOf(10, start)
        if (nl === -1) break
        line++
        if (skipping) {
          skipping = false
          yield { line, text: '', badUtf8: false, tooLong: true }
        } else if (pendingBytes === 0) {
          yield decodeLine(chunk.subarray(start, nl), line)
        } else {
          pending.push(chunk.subarray(start, nl))
          yield decodeLine(Buffer.concat(pending), line)
          pending = []
          pendingBytes = 0
        }
        start = nl + 1
      }
      if (start < chunk.length && !skipping) {
        pending.push(chunk.subarray(start))
        pendingBytes += chunk.length - start
        if (pendingBytes > MAX_LINE_BYTES) {
          pending = []
          pendingBytes = 0
          skipping = true
        }
      }
      options.onBytes?.(read)
    }
    if (skipping) yield { line: line + 1, text: '', badUtf8: false, tooLong: true }
    else if (pendingBytes > 0) yield decodeLine(Buffer.concat(pending), line + 1)
  } finally {
    stream.destroy()
  }
}

/** A line that is not UTF-8 (Latin-1 or Windows-1252 text, say), and what to do about it. */
export const INVALID_UTF8 = 'invalid UTF-8 (save the file again as UTF-8)'

function lineProblem(l: Line): string | null {
  if (l.tooLong) return `line is longer than ${mb(MAX_LINE_BYTES)}`
  if (l.badUtf8) return INVALID_UTF8
  return null
}

async function* jsonlRecords(file: string, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  for await (const l of readLines(file, options)) {
    const problem = lineProblem(l)
    if (problem !== null) {
      yield { line: l.line, error: problem }
      continue
    }
    if (isBlank(l.text)) continue
    try {
      yield { line: l.line, value: JSON.parse(l.text) }
    } catch (e) {
      // The column, as a JSON file's error gives it (V8 says "at position N"); the line is the record's.
      yield { line: l.line, error: `invalid JSON${jsonErrorWhere(l.text, (e as Error).message, true)}` }
    }
  }
}

function isBlank(s: string): boolean {
  return s.trim() === ''
}

async function* textRecords(file: string, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  if (options.textUnit !== 'paragraph') {
    for await (const l of readLines(file, options)) {
      const problem = lineProblem(l)
      if (problem !== null) yield { line: l.line, error: problem }
      else if (!isBlank(l.text)) yield { line: l.line, value: { text: l.text } }
    }
    return
  }
  let start = 0
  let parts: string[] = []
  let problem: string | null = null
  for await (const l of readLines(file, options)) {
    const p = lineProblem(l)
    if (p === null && isBlank(l.text)) {
      if (parts.length > 0 || problem !== null)
        yield problem !== null ? { line: start, error: problem } : { line: start, value: { text: parts.join('\n') } }
      parts = []
      problem = null
      continue
    }
    if (parts.length === 0 && problem === null) start = l.line
    if (p !== null) problem ??= p
    else parts.push(l.text)
  }
  if (parts.length > 0 || problem !== null)
    yield problem !== null ? { line: start, error: problem } : { line: start, value: { text: parts.join('\n') } }
}

// ---------------------------------------------------------------------------------------------
// CSV / TSV: papaparse over batches of whole records, the header giving the column names.

/** What a .csv file may separate its fields with, the comma first (spreadsheets in many locales write ";"). */
const CSV_DELIMITERS = [',', ';', '\t', '|'] as const

/**
 * The delimiter of a .csv file, from its header line: whichever of , ; tab | it has most outside
 * quotes (a spreadsheet saved where the comma is the decimal mark writes "question;answer"), the
 * comma on a tie and where it has none (a one-column file).
 */
export function csvDelimiter(header: string): string {
  const counts = new Map<string, number>(CSV_DELIMITERS.map((d) => [d, 0]))
  let quoted = false
  for (const ch of header) {
    if (ch === '"') quoted = !quoted
    else if (!quoted && counts.has(ch)) counts.set(ch, counts.get(ch)! + 1)
  }
  let best = ','
  for (const d of CSV_DELIMITERS) if (counts.get(d)! > counts.get(best)!) best = d
  return best
}

/** The first line of a file that is not blank ('' where there is none). */
async function firstLine(file: string): Promise<string> {
  for await (const l of readLines(file)) if (l.text.trim() !== '') return l.text
  return ''
}

/** Text handed to papaparse at once: about this much, cut where a record ends. */
const CSV_BATCH_CHARS = 1 << 16
/** A batch is cut here even inside an open quote (only a malformed file gets there). */
const CSV_MAX_BATCH_CHARS = 16 << 20

function countQuotes(s: string): number {
  let n = 0
  for (let i = s.indexOf('"'); i !== -1; i = s.indexOf('"', i + 1)) n++
  return n
}

/**
 * A row with more or fewer fields than the header, in words: the columns it has no value for, or
 * that a field with the delimiter in it goes in double quotes (it said only "expected 2 fields,
 * got 1", and the only way on offered was leaving the row out).
 */
export function fieldCountProblem(header: readonly string[], count: number, delimiter: string, withQuote = false): string {
  const d = delimiter === '\t' ? 'a tab' : delimiter === ',' ? 'a comma' : delimiter === ';' ? 'a semicolon' : `"${delimiter}"`
  const base = `expected ${header.length} fields, got ${count}`
  if (count < header.length) return `${base}: no ${header.slice(count).join(', ')} (fields are separated by ${d})`
  // `What is "big, plus 1?,3`: a quote that does not open the field is a character like any other.
  if (withQuote)
    return `${base}: a field with ${d} in it goes in double quotes, the whole field (a quote after its first character quotes nothing), and a quote inside it is written twice: "say ""hi""${delimiter === '\t' ? ' ' : delimiter} then"`
  return `${base}: a field with ${d} in it goes in double quotes`
}

/**
 * Lines are gathered into batches that end where a record ends (an even number of quotes so
 * far: RFC 4180 escapes a quote by doubling it), and each batch is parsed synchronously. A
 * record's line is counted from the newlines inside its quoted fields.
 */
async function* delimitedRecords(file: string, delimiter: string, options: ReadOptions = {}): AsyncGenerator<SourceRecord> {
  // Lines with invalid UTF-8 (or over-long), in order; consumed as records pass them.
  const badLines: { line: number; problem: string }[] = []
  let header: string[] | null = null
  let line = 1 // where the next record starts

  function* parse(lines: string[]): Generator<SourceRecord> {
    const parsed = Papa.parse<string[]>(lines.join('\n'), {
      delimiter,
      newline: '\n',
      header: false,
      skipEmptyLines: false,
      quoteChar: '"',
    })
    // A quote never closed makes the rest of the batch one field: said, never swallowed quietly.
    const unclosed = new Set(parsed.errors.filter((e) => e.code === 'MissingQuotes').map((e) => e.row))
    // Text after a field's closing quote where the field spans lines: a quote left open, the next
    // line read into the field and that row lost without a word. (On one line it is a lone quote
    // inside a quoted field, `"He said "hi""`, whose lenient reading is what was meant: kept.)
    const malformed = new Set(parsed.errors.filter((e) => e.code === 'InvalidQuotes').map((e) => e.row))
    for (const [index, fields] of parsed.data.entries()) {
      const start = line
      let newlines = 0
      for (const f of fields) for (let i = f.indexOf('\n'); i !== -1; i = f.indexOf('\n', i + 1)) newlines++
      line += 1 + newlines
      const end = line - 1
      let problem: string | null = null
      while (badLines.length > 0 && badLines[0].line <= end) {
        const bad = badLines.shift()!
        if (bad.line >= start) problem ??= bad.problem
      }
      if (fields.length === 1 && fields[0].trim() === '' && problem === null) continue // blank line (or only spaces)
      if (header === null) {
        if (problem !== null) throw new DatasetError(`${file}: the header (line ${start}) has ${problem}`)
        header = uniqueNames(fields.map((f) => f.trim()))
        continue
      }
      if (problem !== null) {
        yield { line: start, error: problem }
        continue
      }
      if (unclosed.has(index)) {
        yield {
          line: start,
          error: `a quote (") opens a field on line ${start} that is never closed, so ${newlines} line${newlines === 1 ? '' : 's'} after it ${newlines === 1 ? 'was' : 'were'} read into that field; close the quote, or write "" for a quote inside a quoted field`,
        }
        continue
      }
      if (malformed.has(index) && newlines > 0) {
        yield {
          line: start,
          error: `a quoted field on line ${start} runs on into line${newlines === 1 ? '' : 's'} ${start + 1}${newlines === 1 ? '' : `-${start + newlines}`} (text follows a quote that should close it), so ${newlines === 1 ? 'that line was' : 'those lines were'} read into this row; close the quote on line ${start}, or write "" for a quote inside a quoted field`,
        }
        continue
      }
      if (fields.length !== header.length) {
        yield {
          line: start,
          error: fieldCountProblem(
            header,
            fields.length,
            delimiter,
            fields.some((f) => f.includes('"')),
          ),
        }
        continue
      }
      const value: Record<string, string> = {}
      for (let i = 0; i < header.length; i++) value[header[i]] = fields[i]
      yield { line: start, value }
    }
  }

  let batch: string[] = []
  let chars = 0
  let quotes = 0
  for await (const l of readLines(file, options)) {
    const problem = lineProblem(l)
    if (problem !== null) badLines.push({ line: l.line, problem })
    batch.push(l.text)
    chars += l.text.length + 1
    quotes += countQuotes(l.text)
    if ((chars >= CSV_BATCH_CHARS && quotes % 2 === 0) || chars >= CSV_MAX_BATCH_CHARS) {
      yield* parse(batch)
      batch = []
      chars = 0
      quotes = 0
    }
  }
  if (batch.length > 0) yield* parse(batch)
}

function uniqueNames(names: string[]): string[] {
  const seen = new Map<string, number>()
  return names.map((n, i) => {
    const name = n === '' ? `column_${i + 1}` : n
    const count = (seen.get(name) ?? 0) + 1
    seen.set(name, count)
    return count === 1 ? name : `${name}_${count}`
  })
}

// ---------------------------------------------------------------------------------------------
// JSON (an array, or an object holding one array), read whole.

async function openJson(file: string, bytes: number): Promise<DatasetSource> {
  const head = (await readHead(file, 1 << 16)).replace(/^\uFEFF/, '').trimStart()
  const first = head[0]
  const jsonl: DatasetSource = { format: 'jsonl', bytes, unit: 'line', records: (o) => jsonlRecords(file, o) }
  // Many .json files are JSON Lines: a first line that is a whole object, with more after it,
  // says so without reading the rest.
  const nl = head.indexOf('\n')
  const linesOfObjects = nl !== -1 && head.slice(nl + 1).trim() !== '' && isJsonObject(head.slice(0, nl))
  if (first === '{' && (bytes > MAX_JSON_BYTES || linesOfObjects)) return jsonl
  if (first !== '[' && first !== '{') {
    if (first === undefined) throw new DatasetError(`${file} is empty`)
    throw new DatasetError(`${file}: expected a JSON array of objects (or JSON Lines), found "${first}" at the start`)
  }
  if (bytes > MAX_JSON_BYTES) {
    throw new DatasetError(
      `${file} is ${mb(bytes)}: a JSON array is read whole and the limit is ${mb(MAX_JSON_BYTES)}; convert it to JSON Lines (one object per line), which streams`,
    )
  }
  const buffer = await readFile(file)
  let text: string
  try {
    text = fatal.decode(buffer)
  } catch {
    throw new DatasetError(`${file}: invalid UTF-8 at line ${firstBadLine(buffer)}; save it again as UTF-8`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (e) {
    // Many .json files are JSON Lines.
    if (first === '{') return jsonl
    throw new DatasetError(`${file}: invalid JSON${jsonErrorWhere(text, (e as Error).message)}`)
  }
  const rows = jsonRows(file, parsed)
  return {
    format: 'json',
    bytes,
    unit: 'row',
    async *records(options: ReadOptions = {}) {
      for (let i = 0; i < rows.length; i++) {
        if ((i & 1023) === 0) options.signal?.throwIfAborted()
        yield { line: i + 1, value: rows[i] }
        if ((i & 1023) === 1023) options.onBytes?.(Math.round((bytes * (i + 1)) / rows.length))
      }
      options.onBytes?.(bytes)
    },
  }
}

function isJsonObject(text: string): boolean {
  try {
    const v: unknown = JSON.parse(text)
    return v !== null && typeof v === 'object' && !Array.isArray(v)
  } catch {
    return false
  }
}

/** Whether a file's first lines (two or more, up to 20 in its first 64 KiB) are each a whole JSON object. */
async function isJsonLines(file: string): Promise<boolean> {
  const head = (await readHead(file, 1 << 16)).replace(/^\uFEFF/, '')
  const lines = head.split('\n')
  if (lines.length > 1) lines.pop() // the last may be cut off by the 64 KiB
  const first = lines
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .slice(0, 20)
  return first.length >= 2 && first.every(isJsonObject)
}

/** Whether a file starts as one JSON document would and JSON Lines would not: with "[", or with a "{" line that is not a whole object. */
async function isOneJsonDocument(file: string): Promise<boolean> {
  const head = (await readHead(file, 1 << 16)).replace(/^\uFEFF/, '').trimStart()
  if (head[0] === '[') return true
  const nl = head.indexOf('\n')
  return head[0] === '{' && nl !== -1 && !isJsonObject(head.slice(0, nl))
}

async function readHead(file: string, n: number): Promise<string> {
  const stream = createReadStream(file, { start: 0, end: n - 1 })
  const chunks: Buffer[] = []
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c)
  return lenient.decode(Buffer.concat(chunks))
}

function firstBadLine(buffer: Buffer): number {
  let line = 1
  let start = 0
  for (;;) {
    const nl = buffer.indexOf(10, start)
    const end = nl === -1 ? buffer.length : nl
    try {
      fatal.decode(buffer.subarray(start, end))
    } catch {
      return line
    }
    if (nl === -1) return line
    line++
    start = nl + 1
  }
}

// ---------------------------------------------------------------------------------------------
// Parquet, one row group at a time.

async function openParquet(file: string, bytes: number): Promise<DatasetSource> {
  const buffer = await asyncBufferFromFile(file)
  let metadata
  try {
    metadata = await parquetMetadataAsync(buffer)
  } catch (e) {
    throw new DatasetError(`${file}: not a readable Parquet file (${(e as Error).message})`)
  }
  const root = metadata.schema[0]
  const columns: string[] = []
  // Top-level columns are the root's children: walk the flattened schema, skipping nested ones.
  let i = 1
  const skip = (): void => {
    const n = metadata.schema[i].num_children ?? 0
    i++
    for (let c = 0; c < n; c++) skip()
  }
  for (let c = 0; c < (root.num_children ?? 0); c++) {
    columns.push(metadata.schema[i].name)
    skip()
  }
  const groups = metadata.row_groups.map((g) => ({
    rows: Number(g.num_rows),
    bytes: g.columns.reduce((s, c) => s + Number(c.meta_data?.total_compressed_size ?? 0), 0),
  }))
  const totalGroupBytes = groups.reduce((s, g) => s + g.bytes, 0) || 1
  return {
    format: 'parquet',
    bytes,
    unit: 'row',
    columns,
    async *records(options: ReadOptions = {}) {
      let rowStart = 0
      let done = 0
      for (const group of groups) {
        options.signal?.throwIfAborted()
        let rows: Record<string, unknown>[]
        try {
          rows = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd: rowStart + group.rows, compressors })
        } catch (e) {
          throw new DatasetError(`${file}: cannot read rows ${rowStart + 1}-${rowStart + group.rows}: ${(e as Error).message}`)
        }
        for (let r = 0; r < rows.length; r++) yield { line: rowStart + r + 1, value: fromParquet(rows[r]) }
        rowStart += group.rows
        done += group.bytes
        options.onBytes?.(Math.round((bytes * done) / totalGroupBytes))
      }
    },
  }
}

/** INT64 values arrive as BigInt: make them numbers (token ids fit), recursively. */
function fromParquet(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value)
  if (Array.isArray(value)) return value.map(fromParquet)
  if (value !== null && typeof value === 'object' && !(value instanceof Uint8Array) && !(value instanceof Date)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = fromParquet(v)
    return out
  }
  return value
}

/** Whether JSON.parse reads all of `prefix` before it stops: the text so far is a valid start. */
function readsToEnd(prefix: string): boolean {
  try {
    JSON.parse(prefix)
    return true
  } catch (e) {
    const message = (e as Error).message
    const at = / in JSON at position (\d+)/.exec(message)
    return /^Unexpected end of JSON input/.test(message) || (at !== null && Number(at[1]) === prefix.length)
  }
}

/**
 * The index of the unexpected `token` in a short `text` V8 quoted whole: the first occurrence the
 * text before reads up to (in "not json" the o of "not", not the one of "json").
 */
function stoppingIndex(text: string, token: string): number {
  for (let i = text.indexOf(token); i >= 0; i = text.indexOf(token, i + 1))
    if (readsToEnd(text.slice(0, i)) && !readsToEnd(text.slice(0, i + 1))) return i
  return text.lastIndexOf(token)
}

/**
 * Where JSON.parse stopped in `text`, for people: " at line L, column C: <what it expected>" and
 * the line (V8 gives a character offset, or only a few characters around the token); ": <the
 * message>" where it cannot tell. `oneLine`: the text is one record's line (JSON Lines), whose line
 * number the caller gives: the column only.
 */
export function jsonErrorWhere(text: string, message: string, oneLine = false): string {
  let pos: number | null = null
  let what = message
  const at = / (in|after) JSON at position (\d+)/.exec(message)
  if (at) {
    pos = Number(at[2])
    what = message.slice(0, at.index) + (at[1] === 'after' ? ' after the value' : '')
  } else {
    // 'Unexpected token X, "<text>" is not valid JSON', the text cut to 10 characters on either
    // side of the token where longer, the cut marked ...
    const m = /^Unexpected token '([\s\S])', (\.\.\.)?"([\s\S]*)"(\.\.\.)? is not valid JSON$/.exec(message)
    const from = m ? text.indexOf(m[3]) : -1
    if (m && from >= 0) {
      const i = m[2] ? 10 : m[4] ? m[3].length - 11 : stoppingIndex(m[3], m[1])
      if (m[3][i] === m[1]) {
        pos = from + i
        what = `unexpected ${JSON.stringify(m[1])}`
      }
    }
  }
  if (pos === null || pos > text.length) return `: ${message}`
  const before = text.slice(0, pos)
  const line = before.split('\n').length
  const start = before.lastIndexOf('\n') + 1
  const end = text.indexOf('\n', pos)
  const lineText = text.slice(start, end < 0 ? undefined : end).trimEnd()
  const shown = lineText.length > 80 ? `${lineText.slice(Math.max(0, pos - start - 40), pos - start + 40)}` : lineText
  // Stopped at the very end: brackets left open (a JSON Lines record missing its closing "]}" was
  // told of commas), else a comma too many or too few.
  const cause =
    text.slice(pos).trim() === ''
      ? `it ends before every { and [ in it is closed: a } or ] is missing at its end${oneLine ? '' : ', or the file was cut short'}`
      : 'a trailing comma or a missing one is the usual cause'
  return ` at ${oneLine ? '' : `line ${line}, `}column ${pos - start + 1}: ${what.replace(/\.$/, '')} (${JSON.stringify(shown)}); ${cause}`
}

/**
 * The rows of a parsed .json file: the file's array, or the one array at the top level of its
 * object ({"version": 1, "data": [...]}); otherwise an error naming what the file holds and what
 * to do (it said "an object with exactly one array (found 0)", naming no key). `parsed` is an
 * array or an object: the reader parses only a file that starts with [ or {.
 */
export function jsonRows(file: string, parsed: unknown): unknown[] {
  if (Array.isArray(parsed)) return parsed
  const want = 'expected an array of rows, or an object with one array of rows at its top level'
  const entries = Object.entries(parsed as Record<string, unknown>)
  const arrays = entries.filter(([, v]) => Array.isArray(v)).map(([k]) => k)
  if (arrays.length === 1) return (parsed as Record<string, unknown[]>)[arrays[0]]
  if (arrays.length > 1)
    throw new DatasetError(
      `${file}: ${want}; it has ${arrays.length} (${arrays.map((k) => JSON.stringify(k)).join(', ')}): save the one to import as a file of its own`,
    )
  // An array one level down ({"data": {"rows": [...]}}): named, so the user knows where it is.
  const nested = entries.flatMap(([k, v]) =>
    v !== null && typeof v === 'object' ? Object.entries(v).flatMap(([k2, v2]) => (Array.isArray(v2) ? [`${k}.${k2}`] : [])) : [],
  )
  const keys = entries.length ? `its keys: ${entries.map(([k]) => JSON.stringify(k)).join(', ')}` : 'it is an empty object'
  throw new DatasetError(
    `${file}: ${want}; ${keys}${nested.length ? `, and the rows in ${nested.join(', ')} are nested deeper: make them the file's top level, or convert the file to JSON Lines` : ''}`,
  )
}
