/**
 * The dataset library: import JSONL, JSON, CSV/TSV, Parquet and plain text files in any of the
 * supported layouts, validate every row, normalise it (src/shared/dataset.ts), keep a copy in
 * the workspace, and turn rows into token ids and labels for training.
 *
 * - inspectDataset(file, options): layout, report, stats, preview; writes nothing.
 * - importDataset(workspace, file, options): writes <workspace>/datasets/<id>/, atomically.
 * - listDatasets, readManifest, readRows, deleteDataset: the workspace's datasets.
 * - loadTokenizer, loadChatTemplate, encodeExample: what the trainer calls per row.
 */
export { DatasetError } from './errors'
export { encodeExample, countTokens, IGNORE_INDEX, type EncodeOptions, type EncodedExample } from './encode'
export { inspectDataset, formatProblem, type InspectOptions } from './inspect'
export { detectLayout, normalizeRecord, resolveMapping, checkTurns } from './layouts'
export { formatFromExtension, openSource, MAX_JSON_BYTES, MAX_LINE_BYTES } from './readers'
export { validationIndices, validationCount } from './stats'
export {
  DEFAULT_CHAT_TEMPLATE,
  createChatTemplate,
  defaultChatTemplate,
  loadChatTemplate,
  rowSegments,
  type ChatTemplate,
  type SegmentOptions,
} from './template'
export { loadTokenizer, createTokenizer, type ModelTokenizer } from './tokenizer'
export { importDataset, listDatasets, readManifest, readRows, deleteDataset, datasetDir, type ImportOptions } from './workspace'
