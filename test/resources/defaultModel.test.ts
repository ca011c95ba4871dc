/**
 * The bundled default model: a small BF16 Mixtral checkpoint that loads (every tensor checked by
 * name and shape), stays small, and chats: greedy answers through its chat template, stopping at
 * EOS, right on facts it was pretrained on, and in its own words on the held-out sample prompts
 * that fine-tuning then changes.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { countParams } from '../../src/shared/modelConfig'
import { initBackend } from '../../src/main/engine/backend'
import { inspectModel } from '../../src/main/engine/checkpoint'
import { generateGreedy } from '../../src/main/engine/generate'
import { ask, loadChatModel, promptIds, type ChatModel } from '../../scripts/default-model/chat'
import type { HeldOutSet } from '../../scripts/default-model/samples'

const RESOURCES = resolve(__dirname, '../../resources')
const MODEL = join(RESOURCES, 'default-model')
const held = JSON.parse(readFileSync(join(RESOURCES, 'samples', 'heldout.json'), 'utf8')) as HeldOutSet
const record = JSON.parse(readFileSync(join(MODEL, 'workbench.json'), 'utf8')) as {
  heldOutAnswers: Record<string, { prompt: string; answer: string }[]>
}

function folderBytes(dir: string): number {
  let n = 0
  for (const e of readdirSync(dir, { withFileTypes: true }))
    n += e.isDirectory() ? folderBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size
  return n
}

let m: ChatModel
beforeAll(async () => {
  await initBackend('wasm')
  m = await loadChatModel(MODEL)
})
afterAll(() => m?.model.dispose())

describe('default model', () => {
  it('is a small Mixtral stored in BF16, and resources/ stays under 10 MB', () => {
    const info = inspectModel(MODEL)
    expect(info.family).toBe('mixtral')
    expect(info.checkpointDtype).toBe('bfloat16')
    expect(info.numExperts).toBe(8)
    expect(info.topK).toBe(2)
    expect(info.sparseLayers).toEqual([0, 1, 2, 3])
    expect(countParams(m.model.config).total).toBeLessThan(5_000_000)
    expect(m.model.config.vocabSize).toBe(m.tokenizer.vocabSize)
    expect(folderBytes(RESOURCES)).toBeLessThan(10 * 1024 * 1024)
  })

  it('answers in the chat template and stops at EOS', () => {
    const r = generateGreedy(m.model, promptIds(m, 'What color is snow?'), { maxNewTokens: 24, stopTokens: [m.tokenizer.eosId!] })
    expect(r.stoppedBy).toBe('stop_token')
    // A small model: it has the form of its pretraining facts, not always the fact.
    expect(m.tokenizer.decode(r.newTokens, true)).toMatch(/^\w+ is \w+\.$/)
  })

  it('answers in the forms it was pretrained on', () => {
    expect(ask(m, 'What does a cow say?')).toMatch(/^A cow says \w+\.$/)
    expect(ask(m, 'What is the opposite of hot?')).toMatch(/^The opposite of \w+ is \w+\.$/)
  })

  it('answers held-out sample prompts as recorded at build time, not yet in the sample format', () => {
    for (const task of ['arithmetic', 'reversal', 'conversion'] as const) {
      const prompt = held[task][0].prompt
      const answer = ask(m, prompt)
      expect(answer.length).toBeGreaterThan(0)
      expect(answer).toBe(record.heldOutAnswers[task][0].answer)
      expect(answer).not.toBe(held[task][0].answer)
    }
  })
})
