/**
 * Chat templates (Jinja, rendered by @huggingface/jinja the way transformers' apply_chat_template
 * renders them: trim_blocks and lstrip_blocks on), and the split of a row into the segments the
 * model sees, each marked trainable (loss taken) or not.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Template } from '@huggingface/jinja'
import { type ChatMessage, type NormalizedRow, type Segment, rowKind } from '../../shared/dataset'
import { DatasetError } from './errors'
import { tokenString } from './tokenizer'

/**
 * The workbench's chat template for models whose tokenizer_config.json has none (base models).
 * ChatML-like, with plain-text role markers and the tokenizer's own BOS/EOS:
 *
 * ```
 * <bos><|system|>\nYou are terse.\n<|user|>\nHi\n<|assistant|>\nHello.<eos><|user|>\n...
 * ```
 *
 * Each assistant turn ends with the EOS token and nothing else, so the trained span of a turn is
 * exactly its content plus EOS, and generation stops at EOS. With add_generation_prompt it ends
 * with `<|assistant|>\n`. The markers are ordinary text to the tokenizer (not special tokens).
 * Jinja blocks swallow the newline after them (trim_blocks), so newlines are written as '\n'
 * string literals.
 */
export const DEFAULT_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] }}" +
  "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\\n' }}{% endif %}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"

/** EOS shown in previews when no model was chosen. */
export const PLACEHOLDER_EOS = '</s>'

export interface ChatTemplate {
  /** The model's own template, or the workbench default. */
  source: 'model' | 'default'
  /** The Jinja text. */
  text: string
  bosToken: string
  eosToken: string
  /** Renders a conversation (as apply_chat_template(messages, tokenize=False) does). */
  render(messages: ChatMessage[], addGenerationPrompt: boolean): string
}

export interface TemplateTokens {
  bosToken?: string | null
  eosToken?: string | null
  /** Other variables templates use (pad_token, unk_token...). */
  extra?: Record<string, unknown>
}

/** Compiles a chat template; throws DatasetError with the parser's message when it is invalid. */
export function createChatTemplate(text: string, tokens: TemplateTokens = {}, source: 'model' | 'default' = 'model'): ChatTemplate {
  let compiled: Template
  try {
    compiled = new Template(text)
  } catch (e) {
    throw new DatasetError(`invalid chat template: ${(e as Error).message}`)
  }
  const bosToken = tokens.bosToken ?? ''
  const eosToken = tokens.eosToken ?? ''
  return {
    source,
    text,
    bosToken,
    eosToken,
    render(messages, addGenerationPrompt) {
      try {
        return compiled.render({
          ...tokens.extra,
          messages,
          bos_token: bosToken,
          eos_token: eosToken,
          add_generation_prompt: addGenerationPrompt,
        })
      } catch (e) {
        throw new DatasetError(`chat template: ${(e as Error).message}`)
      }
    },
  }
}

/** The workbench default template with the given special tokens. */
export function defaultChatTemplate(tokens: TemplateTokens = {}): ChatTemplate {
  return createChatTemplate(DEFAULT_CHAT_TEMPLATE, { ...tokens, eosToken: tokens.eosToken ?? PLACEHOLDER_EOS }, 'default')
}

async function readOptional(file: string): Promise<string | null> {
  try {
    return await readFile(file, 'utf8')
  } catch {
    return null
  }
}

/**
 * A model folder's chat template, found where transformers looks: chat_template.jinja, then
 * chat_template.json, then tokenizer_config.json's chat_template (a string, or a list of named
 * templates of which "default" is used). Without one, the workbench default with the model's
 * BOS/EOS.
 */
export async function loadChatTemplate(modelDir: string): Promise<ChatTemplate> {
  const configText = await readOptional(join(modelDir, 'tokenizer_config.json'))
  let config: Record<string, unknown> = {}
  if (configText !== null) {
    try {
      config = JSON.parse(configText) as Record<string, unknown>
    } catch (e) {
      throw new DatasetError(`${join(modelDir, 'tokenizer_config.json')}: invalid JSON: ${(e as Error).message}`)
    }
  }
  const tokens: TemplateTokens = {
    bosToken: tokenString(config.bos_token),
    eosToken: tokenString(config.eos_token),
    extra: { pad_token: tokenString(config.pad_token) ?? '', unk_token: tokenString(config.unk_token) ?? '' },
  }
  let text = await readOptional(join(modelDir, 'chat_template.jinja'))
  if (text === null) {
    const json = await readOptional(join(modelDir, 'chat_template.json'))
    if (json !== null) text = pickTemplate((JSON.parse(json) as { chat_template?: unknown }).chat_template)
  }
  text ??= pickTemplate(config.chat_template)
  if (text === null) return defaultChatTemplate(tokens)
  return createChatTemplate(text, tokens, 'model')
}

function pickTemplate(value: unknown): string | null {
  if (typeof value === 'string' && value.trim() !== '') return value
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[]
    const t = named.find((x) => x.name === 'default') ?? named[0]
    if (t && typeof t.template === 'string') return t.template
  }
  return null
}

export interface SegmentOptions {
  /** Loss only on assistant turns / the completion (default true); false: on everything. */
  maskPrompt?: boolean
  /** Text put before completion and text rows (the BOS token when the tokenizer adds one). */
  bos?: string
}

/**
 * The row as text the model sees, split into segments marked trainable or not. Chats go through
 * the template, rendered incrementally: for each assistant turn i, the rendering of the turns
 * before it with the generation prompt is the untrained prefix, and what rendering turn i adds
 * after that prefix (its content and end-of-turn tokens) is trained. The template must be
 * prefix-stable (each rendering extends the previous one); if not, this throws DatasetError.
 * Completion: prompt untrained, completion + EOS trained. Text: text + EOS trained.
 */
export function rowSegments(row: NormalizedRow, template: ChatTemplate, options: SegmentOptions = {}): Segment[] {
  const maskPrompt = options.maskPrompt ?? true
  const bos = options.bos ?? ''
  const segments: Segment[] = []
  const push = (text: string, trainable: boolean) => {
    if (text === '') return
    const t = trainable || !maskPrompt
    const last = segments[segments.length - 1]
    if (last && last.trainable === t) last.text += text
    else segments.push({ text, trainable: t })
  }
  switch (rowKind(row)) {
    case 'chat': {
      const messages = (row as { messages: ChatMessage[] }).messages
      let done = ''
      let doneCount = 0
      for (let i = 0; i < messages.length; i++) {
        if (messages[i].role !== 'assistant') continue
        const prefix = template.render(messages.slice(0, i), true)
        if (!prefix.startsWith(done)) throw notPrefixStable(i, doneCount)
        push(prefix.slice(done.length), false)
        const full = template.render(messages.slice(0, i + 1), false)
        if (!full.startsWith(prefix)) {
          throw new DatasetError(
            `chat template: the rendering of assistant turn ${i} does not start with the generation prompt, so its tokens cannot be told apart from the prompt's`,
          )
        }
        push(full.slice(prefix.length), true)
        done = full
        doneCount = i + 1
      }
      if (messages.length === 0 || messages[messages.length - 1].role !== 'assistant') {
        const all = template.render(messages, false)
        if (!all.startsWith(done)) throw notPrefixStable(messages.length, doneCount)
        push(all.slice(done.length), false)
      }
      return segments
    }
    case 'completion': {
      const r = row as { prompt: string; completion: string }
      push(bos + r.prompt, false)
      push(r.completion + template.eosToken, true)
      return segments
    }
    case 'text': {
      push(bos, false)
      push((row as { text: string }).text + template.eosToken, true)
      return segments
    }
    case 'tokens':
      throw new DatasetError('pre-tokenized rows have no text segments')
  }
}

function notPrefixStable(count: number, before: number): DatasetError {
  return new DatasetError(
    `chat template: rendering the first ${count} messages does not extend the rendering of the first ${before} (the template rewrites earlier turns), so the trained spans cannot be found`,
  )
}
