/**
 * Chat, generation, expert offloading and routing analysis as every host sees them. Types only.
 */
import type { ChatMessage } from './dataset'

export interface SamplingOptions {
  /** Pick the most likely token (ignores every other option). */
  greedy?: boolean
  /** Divide logits by this (> 0); default 1. */
  temperature?: number
  /** Keep the k most likely tokens; 0 = off. */
  topK?: number
  /** Keep the smallest set of tokens whose probability reaches p; 1 = off. */
  topP?: number
  /** Drop tokens below minP × the top probability; 0 = off. */
  minP?: number
  /** CTRL-style penalty (> 1 discourages tokens already in the sequence); 1 = off. */
  repetitionPenalty?: number
  seed?: number
}

/**
 * The one set of sampling defaults (app, server, CLI): what a reply uses for every option the
 * caller leaves out. A seed left out is fresh for each reply.
 */
export const DEFAULT_SAMPLING = {
  temperature: 0.7,
  topK: 0,
  topP: 0.95,
  minP: 0,
  repetitionPenalty: 1,
} as const satisfies SamplingOptions

/** Which experts one token went to in each sparse layer. */
export interface TokenRouting {
  /** Position in the sequence. */
  position: number
  token: number
  layers: { layer: number; experts: number[]; weights: number[] }[]
}

export const EXPERT_STORAGES = ['f32', 'f16', 'bf16', 'int8', 'lazy'] as const
export type ExpertStorage = (typeof EXPERT_STORAGES)[number]
export type EvictionPolicy = 'lru' | 'lfu'

export interface OffloadOptions {
  /** Device bytes for cached experts (float32 on the device). */
  budgetBytes: number
  storage: ExpertStorage
  policy?: EvictionPolicy
  prefetch?: boolean
}

export interface LayerCacheStats {
  layer: number
  hits: number
  misses: number
}

export interface OffloadStats {
  budgetBytes: number
  residentBytes: number
  /** Most bytes the cache ever held (never above the budget). */
  peakBytes: number
  bytesMoved: number
  hits: number
  misses: number
  hitRate: number
  layers: LayerCacheStats[]
  prefetched: number
  /** Prefetched experts that were used before being evicted. */
  prefetchUsed: number
  prefetchAccuracy: number
  storage: ExpertStorage
  policy: EvictionPolicy
}

export interface FitPlan {
  /** Float32 bytes of everything but the routed experts (always resident). */
  residentBytes: number
  /** Float32 bytes of one expert / of all experts. */
  expertBytes: number
  totalExpertBytes: number
  /** KV cache bytes for the planned context. */
  kvCacheBytes: number
  /** Bytes the experts get within the budget. */
  expertBudgetBytes: number
  /** Experts the cache holds at once. */
  cachedExperts: number
  totalExperts: number
  /** Whether every expert fits (no offloading needed). */
  fitsResident: boolean
  /** Whether the model can run at all within the budget. */
  fits: boolean
  /** Persistent device bytes once the cache is full. */
  predictedBytes: number
  message: string
}

export interface ChatSendArgs {
  /** Model folder. */
  model: string
  /** The conversation so far, ending with the user's turn. */
  messages: ChatMessage[]
  sampling?: SamplingOptions
  maxNewTokens?: number
  /** Extra strings that end the reply. */
  stop?: string[]
  offload?: OffloadOptions
  /** Names the model load (when the model is not loaded yet) in task.progress events and for tasks.cancel. */
  taskId?: string
}

export interface ChatStarted {
  requestId: string
  /** The prompt as the model sees it (template applied) and its token count. */
  prompt: string
  promptTokens: number
  template: 'model' | 'default'
}

export interface ChatStats {
  newTokens: number
  stoppedBy: 'max_new_tokens' | 'stop_token' | 'stop_sequence' | 'callback' | 'cancelled'
  prefillMs: number
  decodeMs: number
  tokensPerSec: number
  offload?: OffloadStats
}

/**
 * A reply streams as: chat.prompt (the prompt's tokens and their routing), then per new token a
 * chat.token (its text, at once) and a chat.routing (its experts, once the token has gone through
 * the model, i.e. one step later), then chat.done or chat.error. chat.routing's `position` is
 * promptTokens + the token's index.
 */
export type ChatEvent =
  | { type: 'chat.prompt'; requestId: string; routing: TokenRouting[]; tokens: string[] }
  | { type: 'chat.token'; requestId: string; token: number; index: number; text: string; offload?: OffloadStats }
  | { type: 'chat.routing'; requestId: string; routing: TokenRouting }
  | { type: 'chat.done'; requestId: string; text: string; stats: ChatStats }
  | { type: 'chat.error'; requestId: string; message: string }

/** A saved conversation (workspace/conversations/<id>.json). */
export interface Conversation {
  id: string
  title: string
  model: string
  systemPrompt?: string
  messages: ChatMessage[]
  created: string
  updated: string
}

/** Expert usage of a model over some text (the Experts screen). */
export interface ExpertAnalysis {
  model: string
  tokens: number
  layers: {
    layer: number
    /** Fraction of (token, slot) choices per expert. */
    load: number[]
    /** Mean router entropy (nats). */
    entropy: number
    /** [i][j]: tokens that chose both i and j (diagonal: tokens that chose i). */
    coactivation: number[][]
    /** Per expert, the tokens routed to it most often. */
    topTokens: { text: string; count: number }[][]
  }[]
}

export interface ExpertsAnalyzeArgs {
  model: string
  /** Text to route (tokenised with the model's tokenizer). */
  text?: string
  /** Or a dataset id (its first rows, template applied). */
  dataset?: string
  maxRows?: number
  /** Names the analysis in task.progress events and for tasks.cancel. */
  taskId?: string
}
