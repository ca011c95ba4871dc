/**
 * The fine-tuning demo: for each sample dataset, import it into a scratch workspace (10%
 * validation), fine-tune the default model on it with the workbench trainer, and compare the
 * greedy answers to the held-out prompts and the validation loss before and after.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import type { NormalizedRow } from '../../src/shared/dataset'
import { validateRunConfig, type RunConfig, type RunConfigInput } from '../../src/shared/runConfig'
import { encodeExample, importDataset, loadChatTemplate, loadTokenizer, readRows } from '../../src/main/data/index'
import { loadModel } from '../../src/main/engine/checkpoint'
import type { Example } from '../../src/main/train/batches'
import { train } from '../../src/main/train/trainer'
import { ask, type ChatModel } from './chat'
import { readBuildRecord, validationLoss } from './pretrain'
import { renderModelReadme, type DemoRecord, type DemoTask } from './readme'
import { SAMPLE_FILES, type HeldOutSet } from './samples'
import { TASKS, type Task } from './tasks'

/** The demo's fine-tuning run: what a user would pick for a quick full fine-tune. */
export const DEMO_RUN: RunConfigInput = {
  method: 'full',
  batchSize: 8,
  optimizer: { lr: 1e-3 },
  schedule: { type: 'cosine', warmupSteps: 10, minLrRatio: 0.1 },
  data: { maxLength: 256, maskPrompt: true },
  evalEvery: 50,
  checkpointEvery: 0,
  keepCheckpoints: 1,
}

export interface Split {
  train: Example[]
  validation: Example[]
  trainRows: number
  validationRows: number
}

/** Imports a sample file into `workspace` (10% validation) and tokenises both splits. */
export async function importAndEncode(workspace: string, file: string, modelDir: string, cfg: RunConfig): Promise<Split> {
  const manifest = await importDataset(workspace, file, { split: { validation: 0.1, seed: 0 } })
  const tokenizer = await loadTokenizer(modelDir)
  const template = await loadChatTemplate(modelDir)
  const encode = async (split: 'train' | 'validation'): Promise<Example[]> => {
    const out: Example[] = []
    for await (const row of readRows(workspace, manifest.id, split)) {
      const e = encodeExample(row as NormalizedRow, tokenizer, template, {
        maskPrompt: cfg.data.maskPrompt,
        maxLength: cfg.data.maxLength,
        truncation: cfg.data.truncation,
      })
      if (e) out.push(e)
    }
    return out
  }
  const trainEx = await encode('train')
  const valEx = await encode('validation')
  return { train: trainEx, validation: valEx, trainRows: trainEx.length, validationRows: valEx.length }
}

const exact = (answers: string[], set: { answer: string }[]): number => answers.filter((a, i) => a.trim() === set[i].answer).length

export interface DemoOptions {
  modelDir: string
  samplesDir: string
  workDir: string
  steps: number
  tasks?: Task[]
  log: (line: string) => void
}

export async function runDemo(o: DemoOptions): Promise<DemoRecord> {
  const heldOut = JSON.parse(readFileSync(join(o.samplesDir, 'heldout.json'), 'utf8')) as HeldOutSet
  const cfg = validateRunConfig({ ...DEMO_RUN, maxSteps: o.steps })
  const tokenizer = await loadTokenizer(o.modelDir)
  const template = await loadChatTemplate(o.modelDir)
  const record: DemoRecord = {
    created: new Date().toISOString(),
    backend: tf.getBackend(),
    modelSeed: readBuildRecord(o.modelDir).seed,
    tasks: [],
  }
  rmSync(o.workDir, { recursive: true, force: true })
  for (const task of o.tasks ?? TASKS) {
    const { file, layout } = SAMPLE_FILES[task]
    const data = await importAndEncode(join(o.workDir, `workspace-${task}`), join(o.samplesDir, file), o.modelDir, cfg)
    const prompts = heldOut[task]
    const base: ChatModel = { model: loadModel(o.modelDir), tokenizer, template }
    const valLossBefore = validationLoss(base, data.validation, cfg.batchSize, tokenizer.padId ?? 0)
    const before = prompts.map((h) => ask(base, h.prompt))
    base.model.dispose()
    o.log(
      `demo ${task}: ${data.trainRows} training rows, ${data.validationRows} validation rows; before: validation loss ${valLossBefore.toFixed(3)}, ${exact(before, prompts)}/${prompts.length} held-out right`,
    )

    const started = performance.now()
    const result = await train({
      runDir: join(o.workDir, `run-${task}`),
      baseModelDir: o.modelDir,
      config: cfg,
      train: data.train,
      validation: data.validation,
      padId: tokenizer.padId ?? 0,
      onEvent: (e) => {
        if (e.type === 'run.step' && e.metrics.step % 25 === 0)
          o.log(
            `demo ${task}: step ${e.metrics.step}/${e.metrics.totalSteps} loss ${e.metrics.ce.toFixed(3)}, ${Math.round(e.metrics.elapsedSec)} s`,
          )
        if (e.type === 'run.eval') o.log(`demo ${task}: step ${e.metrics.step} validation loss ${e.metrics.valLoss.toFixed(3)}`)
      },
    })
    const wallSeconds = (performance.now() - started) / 1000
    if (result.status !== 'completed' || !result.lastCheckpoint) throw new Error(`fine-tune on ${file} ${result.status}: ${result.message}`)
    const tuned: ChatModel = { model: loadModel(result.lastCheckpoint), tokenizer, template }
    const valLossAfter = validationLoss(tuned, data.validation, cfg.batchSize, tokenizer.padId ?? 0)
    const after = prompts.map((h) => ask(tuned, h.prompt))
    tuned.model.dispose()
    const t: DemoTask = {
      task,
      file,
      layout,
      method: cfg.method,
      steps: result.step,
      batchSize: cfg.batchSize,
      lr: cfg.optimizer.lr,
      trainRows: data.trainRows,
      validationRows: data.validationRows,
      wallSeconds: Math.round(wallSeconds),
      valLossBefore: Math.round(valLossBefore * 1000) / 1000,
      valLossAfter: Math.round(valLossAfter * 1000) / 1000,
      exactBefore: exact(before, prompts),
      exactAfter: exact(after, prompts),
      heldOut: prompts.length,
      examples: prompts.map((h, i) => ({ prompt: h.prompt, expected: h.answer, before: before[i], after: after[i] })),
    }
    o.log(
      `demo ${task}: ${t.steps} steps in ${t.wallSeconds} s; validation loss ${t.valLossBefore} → ${t.valLossAfter}; held-out right ${t.exactBefore} → ${t.exactAfter} of ${t.heldOut}`,
    )
    for (const e of t.examples.slice(0, 5))
      o.log(
        `  ${JSON.stringify(e.prompt)} expected ${JSON.stringify(e.expected)}: ${JSON.stringify(e.before)} → ${JSON.stringify(e.after)}`,
      )
    record.tasks.push(t)
  }
  return record
}

/** Writes finetune-demo.json (in full) and re-renders the README with the first five examples of each task. */
export function writeDemo(modelDir: string, demo: DemoRecord): void {
  writeFileSync(join(modelDir, 'finetune-demo.json'), JSON.stringify(demo, null, 2) + '\n')
  const short: DemoRecord = { ...demo, tasks: demo.tasks.map((t) => ({ ...t, examples: t.examples.slice(0, 5) })) }
  writeFileSync(join(modelDir, 'README.md'), renderModelReadme(readBuildRecord(modelDir), short))
}
