/**
 * A small deterministic byte-level BPE trainer (GPT-2 style) that writes a Hugging Face
 * tokenizer.json, tokenizer_config.json and special_tokens_map.json.
 *
 * - Pre-tokenisation: special tokens are split off, digits are split one by one (so numbers are
 *   spelled digit by digit, which keeps arithmetic learnable), then GPT-2's regex, then bytes are
 *   mapped to printable characters (GPT-2's bytes_to_unicode). Every byte is in the vocabulary,
 *   so any text round-trips exactly: decode(encode(s)) === s.
 * - Training: count the pre-tokens, then repeatedly merge the most frequent adjacent pair
 *   (ties broken by the pair's characters, so the result never depends on Map order) until the
 *   vocabulary is full or no pair occurs twice.
 * - Vocabulary: the special tokens first (ids 0..), then the 256 byte symbols in byte order, then
 *   one token per merge in merge order.
 *
 * The files load in @huggingface/tokenizers (the workbench) and in Hugging Face tokenizers /
 * transformers (PreTrainedTokenizerFast).
 */
import { DEFAULT_CHAT_TEMPLATE } from '../../src/main/data/template'

export const PAD = '<pad>'
export const BOS = '<s>'
export const EOS = '</s>'
/** The chat template's role markers, as single special tokens. */
export const ROLE_TOKENS = ['<|system|>', '<|user|>', '<|assistant|>'] as const
export const SPECIAL_TOKENS = [PAD, BOS, EOS, ...ROLE_TOKENS] as const

/** GPT-2's bytes_to_unicode: byte b → a printable character. */
export function bytesToUnicode(): string[] {
  const bs: number[] = []
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b)
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b)
  for (let b = 0xae; b <= 0xff; b++) bs.push(b)
  const cs = bs.slice()
  let n = 0
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b)
      cs.push(256 + n)
      n++
    }
  }
  const out: string[] = new Array(256)
  bs.forEach((b, i) => (out[b] = String.fromCodePoint(cs[i])))
  return out
}

const BYTE_CHARS = bytesToUnicode()
const GPT2_PATTERN = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu
const DIGITS_PATTERN = /[^\d]+|\d/gu
const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
const SPECIAL_SPLIT = new RegExp(`(?:${SPECIAL_TOKENS.map(escapeRe).join('|')})`, 'g')
const encoder = new TextEncoder()

/** The pre-tokens of a text, as byte-level symbol strings (special tokens left out). */
export function pretokenize(text: string): string[] {
  const out: string[] = []
  for (const section of text.split(SPECIAL_SPLIT)) {
    for (const piece of section.match(DIGITS_PATTERN) ?? []) {
      for (const word of piece.match(GPT2_PATTERN) ?? []) {
        out.push(Array.from(encoder.encode(word), (b) => BYTE_CHARS[b]).join(''))
      }
    }
  }
  return out
}

export interface BpeOptions {
  /** Total vocabulary size, special tokens and the 256 byte symbols included. */
  vocabSize: number
  /** A pair must occur at least this often to be merged (default 2). */
  minFrequency?: number
  onProgress?: (merges: number) => void
}

export interface TrainedBpe {
  vocab: Record<string, number>
  merges: [string, string][]
}

/** Trains byte-level BPE on texts. Deterministic: the same texts give the same merges. */
export function trainBpe(texts: Iterable<string>, opts: BpeOptions): TrainedBpe {
  const minFrequency = opts.minFrequency ?? 2
  const counts = new Map<string, number>()
  for (const t of texts) for (const w of pretokenize(t)) counts.set(w, (counts.get(w) ?? 0) + 1)

  // Symbols by id; words as id arrays (sorted, so nothing depends on insertion order).
  const symbols: string[] = [...BYTE_CHARS]
  const symbolId = new Map(symbols.map((s, i) => [s, i]))
  const entries = [...counts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const words = entries.map(([w]) => Array.from(w, (ch) => symbolId.get(ch)!))
  const freq = entries.map(([, c]) => c)

  const merges: [string, string][] = []
  const target = opts.vocabSize - SPECIAL_TOKENS.length - 256
  while (merges.length < target) {
    const pairs = new Map<number, number>()
    for (let w = 0; w < words.length; w++) {
      const s = words[w]
      for (let i = 0; i + 1 < s.length; i++) {
        const key = s[i] * 65536 + s[i + 1]
        pairs.set(key, (pairs.get(key) ?? 0) + freq[w])
      }
    }
    let best = -1
    let bestCount = 0
    let bestA = ''
    let bestB = ''
    for (const [key, c] of pairs) {
      if (c < bestCount) continue
      const a = symbols[Math.floor(key / 65536)]
      const b = symbols[key % 65536]
      if (c > bestCount || a < bestA || (a === bestA && b < bestB)) {
        best = key
        bestCount = c
        bestA = a
        bestB = b
      }
    }
    if (best < 0 || bestCount < minFrequency) break
    const left = Math.floor(best / 65536)
    const right = best % 65536
    const merged = symbols.length
    symbols.push(bestA + bestB)
    merges.push([bestA, bestB])
    for (let w = 0; w < words.length; w++) {
      const s = words[w]
      if (s.length < 2) continue
      let j = 0
      let changed = false
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === left && s[i + 1] === right) {
          s[j++] = merged
          i++
          changed = true
        } else s[j++] = s[i]
      }
      if (changed) s.length = j
    }
    if (merges.length % 100 === 0) opts.onProgress?.(merges.length)
  }

  const vocab: Record<string, number> = {}
  SPECIAL_TOKENS.forEach((t, i) => (vocab[t] = i))
  symbols.forEach((s, i) => (vocab[s] = SPECIAL_TOKENS.length + i))
  return { vocab, merges }
}

/** tokenizer.json (Hugging Face tokenizers format). */
export function tokenizerJson(bpe: TrainedBpe): Record<string, unknown> {
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content, id) => ({
      id,
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Digits', individual_digits: true },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      ],
    },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab: bpe.vocab,
      merges: bpe.merges.map(([a, b]) => `${a} ${b}`),
    },
  }
}

/** tokenizer_config.json: special tokens and the chat template (the workbench default format). */
export function tokenizerConfig(modelMaxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: false,
    add_eos_token: false,
    bos_token: BOS,
    eos_token: EOS,
    pad_token: PAD,
    unk_token: null,
    additional_special_tokens: [...ROLE_TOKENS],
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_TOKENS.map((content, id) => [
        String(id),
        { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
    clean_up_tokenization_spaces: false,
    model_max_length: modelMaxLength,
    chat_template: DEFAULT_CHAT_TEMPLATE,
  }
}

export function specialTokensMap(): Record<string, unknown> {
  return { bos_token: BOS, eos_token: EOS, pad_token: PAD, additional_special_tokens: [...ROLE_TOKENS] }
}
