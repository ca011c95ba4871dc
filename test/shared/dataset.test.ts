import { describe, expect, it } from 'vitest'
import { preferencePrompt, unreadColumns } from '../../src/shared/dataset'

describe('unreadColumns', () => {
  it('names the columns no field of the layout reads, an unmapped field reading the column of its own name', () => {
    expect(unreadColumns(['id', 'instruction', 'output', 'source'], 'alpaca', { instruction: 'instruction', output: 'output' })).toEqual([
      'id',
      'source',
    ])
    expect(unreadColumns(['q', 'a', 'input'], 'alpaca', { instruction: 'q', output: 'a' })).toEqual([])
    // a mapped column no longer read under its own name
    expect(unreadColumns(['instruction', 'output', 'answer'], 'alpaca', { output: 'answer' })).toEqual(['output'])
  })

  it("reads a chat layout's role and content inside each turn, never as columns; no layout leaves nothing said", () => {
    expect(
      unreadColumns(['messages', 'content', 'system'], 'messages', { messages: 'messages', role: 'role', content: 'content' }),
    ).toEqual(['content'])
    expect(unreadColumns(['conversations', 'system', 'tools'], 'sharegpt', { conversations: 'conversations' })).toEqual(['tools'])
    expect(unreadColumns(['a', 'b'], null, {})).toEqual([])
  })
})

describe('preferencePrompt', () => {
  it("finds a preference dataset's prompt column by its usual names, else its first other column; null without chosen and rejected", () => {
    expect(preferencePrompt(['prompt', 'chosen', 'rejected'])).toBe('prompt')
    expect(preferencePrompt(['id', 'question', 'chosen', 'rejected'])).toBe('question')
    expect(preferencePrompt(['chosen', 'ask', 'rejected'])).toBe('ask')
    expect(preferencePrompt(['chosen', 'rejected'])).toBeNull()
    expect(preferencePrompt(['prompt', 'chosen'])).toBeNull()
  })
})
