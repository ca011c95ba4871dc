/**
 * The three sample tasks (addition, word-order reversal, record → JSON conversion): random
 * instances, their answers, and the keys that keep held-out instances out of every other file
 * (the pretraining corpus included), so a before/after comparison on them measures what
 * fine-tuning taught rather than what was memorised.
 */
import type { Random } from './random'
import { ANIMALS, CITIES, COLORS, FRUITS, JOBS, NAMES } from './words'

export const TASKS = ['arithmetic', 'reversal', 'conversion'] as const
export type Task = (typeof TASKS)[number]

// --- addition ---------------------------------------------------------------------------------

export interface Addition {
  a: number
  b: number
}

/** Two two-digit operands: every prompt has the same shape, which a small model learns fast. */
export function randomAddition(r: Random): Addition {
  return { a: r.int(10, 99), b: r.int(10, 99) }
}

/** The same key for a + b and b + a. */
export const additionKey = ({ a, b }: Addition): string => (a <= b ? `${a}+${b}` : `${b}+${a}`)

// --- reversal ---------------------------------------------------------------------------------

/** Words of the reversal task: one token each, with or without a leading space. */
export const REVERSAL_WORDS = [...COLORS, ...ANIMALS, ...FRUITS] as const
export const REVERSAL_LENGTH = 4

/** A list of distinct words: `n` of them (default the reversal task's 4), from `words`. */
export function randomWordList(r: Random, n = REVERSAL_LENGTH, words: readonly string[] = REVERSAL_WORDS): string[] {
  return r.sample(words, n)
}

export const reversalKey = (words: string[]): string => words.join(' ')

// --- records ----------------------------------------------------------------------------------

export type Field = [key: string, value: string | number]

const FIELD_VALUES: Record<string, (r: Random) => string | number> = {
  age: (r) => r.int(5, 90),
  city: (r) => r.pick(CITIES),
  color: (r) => r.pick(COLORS),
  pet: (r) => r.pick(ANIMALS),
  job: (r) => r.pick(JOBS),
  score: (r) => r.int(0, 100),
  fruit: (r) => r.pick(FRUITS),
}
const FIELD_KEYS = Object.keys(FIELD_VALUES)

/** A record of 2 to 4 fields, usually starting with a name (numbers included): for chats. */
export function randomRecord(r: Random): Field[] {
  const n = r.int(2, 4)
  const withName = r.chance(0.8)
  const keys = r.sample(FIELD_KEYS, withName ? n - 1 : n)
  const fields: Field[] = keys.map((k) => [k, FIELD_VALUES[k](r)])
  if (withName) fields.unshift(['name', r.pick(NAMES)])
  return fields
}

/** Fields whose values are single words (one token each). */
const WORD_KEYS = ['city', 'color', 'pet', 'job', 'fruit']

/** The conversion task's records: a name and two more word-valued fields, in random order. */
export function randomWordRecord(r: Random): Field[] {
  return [['name', r.pick(NAMES)], ...r.sample(WORD_KEYS, 2).map((k): Field => [k, FIELD_VALUES[k](r)])]
}

/** Canonical compact JSON, as JSON.stringify writes it. */
export const recordJson = (fields: Field[]): string => JSON.stringify(Object.fromEntries(fields))

/** The sample task's input notation: `name=Ada; age=36`. */
export const recordKv = (fields: Field[]): string => fields.map(([k, v]) => `${k}=${v}`).join('; ')

export const recordKey = (fields: Field[]): string => recordKv(fields)

/** Keys of held-out instances, per task; generators skip these. */
export interface Exclusions {
  arithmetic: Set<string>
  reversal: Set<string>
  conversion: Set<string>
}

export const noExclusions = (): Exclusions => ({ arithmetic: new Set(), reversal: new Set(), conversion: new Set() })

/** Draws until the instance is not excluded. */
export function fresh<T>(draw: () => T, key: (x: T) => string, exclude: Set<string>): T {
  for (;;) {
    const x = draw()
    if (!exclude.has(key(x))) return x
  }
}
