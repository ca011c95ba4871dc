/**
 * The fit planner: before any load (chat, expert analysis, training, export, CLI, API), decide
 * where every weight of a model lives within a device budget, or refuse with the numbers and
 * what to change, before anything is allocated.
 *
 * The budget is all device memory the model may use: resident weights, the cache of paged
 * weights, the KV cache, activations and (training) adapters with their gradients and optimiser
 * state. When everything fits, everything is resident. Otherwise:
 *   - the small tensors (norms, routers, biases) stay resident;
 *   - the embedding stays on the host: each batch's rows are gathered from there;
 *   - attention, dense MLPs and shared experts stay resident while the budget allows (they run for
 *     every token), layer by layer, leaving the cache room for a token's experts; the rest page;
 *   - lm_head stays resident if it still fits, else it pages in vocabulary chunks;
 *   - routed experts page through the cache, which gets the rest of the budget.
 * Host memory is planned too: a host store other than 'lazy' must fit what the machine has.
 */
import { totalmem } from 'node:os'
import type { BackendName } from '../../shared/api'
import { formatBudget, formatNeed } from '../../shared/bytes'
import { plannedContext, type EvictionPolicy, type ExpertStorage, type FitPlan } from '../../shared/chat'
import { countParams, sparseLayers, type MoeConfig } from '../../shared/modelConfig'
import { PREFILL_CHUNK } from './generate'
import { storageBytes } from './hostStore'
import { modelUnits, smallSpecs, type Unit } from './units'

const MiB = 2 ** 20
const GiB = 2 ** 30
const fmt = (n: number): string =>
  n >= GiB ? `${(n / GiB).toFixed(2)} GiB` : n >= MiB ? `${(n / MiB).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`
const fmtUp = formatNeed
const fmtDown = formatBudget
export { formatBudget }

/** The wasm backend's heap is 32-bit: at most 4 GiB, some of it the runtime's own. */
export const WASM_HEAP_BYTES = 4 * GiB
const WASM_USABLE_BYTES = WASM_HEAP_BYTES - 384 * MiB

/** The share of this machine's memory a CPU backend (its weights in that memory) is planned within at most. */
export const HOST_USABLE_SHARE = 0.8

/**
 * The ceiling of device memory a backend imposes, or null (a GPU: TF.js tells no memory size):
 * the wasm heap, or for the CPU backends, whose device memory is this machine's, a share of it (a
 * budget of 200 GB on a 24 GB machine planned "fits resident", and loading would have run out).
 */
export function deviceLimit(backend: BackendName | undefined, memory = totalmem()): number | null {
  if (backend === 'wasm') return WASM_USABLE_BYTES
  if (backend === 'cpu' || backend === 'tfjs-node') return Math.floor(memory * HOST_USABLE_SHARE)
  return null
}

/**
 * The budget when the user sets none: MOE_WORKBENCH_DEVICE_BUDGET (bytes, or 4GB-style), else
 * wasm 3 GiB of its 4 GiB heap, the CPU backends 40% of memory, a GPU 4 GiB (WebGPU and CUDA
 * through TF.js tell no memory size; set the variable or a budget for a bigger card).
 */
export function defaultBudget(backend: BackendName | undefined, env: NodeJS.ProcessEnv = process.env): number {
  const set = env.MOE_WORKBENCH_DEVICE_BUDGET?.trim()
  if (set) {
    const m = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i.exec(set)
    const mult: Record<string, number> = { b: 1, kb: 1e3, kib: 2 ** 10, mb: 1e6, mib: MiB, gb: 1e9, gib: GiB }
    if (m) return Math.floor(Number(m[1]) * mult[(m[2] ?? 'b').toLowerCase()])
  }
  if (backend === 'wasm') return 3 * GiB
  if (backend === 'cpu' || backend === 'tfjs-node' || backend === undefined) return Math.floor(totalmem() * 0.4)
  return 4 * GiB
}

export interface TrainingPlan {
  method: 'full' | 'lora' | 'freeze'
  /** Values of the trainable tensors (LoRA adapters, or the weights trained). */
  trainableParams: number
  batch: number
  seqLength: number
  /** The run's experts per token, where it changes the model's (activations, and the page cache holds a token's experts). */
  topK?: number
}

export interface PlanRequest {
  budgetBytes: number
  /** Host storage of paged weights (default lazy). */
  storage?: ExpertStorage
  policy?: EvictionPolicy
  /** Context the KV cache is planned for (default min(2048, max positions)); 0 for training. */
  contextTokens?: number
  training?: TrainingPlan
  backend?: BackendName
  /** The backend's device ceiling (default from the backend). */
  deviceLimitBytes?: number | null
  /** Largest buffer the device can bind (webgpu): every unit must stay below it. */
  maxBindingBytes?: number
  /** Host bytes a host store may take (default 50% of memory, less the budget on host backends). */
  hostLimitBytes?: number
}

/** The planner's answer: the FitPlan the API shows, and what the loader needs. */
export interface Placement {
  fit: FitPlan
  /** Hub names of the tensors that stay on the device. */
  resident: Set<string>
  /** Units paged through the cache. */
  paged: Unit[]
  /** Every unit of the model as cut for this plan (lm_head chunks included). */
  units: Unit[]
  embedOnHost: boolean
  storage: ExpertStorage
  policy: EvictionPolicy
  cacheBytes: number
}

/**
 * The storage a paged tensor gets: 8-bit applies to experts and MLPs (per-row scales suit them);
 * attention, lm_head and the embedding stay 16-bit under it, where 8-bit per-row errors add up.
 */
export function hostStorageOf(storage: ExpertStorage, kind: Unit['kind'] | 'embed'): ExpertStorage {
  return storage === 'int8' && kind !== 'expert' && kind !== 'mlp' && kind !== 'shared' ? 'bf16' : storage
}

/** Activation bytes of one forward over `tokens` positions attending to `context` (rough, generous). */
function activationBytes(c: MoeConfig, tokens: number, context: number, logitRows: number): number {
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  const perToken = 8 * c.hiddenSize + 2 * q + 2 * kv + 3 * c.topK * c.expertIntermediateSize + 3 * c.sharedExpertIntermediateSize
  const scores = 2 * c.numHeads * tokens * context
  return 4 * (tokens * perToken + scores + 3 * logitRows * c.vocabSize)
}

/** Plans a model within a budget; see the module comment. Never throws: `fit.fits` says. */
export function planPlacement(c: MoeConfig, req: PlanRequest): Placement {
  // A run that routes each token to more (or fewer) experts than the model: its activations, and a
  // page cache that holds one token's experts of a layer.
  if (req.training?.topK !== undefined) c = { ...c, topK: req.training.topK }
  const storage = req.storage ?? 'lazy'
  const policy = req.policy ?? 'lfu'
  const limit = req.deviceLimitBytes !== undefined ? req.deviceLimitBytes : deviceLimit(req.backend)
  // A budget above what the backend can address is planned at its ceiling, and the plan says so.
  const budget = limit !== null ? Math.min(req.budgetBytes, limit) : req.budgetBytes
  const capNote =
    budget >= req.budgetBytes
      ? ''
      : req.backend === 'wasm'
        ? ` (planned for ${fmtDown(budget)} of the ${fmtDown(req.budgetBytes)} asked, all the wasm backend can use: the wasm heap is 4 GiB, some of it its own)`
        : ` (planned for ${fmtDown(budget)} of the ${fmtDown(req.budgetBytes)} asked, ${HOST_USABLE_SHARE * 100}% of this machine's ${fmt(totalmem())} of memory, where the ${req.backend ?? 'current'} backend keeps its weights)`
  const hostCpu = req.backend === 'cpu' || req.backend === 'wasm' || req.backend === 'tfjs-node' || req.backend === undefined
  const hostLimit = req.hostLimitBytes ?? Math.max(0, Math.floor(totalmem() * 0.5) - (hostCpu ? budget : 0))
  const params = countParams(c)
  const modelBytes = params.total * 4
  const small = smallSpecs(c).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1) * 4, 0)
  const t = req.training
  const context = t ? t.seqLength : plannedContext(c.maxPositionEmbeddings, req.contextTokens)
  const kvCacheBytes = t ? 0 : 2 * c.numLayers * c.numKvHeads * c.headDim * context * 4
  // Generation prefills a prompt in chunks (generate.ts PREFILL_CHUNK) attending to the whole context.
  const tokens = t ? t.batch * t.seqLength : Math.min(context, PREFILL_CHUNK)
  // Training keeps every layer's input (layer-by-layer backward) and one layer's activations twice.
  const activations = t
    ? activationBytes(c, tokens, t.seqLength, tokens) * 2 + c.numLayers * tokens * c.hiddenSize * 4
    : activationBytes(c, tokens, context, 1)
  // Trainable values, their gradients and AdamW's two moments.
  const trainingBytes = t ? t.trainableParams * 4 * 4 : 0
  const reserve = kvCacheBytes + activations + trainingBytes
  const allUnits = modelUnits(c)
  const experts = allUnits.filter((u) => u.kind === 'expert')
  const expertBytes = experts[0]?.bytes ?? 0
  const totalExpertBytes = experts.length * expertBytes
  const layersSparse = sparseLayers(c).length

  const fit = (over: Partial<FitPlan> & { fits: boolean; message: string }): FitPlan => ({
    budgetBytes: budget,
    deviceLimitBytes: limit,
    residentBytes: 0,
    expertBytes,
    totalExpertBytes,
    modelBytes,
    kvCacheBytes,
    activationBytes: activations,
    trainingBytes,
    ...(t && { trainableParams: t.trainableParams }),
    cacheBytes: 0,
    expertBudgetBytes: 0,
    cachedExperts: 0,
    totalExperts: experts.length,
    embedding: 'resident',
    headChunks: 0,
    pagedLayers: [],
    hostBytes: 0,
    hostLimitBytes: hostLimit,
    storage,
    fitsResident: false,
    predictedBytes: 0,
    ...over,
    message: over.message + capNote,
  })
  const refuse = (message: string, extra: Partial<FitPlan> = {}): Placement => ({
    fit: fit({ ...extra, fits: false, message }),
    resident: new Set(),
    paged: [],
    units: allUnits,
    embedOnHost: true,
    storage,
    policy,
    cacheBytes: 0,
  })

  // 1. Everything resident.
  if (modelBytes + reserve <= budget)
    return {
      fit: fit({
        fits: true,
        fitsResident: true,
        residentBytes: modelBytes,
        predictedBytes: modelBytes + reserve,
        cachedExperts: experts.length,
        expertBudgetBytes: totalExpertBytes,
        message: `fits resident: ${fmt(modelBytes)} of weights, ${fmt(kvCacheBytes)} of KV cache (${context} tokens)${t ? `, ${fmt(trainingBytes)} for training` : ''} and ${fmt(activations)} of activations within ${fmt(budget)}`,
      }),
      resident: new Set([
        ...smallSpecs(c).map((s) => s.name),
        'model.embed_tokens.weight',
        ...allUnits.flatMap((u) => u.parts.map((p) => p.name)),
      ]),
      paged: [],
      units: allUnits,
      embedOnHost: false,
      storage,
      policy,
      cacheBytes: 0,
    }
  if (t && t.method !== 'lora')
    return refuse(
      `${t.method} fine-tuning keeps every trained weight on the device: ${fmt(modelBytes)} of weights and ${fmt(reserve)} for training exceed the budget of ${fmtDown(budget)}; raise the budget to ${fmtUp(modelBytes + reserve)} or use LoRA, which pages the frozen base weights`,
    )

  // 2. Paged (lm_head in the chunks it is always computed in).
  const units = allUnits
  const headUnits = units.filter((u) => u.kind === 'head')
  const headBytes = headUnits.reduce((a, u) => a + u.bytes, 0)
  // The cache must hold a token's experts of one layer (k) and the largest paged non-expert unit.
  const largest = Math.max(...units.map((u) => u.bytes))
  const cacheFloor = Math.max(largest, c.topK * expertBytes)
  let free = budget - reserve - small
  if (free < cacheFloor)
    return refuse(
      `does not fit: ${fmt(small)} of norms and routers, ${fmt(reserve)} of KV cache, activations${t ? ' and training state' : ''} and a cache for the weights paged in at once (${fmt(cacheFloor)}: ${largest > c.topK * expertBytes ? 'the largest paged tensor' : `one layer's ${c.topK} experts, as a token uses them`}) need ${fmtUp(small + reserve + cacheFloor)}, more than the budget of ${fmtDown(budget)}; raise the budget to at least ${fmtUp(small + reserve + cacheFloor)}${kvCacheBytes > 0 ? " or plan for a shorter context (Context in Chat's budget settings, the CLI's --context)" : ''}`,
      { residentBytes: small },
    )
  const resident = new Set(smallSpecs(c).map((s) => s.name))
  const paged: Unit[] = []
  const pagedLayers = new Set<number>()
  // Attention, dense MLPs and shared experts, layer by layer, while the cache keeps its floor.
  for (const u of units.filter((x) => x.kind === 'attention' || x.kind === 'mlp' || x.kind === 'shared')) {
    if (free - u.bytes >= cacheFloor) {
      free -= u.bytes
      for (const p of u.parts) resident.add(p.name)
    } else {
      paged.push(u)
      pagedLayers.add(u.layer!)
    }
  }
  // lm_head, if it still fits with room for the experts.
  if (free - headBytes >= cacheFloor) {
    free -= headBytes
    for (const u of headUnits) for (const p of u.parts) resident.add(p.name)
  } else paged.push(...headUnits)
  paged.push(...units.filter((u) => u.kind === 'expert'))
  const cacheBytes = free
  const residentBytes = budget - reserve - free
  const hostTensors = new Map<string, { shape: [number, number]; kind: Unit['kind'] | 'embed' }>()
  for (const u of paged)
    for (const p of u.parts) hostTensors.set(p.name, { shape: [p.rows ? c.vocabSize : p.shape[0], p.shape[1]], kind: u.kind })
  if (!resident.has('model.embed_tokens.weight'))
    hostTensors.set('model.embed_tokens.weight', { shape: [c.vocabSize, c.hiddenSize], kind: 'embed' })
  const hostBytes = [...hostTensors.values()].reduce((a, t) => a + storageBytes(hostStorageOf(storage, t.kind), t.shape[0], t.shape[1]), 0)
  const cachedExperts = expertBytes > 0 ? Math.floor(cacheBytes / expertBytes) : 0
  const headChunks = paged.some((u) => u.kind === 'head') ? headUnits.length : 0
  const plan = fit({
    fits: true,
    residentBytes,
    cacheBytes,
    expertBudgetBytes: cacheBytes,
    cachedExperts: Math.min(cachedExperts, experts.length),
    embedding: 'host',
    headChunks,
    pagedLayers: [...pagedLayers].sort((a, b) => a - b),
    hostBytes,
    predictedBytes: residentBytes + cacheBytes + reserve,
    message: '',
  })
  if (hostBytes > hostLimit)
    return refuse(
      `the ${storage} host store of the paged weights needs ${fmt(hostBytes)} of host memory, more than the ${fmt(hostLimit)} this machine allows; use storage "lazy" (read from the checkpoint files as needed) or a smaller one (${storage === 'int8' ? 'lazy' : 'int8'})`,
      { ...plan, fits: false },
    )
  plan.message =
    `fits with paging: ${fmt(residentBytes)} resident (norms, routers${pagedLayers.size < c.numLayers ? ', attention' : ''}${headChunks ? '' : ', lm_head'}), ` +
    `the embedding gathered from the host, ${headChunks ? `lm_head paged in ${headChunks} chunk${headChunks === 1 ? '' : 's'}, ` : ''}` +
    `${pagedLayers.size ? `attention of ${pagedLayers.size} of ${c.numLayers} layers paged, ` : ''}` +
    `a ${fmt(cacheBytes)} cache holding ${plan.cachedExperts} of ${experts.length} experts (${layersSparse} sparse layers × ${c.numExperts}); ` +
    `paged weights ${storage === 'lazy' ? 'read from the checkpoint files as needed' : `kept on the host as ${storage} (${fmt(hostBytes)})`}` +
    capNote
  // A tied lm_head kept resident is the embedding itself: then its rows need no host.
  return { fit: plan, resident, paged, units, embedOnHost: !resident.has('model.embed_tokens.weight'), storage, policy, cacheBytes }
}
