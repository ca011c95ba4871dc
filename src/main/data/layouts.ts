/**
 * Layouts: detecting how a file's records are laid out, mapping its columns onto a layout's
 * fields, and turning each record into a normalised row (src/shared/dataset.ts) or the list of
 * its problems. Pure functions, no I/O.
 *
 * Problem messages are part of the product (the UI shows them): keep them short, lower-case,
 * and naming what was expected and what was found.
 */
import {
  type ChatMessage,
  type ChatRole,
  type ColumnMapping,
  DATASET_LAYOUTS,
  type DatasetLayout,
  LAYOUT_FIELDS,
  type NormalizedRow,
} from '../../shared/dataset'
import { DatasetError, typeName } from './errors'

/** Roles of tool use (OpenAI, ShareGPT, Llama 3): turns the chat layouts do not train. */
const TOOL_ROLES = new Set(['tool', 'function', 'function_call', 'observation', 'ipython'])

export interface FieldProblem {
  field: string
  message: string
}

export type Normalized = { row: NormalizedRow; problems?: undefined } | { row?: undefined; problems: FieldProblem[] }

/** Column names that detection accepts for each logical field, in order of preference. */
const SYNONYMS: Record<string, string[]> = {
  instruction: ['instruction', 'question', 'query', 'prompt'],
  input: ['input', 'context'],
  output: ['output', 'response', 'answer'],
  system: ['system'],
  history: ['history'],
  prompt: ['prompt'],
  completion: ['completion'],
  text: ['text', 'content'],
  input_ids: ['input_ids'],
  labels: ['labels'],
}

export interface Detection {
  layout: DatasetLayout
  mapping: ColumnMapping
}

/** Fields a detection may add or leave out row by row: they do not decide what a row looks like. */
const OPTIONAL_DETECTED = new Set(['input', 'system', 'history', 'labels'])

/**
 * Detects the layout from the first records (objects): each record's own keys say which layout
 * it looks like, the most records decide (a tie goes to the layout checked first below), and the
 * columns are those of the records that look like it. One stray row (a `messages` list in a
 * ShareGPT file) once set the layout of the whole file and made every other row invalid.
 * Returns null when nothing is recognisable: the user then picks a layout and maps the columns.
 */
export function detectLayout(sample: unknown[], columns: string[]): Detection | null {
  const objects = sample.filter((v): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v))
  if (objects.length < 2) return detectFrom(objects, columns)
  const votes = new Map<string, Record<string, unknown>[]>()
  for (const o of objects) {
    const d = detectFrom(
      [o],
      columns.filter((c) => o[c] !== undefined && o[c] !== null),
    )
    if (d === null) continue
    const key = JSON.stringify([d.layout, Object.entries(d.mapping).filter(([f]) => !OPTIONAL_DETECTED.has(f))])
    votes.set(key, [...(votes.get(key) ?? []), o])
  }
  if (votes.size === 0) return detectFrom(objects, columns)
  // Most records first; among equals, the layout the rules below check first (what one record would get).
  const ranked = [...votes.values()].sort((a, b) => b.length - a.length)
  const tied = ranked.filter((r) => r.length === ranked[0].length)
  const winners = tied.length === 1 ? tied[0] : tied.flat()
  const own = columns.filter((c) => winners.some((o) => o[c] !== undefined && o[c] !== null))
  return detectFrom(winners, own)
}

/** The layout the records' columns fit, by rules in a fixed order of precedence. */
function detectFrom(objects: Record<string, unknown>[], columns: string[]): Detection | null {
  const has = (c: string) => columns.includes(c)
  const firstValue = (c: string): unknown => objects.find((o) => o[c] !== undefined && o[c] !== null)?.[c]
  const firstArray = (c: string): unknown[] | null => {
    const v = parseJsonCell(firstValue(c))
    return Array.isArray(v) ? v : null
  }
  const messageKeys = (list: unknown[] | null): string[] => {
    const m = list?.find((x) => x !== null && typeof x === 'object')
    return m ? Object.keys(m) : []
  }

  for (const column of ['messages', 'conversations', 'conversation', 'dialog']) {
    if (!has(column)) continue
    const keys = messageKeys(firstArray(column))
    const system: ColumnMapping = has('system') ? { system: 'system' } : {}
    if (keys.includes('from') && keys.includes('value')) {
      return { layout: 'sharegpt', mapping: { conversations: column, ...system } }
    }
    if (keys.includes('role') && keys.includes('content')) {
      return { layout: 'messages', mapping: { messages: column, ...system } }
    }
  }
  if (has('input_ids'))
    return { layout: 'tokens', mapping: has('labels') ? { input_ids: 'input_ids', labels: 'labels' } : { input_ids: 'input_ids' } }
  if (has('prompt') && has('completion')) return { layout: 'completion', mapping: { prompt: 'prompt', completion: 'completion' } }
  const pick = (field: string) => SYNONYMS[field].find(has)
  const instruction = pick('instruction')
  const output = pick('output')
  if (instruction !== undefined && output !== undefined) {
    const mapping: ColumnMapping = { instruction, output }
    const input = pick('input')
    const system = pick('system')
    const history = pick('history')
    if (input !== undefined) mapping.input = input
    if (system !== undefined) mapping.system = system
    if (history !== undefined) mapping.history = history
    return { layout: 'alpaca', mapping }
  }
  const text = pick('text')
  if (text !== undefined) return { layout: 'text', mapping: { text } }
  return null
}

/** The default mapping of a layout: each field to the column of the same name. */
export function defaultMapping(layout: DatasetLayout): ColumnMapping {
  return Object.fromEntries(LAYOUT_FIELDS[layout].map((f) => [f, f]))
}

const MESSAGE_KEYS = { sharegpt: { role: 'from', content: 'value' }, messages: { role: 'role', content: 'content' } } as const

/**
 * The complete mapping for `layout`: the defaults, overridden by `mapping`. For the chat
 * layouts, `role` and `content` name the keys inside each message. Throws DatasetError for an
 * unknown layout, a field the layout lacks, or a column the file lacks.
 */
/** Fields a row may lack (alpaca's input, system and history, pre-tokenised labels). */
export const OPTIONAL_FIELDS = new Set(['input', 'system', 'history', 'labels'])

export function resolveMapping(layout: DatasetLayout, mapping: ColumnMapping | undefined, columns: string[] | null): ColumnMapping {
  if (!(DATASET_LAYOUTS as readonly string[]).includes(layout)) {
    throw new DatasetError(`unknown layout "${layout}" (expected one of ${DATASET_LAYOUTS.join(', ')})`, 'layout')
  }
  const fields: string[] = [...LAYOUT_FIELDS[layout]]
  if (layout === 'sharegpt' || layout === 'messages') fields.push('role', 'content')
  const resolved: ColumnMapping = defaultMapping(layout)
  if (layout === 'sharegpt' || layout === 'messages') Object.assign(resolved, MESSAGE_KEYS[layout])
  for (const [field, column] of Object.entries(mapping ?? {})) {
    if (!fields.includes(field)) {
      throw new DatasetError(
        `mapping: "${field}" is not a field of the ${layout} layout (fields: ${fields.join(', ')})`,
        `mapping.${field}`,
      )
    }
    if (typeof column !== 'string' || column === '') throw new DatasetError(`mapping: ${field} must name a column`, `mapping.${field}`)
    const inMessage = field === 'role' || field === 'content'
    // An optional field left at its default column may be absent from the file: inspect reports
    // the whole mapping, and a client that sends it back unchanged must not be refused for it.
    const optionalDefault = OPTIONAL_FIELDS.has(field) && column === resolved[field]
    if (!inMessage && !optionalDefault && columns !== null && columns.length > 0 && !columns.includes(column)) {
      throw new DatasetError(
        `mapping: column "${column}" (for ${field}) is not in the file (columns: ${columns.join(', ')})`,
        `mapping.${field}`,
      )
    }
    resolved[field] = column
  }
  return resolved
}

/** CSV/TSV cells are strings: a cell holding a JSON array or object is parsed. */
function parseJsonCell(value: unknown): unknown {
  if (typeof value !== 'string') return value
  const t = value.trimStart()
  if (t[0] !== '[' && t[0] !== '{') return value
  try {
    return JSON.parse(value)
  } catch {
    return value
  }
}

export interface NormalizeOptions {
  /** Cells are strings (CSV/TSV): parse JSON arrays in cells where an array is expected. */
  cellsAreText?: boolean
  /** Vocabulary size, to check token ids. */
  vocabSize?: number
}

const SHAREGPT_ROLES: Record<string, ChatRole> = { system: 'system', human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant' }
const ROLES: Record<string, ChatRole> = { system: 'system', user: 'user', assistant: 'assistant' }

/** A NUL or a UTF-16 surrogate without its pair (JSON's "\ud800" escape): not text. */
// eslint-disable-next-line no-control-regex -- finding NUL is the point
const NOT_TEXT = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/u

/**
 * Why `text` is not text a model can train on, or null: a NUL character (a binary file's, or
 * truncated data), or half of a surrogate pair, which UTF-8 cannot store (it would be saved as
 * U+FFFD, the row changed without a word). Says where, so the file can be fixed.
 */
export function textProblem(text: string): string | null {
  const m = NOT_TEXT.exec(text)
  if (m === null) return null
  const code = `\\u${m[0].charCodeAt(0).toString(16).padStart(4, '0')}`
  return m[0] === '\u0000'
    ? `has a NUL character (${code}) at character ${[...text.slice(0, m.index)].length + 1}: not text; remove it from the file`
    : `has half of a surrogate pair (${code}) at character ${[...text.slice(0, m.index)].length + 1}: not valid Unicode, it would be stored changed; fix the text in the file`
}

/**
 * A required field with no value: "missing field" where the key is not there, and what was
 * expected where it is there but null (a JSON null, a Parquet null cell): "missing" sent users
 * looking for a key their file has.
 */
function absent(v: null | undefined, expected: 'text' | 'an array'): string {
  return v === null ? `is null: expected ${expected}; give it a value, or leave the row out` : MISSING
}

/** A required field with nothing in it: what to do too. */
const EMPTY = 'must not be empty: give it a value, or leave the row out'

/** A required key not in the row: what to do about it too (the row alone, or every row: the mapping). */
const MISSING = 'missing field: add it to the row, map another key to it, or leave the row out'

/**
 * Turns one record into a normalised row, or returns all its problems. `mapping` must be a
 * resolved one (resolveMapping).
 */
export function normalizeRecord(value: unknown, layout: DatasetLayout, mapping: ColumnMapping, options: NormalizeOptions = {}): Normalized {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { problems: [{ field: '', message: `expected an object, got ${typeName(value)}` }] }
  }
  const record = value as Record<string, unknown>
  const problems: FieldProblem[] = []
  const col = (field: string) => mapping[field] ?? field

  /** A required (or optional) non-empty string field. */
  const str = (field: string, required: boolean, allowEmpty = false): string | undefined => {
    const column = col(field)
    const v = record[column]
    if (v === undefined || v === null) {
      if (required) problems.push({ field: column, message: absent(v, 'text') })
      return undefined
    }
    // A number column (an answer of 42 in Parquet or JSON) is its text: every row was refused.
    const text = (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'bigint' ? String(v) : v
    if (typeof text !== 'string') {
      problems.push({ field: column, message: `expected a string, got ${typeName(v)}` })
      return undefined
    }
    if (!allowEmpty && text.trim() === '') {
      if (required) problems.push({ field: column, message: EMPTY })
      return undefined
    }
    const bad = textProblem(text)
    if (bad !== null) {
      problems.push({ field: column, message: bad })
      return undefined
    }
    return text
  }
  const array = (field: string, required: boolean): unknown[] | undefined => {
    const column = col(field)
    let v = record[column]
    if (v === undefined || v === null || (options.cellsAreText && v === '')) {
      if (required) problems.push({ field: column, message: v === null ? absent(v, 'an array') : MISSING })
      return undefined
    }
    if (options.cellsAreText) v = parseJsonCell(v)
    if (!Array.isArray(v)) {
      problems.push({ field: column, message: `expected an array, got ${typeName(v)}` })
      return undefined
    }
    return v
  }

  switch (layout) {
    case 'alpaca': {
      const instruction = str('instruction', true)
      const input = str('input', false, true)
      const output = str('output', true)
      const system = str('system', false)
      // LLaMA-Factory's alpaca history: the earlier [instruction, response] pairs, oldest first.
      const history = array('history', false)
      const earlier: ChatMessage[] = []
      history?.forEach((pair, i) => {
        const at = `${col('history')}[${i}]`
        if (!Array.isArray(pair) || pair.length !== 2) {
          problems.push({
            field: at,
            message: `expected a pair ["instruction", "response"], got ${typeName(pair)}${Array.isArray(pair) ? ` of ${pair.length}` : ''}`,
          })
          return
        }
        pair.forEach((text, j) => {
          const problem =
            typeof text !== 'string' ? `expected a string, got ${typeName(text)}` : text.trim() === '' ? 'empty turn' : textProblem(text)
          if (problem !== null) problems.push({ field: `${at}[${j}]`, message: problem })
          else earlier.push({ role: j === 0 ? 'user' : 'assistant', content: text as string })
        })
      })
      if (problems.length > 0) return { problems }
      const user = input !== undefined && input.trim() !== '' ? `${instruction}\n\n${input}` : instruction!
      const messages: ChatMessage[] = []
      if (system !== undefined) messages.push({ role: 'system', content: system })
      messages.push(...earlier)
      messages.push({ role: 'user', content: user }, { role: 'assistant', content: output! })
      return { row: { messages } }
    }
    case 'sharegpt':
    case 'messages': {
      const listField = layout === 'sharegpt' ? 'conversations' : 'messages'
      const column = col(listField)
      const list = array(listField, true)
      // A system prompt in a column of its own (LLaMA-Factory's sharegpt "system"): a conversation's
      // own system turn wins, as in LLaMA-Factory.
      const system = str('system', false)
      if (list === undefined) return { problems }
      const roleKey = col('role')
      const contentKey = col('content')
      const roles = layout === 'sharegpt' ? SHAREGPT_ROLES : ROLES
      const expected = layout === 'sharegpt' ? 'system, human or gpt' : 'system, user or assistant'
      const messages: ChatMessage[] = []
      const written: string[] = [] // each turn's role as the file writes it
      list.forEach((m, i) => {
        const at = `${column}[${i}]`
        if (m === null || typeof m !== 'object' || Array.isArray(m)) {
          problems.push({ field: at, message: `expected an object, got ${typeName(m)}` })
          return
        }
        const msg = m as Record<string, unknown>
        const role = msg[roleKey]
        const parts = msg[contentKey]
        // OpenAI's content parts: the text parts' texts one after another, as Hugging Face chat
        // templates render a list of text parts; another kind of part is refused by name.
        const text = Array.isArray(parts) ? textOfParts(parts, `${at}.${contentKey}`, problems) : undefined
        if (text === null) return // each part's problem is said
        const content = text ?? parts
        let mapped: ChatRole | undefined
        if (role === undefined || role === null) problems.push({ field: `${at}.${roleKey}`, message: absent(role, 'text') })
        else if (typeof role !== 'string') problems.push({ field: `${at}.${roleKey}`, message: `expected a string, got ${typeName(role)}` })
        else {
          mapped = roles[role]
          if (mapped === undefined)
            problems.push({
              field: `${at}.${roleKey}`,
              message: TOOL_ROLES.has(role)
                ? `"${role}" turns (tool calls and their results) are not supported; remove them, or the rows that have them`
                : `unknown role "${role}" (expected ${expected})`,
            })
        }
        if (content === null && (msg.tool_calls !== undefined || msg.function_call !== undefined))
          problems.push({
            field: `${at}.${contentKey}`,
            message: 'a tool call (content null, tool_calls set): tool calls are not supported; remove the turn, or the row',
          })
        else if (content === undefined || content === null)
          problems.push({ field: `${at}.${contentKey}`, message: absent(content, 'text') })
        else if (typeof content !== 'string')
          problems.push({ field: `${at}.${contentKey}`, message: `expected a string, got ${typeName(content)}` })
        else if (content.trim() === '') problems.push({ field: `${at}.${contentKey}`, message: 'empty turn' })
        else if (textProblem(content) !== null) problems.push({ field: `${at}.${contentKey}`, message: textProblem(content)! })
        // OpenAI's per-turn weight: 0 keeps an assistant turn as context only, 1 trains it.
        const weight = layout === 'messages' ? msg.weight : undefined
        if (weight !== undefined && weight !== null && weight !== 0 && weight !== 1)
          problems.push({ field: `${at}.weight`, message: `must be 0 (not trained on) or 1 (trained), got ${JSON.stringify(weight)}` })
        else if (weight === 0 && mapped !== undefined && mapped !== 'assistant')
          problems.push({
            field: `${at}.weight`,
            message: `only assistant turns are trained on: a ${role as string} turn takes no weight; remove it`,
          })
        if (mapped !== undefined && typeof content === 'string') {
          messages.push({ role: mapped, content, ...(weight === 0 && { weight: 0 as const }) })
          written.push(role as string)
        }
      })
      // The order is checked once every turn is readable (else every later turn would be "out of order").
      const words = layout === 'sharegpt' ? { user: 'human', assistant: 'gpt' } : {}
      if (problems.length === 0) problems.push(...checkTurns(messages, column, roleKey, written, words))
      if (problems.length === 0 && messages.every((m) => m.role !== 'assistant' || m.weight === 0))
        problems.push({
          field: column,
          message: 'every assistant turn has weight 0: nothing to train on; set weight 1 on the turns to learn, or remove the row',
        })
      if (problems.length > 0) return { problems }
      if (system !== undefined && messages[0]?.role !== 'system') messages.unshift({ role: 'system', content: system })
      return { row: { messages } }
    }
    case 'completion': {
      const prompt = str('prompt', true)
      const completion = str('completion', true)
      if (problems.length > 0) return { problems }
      return { row: { prompt: prompt!, completion: completion! } }
    }
    case 'text': {
      const text = str('text', true)
      if (problems.length > 0) return { problems }
      return { row: { text: text! } }
    }
    case 'tokens': {
      const ids = array('input_ids', true)
      const hasLabels = record[col('labels')] !== undefined && record[col('labels')] !== null && record[col('labels')] !== ''
      const labels = hasLabels ? array('labels', false) : undefined
      if (ids !== undefined) {
        if (ids.length === 0) problems.push({ field: col('input_ids'), message: EMPTY })
        const bad = ids.findIndex((t) => !isTokenId(t, options.vocabSize))
        if (bad !== -1) problems.push({ field: `${col('input_ids')}[${bad}]`, message: tokenProblem(ids[bad], options.vocabSize) })
      }
      if (labels !== undefined) {
        const bad = labels.findIndex((t) => t !== -100 && !isTokenId(t, options.vocabSize))
        if (bad !== -1)
          problems.push({ field: `${col('labels')}[${bad}]`, message: `expected -100 or a token id, got ${JSON.stringify(labels[bad])}` })
        if (ids !== undefined && labels.length !== ids.length) {
          problems.push({ field: col('labels'), message: `has ${labels.length} entries, ${col('input_ids')} has ${ids.length}` })
        }
      }
      if (problems.length > 0) return { problems }
      return { row: labels === undefined ? { input_ids: ids as number[] } : { input_ids: ids as number[], labels: labels as number[] } }
    }
  }
}

function isTokenId(t: unknown, vocabSize?: number): boolean {
  return typeof t === 'number' && Number.isInteger(t) && t >= 0 && (vocabSize === undefined || t < vocabSize)
}

function tokenProblem(t: unknown, vocabSize?: number): string {
  if (typeof t === 'number' && Number.isInteger(t) && t >= 0) return `token id ${t} is outside the vocabulary (size ${vocabSize})`
  return `expected a token id (an integer >= 0), got ${JSON.stringify(t)}`
}

/**
 * The conversation rules: an optional leading system message, then user and assistant
 * alternating from the user, ending with the assistant.
 */
export function checkTurns(
  messages: ChatMessage[],
  column: string,
  roleKey: string,
  /** The roles as the file writes them ("human", "gpt"), said in the problems; default the roles themselves. */
  written: readonly string[] = messages.map((m) => m.role),
  /** The file's word for each role where it is another (ShareGPT's "human" and "gpt"). */
  words: Partial<Record<ChatRole, string>> = {},
): FieldProblem[] {
  if (messages.length === 0) return [{ field: column, message: 'has no turns' }]
  const problems: FieldProblem[] = []
  let expect: ChatRole = 'user'
  for (let i = 0; i < messages.length; i++) {
    const role = messages[i].role
    const got = written[i]
    const field = `${column}[${i}].${roleKey}`
    if (role === 'system') {
      if (i !== 0) {
        problems.push({ field, message: 'a system message may only come first' })
        return problems
      }
      continue
    }
    if (role !== expect) {
      const word = words[expect] ? ` ("${words[expect]}")` : ''
      problems.push({ field, message: `expected ${expect === 'user' ? 'a user' : 'an assistant'} turn${word}, got ${got}` })
      return problems
    }
    expect = expect === 'user' ? 'assistant' : 'user'
  }
  const last = messages[messages.length - 1]
  if (last.role !== 'assistant') {
    problems.push({
      field: `${column}[${messages.length - 1}].${roleKey}`,
      message:
        last.role === 'system'
          ? 'has no turns after the system message'
          : `the last turn must be the assistant's${words.assistant ? ` ("${words.assistant}")` : ''}, got ${written[messages.length - 1]}`,
    })
  }
  return problems
}

/**
 * The text of an OpenAI-style list of content parts ([{ type: "text", text: "..." }, ...]): the
 * texts joined as they are; null, with a problem for each part that is not text, where any is not.
 */
function textOfParts(parts: unknown[], field: string, problems: FieldProblem[]): string | null {
  const texts: string[] = []
  const before = problems.length
  parts.forEach((p, i) => {
    const at = `${field}[${i}]`
    const part = p !== null && typeof p === 'object' && !Array.isArray(p) ? (p as Record<string, unknown>) : null
    if (part === null)
      problems.push({ field: at, message: `expected a content part like {"type": "text", "text": "..."}, got ${typeName(p)}` })
    else if (part.type !== 'text')
      problems.push({
        field: `${at}.type`,
        message:
          typeof part.type === 'string'
            ? `a part of type "${part.type}": only text parts are supported; remove it, or the row`
            : 'missing the part\'s type: write {"type": "text", "text": "..."}',
      })
    else if (typeof part.text !== 'string')
      problems.push({
        field: `${at}.text`,
        message: part.text === undefined ? MISSING : `expected a string, got ${typeName(part.text)}`,
      })
    else texts.push(part.text)
  })
  return problems.length > before ? null : texts.join('')
}
