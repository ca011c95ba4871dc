/**
 * Datasets: the normalised row every imported file becomes, and the reports, statistics and
 * manifests the dataset library (src/main/data) produces. Types only (plus two tiny guards), so
 * the renderer and the preload can import it freely.
 */

// ---------------------------------------------------------------------------------------------
// The normalised row: what `<workspace>/datasets/<id>/rows.jsonl` holds, one per line.

export type ChatRole = 'system' | 'user' | 'assistant'

export interface ChatMessage {
  role: ChatRole
  content: string
  /**
   * 0: an assistant turn kept as context and not trained on (OpenAI's fine-tuning "weight");
   * absent: trained (an assistant turn) as usual.
   */
  weight?: 0
}

/**
 * A conversation: an optional leading system message, then user and assistant turns alternating,
 * starting with the user and ending with the assistant (the turns that are trained on).
 */
export interface ChatRow {
  messages: ChatMessage[]
}

/** A prompt and its completion, no chat template: loss on the completion only (by default). */
export interface CompletionRow {
  prompt: string
  completion: string
}

/** Raw text (continued pre-training): loss on every token. */
export interface TextRow {
  text: string
}

/** Already tokenised: ids of the model's vocabulary; labels -100 where no loss is taken. */
export interface TokensRow {
  input_ids: number[]
  /** Same length as input_ids (HF convention, the loss shifts internally); absent: all trained. */
  labels?: number[]
}

export type NormalizedRow = ChatRow | CompletionRow | TextRow | TokensRow

export type RowKind = 'chat' | 'completion' | 'text' | 'tokens'

export function rowKind(row: NormalizedRow): RowKind {
  if ('messages' in row) return 'chat'
  if ('completion' in row) return 'completion'
  if ('input_ids' in row) return 'tokens'
  return 'text'
}

// ---------------------------------------------------------------------------------------------
// Files, layouts and column mappings

/** File formats read by the importer (chosen from the extension, .json sniffed for JSON Lines). */
export const DATASET_FORMATS = ['jsonl', 'json', 'csv', 'tsv', 'parquet', 'text'] as const
export type DatasetFormat = (typeof DATASET_FORMATS)[number]

/**
 * How the records of a file are laid out:
 * - alpaca: instruction, input (optional), output, system (optional), history (optional: LLaMA-Factory's [instruction, response] pairs before it)
 * - sharegpt: conversations: [{from: human|gpt|system, value}], system (optional: the system prompt where the conversation has no system turn)
 * - messages: messages: [{role: system|user|assistant, content}] (OpenAI style), system (optional, as sharegpt's)
 * - completion: prompt, completion
 * - text: text (and every line of a plain text file)
 * - tokens: input_ids, labels (optional)
 */
export const DATASET_LAYOUTS = ['alpaca', 'sharegpt', 'messages', 'completion', 'text', 'tokens'] as const
export type DatasetLayout = (typeof DATASET_LAYOUTS)[number]

/** The logical fields of each layout; a column mapping maps some of them to the file's columns. */
export const LAYOUT_FIELDS = {
  alpaca: ['instruction', 'input', 'output', 'system', 'history'],
  sharegpt: ['conversations', 'system'],
  messages: ['messages', 'system'],
  completion: ['prompt', 'completion'],
  text: ['text'],
  tokens: ['input_ids', 'labels'],
} as const satisfies Record<DatasetLayout, readonly string[]>

/** Logical field → column of the file, e.g. `{ instruction: 'question', output: 'answer' }`. */
export type ColumnMapping = Partial<Record<string, string>>

/**
 * For a file with chosen and rejected columns (a preference dataset, TRL's or LLaMA-Factory's
 * ranking one): the column to read as the prompt when fine-tuning on the chosen answers, or null
 * for another file. The workbench trains on answers, not on preferences between two.
 */
export function preferencePrompt(columns: readonly string[]): string | null {
  if (!columns.includes('chosen') || !columns.includes('rejected')) return null
  return (
    ['prompt', 'question', 'instruction', 'input'].find((c) => columns.includes(c)) ??
    columns.find((c) => c !== 'chosen' && c !== 'rejected') ??
    null
  )
}

/**
 * The columns of a file that `layout` with `mapping` leaves unread (an id, a source, a column the
 * layout has no field for), so a user sees what a detection passed over. A field left unmapped
 * reads the column of its own name; a chat layout's role and content are keys inside each turn.
 */
export function unreadColumns(columns: readonly string[], layout: DatasetLayout | null, mapping: ColumnMapping): string[] {
  if (layout === null) return []
  const read = new Set(LAYOUT_FIELDS[layout].map((f) => mapping[f] ?? f))
  return columns.filter((c) => !read.has(c))
}

// ---------------------------------------------------------------------------------------------
// Validation report, statistics, preview

export interface RowProblem {
  /** 1-based line of the file (JSONL, CSV/TSV: where the record starts, text) or row (JSON array, Parquet). */
  line: number
  /** The column or path inside the row, e.g. `messages[2].role`; '' for the whole row. */
  field: string
  message: string
}

export interface ValidationReport {
  /** What `line` counts in this file: lines of the file, or rows (elements of a JSON array, Parquet rows). */
  unit: 'line' | 'row'
  /** Rows read (blank lines are not rows). */
  total: number
  valid: number
  invalid: number
  /** The first problems, in file order (at most `problemLimit`). */
  problems: RowProblem[]
  /** All problems found, including those not listed. */
  problemCount: number
}

export interface HistogramBin {
  /** Inclusive lower bound (tokens). */
  from: number
  /** Exclusive upper bound (tokens). */
  to: number
  count: number
}

export interface LengthStats {
  count: number
  min: number
  median: number
  p95: number
  max: number
  mean: number
  histogram: HistogramBin[]
}

export interface DatasetStats {
  /** Valid rows. */
  rows: number
  /** Valid rows that exactly repeat an earlier valid row (after normalisation). */
  duplicates: number
  /** Tokens per row (chat template applied), when a tokenizer was given. */
  tokens?: LengthStats & {
    /** The model folder whose tokenizer measured them. */
    tokenizer: string
    /** Trainable (loss-bearing) tokens over all rows. */
    trainable: number
    total: number
  }
  /** Characters per row (content only, no template), always. */
  chars: LengthStats
  /**
   * Prompt/completion rows whose prompt ends and completion starts with no space or newline
   * between (they are joined as written: "France?The capital"), with the first one's line and the
   * join; absent where there are none.
   */
  unspacedJoins?: { rows: number; line: number; join: string }
}

/** A prompt and completion joined as written with nothing between them (no space or newline at the join). */
export function unspacedJoin(prompt: string, completion: string): boolean {
  return prompt !== '' && completion !== '' && !/\s$/.test(prompt) && !/^\s/.test(completion)
}

/** "…capital of France?|The capital of…": the few characters either side of a join, the join marked. */
export function joinExcerpt(prompt: string, completion: string, around = 16): string {
  return `${prompt.length > around ? '…' : ''}${prompt.slice(-around)}|${completion.slice(0, around)}${completion.length > around ? '…' : ''}`
}

/** The warning for unspacedJoins, in words (the report and the CLI). */
export function unspacedJoinsText(j: NonNullable<DatasetStats['unspacedJoins']>, rows: number, unit: string): string {
  const who =
    j.rows === rows ? (rows === 1 ? 'The row joins' : 'All rows join') : `${j.rows} of ${rows} rows join${j.rows === 1 ? 's' : ''}`
  const one = j.rows === 1
  return `${who} ${one ? 'its prompt and completion' : 'their prompts and completions'} with nothing between (${unit} ${j.line}: “${j.join}”, | marking the join): the model learns them joined so. If a space or a newline belongs there, end each prompt (or start each completion) with one.`
}

/** A span of a row as the model sees it: the chat template applied, `trainable` where loss is taken. */
export interface Segment {
  text: string
  trainable: boolean
}

export interface PreviewRow {
  /** Line or row number in the file (see ValidationReport.unit). */
  line: number
  row: NormalizedRow
  segments: Segment[]
  /** Token count under the tokenizer, when one was given. */
  tokens?: number
  /** Why the row could not be split into segments (a chat template that is not prefix-stable). */
  error?: string
}

export interface InspectResult {
  file: string
  format: DatasetFormat
  bytes: number
  /**
   * The layout used: the override when given, else the detected one. null: nothing was
   * recognised and no layout was given; the report and stats are empty until the user picks a
   * layout and maps the columns.
   */
  layout: DatasetLayout | null
  /** What detection found (null: nothing recognisable; the user must pick a layout and map columns). */
  detectedLayout: DatasetLayout | null
  /** The mapping used (logical field → column), detected or given. */
  mapping: ColumnMapping
  /** Columns seen in the first records. */
  columns: string[]
  report: ValidationReport
  stats: DatasetStats
  /** A page of valid rows as the model will see them. */
  preview: PreviewRow[]
  /** The chat template that produced the preview: the model's, or the workbench default. */
  template: { source: 'model' | 'default'; eosToken: string }
}

// ---------------------------------------------------------------------------------------------
// The workspace copy

export type DatasetSplit = 'train' | 'validation'

export interface DatasetManifest {
  version: 1
  id: string
  name: string
  source: {
    /** The file imported (absolute), never modified. */
    path: string
    format: DatasetFormat
    bytes: number
    sha256: string
  }
  layout: DatasetLayout
  mapping: ColumnMapping
  /** How `line` numbers in the problems count (see ValidationReport.unit). */
  counts: {
    /** Rows read from the file. */
    read: number
    valid: number
    /** Invalid rows left out (only with acceptInvalid). */
    invalid: number
    /** Exact duplicates among valid rows. */
    duplicates: number
    /** Duplicates left out (dedupe: true). */
    deduplicated: number
    /** Rows in rows.jsonl: train + validation. */
    rows: number
  }
  stats: DatasetStats
  split: {
    /** Fraction of rows held out for validation. */
    validation: number
    seed: number
    train: number
    validationRows: number
  }
  /** The first problems of the import, when invalid rows were accepted. */
  problems: RowProblem[]
  files: {
    original: string
    rows: string
    /** JSON {"validation": [row indices into rows.jsonl, ascending]} */
    split: string
  }
  /** ISO 8601. */
  createdAt: string
}

/** Progress of an inspection or an import (bytes of the source read so far). */
export interface DatasetProgress {
  phase: 'reading' | 'writing' | 'done'
  bytesRead: number
  totalBytes: number
  rows: number
}

// ---------------------------------------------------------------------------------------------
// The datasets.* API methods (src/shared/api.ts) and their event

/** A dataset file to read, and how (src/main/data: inspectDataset). */
export interface DatasetsInspectArgs {
  /** The file (JSONL, JSON, CSV/TSV, Parquet, plain text); never modified. */
  file: string
  /** Overrides the detected layout. */
  layout?: DatasetLayout
  /** Logical field → column, e.g. { instruction: 'question', output: 'answer' }. */
  mapping?: ColumnMapping
  /** A model folder: its tokenizer and chat template give token statistics and the preview. */
  model?: string
  /** Rows longer than this many tokens are invalid (needs `model`). */
  maxLength?: number
  /** Overrides the format chosen from the extension. */
  format?: DatasetFormat
  /** Plain text: a row per line (default) or per paragraph. */
  textUnit?: 'line' | 'paragraph'
  /** The page of valid rows to preview (default: the first 20). */
  preview?: { offset?: number; limit?: number }
}

export interface DatasetsImportArgs extends DatasetsInspectArgs {
  /** Display name (default: the file name). */
  name?: string
  /** Import the valid rows even when some are invalid; without it, any invalid row refuses the import. */
  acceptInvalid?: boolean
  /** Validation split: fraction held out (default 0.1) and seed (default 0). */
  split?: { validation?: number; seed?: number }
  /** Leave out exact duplicates (default false). */
  dedupe?: boolean
}

/** Progress of a datasets.inspect or datasets.import call, about every 100 ms and at the end. */
export interface DatasetProgressEvent {
  type: 'dataset.progress'
  time: number
  operation: 'inspect' | 'import'
  /** The file being read, as the call named it. */
  file: string
  progress: DatasetProgress
}
/** How many of n rows go to validation: round(n × ratio), at least 1 when ratio > 0 and n ≥ 2, never all. */
export function validationCount(n: number, ratio: number): number {
  if (!(ratio > 0) || n < 2) return 0
  return Math.min(n - 1, Math.max(1, Math.round(n * ratio)))
}

/**
 * Whether an inspection found no layout because not one record parsed (every line invalid JSON,
 * say): then the file, not the layout, is what to fix.
 */
export function nothingParsed(r: Pick<InspectResult, 'layout' | 'report'>): boolean {
  return r.layout === null && r.report.total > 0 && r.report.invalid === r.report.total
}
