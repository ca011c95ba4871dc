/**
 * The default model's pretraining corpus, generated: short stories about a small world, true
 * facts, sums, counting, lists, word lists read backwards, key: value records and JSON, and
 * chat-formatted conversations in the workbench chat template.
 *
 * Stories, facts and lists are plain text (loss on every token). Sums, word lists read backwards
 * and records written as JSON are prompt/completion rows, and chats are trained on the assistant
 * turns only: the loss then falls on the tokens that follow from what came before, not on the
 * random names and numbers of the prompts. A small model pretrained for a few minutes learns to
 * add and to copy from its prompt this way; trained on every token, it learns the templates but
 * not to use the prompt.
 *
 * The corpus teaches the skills the sample tasks need (adding, reading a list backwards, writing
 * a record as JSON) in plain-text forms, and how to chat, but never the sample tasks' own chat
 * prompts ("What is 23 + 48?", "Reverse the words: ...", "Convert the record to JSON."): so the
 * default model answers those prompts in its own way until it is fine-tuned on the samples.
 * Held-out task instances (see tasks.ts) never appear here.
 */
import type { ChatMessage, ChatRow, CompletionRow, TextRow } from '../../src/shared/dataset'
import { Random } from './random'
import {
  additionKey,
  type Exclusions,
  type Field,
  fresh,
  randomAddition,
  randomRecord,
  randomWordList,
  randomWordRecord,
  recordJson,
  recordKey,
  reversalKey,
} from './tasks'
import {
  ADJECTIVES,
  ANIMALS,
  COLOR_FACTS,
  COLORS,
  COUNT_FACTS,
  FEELINGS,
  FRUITS,
  HOMES,
  LIST_WORDS,
  NAMES,
  OBJECTS,
  OPPOSITES,
  PLACES,
  SOUNDS,
  SYSTEM_PROMPTS,
  TIMES,
  plural,
} from './words'

export type DocKind = 'story' | 'facts' | 'sums' | 'counting' | 'lists' | 'backwards' | 'records' | 'chat'

export interface Doc {
  kind: DocKind
  row: TextRow | ChatRow | CompletionRow
}

/** Share of documents of each kind. */
export const DOC_WEIGHTS: Record<DocKind, number> = {
  story: 10,
  facts: 5,
  sums: 16,
  counting: 3,
  lists: 3,
  backwards: 14,
  records: 14,
  chat: 35,
}

const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1)
const article = (w: string): string => (/^[aeiou]/.test(w) ? `an ${w}` : `a ${w}`)
/** "a, b and c" */
const andList = (xs: string[]): string => (xs.length < 2 ? xs.join('') : `${xs.slice(0, -1).join(', ')} and ${xs[xs.length - 1]}`)

// --- stories ------------------------------------------------------------------------------------

function story(r: Random): string {
  const [n, m] = r.sample(NAMES, 2)
  const obj = r.pick(OBJECTS)
  const place = r.pick(PLACES)
  const animal = r.pick(ANIMALS)
  const fruit = r.pick(FRUITS)
  const s: string[] = [`${n} has ${article(r.pick(ADJECTIVES))} ${r.pick(COLORS)} ${obj}.`]
  const middle: (() => string)[] = [
    () => `${r.pick(TIMES)}, ${n} goes to the ${place} with the ${obj}.`,
    () => `At the ${place}, ${n} sees ${article(r.pick(ADJECTIVES))} ${animal}.`,
    () => `The ${animal} is ${r.pick(FEELINGS)}.`,
    () => `${n} meets ${m} at the ${place}.`,
    () => `${n} gives the ${obj} to ${m}, and ${m} is ${r.pick(FEELINGS)}.`,
    () => {
      const a = r.int(1, 20)
      const b = r.int(1, 20)
      return `${n} has ${a} ${plural(fruit)}. ${m} gives ${n} ${b} more. Now ${n} has ${a + b} ${plural(fruit)}.`
    },
    () => {
      const a = r.int(5, 30)
      const b = r.int(1, a - 1)
      return `${m} has ${a} ${plural(fruit)} and eats ${b}. Now ${m} has ${a - b} ${plural(fruit)}.`
    },
    () => `The ${obj} is ${r.pick(ADJECTIVES)}, and ${n} likes it very much.`,
    () => `${m} says: "What a ${r.pick(ADJECTIVES)} ${obj}!"`,
  ]
  for (const f of r.sample(middle, r.int(2, 4))) s.push(f())
  s.push(r.pick([`${r.pick(TIMES)}, ${n} goes home.`, `${n} and ${m} are ${r.pick(FEELINGS)}.`, `The end.`]))
  return s.join(' ')
}

// --- facts --------------------------------------------------------------------------------------

function fact(r: Random): string {
  switch (r.int(0, 4)) {
    case 0: {
      const [x, c] = r.pick(COLOR_FACTS)
      return `${cap(x)} is ${c}.`
    }
    case 1: {
      const [a, s] = r.pick(SOUNDS)
      return `${cap(article(a))} says ${s}.`
    }
    case 2: {
      const [x, n, u] = r.pick(COUNT_FACTS)
      return `${cap(x)} has ${n} ${u}.`
    }
    case 3: {
      const [a, b] = r.pick(OPPOSITES)
      return r.chance(0.5) ? `The opposite of ${a} is ${b}.` : `The opposite of ${b} is ${a}.`
    }
    default: {
      const [a, h] = r.pick(HOMES)
      return `${cap(article(a))} lives ${h}.`
    }
  }
}

// --- numbers ------------------------------------------------------------------------------------

function sums(r: Random, ex: Exclusions): CompletionRow {
  const { a, b } = fresh(() => randomAddition(r), additionKey, ex.arithmetic)
  return r.chance(0.8) ? { prompt: `${a} + ${b} =`, completion: ` ${a + b}` } : { prompt: `${a} plus ${b} is`, completion: ` ${a + b}.` }
}

function counting(r: Random): string {
  const start = r.int(0, 90)
  const len = r.int(4, 9)
  const xs = Array.from({ length: len }, (_, i) => String(start + i))
  return r.chance(0.5) ? `Count: ${xs.join(' ')}` : `The numbers from ${xs[0]} to ${xs[xs.length - 1]} are ${andList(xs)}.`
}

// --- lists and backwards ------------------------------------------------------------------------

const CATEGORIES: [string, readonly string[]][] = [
  ['animals', ANIMALS],
  ['fruits', FRUITS],
  ['colors', COLORS],
  ['things', OBJECTS],
  ['places', PLACES],
]

function list(r: Random): string {
  const [cat, words] = r.pick(CATEGORIES)
  const xs = r.sample(words, r.int(2, 5))
  return r.chance(0.5) ? `${cap(cat)}: ${xs.join(', ')}.` : `${r.pick(NAMES)} likes ${andList(xs.map(plural))}.`
}

function backwards(r: Random, ex: Exclusions): CompletionRow {
  const words = fresh(() => randomWordList(r), reversalKey, ex.reversal)
  const rev = words.slice().reverse()
  switch (r.int(0, 2)) {
    case 0:
      return { prompt: `forward: ${words.join(' ')}\nbackward:`, completion: ` ${rev.join(' ')}` }
    case 1:
      return { prompt: `Read from the end, the words ${words.join(' ')} are`, completion: ` ${rev.join(' ')}.` }
    default:
      return { prompt: `say: ${words.join(' ')}\nagain:`, completion: ` ${words.join(' ')}` }
  }
}

// --- records ------------------------------------------------------------------------------------

const lines = (fields: Field[]): string => fields.map(([k, v]) => `${k}: ${v}`).join('\n')

function describe(fields: Field[]): string {
  const m = new Map(fields)
  const who = (m.get('name') as string | undefined) ?? 'This person'
  const parts: string[] = []
  if (m.has('age')) parts.push(`is ${m.get('age')} years old`)
  if (m.has('city')) parts.push(`lives in ${m.get('city')}`)
  if (m.has('job')) parts.push(`works as ${article(String(m.get('job')))}`)
  if (m.has('pet')) parts.push(`has ${article(String(m.get('pet')))}`)
  if (m.has('color')) parts.push(`likes the color ${m.get('color')}`)
  if (m.has('fruit')) parts.push(`eats ${plural(String(m.get('fruit')))}`)
  if (m.has('score')) parts.push(`has a score of ${m.get('score')}`)
  return `${who} ${andList(parts)}.`
}

function records(r: Random, ex: Exclusions): CompletionRow {
  if (r.chance(0.8)) {
    const fields = fresh(() => randomWordRecord(r), recordKey, ex.conversion)
    return { prompt: `Record:\n${lines(fields)}\nAs JSON:\n`, completion: recordJson(fields) }
  }
  const fields = randomRecord(r)
  return r.chance(0.5)
    ? { prompt: `${recordJson(fields)}\nIn words:`, completion: ` ${describe(fields)}` }
    : { prompt: `${describe(fields)}\nAs a record:\n`, completion: lines(fields) }
}

// --- chat ---------------------------------------------------------------------------------------

type Exchange = [user: string, assistant: string]

function exchange(r: Random): Exchange {
  switch (
    r.weighted({
      greet: 2,
      who: 1,
      thanks: 1,
      color: 2,
      sound: 2,
      count: 2,
      opposite: 2,
      home: 1,
      story: 3,
      sentence: 2,
      name3: 2,
      countTo: 2,
      bigger: 2,
      after: 2,
      apples: 3,
      record: 3,
      first: 2,
      json: 2,
    })
  ) {
    case 'greet':
      return [
        r.pick(['Hello!', 'Hi.', 'Good morning.', 'Hey there!']),
        r.pick(['Hello! How can I help you today?', 'Hi! What can I do for you?']),
      ]
    case 'who':
      return [r.pick(['Who are you?', 'What are you?']), 'I am a small assistant made with MoE Workbench. I know a few simple things.']
    case 'thanks':
      return [r.pick(['Thank you!', 'Thanks.', 'Great, thanks!']), r.pick(['You are welcome!', 'Glad to help.'])]
    case 'color': {
      const [x, c] = r.pick(COLOR_FACTS)
      return [`What color is ${x}?`, `${cap(x)} is ${c}.`]
    }
    case 'sound': {
      const [a, s] = r.pick(SOUNDS)
      return [`What does ${article(a)} say?`, `${cap(article(a))} says ${s}.`]
    }
    case 'count': {
      const [x, n, u] = r.pick(COUNT_FACTS)
      return [`How many ${u} does ${x} have?`, `${cap(x)} has ${n} ${u}.`]
    }
    case 'opposite': {
      const [a, b] = r.pick(OPPOSITES)
      return r.chance(0.5)
        ? [`What is the opposite of ${a}?`, `The opposite of ${a} is ${b}.`]
        : [`What is the opposite of ${b}?`, `The opposite of ${b} is ${a}.`]
    }
    case 'home': {
      const [a, h] = r.pick(HOMES)
      return [`Where does ${article(a)} live?`, `${cap(article(a))} lives ${h}.`]
    }
    case 'story': {
      const animal = r.pick(ANIMALS)
      return r.chance(0.5) ? ['Tell me a short story.', story(r)] : [`Tell me a story about ${article(animal)}.`, `${story(r)}`]
    }
    case 'sentence': {
      const w = r.pick([...ANIMALS, ...OBJECTS])
      return [`Write a sentence about ${article(w)}.`, `The ${w} is ${r.pick(ADJECTIVES)} and ${r.pick(COLORS)}.`]
    }
    case 'name3': {
      const [cat, words] = r.pick(CATEGORIES)
      return [`Name three ${cat}.`, `Here are three ${cat}: ${andList(r.sample(words, 3))}.`]
    }
    case 'countTo': {
      const a = r.int(0, 60)
      const b = a + r.int(3, 8)
      return [`Count from ${a} to ${b}.`, Array.from({ length: b - a + 1 }, (_, i) => a + i).join(', ') + '.']
    }
    case 'bigger': {
      const [a, b] = [r.int(0, 99), r.int(0, 99)]
      if (a === b) return [`Which is bigger, ${a} or ${b}?`, `They are the same.`]
      return [`Which is bigger, ${a} or ${b}?`, `${Math.max(a, b)} is bigger than ${Math.min(a, b)}.`]
    }
    case 'after': {
      const a = r.int(0, 98)
      return r.chance(0.5)
        ? [`What comes after ${a}?`, `After ${a} comes ${a + 1}.`]
        : [`What comes before ${a + 1}?`, `Before ${a + 1} comes ${a}.`]
    }
    case 'apples': {
      const [n, m] = r.sample(NAMES, 2)
      const f = plural(r.pick(FRUITS))
      const a = r.int(1, 30)
      const b = r.int(1, 30)
      return [`${n} has ${a} ${f} and ${m} gives ${n} ${b} more. How many ${f} does ${n} have now?`, `${n} has ${a + b} ${f} now.`]
    }
    case 'record': {
      const fields = randomRecord(r)
      const m = new Map(fields)
      const who = (m.get('name') as string | undefined) ?? 'this person'
      const k = r.pick(fields.filter(([key]) => key !== 'name'))
      return [`Here is a record:\n${lines(fields)}\n\nWhat is the ${k[0]} of ${who}?`, `The ${k[0]} of ${who} is ${k[1]}.`]
    }
    case 'first': {
      const words = randomWordList(r, r.int(3, 6), LIST_WORDS)
      return r.chance(0.5)
        ? [`What is the first word in this list: ${words.join(' ')}?`, `The first word is ${words[0]}.`]
        : [`What is the last word in this list: ${words.join(' ')}?`, `The last word is ${words[words.length - 1]}.`]
    }
    case 'json': {
      const fields = randomRecord(r)
      return [`Describe this person:\n${recordJson(fields)}`, describe(fields)]
    }
  }
  throw new Error('unreachable')
}

function chat(r: Random): ChatRow {
  const messages: ChatMessage[] = []
  if (r.chance(0.2)) messages.push({ role: 'system', content: r.pick(SYSTEM_PROMPTS) })
  for (let i = r.chance(0.25) ? 2 : 1; i > 0; i--) {
    const [u, a] = exchange(r)
    messages.push({ role: 'user', content: u }, { role: 'assistant', content: a })
  }
  return { messages }
}

// --- the corpus -----------------------------------------------------------------------------------

/** One document of the given kind. */
export function makeDoc(kind: DocKind, r: Random, ex: Exclusions): Doc {
  switch (kind) {
    case 'story':
      return { kind, row: { text: story(r) } }
    case 'facts':
      return { kind, row: { text: Array.from({ length: r.int(2, 5) }, () => fact(r)).join(' ') } }
    case 'sums':
      return { kind, row: sums(r, ex) }
    case 'counting':
      return { kind, row: { text: counting(r) } }
    case 'lists':
      return { kind, row: { text: list(r) } }
    case 'backwards':
      return { kind, row: backwards(r, ex) }
    case 'records':
      return { kind, row: records(r, ex) }
    case 'chat':
      return { kind, row: chat(r) }
  }
}

/**
 * The copying skills alone, for the first pretraining phase, in turn: `forward: … backward:` →
 * the words reversed, and `Record: … As JSON:` → the record as JSON. One format each, so that
 * each gets thousands of examples in a few minutes. (Sums are left to the second phase: adding
 * is not copying, and takes longer than this budget to learn either way.)
 */
export function generateSkills(seed: number, count: number, ex: Exclusions): Doc[] {
  const r = new Random(seed)
  return Array.from({ length: count }, (_, i): Doc => {
    if (i % 2 === 0) {
      const words = fresh(() => randomWordList(r), reversalKey, ex.reversal)
      return {
        kind: 'backwards',
        row: { prompt: `forward: ${words.join(' ')}\nbackward:`, completion: ` ${words.slice().reverse().join(' ')}` },
      }
    }
    const fields = fresh(() => randomWordRecord(r), recordKey, ex.conversion)
    return { kind: 'records', row: { prompt: `Record:\n${lines(fields)}\nAs JSON:\n`, completion: recordJson(fields) } }
  })
}

/** `count` documents drawn from DOC_WEIGHTS, the same for the same seed. */
export function generateCorpus(
  seed: number,
  count: number,
  ex: Exclusions,
  weights: Partial<Record<DocKind, number>> = DOC_WEIGHTS,
): Doc[] {
  const r = new Random(seed)
  return Array.from({ length: count }, () => makeDoc(r.weighted(weights as Record<DocKind, number>), r, ex))
}
