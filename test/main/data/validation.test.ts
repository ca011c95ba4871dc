import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  countTokens,
  detectLayout,
  formatProblem,
  inspectDataset,
  loadChatTemplate,
  loadTokenizer,
  normalizeRecord,
  resolveMapping,
} from '../../../src/main/data'
import { CHATML_MODEL, FIXTURES, LAYOUTS, tempDir } from './helpers'
import { unspacedJoin, unspacedJoinsText } from '../../../src/shared/dataset'

// A JSON Lines record's parse error names the column (V8 says "at position N", or nothing where it
// quotes the whole line), and the first o of "not json", where the parse stopped.
const NOT_JSON = 'invalid JSON at column 2: unexpected "o" ("not json"); a trailing comma or a missing one is the usual cause'

describe('the validation report', () => {
  it('names the line, the field and the problem of every bad row of a JSONL file', async () => {
    const r = await inspectDataset(join(FIXTURES, 'bad.jsonl'))
    expect(r.layout).toBe('messages')
    expect(r.report).toEqual({
      unit: 'line',
      total: 16,
      valid: 3,
      invalid: 13,
      problemCount: 13,
      problems: [
        { line: 2, field: 'messages[0].role', message: "the last turn must be the assistant's, got user" },
        { line: 3, field: 'messages[0].content', message: 'empty turn' },
        { line: 4, field: 'messages[0].role', message: 'expected a user turn, got assistant' },
        { line: 5, field: 'messages[1].role', message: 'unknown role "bot" (expected system, user or assistant)' },
        { line: 6, field: 'messages', message: 'expected an array, got a string' },
        { line: 7, field: 'messages', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
        { line: 8, field: 'messages[0].content', message: 'expected a string, got a number' },
        { line: 9, field: '', message: NOT_JSON },
        { line: 11, field: '', message: 'invalid UTF-8 (save the file again as UTF-8)' },
        { line: 12, field: '', message: 'expected an object, got an array' },
        { line: 13, field: 'messages[2].role', message: 'a system message may only come first' },
        { line: 15, field: 'messages[0].role', message: 'has no turns after the system message' },
        { line: 16, field: 'messages', message: 'has no turns' },
      ],
    })
    // Line 14 ends in \r\n and is valid; blank line 10 is not a row.
    expect(r.preview.map((p) => p.line)).toEqual([1, 14, 17])
    expect(r.stats.duplicates).toBe(1) // line 17 repeats line 1
    expect(formatProblem(r.report.problems[0], r.report.unit)).toBe(
      "line 2, messages[0].role: the last turn must be the assistant's, got user",
    )
    expect(formatProblem(r.report.problems[7], r.report.unit)).toBe(`line 9: ${NOT_JSON}`)
  })

  it('reports CSV rows by the line they start on: empty fields, wrong field counts, invalid UTF-8', async () => {
    const r = await inspectDataset(join(FIXTURES, 'bad.csv'))
    expect(r.layout).toBe('alpaca')
    expect(r.report).toEqual({
      unit: 'line',
      total: 6,
      valid: 2,
      invalid: 4,
      problemCount: 4,
      problems: [
        { line: 3, field: 'instruction', message: 'must not be empty: give it a value, or leave the row out' },
        { line: 6, field: '', message: 'expected 3 fields, got 4: a field with a comma in it goes in double quotes' },
        { line: 7, field: '', message: 'invalid UTF-8 (save the file again as UTF-8)' },
        { line: 8, field: 'output', message: 'must not be empty: give it a value, or leave the row out' },
      ],
    })
    expect(r.preview.map((p) => [p.line, p.row])).toEqual([
      [
        2,
        {
          messages: [
            { role: 'user', content: 'What?' },
            { role: 'assistant', content: 'Answer' },
          ],
        },
      ],
      [
        4,
        {
          messages: [
            { role: 'user', content: 'Multi\nline' },
            { role: 'assistant', content: 'ok' },
          ],
        },
      ],
    ])
  })

  it('warns where prompts and completions are joined with nothing between ("France?The capital"), with the first such line', async () => {
    const dir = tempDir()
    const file = join(dir, 'qa.csv')
    writeFileSync(
      file,
      'prompt,completion\n"What is the capital of France?",The capital of France is Paris.\n"Capital of Peru? ",Lima\n"2+2=","4"\n',
    )
    const r = await inspectDataset(file)
    expect(r.layout).toBe('completion')
    expect(r.stats.unspacedJoins).toEqual({ rows: 2, line: 2, join: '…pital of France?|The capital of F…' })
    expect(unspacedJoinsText(r.stats.unspacedJoins!, r.stats.rows, r.report.unit)).toBe(
      '2 of 3 rows join their prompts and completions with nothing between (line 2: “…pital of France?|The capital of F…”, | marking the join): the model learns them joined so. If a space or a newline belongs there, end each prompt (or start each completion) with one.',
    )
    // spaced (or newline) joins, and other layouts: nothing said
    writeFileSync(file, 'prompt,completion\n"Q: a\nA:", b\n"Capital of Peru? ",Lima\n')
    expect((await inspectDataset(file)).stats.unspacedJoins).toBeUndefined()
    expect((await inspectDataset(join(LAYOUTS, 'messages.jsonl'))).stats.unspacedJoins).toBeUndefined()
    expect(unspacedJoinsText({ rows: 1, line: 4, join: 'a|b' }, 9, 'row')).toMatch(
      /^1 of 9 rows joins its prompt and completion with nothing between \(row 4: “a\|b”/,
    )
    expect(unspacedJoinsText({ rows: 9, line: 2, join: 'a|b' }, 9, 'line')).toMatch(/^All rows join their prompts and completions /)
    expect(unspacedJoin('a', 'b')).toBe(true)
    expect(unspacedJoin('a\n', 'b')).toBe(false)
    expect(unspacedJoin('', 'b')).toBe(false)
  })

  it('lists the first problems only, and counts them all', async () => {
    const r = await inspectDataset(join(FIXTURES, 'bad.jsonl'), { problemLimit: 2 })
    expect(r.report.problems.map((p) => p.line)).toEqual([2, 3])
    expect(r.report.problemCount).toBe(13)
  })

  it('reports rows longer than maxLength tokens under the model tokenizer and template', async () => {
    const tokenizer = await loadTokenizer(CHATML_MODEL)
    const template = await loadChatTemplate(CHATML_MODEL)
    const clean = await inspectDataset(join(LAYOUTS, 'messages.jsonl'), { tokenizer })
    const lengths = clean.preview.map((p) => countTokens(p.row, tokenizer, template).total)
    expect(clean.preview.map((p) => p.tokens)).toEqual(lengths)
    const limit = Math.min(...lengths)
    const r = await inspectDataset(join(LAYOUTS, 'messages.jsonl'), { tokenizer, maxLength: limit })
    expect(r.report.problems).toEqual([{ line: 2, field: '', message: `too long: ${Math.max(...lengths)} tokens, the limit is ${limit}` }])
    expect(r.report.valid).toBe(1)
  })

  it('checks token ids against the vocabulary and labels against input_ids', async () => {
    const mapping = resolveMapping('tokens', {}, null)
    const check = (value: unknown, vocabSize?: number) => normalizeRecord(value, 'tokens', mapping, { vocabSize }).problems
    expect(check({ input_ids: [1, 2], labels: [-100, 2] })).toBeUndefined()
    expect(check({ input_ids: [] })).toEqual([{ field: 'input_ids', message: 'must not be empty: give it a value, or leave the row out' }])
    expect(check({ input_ids: [1, -5] })).toEqual([{ field: 'input_ids[1]', message: 'expected a token id (an integer >= 0), got -5' }])
    expect(check({ input_ids: [1, 900] }, 500)).toEqual([
      { field: 'input_ids[1]', message: 'token id 900 is outside the vocabulary (size 500)' },
    ])
    expect(check({ input_ids: [1, 2, 3], labels: [1.5, 2] })).toEqual([
      { field: 'labels[0]', message: 'expected -100 or a token id, got 1.5' },
      { field: 'labels', message: 'has 2 entries, input_ids has 3' },
    ])
    expect(check({ input_ids: 'abc' })).toEqual([{ field: 'input_ids', message: 'expected an array, got a string' }])
  })

  it('checks alpaca, completion and text fields', () => {
    const alpaca = resolveMapping('alpaca', {}, null)
    expect(normalizeRecord({ instruction: 'a', output: true }, 'alpaca', alpaca).problems).toEqual([
      { field: 'output', message: 'expected a string, got a boolean' },
    ])
    // a number column (Parquet INT32/INT64, JSON numbers) is its text
    expect(normalizeRecord({ instruction: 'a', output: 3 }, 'alpaca', alpaca).row).toEqual({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: '3' },
      ],
    })
    expect(normalizeRecord({ instruction: 'a', output: 12n }, 'alpaca', alpaca).row).toEqual({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: '12' },
      ],
    })
    expect(normalizeRecord({ instruction: 'a', output: NaN }, 'alpaca', alpaca).problems).toEqual([
      { field: 'output', message: 'expected a string, got a number' },
    ])
    expect(normalizeRecord({ instruction: 'a', input: null, output: 'b', system: 'Be brief.' }, 'alpaca', alpaca).row).toEqual({
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b' },
      ],
    })
    const completion = resolveMapping('completion', {}, null)
    expect(normalizeRecord({ prompt: 'p' }, 'completion', completion).problems).toEqual([
      { field: 'completion', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
    ])
    // A field that is there but null is not "missing": the file has the key (walkthrough).
    expect(normalizeRecord({ prompt: 'p', completion: null }, 'completion', completion).problems).toEqual([
      { field: 'completion', message: 'is null: expected text; give it a value, or leave the row out' },
    ])
    const chat = resolveMapping('messages', {}, null)
    expect(normalizeRecord({ messages: null }, 'messages', chat).problems).toEqual([
      { field: 'messages', message: 'is null: expected an array; give it a value, or leave the row out' },
    ])
    expect(
      normalizeRecord(
        {
          messages: [
            { role: null, content: 'a' },
            { role: 'assistant', content: 'b' },
          ],
        },
        'messages',
        chat,
      ).problems,
    ).toEqual([{ field: 'messages[0].role', message: 'is null: expected text; give it a value, or leave the row out' }])
    expect(normalizeRecord({ messages: [{ role: 'user', content: 'a' }, { role: 'assistant' }] }, 'messages', chat).problems).toEqual([
      { field: 'messages[1].content', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
    ])
    const text = resolveMapping('text', {}, null)
    expect(normalizeRecord({ text: '' }, 'text', text).problems).toEqual([
      { field: 'text', message: 'must not be empty: give it a value, or leave the row out' },
    ])
    expect(normalizeRecord('just a string', 'text', text).problems).toEqual([{ field: '', message: 'expected an object, got a string' }])
  })

  it('says tool-use turns are not supported, and what to remove, instead of "unknown role" or "missing field"', () => {
    const messages = resolveMapping('messages', {}, null)
    const r = normalizeRecord(
      {
        messages: [
          { role: 'user', content: 'weather?' },
          { role: 'assistant', content: null, tool_calls: [{ id: '1', type: 'function', function: { name: 'w', arguments: '{}' } }] },
          { role: 'tool', content: 'sunny', tool_call_id: '1' },
          { role: 'assistant', content: 'Sunny.' },
        ],
      },
      'messages',
      messages,
    )
    expect(r.problems).toEqual([
      {
        field: 'messages[1].content',
        message: 'a tool call (content null, tool_calls set): tool calls are not supported; remove the turn, or the row',
      },
      {
        field: 'messages[2].role',
        message: '"tool" turns (tool calls and their results) are not supported; remove them, or the rows that have them',
      },
    ])
  })

  it("says a ShareGPT row's turns in the file's own words (human, gpt), not the roles they map to", () => {
    const sharegpt = resolveMapping('sharegpt', {}, null)
    const twice = [
      { from: 'human', value: 'Hi' },
      { from: 'human', value: 'Hello?' },
    ]
    expect(normalizeRecord({ conversations: twice }, 'sharegpt', sharegpt).problems).toEqual([
      { field: 'conversations[1].from', message: 'expected an assistant turn ("gpt"), got human' },
    ])
    expect(normalizeRecord({ conversations: [{ from: 'user', value: 'Hi' }] }, 'sharegpt', sharegpt).problems).toEqual([
      { field: 'conversations[0].from', message: 'the last turn must be the assistant\'s ("gpt"), got user' },
    ])
  })

  it('takes a chat row\'s system prompt from a "system" column where the conversation has no system turn (LLaMA-Factory\'s sharegpt)', () => {
    const sharegpt = resolveMapping('sharegpt', {}, null)
    const hi = [
      { from: 'human', value: 'Hi' },
      { from: 'gpt', value: 'Hello' },
    ]
    expect(normalizeRecord({ conversations: hi, system: 'Be terse.' }, 'sharegpt', sharegpt).row).toEqual({
      messages: [
        { role: 'system', content: 'Be terse.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
      ],
    })
    // the conversation's own system turn wins; an empty column is no system prompt
    const own = [{ from: 'system', value: 'Own.' }, ...hi]
    expect(normalizeRecord({ conversations: own, system: 'Column.' }, 'sharegpt', sharegpt).row).toEqual({
      messages: [
        { role: 'system', content: 'Own.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
      ],
    })
    expect(normalizeRecord({ conversations: hi, system: '' }, 'sharegpt', sharegpt).row).toEqual({
      messages: [
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello' },
      ],
    })
    const messages = resolveMapping('messages', {}, null)
    const chat = [
      { role: 'user', content: 'Hi' },
      { role: 'assistant', content: 'Hello' },
    ]
    expect(normalizeRecord({ messages: chat, system: 'S' }, 'messages', messages).row).toEqual({
      messages: [{ role: 'system', content: 'S' }, ...chat],
    })
    expect(normalizeRecord({ messages: chat, system: 3 }, 'messages', messages).row).toEqual({
      messages: [{ role: 'system', content: '3' }, ...chat],
    })
    expect(normalizeRecord({ messages: chat, system: ['x'] }, 'messages', messages).problems).toEqual([
      { field: 'system', message: 'expected a string, got an array' },
    ])
    expect(detectLayout([{ conversations: hi, system: 'S' }], ['conversations', 'system'])).toEqual({
      layout: 'sharegpt',
      mapping: { conversations: 'conversations', system: 'system' },
    })
  })

  it("reads OpenAI's per-turn weight: an assistant turn of weight 0 is kept as context; a bad weight is named", () => {
    const messages = resolveMapping('messages', {}, null)
    const turns = (w1: unknown, w2: unknown, userWeight?: unknown): unknown => ({
      messages: [
        { role: 'user', content: 'a', ...(userWeight !== undefined && { weight: userWeight }) },
        { role: 'assistant', content: 'b', weight: w1 },
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd', weight: w2 },
      ],
    })
    expect(normalizeRecord(turns(0, 1), 'messages', messages).row).toEqual({
      messages: [
        { role: 'user', content: 'a' },
        { role: 'assistant', content: 'b', weight: 0 },
        { role: 'user', content: 'c' },
        { role: 'assistant', content: 'd' },
      ],
    })
    expect(normalizeRecord(turns(0.5, 1), 'messages', messages).problems).toEqual([
      { field: 'messages[1].weight', message: 'must be 0 (not trained on) or 1 (trained), got 0.5' },
    ])
    expect(normalizeRecord(turns(1, 1, 0), 'messages', messages).problems).toEqual([
      { field: 'messages[0].weight', message: 'only assistant turns are trained on: a user turn takes no weight; remove it' },
    ])
    expect(normalizeRecord(turns(0, 0), 'messages', messages).problems).toEqual([
      {
        field: 'messages',
        message: 'every assistant turn has weight 0: nothing to train on; set weight 1 on the turns to learn, or remove the row',
      },
    ])
  })

  it("reads an alpaca row's history (LLaMA-Factory's [instruction, response] pairs) as the turns before it, and names a bad pair", () => {
    const alpaca = resolveMapping('alpaca', {}, null)
    const turns = (r: ReturnType<typeof normalizeRecord>): number => (r.row && 'messages' in r.row ? r.row.messages.length : -1)
    const rec = (history: unknown): Record<string, unknown> => ({ instruction: 'And times 2?', output: '10', system: 'math', history })
    expect(normalizeRecord(rec([['What is 2+3?', '5']]), 'alpaca', alpaca).row).toEqual({
      messages: [
        { role: 'system', content: 'math' },
        { role: 'user', content: 'What is 2+3?' },
        { role: 'assistant', content: '5' },
        { role: 'user', content: 'And times 2?' },
        { role: 'assistant', content: '10' },
      ],
    })
    expect(turns(normalizeRecord(rec([]), 'alpaca', alpaca))).toBe(3)
    expect(turns(normalizeRecord(rec(undefined), 'alpaca', alpaca))).toBe(3)
    expect(normalizeRecord(rec([['q']]), 'alpaca', alpaca).problems).toEqual([
      { field: 'history[0]', message: 'expected a pair ["instruction", "response"], got an array of 1' },
    ])
    expect(normalizeRecord(rec([['q', ' '], 'x']), 'alpaca', alpaca).problems).toEqual([
      { field: 'history[0][1]', message: 'empty turn' },
      { field: 'history[1]', message: 'expected a pair ["instruction", "response"], got a string' },
    ])
    expect(turns(normalizeRecord(rec('[["q", "a"]]'), 'alpaca', alpaca, { cellsAreText: true }))).toBe(5)
    // detected with the other alpaca columns, in a file where some rows have none
    expect(detectLayout([rec([['q', 'a']]), { instruction: 'i', output: 'o' }], ['instruction', 'output', 'system', 'history'])).toEqual({
      layout: 'alpaca',
      mapping: { instruction: 'instruction', output: 'output', system: 'system', history: 'history' },
    })
  })

  it('reads OpenAI content parts as their texts joined, and refuses a part that is not text by its index and type', () => {
    const messages = resolveMapping('messages', {}, null)
    const row = (content: unknown): ReturnType<typeof normalizeRecord> =>
      normalizeRecord(
        {
          messages: [
            { role: 'user', content },
            { role: 'assistant', content: [{ type: 'text', text: 'ok' }] },
          ],
        },
        'messages',
        messages,
      )
    expect(
      row([
        { type: 'text', text: 'Describe ' },
        { type: 'text', text: 'this' },
      ]).row,
    ).toEqual({
      messages: [
        { role: 'user', content: 'Describe this' },
        { role: 'assistant', content: 'ok' },
      ],
    })
    expect(
      row([
        { type: 'text', text: 'look' },
        { type: 'image_url', image_url: { url: 'a.png' } },
      ]).problems,
    ).toEqual([
      { field: 'messages[0].content[1].type', message: 'a part of type "image_url": only text parts are supported; remove it, or the row' },
    ])
    expect(row(['hi']).problems).toEqual([
      { field: 'messages[0].content[0]', message: 'expected a content part like {"type": "text", "text": "..."}, got a string' },
    ])
    expect(row([{ type: 'text' }]).problems).toEqual([
      { field: 'messages[0].content[0].text', message: 'missing field: add it to the row, map another key to it, or leave the row out' },
    ])
    expect(row([{ text: 'x' }]).problems?.[0].field).toBe('messages[0].content[0].type')
    expect(row([]).problems).toEqual([{ field: 'messages[0].content', message: 'empty turn' }])
    expect(row([{ type: 'text', text: 'a\u0000' }]).problems?.[0].message).toMatch(/NUL/)
    expect(row(false).problems).toEqual([{ field: 'messages[0].content', message: 'expected a string, got a boolean' }])
  })

  it('refuses text with a NUL or half a surrogate pair, naming the field and the character (it was imported, changed)', async () => {
    const alpaca = resolveMapping('alpaca', {}, null)
    expect(normalizeRecord({ instruction: 'a\u0000b', output: 'ok' }, 'alpaca', alpaca).problems).toEqual([
      { field: 'instruction', message: 'has a NUL character (\\u0000) at character 2: not text; remove it from the file' },
    ])
    // counted in characters: the emoji before it is one
    expect(
      normalizeRecord({ prompt: 'q', completion: '😀 \ud800' }, 'completion', resolveMapping('completion', {}, null)).problems,
    ).toEqual([
      {
        field: 'completion',
        message:
          'has half of a surrogate pair (\\ud800) at character 3: not valid Unicode, it would be stored changed; fix the text in the file',
      },
    ])
    expect(normalizeRecord({ text: 'end \udc00' }, 'text', resolveMapping('text', {}, null)).problems?.[0].field).toBe('text')
    const chat = normalizeRecord(
      {
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'yo \ud83d' },
        ],
      },
      'messages',
      resolveMapping('messages', {}, null),
    )
    expect(chat.problems).toEqual([
      { field: 'messages[1].content', message: expect.stringMatching(/^has half of a surrogate pair \(\\ud83d\) at character 4/) },
    ])
    // whole pairs (emoji) and other text pass
    expect(normalizeRecord({ instruction: 'Ünïcode 😀 中文', output: '👍🏽' }, 'alpaca', alpaca).problems).toBeUndefined()
    // through a file: the JSON escapes are read as such, the row reported by its line, the rest imported
    const file = join(tempDir(), 'escapes.jsonl')
    writeFileSync(
      file,
      [
        '{"instruction":"fine","output":"yes"}',
        '{"instruction":"bad \\ud800","output":"x"}',
        '{"instruction":"nul\\u0000","output":"y"}',
      ].join('\n'),
    )
    const r = await inspectDataset(file)
    expect(r.report).toMatchObject({ valid: 1, invalid: 2 })
    expect(r.report.problems.map((p) => [p.line, p.field])).toEqual([
      [2, 'instruction'],
      [3, 'instruction'],
    ])
  })

  it('checks ShareGPT roles', () => {
    const mapping = resolveMapping('sharegpt', {}, null)
    const r = normalizeRecord(
      {
        conversations: [
          { from: 'human', value: 'hi' },
          { from: 'bard', value: 'yo' },
        ],
      },
      'sharegpt',
      mapping,
    )
    expect(r.problems).toEqual([{ field: 'conversations[1].from', message: 'unknown role "bard" (expected system, human or gpt)' }])
  })

  it('finds invalid UTF-8 per line: one bad line spoils one row', async () => {
    const file = join(tempDir(), 'utf8.jsonl')
    const badByteSequence = Buffer.from('{"text": "\xc3("}\n', 'latin1') // 0xC3 0x28: a lead byte without its continuation
    writeFileSync(
      file,
      Buffer.concat([Buffer.from('{"text": "ok"}\n{"text": "fine"}\n'), badByteSequence, Buffer.from('{"text": "é ok"}\n')]),
    )
    const r = await inspectDataset(file)
    expect(r.report.problems).toEqual([{ line: 3, field: '', message: 'invalid UTF-8 (save the file again as UTF-8)' }])
    expect(r.preview.map((p) => p.row)).toEqual([{ text: 'ok' }, { text: 'fine' }, { text: 'é ok' }])
  })
})
