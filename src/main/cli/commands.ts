/**
 * The engine commands of the CLI: info, forward, generate.
 */
import { existsSync, readFileSync } from 'node:fs'
import { basename, dirname, join, resolve } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { z } from 'zod'
import { formatIssues, formatParamCount } from '../../shared/modelConfig'
import { NO_TOKENIZER_NOTE } from '../../shared/api'
import { formatBytes, parseBytes as parseSize, tooLarge, unitless } from '../../shared/bytes'
import { checkWeights, inspectModel, inspectModelConfig, loadModel, loadModelAsync, readModelConfig } from '../engine/checkpoint'
import { defaultBudget, formatBudget, planPlacement } from '../engine/plan'
import { readsSync } from '../engine/device'
import type { StageProgress } from '../engine/tasks'
import { progressLines, type TaskProgress } from '../../shared/tasks'
import { generate, generateAsync, type SamplingOptions } from '../engine/generate'
import { EXPERT_STORAGES, type ExpertStorage, type OffloadOptions, type OffloadStats } from '../../shared/chat'
import { disposeGrads, lossAndGrads, objective } from '../engine/objective'
import { saveSafetensors, weightsToFetch, type TensorToWrite } from '../engine/safetensors'
import { backendReport } from '../engine/backend'
import { requireModelFolder } from './host'
import { backendFromFlag, parseJsonFile, UsageError, type CliIo, type ParsedValues } from './util'
import type { MoeModel } from '../engine/model'
import { loadTokenizer } from '../data/tokenizer'

function requireString(values: ParsedValues, flag: string): string {
  const v = values[flag]
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${flag} is required`)
  return v
}

/** --model's folder: a folder, or a model id of the workspace (requireModelFolder). */
export function requireModelDir(values: ParsedValues): string {
  return requireModelFolder(requireString(values, 'model'), values)
}

export { formatBytes }

/** Checkpoints up to this size get their weights checked by `info` without being asked. */
const CHECK_WEIGHTS_BYTES = 4 * 2 ** 30

export async function infoCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const dir = requireModelDir(values)
  const backend = await backendFromFlag(values, io)
  // The planner's flags first: a bad one is refused before the weights are read.
  const report = backendReport()
  const storage = values['expert-dtype'] === undefined ? undefined : storageFromFlag(values['expert-dtype'])
  const context = values.context === undefined ? undefined : contextFromFlag(values.context, dir)
  const budgetBytes = values.budget === undefined ? defaultBudget(report?.name) : parseBytes(String(values.budget), '--budget')
  // A folder with a config.json and no weights at all (a checkpoint's config fetched alone, to see
  // whether the model fits before downloading it): its figures and plan come from the config.
  const configOnly = weightsToFetch(dir)
  const info = configOnly ? inspectModelConfig(dir) : inspectModel(dir)
  const stored = info.bytesByDtype[info.checkpointDtype]
  let weights: string
  let problems: string[] = []
  if (configOnly)
    weights = `none in this folder (config.json alone: the figures and the plan are the config's; loading it needs model.safetensors, or its shards with model.safetensors.index.json: ${formatBytes(stored)} in ${info.checkpointDtype})`
  else if (values['check-weights'] || stored <= CHECK_WEIGHTS_BYTES) {
    // A line every 2 s of checking (performance.now() counts from the process's start).
    let last = performance.now()
    const r = await checkWeights(dir, {
      onProgress: (p) => {
        if (performance.now() - last < 2000 || p.done >= p.total) return
        last = performance.now()
        io.err(`checking weights: ${Math.round((100 * p.done) / Math.max(1, p.total))}%`)
      },
    })
    problems = r.problems
    weights = problems.length ? `${problems.length} tensor(s) hold NaN or infinite values` : 'all finite (checked)'
  } else weights = `not checked (${formatBytes(stored)}; pass --check-weights to read them all)`
  // The fit planner for --budget (default: the backend's), --context and --expert-dtype.
  const plan = planPlacement(readModelConfig(dir), {
    budgetBytes,
    contextTokens: context,
    storage,
    backend: report?.name,
    maxBindingBytes: report?.adapter?.limits.maxStorageBufferBindingSize,
  }).fit
  if (values.json)
    io.out(JSON.stringify({ ...info, configOnly, backend, adapter: report?.adapter ?? null, weights, weightProblems: problems, plan }))
  else {
    const dense = info.numLayers - info.sparseLayers.length
    io.out(`model      ${info.dir}`)
    io.out(`family     ${info.family}`)
    io.out(`layers     ${info.numLayers} (${info.sparseLayers.length} sparse${dense ? `, ${dense} dense` : ''})`)
    io.out(`experts    ${info.numExperts} per sparse layer, top-${info.topK}, router ${info.routerType}`)
    io.out(
      `params     ${formatParamCount(info.params.total)} total, ${formatParamCount(info.params.active)} active per token (${info.params.total.toLocaleString('en-US')} / ${info.params.active.toLocaleString('en-US')})`,
    )
    io.out(
      `bytes      float32 ${formatBytes(info.bytesByDtype.float32)}, bfloat16 ${formatBytes(info.bytesByDtype.bfloat16)}, float16 ${formatBytes(info.bytesByDtype.float16)}`,
    )
    io.out(`stored as  ${info.checkpointDtype}${configOnly ? " (config.json's torch_dtype)" : ''}`)
    io.out(`tokenizer  ${info.hasTokenizer ? 'tokenizer.json' : NO_TOKENIZER_NOTE}`)
    io.out(`weights    ${weights}`)
    io.out(
      `backend    ${backend}${report?.threads ? ` (${report.threads} thread${report.threads === 1 ? '' : 's'}; MOE_WORKBENCH_THREADS to change)` : ''}${report?.matmul ? `; matmul by ${report.matmul} (MOE_WORKBENCH_MATMUL=native|wasm to choose)` : ''}`,
    )
    io.out(
      `plan       ${formatBudget(plan.budgetBytes)}${values.budget === undefined ? ` (the ${backend} default; --budget to change)` : ''}: ${plan.message}`,
    )
    const adapter = backendReport()?.adapter
    if (adapter)
      io.out(
        `gpu        ${adapter.description || adapter.device} (${adapter.vendor}, ${adapter.architecture})${adapter.software ? ', software' : ''}; largest binding ${formatBytes(adapter.limits.maxStorageBufferBindingSize)}, largest buffer ${formatBytes(adapter.limits.maxBufferSize)}`,
      )
  }
  for (const p of problems) io.err(p)
  return problems.length ? 1 : 0
}

const tokenRows = z.array(z.array(z.number().int())).min(1)
const forwardInputSchema = z.object({ input_ids: tokenRows, labels: tokenRows.optional() }).strict()

interface ForwardInput {
  inputIds: number[][]
  labels?: number[][]
}

/** Reads and validates forward's input file against the model's vocabulary. */
export function readForwardInput(file: string, vocabSize: number): ForwardInput {
  if (!existsSync(file)) throw new UsageError(`--input: ${file} does not exist`)
  const json = parseJsonFile(file, readFileSync(file, 'utf8'))
  const r = forwardInputSchema.safeParse(json)
  if (!r.success) throw new Error(`${file}: ${formatIssues(r.error.issues)}`)
  const { input_ids: ids, labels } = r.data
  const T = ids[0].length
  if (T === 0) throw new Error(`${file}: input_ids.0: empty sequence`)
  ids.forEach((row, b) => {
    if (row.length !== T) throw new Error(`${file}: input_ids.${b}: ${row.length} tokens, row 0 has ${T}; all rows must have one length`)
    row.forEach((id, t) => {
      if (id < 0 || id >= vocabSize)
        throw new Error(`${file}: input_ids.${b}.${t}: token id ${id} is outside the vocabulary [0, ${vocabSize})`)
    })
  })
  if (labels) {
    if (labels.length !== ids.length) throw new Error(`${file}: labels: ${labels.length} rows, input_ids has ${ids.length}`)
    labels.forEach((row, b) => {
      if (row.length !== T) throw new Error(`${file}: labels.${b}: ${row.length} labels, input_ids rows have ${T}`)
      row.forEach((y, t) => {
        if (y !== -100 && (y < 0 || y >= vocabSize))
          throw new Error(`${file}: labels.${b}.${t}: ${y} is neither a token id in [0, ${vocabSize}) nor -100`)
      })
    })
  }
  return { inputIds: ids, labels }
}

export async function forwardCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const dir = requireModelDir(values)
  const inputFile = resolve(requireString(values, 'input'))
  const outFile = resolve(requireString(values, 'out'))
  if (!existsSync(dirname(outFile))) throw new UsageError(`--out: folder ${dirname(outFile)} does not exist`)
  const backend = await backendFromFlag(values, io)
  const model = loadModel(dir)
  try {
    const input = readForwardInput(inputFile, model.config.vocabSize)
    if (values.grads && !input.labels) throw new Error(`${inputFile}: --grads needs "labels" (the gradient is of the loss)`)
    const tensors = forwardTensors(model, input, Boolean(values.grads))
    saveSafetensors(outFile, tensors, { producer: 'moe-workbench forward', backend })
    const B = input.inputIds.length
    const T = input.inputIds[0].length
    io.out(`wrote ${tensors.size} tensors for a [${B}, ${T}] batch to ${outFile} (backend ${backend})`)
    if (input.labels) {
      const scalar = (n: string): number => (tensors.get(n)!.data as Float32Array)[0]
      io.out(`loss ${scalar('loss').toFixed(6)}  aux_loss ${scalar('aux_loss').toFixed(6)}  z_loss ${scalar('z_loss').toFixed(6)}`)
    }
    return 0
  } finally {
    model.dispose()
  }
}

/** The forward command's output tensors (logits, routing, losses and gradients). */
export function forwardTensors(model: MoeModel, input: ForwardInput, grads: boolean): Map<string, TensorToWrite> {
  const c = model.config
  const out = new Map<string, TensorToWrite>()
  const B = input.inputIds.length
  const T = input.inputIds[0].length
  tf.tidy(() => {
    const labels = input.labels ?? input.inputIds.map((r) => r.map(() => -100))
    const o = objective(model, { inputIds: input.inputIds, labels })
    out.set('logits', { dtype: 'F32', shape: [B, T, c.vocabSize], data: o.logits.dataSync() as Float32Array })
    for (const r of o.routing) {
      out.set(`router_logits.${r.layer}`, { dtype: 'F32', shape: [B * T, c.numExperts], data: r.routerLogits.dataSync() as Float32Array })
      out.set(`topk.${r.layer}`, { dtype: 'I32', shape: [B * T, c.topK], data: Int32Array.from(r.decision.topk) })
    }
    if (input.labels) {
      out.set('loss', { dtype: 'F32', shape: [], data: Float32Array.of(o.loss.dataSync()[0]) })
      out.set('aux_loss', { dtype: 'F32', shape: [], data: Float32Array.of(o.aux.dataSync()[0]) })
      out.set('z_loss', { dtype: 'F32', shape: [], data: Float32Array.of(o.z.dataSync()[0]) })
    }
  })
  if (grads && input.labels) {
    const g = lossAndGrads(model, { inputIds: input.inputIds, labels: input.labels })
    try {
      for (const s of model.specs)
        out.set(`grad.${s.name}`, { dtype: 'F32', shape: s.shape, data: g.grads.get(s.name)!.dataSync() as Float32Array })
    } finally {
      disposeGrads(g.grads)
    }
  }
  return out
}

function numberFlag(values: ParsedValues, flag: string, ok: (n: number) => boolean, what: string): number | undefined {
  const v = values[flag]
  if (v === undefined) return undefined
  const n = Number(v)
  if (typeof v !== 'string' || v.trim() === '' || !ok(n)) throw new UsageError(`--${flag}: "${String(v)}" must be ${what}`)
  return n
}

/** --greedy, or sampling with --temperature --top-k --top-p --min-p --repetition-penalty --seed. */
export function samplingFromFlags(values: ParsedValues): SamplingOptions {
  const s: SamplingOptions = {
    greedy: values.greedy === true,
    temperature: numberFlag(values, 'temperature', (n) => n > 0, 'a number > 0'),
    topK: numberFlag(values, 'top-k', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
    topP: numberFlag(values, 'top-p', (n) => n > 0 && n <= 1, 'a number in (0, 1]'),
    minP: numberFlag(values, 'min-p', (n) => n >= 0 && n < 1, 'a number in [0, 1)'),
    repetitionPenalty: numberFlag(values, 'repetition-penalty', (n) => n > 0, 'a number > 0'),
    seed: numberFlag(values, 'seed', (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer'),
  }
  return s
}

function parseIds(text: string, flag: string): number[] {
  const parts = text.split(',').map((s) => s.trim())
  const ids = parts.map((p) => Number(p))
  const bad = parts.findIndex((p, i) => p === '' || !Number.isInteger(ids[i]) || ids[i] < 0)
  if (bad >= 0)
    throw new UsageError(
      `${flag}: "${parts[bad]}" (item ${bad + 1}) is not a token id; give comma-separated non-negative integers like 1,2,3`,
    )
  return ids
}

/** Parses sizes like 256MB, 1.5GiB, 4096B, 2000000 (bytes from 1 MiB up without a unit). */
export function parseBytes(text: string, flag: string): number {
  const bytes = parseSize(text)
  if (bytes === null && unitless(text))
    throw new UsageError(
      `${flag}: "${text}" has no unit (as bytes it is ${text.trim()} B): write e.g. ${text.trim()}GB or ${text.trim()}GiB`,
    )
  if (bytes === null && tooLarge(text))
    throw new UsageError(`${flag}: "${text}" is more than any machine holds (8 PiB at most); write e.g. 256MB, 1.5GB or 8GiB`)
  if (bytes === null) throw new UsageError(`${flag}: "${text}" is not a size above 0; write e.g. 256MB, 1.5GB, 8GiB or 4096B`)
  return bytes
}

/** --expert-dtype: a host storage of paged weights. */
function storageFromFlag(value: unknown): ExpertStorage {
  if (!EXPERT_STORAGES.includes(value as ExpertStorage))
    throw new UsageError(`--expert-dtype: "${String(value)}" must be one of ${EXPERT_STORAGES.join(', ')}`)
  return value as ExpertStorage
}

/** A positive whole number of tokens. */
function positiveInt(value: unknown, flag: string): number {
  const n = Number(value)
  if (!(Number.isInteger(n) && n > 0)) throw new UsageError(`${flag}: "${String(value)}" must be a positive number of tokens`)
  return n
}

/**
 * --context N: a positive number of tokens, at most the model's positions (more was planned for:
 * a KV cache the model can never fill, counted against the budget).
 */
function contextFromFlag(value: unknown, dir: string): number {
  const n = positiveInt(value, '--context')
  const positions = readModelConfig(dir).maxPositionEmbeddings
  if (n > positions)
    throw new UsageError(
      `--context: ${n} is more than the model's ${positions} positions (max_position_embeddings); give at most ${positions}`,
    )
  return n
}

/**
 * --offload-budget SIZE [--expert-dtype f32|f16|bf16|int8|lazy] → offload options: the device
 * budget for everything the model uses; what does not fit pages from the host storage named.
 * `dir`: the model folder, whose positions bound --context.
 */
export function offloadFromFlags(values: ParsedValues, dir: string): OffloadOptions | undefined {
  const dtype = values['expert-dtype']
  if (values['offload-budget'] === undefined) {
    if (dtype !== undefined) throw new UsageError('--expert-dtype needs --offload-budget')
    // It sizes the budget's KV cache and holds a chat to it: alone it would do nothing.
    if (values.context !== undefined) throw new UsageError('--context needs --offload-budget (the context that budget is planned for)')
    return undefined
  }
  const storage = storageFromFlag(dtype ?? 'lazy')
  const context = values.context === undefined ? undefined : contextFromFlag(values.context, dir)
  return {
    budgetBytes: parseBytes(String(values['offload-budget']), '--offload-budget'),
    storage,
    prefetch: values.prefetch === true,
    ...(context !== undefined && { contextTokens: context }),
  }
}

export function formatOffloadStats(s: OffloadStats): string[] {
  const lines = [
    `paging: budget ${formatBudget(s.budgetBytes)}; cache ${formatBytes(s.residentBytes)} of ${formatBytes(s.cacheBytes)} (peak ${formatBytes(s.peakBytes)}), ${s.storage} host storage, ${s.policy} eviction; ${formatBytes(s.bytesMoved)} moved to the device, ${formatBytes(s.bytesRead)} read from the checkpoint`,
    `paging: experts hit rate ${(s.hitRate * 100).toFixed(1)}% (${s.hits} hits, ${s.misses} misses, counted per expert); other units ${s.otherHits} hits, ${s.otherMisses} misses; prefetched ${s.prefetched} experts: ${s.prefetchUsed} used, ${s.prefetchUnused} evicted unused`,
  ]
  if (s.layers.length)
    lines.push(`paging: expert hits per layer ${s.layers.map((l) => `${l.layer}: ${l.hits}/${l.hits + l.misses}`).join(', ')}`)
  return lines
}

export async function generateCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const dir = requireModelDir(values)
  // --prompt TEXT (the model's tokenizer, no chat template: `chat` applies one) or --prompt-ids.
  if ((values.prompt === undefined) === (values['prompt-ids'] === undefined))
    throw new UsageError('give the prompt as --prompt TEXT or as --prompt-ids 1,2,3 (one of them)')
  // Ids alone need no tokenizer: one that does not load only leaves the text out.
  const tokenizer = existsSync(join(dir, 'tokenizer.json'))
    ? await loadTokenizer(dir).catch((e: unknown) => {
        if (values.prompt !== undefined)
          throw new UsageError(`--prompt: ${dir}'s tokenizer does not load (${(e as Error).message}); give --prompt-ids instead`)
        return null
      })
    : null
  let prompt: number[]
  if (values.prompt !== undefined) {
    if (!tokenizer) throw new UsageError(`--prompt: ${dir} has no tokenizer.json to read text with; give --prompt-ids instead`)
    const ids = tokenizer.encode(String(values.prompt))
    prompt = tokenizer.addsBos && tokenizer.bosId !== null ? [tokenizer.bosId, ...ids] : ids
    if (prompt.length === 0) throw new UsageError('--prompt: the text is empty; write a prompt')
  } else prompt = parseIds(requireString(values, 'prompt-ids'), '--prompt-ids')
  const maxText = requireString(values, 'max-new-tokens')
  const maxNewTokens = Number(maxText)
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0)
    throw new UsageError(`--max-new-tokens: "${maxText}" is not a non-negative integer`)
  const sampling = samplingFromFlags(values)
  const offload = offloadFromFlags(values, dir)
  // Before the load, whose plan would size a cache for all those positions and call it memory.
  const positions = readModelConfig(dir).maxPositionEmbeddings
  if (prompt.length + maxNewTokens > positions)
    throw new UsageError(
      `--max-new-tokens: prompt (${prompt.length}) + new tokens (${maxNewTokens}) exceed the model's ${positions} positions`,
    )
  const backend = await backendFromFlag(values, io)
  const loadStart = performance.now()
  const model = await loadModelAsync(dir, {
    offload,
    contextTokens: prompt.length + maxNewTokens,
    hooks: { onProgress: loadProgressLines(io, basename(dir)) },
  })
  const loadMs = performance.now() - loadStart
  try {
    if (model.paging) io.err(`plan: ${model.paging.placement.fit.message}`)
    const V = model.config.vocabSize
    const bad = prompt.find((id) => id >= V)
    if (bad !== undefined) throw new UsageError(`--prompt-ids: token id ${bad} is outside the vocabulary [0, ${V})`)
    const started = performance.now()
    let firstTokenMs = 0
    const opts = {
      maxNewTokens,
      sampling,
      useCache: !values['no-cache'],
      onToken: (_t: number, step: number) => void (step === 0 && (firstTokenMs = performance.now() - started)),
    }
    const r = readsSync() ? generate(model, prompt, opts) : await generateAsync(model, prompt, opts)
    const seconds = (performance.now() - started) / 1000
    const decodeRate = r.newTokens.length > 1 ? (r.newTokens.length - 1) / Math.max((seconds * 1000 - firstTokenMs) / 1000, 1e-9) : 0
    // The text where the model reads text (the new tokens' own, special tokens left out).
    const text = tokenizer ? tokenizer.decode(r.newTokens, true) : null
    if (!values.json) {
      if (text !== null) io.out(`text: ${JSON.stringify(text)}`)
      io.out(`new token ids: ${r.newTokens.join(',')}`)
    }
    io.err(
      `${r.newTokens.length} tokens in ${seconds.toFixed(2)} s (loaded in ${(loadMs / 1000).toFixed(1)} s; first token after ${(firstTokenMs / 1000).toFixed(2)} s, then ${decodeRate.toFixed(2)} tokens/s; backend ${backend}, stopped by ${r.stoppedBy})`,
    )
    const stats = model.pagingStats()
    if (stats) for (const line of formatOffloadStats(stats)) io.err(line)
    if (values.json)
      io.out(
        JSON.stringify({
          output_ids: r.outputIds,
          ...(text !== null && { text }),
          backend,
          load_ms: Math.round(loadMs),
          first_token_ms: Math.round(firstTokenMs),
          decode_tokens_per_s: decodeRate,
          paging: stats ? { ...stats, layers: undefined } : null,
        }),
      )
    return 0
  } finally {
    model.dispose()
  }
}

/** Model load progress on stderr, every 2 s (a large model's resident weights take a while). */
export function loadProgressLines(io: CliIo, what: string): (p: StageProgress) => void {
  let last = Date.now()
  return (p) => {
    if (Date.now() - last < 2000 || p.total <= 0) return
    last = Date.now()
    io.err(`loading ${what}: ${Math.round((100 * p.done) / p.total)}% of ${formatGiB(p.total)}`)
  }
}

/**
 * A task's progress on stderr ("Scoring: 12 of 50", "Loading: 45% of 1.2 GiB"), every 2 s at most,
 * from the first unit done (the first line 2 s in): a line of 0 of N said nothing the command's
 * start did not, and a stage that cannot tell its total (0) prints nothing.
 */
export function taskProgressLines(
  io: CliIo,
  now: () => number = Date.now,
): (p: Pick<TaskProgress, 'label' | 'done' | 'total' | 'unit'>) => void {
  return progressLines((line) => io.err(line), now)
}

function formatGiB(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(0)} MiB`
}
