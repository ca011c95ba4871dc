/**
 * Hugging Face checkpoint folders: config.json + *.safetensors (single or sharded). Import and
 * export are this one code path, so whatever the workbench saves opens in transformers and any
 * hub checkpoint of a supported family opens here.
 */
import { modelKnobDefaults } from '../../shared/knobs'
import { existsSync, mkdirSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import type { Dtype, ModelInfo } from '../../shared/api'
import { countParams, paramSpecs, sparseLayers, hfConfigJson, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'
import { read } from './device'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'
import { CheckpointError, nonFinite, readWeight } from './weights'
import { readModelConfig } from './modelConfigFile'
import { MoeModel } from './model'
import type { ExpertStorage, OffloadOptions } from '../../shared/chat'
import { backendReport } from './backend'
import { HostStore } from './hostStore'
import { UnitCache } from './paging'
import { defaultBudget, hostStorageOf, planPlacement, type Placement, type TrainingPlan } from './plan'
import { pacer, type TaskHooks } from './tasks'
import { openCheckpointTensors, saveCheckpointTensors, type DType, type SafetensorsHeader, type TensorToWrite } from './safetensors'

export { CheckpointError, nonFinite, readWeight, readModelConfig }

export const DTYPE_TO_ST: Record<Dtype, 'F32' | 'BF16' | 'F16'> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }
const ST_TO_DTYPE: Partial<Record<DType, Dtype>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }

export interface TensorCheck {
  missing: string[]
  unexpected: string[]
  wrongShape: string[]
}

/** Compares a checkpoint's tensor names and shapes with what the config expects. */
export function checkTensors(config: MoeConfig, index: Map<string, SafetensorsHeader>): TensorCheck {
  const specs = paramSpecs(config)
  const expected = new Set(specs.map((s) => s.name))
  const missing: string[] = []
  const wrongShape: string[] = []
  for (const s of specs) {
    const h = index.get(s.name)
    if (!h) {
      missing.push(s.name)
      continue
    }
    const info = h.tensors.get(s.name)!
    if (info.shape.join(',') !== s.shape.join(','))
      wrongShape.push(`${s.name} is [${info.shape}] in ${basename(h.file)}, the config needs [${s.shape}]`)
  }
  const unexpected = [...index.keys()].filter(
    (n) => !expected.has(n) && !(config.tieWordEmbeddings && n === 'lm_head.weight') && !n.endsWith('rotary_emb.inv_freq'),
  )
  return { missing, unexpected, wrongShape }
}

function describeCheck(dir: string, c: TensorCheck): string | null {
  const parts: string[] = []
  const list = (xs: string[]): string => (xs.length > 6 ? `${xs.slice(0, 6).join(', ')} and ${xs.length - 6} more` : xs.join(', '))
  if (c.missing.length) parts.push(`missing ${c.missing.length} tensor(s): ${list(c.missing)}`)
  if (c.wrongShape.length) parts.push(`wrong shape: ${list(c.wrongShape)}`)
  if (c.unexpected.length) parts.push(`unexpected ${c.unexpected.length} tensor(s): ${list(c.unexpected)}`)
  return parts.length ? `${dir}: the checkpoint does not match its config.json: ${parts.join('; ')}` : null
}

export class PlanError extends Error {}

/** How a model is loaded: within a device budget (the planner decides what pages), for training or not. */
export interface LoadOptions {
  /**
   * The device budget and host storage of paged weights. Without it the default budget of the
   * backend (defaultBudget): a model that fits is resident, one that does not is paged lazily.
   */
  offload?: OffloadOptions
  /** A training run's needs, reserved in the plan (adapters, gradients, optimiser, activations). */
  training?: TrainingPlan
  /** Context the KV cache is planned for. */
  contextTokens?: number
}

/**
 * The plan a load follows, from the options and the backend in use (its device ceiling, its
 * largest binding); refused with the planner's numbers when the model cannot run.
 */
export function placementFor(dir: string, config: MoeConfig, opts: LoadOptions = {}): Placement {
  const backend = backendReport()
  const placement = planPlacement(config, {
    budgetBytes: opts.offload?.budgetBytes ?? defaultBudget(backend?.name),
    storage: opts.offload?.storage,
    policy: opts.offload?.policy,
    training: opts.training,
    contextTokens: opts.contextTokens ?? opts.offload?.contextTokens,
    backend: backend?.name,
    maxBindingBytes: backend?.adapter?.limits.maxStorageBufferBindingSize,
  })
  if (!placement.fit.fits) throw new PlanError(`${basename(dir)}: ${placement.fit.message}`)
  return placement
}

/**
 * Loading a model folder step by step: config, every tensor checked by name and shape, the plan
 * (refused before anything is allocated when it cannot fit), then the resident tensors one by
 * one onto the device and, for a paged model, the host store of the rest (nothing but a
 * checkpoint's file offsets for 'lazy' storage). Yields the bytes read so far after each tensor
 * and returns the model, so `loadModel` runs it at once and `loadModelAsync` with progress and
 * cancel between tensors. Host memory holds one float32 tensor at a time beyond the store.
 */
function* loadModelSteps(dir: string, opts: LoadOptions): Generator<{ done: number; total: number }, MoeModel> {
  const config = readModelConfig(dir)
  const { index } = openCheckpointTensors(dir)
  const problem = describeCheck(dir, checkTensors(config, index))
  if (problem) throw new CheckpointError(problem)
  const placement = placementFor(dir, config, opts)
  const bytesOf = (name: string): number => {
    const info = index.get(name)!.tensors.get(name)!
    return info.end - info.begin
  }
  const residentSpecs = paramSpecs(config).filter((s) => placement.resident.has(s.name))
  const hostTensors = new Map<string, { shape: [number, number]; storage: ExpertStorage }>()
  if (placement.paged.length > 0) {
    for (const u of placement.paged)
      for (const part of u.parts)
        hostTensors.set(part.name, {
          shape: [part.rows ? config.vocabSize : part.shape[0], part.shape[1]],
          storage: hostStorageOf(placement.storage, u.kind),
        })
    if (placement.embedOnHost)
      hostTensors.set('model.embed_tokens.weight', {
        shape: [config.vocabSize, config.hiddenSize],
        storage: hostStorageOf(placement.storage, 'embed'),
      })
  }
  const hostRead = placement.storage === 'lazy' ? [] : [...hostTensors.keys()]
  const total = [...residentSpecs.map((s) => s.name), ...hostRead].reduce((sum, n) => sum + bytesOf(n), 0)
  let done = 0
  yield { done, total }
  const model = new MoeModel(config, new Map(), { resident: placement.resident, deferred: true })
  let complete = false
  try {
    for (const s of residentSpecs) {
      model.addParam(s.name, readWeight(index.get(s.name)!, s.name))
      done += bytesOf(s.name)
      yield { done, total }
    }
    if (placement.paged.length > 0) {
      const store = new HostStore(placement.storage, index)
      for (const [name, t] of hostTensors) {
        store.add({ name, shape: t.shape }, t.storage)
        if (placement.storage !== 'lazy') {
          done += bytesOf(name)
          yield { done, total }
        }
      }
      const cache = new UnitCache(store, placement.cacheBytes, placement.policy, placement.fit.budgetBytes)
      model.attachPaging({ placement, store, cache, prefetch: opts.offload?.prefetch ?? false })
    }
    complete = true
    return model
  } finally {
    // Abandoned part-way (a cancel) or failed: nothing stays on the device.
    if (!complete) model.dispose()
  }
}

/**
 * Reads every weight of a folder once, tensor by tensor (bounded memory), and names each tensor
 * that holds NaN or infinite values. Progress in bytes through `hooks`.
 */
export async function checkWeights(dir: string, hooks: TaskHooks = {}): Promise<{ checkedBytes: number; problems: string[] }> {
  const config = readModelConfig(dir)
  const { index } = openCheckpointTensors(dir)
  const specs = paramSpecs(config).filter((s) => index.has(s.name))
  const bytesOf = (name: string): number => {
    const info = index.get(name)!.tensors.get(name)!
    return info.end - info.begin
  }
  const total = specs.reduce((a, s) => a + bytesOf(s.name), 0)
  const pace = pacer(hooks.signal, `checking ${basename(dir)}`)
  const problems: string[] = []
  let done = 0
  for (const s of specs) {
    try {
      readWeight(index.get(s.name)!, s.name)
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e
      problems.push(e.message)
    }
    done += bytesOf(s.name)
    hooks.onProgress?.({ label: `Checking the weights of ${basename(dir)}`, stage: 1, stages: 1, done, total, unit: 'bytes' })
    await pace()
  }
  return { checkedBytes: total, problems }
}

/** Loads a model folder at once (see loadModelSteps). */
export function loadModel(dir: string, opts: LoadOptions = {}): MoeModel {
  const steps = loadModelSteps(dir, opts)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
  }
}

/**
 * Loads a model folder as loadModel does, reporting the bytes read (one stage of a task) and
 * letting other messages in between tensors; rejects with 'cancelled' once `hooks.signal` aborts
 * (nothing is on the device before the last tensor is read).
 */
export async function loadModelAsync(
  dir: string,
  opts: LoadOptions & { hooks?: TaskHooks; stage?: { label: string; stage: number; stages: number } } = {},
): Promise<MoeModel> {
  const { signal, onProgress } = opts.hooks ?? {}
  const stage = opts.stage ?? { label: `Loading ${basename(dir)}`, stage: 1, stages: 1 }
  const pace = pacer(signal, `loading ${basename(dir)}`)
  const steps = loadModelSteps(dir, opts)
  let finished = false
  try {
    for (;;) {
      const r = steps.next()
      if (r.done) {
        finished = true
        return r.value
      }
      onProgress?.({ ...stage, done: r.value.done, total: r.value.total, unit: 'bytes' })
      await pace()
    }
  } finally {
    // A cancel part-way: closing the steps disposes what they put on the device.
    if (!finished) steps.return(undefined as never)
  }
}

export interface SaveOptions {
  dtype?: Dtype
  maxShardBytes?: number
}

/**
 * Saves a model as a Hugging Face checkpoint folder (config.json, safetensors, generation_config.json),
 * reading the weights back synchronously (host backends). Every file is written atomically; F32
 * round-trips bit-exactly.
 */
export function saveModel(model: MoeModel, dir: string, opts: SaveOptions = {}): string[] {
  const weights = new Map<string, Float32Array>()
  for (const s of model.specs) weights.set(s.name, model.params.get(s.name)!.dataSync() as Float32Array)
  return writeModelFolder(model.config, model.specs, weights, dir, opts)
}

/** saveModel reading the weights back asynchronously (every backend; webgpu needs it). Hold deviceLock. */
export async function saveModelAsync(model: MoeModel, dir: string, opts: SaveOptions = {}): Promise<string[]> {
  const weights = new Map<string, Float32Array>()
  for (const s of model.specs) weights.set(s.name, await read(model.params.get(s.name)!))
  return writeModelFolder(model.config, model.specs, weights, dir, opts)
}

/** Writes a checkpoint folder from float32 weights by hub name. */
export function writeModelFolder(
  config: MoeConfig,
  specs: readonly ParamSpec[],
  weights: Map<string, Float32Array>,
  dir: string,
  opts: SaveOptions = {},
): string[] {
  const dtype = opts.dtype ?? 'float32'
  mkdirSync(dir, { recursive: true })
  const st = DTYPE_TO_ST[dtype]
  const tensors = new Map<string, TensorToWrite>()
  for (const s of specs) tensors.set(s.name, { dtype: st, shape: s.shape, data: weights.get(s.name)! })
  const files = saveCheckpointTensors(dir, tensors, { maxShardBytes: opts.maxShardBytes })
  return [...files, ...writeModelMeta(config, dir, dtype)]
}

/** config.json (with torch_dtype) and generation_config.json of a checkpoint folder. */
export function writeModelMeta(config: MoeConfig, dir: string, dtype: Dtype): string[] {
  writeFileAtomic(join(dir, 'config.json'), hfConfigJson({ ...config, torchDtype: dtype }))
  writeJsonAtomic(join(dir, 'generation_config.json'), {
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    pad_token_id: config.padTokenId,
  })
  return ['config.json', 'generation_config.json']
}

/** What a model folder holds, without loading its weights. */
export function inspectModel(dir: string): ModelInfo {
  const abs = resolve(dir)
  const config = readModelConfig(abs)
  const { index } = openCheckpointTensors(abs)
  const problem = describeCheck(abs, checkTensors(config, index))
  if (problem) throw new CheckpointError(problem)
  const dtypes = new Map<Dtype, number>()
  for (const s of paramSpecs(config)) {
    const d = ST_TO_DTYPE[index.get(s.name)!.tensors.get(s.name)!.dtype]
    if (d) dtypes.set(d, (dtypes.get(d) ?? 0) + 1)
  }
  return modelInfoOf(abs, config, [...dtypes].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'float32')
}

/**
 * What a model folder that has its config.json but no weights describes (a checkpoint's config
 * downloaded alone, to see whether the model fits before fetching its weights): the same facts as
 * inspectModel, the storage dtype being the one config.json names (torch_dtype).
 */
export function inspectModelConfig(dir: string): ModelInfo {
  const abs = resolve(dir)
  const config = readModelConfig(abs)
  return modelInfoOf(abs, config, config.torchDtype)
}

function modelInfoOf(abs: string, config: MoeConfig, checkpointDtype: Dtype): ModelInfo {
  const params = countParams(config)
  return {
    dir: abs,
    family: config.family,
    numLayers: config.numLayers,
    sparseLayers: sparseLayers(config),
    numExperts: config.numExperts,
    topK: config.topK,
    routerType: config.router.type,
    vocabSize: config.vocabSize,
    maxPositionEmbeddings: config.maxPositionEmbeddings,
    knobDefaults: modelKnobDefaults(config),
    params,
    bytesByDtype: { float32: params.total * 4, bfloat16: params.total * 2, float16: params.total * 2 },
    checkpointDtype,
    hasTokenizer: existsSync(join(abs, 'tokenizer.json')),
  }
}
