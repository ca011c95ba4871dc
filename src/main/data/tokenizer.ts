/**
 * A model's tokenizer (Hugging Face tokenizer.json + tokenizer_config.json) through
 * @huggingface/tokenizers, with what the data pipeline needs on top: the special tokens as
 * strings and ids, whether encoding adds a BOS, and encoding of a *span* of a longer text.
 *
 * Spans: a chat is tokenised span by span (prompt parts and trained parts), so the mask
 * boundaries fall exactly between tokens. A span that does not start the text is encoded after
 * an anchor special token which is then dropped, so it is tokenised as it would be in the middle
 * of the text: SentencePiece-style tokenizers (Metaspace, prepend_scheme "first") add a "▁"
 * only at the very start of a text, not after a special token. Where spans meet at a special
 * token (every chat template's turn markers), the concatenated span ids equal the ids of the
 * whole text.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Tokenizer } from '@huggingface/tokenizers'
import { DatasetError } from './errors'

export interface ModelTokenizer {
  /** The model folder it was loaded from. */
  dir: string
  /** Ids are < vocabSize (model vocabulary plus added tokens). */
  vocabSize: number
  bosToken: string | null
  eosToken: string | null
  padToken: string | null
  bosId: number | null
  eosId: number | null
  padId: number | null
  /** Encoding with special tokens puts a BOS first (Llama/Mistral yes, Qwen no). */
  addsBos: boolean
  /** Ids of the added tokens marked special (<|im_end|>, </s>...). */
  specialIds: ReadonlySet<number>
  /** tokenizer_config.json as read (chat_template and all). */
  config: Record<string, unknown>
  /**
   * Ids of `text` without special tokens added. `continuation`: the text continues an earlier
   * span (see the module comment).
   */
  encode(text: string, continuation?: boolean): number[]
  decode(ids: number[], skipSpecialTokens?: boolean): string
  /** The underlying @huggingface/tokenizers instance. */
  readonly tokenizer: Tokenizer
}

/** A special token in tokenizer_config.json: a string, or an AddedToken object. */
export function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value
  if (value !== null && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content
  }
  return null
}

async function readJson(file: string, what: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch {
    throw new DatasetError(`no ${what} in ${join(file, '..')}`)
  }
  try {
    return JSON.parse(text) as Record<string, unknown>
  } catch (e) {
    throw new DatasetError(`${file}: invalid JSON: ${(e as Error).message}`)
  }
}

/** Loads a model folder's tokenizer. tokenizer_config.json is optional (no special tokens then). */
export async function loadTokenizer(modelDir: string): Promise<ModelTokenizer> {
  const json = await readJson(join(modelDir, 'tokenizer.json'), 'tokenizer.json')
  let config: Record<string, unknown> = {}
  try {
    config = await readJson(join(modelDir, 'tokenizer_config.json'), 'tokenizer_config.json')
  } catch (e) {
    if (!(e instanceof DatasetError) || !e.message.startsWith('no ')) throw e
  }
  return createTokenizer(modelDir, json, config)
}

interface AddedTokenJson {
  id: number
  content: string
  lstrip?: boolean
  rstrip?: boolean
  special?: boolean
}

export function createTokenizer(dir: string, json: Record<string, unknown>, config: Record<string, unknown>): ModelTokenizer {
  // tokenizers.js reads the special tokens as plain strings from the config.
  const plain: Record<string, unknown> = { ...config }
  for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
    if (key in plain) plain[key] = tokenString(plain[key])
  }
  let tokenizer: Tokenizer
  try {
    tokenizer = new Tokenizer(json, plain)
  } catch (e) {
    throw new DatasetError(`${join(dir, 'tokenizer.json')}: unsupported tokenizer (${(e as Error).message})`)
  }
  const added = (Array.isArray(json.added_tokens) ? json.added_tokens : []) as AddedTokenJson[]
  const idOf = (token: string | null): number | null => {
    if (token === null) return null
    const a = added.find((t) => t.content === token)
    if (a) return a.id
    return tokenizer.token_to_id(token) ?? null
  }
  const bosToken = tokenString(config.bos_token)
  const eosToken = tokenString(config.eos_token)
  const padToken = tokenString(config.pad_token)
  const bosId = idOf(bosToken)
  const eosId = idOf(eosToken)
  let vocabSize = 0
  for (const id of tokenizer.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1)
  for (const t of added) vocabSize = Math.max(vocabSize, t.id + 1)

  // The anchor: a special added token that strips nothing around it (prefer EOS).
  const anchors = added.filter((t) => t.special !== false && !t.lstrip && !t.rstrip)
  const anchor = anchors.find((t) => t.content === eosToken) ?? anchors[0] ?? null

  const check = (ids: (number | undefined)[], text: string): number[] => {
    if (ids.some((id) => id === undefined)) {
      throw new DatasetError(
        `${join(dir, 'tokenizer.json')}: the tokenizer has no id for part of ${JSON.stringify(text.slice(0, 40))} (no unk_token?)`,
      )
    }
    return ids as number[]
  }
  const encode = (text: string, continuation = false): number[] => {
    if (text === '') return []
    if (!continuation || anchor === null) return check(tokenizer.encode(text, { add_special_tokens: false }).ids, text)
    const ids = tokenizer.encode(anchor.content + text, { add_special_tokens: false }).ids
    if (ids[0] !== anchor.id) return check(tokenizer.encode(text, { add_special_tokens: false }).ids, text)
    return check(ids.slice(1), text)
  }
  const withSpecials = tokenizer.encode('a', { add_special_tokens: true }).ids
  const addsBos = bosId !== null && withSpecials.length > 1 && withSpecials[0] === bosId

  return {
    dir,
    vocabSize,
    bosToken,
    eosToken,
    padToken,
    bosId,
    eosId,
    padId: idOf(padToken),
    addsBos,
    specialIds: new Set(added.filter((t) => t.special !== false).map((t) => t.id)),
    config,
    encode,
    // No tokens is no text: the library throws on an empty list, which a model that answers with
    // EOS at once (an evaluation, a chat reply) produces.
    decode: (ids, skipSpecialTokens = false) => (ids.length === 0 ? '' : tokenizer.decode(ids, { skip_special_tokens: skipSpecialTokens })),
    tokenizer,
  }
}
