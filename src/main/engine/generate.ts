/**
 * Autoregressive decoding with a KV cache (or full recomputation, for checking the cache).
 */
import * as tf from '@tensorflow/tfjs'
import type { KvCache, MoeModel } from './model'

export interface GenerateOptions {
  maxNewTokens: number
  /** Reuse keys and values of earlier positions (default true). */
  useCache?: boolean
  /** Stop after emitting one of these ids (default: the config's eos ids; [] to never stop). */
  stopTokens?: number[]
  /** Keep the last-position logits of every step (for tests and the CLI). */
  keepStepLogits?: boolean
  /** Called with each new token as it is chosen. Return false to stop. */
  onToken?: (token: number, step: number) => boolean | void
}

export interface GenerateResult {
  /** The prompt followed by the new tokens. */
  outputIds: number[]
  newTokens: number[]
  /** (steps, V) when keepStepLogits. */
  stepLogits?: Float32Array[]
  stoppedBy: 'max_new_tokens' | 'stop_token' | 'callback'
}

/** Index of the largest value, lowest index on ties. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i
  return best
}

function disposeCache(c: KvCache | undefined): void {
  if (!c) return
  for (const t of c.keys) t.dispose()
  for (const t of c.values) t.dispose()
}

/** Greedy decoding (argmax, lowest id on ties). */
export function generateGreedy(model: MoeModel, promptIds: number[], opts: GenerateOptions): GenerateResult {
  if (promptIds.length === 0) throw new RangeError('prompt_ids: the prompt must hold at least one token')
  if (!(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0)) throw new RangeError(`max_new_tokens must be a non-negative integer, got ${opts.maxNewTokens}`)
  const useCache = opts.useCache ?? true
  const eos = model.config.eosTokenId
  const stop = new Set(opts.stopTokens ?? (eos === null ? [] : Array.isArray(eos) ? eos : [eos]))
  const ids = [...promptIds]
  const newTokens: number[] = []
  const stepLogits: Float32Array[] = []
  let cache: KvCache | undefined
  let stoppedBy: GenerateResult['stoppedBy'] = 'max_new_tokens'
  try {
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const input = useCache && cache ? [ids.slice(-1)] : [ids]
      let next: KvCache | undefined
      let logits: Float32Array = new Float32Array(0)
      tf.tidy(() => {
        const f = model.forward(input, { cache: useCache ? cache : undefined, lastOnly: true })
        if (useCache) {
          next = f.cache
          for (const t of [...next.keys, ...next.values]) tf.keep(t)
        }
        logits = f.logits.dataSync() as Float32Array
      })
      if (useCache) {
        disposeCache(cache)
        cache = next
      }
      if (opts.keepStepLogits) stepLogits.push(logits)
      const token = argmax(logits)
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
    }
  } finally {
    disposeCache(cache)
  }
  return { outputIds: ids, newTokens, stepLogits: opts.keepStepLogits ? stepLogits : undefined, stoppedBy }
}
