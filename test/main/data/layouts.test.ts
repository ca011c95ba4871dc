import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { detectLayout, inspectDataset, resolveMapping } from '../../../src/main/data'
import { FIXTURES, LAYOUTS, tempDir } from './helpers'

describe('layout detection', () => {
  it.each([
    [
      [{ instruction: 'a', input: '', output: 'b' }],
      { layout: 'alpaca', mapping: { instruction: 'instruction', input: 'input', output: 'output' } },
    ],
    [[{ question: 'a', answer: 'b' }], { layout: 'alpaca', mapping: { instruction: 'question', output: 'answer' } }],
    [[{ conversations: [{ from: 'human', value: 'a' }] }], { layout: 'sharegpt', mapping: { conversations: 'conversations' } }],
    [[{ conversations: [{ role: 'user', content: 'a' }] }], { layout: 'messages', mapping: { messages: 'conversations' } }],
    [[{ messages: [{ role: 'user', content: 'a' }] }], { layout: 'messages', mapping: { messages: 'messages' } }],
    [[{ prompt: 'a', completion: 'b' }], { layout: 'completion', mapping: { prompt: 'prompt', completion: 'completion' } }],
    [[{ prompt: 'a', response: 'b' }], { layout: 'alpaca', mapping: { instruction: 'prompt', output: 'response' } }],
    [[{ text: 'a', meta: 1 }], { layout: 'text', mapping: { text: 'text' } }],
    [[{ input_ids: [1], labels: [1] }], { layout: 'tokens', mapping: { input_ids: 'input_ids', labels: 'labels' } }],
    [[{ messages: '[{"role":"user","content":"a"}]' }], { layout: 'messages', mapping: { messages: 'messages' } }],
  ])('%j → %j', (sample, expected) => {
    expect(detectLayout(sample, Object.keys(sample[0]))).toEqual(expected)
  })

  it('finds nothing in unrelated columns', () => {
    expect(detectLayout([{ a: 1, b: 2 }], ['a', 'b'])).toBeNull()
  })

  it('goes by what most rows look like: one stray row does not set the layout of the file', () => {
    const share = (i: number) => ({
      conversations: [
        { from: 'human', value: `q${i}` },
        { from: 'gpt', value: 'a' },
      ],
    })
    const stray = { messages: [{ role: 'user', content: 'hi' }] }
    const rows = [share(0), stray, share(1), share(2)]
    // `messages` is checked first: with one such row it once won, and every ShareGPT row was invalid
    expect(detectLayout(rows, ['conversations', 'messages'])).toEqual({ layout: 'sharegpt', mapping: { conversations: 'conversations' } })
    // alpaca rows with and without the optional input are one layout; the input is mapped where some rows have it
    const alpaca = [{ instruction: 'a', output: 'b' }, { instruction: 'c', input: 'd', output: 'e' }, { text: 'x' }]
    expect(detectLayout(alpaca, ['instruction', 'output', 'input', 'text'])).toEqual({
      layout: 'alpaca',
      mapping: { instruction: 'instruction', output: 'output', input: 'input' },
    })
    // the stray row first: still the most rows' layout
    expect(detectLayout([stray, share(0), share(1)], ['messages', 'conversations'])?.layout).toBe('sharegpt')
    // records that are not objects (a JSON line "null", a string, an array) are not read as rows
    expect(detectLayout([null, 'text', [1], share(0), share(1)], ['conversations'])?.layout).toBe('sharegpt')
    // rows with and without an optional field vote together (three alpaca rows outvote two text rows)
    const a = (input?: string) => ({ instruction: 'i', output: 'o', ...(input && { input }) })
    expect(detectLayout([a('x'), a(), a(), { text: 't' }, { text: 'u' }], ['instruction', 'output', 'input', 'text'])).toEqual({
      layout: 'alpaca',
      mapping: { instruction: 'instruction', output: 'output', input: 'input' },
    })
    // the winners' own columns: a minority's prompt/completion columns do not make it completion
    const qa = { instruction: 'i', output: 'o' }
    expect(detectLayout([qa, qa, qa, { prompt: 'p', completion: 'c' }], ['instruction', 'output', 'prompt', 'completion'])?.layout).toBe(
      'alpaca',
    )
    // a column present but empty (null) is not one a row has
    const empties = { instruction: 'i', output: 'o', prompt: null, completion: null }
    expect(detectLayout([empties, empties], ['instruction', 'output', 'prompt', 'completion'])?.layout).toBe('alpaca')
    // where no row alone looks like a layout, the columns together decide, as before
    expect(detectLayout([{ instruction: 'i' }, { output: 'o' }], ['instruction', 'output'])?.layout).toBe('alpaca')
    // a tie goes to the rule checked first, as before; unrecognisable rows do not vote
    expect(detectLayout([{ text: 'x' }, { prompt: 'p', completion: 'c' }, { z: 1 }], ['text', 'prompt', 'completion', 'z'])).toEqual({
      layout: 'completion',
      mapping: { prompt: 'prompt', completion: 'completion' },
    })
  })

  it('inspects a ShareGPT file with a stray messages row as ShareGPT, that row reported', async () => {
    const file = join(tempDir(), 'mixed.jsonl')
    const share = (i: number) =>
      JSON.stringify({
        conversations: [
          { from: 'human', value: `q${i}` },
          { from: 'gpt', value: 'a' },
        ],
      })
    writeFileSync(
      file,
      [
        share(0),
        JSON.stringify({
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'yo' },
          ],
        }),
        share(1),
        share(2),
      ].join('\n'),
    )
    const r = await inspectDataset(file)
    expect(r.layout).toBe('sharegpt')
    expect(r.report).toMatchObject({ valid: 3, invalid: 1 })
    expect(r.report.problems).toEqual([expect.objectContaining({ line: 2, field: 'conversations' })])
  })
})

describe('overriding the layout and mapping columns', () => {
  it('maps question/answer columns onto alpaca by hand, ignoring the rest', async () => {
    const r = await inspectDataset(join(FIXTURES, 'qa.csv'), { layout: 'alpaca', mapping: { instruction: 'question', output: 'answer' } })
    expect(r).toMatchObject({ layout: 'alpaca', detectedLayout: 'alpaca', columns: ['id', 'question', 'answer', 'notes'] })
    expect(r.mapping).toEqual({ instruction: 'question', input: 'input', output: 'answer', system: 'system', history: 'history' })
    expect(r.preview.map((p) => p.row)).toEqual([
      {
        messages: [
          { role: 'user', content: 'What is 6 times 7?' },
          { role: 'assistant', content: '42' },
        ],
      },
      {
        messages: [
          { role: 'user', content: 'Capital of France?' },
          { role: 'assistant', content: 'Paris' },
        ],
      },
    ])
  })

  it('maps the input to another column', async () => {
    const r = await inspectDataset(join(FIXTURES, 'qa.csv'), {
      layout: 'alpaca',
      mapping: { instruction: 'question', input: 'notes', output: 'answer' },
    })
    expect(r.preview[0].row).toEqual({
      messages: [
        { role: 'user', content: 'What is 6 times 7?\n\neasy' },
        { role: 'assistant', content: '42' },
      ],
    })
    expect(r.preview[1].row).toEqual({
      messages: [
        { role: 'user', content: 'Capital of France?' },
        { role: 'assistant', content: 'Paris' },
      ],
    })
  })

  it('overrides the detection: alpaca read as completion with a mapping', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'alpaca.jsonl'), {
      layout: 'completion',
      mapping: { prompt: 'instruction', completion: 'output' },
    })
    expect(r).toMatchObject({ layout: 'completion', detectedLayout: 'alpaca' })
    expect(r.preview[0].row).toEqual({ prompt: 'What is the capital of France?', completion: 'The capital of France is Paris.' })
  })

  it('overrides the detection: a chat file read as text reports the missing column on every row', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'messages.jsonl'), { layout: 'text' })
    expect(r.report.problems).toEqual([
      { line: 1, field: 'text', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
      { line: 2, field: 'text', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
    ])
  })

  it('maps the role and content keys inside messages', async () => {
    const file = join(tempDir(), 'dialog.jsonl')
    writeFileSync(
      file,
      JSON.stringify({
        dialog: [
          { speaker: 'user', text: 'Hi' },
          { speaker: 'assistant', text: 'Hello' },
        ],
      }) + '\n',
    )
    const r = await inspectDataset(file, { layout: 'messages', mapping: { messages: 'dialog', role: 'speaker', content: 'text' } })
    expect(r.preview[0].row).toEqual({
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
      ],
    })
  })

  it('rejects fields the layout lacks, columns the file lacks, and unknown layouts', async () => {
    expect(() => resolveMapping('alpaca', { question: 'q' }, ['q'])).toThrow(
      'mapping: "question" is not a field of the alpaca layout (fields: instruction, input, output, system, history)',
    )
    await expect(inspectDataset(join(FIXTURES, 'qa.csv'), { layout: 'alpaca', mapping: { instruction: 'prompt' } })).rejects.toThrow(
      'mapping: column "prompt" (for instruction) is not in the file (columns: id, question, answer, notes)',
    )
    // @ts-expect-error: an unknown layout from an untyped caller
    expect(() => resolveMapping('chatml', {}, null)).toThrow(
      'unknown layout "chatml" (expected one of alpaca, sharegpt, messages, completion, text, tokens)',
    )
  })
})

describe('a mapping sent back as inspect reported it', () => {
  it('accepts optional fields at their default column even when the file lacks them', () => {
    const reported = resolveMapping('alpaca', undefined, ['instruction', 'output'])
    expect(reported.system).toBe('system')
    expect(resolveMapping('alpaca', reported, ['instruction', 'output'])).toEqual(reported)
    expect(() => resolveMapping('alpaca', { ...reported, system: 'sys' }, ['instruction', 'output'])).toThrow(
      /column "sys" \(for system\) is not in the file/,
    )
  })
})
