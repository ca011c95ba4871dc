/**
 * Builds the default model end to end: sample datasets (which fix the held-out prompts), the
 * corpus, the tokenizer, and pretraining with the workbench's own trainer, then writes the
 * checkpoint folder in BF16 with its tokenizer, README.md and workbench.json.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import type { ChatRow, CompletionRow, TextRow } from '../../src/shared/dataset'
import { countParams, type MoeConfig } from '../../src/shared/modelConfig'
import { validateRunConfig, type RunConfig } from '../../src/shared/runConfig'
import { createChatTemplate, encodeExample, loadChatTemplate, loadTokenizer } from '../../src/main/data/index'
import { DEFAULT_CHAT_TEMPLATE } from '../../src/main/data/template'
import { loadModel, saveModel } from '../../src/main/engine/checkpoint'
import { MoeModel } from '../../src/main/engine/model'
import { objective as objectiveFn } from '../../src/main/engine/objective'
import { packRows, type Example } from '../../src/main/train/batches'
import { train } from '../../src/main/train/trainer'
import { ask, type ChatModel } from './chat'
import { DOC_WEIGHTS, generateCorpus, generateSkills, type Doc, type DocKind } from './corpus'
import { defaultModelConfig, initialWeights } from './model'
import { renderModelReadme } from './readme'
import { writeSamples, type HeldOutSet } from './samples'
import { TASKS } from './tasks'
import { BOS, EOS, PAD, specialTokensMap, tokenizerConfig, tokenizerJson, trainBpe } from './tokenizer'

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'] as const

export interface PretrainOptions {
  /** The repository's resources/ folder. */
  resources: string
  /** Scratch folder for the run (checkpoints, logs). */
  workDir: string
  seed: number
  steps: number
  batchSize: number
  seqLength: number
  vocabSize: number
  /** Peak learning rate. */
  lr: number
  /** Share the embedding matrix with the output layer. */
  tieEmbeddings: boolean
  /** Steps of the first phase (skills only, unpacked); 0 skips it. */
  skillSteps: number
  skillBatchSize: number
  log: (line: string) => void
}

/** The pretraining run's config (the trainer's own schema). */
export function pretrainRunConfig(o: Pick<PretrainOptions, 'seed' | 'steps' | 'batchSize' | 'seqLength' | 'lr'>): RunConfig {
  return validateRunConfig({
    method: 'full',
    data: { maxLength: o.seqLength, packing: true, maskPrompt: false },
    optimizer: { lr: o.lr, betas: [0.9, 0.95], weightDecay: 0.05 },
    schedule: { type: 'cosine', warmupSteps: 40, minLrRatio: 0.1 },
    batchSize: o.batchSize,
    gradClip: 1,
    seed: o.seed,
    maxSteps: o.steps,
    evalEvery: 50,
    checkpointEvery: 0,
    keepCheckpoints: 1,
  })
}

/** The first phase's run config: the skill documents alone, one per row from position 0. */
export function skillRunConfig(o: Pick<PretrainOptions, 'seed' | 'skillSteps' | 'skillBatchSize'>): RunConfig {
  return validateRunConfig({
    method: 'full',
    data: { maxLength: 128, packing: false, maskPrompt: true },
    optimizer: { lr: 3e-3, betas: [0.9, 0.95], weightDecay: 0.05 },
    schedule: { type: 'constant', warmupSteps: 30 },
    batchSize: o.skillBatchSize,
    gradClip: 1,
    seed: o.seed,
    maxSteps: o.skillSteps,
    evalEvery: 0,
    checkpointEvery: 0,
    keepCheckpoints: 1,
  })
}

/** Provenance and results, written as workbench.json. */
export interface BuildRecord {
  name: string
  description: string
  builtWith: string
  seed: number
  created: string
  backend: string
  tfjsVersion: string
  config: MoeConfig
  params: { total: number; active: number; experts: number }
  tokenizer: { type: string; vocabSize: number; merges: number; specialTokens: string[] }
  corpus: {
    source: string
    licence: string
    documents: number
    tokens: number
    byKind: Record<string, { documents: number; tokens: number; trained: number }>
    /** Documents the tokenizer was trained on (the training documents are the first of them). */
    tokenizerDocuments: number
    /** Training tokens that carry loss. */
    trainedTokens: number
    validationDocuments: number
    validationTokens: number
  }
  /** Phase 1: the copying skills alone (lists backwards, records as JSON), unpacked. */
  skills: { runConfig: RunConfig; documents: number; steps: number; wallSeconds: number; finalLoss: number } | null
  pretraining: {
    runConfig: RunConfig
    steps: number
    tokensSeen: number
    wallSeconds: number
    tokensPerSecond: number
    finalTrainLoss: number
    finalValLoss: number | null
    valLossCurve: { step: number; valLoss: number }[]
    storedDtype: 'bfloat16'
    /** Validation loss of the BF16 weights as stored (after rounding from float32). */
    storedValLoss: number | null
  }
  /** The default model's greedy answers to the held-out prompts (before any fine-tuning). */
  heldOutAnswers: Record<string, { prompt: string; answer: string; expected: string }[]>
}

const render = createChatTemplate(DEFAULT_CHAT_TEMPLATE, { bosToken: BOS, eosToken: EOS })
/** A document as the tokenizer trainer sees it (chat template applied, EOS at the end). */
export function docText(d: Doc): string {
  if ('messages' in d.row) return render.render((d.row as ChatRow).messages, false)
  if ('completion' in d.row) return (d.row as CompletionRow).prompt + (d.row as CompletionRow).completion + EOS
  return (d.row as TextRow).text + EOS
}

export async function pretrain(o: PretrainOptions): Promise<BuildRecord> {
  const t0 = performance.now()
  const log = o.log
  rmSync(o.workDir, { recursive: true, force: true })
  mkdirSync(o.workDir, { recursive: true })

  // 1. Samples first: they fix the held-out prompts the corpus must not contain.
  const samplesDir = join(o.resources, 'samples')
  const { heldOut, exclude } = writeSamples(samplesDir, o.seed)
  log(`samples: wrote ${samplesDir} (held-out prompts: ${TASKS.map((t) => `${heldOut[t].length} ${t}`).join(', ')})`)

  // 2. The corpus: generously many documents; the tokenizer learns from all of them, training
  // uses the first ones that fill `steps` batches of packed rows once.
  const target = o.steps * o.batchSize * o.seqLength
  const generated = generateCorpus(o.seed, Math.ceil(target / 12), exclude)
  const valDocs = generateCorpus(o.seed + 1_000_003, 600, exclude)

  // 3. The tokenizer.
  const tokDir = join(o.workDir, 'tokenizer')
  mkdirSync(tokDir, { recursive: true })
  const bpe = trainBpe(generated.map(docText), {
    vocabSize: o.vocabSize,
    onProgress: (n) => n % 500 === 0 && log(`tokenizer: ${n} merges`),
  })
  const vocabSize = Object.keys(bpe.vocab).length
  writeFileSync(join(tokDir, 'tokenizer.json'), JSON.stringify(tokenizerJson(bpe)) + '\n')
  writeFileSync(join(tokDir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig(512), null, 2) + '\n')
  writeFileSync(join(tokDir, 'special_tokens_map.json'), JSON.stringify(specialTokensMap(), null, 2) + '\n')
  const tokenizer = await loadTokenizer(tokDir)
  const template = await loadChatTemplate(tokDir)
  log(`tokenizer: byte-level BPE from ${generated.length} documents, ${bpe.merges.length} merges, vocabulary ${vocabSize}`)

  // 4. Tokenise: loss on every token of plain text, on the completion of prompt/completion rows
  // and on the assistant turns of chats.
  const byKind: Record<string, { documents: number; tokens: number; trained: number }> = {}
  const trainExamples: Example[] = []
  let corpusTokens = 0
  const docs: Doc[] = []
  for (const d of generated) {
    if (corpusTokens >= target) break
    const e = encodeExample(d.row, tokenizer, template, { maskPrompt: true })!
    const k = (byKind[d.kind] ??= { documents: 0, tokens: 0, trained: 0 })
    k.documents++
    k.tokens += e.input_ids.length
    k.trained += e.labels.filter((l) => l !== -100).length
    corpusTokens += e.input_ids.length
    trainExamples.push(e)
    docs.push(d)
  }
  if (corpusTokens < target) log(`corpus: only ${corpusTokens} of ${target} tokens generated; the last steps repeat documents`)
  const valExamples = valDocs.map((d) => encodeExample(d.row, tokenizer, template, { maskPrompt: true })!)
  const valTokens = valExamples.reduce((a, e) => a + e.input_ids.length, 0)
  const trainedTokens = Object.values(byKind).reduce((a, k) => a + k.trained, 0)
  log(
    `corpus: ${docs.length} training documents, ${corpusTokens} tokens (${trainedTokens} with loss); ${valDocs.length} validation documents, ${valTokens} tokens`,
  )
  log(
    `corpus: ${Object.entries(byKind)
      .map(([k, v]) => `${k} ${v.documents} docs/${v.tokens} tokens`)
      .join(', ')}`,
  )

  // 5. The initial model.
  const ids = { bos: tokenizer.bosId!, eos: tokenizer.eosId!, pad: tokenizer.padId! }
  const config = defaultModelConfig(vocabSize, ids, o.tieEmbeddings)
  const params = countParams(config)
  const baseDir = join(o.workDir, 'init')
  const init = new MoeModel(config, initialWeights(config, o.seed))
  saveModel(init, baseDir)
  init.dispose()
  for (const f of TOKENIZER_FILES) copyFileSync(join(tokDir, f), join(baseDir, f))
  log(
    `model: mixtral, ${config.numLayers} layers, ${config.numExperts} experts top-${config.topK}, hidden ${config.hiddenSize}, ${params.total} parameters (${params.active} active)`,
  )

  // 6. Phase 1: the copying skills alone (lists backwards, records as JSON). Each document in its
  // own row from position 0, loss on the completion only: a small model learns to copy from its
  // prompt in a few hundred steps this way; packed in among everything else, it does not within
  // this budget (it learns the templates and ignores the prompt).
  let phase2Base = baseDir
  let skills: BuildRecord['skills'] = null
  if (o.skillSteps > 0) {
    const skillCfg = skillRunConfig(o)
    const skillDocs = generateSkills(o.seed + 2_000_003, o.skillSteps * o.skillBatchSize, exclude)
    const skillExamples = skillDocs.map((d) => encodeExample(d.row, tokenizer, template, { maskPrompt: true })!)
    const recentSkill: number[] = []
    const t1 = performance.now()
    const r1 = await train({
      runDir: join(o.workDir, 'skills'),
      baseModelDir: baseDir,
      config: skillCfg,
      train: skillExamples,
      validation: [],
      padId: ids.pad,
      onEvent: (e) => {
        if (e.type !== 'run.step') return
        recentSkill.push(e.metrics.ce)
        if (recentSkill.length > 20) recentSkill.shift()
        if (e.metrics.step % 25 === 0)
          log(
            `skills: step ${e.metrics.step}/${e.metrics.totalSteps} loss ${e.metrics.ce.toFixed(3)}, ${Math.round(e.metrics.elapsedSec)} s elapsed`,
          )
      },
    })
    if (r1.status !== 'completed' || !r1.lastCheckpoint) throw new Error(`skills phase ${r1.status}: ${r1.message}`)
    phase2Base = r1.lastCheckpoint
    skills = {
      runConfig: skillCfg,
      documents: skillDocs.length,
      steps: r1.step,
      wallSeconds: Math.round((performance.now() - t1) / 1000),
      finalLoss: round(recentSkill.reduce((a, b) => a + b, 0) / recentSkill.length),
    }
    log(`skills: ${r1.message} in ${skills.wallSeconds} s, loss ${skills.finalLoss}`)
  }

  // 7. Phase 2: everything, packed.
  const runConfig = pretrainRunConfig(o)
  const runDir = join(o.workDir, 'run')
  const valRows = packRows(valExamples, o.seqLength, ids.pad)
  const valCurve: { step: number; valLoss: number }[] = []
  const recent: number[] = []
  let tokensSeen = 0
  const started = performance.now()
  const result = await train({
    runDir,
    baseModelDir: phase2Base,
    config: runConfig,
    train: trainExamples,
    validation: valRows,
    padId: ids.pad,
    onEvent: (e) => {
      if (e.type === 'run.step') {
        const m = e.metrics
        tokensSeen += m.tokens
        recent.push(m.ce)
        if (recent.length > 20) recent.shift()
        if (m.step % 10 === 0 || m.step === 1)
          log(
            `pretrain: step ${m.step}/${m.totalSteps} loss ${m.ce.toFixed(3)} aux ${m.aux.toFixed(3)} lr ${m.lr.toExponential(2)} ${Math.round(m.tokensPerSec)} tok/s, ${Math.round(m.elapsedSec)} s elapsed, ETA ${Math.round(m.etaSec)} s`,
          )
      } else if (e.type === 'run.eval') {
        valCurve.push({ step: e.metrics.step, valLoss: e.metrics.valLoss })
        log(`pretrain: step ${e.metrics.step} validation loss ${e.metrics.valLoss.toFixed(3)}`)
      } else if (e.type === 'run.alert') log(`pretrain: alert ${JSON.stringify(e)}`)
    },
  })
  const wallSeconds = (performance.now() - started) / 1000
  if (result.status !== 'completed' || !result.lastCheckpoint) throw new Error(`pretraining ${result.status}: ${result.message}`)
  log(`pretrain: ${result.message} in ${wallSeconds.toFixed(0)} s`)

  // 8. The BF16 checkpoint folder, written beside the old one and swapped in.
  const out = join(o.resources, 'default-model')
  const tmp = join(o.resources, '.default-model.tmp')
  rmSync(tmp, { recursive: true, force: true })
  const trained = loadModel(result.lastCheckpoint)
  saveModel(trained, tmp, { dtype: 'bfloat16' })
  trained.dispose()
  for (const f of TOKENIZER_FILES) copyFileSync(join(tokDir, f), join(tmp, f))

  const stored: ChatModel = { model: loadModel(tmp), tokenizer, template }
  const storedValLoss = validationLoss(stored, valRows, runConfig.batchSize, ids.pad)
  const heldOutAnswers = answers(stored, heldOut)
  stored.model.dispose()
  log(`stored: BF16 validation loss ${storedValLoss.toFixed(3)}`)

  const record: BuildRecord = {
    name: 'MoE Workbench default model',
    description: 'A small Mixtral pretrained by the workbench on generated text, for fine-tuning demos.',
    builtWith: 'npm run build:default-model (scripts/build-default-model.ts)',
    seed: o.seed,
    created: new Date().toISOString(),
    backend: tf.getBackend(),
    tfjsVersion: tf.version.tfjs,
    config,
    params,
    tokenizer: {
      type: 'byte-level BPE',
      vocabSize,
      merges: bpe.merges.length,
      specialTokens: [PAD, BOS, EOS, '<|system|>', '<|user|>', '<|assistant|>'],
    },
    corpus: {
      source:
        'generated by scripts/default-model/corpus.ts (weights: ' +
        Object.entries(DOC_WEIGHTS)
          .map(([k, w]) => `${k} ${w}`)
          .join(', ') +
        ')',
      licence: 'part of MoE Workbench (MIT); no third-party text',
      documents: docs.length,
      tokens: corpusTokens,
      byKind,
      tokenizerDocuments: generated.length,
      trainedTokens,
      validationDocuments: valDocs.length,
      validationTokens: valTokens,
    },
    skills,
    pretraining: {
      runConfig,
      steps: result.step,
      tokensSeen,
      wallSeconds: Math.round(wallSeconds),
      tokensPerSecond: Math.round(tokensSeen / wallSeconds),
      finalTrainLoss: round(recent.reduce((a, b) => a + b, 0) / recent.length),
      finalValLoss: valCurve.length ? round(valCurve[valCurve.length - 1].valLoss) : null,
      valLossCurve: valCurve.map((v) => ({ step: v.step, valLoss: round(v.valLoss) })),
      storedDtype: 'bfloat16',
      storedValLoss: round(storedValLoss),
    },
    heldOutAnswers,
  }
  writeFileSync(join(tmp, 'workbench.json'), JSON.stringify(record, null, 2) + '\n')
  // Keep the fine-tuning demo's results of an earlier build only if they were made from these weights.
  const demo = join(out, 'finetune-demo.json')
  if (existsSync(demo)) rmSync(demo)
  writeFileSync(join(tmp, 'README.md'), renderModelReadme(record, null))
  rmSync(out, { recursive: true, force: true })
  renameSync(tmp, out)
  log(`wrote ${out} in ${((performance.now() - t0) / 1000).toFixed(0)} s total`)
  return record
}

const round = (x: number): number => Math.round(x * 1000) / 1000

/** Mean cross-entropy per target token over packed rows (as the trainer's evaluation computes it). */
export function validationLoss(m: ChatModel, rows: Example[], batchSize: number, padId: number): number {
  let ce = 0
  let targets = 0
  for (let i = 0; i < rows.length; i += batchSize) {
    const batch = rows.slice(i, i + batchSize)
    const T = Math.max(...batch.map((e) => e.input_ids.length))
    const pad = (xs: number[], v: number): number[] => [...xs, ...new Array<number>(T - xs.length).fill(v)]
    tf.tidy(() => {
      const o = objectiveFn(m.model, { inputIds: batch.map((e) => pad(e.input_ids, padId)), labels: batch.map((e) => pad(e.labels, -100)) })
      ce += o.ce.dataSync()[0] * o.targets
      targets += o.targets
    })
  }
  return targets ? ce / targets : 0
}

/** Greedy answers of a model to every held-out prompt. */
export function answers(m: ChatModel, set: HeldOutSet): BuildRecord['heldOutAnswers'] {
  const out: BuildRecord['heldOutAnswers'] = {}
  for (const task of TASKS) out[task] = set[task].map((h) => ({ prompt: h.prompt, answer: ask(m, h.prompt), expected: h.answer }))
  return out
}

export function readBuildRecord(modelDir: string): BuildRecord {
  return JSON.parse(readFileSync(join(modelDir, 'workbench.json'), 'utf8')) as BuildRecord
}

export type { DocKind }
