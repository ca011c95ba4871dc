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
import { tokenString, type ModelTokenizer } from './tokenizer'

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
 * after that prefix (its content and end-of-turn tokens) is trained. A template that rewrites
 * earlier turns (Qwen3 drops the reasoning of answered turns) is rendered whole instead, and each
 * assistant turn is found between its generation prompt and its end-of-turn marker.
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
      const stable = prefixStableSegments(messages, template)
      if (stable === null) {
        // The template rewrites earlier turns (Qwen3 drops the <think> part of answered turns):
        // the conversation is trained as it renders whole, each assistant turn marked in it.
        for (const [text, trainable] of wholeRenderingSegments(messages, template)) push(text, trainable)
        return segments
      }
      for (const [text, trainable] of stable) push(text, trainable)
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

/**
 * Segments of a conversation rendered turn by turn (each rendering extends the previous one), or
 * null when the template rewrites earlier turns.
 */
function prefixStableSegments(messages: ChatMessage[], template: ChatTemplate): [string, boolean][] | null {
  const out: [string, boolean][] = []
  let done = ''
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue
    const prefix = template.render(messages.slice(0, i), true)
    if (!prefix.startsWith(done)) return null
    out.push([prefix.slice(done.length), false])
    const full = template.render(messages.slice(0, i + 1), false)
    if (!full.startsWith(prefix)) {
      throw new DatasetError(
        `chat template: the rendering of assistant turn ${i} does not start with the generation prompt, so its tokens cannot be told apart from the prompt's`,
      )
    }
    out.push([full.slice(prefix.length), messages[i].weight !== 0])
    done = full
  }
  if (messages.length === 0 || messages[messages.length - 1].role !== 'assistant') {
    const all = template.render(messages, false)
    if (!all.startsWith(done)) return null
    out.push([all.slice(done.length), false])
  }
  return out
}

/** What the template puts around an assistant turn: the generation prompt before it, the end of turn after it. */
export function turnMarkers(template: ChatTemplate): { generationPrompt: string; endOfTurn: string } {
  const MARK = '\u0001answer\u0001'
  const user: ChatMessage[] = [{ role: 'user', content: 'question' }]
  const asked = template.render(user, true)
  const plain = template.render(user, false)
  const answered = template.render([...user, { role: 'assistant', content: MARK }], false)
  const at = answered.lastIndexOf(MARK)
  // The end of turn: what follows the answer, up to where a next turn would begin.
  const endOfTurn = at < 0 ? template.eosToken : answered.slice(at + MARK.length)
  return { generationPrompt: asked.startsWith(plain) ? asked.slice(plain.length) : '', endOfTurn }
}

/**
 * The tokens that end an assistant turn: the template's end-of-turn marker when it starts with a
 * special token (<|im_end|> for ChatML and Qwen, </s> for Llama/Mistral templates), the
 * tokenizer's EOS, and the eos_token_id of config.json / generation_config.json (`extra`).
 * Generation stops at any of them.
 */
export function endOfTurnIds(template: ChatTemplate, tokenizer: ModelTokenizer, extra: readonly number[] = []): number[] {
  const ids = new Set<number>(extra)
  if (tokenizer.eosId !== null) ids.add(tokenizer.eosId)
  const marker = turnMarkers(template).endOfTurn
  const first = marker === '' ? undefined : tokenizer.encode(marker, true)[0]
  if (first !== undefined && tokenizer.specialIds.has(first)) ids.add(first)
  return [...ids]
}

/**
 * Segments of a conversation rendered whole, for templates that are not prefix-stable: each
 * assistant turn is found in the rendering (after its generation prompt, up to and including its
 * end-of-turn marker) and marked trained; everything else is not.
 */
function wholeRenderingSegments(messages: ChatMessage[], template: ChatTemplate): [string, boolean][] {
  const full = template.render(messages, false)
  const { generationPrompt, endOfTurn } = turnMarkers(template)
  if (generationPrompt === '' || endOfTurn === '')
    throw new DatasetError(
      'chat template: it rewrites earlier turns and has no generation prompt or end-of-turn marker to find the assistant turns by, so the trained spans cannot be found',
    )
  const out: [string, boolean][] = []
  let cursor = 0
  for (let i = 0; i < messages.length; i++) {
    if (messages[i].role !== 'assistant') continue
    const open = full.indexOf(generationPrompt, cursor)
    const start = open < 0 ? -1 : open + generationPrompt.length
    const end = start < 0 ? -1 : full.indexOf(endOfTurn, start)
    if (end < 0)
      throw new DatasetError(
        `chat template: assistant turn ${i} was not found in the rendered conversation, so its tokens cannot be marked`,
      )
    out.push([full.slice(cursor, start), false], [full.slice(start, end + endOfTurn.length), messages[i].weight !== 0])
    cursor = end + endOfTurn.length
  }
  out.push([full.slice(cursor), false])
  return out
}
