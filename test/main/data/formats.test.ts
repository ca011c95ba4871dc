import { closeSync, existsSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { DatasetLayout, NormalizedRow } from '../../../src/shared/dataset'
import { MAX_JSON_BYTES, importDataset, inspectDataset, openSource } from '../../../src/main/data'
import { FIXTURES, LAYOUTS, collect, tempDir } from './helpers'
import { csvDelimiter, fieldCountProblem, jsonErrorWhere, notText } from '../../../src/main/data/readers'

/** What the records of test/fixtures/data/layouts/<layout>.* normalise to. */
const EXPECTED: Record<DatasetLayout, NormalizedRow[]> = {
  alpaca: [
    {
      messages: [
        { role: 'user', content: 'What is the capital of France?' },
        { role: 'assistant', content: 'The capital of France is Paris.' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Translate to German.\n\nHello, "world"' },
        { role: 'assistant', content: 'Hallo, Welt' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Write a haiku about the sea.' },
        { role: 'assistant', content: 'Waves fold into foam,\nthe sea keeps its old secrets,\ngulls argue above.' },
      ],
    },
  ],
  sharegpt: [
    {
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: 'Hello.' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Tell me a joke about cats.' },
        { role: 'assistant', content: 'Why did the cat sit on the computer?' },
        { role: 'user', content: 'Why?' },
        { role: 'assistant', content: 'To keep an eye on the mouse.' },
      ],
    },
  ],
  messages: [
    {
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is 6 times 7?' },
        { role: 'assistant', content: 'The answer is 42.' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Hello world!' },
        { role: 'assistant', content: 'Hello! How are you today?' },
        { role: 'user', content: 'Fine, thanks.' },
        { role: 'assistant', content: 'Glad to hear it.' },
      ],
    },
  ],
  completion: [
    { prompt: 'The capital of France is', completion: ' Paris.' },
    { prompt: 'Hello', completion: ' world!' },
  ],
  text: [{ text: 'Hello world!' }, { text: 'The answer is 42.' }, { text: 'Waves fold into foam.' }],
  tokens: [{ input_ids: [1, 20, 21, 22, 2], labels: [-100, -100, 21, 22, 2] }, { input_ids: [1, 30, 31, 2] }],
}

const FORMATS = ['jsonl', 'json', 'csv', 'tsv', 'parquet'] as const
const CASES = (Object.keys(EXPECTED) as DatasetLayout[]).flatMap((layout) => FORMATS.map((format) => [layout, format] as const))

describe('every layout in every file format', () => {
  it.each(CASES)('%s.%s is detected and gives the expected normalised rows', async (layout, format) => {
    const r = await inspectDataset(join(LAYOUTS, `${layout}.${format}`))
    expect(r.format).toBe(format)
    expect(r.detectedLayout).toBe(layout)
    expect(r.layout).toBe(layout)
    expect(r.report).toMatchObject({ valid: EXPECTED[layout].length, invalid: 0, problems: [], problemCount: 0 })
    expect(r.preview.map((p) => p.row)).toEqual(EXPECTED[layout])
  })

  it('reads plain text one row per line, or per paragraph', async () => {
    const lines = await inspectDataset(join(LAYOUTS, 'text.txt'))
    expect(lines).toMatchObject({ format: 'text', layout: 'text', detectedLayout: 'text' })
    expect(lines.preview.map((p) => p.row)).toEqual(EXPECTED.text)
    const paragraphs = await inspectDataset(join(FIXTURES, 'paragraphs.txt'), { textUnit: 'paragraph' })
    expect(paragraphs.preview.map((p) => [p.line, p.row])).toEqual([
      [1, { text: 'First paragraph,\nsecond line.' }],
      [5, { text: 'Second paragraph.' }],
    ])
  })

  it('reads GZIP-compressed Parquet (through hyparquet-compressors)', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'text.gzip.parquet'))
    expect(r.preview.map((p) => p.row)).toEqual(EXPECTED.text)
  })

  it('numbers CSV records by the file line they start on (header is line 1, quoted newlines count)', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'alpaca.csv'))
    expect(r.report.unit).toBe('line')
    expect(r.preview.map((p) => p.line)).toEqual([2, 3, 4])
    const parquet = await inspectDataset(join(LAYOUTS, 'alpaca.parquet'))
    expect(parquet.report.unit).toBe('row')
    expect(parquet.preview.map((p) => p.line)).toEqual([1, 2, 3])
  })

  it('says where a CSV quote is never closed and how many lines it swallowed, instead of losing them quietly', async () => {
    const file = join(tempDir(), 'stray-quote.csv')
    writeFileSync(file, 'question,answer\nWhat is 1?,one\n"What is 2?,two\nWhat is 3?,three\nWhat is 4?,four\n')
    const r = await inspectDataset(file)
    expect(r.report).toMatchObject({ valid: 1, invalid: 1 })
    expect(r.report.problems).toEqual([
      {
        line: 3,
        field: '',
        message:
          'a quote (") opens a field on line 3 that is never closed, so 2 lines after it were read into that field; close the quote, or write "" for a quote inside a quoted field',
      },
    ])
  })

  it('says where a quote left open swallowed the next line (that row was lost without a word); a lone quote on one line is read as meant', async () => {
    const file = join(tempDir(), 'runs-on.csv')
    // line 3 opens a quote that the quote starting line 4 "closes": line 4 was read into line 3's
    // row, which was valid, and line 4's question was lost; line 5's inner quotes read as written
    writeFileSync(
      file,
      'prompt,completion\nWhat is 1?,one\n"What is 2?,two\n"What is 3?",three\n"He said "hi" to me",four\nWhat is 5?,five\n',
    )
    const r = await inspectDataset(file, { layout: 'completion', preview: { limit: 10 } })
    expect(r.report).toMatchObject({ valid: 3, invalid: 1 })
    expect(r.report.problems).toEqual([
      {
        line: 3,
        field: '',
        message:
          'a quoted field on line 3 runs on into line 4 (text follows a quote that should close it), so that line was read into this row; close the quote on line 3, or write "" for a quote inside a quoted field',
      },
    ])
    expect(r.preview.map((p) => p.line)).toEqual([2, 5, 6])
    expect(r.preview[1].row).toEqual({ prompt: 'He said "hi" to me', completion: 'four' })
  })

  it('keeps quoted multi-line fields whole across CSV batches, with exact line numbers', async () => {
    const file = join(tempDir(), 'many.csv')
    const n = 5000 // about 400 KB: several parser batches
    const output = (i: number) => `line one of ${i}\nline two of ${i}${i % 7 === 0 ? '\n\nafter a blank line' : ''}`
    const rows = Array.from({ length: n }, (_, i) => `"Q ${i}, ""quoted""",,"${output(i)}"`)
    writeFileSync(file, 'instruction,input,output\n' + rows.join('\n') + '\n')
    const r = await inspectDataset(file, { preview: { offset: 0, limit: n } })
    expect(r.report).toMatchObject({ valid: n, invalid: 0 })
    let line = 2
    r.preview.forEach((p, i) => {
      expect(p.line).toBe(line)
      line += i % 7 === 0 ? 4 : 2
      expect(p.row).toEqual({
        messages: [
          { role: 'user', content: `Q ${i}, "quoted"` },
          { role: 'assistant', content: output(i) },
        ],
      })
    })
  })

  it('reads a .json file holding JSON Lines, and a JSON object wrapping one array', async () => {
    const lines = await inspectDataset(join(FIXTURES, 'lines.json'))
    expect(lines.format).toBe('jsonl')
    expect(lines.preview.map((p) => p.row)).toEqual([{ text: 'one' }, { text: 'two' }])
    const wrapped = await inspectDataset(join(FIXTURES, 'wrapped.json'))
    expect(wrapped).toMatchObject({ format: 'json', layout: 'completion' })
    expect(wrapped.preview.map((p) => p.row)).toEqual([
      { prompt: 'a', completion: 'b' },
      { prompt: 'c', completion: 'd' },
    ])
  })

  it('says what a JSON file holds where its rows are not the one top-level array: the keys, the arrays, a nested one', async () => {
    const dir = tempDir()
    const write = (name: string, value: unknown): string => {
      const file = join(dir, name)
      writeFileSync(file, JSON.stringify(value, null, 2))
      return file
    }
    const want = 'expected an array of rows, or an object with one array of rows at its top level'
    await expect(inspectDataset(write('two.json', { train: [{ text: 'a' }], test: [{ text: 'b' }] }))).rejects.toThrow(
      `two.json: ${want}; it has 2 ("train", "test"): save the one to import as a file of its own`,
    )
    await expect(inspectDataset(write('nested.json', { meta: { v: 1 }, data: { rows: [{ text: 'a' }] } }))).rejects.toThrow(
      `nested.json: ${want}; its keys: "meta", "data", and the rows in data.rows are nested deeper: make them the file's top level, or convert the file to JSON Lines`,
    )
    await expect(inspectDataset(write('flat.json', { a: 1, b: { c: 2 } }))).rejects.toThrow(`flat.json: ${want}; its keys: "a", "b"`)
    await expect(inspectDataset(write('empty-object.json', {}))).rejects.toThrow(`empty-object.json: ${want}; it is an empty object`)
  })

  it('tells a pretty-printed JSON object from JSON Lines by its first line', async () => {
    const file = join(tempDir(), 'pretty.json')
    writeFileSync(file, JSON.stringify({ rows: [{ text: 'a' }, { text: 'b' }] }, null, 2))
    const r = await inspectDataset(file)
    expect(r).toMatchObject({ format: 'json', layout: 'text' })
    expect(r.preview.map((p) => p.row)).toEqual([{ text: 'a' }, { text: 'b' }])
  })

  it('refuses a JSON array above the size limit with a message saying what to do', async () => {
    const file = join(tempDir(), 'big.json')
    const fd = openSync(file, 'w')
    // Text where the reader looks for binary data (the first 64 KiB), then a sparse tail: nothing is written beyond.
    writeSync(fd, `[${' '.repeat(64 * 1024)}`)
    closeSync(fd)
    const { truncateSync } = await import('node:fs')
    truncateSync(file, MAX_JSON_BYTES + 1)
    await expect(openSource(file)).rejects.toThrow(
      /big\.json is 256\.0 MiB: a JSON array is read whole and the limit is 256\.0 MiB; convert it to JSON Lines/,
    )
  })

  it('refuses unknown extensions and missing files', async () => {
    const file = join(tempDir(), 'data.xlsx')
    writeFileSync(file, 'x')
    await expect(inspectDataset(file)).rejects.toThrow('unknown file type ".xlsx" (expected .jsonl, .json, .csv, .tsv, .parquet or .txt)')
    await expect(inspectDataset(join(tempDir(), 'none.jsonl'))).rejects.toThrow(/none\.jsonl: no such file/)
  })

  it('says a file has no rows (a header alone, an empty array) instead of an empty report', async () => {
    const dir = tempDir()
    for (const [name, text, where] of [
      ['header.csv', 'a,b\n\n', ' under its header line'],
      ['empty.json', '[]', ''],
    ] as const) {
      const file = join(dir, name)
      writeFileSync(file, text)
      for (const layout of [undefined, 'alpaca'] as const)
        await expect(inspectDataset(file, { layout })).rejects.toMatchObject({
          field: 'file',
          message: `${file} has no rows${where}: there is nothing to read; add rows, or choose the file that holds the data`,
        })
    }
  })

  it('reads a .csv separated by ";", tab or "|" (a spreadsheet where the comma is the decimal mark), from its header', async () => {
    expect(csvDelimiter('question;answer')).toBe(';')
    expect(csvDelimiter('question\tanswer')).toBe('\t')
    expect(csvDelimiter('question|answer')).toBe('|')
    expect(csvDelimiter('"a;b",c')).toBe(',')
    expect(csvDelimiter('question;answer, short;notes')).toBe(';') // the most used one
    expect(csvDelimiter('a,b;c,d')).toBe(',')
    expect(csvDelimiter('a;b,c')).toBe(',') // the comma on a tie
    expect(csvDelimiter('"a,b";c')).toBe(';') // a comma inside quotes is text
    expect(csvDelimiter('"a;b;c"|d')).toBe('|')
    expect(csvDelimiter('text')).toBe(',') // one column
    expect(csvDelimiter('')).toBe(',')
    const file = join(tempDir(), 'semi.csv')
    writeFileSync(file, ' \t \nquestion;answer\n"Capital of France?";Paris\n"1,5 + 1";"2,5"\n')
    const r = await inspectDataset(file)
    expect(r.report).toMatchObject({ total: 2, valid: 2, invalid: 0 })
    expect(r.layout).toBe('alpaca') // question → instruction, answer → output
    expect(r.columns).toEqual(['question', 'answer'])
    expect(r.preview[1].row).toEqual({
      messages: [
        { role: 'user', content: '1,5 + 1' },
        { role: 'assistant', content: '2,5' },
      ],
    })
  })

  it('refuses a table with no column for a required field once, by the mapping (not "missing field" on every row)', async () => {
    const file = join(tempDir(), 'qa.csv')
    writeFileSync(file, 'question,answer\nWhat is 1?,one\nWhat is 2?,two\n')
    await expect(inspectDataset(file, { layout: 'completion', mapping: { prompt: 'question' } })).rejects.toMatchObject({
      field: 'mapping.completion',
      message: 'mapping: the file has no column "completion" for completion; map completion to one of its columns (question, answer)',
    })
    const ok = await inspectDataset(file, { layout: 'completion', mapping: { prompt: 'question', completion: 'answer' } })
    expect(ok.report).toMatchObject({ valid: 2, invalid: 0 })
    // JSON rows may lack a key the sample did not show: still reported row by row there
    const json = join(tempDir(), 'qa.jsonl')
    writeFileSync(json, '{"question":"What is 1?"}\n')
    expect((await inspectDataset(json, { layout: 'completion', mapping: { prompt: 'question' } })).report.problems[0]).toMatchObject({
      field: 'completion',
      message: 'missing field: add it to the row, map another key to it, or leave the row out',
    })
  })

  it('lists the columns and leaves the layout to the user when nothing is recognised', async () => {
    const file = join(tempDir(), 'odd.jsonl')
    writeFileSync(file, '{"q": "a", "a": "b"}\n')
    const r = await inspectDataset(file)
    expect(r).toMatchObject({ layout: null, detectedLayout: null, columns: ['q', 'a'], preview: [] })
  })

  it('reports each line of a file none of whose records parse, and refuses to import it for that reason', async () => {
    const dir = tempDir()
    const file = join(dir, 'allbad.jsonl')
    writeFileSync(file, '{bad\n[1,2\n\n{"unterminated": "x\n')
    const r = await inspectDataset(file)
    expect(r.layout).toBeNull()
    expect(r.report).toMatchObject({ total: 3, valid: 0, invalid: 3, problemCount: 3 })
    expect(r.report.problems.map((p) => p.line)).toEqual([1, 2, 4])
    expect(r.report.problems[0].message).toMatch(/invalid JSON/)
    await expect(importDataset(join(dir, 'ws'), file)).rejects.toThrow(
      /allbad\.jsonl: not one of its 3 records could be read \(line 1: invalid JSON at column 2: .*; 2 more like it\): fix the file/,
    )
    // A file whose records parse but match no layout is still the layout's to choose: read no further.
    const odd = join(dir, 'odd.jsonl')
    writeFileSync(odd, '{"q": "a"}\n{bad\n')
    expect((await inspectDataset(odd)).report).toMatchObject({ total: 0, invalid: 0 })
  })

  it('says what a row with too few or too many fields lacks, or how to write a field with the delimiter in it', () => {
    expect(fieldCountProblem(['prompt', 'completion', 'id'], 1, ',')).toBe(
      'expected 3 fields, got 1: no completion, id (fields are separated by a comma)',
    )
    expect(fieldCountProblem(['q', 'a'], 1, '\t')).toBe('expected 2 fields, got 1: no a (fields are separated by a tab)')
    expect(fieldCountProblem(['q', 'a'], 3, ';')).toBe('expected 2 fields, got 3: a field with a semicolon in it goes in double quotes')
    expect(fieldCountProblem(['q', 'a'], 3, '|')).toBe('expected 2 fields, got 3: a field with "|" in it goes in double quotes')
  })

  it('says that a quote inside a field quotes nothing, where a row with a quote in it has too many fields', async () => {
    const dir = tempDir()
    const file = join(dir, 'stray.csv')
    writeFileSync(file, 'question,answer\nWhat is 1 plus 1?,2\nWhat is "big, plus 1?,3\n"a, b",c,d\n')
    const report = await inspectDataset(file)
    expect(report.report.problems.map((e) => [e.line, e.message])).toEqual([
      [
        3,
        'expected 2 fields, got 3: a field with a comma in it goes in double quotes, the whole field (a quote after its first character quotes nothing), and a quote inside it is written twice: "say ""hi"", then"',
      ],
      // Quoted right, one field too many: nothing about quotes inside fields.
      [4, 'expected 2 fields, got 3: a field with a comma in it goes in double quotes'],
    ])
  })

  it('names the line and column where a JSON array file stops parsing, and what is there', async () => {
    const dir = tempDir()
    const trailing = join(dir, 'trailing.json')
    writeFileSync(trailing, '[\n{"instruction": "a", "output": "b"},\n{"instruction": "c", "output": "d"},\n]\n')
    await expect(inspectDataset(trailing)).rejects.toThrow(
      /trailing\.json: invalid JSON at line 4, column 1: unexpected "\]" \("\]"\); a trailing comma or a missing one is the usual cause/,
    )
    const missing = join(dir, 'missing.json')
    writeFileSync(missing, '[{"instruction": "a", "output": "b"}\n {"instruction": "c", "output": "d"}]')
    await expect(inspectDataset(missing)).rejects.toThrow(
      /missing\.json: invalid JSON at line 2, column 2: Expected ',' or '\]' after array element/,
    )
    expect(jsonErrorWhere('[1, 2', 'Unexpected end of JSON input')).toBe(': Unexpected end of JSON input') // nowhere to point at
    // A JSON Lines record (one line, its number given beside): the column only. Where V8 quotes a
    // short line whole, the token it names is the one the parse stopped at, not its last copy.
    const where = (text: string): string => {
      try {
        JSON.parse(text)
      } catch (e) {
        return jsonErrorWhere(text, (e as Error).message, true)
      }
      throw new Error(`${text} parses`)
    }
    const cause = '; a trailing comma or a missing one is the usual cause'
    expect(where('[1,,2]')).toBe(` at column 4: unexpected "," ("[1,,2]")${cause}`)
    expect(where('not json')).toBe(` at column 2: unexpected "o" ("not json")${cause}`)
    expect(where('{"a":1}}')).toBe(` at column 8: Unexpected non-whitespace character after the value ("{\\"a\\":1}}")${cause}`)
    expect(where('{"prompt": "x", "completion": 5 "y"}')).toMatch(/^ at column 33: Expected ',' or '}' after property value/)
    // A record that stops before its brackets close is told so (not of commas).
    expect(where('{"messages": [{"role": "user", "content": "x"}')).toBe(
      ` at column 47: Expected ',' or ']' after array element ("{\\"messages\\": [{\\"role\\": \\"user\\", \\"content\\": \\"x\\"}"); it ends before every { and [ in it is closed: a } or ] is missing at its end`,
    )
  })

  it('notText at its edges: two stray NULs are text, three are not; UTF-16 by where its NULs fall; tabs and escapes are text', () => {
    const bytes = (t: string): Uint8Array => Buffer.from(t, 'latin1')
    expect(notText(bytes('prompt,completion\na\u0000b\u0000,c\n'), 'csv')).toBeNull()
    expect(notText(bytes('prompt,completion\na\u0000b\u0000\u0000,c\n'), 'csv')).toMatch(/^is not a text file: .*NUL bytes/)
    // every other byte NUL, odd or even places (little- or big-endian), from 30% of the bytes
    expect(notText(bytes('a\u0000b\u0000c\u0000defg'), 'jsonl')).toMatch(/^is UTF-16 text/)
    expect(notText(bytes('\u0000a\u0000b\u0000cdefg'), 'jsonl')).toMatch(/^is UTF-16 text/)
    // NULs every other byte between control bytes (a small binary file): binary, not UTF-16
    expect(notText(Uint8Array.from([0, 1, 2, 3, 0, 255, 0, 7]), 'jsonl')).toMatch(/^is not a text file: .*NUL bytes/)
    expect(notText(Uint8Array.from([1, 0, 2, 0, 3, 0, 0x41, 0, 5, 0]), 'jsonl')).toMatch(/^is not a text file: .*NUL bytes/)
    // NULs at no pattern: binary
    expect(notText(bytes('\u0000\u0000ab\u0000c\u0000\u0000def'), 'jsonl')).toMatch(/^is not a text file: .*NUL bytes/)
    // tab, CR/LF, vertical tab, form feed and escape (coloured logs) are text
    expect(notText(bytes('a\tb\r\n\u000b\u000c'.repeat(50)), 'text')).toBeNull()
    expect(notText(bytes('\u001b[31mred\u001b[0m\n'.repeat(50)), 'text')).toBeNull()
    expect(notText(bytes('\u0001\u0002abcdefgh'.repeat(50)), 'text')).toMatch(/mostly control characters/)
    expect(notText(bytes('\u000e\u001fabcdefgh'.repeat(50)), 'text')).toMatch(/mostly control characters/)
    // the stray NULs count with the control characters: 2 in 20 bytes are a tenth
    expect(notText(bytes('ab\u0000cdefghij\u0000klmnopqr'), 'text')).toMatch(/mostly control characters/)
    expect(notText(bytes(''), 'text')).toBeNull()
  })

  it("a stray NUL in one row is that row's problem, named by line and field; the other rows import", async () => {
    const dir = tempDir()
    const csv = join(dir, 'stray.csv')
    writeFileSync(csv, 'prompt,completion\nhello,world\nfoo\u0000bar,baz\nmore,rows\n')
    const r = await inspectDataset(csv)
    expect(r.report).toMatchObject({ valid: 2, invalid: 1 })
    expect(r.report.problems).toEqual([
      expect.objectContaining({
        line: 3,
        field: 'prompt',
        message: expect.stringMatching(/has a NUL character \(\\u0000\) at character 4/),
      }),
    ])
    const jsonl = join(dir, 'stray.jsonl')
    writeFileSync(jsonl, '{"prompt":"a","completion":"b"}\n{"prompt":"c\u0000","completion":"d"}\n{"prompt":"e","completion":"f"}\n')
    const j = await inspectDataset(jsonl)
    expect(j.report).toMatchObject({ valid: 2, invalid: 1 })
    expect(j.report.problems.map((p) => p.line)).toEqual([2])
  })

  it('says a file is not text, or holds nothing, instead of reading it as no rows', async () => {
    const dir = tempDir()
    const write = (name: string, data: string | Uint8Array): string => {
      const file = join(dir, name)
      writeFileSync(file, data)
      return file
    }
    // Random bytes, as a binary file renamed .jsonl holds: NUL bytes among them.
    const binary = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256)
    await expect(inspectDataset(write('model.jsonl', binary))).rejects.toThrow(
      /model\.jsonl is not a text file: it holds binary data \(NUL bytes\), and a JSON Lines file must be text\. Choose the file that holds the data/,
    )
    // Control characters without a NUL.
    await expect(inspectDataset(write('ctl.csv', Buffer.alloc(200, 0x01)))).rejects.toThrow(/ctl\.csv is not a text file: .*mostly control/)
    // More than a stray NUL or two in a short file: binary too.
    await expect(inspectDataset(write('three.csv', 'prompt,completion\na\u0000\u0000\u0000,b\n'))).rejects.toThrow(
      /three\.csv is not a text file: .*NUL bytes/,
    )
    // UTF-16 saved without its byte-order mark: every other byte NUL.
    await expect(inspectDataset(write('utf16.jsonl', Buffer.from('{"text": "hello there"}\n'.repeat(20), 'utf16le')))).rejects.toThrow(
      /utf16\.jsonl is UTF-16 text \(without a byte-order mark\), and JSON Lines files are read as UTF-8\. Save it again as UTF-8\./,
    )
    await expect(inspectDataset(write('utf16be.csv', Buffer.from('text\nhello there\n'.repeat(20), 'utf16le').swap16()))).rejects.toThrow(
      /utf16be\.csv is UTF-16 text/,
    )
    await expect(inspectDataset(write('empty.jsonl', ''))).rejects.toThrow(
      /empty\.jsonl is empty \(0 bytes\): there are no rows to read\. Choose/,
    )
    for (const [name, blank] of [
      ['blank.jsonl', '\n  \n\t\r\n'],
      ['blank.txt', ' '.repeat(200_000)],
      ['bom.csv', '\uFEFF\n\n'],
    ])
      await expect(inspectDataset(write(name, blank))).rejects.toThrow(
        `${join(dir, name)} holds only blank lines and spaces: there are no rows to read.`,
      )
    // What other files are, with what to do.
    await expect(inspectDataset(write('data.jsonl', Buffer.from('PAR1\x15\x04', 'latin1')))).rejects.toThrow(
      /is not JSON Lines text: it is a Parquet file\. Give it the extension \.parquet, or choose the format parquet\./,
    )
    await expect(inspectDataset(write('rows.jsonl.jsonl', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0])))).rejects.toThrow(
      /compressed \(gzip\)\. Decompress it first/,
    )
    await expect(inspectDataset(write('sheet.csv', Buffer.from('PK\x03\x04rest', 'latin1')))).rejects.toThrow(
      /zip archive .*export the sheet as CSV/,
    )
    await expect(inspectDataset(write('wide.txt', Buffer.from('\uFEFFhello\n', 'utf16le')))).rejects.toThrow(
      /is UTF-16 text.*Save it again as UTF-8/,
    )
    // The import refuses the same way and leaves nothing in the workspace.
    const workspace = tempDir()
    await expect(importDataset(workspace, join(dir, 'model.jsonl'))).rejects.toThrow(/is not a text file/)
    expect(existsSync(join(workspace, 'datasets')) ? readdirSync(join(workspace, 'datasets')) : []).toEqual([])

    // Text stays text: blank space before the first row (past the bytes looked at first), a BOM, a
    // tab-separated file, a few bytes of another encoding (reported by line, as before).
    const late = await inspectDataset(write('late.jsonl', `${' '.repeat(100_000)}\n{"text": "a"}\n`))
    expect(late.report).toMatchObject({ total: 1, valid: 1 })
    expect((await inspectDataset(write('bom.jsonl', '\uFEFF{"text": "a"}\n'))).report.valid).toBe(1)
    expect((await inspectDataset(write('t.tsv', 'prompt\tcompletion\nhi\tho\n'))).report.valid).toBe(1)
    const latin1 = await inspectDataset(write('latin1.jsonl', Buffer.from('{"text": "caf\xe9"}\n{"text": "ok"}\n', 'latin1')))
    expect(latin1.report).toMatchObject({
      total: 2,
      valid: 1,
      invalid: 1,
      problems: [{ line: 1, field: '', message: 'invalid UTF-8 (save the file again as UTF-8)' }],
    })
    // A JSON file is read whole: refused at the first bad line, saying what to do.
    await expect(inspectDataset(write('latin1.json', Buffer.from('[\n{"text": "caf\xe9"}\n]\n', 'latin1')))).rejects.toThrow(
      /latin1\.json: invalid UTF-8 at line 2; save it again as UTF-8$/,
    )
  })

  it('reads a .jsonl file that holds one JSON document (an array, a pretty-printed wrapper) as JSON, unless told it is JSON Lines', async () => {
    const dir = tempDir()
    const rows = [
      { prompt: 'a', completion: 'b' },
      { prompt: 'c', completion: 'd' },
    ]
    const array = join(dir, 'array.jsonl')
    writeFileSync(array, JSON.stringify(rows, null, 2))
    const read = await inspectDataset(array)
    expect(read.format).toBe('json')
    expect(read.report).toMatchObject({ total: 2, valid: 2 })
    const wrapper = join(dir, 'wrapper.jsonl')
    writeFileSync(wrapper, `\uFEFF${JSON.stringify({ data: rows }, null, 1)}`)
    expect((await inspectDataset(wrapper)).report).toMatchObject({ total: 2, valid: 2 })
    // chosen as JSON Lines, it is read line by line: every line says what is wrong with it
    expect((await inspectDataset(array, { format: 'jsonl' })).report).toMatchObject({ valid: 0 })
    // JSON Lines (an object a line) stays JSON Lines
    const lines = join(dir, 'lines.jsonl')
    writeFileSync(lines, rows.map((r) => JSON.stringify(r)).join('\n'))
    expect((await inspectDataset(lines)).format).toBe('jsonl')
  })

  it('reads a .txt file of JSON Lines (an object a line) as JSON Lines, unless told it is text; prose stays text', async () => {
    const dir = tempDir()
    const file = join(dir, 'chats_export.txt')
    writeFileSync(file, '{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": "d"}\n')
    const read = await inspectDataset(file)
    expect(read.format).toBe('jsonl')
    expect(read.layout).toBe('completion')
    expect(read.report).toMatchObject({ total: 2, valid: 2 })
    expect((await inspectDataset(file, { format: 'text' })).layout).toBe('text')
    // one object line is not enough to tell; a line of prose among objects is text
    const one = join(dir, 'one.txt')
    writeFileSync(one, '{"prompt": "a", "completion": "b"}\n')
    expect((await inspectDataset(one)).format).toBe('text')
    const mixed = join(dir, 'mixed.txt')
    writeFileSync(mixed, '{"a": 1}\nsome prose\n{"b": 2}\n')
    expect((await inspectDataset(mixed)).format).toBe('text')
  })

  it('streams records with their line numbers, skipping blank lines', async () => {
    const file = join(tempDir(), 'blank.jsonl')
    writeFileSync(file, '\n{"text": "a"}\n   \n{"text": "b"}')
    const source = await openSource(file)
    expect(await collect(source.records())).toEqual([
      { line: 2, value: { text: 'a' } },
      { line: 4, value: { text: 'b' } },
    ])
  })
})
