/** Streamed chat replies in the engine process: one at a time per request id, cancellable. */
import { DEFAULT_SAMPLING, plannedContext, type ChatEvent, type ChatSendArgs, type ChatStarted } from '../../shared/chat'
import type { ChatMessage } from '../../shared/dataset'
import type { WorkbenchEvent } from '../../shared/api'
import type { ModelTokenizer } from '../data/tokenizer'
import type { TaskHooks } from '../engine/tasks'
import { generateAsync } from '../engine/generate'
import type { MoeModel } from '../engine/model'
import type { ModelCache } from './models'
import { TokenTextStream } from './textStream'

/** New tokens a reply may take where the request names no max. */
const DEFAULT_MAX_NEW = 256

type Emit = (event: WorkbenchEvent) => void
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
    const requested = performance.now()
    const lease = await this.models.get(args.model, args.offload, hooks)
    let started = false
    try {
      const { model, tokenizer, template, stopIds } = lease
      if (!tokenizer || !template)
        throw new Error(`${args.model} has no tokenizer.json; chat needs a tokenizer (generate from token ids with the CLI instead)`)
      const messages: ChatMessage[] = args.messages
      const plain = args.format === 'plain'
      // Plain: the last user message as prompt/completion rows trained the model (evaluate.ts reads them so too).
      const prompt = plain ? (messages.findLast((m) => m.role === 'user')?.content ?? '') : template.render(messages, true)
      const promptIds = tokenizer.encode(prompt)
      if (promptIds.length === 0) throw new Error(plain ? 'the message is empty: write a prompt' : 'the conversation renders to no tokens')
      // An offload budget is planned for a context (its default, the form's Context, the CLI's
      // --context) and holds the conversation to it: past it, the KV cache would outgrow what the
      // budget set aside.
      const positions = model.config.maxPositionEmbeddings
      const limit = args.offload ? plannedContext(positions, args.offload.contextTokens) : positions
      const maxNew = Math.min(args.maxNewTokens ?? DEFAULT_MAX_NEW, limit - promptIds.length)
      if (maxNew <= 0)
        throw new Error(
          limit < positions
            ? `the conversation (${promptIds.length} tokens) fills the ${limit}-token context the offload budget was planned for; start a new one, or plan a larger context (Context in the budget settings, the CLI's --context; up to the model's ${positions} positions)`
            : `the conversation (${promptIds.length} tokens) fills the model's ${positions} positions; start a new one or shorten it`,
        )
      const controller = new AbortController()
      this.active.set(requestId, controller)
      const stopSequences = (args.stop ?? []).map((s) => tokenizer.encode(s, true)).filter((s) => s.length > 0)
      const emit = (e: ChatEvent): void => this.emit(e)
      // Run after this request has been answered.
      setImmediate(
        () =>
          void this.run(requestId, model, tokenizer, promptIds, maxNew, args, stopIds, stopSequences, controller, emit, requested).finally(
            lease.release,
          ),
      )
      started = true
      return { requestId, prompt, promptTokens: promptIds.length, template: plain ? 'none' : template.source }
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
    stopTokens: number[],
    stopSequences: number[][],
    controller: AbortController,
    emit: (e: ChatEvent) => void,
    requested: number,
  ): Promise<void> {
    let firstTokenMs = 0
    const newTokens: number[] = []
    const stream = new TokenTextStream((ids) => tokenizer.decode(ids, true))
    let forwards = 0
    try {
      // Fewer new tokens than asked for: the rest of the context was all there was.
      const clamped = maxNew < (args.maxNewTokens ?? DEFAULT_MAX_NEW)
      const r = await generateAsync(model, promptIds, {
        maxNewTokens: maxNew,
        sampling: { ...DEFAULT_SAMPLING, seed: Date.now() % 2 ** 31, ...args.sampling },
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
          if (newTokens.length === 0) firstTokenMs = performance.now() - requested
          newTokens.push(token)
          const delta = stream.push(token)
          emit({ type: 'chat.token', requestId, token, index: newTokens.length - 1, text: delta, offload: model.pagingStats() })
        },
      })
      const seconds = r.decodeMs / 1000
      emit({
        type: 'chat.done',
        requestId,
        text: stream.text,
        stats: {
          newTokens: r.newTokens.length,
          firstTokenMs,
          stoppedBy: r.stoppedBy === 'max_new_tokens' && clamped ? 'context' : r.stoppedBy,
          prefillMs: r.prefillMs,
          decodeMs: r.decodeMs,
          tokensPerSec: r.newTokens.length > 1 ? (r.newTokens.length - 1) / Math.max(seconds, 1e-9) : 0,
          offload: model.pagingStats(),
        },
      })
    } catch (e) {
      emit({ type: 'chat.error', requestId, message: e instanceof Error ? e.message : String(e) })
    } finally {
      this.active.delete(requestId)
    }
  }
}
