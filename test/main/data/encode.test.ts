import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ChatRow, NormalizedRow } from '../../../src/shared/dataset'
import {
  type ChatTemplate,
  DEFAULT_CHAT_TEMPLATE,
  IGNORE_INDEX,
  type ModelTokenizer,
  createChatTemplate,
  defaultChatTemplate,
  encodeExample,
  inspectDataset,
  loadChatTemplate,
  loadTokenizer,
  rowSegments,
} from '../../../src/main/data'
import { BASE_MODEL, CHATML_MODEL, LAYOUTS } from './helpers'

const CHAT: ChatRow = {
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is the capital of France?' },
    { role: 'assistant', content: 'The capital of France is Paris.' },
    { role: 'user', content: 'Thanks, how are you today?' },
    { role: 'assistant', content: 'I am fine, thank you. 😀' },
  ],
}

const trained = (e: { input_ids: number[]; labels: number[] }) => e.input_ids.filter((_, i) => e.labels[i] !== IGNORE_INDEX)

let base: ModelTokenizer
let baseTemplate: ChatTemplate
let chatml: ModelTokenizer
let chatmlTemplate: ChatTemplate
beforeAll(async () => {
  base = await loadTokenizer(BASE_MODEL)
  baseTemplate = await loadChatTemplate(BASE_MODEL)
  chatml = await loadTokenizer(CHATML_MODEL)
  chatmlTemplate = await loadChatTemplate(CHATML_MODEL)
})

describe('loading tokenizers and chat templates', () => {
  it('reads special tokens, BOS behaviour and the vocabulary size', () => {
    expect(base).toMatchObject({ bosToken: '<s>', eosToken: '</s>', bosId: 1, eosId: 2, addsBos: true })
    expect(chatml).toMatchObject({ bosToken: null, eosToken: '<|im_end|>', padToken: '<|endoftext|>', addsBos: false })
    expect(chatml.eosId).toBe(chatml.vocabSize - 1)
    expect(chatml.decode(chatml.encode('Hello world! ü 😀'))).toBe('Hello world! ü 😀')
  })

  it('decodes no tokens as no text (a model that answers with EOS at once)', () => {
    expect(base.decode([])).toBe('')
    expect(chatml.decode([], true)).toBe('')
  })

  it("uses the model's chat_template, and the documented default where there is none", () => {
    expect(chatmlTemplate.source).toBe('model')
    expect(baseTemplate).toMatchObject({ source: 'default', text: DEFAULT_CHAT_TEMPLATE, bosToken: '<s>', eosToken: '</s>' })
    expect(baseTemplate.render(CHAT.messages.slice(0, 3), false)).toBe(
      '<s><|system|>\nYou are a helpful assistant.\n<|user|>\nWhat is the capital of France?\n<|assistant|>\nThe capital of France is Paris.</s>',
    )
    expect(baseTemplate.render(CHAT.messages.slice(0, 2), true)).toBe(
      '<s><|system|>\nYou are a helpful assistant.\n<|user|>\nWhat is the capital of France?\n<|assistant|>\n',
    )
  })
})

describe('encodeExample', () => {
  it('default template: the trainable tokens are exactly the assistant turns and their EOS', () => {
    const e = encodeExample(CHAT, base, baseTemplate)!
    expect(e.labels).toHaveLength(e.input_ids.length)
    const turns = ['The capital of France is Paris.</s>', 'I am fine, thank you. 😀</s>']
    expect(trained(e)).toEqual(turns.flatMap((t) => base.encode(t, true)))
    expect(base.decode(trained(e))).toBe(turns.join(''))
    // Spans meet where the whole text would be split too: the ids are those of the whole rendering.
    expect(e.input_ids).toEqual(base.encode(baseTemplate.render(CHAT.messages, false)))
    expect(e.input_ids[0]).toBe(base.bosId)
    expect(e.labels.filter((l) => l === base.eosId)).toHaveLength(2)
  })

  it("model template (ChatML): the trainable tokens are each assistant turn's content, <|im_end|> and newline", () => {
    const e = encodeExample(CHAT, chatml, chatmlTemplate)!
    const turns = ['The capital of France is Paris.<|im_end|>\n', 'I am fine, thank you. 😀<|im_end|>\n']
    expect(chatml.decode(trained(e))).toBe(turns.join(''))
    expect(trained(e)).toEqual(turns.flatMap((t) => chatml.encode(t, true)))
    expect(e.input_ids).toEqual(chatml.encode(chatmlTemplate.render(CHAT.messages, false)))
    // Everything before the first assistant token is masked, the user turns in between too.
    const firstTrained = e.labels.findIndex((l) => l !== IGNORE_INDEX)
    expect(chatml.decode(e.input_ids.slice(0, firstTrained))).toBe(
      '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n',
    )
  })

  it('custom jinja template ([INST] style, with the model tokenizer)', () => {
    const template = createChatTemplate(
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}",
      { bosToken: base.bosToken, eosToken: base.eosToken },
    )
    const e = encodeExample(CHAT, base, template)!
    expect(trained(e)).toEqual(
      [' The capital of France is Paris.</s>', ' I am fine, thank you. 😀</s>'].flatMap((t) => base.encode(t, true)),
    )
    expect(e.input_ids).toEqual(base.encode(template.render(CHAT.messages, false)))
    expect(rowSegments(CHAT, template)).toEqual([
      { text: '<s>[INST] What is the capital of France? [/INST]', trainable: false },
      { text: ' The capital of France is Paris.</s>', trainable: true },
      { text: '[INST] Thanks, how are you today? [/INST]', trainable: false },
      { text: ' I am fine, thank you. 😀</s>', trainable: true },
    ])
  })

  it('an assistant turn of weight 0 (OpenAI fine-tuning) stays in the text as context, untrained', () => {
    const template = createChatTemplate(
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% elif m['role'] == 'assistant' %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}",
      { bosToken: base.bosToken, eosToken: base.eosToken },
    )
    const [u1, a1, u2, a2] = CHAT.messages.filter((m) => m.role !== 'system')
    expect(rowSegments({ messages: [u1, { ...a1, weight: 0 }, u2, a2] }, template)).toEqual([
      {
        text: '<s>[INST] What is the capital of France? [/INST] The capital of France is Paris.</s>[INST] Thanks, how are you today? [/INST]',
        trainable: false,
      },
      { text: ' I am fine, thank you. 😀</s>', trainable: true },
    ])
  })

  it('maskPrompt: false trains on every token', () => {
    const e = encodeExample(CHAT, chatml, chatmlTemplate, { maskPrompt: false })!
    expect(e.labels).toEqual(e.input_ids)
  })

  it('completion rows: the prompt masked, the completion and EOS trained (BOS where the tokenizer adds one)', () => {
    const row = { prompt: 'The capital of France is', completion: ' Paris.' }
    const b = encodeExample(row, base, baseTemplate)!
    expect(b.input_ids[0]).toBe(base.bosId)
    expect(trained(b)).toEqual(base.encode(' Paris.</s>', true))
    // (decoding alone drops the leading space, as SentencePiece decoders strip the first one)
    expect(base.decode(b.input_ids)).toBe('<s>The capital of France is Paris.</s>')
    const c = encodeExample(row, chatml, chatmlTemplate)!
    expect(chatml.decode(c.input_ids)).toBe('The capital of France is Paris.<|im_end|>')
    expect(chatml.decode(trained(c))).toBe(' Paris.<|im_end|>')
  })

  it('text rows: every token trained, EOS appended', () => {
    const e = encodeExample({ text: 'Hello world!' }, base, baseTemplate)!
    expect(base.decode(e.input_ids)).toBe('<s>Hello world!</s>')
    expect(e.labels).toEqual([IGNORE_INDEX, ...e.input_ids.slice(1)])
  })

  it('pre-tokenized rows pass through; labels default to the ids', () => {
    expect(encodeExample({ input_ids: [1, 5, 6], labels: [-100, 5, 6] }, base, baseTemplate)).toEqual({
      input_ids: [1, 5, 6],
      labels: [-100, 5, 6],
    })
    expect(encodeExample({ input_ids: [1, 5, 6] }, base, baseTemplate)).toEqual({ input_ids: [1, 5, 6], labels: [1, 5, 6] })
  })

  it('truncates right (keeps the start), left (keeps the end), or drops', () => {
    const full = encodeExample(CHAT, chatml, chatmlTemplate)!
    const n = full.input_ids.length
    expect(encodeExample(CHAT, chatml, chatmlTemplate, { maxLength: 10 })).toEqual({
      input_ids: full.input_ids.slice(0, 10),
      labels: full.labels.slice(0, 10),
    })
    expect(encodeExample(CHAT, chatml, chatmlTemplate, { maxLength: 10, truncation: 'left' })).toEqual({
      input_ids: full.input_ids.slice(n - 10),
      labels: full.labels.slice(n - 10),
    })
    expect(encodeExample(CHAT, chatml, chatmlTemplate, { maxLength: 10, truncation: 'drop' })).toBeNull()
    expect(encodeExample(CHAT, chatml, chatmlTemplate, { maxLength: n, truncation: 'drop' })).toEqual(full)
    expect(() => encodeExample(CHAT, chatml, chatmlTemplate, { maxLength: 0 })).toThrow(
      'maxLength must be a positive number of tokens, got 0',
    )
  })

  it('is deterministic and fast enough for the trainer', () => {
    const rows: NormalizedRow[] = Array.from({ length: 300 }, (_, i) => ({
      messages: [
        { role: 'user', content: `Question number ${i}: what is the capital of France?` },
        { role: 'assistant', content: `Answer ${i}: the capital of France is Paris.` },
      ],
    }))
    const t0 = performance.now()
    const first = rows.map((r) => encodeExample(r, chatml, chatmlTemplate))
    const ms = performance.now() - t0
    expect(rows.map((r) => encodeExample(r, chatml, chatmlTemplate))).toEqual(first)
    expect(ms / rows.length).toBeLessThan(5) // about 0.2 ms a row here
  })

  it('refuses a template that rewrites earlier turns (no exact spans)', () => {
    // Drops every assistant turn but the last, as some reasoning templates do.
    const template = createChatTemplate(
      "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}{{ '<|' + m['role'] + '|>' + m['content'] }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}",
    )
    expect(() => encodeExample(CHAT, chatml, template)).toThrow(
      /chat template: it rewrites earlier turns and has no generation prompt or end-of-turn marker to find the assistant turns by/,
    )
  })

  it('reports template errors raised by the template', () => {
    const template = createChatTemplate("{{ raise_exception('Only user and assistant roles are supported!') }}")
    expect(() => rowSegments(CHAT, template)).toThrow('chat template: Only user and assistant roles are supported!')
  })
})

describe('the preview', () => {
  it('shows rows as the model sees them, with the masked spans marked', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'sharegpt.jsonl'), { tokenizer: base })
    expect(r.template).toEqual({ source: 'default', eosToken: '</s>' })
    expect(r.preview[0].segments).toEqual([
      { text: '<s><|system|>\nYou are terse.\n<|user|>\nHi\n<|assistant|>\n', trainable: false },
      { text: 'Hello.</s>', trainable: true },
    ])
    expect(r.preview[0].tokens).toBe(encodeExample(r.preview[0].row, base, baseTemplate)!.input_ids.length)
    expect(r.stats.tokens).toMatchObject({ count: 2, tokenizer: BASE_MODEL })
  })

  it('pages through the valid rows', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'alpaca.jsonl'), { preview: { offset: 1, limit: 1 } })
    expect(r.preview.map((p) => p.line)).toEqual([2])
  })

  it('without a model, uses the default template with a placeholder EOS', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'completion.jsonl'))
    expect(r.template).toEqual({ source: 'default', eosToken: defaultChatTemplate().eosToken })
    expect(r.preview[0].segments).toEqual([
      { text: 'The capital of France is', trainable: false },
      { text: ' Paris.</s>', trainable: true },
    ])
    expect(r.stats.tokens).toBeUndefined()
  })

  it('decodes pre-tokenized rows into trained and untrained runs', async () => {
    const r = await inspectDataset(join(LAYOUTS, 'tokens.jsonl'), { tokenizer: chatml })
    expect(r.preview[0].segments.map((s) => s.trainable)).toEqual([false, true])
    expect(r.preview[0].segments.map((s) => s.text).join('')).toBe(chatml.decode([1, 20, 21, 22, 2]))
  })
})
