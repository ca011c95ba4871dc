/**
 * The sample datasets shipped in resources/samples/, one task and one file layout each:
 *
 * - arithmetic.jsonl   Alpaca JSONL   "What is 23 + 48?"                        → "71"
 * - reversal.json      ShareGPT JSON  "Reverse the words: red fox plum cow"     → "cow plum fox red"
 * - conversion.csv     Alpaca CSV     "Convert the record to JSON." + name=Ada; city=Oslo; pet=cat → {"name":"Ada","city":"Oslo","pet":"cat"}
 *
 * and heldout.json: prompts of each task that appear in no dataset and not in the pretraining
 * corpus either, with their answers, for before/after comparisons.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Random } from './random'
import {
  additionKey,
  type Exclusions,
  type Field,
  fresh,
  noExclusions,
  randomAddition,
  randomWordRecord,
  randomWordList,
  recordJson,
  recordKey,
  recordKv,
  reversalKey,
  TASKS,
  type Task,
} from './tasks'

export interface HeldOut {
  /** The user message, as typed in the chat. */
  prompt: string
  /** The exact answer. */
  answer: string
}

export type HeldOutSet = Record<Task, HeldOut[]>

export const SAMPLE_FILES: Record<Task, { file: string; name: string; layout: string; description: string }> = {
  arithmetic: {
    file: 'arithmetic.jsonl',
    name: 'Sample: arithmetic',
    layout: 'alpaca',
    description: 'Adding two two-digit numbers, answered with the sum only.',
  },
  reversal: {
    file: 'reversal.json',
    name: 'Sample: word reversal',
    layout: 'sharegpt',
    description: 'Four words, repeated in reverse order.',
  },
  conversion: {
    file: 'conversion.csv',
    name: 'Sample: record to JSON',
    layout: 'alpaca',
    description: 'name=…; key=value records of three fields, rewritten as compact JSON.',
  },
}

export const ROWS: Record<Task, number> = { arithmetic: 400, reversal: 300, conversion: 300 }
export const HELD_OUT_PER_TASK = 20

export const additionPrompt = (a: number, b: number): string => `What is ${a} + ${b}?`
export const reversalPrompt = (words: string[]): string => `Reverse the words: ${words.join(' ')}`
export const CONVERSION_INSTRUCTION = 'Convert the record to JSON.'
/** How the Alpaca layout joins instruction and input into the user message. */
export const conversionPrompt = (fields: Field[]): string => `${CONVERSION_INSTRUCTION}\n\n${recordKv(fields)}`

/** The held-out prompts (drawn first, from their own seed) and their exclusion keys. */
export function heldOut(seed: number): { set: HeldOutSet; exclude: Exclusions } {
  const r = new Random(seed ^ 0x5eed)
  const exclude = noExclusions()
  const set: HeldOutSet = { arithmetic: [], reversal: [], conversion: [] }
  for (let i = 0; i < HELD_OUT_PER_TASK; i++) {
    const add = fresh(() => randomAddition(r), additionKey, exclude.arithmetic)
    exclude.arithmetic.add(additionKey(add))
    set.arithmetic.push({ prompt: additionPrompt(add.a, add.b), answer: String(add.a + add.b) })
    const words = fresh(() => randomWordList(r), reversalKey, exclude.reversal)
    exclude.reversal.add(reversalKey(words))
    set.reversal.push({ prompt: reversalPrompt(words), answer: words.slice().reverse().join(' ') })
    const rec = fresh(() => randomWordRecord(r), recordKey, exclude.conversion)
    exclude.conversion.add(recordKey(rec))
    set.conversion.push({ prompt: conversionPrompt(rec), answer: recordJson(rec) })
  }
  return { set, exclude }
}

const csvCell = (s: string): string => `"${s.replace(/"/g, '""')}"`

/** The three files' contents (deterministic for a seed). */
export function sampleFiles(seed: number, exclude: Exclusions): Record<Task, string> {
  const r = new Random(seed ^ 0xda7a)
  // Arithmetic: Alpaca JSONL; a fifth of the rows put the sum in the input field.
  const seen = new Set<string>()
  const arithmetic: string[] = []
  while (arithmetic.length < ROWS.arithmetic) {
    const add = fresh(() => randomAddition(r), additionKey, exclude.arithmetic)
    const key = `${add.a}+${add.b}`
    if (seen.has(key)) continue
    seen.add(key)
    const row = r.chance(0.2)
      ? { instruction: 'Add the two numbers.', input: `${add.a} + ${add.b}`, output: String(add.a + add.b) }
      : { instruction: additionPrompt(add.a, add.b), input: '', output: String(add.a + add.b) }
    arithmetic.push(JSON.stringify(row))
  }
  // Reversal: ShareGPT JSON; some conversations have two turns, some a system prompt.
  const reversal: unknown[] = []
  for (let i = 0; i < ROWS.reversal; i++) {
    const conversations: { from: string; value: string }[] = []
    if (r.chance(0.1)) conversations.push({ from: 'system', value: 'You are a helpful assistant.' })
    for (let t = r.chance(0.2) ? 2 : 1; t > 0; t--) {
      const words = fresh(() => randomWordList(r), reversalKey, exclude.reversal)
      conversations.push({ from: 'human', value: reversalPrompt(words) }, { from: 'gpt', value: words.slice().reverse().join(' ') })
    }
    reversal.push({ conversations })
  }
  // Conversion: CSV with Alpaca columns; every cell quoted (the JSON holds quotes and commas).
  const conversion = ['instruction,input,output']
  for (let i = 0; i < ROWS.conversion; i++) {
    const rec = fresh(() => randomWordRecord(r), recordKey, exclude.conversion)
    conversion.push([CONVERSION_INSTRUCTION, recordKv(rec), recordJson(rec)].map(csvCell).join(','))
  }
  return {
    arithmetic: arithmetic.join('\n') + '\n',
    reversal: JSON.stringify(reversal, null, 1) + '\n',
    conversion: conversion.join('\r\n') + '\r\n',
  }
}

/** Writes the datasets, heldout.json and README.md into `dir`. */
export function writeSamples(dir: string, seed: number): { heldOut: HeldOutSet; exclude: Exclusions } {
  const { set, exclude } = heldOut(seed)
  const files = sampleFiles(seed, exclude)
  mkdirSync(dir, { recursive: true })
  for (const task of Object.keys(files) as Task[]) writeFileSync(join(dir, SAMPLE_FILES[task].file), files[task])
  writeFileSync(join(dir, 'heldout.json'), JSON.stringify(set, null, 2) + '\n')
  writeFileSync(join(dir, 'index.json'), JSON.stringify(samplesIndex(), null, 2) + '\n')
  writeFileSync(join(dir, 'README.md'), samplesReadme(seed))
  return { heldOut: set, exclude }
}

/**
 * index.json: what the app imports on first start (src/main/service/firstRun.ts reads it), with
 * a description per dataset for the guided path and the prompt to try in the chat afterwards.
 */
export function samplesIndex(): SamplesIndex {
  return {
    version: 1,
    model: '../default-model',
    heldOut: 'heldout.json',
    datasets: TASKS.map((task) => ({
      task,
      file: SAMPLE_FILES[task].file,
      name: SAMPLE_FILES[task].name,
      layout: SAMPLE_FILES[task].layout,
      description: SAMPLE_FILES[task].description,
      rows: ROWS[task],
    })),
  }
}

export interface SamplesIndex {
  version: 1
  model: string
  heldOut: string
  datasets: { task: Task; file: string; name: string; layout: string; description: string; rows: number }[]
}

function samplesReadme(seed: number): string {
  const rows = (Object.keys(SAMPLE_FILES) as Task[])
    .map((t) => `| \`${SAMPLE_FILES[t].file}\` | ${SAMPLE_FILES[t].layout} | ${ROWS[t]} | ${SAMPLE_FILES[t].description} |`)
    .join('\n')
  return `# Sample datasets

Small fine-tuning datasets for the bundled default model (\`../default-model\`), one task per file
and one file layout per task, imported into the workspace on first start (10% held back for
validation). Each is built so that a few minutes of fine-tuning on a 2-core CPU visibly changes
the default model's answers, and the three tasks use different tokens (digits, words, JSON
punctuation), so the expert charts can show experts specialising.

| file | layout | rows | task |
| --- | --- | --- | --- |
${rows}

\`heldout.json\` holds ${HELD_OUT_PER_TASK} prompts per task with their answers. They are in none of the
datasets and not in the default model's pretraining corpus, so comparing the model's answers to
them before and after fine-tuning shows what the fine-tune taught.

Source and licence: generated by \`scripts/default-model/samples.ts\` (seed ${seed}) with
\`npm run build:default-model\`; no third-party text. They are part of MoE Workbench and under its
licence (MIT).
`
}
