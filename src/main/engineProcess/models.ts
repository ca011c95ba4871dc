/**
 * Models in the engine process: new models with fresh weights, the fit planner for a folder, and
 * the cache of loaded models that chat and expert analysis borrow from.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { totalmem } from 'node:os'
import { basename, join } from 'node:path'
import type { FitPlan, OffloadOptions } from '../../shared/chat'
import { countParams, formatIssues, moeConfigSchema, paramSpecs, type MoeConfigInput } from '../../shared/modelConfig'
import { familyTraits, SMALL_ARCHITECTURE } from '../../shared/modelPresets'
import { ApiError, type ModelInfo, type ModelsPlanArgs } from '../../shared/api'
import { validateRunConfig } from '../../shared/runConfig'
import { trainingPlan } from '../train/trainer'
import { runConfigProblems } from '../train/configChecks'
import { endOfTurnIds, loadChatTemplate, type ChatTemplate } from '../data/template'
import { loadTokenizer, type ModelTokenizer } from '../data/tokenizer'
import { writeJsonAtomic } from '../util/atomic'
import { inspectModel, loadModelAsync, readModelConfig, saveModelAsync } from '../engine/checkpoint'
import { deviceLock } from '../engine/device'
import { cancelledError, type TaskHooks } from '../engine/tasks'
import { MoeModel } from '../engine/model'
import { backendReport } from '../engine/backend'
import { defaultBudget, planPlacement } from '../engine/plan'
import { Rng } from '../engine/ops'
import { TOKENIZER_FILES } from '../train/export'
/** The fit planner for a model folder (reads config.json only), for inference or for a run config. */
export function planModel(args: ModelsPlanArgs): FitPlan {
  const backend = backendReport()
  const config = readModelConfig(args.dir)
  const run = args.run ? validateRunConfig(args.run) : undefined
  // Settings the model cannot train with are refused first, by name (a run was created, then failed).
  if (args.contextTokens !== undefined && args.contextTokens > config.maxPositionEmbeddings)
    throw new ApiError(
      'invalid_argument',
      `contextTokens: ${args.contextTokens} is more than the model's ${config.maxPositionEmbeddings} positions; plan for at most ${config.maxPositionEmbeddings}`,
      'contextTokens',
    )
  const problems = run ? runConfigProblems(run, config) : []
  if (problems.length > 0)
    throw new ApiError('invalid_argument', problems.map((p) => `config.${p.field}: ${p.message}`).join('; '), `config.${problems[0].field}`)
  return planPlacement(config, {
    budgetBytes: args.budgetBytes ?? defaultBudget(backend?.name),
    contextTokens: args.contextTokens,
    storage: args.storage,
    training: run ? trainingPlan(config, run) : undefined,
    backend: backend?.name,
    maxBindingBytes: backend?.adapter?.limits.maxStorageBufferBindingSize,
  }).fit
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
    ...SMALL_ARCHITECTURE,
    headDim: Math.floor((input.hiddenSize ?? SMALL_ARCHITECTURE.hiddenSize) / (input.numHeads ?? SMALL_ARCHITECTURE.numHeads)),
    normTopkProb: false,
    ...familyTraits(input.family),
    sharedExpertIntermediateSize: input.family === 'qwen2_moe' ? 256 : 0,
    bosTokenId: special.bos ?? null,
    eosTokenId: special.eos ?? null,
    padTokenId: special.pad ?? null,
    ...input,
  }
  // Refused by field like the schema's own checks (400 naming config.topK), not as a failure (422).
  const checked = moeConfigSchema.safeParse(preset)
  if (!checked.success) {
    const first = checked.error.issues[0]
    const field = ['config', ...first.path.map(String)].join('.')
    throw new ApiError('invalid_argument', `config: ${formatIssues(checked.error.issues)}`, field)
  }
  const config = checked.data
  // A new model is made in float32 memory, twice over (the arrays and the device tensors) while
  // it is saved: refuse what cannot fit before allocating any of it.
  const bytes = countParams(config).total * 4
  const room = Math.floor(totalmem() / 4)
  if (bytes > room)
    throw new ApiError(
      'invalid_argument',
      `config: this architecture has ${(bytes / 4 / 1e9).toFixed(2)} B parameters (${(bytes / 2 ** 30).toFixed(1)} GiB in float32); a new model is initialised in memory, and this machine allows ${(room / 2 ** 30).toFixed(1)} GiB for it. Use fewer layers, experts or a smaller width`,
      'config',
    )
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
    await deviceLock.run(() => saveModelAsync(model, tmp))
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
  /** Tokens that end a reply: the template's end of turn, EOS, config and generation_config eos ids. */
  stopIds: number[]
}

/** eos_token_id of config.json and generation_config.json (a number or a list), as ids. */
export function folderEosIds(dir: string, configEos: number | number[] | null): number[] {
  const ids = configEos === null ? [] : Array.isArray(configEos) ? configEos : [configEos]
  try {
    const gen = JSON.parse(readFileSync(join(dir, 'generation_config.json'), 'utf8')) as { eos_token_id?: unknown }
    const e = gen.eos_token_id
    for (const id of Array.isArray(e) ? e : [e]) if (Number.isInteger(id)) ids.push(id as number)
  } catch {
    // no generation_config.json, or not JSON: config.json's ids are what there is
  }
  return [...new Set(ids)]
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
  /** Folders being read by a load now (a lease of each follows, or an error). */
  private readonly loading = new Map<string, number>()
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
      const cached = this.lease(dir, offloadKey)
      if (cached) return cached
      this.loading.set(dir, (this.loading.get(dir) ?? 0) + 1)
      try {
        return await this.load(dir, offload, offloadKey, hooks)
      } finally {
        const n = (this.loading.get(dir) ?? 1) - 1
        if (n > 0) this.loading.set(dir, n)
        else this.loading.delete(dir)
      }
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

  /** Whether a chat or an analysis holds the model of `dir`, or is loading it (its files are being read). */
  inUse(dir: string): boolean {
    return (this.entries.get(dir)?.users ?? 0) > 0 || (this.loading.get(dir) ?? 0) > 0
  }

  /** Drops the model of `dir` before its folder is deleted; refused (failed) while it is in use. */
  evict(dir: string): void {
    if (this.inUse(dir))
      throw new ApiError('failed', `${dir} is open in a chat or an expert analysis; let it finish (or cancel it), then try again`)
    this.forget(dir)
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
      stopIds: e.stopIds,
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
    const eos = folderEosIds(dir, model.config.eosTokenId)
    const stopIds = tokenizer && template ? endOfTurnIds(template, tokenizer, eos) : eos
    const entry: CacheEntry = { model, tokenizer, template, stopIds, offloadKey, users: 0, dropped: false }
    this.entries.set(dir, entry)
    return this.leaseOf(entry)
  }
}
