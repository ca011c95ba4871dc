/**
 * Autoregressive decoding with a KV cache (or full recomputation, for checking the cache):
 * greedy or sampled (temperature, top-k, top-p, min-p, repetition penalty, seed), stop tokens and
 * stop sequences, streaming through callbacks, cancel, and the routing trace of every token.
 */
import * as tf from '@tensorflow/tfjs'
import type { SamplingOptions, TokenRouting } from '../../shared/chat'
import type { KvCache, MoeModel } from './model'
import { deviceLock } from './device'
import type { HostData } from './moe'
import { Rng, type Weights } from './ops'

export type { SamplingOptions, TokenRouting }

export interface GenerateOptions {
  maxNewTokens: number
  sampling?: SamplingOptions
  /** Reuse keys and values of earlier positions (default true). */
  useCache?: boolean
  /** Stop after emitting one of these ids (default: the config's eos ids; [] to never stop). */
  stopTokens?: number[]
  /** Stop when the generated ids end with one of these sequences. */
  stopSequences?: number[][]
  /** Keep the last-position logits of every step (for tests and the CLI). */
  keepStepLogits?: boolean
  /** Called with each new token as it is chosen. Return false to stop. */
  onToken?: (token: number, step: number) => boolean | void
  /** Called with the routing of the positions each forward processed (the prompt first). */
  onRouting?: (positions: TokenRouting[]) => void
  /** Run one more forward at the end so the last new token's routing is reported too. */
  routeLastToken?: boolean
  signal?: AbortSignal
  /** Weight source (LoRA adapters, offloaded experts). */
  weights?: Weights
}

export interface GenerateResult {
  /** The prompt followed by the new tokens. */
  outputIds: number[]
  newTokens: number[]
  /** (steps, V) when keepStepLogits. */
  stepLogits?: Float32Array[]
  stoppedBy: 'max_new_tokens' | 'stop_token' | 'stop_sequence' | 'callback' | 'cancelled'
  /** Prefill and per-token decode time. */
  prefillMs: number
  decodeMs: number
}

/** Index of the largest value, lowest index on ties. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i
  return best
}

/**
 * Picks the next token from last-position logits. Filters apply in HF's order: repetition
 * penalty, temperature, top-k, top-p, min-p; then a draw from the renormalised distribution.
 */
export function sampleToken(logits: Float32Array, history: number[], s: SamplingOptions, rng: Rng): number {
  if (s.greedy) return argmax(applyRepetitionPenalty(logits, history, s.repetitionPenalty ?? 1))
  const V = logits.length
  const z = applyRepetitionPenalty(logits, history, s.repetitionPenalty ?? 1)
  const temperature = s.temperature ?? 1
  if (!(temperature > 0)) throw new RangeError(`temperature must be > 0 (use greedy for argmax), got ${temperature}`)
  let max = -Infinity
  for (let i = 0; i < V; i++) max = Math.max(max, z[i] / temperature)
  const p = new Float64Array(V)
  let sum = 0
  for (let i = 0; i < V; i++) sum += p[i] = Math.exp(z[i] / temperature - max)
  for (let i = 0; i < V; i++) p[i] /= sum
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b)
  let keep = V
  if (s.topK && s.topK > 0) keep = Math.min(keep, s.topK)
  if (s.topP !== undefined && s.topP < 1) {
    // HF's TopPLogitsWarper takes the softmax of what top-k left: the kept mass renormalised.
    let mass = 0
    for (let r = 0; r < keep; r++) mass += p[order[r]]
    let acc = 0
    for (let r = 0; r < keep; r++) {
      acc += p[order[r]] / mass
      if (acc >= s.topP) {
        keep = r + 1
        break
      }
    }
  }
  if (s.minP && s.minP > 0) {
    const floor = s.minP * p[order[0]]
    let r = 1
    while (r < keep && p[order[r]] >= floor) r++
    keep = r
  }
  let total = 0
  for (let r = 0; r < keep; r++) total += p[order[r]]
  let u = rng.next() * total
  for (let r = 0; r < keep; r++) {
    u -= p[order[r]]
    if (u <= 0) return order[r]
  }
  return order[keep - 1]
}

function applyRepetitionPenalty(logits: Float32Array, history: number[], penalty: number): Float32Array {
  if (penalty === 1 || history.length === 0) return logits
  if (!(penalty > 0)) throw new RangeError(`repetition penalty must be > 0, got ${penalty}`)
  const out = logits.slice()
  for (const t of new Set(history)) out[t] = out[t] > 0 ? out[t] / penalty : out[t] * penalty
  return out
}

function disposeCache(c: KvCache | undefined): void {
  if (!c) return
  for (const t of c.keys) t.dispose()
  for (const t of c.values) t.dispose()
}

/**
 * A prompt goes through the model in chunks of at most this many tokens (with the KV cache), so
 * a long prompt's attention scores and activations stay bounded; each position sees the same
 * keys, so the logits are those of one pass.
 */
export const PREFILL_CHUNK = 256

/** What the decoding loop yields: a tensor to read back, or null at a token boundary. */
type DecodeYield = tf.Tensor | null

/**
 * The decoding loop as a generator: it yields the tensors it must read back (router scores,
 * logits) and null after each token, so the same code runs to completion with synchronous reads
 * (generate) or with asynchronous reads and pauses for other work (generateAsync).
 */
function* decodeSteps(
  model: MoeModel,
  promptIds: number[],
  opts: GenerateOptions,
): Generator<DecodeYield, GenerateResult, HostData | undefined> {
  if (promptIds.length === 0) throw new RangeError('prompt_ids: the prompt must hold at least one token')
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0))
    throw new RangeError(`max_new_tokens must be a non-negative integer, got ${opts.maxNewTokens}`)
  const V = model.config.vocabSize
  const bad = promptIds.find((t) => !(Number.isInteger(t) && t >= 0 && t < V))
  if (bad !== undefined) throw new RangeError(`prompt_ids: ${bad} is not a token id of this model (vocabulary ${V})`)
  const useCache = opts.useCache ?? true
  const sampling = opts.sampling ?? { greedy: true }
  const rng = new Rng(sampling.seed ?? 0)
  const eos = model.config.eosTokenId
  const stop = new Set(opts.stopTokens ?? (eos === null ? [] : Array.isArray(eos) ? eos : [eos]))
  const ids = [...promptIds]
  const newTokens: number[] = []
  const stepLogits: Float32Array[] = []
  let cache: KvCache | undefined
  let stoppedBy: GenerateResult['stoppedBy'] = 'max_new_tokens'
  let prefillMs = 0
  let decodeMs = 0
  const promptRouting: TokenRouting[] = []
  /** Runs the positions from `start` on (`length` of them: a prompt chunk); returns the last position's logits. */
  const forward = function* (start: number, first: boolean, length?: number): Generator<DecodeYield, Float32Array, HostData | undefined> {
    const input = [ids.slice(start, length === undefined ? undefined : start + length)]
    let next: KvCache | undefined
    const engine = tf.engine()
    engine.startScope('decode')
    let logits: Float32Array
    try {
      const f = yield* model.forwardSteps(input, {
        cache: useCache ? cache : undefined,
        lastOnly: true,
        weights: opts.weights,
      }) as Generator<DecodeYield, ReturnType<MoeModel['forward']>, HostData | undefined>
      if (useCache) {
        next = f.cache
        for (const t of [...next.keys, ...next.values]) tf.keep(t)
      }
      logits = ((yield f.logits) as Float32Array).slice()
      // With full recomputation only the newest position is new after the first forward. The
      // prompt's chunks are reported together, as one forward's.
      if (opts.onRouting) {
        const trace = routingTrace(f.routing, input[0], start, useCache || first ? 0 : input[0].length - 1)
        if (length !== undefined) promptRouting.push(...trace)
        else opts.onRouting(promptRouting.splice(0).concat(trace))
      }
    } finally {
      engine.endScope()
    }
    if (useCache) {
      disposeCache(cache)
      cache = next
    }
    return logits
  }
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      if (opts.signal?.aborted) {
        stoppedBy = 'cancelled'
        break
      }
      const t0 = performance.now()
      if (step === 0 && useCache)
        // Every chunk of the prompt but the last only fills the cache.
        for (let from = 0; from + PREFILL_CHUNK < ids.length; from += PREFILL_CHUNK) yield* forward(from, true, PREFILL_CHUNK)
      const logits = yield* forward(useCache && cache ? cache.length : 0, step === 0)
      if (step === 0) prefillMs = performance.now() - t0
      else decodeMs += performance.now() - t0
      if (opts.keepStepLogits) stepLogits.push(logits)
      const token = sampleToken(logits, ids, sampling, rng)
      ids.push(token)
      newTokens.push(token)
      if (opts.onToken?.(token, step) === false) {
        stoppedBy = 'callback'
        break
      }
      if (stop.has(token)) {
        stoppedBy = 'stop_token'
        break
      }
      if (
        opts.stopSequences?.some(
          (s) => s.length > 0 && s.length <= newTokens.length && s.every((t, i) => newTokens[newTokens.length - s.length + i] === t),
        )
      ) {
        stoppedBy = 'stop_sequence'
        break
      }
      yield null
    }
    // The last token's routing is only known once it goes through the model: one more forward.
    if (opts.onRouting && newTokens.length > 0 && opts.routeLastToken) yield* forward(useCache && cache ? cache.length : 0, false)
  } finally {
    disposeCache(cache)
  }
  return { outputIds: ids, newTokens, stepLogits: opts.keepStepLogits ? stepLogits : undefined, stoppedBy, prefillMs, decodeMs }
}

/** Generates up to maxNewTokens after the prompt (batch of one), reading back synchronously. */
export function generate(model: MoeModel, promptIds: number[], opts: GenerateOptions): GenerateResult {
  const steps = decodeSteps(model, promptIds, opts)
  let r = steps.next()
  while (!r.done) r = steps.next(r.value === null ? undefined : (r.value.dataSync() as HostData))
  return r.value
}

/**
 * generate() with asynchronous reads (every backend; the only way on webgpu), letting other work
 * (a cancel, another request) in between tokens. Each token's device work holds deviceLock.
 */
export async function generateAsync(model: MoeModel, promptIds: number[], opts: GenerateOptions): Promise<GenerateResult> {
  const steps = decodeSteps(model, promptIds, opts)
  let r: IteratorResult<DecodeYield, GenerateResult> | undefined
  for (;;) {
    r = await deviceLock.run(async () => {
      let s = steps.next()
      while (!s.done && s.value !== null) s = steps.next((await s.value.data()) as HostData)
      return s
    })
    if (r.done) return r.value
    await new Promise((resolve) => setImmediate(resolve))
  }
}

function routingTrace(routing: ReturnType<MoeModel['forward']>['routing'], tokens: number[], start: number, from: number): TokenRouting[] {
  const out: TokenRouting[] = []
  for (let n = from; n < tokens.length; n++) {
    out.push({
      position: start + n,
      token: tokens[n],
      layers: routing.map((r) => {
        const k = r.decision.k
        return {
          layer: r.layer,
          experts: Array.from(r.decision.topk.subarray(n * k, n * k + k)),
          weights: Array.from(r.weights.subarray(n * k, n * k + k)),
        }
      }),
    })
  }
  return out
}

/** Greedy decoding (argmax, lowest id on ties). */
export function generateGreedy(model: MoeModel, promptIds: number[], opts: Omit<GenerateOptions, 'sampling'>): GenerateResult {
  return generate(model, promptIds, { ...opts, sampling: { greedy: true } })
}
