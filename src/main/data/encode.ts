/**
 * encodeExample: a normalised row → the token ids and labels the trainer consumes.
 *
 * Labels follow the Hugging Face convention: the same length as input_ids, the token id where
 * the loss is taken and -100 where it is not (the model shifts internally). With maskPrompt
 * (the default) the loss is taken on the assistant turns of a chat (their content and
 * end-of-turn tokens, e.g. EOS) and on the completion of a prompt/completion row; raw text is
 * trained everywhere. Deterministic: the same row, tokenizer and template give the same ids.
 */
import { type NormalizedRow, rowKind, type TokensRow } from '../../shared/dataset'
import { DatasetError } from './errors'
import { type ChatTemplate, rowSegments } from './template'
import type { ModelTokenizer } from './tokenizer'

export const IGNORE_INDEX = -100

export interface EncodeOptions {
  /** Loss only on assistant turns / the completion (default true). */
  maskPrompt?: boolean
  /** Longest example in tokens (default: no limit). */
  maxLength?: number
  /** What to do with a longer example: keep its start ('right', the default), its end ('left'), or drop it. */
  truncation?: 'left' | 'right' | 'drop'
}

export interface EncodedExample {
  input_ids: number[]
  labels: number[]
}

/**
 * Tokenises one row. Returns null only when the example is longer than maxLength and truncation
 * is 'drop'. Throws DatasetError when the chat template cannot be split into spans.
 */
export function encodeExample(
  row: NormalizedRow,
  tokenizer: ModelTokenizer,
  template: ChatTemplate,
  options: EncodeOptions = {},
): EncodedExample | null {
  const maxLength = options.maxLength ?? Infinity
  if (!(maxLength > 0)) throw new DatasetError(`maxLength must be a positive number of tokens, got ${options.maxLength}`, 'maxLength')
  let input_ids: number[]
  let labels: number[]
  if (rowKind(row) === 'tokens') {
    const r = row as TokensRow
    input_ids = r.input_ids.slice()
    labels = r.labels ? r.labels.slice() : r.input_ids.slice()
  } else {
    const segments = rowSegments(row, template, {
      maskPrompt: options.maskPrompt,
      bos: tokenizer.addsBos ? (tokenizer.bosToken ?? '') : '',
    })
    input_ids = []
    labels = []
    for (let s = 0; s < segments.length; s++) {
      const ids = tokenizer.encode(segments[s].text, s > 0)
      for (const id of ids) {
        input_ids.push(id)
        labels.push(segments[s].trainable ? id : IGNORE_INDEX)
      }
    }
  }
  if (input_ids.length > maxLength) {
    switch (options.truncation ?? 'right') {
      case 'drop':
        return null
      case 'left':
        return { input_ids: input_ids.slice(-maxLength), labels: labels.slice(-maxLength) }
      case 'right':
        return { input_ids: input_ids.slice(0, maxLength), labels: labels.slice(0, maxLength) }
    }
  }
  return { input_ids, labels }
}

/** Tokens of a row (the chat template applied) and how many of them carry loss. */
export function countTokens(row: NormalizedRow, tokenizer: ModelTokenizer, template: ChatTemplate): { total: number; trainable: number } {
  const e = encodeExample(row, tokenizer, template)!
  let trainable = 0
  for (const l of e.labels) if (l !== IGNORE_INDEX) trainable++
  return { total: e.input_ids.length, trainable }
}
