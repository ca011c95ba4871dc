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

/**
 * Where weights the device does not hold are kept on the host: decoded float32, 16-bit, 8-bit
 * (per-row scales), or not at all ('lazy': read from the checkpoint's safetensors files by offset
 * whenever needed, which keeps host memory flat).
 */
export const EXPERT_STORAGES = ['f32', 'f16', 'bf16', 'int8', 'lazy'] as const
export type ExpertStorage = (typeof EXPERT_STORAGES)[number]
export type EvictionPolicy = 'lru' | 'lfu'

/**
 * Running a model within a device budget. The budget is all device memory the model may use:
 * resident weights, the cache of paged weights, the KV cache and activations (and for training,
 * adapters, their gradients and optimiser state). Whatever does not fit is paged in from the host.
 */
export interface OffloadOptions {
  /** Device bytes for everything (see above). */
  budgetBytes: number
  /** Host storage of the paged weights (default lazy). */
  storage: ExpertStorage
  policy?: EvictionPolicy
  /**
   * Prefetch the next layer's likely experts (backends that read back synchronously; default off:
   * the reads do not overlap the computation yet, so unused prefetches cost time, measured ~10%).
   */
  prefetch?: boolean
  /** Context (prompt and reply) the KV cache and activations are planned for (default: plannedContext). */
  contextTokens?: number
}

/** The context a budget is planned for where none is given: enough for a conversation, far less than a 7B model's 32k positions. */
export const DEFAULT_CONTEXT_TOKENS = 2048
/** The most context a budget may be planned for (the model's own positions cap it further). */
export const MAX_CONTEXT_TOKENS = 1 << 20

/**
 * The context (prompt and reply, in tokens) a budget is planned for: the one asked for, else
 * DEFAULT_CONTEXT_TOKENS, never more than the model's positions. A conversation that outgrows it
 * is refused: its KV cache would outgrow what the budget set aside.
 */
export function plannedContext(positions: number, contextTokens?: number): number {
  return Math.min(contextTokens ?? DEFAULT_CONTEXT_TOKENS, positions)
}

export interface LayerCacheStats {
  layer: number
  hits: number
  misses: number
}

export interface OffloadStats {
  /** The device budget planned for (everything), and the cache's share of it. */
  budgetBytes: number
  cacheBytes: number
  /** Bytes of paged weights on the device now (the cache). */
  residentBytes: number
  /** Most bytes the cache ever held (never above its share of the budget). */
  peakBytes: number
  /** Bytes copied to the device for paged weights. */
  bytesMoved: number
  /** Bytes read from the checkpoint files (lazy storage). */
  bytesRead: number
  /** Experts found on the device / paged in, counted per expert (not per matrix). */
  hits: number
  misses: number
  hitRate: number
  /** Other paged units (attention blocks, dense MLPs, lm_head chunks): hits and misses. */
  otherHits: number
  otherMisses: number
  layers: LayerCacheStats[]
  prefetched: number
  /** Prefetched experts used before being evicted, and those evicted unused. */
  prefetchUsed: number
  prefetchUnused: number
  prefetchAccuracy: number
  storage: ExpertStorage
  policy: EvictionPolicy
}

/** How a model is placed within a device budget (the fit planner's answer). */
export interface FitPlan {
  /** The budget planned for (device bytes). */
  budgetBytes: number
  /** The backend's own ceiling (the wasm heap is 4 GiB), or null when it tells none. */
  deviceLimitBytes: number | null
  /** Float32 device bytes of the weights that stay resident. */
  residentBytes: number
  /** Float32 bytes of one expert / of all experts. */
  expertBytes: number
  totalExpertBytes: number
  /** Float32 bytes of the whole model. */
  modelBytes: number
  /** KV cache bytes for the planned context. */
  kvCacheBytes: number
  /** Activations and temporaries of one forward (or training step). */
  activationBytes: number
  /** Training: adapters (or trainable weights), their gradients and optimiser state. */
  trainingBytes: number
  /** Training: values the run trains (adapters, or the weights its method and freeze policy leave trainable). */
  trainableParams?: number
  /** Device bytes the cache of paged weights gets. */
  cacheBytes: number
  /** Bytes the experts get within the budget (the cache). */
  expertBudgetBytes: number
  /** Experts the cache holds at once. */
  cachedExperts: number
  totalExperts: number
  /** The embedding: on the device, or its rows gathered from the host per batch. */
  embedding: 'resident' | 'host'
  /** lm_head: resident, or paged in this many vocabulary chunks. */
  headChunks: number
  /** Layers whose attention (and dense MLP) weights are paged. */
  pagedLayers: number[]
  /** Host bytes the paged weights take (0 for lazy), and what host memory allows. */
  hostBytes: number
  hostLimitBytes: number
  storage: ExpertStorage
  /** Everything resident: no paging at all. */
  fitsResident: boolean
  /** Whether the model can run at all within the budget. */
  fits: boolean
  /** Device bytes once the cache is full. */
  predictedBytes: number
  message: string
}

/**
 * How a conversation becomes the model's input: `chat`, through the model's chat template; `plain`,
 * the last user message as it is (no template), as prompt/completion and plain-text datasets train
 * a model (such a model answers nonsense to a templated prompt).
 */
export type ChatFormat = 'chat' | 'plain'
/** The most tokens one reply may take (chat.send's maxNewTokens). */
export const MAX_NEW_TOKENS = 8192

export const CHAT_FORMATS = ['chat', 'plain'] as const satisfies readonly ChatFormat[]

export interface ChatSendArgs {
  /** Model folder. */
  model: string
  /** Default chat. */
  format?: ChatFormat
  /** The conversation so far, ending with the user's turn. */
  messages: ChatMessage[]
  sampling?: SamplingOptions
  /** At most MAX_NEW_TOKENS. */
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
  /** Whose chat template made the prompt; none for the plain format. */
  template: 'model' | 'default' | 'none'
}

export interface ChatStats {
  newTokens: number
  /** From the request to the first new token, the model load included. */
  firstTokenMs: number
  /** context: the reply filled the model's context (or the one an offload budget was planned for) before its max new tokens. */
  stoppedBy: 'max_new_tokens' | 'context' | 'stop_token' | 'stop_sequence' | 'callback' | 'cancelled'
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

/**
 * A reply's tokens and the experts each went to, as a saved conversation keeps them (so a
 * reopened reply still shows its routing): the layers once, then per token its text and, where
 * its routing arrived, its position, id, and per layer its experts and their weights (4 decimals).
 * About 300 bytes a token for a 16-layer top-2 model.
 */
export interface SavedTokens {
  /** The sparse layers, in the order each token's experts and weights list them. */
  layers: number[]
  pieces: SavedPiece[]
}

export interface SavedPiece {
  text: string
  /** Absent with the rest: the reply ended before this token's routing arrived. */
  position?: number
  token?: number
  /** Per layer of `layers`, its experts, best first. */
  experts?: number[][]
  /** Per layer of `layers`, the experts' weights. */
  weights?: number[][]
}

/** A message of a saved conversation: an assistant reply may keep its tokens' routing. */
export interface ConversationMessage extends ChatMessage {
  tokens?: SavedTokens
  /**
   * The prompt as the model saw it for this reply (the template applied), with each token's
   * routing: kept with the newest reply of a side only (each prompt holds the turns before it).
   */
  prompt?: SavedTokens
  /** A reply's tokens/s, prefill and why it stopped, as its line said when it was generated. */
  stats?: SavedStats
}

/** ChatStats as a conversation keeps them: the offload counters were the pane's then, not the reply's. */
export type SavedStats = Omit<ChatStats, 'offload'>

/** A saved conversation (workspace/conversations/<id>.json). */
export interface Conversation {
  id: string
  title: string
  model: string
  systemPrompt?: string
  messages: ConversationMessage[]
  /** How the messages were sent (absent: as the model was trained, chat unless it says plain). */
  format?: ChatFormat
  /**
   * The sampling and reply length its latest message was sent with (absent: saved before they
   * were kept): reopened, it goes on as it was. Every field of the form, greedy or not, so turning
   * greedy off again brings back the temperature that was set.
   */
  sampling?: SamplingOptions
  maxNewTokens?: number
  /** The right side of a side-by-side conversation: its model, its own turns and format. */
  compare?: { model: string; messages: ConversationMessage[]; format?: ChatFormat }
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
