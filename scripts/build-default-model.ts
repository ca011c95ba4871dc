/**
 * npm run build:default-model [-- options]
 *
 * Rebuilds resources/default-model/ (the bundled Mixtral, BF16, with its own tokenizer) and
 * resources/samples/ (the sample datasets and held-out prompts) from a seed, end to end: sample
 * datasets, generated corpus, byte-level BPE tokenizer, pretraining with the workbench trainer,
 * then the fine-tuning demo whose before/after answers go into the model's README.
 *
 *   --seed N          seed of everything (default 1)
 *   --steps N         pretraining steps (default 360)
 *   --batch N         rows of 128 tokens per pretraining step (default 16)
 *   --lr X            peak pretraining learning rate (default 2e-3)
 *   --skill-steps N   steps of the first phase (skills only, batch 32; default 400)
 *   --untied          a separate lm_head instead of tied input/output embeddings
 *   --backend NAME    TF.js backend (default wasm, what the README's timings are for)
 *   --work DIR        scratch folder (default: $TMPDIR/moe-workbench-default-model)
 *   --demo-steps N    fine-tuning steps per sample dataset in the demo (default 200)
 *   --skip-demo       stop after pretraining
 *   --demo-only       run only the demo on the existing resources/default-model
 *   --resources DIR   write there instead of the repository's resources/ (for trying changes)
 */
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { initBackend, isBackendName } from '../src/main/engine/backend'
import { runDemo, writeDemo } from './default-model/demo'
import { pretrain } from './default-model/pretrain'

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    steps: { type: 'string', default: '360' },
    batch: { type: 'string', default: '16' },
    lr: { type: 'string', default: '2e-3' },
    untied: { type: 'boolean', default: false },
    'skill-steps': { type: 'string', default: '400' },
    backend: { type: 'string', default: 'wasm' },
    work: { type: 'string', default: join(tmpdir(), 'moe-workbench-default-model') },
    'demo-steps': { type: 'string', default: '200' },
    'skip-demo': { type: 'boolean', default: false },
    'demo-only': { type: 'boolean', default: false },
    resources: { type: 'string', default: resolve(import.meta.dirname, '..', 'resources') },
  },
})

const int = (name: string, v: string): number => {
  const n = Number(v)
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name}: expected a whole number, got ${JSON.stringify(v)}`)
    process.exit(2)
  }
  return n
}

const resources = resolve(values.resources)
const started = performance.now()
const log = (line: string): void => {
  const s = Math.round((performance.now() - started) / 1000)
  console.log(`[${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}] ${line}`)
}

if (!isBackendName(values.backend)) {
  console.error(`--backend: unknown backend ${JSON.stringify(values.backend)}`)
  process.exit(2)
}
const backend = await initBackend(values.backend, log)
log(`backend ${backend.name}`)

if (!values['demo-only']) {
  await pretrain({
    resources,
    workDir: join(values.work, 'pretrain'),
    seed: int('seed', values.seed),
    steps: int('steps', values.steps),
    batchSize: int('batch', values.batch),
    lr: Number(values.lr),
    tieEmbeddings: !values.untied,
    skillSteps: int('skill-steps', values['skill-steps']),
    skillBatchSize: 32,
    seqLength: 128,
    vocabSize: 1536,
    log,
  })
}
if (!values['skip-demo']) {
  const modelDir = join(resources, 'default-model')
  const demo = await runDemo({
    modelDir,
    samplesDir: join(resources, 'samples'),
    workDir: join(values.work, 'demo'),
    steps: int('demo-steps', values['demo-steps']),
    log,
  })
  writeDemo(modelDir, demo)
  log(`demo: wrote ${join(modelDir, 'finetune-demo.json')} and README.md`)
}
log('done')
