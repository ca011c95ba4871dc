/** The evaluation's scorers and row reading, on hand-made cases. */
import { describe, expect, it } from 'vitest'
import { exactMatch, normalizeAnswer, questionOf, tokenF1 } from '../../../src/main/train/evaluate'
import { defaultChatTemplate } from '../../../src/main/data/template'

describe('scoring answers', () => {
  it('normalises case, surrounding punctuation and whitespace, not inner words', () => {
    expect(normalizeAnswer('  Berlin.  ')).toBe('berlin')
    expect(normalizeAnswer('"Berlin!"')).toBe('berlin')
    expect(normalizeAnswer('New   York\n')).toBe('new york')
    expect(normalizeAnswer('3.14')).toBe('3.14')
    expect(normalizeAnswer('')).toBe('')
    expect(exactMatch('The answer is 42.', 'the answer is 42')).toBe(true)
    expect(exactMatch('42', 'The answer is 42.')).toBe(false)
    expect(exactMatch('Paris', 'Berlin')).toBe(false)
  })

  it('token F1 counts shared words (with repeats) over both lengths', () => {
    expect(tokenF1('Berlin', 'Berlin')).toBe(1)
    expect(tokenF1('the capital is Berlin', 'Berlin')).toBeCloseTo((2 * 0.25 * 1) / 1.25, 10)
    expect(tokenF1('Paris', 'Berlin')).toBe(0)
    // repeats count once each: "a a" vs "a b" share one "a"
    expect(tokenF1('a a', 'a b')).toBeCloseTo(0.5, 10)
    expect(tokenF1('', '')).toBe(1)
    expect(tokenF1('', 'Berlin')).toBe(0)
    expect(tokenF1('New-York', 'new york')).toBe(1)
  })
})

describe('questions of rows', () => {
  const template = defaultChatTemplate()
  it('a chat asks its last user turn and expects the last assistant turn', () => {
    const q = questionOf(
      {
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Capital of Germany?' },
          { role: 'assistant', content: 'Berlin' },
        ],
      },
      template,
    )
    expect(q).toMatchObject({ shown: 'Capital of Germany?', expected: 'Berlin' })
    expect(q!.prompt).toContain('Be brief.')
    expect(q!.prompt).toContain('Capital of Germany?')
    expect(q!.prompt).not.toContain('Berlin')
  })

  it('a completion expects its completion; text and chats without a final answer have none', () => {
    expect(questionOf({ prompt: '2+2=', completion: '4' }, template)).toMatchObject({ prompt: '2+2=', expected: '4' })
    expect(questionOf({ text: 'just text' }, template)).toBeNull()
    expect(questionOf({ messages: [{ role: 'user', content: 'hi' }] }, template)).toBeNull()
    expect(questionOf({ input_ids: [1, 2] }, template)).toBeNull()
  })
})
