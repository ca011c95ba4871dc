import { describe, expect, it } from 'vitest'
import { ChatInput, type ChatAction } from '../../../src/main/cli/chatCommand'

/** The actions a run of lines completes, in order (nulls left out). */
function actions(lines: string[], input = new ChatInput()): ChatAction[] {
  return lines.flatMap((l) => {
    const a = input.feed(l)
    return a ? [a] : []
  })
}

describe('ChatInput: what the chat reads from each line', () => {
  it('commands, one-line messages and "//" for a message that starts with "/"', () => {
    expect(
      actions(['Hello there  ', '', '   ', '/system Be brief.', '/system', '/systematic', '/reset', '//etc/hosts?', '/quit', '/exit']),
    ).toEqual([
      { kind: 'message', content: 'Hello there' },
      { kind: 'system', text: 'Be brief.' },
      { kind: 'system', text: undefined },
      { kind: 'unknown', command: '/systematic' },
      { kind: 'reset' },
      { kind: 'message', content: '/etc/hosts?' },
      { kind: 'quit' },
      { kind: 'quit' },
    ])
  })

  it('a command is the line\'s first word, spaces around it aside; a "/" elsewhere is text', () => {
    expect(actions(['  /quit  '])).toEqual([{ kind: 'quit' }])
    expect(actions(['/x y', 'see /reset now', '/x.y', '/tmp/a.txt'])).toEqual([
      { kind: 'unknown', command: '/x' },
      { kind: 'message', content: 'see /reset now' },
      { kind: 'message', content: '/x.y' },
      { kind: 'message', content: '/tmp/a.txt' },
    ])
  })

  it('a message of several lines between """ fences, sent as typed, with no line read as a command', () => {
    const input = new ChatInput()
    const lines = [
      '"""Below is an instruction that describes a task.',
      '',
      '### Instruction:',
      '/reset',
      '  indented //kept',
      '### Response:"""',
    ]
    const got = lines.map((l) => input.feed(l))
    expect(got.slice(0, -1)).toEqual([null, null, null, null, null])
    expect(got.at(-1)).toEqual({
      kind: 'message',
      content: 'Below is an instruction that describes a task.\n\n### Instruction:\n/reset\n  indented //kept\n### Response:',
    })
    expect(input.open).toBe(false)
  })

  it('fences on lines of their own, CRLF line ends, a one-line """…""" and an empty block', () => {
    expect(actions(['"""\r', 'first\r', 'second  \r', '"""\r'])).toEqual([{ kind: 'message', content: 'first\nsecond' }])
    expect(actions(['"""one line"""'])).toEqual([{ kind: 'message', content: 'one line' }])
    // six quotes: an empty one-line message (nothing sent), not a block opened with """ in it
    expect(actions(['""""""', 'next'])).toEqual([{ kind: 'message', content: 'next' }])
    // a carriage return within a line is the line's
    expect(actions(['"""', 'x\ry\r', '"""'])).toEqual([{ kind: 'message', content: 'x\ry' }])
    expect(actions(['"""', '', '"""', 'after'])).toEqual([{ kind: 'message', content: 'after' }])
    // the closing fence may follow text on its line, with spaces after it
    expect(actions(['"""', 'a', 'b"""   '])).toEqual([{ kind: 'message', content: 'a\nb' }])
  })

  it('says which block is still open, and what it held, at the end of the input', () => {
    const input = new ChatInput()
    expect(actions(['"""', 'never', 'closed'], input)).toEqual([])
    expect(input.open).toBe(true)
    expect(input.unclosed()).toBe('never\nclosed')
    expect(input.open).toBe(false)
    expect(input.unclosed()).toBeNull()
  })
})
