/**
 * A short fine-tune of the default model on a sample dataset (imported through the dataset
 * library, trained by the workbench trainer on wasm) lowers the validation loss by a stated
 * margin and changes the model's answers to held-out prompts into the sample's format.
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { validateRunConfig } from '../../src/shared/runConfig'
import { initBackend } from '../../src/main/engine/backend'
import { loadModel } from '../../src/main/engine/checkpoint'
import { train } from '../../src/main/train/trainer'
import { loadChatTemplate, loadTokenizer } from '../../src/main/data/index'
import { ask, type ChatModel } from '../../scripts/default-model/chat'
import { DEMO_RUN, importAndEncode } from '../../scripts/default-model/demo'
import { validationLoss } from '../../scripts/default-model/pretrain'
import type { HeldOutSet } from '../../scripts/default-model/samples'

const RESOURCES = resolve(__dirname, '../../resources')
const MODEL = join(RESOURCES, 'default-model')
const held = JSON.parse(readFileSync(join(RESOURCES, 'samples', 'heldout.json'), 'utf8')) as HeldOutSet

/** Steps of the test's fine-tune (batch 8): about 20-30 s on wasm on a 2-core CPU. */
const STEPS = 60
/** The validation loss falls at least this much (measured: see the README of the default model). */
const MARGIN = 0.5

beforeAll(async () => {
  await initBackend('wasm')
})

describe('fine-tuning the default model on a sample', () => {
  it(`lowers the arithmetic validation loss by at least ${MARGIN * 100}% in ${STEPS} steps and answers with numbers`, async () => {
    const cfg = validateRunConfig({ ...DEMO_RUN, maxSteps: STEPS, evalEvery: 0 })
    const ws = mkdtempSync(join(tmpdir(), 'moe-finetune-'))
    const data = await importAndEncode(ws, join(RESOURCES, 'samples', 'arithmetic.jsonl'), MODEL, cfg)
    expect([data.trainRows, data.validationRows]).toEqual([360, 40])
    const tokenizer = await loadTokenizer(MODEL)
    const template = await loadChatTemplate(MODEL)
    const base: ChatModel = { model: loadModel(MODEL), tokenizer, template }
    const before = validationLoss(base, data.validation, cfg.batchSize, tokenizer.padId!)
    const prompts = held.arithmetic.slice(0, 5).map((h) => h.prompt)
    const answersBefore = prompts.map((p) => ask(base, p))
    base.model.dispose()

    const result = await train({
      runDir: join(ws, 'run'),
      baseModelDir: MODEL,
      config: cfg,
      train: data.train,
      validation: data.validation,
      padId: tokenizer.padId!,
    })
    expect(result.status).toBe('completed')
    const after = result.bestValLoss!
    expect(after).toBeLessThan(before * (1 - MARGIN))

    const tuned: ChatModel = { model: loadModel(result.lastCheckpoint!), tokenizer, template }
    const answersAfter = prompts.map((p) => ask(tuned, p))
    tuned.model.dispose()
    for (const a of answersBefore) expect(a).not.toMatch(/^\d+$/)
    for (const a of answersAfter) expect(a).toMatch(/^\d+$/)
  })
})
