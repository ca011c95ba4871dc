/** The evaluation's scorers and row reading on hand-made cases, and a whole evaluation of the bundled model. */
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { evaluate, exactMatch, normalizeAnswer, questionOf, tokenF1 } from '../../../src/main/train/evaluate'
import { defaultChatTemplate, endOfTurnIds, loadChatTemplate } from '../../../src/main/data/template'
import { loadTokenizer } from '../../../src/main/data/tokenizer'
import { encodeExample } from '../../../src/main/data/encode'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel } from '../../../src/main/engine/checkpoint'
import * as gen from '../../../src/main/engine/generate'
import { objectiveValues } from '../../../src/main/engine/objective'
import type { ChatMessage, NormalizedRow } from '../../../src/shared/dataset'
import type { StageProgress } from '../../../src/main/engine/tasks'

// The generation calls evaluate() makes, with their options, for the length-limit checks.
vi.mock('../../../src/main/engine/generate', async (original) => {
  const m = await original<typeof import('../../../src/main/engine/generate')>()
  return { ...m, generate: vi.fn(m.generate), generateAsync: vi.fn(m.generateAsync) }
})

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
    // signs, currency, percent and emoji are part of an answer; sentence punctuation and quotes are not
    expect(exactMatch('5', '-5')).toBe(false)
    expect(exactMatch('5', '$5')).toBe(false)
    expect(exactMatch('3', '3%')).toBe(false)
    expect(exactMatch('', '🎉🎉🎉')).toBe(false)
    expect(exactMatch('', '#')).toBe(false)
    expect(exactMatch('(-5).', '-5')).toBe(true)
    expect(exactMatch('«$5»', '$5!')).toBe(true)
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
    expect(tokenF1('', '🎉🎉🎉')).toBe(0)
    // punctuation runs before a space, and quotes and brackets inside an answer, split words
    expect(tokenF1('yes!! no', 'yes no')).toBe(1)
    expect(tokenF1('(a)b "c"d', 'a b c d')).toBe(1)
    expect(tokenF1('5', '-5')).toBe(0)
    expect(tokenF1('3', '3%')).toBe(0)
    expect(tokenF1('pi is 3.14.', '3.14')).toBeCloseTo((2 * (1 / 3) * 1) / (1 / 3 + 1), 10)
    // one side empty, the other not: nothing shared, whichever side it is
    expect(tokenF1('Berlin', '')).toBe(0)
    expect(tokenF1('...', 'Berlin')).toBe(0)
    // punctuation inside an answer separates words, and is not a word
    expect(tokenF1('Berlin, Germany', 'Berlin Germany')).toBe(1)
    expect(tokenF1('a, b', 'a')).toBeCloseTo((2 * 0.5 * 1) / 1.5, 10)
  })

  it('strips every leading and trailing punctuation mark, not only the last', () => {
    expect(normalizeAnswer('...«Berlin»!!')).toBe('berlin')
    expect(normalizeAnswer('¿¡Qué?!')).toBe('qué')
    expect(exactMatch('** Berlin **', 'Berlin')).toBe(true)
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

  it("the prompt ends with the template's generation prompt; a chat without a user turn shows nothing", () => {
    const q = questionOf(
      {
        messages: [
          { role: 'user', content: 'first' },
          { role: 'assistant', content: 'one' },
          { role: 'user', content: 'second' },
          { role: 'assistant', content: 'two' },
        ],
      },
      template,
    )!
    // the first and the last user turns are shown (rows are told apart), the earlier exchange stays in the prompt
    expect(q.shown).toBe('first … second')
    expect(q.expected).toBe('two')
    const messages = (q.row as { messages: ChatMessage[] }).messages
    expect(q.prompt).toBe(template.render(messages.slice(0, 3), true))
    expect(q.prompt).not.toBe(template.render(messages.slice(0, 3), false))
    // the row scored for loss is the whole conversation
    expect(messages).toHaveLength(4)
    expect(messages[3]).toEqual({ role: 'assistant', content: 'two' })
    const sysOnly = questionOf(
      {
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'assistant', content: 'Hello' },
        ],
      },
      template,
    )
    expect(sysOnly).toMatchObject({ shown: '', expected: 'Hello' })
    // a lone assistant turn has no context to ask from
    expect(questionOf({ messages: [{ role: 'assistant', content: 'Hello' }] }, template)).toBeNull()
    // a chat ending with a user turn has no answer
    expect(
      questionOf(
        {
          messages: [
            { role: 'user', content: 'a' },
            { role: 'assistant', content: 'b' },
            { role: 'user', content: 'c' },
          ],
        },
        template,
      ),
    ).toBeNull()
  })

  it('a chat whose last answer has weight 0 (context, never trained) is scored on its last trained answer', () => {
    const q = questionOf(
      {
        messages: [
          { role: 'user', content: 'Code for item 3?' },
          { role: 'assistant', content: 'Item 3 code is X21.' },
          { role: 'user', content: 'Thanks!' },
          { role: 'assistant', content: 'You are welcome.', weight: 0 },
        ],
      },
      template,
    )!
    expect(q).toMatchObject({ shown: 'Code for item 3?', expected: 'Item 3 code is X21.' })
    expect((q.row as { messages: ChatMessage[] }).messages).toHaveLength(2)
    expect(q.prompt).toBe(template.render([{ role: 'user', content: 'Code for item 3?' }], true))
    // nothing trained to score
    expect(
      questionOf(
        {
          messages: [
            { role: 'user', content: 'a' },
            { role: 'assistant', content: 'b', weight: 0 },
          ],
        },
        template,
      ),
    ).toBeNull()
  })

  it('a completion expects its completion; text and chats without a final answer have none', () => {
    expect(questionOf({ prompt: '2+2=', completion: '4' }, template)).toMatchObject({ prompt: '2+2=', expected: '4' })
    expect(questionOf({ text: 'just text' }, template)).toBeNull()
    expect(questionOf({ messages: [{ role: 'user', content: 'hi' }] }, template)).toBeNull()
    expect(questionOf({ input_ids: [1, 2] }, template)).toBeNull()
  })
})

describe('evaluate() on the bundled model', () => {
  const dir = join(__dirname, '../../../resources/default-model')
  async function target() {
    await initBackend('wasm')
    const model = loadModel(dir)
    const tokenizer = await loadTokenizer(dir)
    const template = await loadChatTemplate(dir)
    return { model, tokenizer, template, stopIds: endOfTurnIds(template, tokenizer) }
  }
  const rows: NormalizedRow[] = [
    {
      messages: [
        { role: 'user', content: 'What is the capital of France?' },
        { role: 'assistant', content: 'Paris' },
      ],
    },
    { text: 'plain text has no answer' },
    { prompt: 'Two plus two is', completion: ' four' },
    { messages: [{ role: 'user', content: 'no answer yet' }] },
  ]

  it('scores each row with an answer as greedy generation and teacher-forced loss, skips the rest, reports progress', async () => {
    const t = await target()
    const progress: StageProgress[] = []
    const report = await evaluate(t, rows, { split: 'validation', label: 'bundled', hooks: { onProgress: (p) => progress.push(p) } })
    expect(report).toMatchObject({ model: 'bundled', split: 'validation', n: 2, skipped: 2 })
    expect(report.seconds).toBeGreaterThan(0)
    expect(report.seconds).toBeLessThan(600) // seconds, not milliseconds
    expect(progress.map((p) => p.done)).toEqual([0, 1, 2])
    for (const p of progress) expect(p).toMatchObject({ label: 'Evaluating bundled', stage: 1, stages: 1, total: 2, unit: 'items' })
    expect(report.items.map((i) => [i.prompt, i.expected])).toEqual([
      ['What is the capital of France?', 'Paris'],
      ['Two plus two is', ' four'],
    ])
    const losses: number[] = []
    for (const [k, row] of [rows[0], rows[2]].entries()) {
      const q = questionOf(row, t.template)!
      const ids = t.tokenizer.encode(q.prompt)
      const expectedTokens = t.tokenizer.encode(q.expected, false).length
      const r = gen.generate(t.model, ids, {
        maxNewTokens: Math.min(64, 2 * expectedTokens + 8),
        sampling: { greedy: true },
        stopTokens: t.stopIds,
      })
      const item = report.items[k]
      expect(item.generated).toBe(
        t.tokenizer.decode(
          r.newTokens.filter((id) => !t.stopIds.includes(id)),
          true,
        ),
      )
      expect(item.exact).toBe(exactMatch(item.generated, item.expected))
      expect(item.f1).toBe(tokenF1(item.generated, item.expected))
      const ex = encodeExample(q.row, t.tokenizer, t.template, { maskPrompt: true, maxLength: t.model.config.maxPositionEmbeddings })!
      const parts = await objectiveValues(t.model, { inputIds: [ex.input_ids], labels: [ex.labels] })
      expect(item.loss).toBeCloseTo(parts.ce, 5)
      expect(item.loss!).toBeGreaterThan(0)
      losses.push(parts.ce)
    }
    expect(report.loss).toBeCloseTo((losses[0] + losses[1]) / 2, 5)
    expect(report.exactMatch).toBe(report.items.filter((i) => i.exact).length / 2)
    expect(report.f1).toBeCloseTo((report.items[0].f1 + report.items[1].f1) / 2, 12)
  })

  it('an answer the model gives is an exact match with F1 1; one it does not give is not', async () => {
    const t = await target()
    const first = await evaluate(t, [rows[0]], { split: 'train', label: 'x', maxNewTokens: 6 })
    const said = first.items[0].generated
    expect(said.trim()).not.toBe('')
    const given: NormalizedRow = {
      messages: [
        { role: 'user', content: 'What is the capital of France?' },
        { role: 'assistant', content: said },
      ],
    }
    const other: NormalizedRow = {
      messages: [
        { role: 'user', content: 'What is the capital of France?' },
        { role: 'assistant', content: 'zzzz qqqq' },
      ],
    }
    const r = await evaluate(t, [given, other], { split: 'train', label: 'x', maxNewTokens: 6 })
    expect(r.items.map((i) => [i.generated, i.exact, i.f1])).toEqual([
      [said, true, 1],
      [said, false, tokenF1(said, 'zzzz qqqq')],
    ])
    expect(r.exactMatch).toBe(0.5)
    expect(r.f1).toBeCloseTo((1 + tokenF1(said, 'zzzz qqqq')) / 2, 12)
  })

  it('limits the reply: twice the answer plus 8 tokens, at most 64, never past the context; greedy, stopping at the end of turn', async () => {
    const t = await target()
    const spy = vi.mocked(gen.generate)
    spy.mockClear()
    const short: NormalizedRow = { prompt: 'Say', completion: ' yes' }
    const long: NormalizedRow = { prompt: 'Say', completion: ' yes'.repeat(40) }
    await evaluate(t, [short, long], { split: 'train', label: 'x' })
    const shortTokens = t.tokenizer.encode(' yes', false).length
    expect(spy.mock.calls.map((c) => c[2].maxNewTokens)).toEqual([2 * shortTokens + 8, 64])
    expect(spy.mock.calls[0][2]).toMatchObject({ sampling: { greedy: true }, stopTokens: t.stopIds })
    expect(spy.mock.calls[0][1]).toEqual(t.tokenizer.encode('Say'))
    spy.mockClear()
    // an explicit limit wins, but never past the end of the context
    const ctx = t.model.config.maxPositionEmbeddings
    const nearlyFull = 'word '.repeat(460)
    const fill = t.tokenizer.encode(nearlyFull).length
    expect(fill).toBeLessThan(ctx)
    expect(fill).toBeGreaterThan(ctx - 100)
    await evaluate(t, [short, { prompt: nearlyFull, completion: ' yes' }], { split: 'train', label: 'x', maxNewTokens: 100 })
    expect(spy.mock.calls.map((c) => c[2].maxNewTokens)).toEqual([100, ctx - fill])
  })

  it("a prompt that fills the context generates nothing and has no loss; the report's loss is null without one", async () => {
    const t = await target()
    const spy = vi.mocked(gen.generate)
    spy.mockClear()
    const huge: NormalizedRow = { prompt: 'word '.repeat(700), completion: ' yes' }
    const r = await evaluate(t, [huge], { split: 'train', label: 'x' })
    expect(spy).not.toHaveBeenCalled()
    expect(r.items[0]).toMatchObject({ generated: '', loss: null, exact: false, f1: 0 })
    expect(r.loss).toBeNull()
    expect(r.n).toBe(1)
    const none = await evaluate(t, [{ text: 'nothing to ask' }], { split: 'train', label: 'x' })
    expect(none).toMatchObject({ n: 0, skipped: 1, exactMatch: 0, f1: 0, loss: null, items: [] })
  })

  it('cancel stops it with a cancelled error naming what was cancelled', async () => {
    const t = await target()
    const ac = new AbortController()
    ac.abort()
    await expect(evaluate(t, [rows[0]], { split: 'train', label: 'the base model', hooks: { signal: ac.signal } })).rejects.toMatchObject({
      code: 'cancelled',
      message: 'evaluating the base model was cancelled',
    })
  })
})
