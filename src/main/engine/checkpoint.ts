/**
 * Hugging Face checkpoint folders: config.json + *.safetensors (single or sharded). Import and
 * export are this one code path, so whatever the workbench saves opens in transformers and any
 * hub checkpoint of a supported family opens here.
 */
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import type { Dtype, ModelInfo } from '../../shared/api'
import {
  ConfigError,
  countParams,
  fromHfConfig,
  paramSpecs,
  sparseLayers,
  hfConfigJson,
  type MoeConfig,
  type ParamSpec,
} from '../../shared/modelConfig'
import { read } from './device'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'
import { CheckpointError, nonFinite, readWeight } from './weights'
import { MoeModel } from './model'
import { ExpertStore, type OffloadOptions } from './offload'
import { pacer, type TaskHooks } from './tasks'
import { openCheckpointTensors, saveCheckpointTensors, type DType, type SafetensorsHeader, type TensorToWrite } from './safetensors'

export { CheckpointError, nonFinite, readWeight }

const DTYPE_TO_ST: Record<Dtype, 'F32' | 'BF16' | 'F16'> = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' }
const ST_TO_DTYPE: Partial<Record<DType, Dtype>> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' }

/** Reads and normalises a folder's config.json. */
export function readModelConfig(dir: string): MoeConfig {
  const file = join(dir, 'config.json')
  if (!existsSync(file))
    throw new CheckpointError(`${file}: not found; a model folder needs config.json and *.safetensors (a Hugging Face checkpoint)`)
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CheckpointError(`${file}: must hold a JSON object`)
  try {
    return fromHfConfig(json as Record<string, unknown>, file)
  } catch (e) {
    if (e instanceof ConfigError) throw new CheckpointError(e.message)
    throw e
  }
}

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

/**
 * Loading a model folder step by step: config, every expected tensor (checked by name and shape),
 * as float32. Yields the bytes read so far after each tensor and returns the model, so
 * `loadModel` runs it at once and `loadModelAsync` with progress and cancel between tensors.
 * With `offload`, routed experts stay off the device (in host memory in the chosen storage, or in
 * the file itself for 'lazy') and run through a device cache bounded by the byte budget.
 */
function* loadModelSteps(dir: string, offload: OffloadOptions | undefined): Generator<{ done: number; total: number }, MoeModel> {
  const config = readModelConfig(dir)
  const { index } = openCheckpointTensors(dir)
  const problem = describeCheck(dir, checkTensors(config, index))
  if (problem) throw new CheckpointError(problem)
  const specs = paramSpecs(config).filter((s) => !(offload?.storage === 'lazy' && s.kind === 'expert'))
  const bytesOf = (name: string): number => {
    const info = index.get(name)!.tensors.get(name)!
    return info.end - info.begin
  }
  const total = specs.reduce((sum, s) => sum + bytesOf(s.name), 0)
  let done = 0
  yield { done, total }
  const weights = new Map<string, Float32Array>()
  for (const s of specs) {
    const data = readWeight(index.get(s.name)!, s.name)
    weights.set(s.name, data)
    done += bytesOf(s.name)
    yield { done, total }
  }
  if (!offload) return new MoeModel(config, weights)
  const store = new ExpertStore(config, offload.storage, offload.storage === 'lazy' ? { index } : { weights })
  const model = new MoeModel(config, weights, { offloadExperts: true })
  model.attachOffload(store, offload)
  return model
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
export function loadModel(dir: string, opts: { offload?: OffloadOptions } = {}): MoeModel {
  const steps = loadModelSteps(dir, opts.offload)
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
  opts: { offload?: OffloadOptions; hooks?: TaskHooks; stage?: { label: string; stage: number; stages: number } } = {},
): Promise<MoeModel> {
  const { signal, onProgress } = opts.hooks ?? {}
  const stage = opts.stage ?? { label: `Loading ${basename(dir)}`, stage: 1, stages: 1 }
  const pace = pacer(signal, `loading ${basename(dir)}`)
  // Abandoning the steps part-way holds nothing: each tensor's file is closed after its read.
  const steps = loadModelSteps(dir, opts.offload)
  for (;;) {
    const r = steps.next()
    if (r.done) return r.value
    onProgress?.({ ...stage, done: r.value.done, total: r.value.total, unit: 'bytes' })
    await pace()
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
  writeFileAtomic(join(dir, 'config.json'), hfConfigJson({ ...config, torchDtype: dtype }))
  writeJsonAtomic(join(dir, 'generation_config.json'), {
    bos_token_id: config.bosTokenId,
    eos_token_id: config.eosTokenId,
    pad_token_id: config.padTokenId,
  })
  return [...files, 'config.json', 'generation_config.json']
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
  const checkpointDtype = [...dtypes].sort((a, b) => b[1] - a[1])[0]?.[0] ?? 'float32'
  const params = countParams(config)
  return {
    dir: abs,
    family: config.family,
    numLayers: config.numLayers,
    sparseLayers: sparseLayers(config),
    numExperts: config.numExperts,
    topK: config.topK,
    routerType: config.router.type,
    params,
    bytesByDtype: { float32: params.total * 4, bfloat16: params.total * 2, float16: params.total * 2 },
    checkpointDtype,
  }
}
