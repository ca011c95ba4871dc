/**
 * The engine process's long-running work: a queue of fine-tuning runs, streamed chat replies, a
 * small cache of loaded models, new models, exports and expert analyses. Progress leaves as
 * events; requests return as soon as the work is started.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs'
import { basename, join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import type { ChatEvent, ChatSendArgs, ChatStarted, ExpertAnalysis, FitPlan, OffloadOptions } from '../../shared/chat'
import type { ChatMessage, NormalizedRow } from '../../shared/dataset'
import { paramSpecs, validateMoeConfig, type MoeConfigInput } from '../../shared/modelConfig'
import type { RunConfig } from '../../shared/runConfig'
import type { RunEvent, RunRecord } from '../../shared/runs'
import { ApiError, type ModelInfo, type WorkbenchEvent } from '../../shared/api'
import { encodeExample, type EncodedExample } from '../data/encode'
import { loadChatTemplate, type ChatTemplate } from '../data/template'
import { loadTokenizer, type ModelTokenizer } from '../data/tokenizer'
import { readRows } from '../data/workspace'
import { writeJsonAtomic } from '../util/atomic'
import { inspectModel, loadModelAsync, readModelConfig, saveModel } from './checkpoint'
import { cancelledError, pacer, type TaskHooks } from './tasks'
import { generateAsync } from './generate'
import { MoeModel } from './model'
import { planFit } from './offload'
import { Rng } from './ops'
import { TOKENIZER_FILES } from '../train/export'
import { readRunRecord, train, type TrainEvent } from '../train/trainer'

type Emit = (event: WorkbenchEvent) => void

// ---------------------------------------------------------------------------------------------
// Models

/** The fit planner for a model folder (reads config.json only). */
export function planModel(dir: string, budgetBytes: number, contextTokens?: number): FitPlan {
  return planFit(readModelConfig(dir), budgetBytes, { contextTokens })
}

/**
 * A new model with HF-style initial weights (normal(0, 0.02) matrices, unit norms), saved as a
 * checkpoint folder, with the tokenizer files of `tokenizerFrom` (vocabulary sized to match).
 */
export async function createModel(
  dir: string,
  input: Partial<MoeConfigInput> & { family: MoeConfigInput['family'] },
  seed: number,
  tokenizerFrom?: string,
): Promise<ModelInfo> {
  if (existsSync(join(dir, 'config.json'))) throw new Error(`${dir} already holds a model`)
  let vocabSize = input.vocabSize
  let special: { bos?: number | null; eos?: number | null; pad?: number | null } = {}
  if (tokenizerFrom) {
    const tok = await loadTokenizer(tokenizerFrom)
    if (vocabSize !== undefined && vocabSize < tok.vocabSize)
      throw new Error(`vocabSize ${vocabSize} is smaller than the tokenizer's ${tok.vocabSize} tokens`)
    vocabSize ??= tok.vocabSize
    special = { bos: tok.bosId, eos: tok.eosId, pad: tok.padId }
  }
  const preset: MoeConfigInput = {
    vocabSize: vocabSize ?? 1024,
    hiddenSize: 128,
    numLayers: 4,
    numHeads: 4,
    numKvHeads: 2,
    headDim: Math.floor((input.hiddenSize ?? 128) / (input.numHeads ?? 4)),
    intermediateSize: 256,
    expertIntermediateSize: 256,
    numExperts: 8,
    topK: 2,
    normTopkProb: input.family === 'mixtral',
    qkNorm: input.family === 'olmoe',
    sharedExpertIntermediateSize: input.family === 'qwen2_moe' ? 256 : 0,
    maxPositionEmbeddings: 1024,
    bosTokenId: special.bos ?? null,
    eosTokenId: special.eos ?? null,
    padTokenId: special.pad ?? null,
    ...input,
  }
  const config = validateMoeConfig(preset)
  const rng = new Rng(seed)
  const weights = new Map<string, Float32Array>()
  for (const s of paramSpecs(config)) {
    const n = s.shape.reduce((a, b) => a * b, 1)
    weights.set(
      s.name,
      s.kind === 'norm'
        ? new Float32Array(n).fill(1)
        : s.kind === 'attn_bias'
          ? new Float32Array(n)
          : rng.normalArray(n).map((v) => v * 0.02),
    )
  }
  const model = new MoeModel(config, weights)
  const tmp = `${dir}.tmp-${process.pid}`
  try {
    rmSync(tmp, { recursive: true, force: true })
    saveModel(model, tmp)
    if (tokenizerFrom)
      for (const f of TOKENIZER_FILES) if (existsSync(join(tokenizerFrom, f))) copyFileSync(join(tokenizerFrom, f), join(tmp, f))
    writeJsonAtomic(join(tmp, 'workbench.json'), {
      created: new Date().toISOString(),
      preset: input,
      seed,
      tokenizerFrom: tokenizerFrom ?? null,
    })
    mkdirSync(join(dir, '..'), { recursive: true })
    rmSync(dir, { recursive: true, force: true })
    renameSync(tmp, dir)
  } finally {
    model.dispose()
    rmSync(tmp, { recursive: true, force: true })
  }
  return inspectModel(dir)
}

/** A loaded model with its tokenizer and chat template (null without tokenizer.json). */
export interface LoadedModel {
  model: MoeModel
  tokenizer: ModelTokenizer | null
  template: ChatTemplate | null
}

interface CacheEntry extends LoadedModel {
  offloadKey: string
  /** Leases not yet released: the model is in use and must not be disposed. */
  users: number
  /** Dropped from the cache while in use: disposed by its last release. */
  dropped: boolean
}

/** A model borrowed from the cache; `release` once done with it. */
export interface ModelLease extends LoadedModel {
  release(): void
}

/**
 * Loaded models for chat and analysis, least recently used dropped first, never while in use.
 * Loads run one at a time (each holds a whole model's weights while it reads), with progress and
 * cancel through the caller's task hooks.
 */
export class ModelCache {
  private readonly entries = new Map<string, CacheEntry>()
  /** Settles when the loads queued so far have ended. */
  private loads: Promise<void> = Promise.resolve()
  private queued = 0

  constructor(private readonly max = 2) {}

  async get(dir: string, offload?: OffloadOptions, hooks: TaskHooks = {}): Promise<ModelLease> {
    const offloadKey = JSON.stringify(offload ?? null)
    const cached = this.lease(dir, offloadKey)
    if (cached) return cached
    const previous = this.loads
    const mustWait = this.queued > 0
    let done!: () => void
    const mine = new Promise<void>((resolve) => (done = resolve))
    // The next load waits for the earlier ones and this one, even if this one gives up early.
    this.loads = previous.then(() => mine)
    this.queued++
    try {
      if (mustWait) await this.waitFor(previous, dir, hooks)
      // The load this one waited for may have been this very model.
      return this.lease(dir, offloadKey) ?? (await this.load(dir, offload, offloadKey, hooks))
    } finally {
      this.queued--
      done()
    }
  }

  /** Drops a model (after it was re-exported or deleted); one in use goes when it is released. */
  forget(dir: string): void {
    const e = this.entries.get(dir)
    if (e) this.drop(dir, e)
  }

  private lease(dir: string, offloadKey: string): ModelLease | null {
    const e = this.entries.get(dir)
    if (!e || e.offloadKey !== offloadKey) return null
    this.entries.delete(dir)
    this.entries.set(dir, e)
    return this.leaseOf(e)
  }

  private leaseOf(e: CacheEntry): ModelLease {
    e.users++
    let released = false
    return {
      model: e.model,
      tokenizer: e.tokenizer,
      template: e.template,
      release: () => {
        if (released) return
        released = true
        e.users--
        if (e.users === 0 && e.dropped) e.model.dispose()
      },
    }
  }

  private drop(dir: string, e: CacheEntry): void {
    this.entries.delete(dir)
    e.dropped = true
    if (e.users === 0) e.model.dispose()
  }

  private async waitFor(previous: Promise<void>, dir: string, { signal, onProgress }: TaskHooks): Promise<void> {
    onProgress?.({ label: 'Waiting for another model to finish loading', stage: 1, stages: 1, done: 0, total: 0, unit: 'bytes' })
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(cancelledError(`loading ${basename(dir)}`))
      if (signal?.aborted) return onAbort()
      signal?.addEventListener('abort', onAbort, { once: true })
      void previous.then(() => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      })
    })
  }

  private async load(dir: string, offload: OffloadOptions | undefined, offloadKey: string, hooks: TaskHooks): Promise<ModelLease> {
    const other = this.entries.get(dir)
    if (other) this.drop(dir, other)
    for (const [oldDir, e] of [...this.entries]) {
      if (this.entries.size < this.max) break
      if (e.users === 0) this.drop(oldDir, e)
    }
    const hasTokenizer = existsSync(join(dir, 'tokenizer.json'))
    const tokenizer = hasTokenizer ? await loadTokenizer(dir) : null
    const template = hasTokenizer ? await loadChatTemplate(dir) : null
    const model = await loadModelAsync(dir, { offload, hooks, stage: { label: `Loading ${basename(dir)}`, stage: 1, stages: 1 } })
    const entry: CacheEntry = { model, tokenizer, template, offloadKey, users: 0, dropped: false }
    this.entries.set(dir, entry)
    return this.leaseOf(entry)
  }
}

// ---------------------------------------------------------------------------------------------
// Runs

export interface RunStartArgs {
  runId: string
  runDir: string
  modelDir: string
  workspace: string
  dataset: string
  config: RunConfig
  name?: string
  resume?: boolean
}

interface QueuedRun extends RunStartArgs {
  controller: AbortController
}

/** Tokenises a dataset's rows for training with the model's tokenizer and template. */
export async function encodeDataset(
  workspace: string,
  dataset: string,
  modelDir: string,
  cfg: RunConfig,
  opts: { signal?: AbortSignal; onRows?: (rows: number) => void } = {},
): Promise<{ train: EncodedExample[]; validation: EncodedExample[]; padId: number }> {
  const model = readModelConfig(modelDir)
  const tokenizer = existsSync(join(modelDir, 'tokenizer.json')) ? await loadTokenizer(modelDir) : null
  const template = tokenizer ? await loadChatTemplate(modelDir) : null
  const encode = (row: NormalizedRow): EncodedExample | null => {
    if ('input_ids' in row) {
      const labels = row.labels ?? row.input_ids
      return { input_ids: row.input_ids.slice(0, cfg.data.maxLength), labels: labels.slice(0, cfg.data.maxLength) }
    }
    if (!tokenizer || !template) throw new Error(`${modelDir} has no tokenizer.json, so only pre-tokenised datasets can train it`)
    return encodeExample(row, tokenizer, template, {
      maskPrompt: cfg.data.maskPrompt,
      maxLength: cfg.data.maxLength,
      truncation: cfg.data.truncation,
    })
  }
  let rows = 0
  let reported = Date.now()
  const split = async (which: 'train' | 'validation'): Promise<EncodedExample[]> => {
    const out: EncodedExample[] = []
    for await (const row of readRows(workspace, dataset, which)) {
      if (opts.signal?.aborted) throw cancelledError(`tokenising dataset ${dataset}`)
      if (++rows % 256 === 0 && Date.now() - reported >= 2000) {
        reported = Date.now()
        opts.onRows?.(rows)
      }
      const e = encode(row)
      if (e && e.input_ids.length >= 2) {
        const bad = e.input_ids.find((t) => t >= model.vocabSize)
        if (bad !== undefined)
          throw new Error(
            `dataset ${dataset}: token id ${bad} is outside the model's vocabulary of ${model.vocabSize}; was it tokenised for another model?`,
          )
        out.push(e)
      }
    }
    return out
  }
  const eos = model.eosTokenId
  const padId = tokenizer?.padId ?? model.padTokenId ?? (Array.isArray(eos) ? eos[0] : eos) ?? 0
  return { train: await split('train'), validation: await split('validation'), padId }
}

/** One run at a time; the rest wait in order. */
export class RunQueue {
  private readonly queue: QueuedRun[] = []
  private active: QueuedRun | null = null

  constructor(private readonly emit: Emit) {}

  /** Queues a run (starting it when nothing runs); returns its record as written. */
  start(args: RunStartArgs): RunRecord {
    if (this.active?.runId === args.runId || this.queue.some((q) => q.runId === args.runId))
      throw new Error(`run ${args.runId} is already running or queued`)
    mkdirSync(args.runDir, { recursive: true })
    const now = new Date().toISOString()
    let record: RunRecord
    if (existsSync(join(args.runDir, 'run.json'))) {
      record = { ...readRunRecord(args.runDir), status: 'queued', updated: now }
    } else {
      record = {
        id: args.runId,
        name: args.name,
        status: 'queued',
        config: args.config,
        baseModel: args.modelDir,
        dataset: args.dataset,
        created: now,
        updated: now,
        step: 0,
        totalSteps: 0,
        bestValLoss: null,
        lastCheckpoint: null,
      }
    }
    writeJsonAtomic(join(args.runDir, 'run.json'), record)
    this.queue.push({ ...args, controller: new AbortController() })
    this.emit({ type: 'run.status', runId: args.runId, status: 'queued', step: record.step })
    void this.pump()
    return record
  }

  /** Cancels a queued or running run; true when it was known here. */
  cancel(runId: string): boolean {
    if (this.active?.runId === runId) {
      this.active.controller.abort()
      return true
    }
    const i = this.queue.findIndex((q) => q.runId === runId)
    if (i < 0) return false
    const [q] = this.queue.splice(i, 1)
    const record = {
      ...readRunRecord(q.runDir),
      status: 'cancelled' as const,
      message: 'cancelled before it started',
      updated: new Date().toISOString(),
    }
    writeJsonAtomic(join(q.runDir, 'run.json'), record)
    this.emit({ type: 'run.status', runId, status: 'cancelled', step: record.step, message: record.message })
    return true
  }

  isActive(runId: string): boolean {
    return this.active?.runId === runId || this.queue.some((q) => q.runId === runId)
  }

  private async pump(): Promise<void> {
    if (this.active) return
    const next = this.queue.shift()
    if (!next) return
    this.active = next
    const { runId } = next
    const forward = (e: TrainEvent): void => {
      let ev: RunEvent
      switch (e.type) {
        case 'status':
          ev = { type: 'run.status', runId, status: e.status, step: e.step, message: e.message }
          break
        case 'step':
          ev = { type: 'run.step', runId, metrics: e.metrics }
          break
        case 'eval':
          ev = { type: 'run.eval', runId, metrics: e.metrics }
          break
        case 'checkpoint':
          ev = { type: 'run.checkpoint', runId, step: e.step, dir: e.dir }
          break
        case 'alert':
          ev = { type: 'run.alert', runId, step: e.step, layer: e.layer, expert: e.expert, kind: e.kind, message: e.message }
          break
        case 'log':
          ev = { type: 'run.log', runId, line: e.line }
          break
      }
      this.emit(ev)
    }
    try {
      forward({ type: 'log', line: `tokenising dataset ${next.dataset} for ${next.modelDir}` })
      const data = await encodeDataset(next.workspace, next.dataset, next.modelDir, next.config, {
        signal: next.controller.signal,
        onRows: (rows) => forward({ type: 'log', line: `tokenised ${rows.toLocaleString('en')} rows…` }),
      })
      if (data.train.length === 0)
        throw new Error(`dataset ${next.dataset} has no training rows that fit maxLength ${next.config.data.maxLength}`)
      await train({
        runDir: next.runDir,
        baseModelDir: next.modelDir,
        dataset: next.dataset,
        config: next.config,
        train: data.train,
        validation: data.validation,
        padId: data.padId,
        resume: next.resume,
        signal: next.controller.signal,
        onEvent: forward,
      })
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e)
      // A cancel while tokenising stops before train() starts; the run keeps its last checkpoint.
      const status = e instanceof ApiError && e.code === 'cancelled' ? 'cancelled' : 'failed'
      // train() records its own failures; failures before it (tokenising) are recorded here.
      try {
        const record = readRunRecord(next.runDir)
        if (record.status !== 'failed') {
          writeJsonAtomic(join(next.runDir, 'run.json'), { ...record, status, message, updated: new Date().toISOString() })
          this.emit({ type: 'run.status', runId, status, step: record.step, message })
        }
      } catch (inner) {
        // The run folder itself is gone or unwritable: say so, and keep serving.
        this.emit({
          type: 'run.status',
          runId,
          status: 'failed',
          step: 0,
          message: `${message} (and the run folder could not be updated: ${inner instanceof Error ? inner.message : String(inner)})`,
        })
      }
    } finally {
      this.active = null
      void this.pump()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Chat

/** Streams replies; one at a time per request id, cancellable. */
export class ChatSessions {
  private readonly active = new Map<string, AbortController>()

  constructor(
    private readonly models: ModelCache,
    private readonly emit: Emit,
  ) {}

  /** Loads the model when needed (progress and cancel through `hooks`), then starts the reply. */
  async send(requestId: string, args: ChatSendArgs, hooks: TaskHooks = {}): Promise<ChatStarted> {
    if (this.active.has(requestId)) throw new Error(`request ${requestId} is already running`)
    const lease = await this.models.get(args.model, args.offload, hooks)
    let started = false
    try {
      const { model, tokenizer, template } = lease
      if (!tokenizer || !template)
        throw new Error(`${args.model} has no tokenizer.json; chat needs a tokenizer (generate from token ids with the CLI instead)`)
      const messages: ChatMessage[] = args.messages
      const prompt = template.render(messages, true)
      const promptIds = tokenizer.encode(prompt)
      if (promptIds.length === 0) throw new Error('the conversation renders to no tokens')
      const maxNew = Math.min(args.maxNewTokens ?? 256, model.config.maxPositionEmbeddings - promptIds.length)
      if (maxNew <= 0)
        throw new Error(
          `the conversation (${promptIds.length} tokens) fills the model's ${model.config.maxPositionEmbeddings} positions; start a new one or shorten it`,
        )
      const controller = new AbortController()
      this.active.set(requestId, controller)
      const stopSequences = (args.stop ?? []).map((s) => tokenizer.encode(s, true)).filter((s) => s.length > 0)
      const emit = (e: ChatEvent): void => this.emit(e)
      // Run after this request has been answered.
      setImmediate(
        () => void this.run(requestId, model, tokenizer, promptIds, maxNew, args, stopSequences, controller, emit).finally(lease.release),
      )
      started = true
      return { requestId, prompt, promptTokens: promptIds.length, template: template.source }
    } finally {
      if (!started) lease.release()
    }
  }

  cancel(requestId: string): boolean {
    const c = this.active.get(requestId)
    c?.abort()
    return c !== undefined
  }

  private async run(
    requestId: string,
    model: MoeModel,
    tokenizer: ModelTokenizer,
    promptIds: number[],
    maxNew: number,
    args: ChatSendArgs,
    stopSequences: number[][],
    controller: AbortController,
    emit: (e: ChatEvent) => void,
  ): Promise<void> {
    const newTokens: number[] = []
    let text = ''
    let forwards = 0
    try {
      const eos = tokenizer.eosId
      const cfgEos = model.config.eosTokenId
      const stopTokens = [
        ...new Set([...(eos === null ? [] : [eos]), ...(cfgEos === null ? [] : Array.isArray(cfgEos) ? cfgEos : [cfgEos])]),
      ]
      const r = await generateAsync(model, promptIds, {
        maxNewTokens: maxNew,
        sampling: args.sampling ?? { temperature: 0.8, topP: 0.95, seed: Date.now() % 2 ** 31 },
        stopTokens,
        stopSequences,
        signal: controller.signal,
        weights: model.weightSource,
        routeLastToken: true,
        onRouting: (positions) => {
          // The first forward covers the prompt; each later one, the token chosen just before.
          if (forwards++ === 0)
            emit({ type: 'chat.prompt', requestId, routing: positions, tokens: positions.map((p) => tokenizer.decode([p.token], false)) })
          else for (const p of positions) emit({ type: 'chat.routing', requestId, routing: p })
        },
        onToken: (token) => {
          newTokens.push(token)
          const full = tokenizer.decode(newTokens, true)
          const delta = full.slice(text.length)
          text = full
          emit({ type: 'chat.token', requestId, token, index: newTokens.length - 1, text: delta, offload: model.offload?.cache.stats() })
        },
      })
      const seconds = r.decodeMs / 1000
      emit({
        type: 'chat.done',
        requestId,
        text,
        stats: {
          newTokens: r.newTokens.length,
          stoppedBy: r.stoppedBy,
          prefillMs: r.prefillMs,
          decodeMs: r.decodeMs,
          tokensPerSec: r.newTokens.length > 1 ? (r.newTokens.length - 1) / Math.max(seconds, 1e-9) : 0,
          offload: model.offload?.cache.stats(),
        },
      })
    } catch (e) {
      emit({ type: 'chat.error', requestId, message: e instanceof Error ? e.message : String(e) })
    } finally {
      this.active.delete(requestId)
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Experts

/**
 * Routes text (or rows rendered with the chat template) through a model and summarises expert
 * use. Task stages: load the model (when it is not loaded), then route the texts; cancel acts
 * between tensors while loading and between texts while routing.
 */
export async function analyzeExperts(
  models: ModelCache,
  modelDir: string,
  input: { text?: string; workspace?: string; dataset?: string; maxRows?: number },
  hooks: TaskHooks = {},
): Promise<ExpertAnalysis> {
  // The load reports itself as stage 1 of 1; here it is 1 of 2, routing the texts the second.
  const lease = await models.get(modelDir, undefined, {
    signal: hooks.signal,
    onProgress: hooks.onProgress && ((p) => hooks.onProgress!({ ...p, stages: 2 })),
  })
  try {
    return await routeTexts(lease, modelDir, input, hooks)
  } finally {
    lease.release()
  }
}

async function routeTexts(
  { model, tokenizer, template }: LoadedModel,
  modelDir: string,
  input: { text?: string; workspace?: string; dataset?: string; maxRows?: number },
  hooks: TaskHooks,
): Promise<ExpertAnalysis> {
  if (!tokenizer || !template) throw new Error(`${modelDir} has no tokenizer.json; expert analysis needs a tokenizer`)
  const pace = pacer(hooks.signal, `analysing ${basename(modelDir)}`)
  const texts: string[] = []
  if (input.text !== undefined) texts.push(input.text)
  else {
    for await (const row of readRows(input.workspace!, input.dataset!)) {
      if ('messages' in row) texts.push(template.render(row.messages, false))
      else if ('completion' in row) texts.push(row.prompt + row.completion)
      else if ('text' in row) texts.push(row.text)
      else texts.push(tokenizer.decode(row.input_ids, false))
      if (texts.length >= (input.maxRows ?? 200)) break
      await pace()
    }
  }
  const report = (done: number): void =>
    hooks.onProgress?.({ label: 'Routing the text through the model', stage: 2, stages: 2, done, total: texts.length, unit: 'texts' })
  report(0)
  const E = model.config.numExperts
  const k = model.config.topK
  const max = model.config.maxPositionEmbeddings
  const layers = new Map<number, { load: number[]; entropy: number; n: number; co: number[][]; top: Map<number, number>[] }>()
  let tokens = 0
  for (const [i, text] of texts.entries()) {
    await pace()
    report(i)
    const ids = tokenizer.encode(text).slice(0, max)
    if (ids.length === 0) continue
    tokens += ids.length
    tf.tidy(() => {
      const f = model.forward([ids])
      for (const r of f.routing) {
        let l = layers.get(r.layer)
        if (!l)
          layers.set(
            r.layer,
            (l = {
              load: new Array(E).fill(0),
              entropy: 0,
              n: 0,
              co: Array.from({ length: E }, () => new Array(E).fill(0)),
              top: Array.from({ length: E }, () => new Map()),
            }),
          )
        l.entropy += r.entropy * ids.length
        l.n += ids.length
        for (let n = 0; n < ids.length; n++) {
          const chosen = Array.from(r.decision.topk.subarray(n * k, n * k + k))
          for (const a of chosen) {
            l.load[a]++
            l.top[a].set(ids[n], (l.top[a].get(ids[n]) ?? 0) + 1)
            for (const b of chosen) l.co[a][b]++
          }
        }
      }
    })
  }
  report(texts.length)
  return {
    model: modelDir,
    tokens,
    layers: [...layers]
      .sort((a, b) => a[0] - b[0])
      .map(([layer, l]) => {
        const total = l.load.reduce((a, b) => a + b, 0)
        return {
          layer,
          load: l.load.map((c) => (total ? c / total : 0)),
          entropy: l.n ? l.entropy / l.n : 0,
          coactivation: l.co,
          topTokens: l.top.map((m) =>
            [...m]
              .sort((a, b) => b[1] - a[1])
              .slice(0, 10)
              .map(([id, count]) => ({ text: tokenizer.decode([id], false), count })),
          ),
        }
      }),
  }
}
