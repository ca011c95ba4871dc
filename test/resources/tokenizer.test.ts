/**
 * The default model's tokenizer: exact round trips (corpus text, the chat template, arbitrary
 * Unicode), digits one per token, the special tokens, and that the BPE trainer reproduces the
 * shipped tokenizer.json from the build record's seed.
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadChatTemplate, loadTokenizer, type ChatTemplate, type ModelTokenizer } from '../../src/main/data/index'
import { generateCorpus } from '../../scripts/default-model/corpus'
import { docText } from '../../scripts/default-model/pretrain'
import { heldOut } from '../../scripts/default-model/samples'
import { noExclusions } from '../../scripts/default-model/tasks'
import { pretokenize, tokenizerJson, trainBpe, SPECIAL_TOKENS } from '../../scripts/default-model/tokenizer'
import { Random } from '../../scripts/default-model/random'

const MODEL = resolve(__dirname, '../../resources/default-model')
const record = JSON.parse(readFileSync(join(MODEL, 'workbench.json'), 'utf8')) as {
  seed: number
  corpus: { tokenizerDocuments: number }
  tokenizer: { vocabSize: number }
}

let tok: ModelTokenizer
let template: ChatTemplate
beforeAll(async () => {
  tok = await loadTokenizer(MODEL)
  template = await loadChatTemplate(MODEL)
})

const roundTrips = (s: string): boolean => tok.decode(tok.encode(s)) === s

describe('default tokenizer', () => {
  it('has its special tokens, the chat template and no BOS added by encoding', () => {
    expect([tok.padId, tok.bosId, tok.eosId]).toEqual([0, 1, 2])
    expect(tok.addsBos).toBe(false)
    expect(tok.vocabSize).toBe(record.tokenizer.vocabSize)
    expect(template.source).toBe('model')
    const text = template.render([{ role: 'user', content: 'Hi.' }], true)
    expect(text).toBe('<s><|user|>\nHi.\n<|assistant|>\n')
    const ids = tok.encode(text)
    expect(ids.slice(0, 2)).toEqual([1, 4])
    expect(ids[ids.length - 2]).toBe(5)
  })

  it('round-trips the corpus exactly', () => {
    const docs = generateCorpus(12345, 500, noExclusions())
    for (const d of docs) {
      const text = docText(d)
      expect(roundTrips(text), text).toBe(true)
    }
  })

  it('round-trips arbitrary Unicode exactly', () => {
    const fixed = [
      'héllo wörld',
      '日本語のテキスト',
      '🤗🦊 emoji 👩‍👩‍👧',
      'e\u0301 (combining)',
      'tabs\tand\r\nnewlines\n\n  x  ',
      '  leading and trailing  ',
      'ﬁ ligature, ß, İ',
      'عربى עברית',
      '\u0000\u0001 control',
      "'s 've 're d'oh",
      '</s> in text <pad><|user|>',
      '123 4567 89.5e-3',
      '{"a": [1, 2, {"b": null}]}',
    ]
    for (const s of fixed) expect(roundTrips(s), JSON.stringify(s)).toBe(true)
    // random strings of code points from every plane (no lone surrogates)
    const r = new Random(7)
    for (let i = 0; i < 300; i++) {
      let s = ''
      for (let j = r.int(1, 24); j > 0; j--) {
        const plane = r.int(0, 3)
        let cp =
          plane === 0 ? r.int(0, 0x7f) : plane === 1 ? r.int(0x80, 0x7ff) : plane === 2 ? r.int(0x800, 0xffff) : r.int(0x10000, 0x10ffff)
        if (cp >= 0xd800 && cp <= 0xdfff) cp = 0x20
        s += String.fromCodePoint(cp)
      }
      expect(roundTrips(s), JSON.stringify(s)).toBe(true)
    }
  })

  it('spells numbers digit by digit', () => {
    const ids = tok.encode('23 + 48 = 71')
    const pieces = ids.map((i) => tok.decode([i]))
    expect(pieces.join('')).toBe('23 + 48 = 71')
    for (const d of '234871') expect(pieces).toContain(d)
  })

  it('is what the trainer makes from the build seed (deterministic)', () => {
    const docs = generateCorpus(record.seed, record.corpus.tokenizerDocuments, heldOut(record.seed).exclude)
    const bpe = trainBpe(docs.map(docText), { vocabSize: 1536 })
    const shipped = JSON.parse(readFileSync(join(MODEL, 'tokenizer.json'), 'utf8'))
    expect(tokenizerJson(bpe)).toEqual(shipped)
  })

  it('pre-tokenises special tokens away and splits digits', () => {
    expect(pretokenize('<s><|user|>\nab 12</s>')).toEqual(['Ċ', 'ab', 'Ġ', '1', '2'])
    expect(SPECIAL_TOKENS).toHaveLength(6)
  })
})
