/**
 * Chat: one conversation with a model (or two models side by side on the same prompts), the
 * sampling and offload settings, replies streamed from chat.* events with each token's routing,
 * and the saved conversations.
 *
 * chat.send answers with a requestId while tokens may already be on the way (they travel on the
 * event stream, the answer on another channel), so events for ids not yet known wait in a small
 * buffer until their send returns.
 */
import { defineStore } from 'pinia'
import { computed, markRaw, ref, watch } from 'vue'
import type { WorkbenchEvent } from '../../../shared/api'
import type {
  ChatEvent,
  ChatFormat,
  ChatSendArgs,
  ChatStats,
  Conversation,
  ConversationMessage,
  EvictionPolicy,
  ExpertStorage,
  OffloadStats,
  SamplingOptions,
  SavedStats,
  TokenRouting,
} from '../../../shared/chat'
import type { ChatMessage } from '../../../shared/dataset'
import {
  DEFAULT_CONTEXT_TOKENS,
  MAX_CONTEXT_TOKENS,
  MAX_NEW_TOKENS,
  DEFAULT_SAMPLING as SHARED_SAMPLING_DEFAULTS,
} from '../../../shared/chat'
import { keepNewestRouting, packTokens, promptPieces, unpackPrompt, unpackTokens } from '../../../shared/savedTokens'
import { useWorkbench } from '../api/client'
import { type UiError, isCancelled, toUiError } from '../errors'
import { contextProblem, parseBytes, sizeProblem } from '../format'
import { listener } from './listen'
import { useModelsStore } from './models'
import { useTasksStore } from './tasks'

export interface TokenPiece {
  text: string
  routing: TokenRouting | null
}

export interface ChatTurn {
  role: 'user' | 'assistant'
  content: string
  /** The reply's tokens with their routing, for replies generated in this session. */
  tokens?: TokenPiece[]
  /** The prompt as the model saw it (template applied), with each prompt token's routing. */
  prompt?: { tokens: string[]; routing: TokenRouting[] }
  promptTokens?: number
  streaming?: boolean
  stats?: ChatStats
  error?: string
  /** A neutral remark on how the reply ended early ("Stopped while the model was loading."). */
  note?: string
  requestId?: string
  /** The model-load task (tasks store) while chat.send has not answered. */
  taskId?: string
}

export interface ChatPane {
  model: string
  /** Templated chat, or the plain message (a model trained on prompt/completion or text rows). */
  format: ChatFormat
  turns: ChatTurn[]
  /** The latest expert-offload statistics of this pane's model (when offloading). */
  offload: OffloadStats | null
  /** A reply within a budget came with no paging statistics: the whole model fit, nothing is paged. */
  offloadResident?: boolean
}

export interface SamplingForm {
  greedy: boolean
  temperature: number
  topK: number
  topP: number
  minP: number
  repetitionPenalty: number
  /** null: a fresh random seed per reply. */
  seed: number | null
}

export interface OffloadForm {
  enabled: boolean
  /** What the user typed: "256 MiB". */
  budget: string
  storage: ExpertStorage
  policy: EvictionPolicy
  prefetch: boolean
  /** Tokens of context (prompt and reply) the budget is planned for, as typed; blank: DEFAULT_CONTEXT_TOKENS. */
  context: string
}

export const DEFAULT_SAMPLING: SamplingForm = { greedy: false, ...SHARED_SAMPLING_DEFAULTS, seed: null }

/** Events kept for request ids not known yet. */
const ORPHAN_LIMIT = 4000

/**
 * The first sampling setting the service would refuse, in the field's words (it answered
 * "sampling.topK: must be at least 0 (and 1 more)"); null when all are fine. Greedy sends none of them.
 */
export function samplingProblem(s: SamplingForm): UiError | null {
  if (s.greedy) return null
  const num = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x)
  const checks: [boolean, string, string][] = [
    [num(s.temperature) && s.temperature > 0 && s.temperature <= 100, 'temperature', 'Temperature: a number above 0, at most 100'],
    [num(s.topP) && s.topP > 0 && s.topP <= 1, 'topP', 'Top-p: a number above 0, at most 1'],
    [num(s.minP) && s.minP >= 0 && s.minP < 1, 'minP', 'Min-p: a number from 0, below 1'],
    [Number.isInteger(s.topK) && s.topK >= 0, 'topK', 'Top-k: a whole number, 0 or more (0 = off)'],
    [
      num(s.repetitionPenalty) && s.repetitionPenalty > 0 && s.repetitionPenalty <= 10,
      'repetitionPenalty',
      'Repetition penalty: a number above 0, at most 10 (1 = off)',
    ],
  ]
  const bad = checks.find(([ok]) => !ok)
  return bad ? { message: bad[2], field: `sampling.${bad[1]}` } : null
}

/** The whole form as a conversation keeps it (greedy and the settings greedy ignores). */
export function savedSampling(s: SamplingForm): SamplingOptions {
  const { seed, ...rest } = s
  return { ...rest, ...(seed !== null && { seed }) }
}

/** The form a conversation's saved sampling sets (what it lacks: the defaults). */
export function samplingFormOf(s: SamplingOptions): SamplingForm {
  return { ...DEFAULT_SAMPLING, ...s, greedy: s.greedy ?? false, seed: s.seed ?? null }
}

export function samplingArgs(s: SamplingForm): SamplingOptions {
  const seed = s.seed === null ? {} : { seed: s.seed }
  if (s.greedy) return { greedy: true, ...seed }
  return { temperature: s.temperature, topK: s.topK, topP: s.topP, minP: s.minP, repetitionPenalty: s.repetitionPenalty, ...seed }
}

/** The messages a pane sends: the system prompt, then the turns that completed, then `user`. */
export function historyOf(turns: ChatTurn[], systemPrompt: string): ChatMessage[] {
  return messagesOf(turns, systemPrompt, false)
}

/**
 * historyOf as a saved conversation keeps it: each reply with its tokens' routing (packTokens); a
 * reply still streaming is kept as far as it came, as a cancel would leave it (a reload or a quit
 * mid-reply lost the turn).
 */
export function savedHistoryOf(turns: ChatTurn[]): ConversationMessage[] {
  return messagesOf(turns, '', true)
}

/** The stats line of a reply saved while it streams: stopped there, as by a cancel. */
function partialStats(t: ChatTurn): SavedStats {
  return { newTokens: t.tokens?.length ?? 0, firstTokenMs: 0, stoppedBy: 'cancelled', prefillMs: 0, decodeMs: 0, tokensPerSec: 0 }
}

/** A reply's stats line as saved (the pane's offload counters stay out). */
function savedStats({ newTokens, firstTokenMs, stoppedBy, prefillMs, decodeMs, tokensPerSec }: ChatStats): SavedStats {
  return { newTokens, firstTokenMs, stoppedBy, prefillMs, decodeMs, tokensPerSec }
}

function messagesOf(turns: ChatTurn[], systemPrompt: string, withTokens: boolean): ConversationMessage[] {
  const out: ConversationMessage[] = systemPrompt.trim() ? [{ role: 'system', content: systemPrompt }] : []
  // The newest reply's prompt as the model saw it (a reopened conversation lost it): the turns
  // before it are in that prompt, so the older replies' prompts would only repeat them.
  const prompted = withTokens ? turns.findLastIndex((t) => t.role === 'assistant' && t.prompt && !t.error) : -1
  for (let i = 0; i < turns.length; i++) {
    const t = turns[i]
    const next = turns[i + 1]
    // A question whose reply failed is left out with it, so roles keep alternating.
    if (t.role === 'user' && next?.role === 'assistant' && (next.error || !next.content)) {
      i++
      continue
    }
    if (t.error || (t.streaming && !withTokens)) continue
    const tokens = withTokens && t.role === 'assistant' && t.tokens ? packTokens(t.tokens) : undefined
    const prompt = i === prompted ? packTokens(promptPieces(t.prompt!)) : undefined
    const stats =
      withTokens && t.role === 'assistant' ? (t.streaming ? partialStats(t) : t.stats ? savedStats(t.stats) : undefined) : undefined
    out.push({ role: t.role, content: t.content, ...(tokens && { tokens }), ...(prompt && { prompt }), ...(stats && { stats }) })
  }
  return out
}

/** How often a reply under way is saved as far as it came. */
export const SAVE_STREAMING_MS = 3000

/** Where the tab keeps the open conversation's id: a reload opens it again (it opened a blank one). */
export const OPEN_CONVERSATION_KEY = 'moe-workbench.chat.open'

function remember(id: string | null): void {
  try {
    if (id === null) sessionStorage.removeItem(OPEN_CONVERSATION_KEY)
    else sessionStorage.setItem(OPEN_CONVERSATION_KEY, id)
  } catch {
    // no storage (a locked-down browser): a reload opens a new conversation, as before
  }
}

function recall(): string | null {
  try {
    return sessionStorage.getItem(OPEN_CONVERSATION_KEY)
  } catch {
    return null
  }
}

export const useChatStore = defineStore('chat', () => {
  const conversations = ref<Conversation[]>([])
  const conversationsLoading = ref(false)
  const conversationsError = ref<UiError | null>(null)
  const conversationId = ref<string | null>(null)

  const systemPrompt = ref('')
  const sampling = ref<SamplingForm>({ ...DEFAULT_SAMPLING })
  const maxNewTokens = ref(256)
  /** The sampling and length the conversation's latest message was sent with (saved with it). */
  let sentWith: Pick<Conversation, 'sampling' | 'maxNewTokens'> = {}
  const offload = ref<OffloadForm>({ enabled: false, budget: '2 GiB', storage: 'lazy', policy: 'lru', prefetch: false, context: '' })

  const panes = ref<ChatPane[]>([{ model: '', format: 'chat', turns: [], offload: null }])
  const compareMode = computed(() => panes.value.length > 1)
  /** The sparse layer whose top expert colours the tokens (null: the first sparse layer). */
  const colourLayer = ref<number | null>(null)

  const sendError = ref<UiError | null>(null)
  /** Whether sendError is a reply's (each failed pane's turn shows it). */
  const sendErrorInReply = ref(false)
  /**
   * sendError where the composer shows it: none for a setting's (ChatSettings shows it by the
   * field) or for one the failed replies show already (a side-by-side chat said it three times).
   */
  const composerError = computed(() => {
    const f = sendError.value?.field
    if (sendErrorInReply.value || f?.startsWith('offload') || f?.startsWith('sampling') || f === 'maxNewTokens') return null
    return sendError.value
  })
  const streaming = computed(() => panes.value.some((p) => p.turns.some((t) => t.streaming)))

  /** requestId -> where its tokens go. */
  const targets = new Map<string, { pane: number; turn: number }>()
  const orphans = new Map<string, ChatEvent[]>()
  let orphanCount = 0
  /** Turns whose cancel was asked before their requestId was known. */
  const cancelWanted = new Set<ChatTurn>()
  /** Requests of a conversation the user left: their remaining events are dropped. */
  const ignored = new Set<string>()
  /** Bumped when the conversation is replaced, so sends of the old one find no turn to fill. */
  let epoch = 0

  /**
   * One model or two side by side. A conversation under way starts over (it stays in the list):
   * the left side's earlier turns went to the left model only, so the two would answer the same
   * prompt with different histories, and saving it one-sided would drop the right side's replies.
   */
  function setCompare(on: boolean): void {
    if (on === compareMode.value) return
    if (panes.value.some((p) => p.turns.length > 0) || conversationId.value !== null) newConversation()
    if (on && panes.value.length === 1) panes.value.push({ model: '', format: 'chat', turns: [], offload: null })
    if (!on && panes.value.length > 1) panes.value.splice(1)
  }

  function offloadArgs(): ChatSendArgs['offload'] | undefined {
    const o = offload.value
    if (!o.enabled) return undefined
    const budgetBytes = parseBytes(o.budget)
    if (budgetBytes === null)
      throw { message: `Offload budget: ${sizeProblem(o.budget, '256 MiB')}`, field: 'offload.budgetBytes' } satisfies UiError
    const context = o.context.trim()
    const problem = contextProblem(context, MAX_CONTEXT_TOKENS, DEFAULT_CONTEXT_TOKENS)
    if (problem) throw { message: `Context: ${problem}`, field: 'offload.contextTokens' } satisfies UiError
    return { budgetBytes, storage: o.storage, policy: o.policy, prefetch: o.prefetch, ...(context && { contextTokens: Number(context) }) }
  }

  /**
   * A pane's model the workspace no longer lists (deleted, or its link removed, since a
   * conversation with it was saved): its folder; null where it is listed, or not known yet.
   */
  function goneModel(index: number): string | null {
    const models = useModelsStore()
    const dir = panes.value[index]?.model
    return dir && models.loaded && !models.byDir(dir) ? dir : null
  }
  /** What to do about a pane's gone model, in words. */
  function goneMessage(index: number): string {
    const side = compareMode.value ? ` on the ${index === 0 ? 'left' : 'right'}` : ''
    const name = useModelsStore().displayName(panes.value[index].model)
    return `The model${side}, “${name}”, is no longer in the workspace (deleted, or its link removed): pick another model${side ? ' for that side' : ''} to go on, or start a new conversation.`
  }

  /** Sends `text` to every pane's model; false (with sendError set) when it could not start. */
  async function send(text: string): Promise<boolean> {
    sendError.value = null
    sendErrorInReply.value = false
    if (!text.trim()) {
      sendError.value = { message: 'Write a message first.', field: 'messages' }
      return false
    }
    const missing = panes.value.findIndex((p) => !p.model)
    if (missing >= 0) {
      sendError.value = {
        message: `Pick a model${compareMode.value ? ` for the ${missing === 0 ? 'left' : 'right'} side` : ''} first.`,
        field: 'model',
      }
      return false
    }
    // A reopened conversation's model deleted since (or its link removed): the select stood blank,
    // Send went on, and the engine answered with the folder's path ("… is not a folder").
    const gone = panes.value.findIndex((_p, i) => goneModel(i) !== null)
    if (gone >= 0) {
      sendError.value = { message: goneMessage(gone), field: 'model' }
      return false
    }
    // Said here, in the field's words (the service answered "chat.send: maxNewTokens: must be at most 8192").
    const n = maxNewTokens.value
    if (!Number.isInteger(n) || n < 1 || n > MAX_NEW_TOKENS) {
      sendError.value = { message: `Max new tokens: a whole number from 1 to ${MAX_NEW_TOKENS}`, field: 'maxNewTokens' }
      return false
    }
    const badSampling = samplingProblem(sampling.value)
    if (badSampling) {
      sendError.value = badSampling
      return false
    }
    let offloadOpts: ChatSendArgs['offload']
    try {
      offloadOpts = offloadArgs()
    } catch (e) {
      sendError.value = e as UiError
      return false
    }
    sentWith = { sampling: savedSampling(sampling.value), maxNewTokens: n }
    const started = panes.value.map((_pane, index) => startPane(index, text, offloadOpts))
    const results = await Promise.all(started)
    return results.every(Boolean)
  }

  async function startPane(index: number, text: string, offloadOpts: ChatSendArgs['offload']): Promise<boolean> {
    const pane = panes.value[index]
    const messages = [...historyOf(pane.turns, systemPrompt.value), { role: 'user' as const, content: text }]
    pane.turns.push({ role: 'user', content: text })
    pane.turns.push({ role: 'assistant', content: '', tokens: [], streaming: true })
    const turnIndex = pane.turns.length - 1
    const args: ChatSendArgs = { model: pane.model, messages, sampling: samplingArgs(sampling.value), maxNewTokens: maxNewTokens.value }
    if (pane.format === 'plain') args.format = 'plain'
    if (offloadOpts) args.offload = offloadOpts
    const sentIn = epoch
    const modelName = useModelsStore().displayName(pane.model)
    try {
      const reply = await useTasksStore().track('models.load', `Loading ${modelName}`, (taskId) => {
        pane.turns[turnIndex].taskId = taskId
        return useWorkbench().chat.send({ ...args, taskId })
      })
      delete pane.turns[turnIndex]?.taskId
      if (sentIn !== epoch) {
        forget(reply.requestId)
        void useWorkbench()
          .chat.cancel({ requestId: reply.requestId })
          .catch(() => undefined)
        return true
      }
      const turn = pane.turns[turnIndex]
      turn.requestId = reply.requestId
      turn.promptTokens = reply.promptTokens
      targets.set(reply.requestId, { pane: index, turn: turnIndex })
      const waiting = orphans.get(reply.requestId) ?? []
      orphans.delete(reply.requestId)
      orphanCount -= waiting.length
      for (const event of waiting) apply(event)
      if (cancelWanted.delete(turn) && turn.streaming)
        void useWorkbench()
          .chat.cancel({ requestId: reply.requestId })
          .catch(() => undefined)
      return true
    } catch (e) {
      if (sentIn !== epoch) return false
      const turn = pane.turns[turnIndex]
      delete turn.taskId
      turn.streaming = false
      cancelWanted.delete(turn)
      if (isCancelled(e)) {
        turn.note = 'Stopped while the model was loading.'
        return true
      }
      const error = toUiError(e)
      turn.error = error.message
      sendError.value = error
      sendErrorInReply.value = true
      return false
    }
  }

  /** Stops every reply under way (each ends with chat.done, stoppedBy "cancelled"). */
  async function cancel(): Promise<void> {
    const calls: Promise<void>[] = []
    for (const pane of panes.value)
      for (const turn of pane.turns) {
        if (!turn.streaming) continue
        if (turn.requestId) calls.push(useWorkbench().chat.cancel({ requestId: turn.requestId }))
        else {
          // Still in chat.send: stop the model load, or the reply as soon as send answers.
          cancelWanted.add(turn)
          if (turn.taskId) calls.push(useTasksStore().cancel(turn.taskId))
        }
      }
    try {
      await Promise.all(calls)
    } catch (e) {
      sendError.value = toUiError(e)
      sendErrorInReply.value = false
    }
  }

  function turnOf(requestId: string): { pane: ChatPane; turn: ChatTurn } | null {
    const at = targets.get(requestId)
    if (!at) return null
    const pane = panes.value[at.pane]
    const turn = pane?.turns[at.turn]
    return pane && turn ? { pane, turn } : null
  }

  function forget(requestId: string): void {
    ignored.add(requestId)
    targets.delete(requestId)
    orphanCount -= orphans.get(requestId)?.length ?? 0
    orphans.delete(requestId)
  }

  function apply(event: ChatEvent): void {
    if (ignored.has(event.requestId)) {
      if (event.type === 'chat.done' || event.type === 'chat.error') ignored.delete(event.requestId)
      return
    }
    const found = turnOf(event.requestId)
    if (!found) {
      if (orphanCount >= ORPHAN_LIMIT) return
      const list = orphans.get(event.requestId) ?? []
      list.push(event)
      orphans.set(event.requestId, list)
      orphanCount++
      return
    }
    const { pane, turn } = found
    switch (event.type) {
      case 'chat.prompt':
        turn.prompt = markRaw({ tokens: event.tokens, routing: event.routing })
        turn.promptTokens = event.tokens.length
        break
      case 'chat.token': {
        const tokens = (turn.tokens ??= [])
        const piece = markRaw({ text: event.text, routing: tokens[event.index]?.routing ?? null })
        if (event.index >= tokens.length) {
          tokens.length = event.index
          tokens.push(piece)
        } else tokens.splice(event.index, 1, piece)
        turn.content += event.text
        if (event.offload) pane.offload = markRaw(event.offload)
        saveSoon()
        break
      }
      case 'chat.routing': {
        // The token's experts, one step after its text: position = promptTokens + index.
        const tokens = (turn.tokens ??= [])
        const index = event.routing.position - (turn.promptTokens ?? 0)
        if (index < 0) break
        const piece = tokens[index]
        if (piece) tokens.splice(index, 1, markRaw({ text: piece.text, routing: markRaw(event.routing) }))
        else {
          if (index >= tokens.length) tokens.length = index
          tokens.splice(index, 1, markRaw({ text: '', routing: markRaw(event.routing) }))
        }
        break
      }
      case 'chat.done':
        turn.content = event.text
        turn.stats = markRaw(event.stats)
        turn.streaming = false
        if (event.stats.offload) pane.offload = markRaw(event.stats.offload)
        else if (offload.value.enabled) pane.offload = null
        // The settings cannot change while a reply streams: this reply was made within the budget.
        pane.offloadResident = offload.value.enabled && !event.stats.offload
        targets.delete(event.requestId)
        if (!streaming.value) void autosave()
        break
      case 'chat.error':
        turn.error = event.message
        turn.streaming = false
        targets.delete(event.requestId)
        break
    }
  }

  function onEvent(event: WorkbenchEvent): void {
    if (event.type.startsWith('chat.')) apply(event as ChatEvent)
  }

  const listen = listener(onEvent)

  // ---------------------------------------------------------------------------------------------
  // Conversations (side by side: both panes, the right one as `compare`)

  async function refreshConversations(): Promise<void> {
    conversationsLoading.value = true
    conversationsError.value = null
    try {
      const list = await useWorkbench().conversations.list()
      conversations.value = [...list].sort((a, b) => b.updated.localeCompare(a.updated))
      // After a reload: the conversation this tab had open, unless another was begun since.
      const reopen = recall()
      const found =
        reopen && conversationId.value === null && panes.value.every((p) => p.turns.length === 0) && list.find((c) => c.id === reopen)
      if (found) openConversation(found)
    } catch (e) {
      conversationsError.value = toUiError(e)
    } finally {
      conversationsLoading.value = false
    }
  }

  function titleOf(turns: ChatTurn[]): string {
    const first = turns.find((t) => t.role === 'user')?.content.trim() ?? 'New conversation'
    return first.length > 60 ? `${first.slice(0, 57)}…` : first
  }

  /** Saves the conversation, both sides of a side-by-side one (creates it the first time). Throws a UiError. */
  async function save(): Promise<Conversation | null> {
    const pane = panes.value[0]
    const messages = savedHistoryOf(pane.turns)
    if (!messages.length || !pane.model) return null
    const right = compareMode.value ? panes.value[1] : undefined
    const rightMessages = right?.model ? savedHistoryOf(right.turns) : []
    keepNewestRouting([messages, rightMessages])
    const args = {
      title: titleOf(pane.turns),
      model: pane.model,
      messages,
      format: pane.format,
      ...sentWith,
      ...(right?.model ? { compare: { model: right.model, messages: rightMessages, format: right.format } } : {}),
      ...(systemPrompt.value.trim() ? { systemPrompt: systemPrompt.value } : {}),
      ...(conversationId.value ? { id: conversationId.value } : {}),
    }
    try {
      const saved = await useWorkbench().conversations.save(args)
      conversationId.value = saved.id
      remember(saved.id)
      conversations.value = [saved, ...conversations.value.filter((c) => c.id !== saved.id)]
      return saved
    } catch (e) {
      throw toUiError(e)
    }
  }

  const saveError = ref<UiError | null>(null)
  /** Saves one after another: two at once, before the first had an id, made two conversations. */
  let saving: Promise<void> = Promise.resolve()
  function autosave(): Promise<void> {
    clearTimeout(saveTimer)
    saveTimer = undefined
    saving = saving.then(async () => {
      try {
        saveError.value = null
        await save()
      } catch (e) {
        saveError.value = e as UiError
      }
    })
    return saving
  }
  /** A reply under way is saved every SAVE_STREAMING_MS as far as it came (a reload keeps it). */
  let saveTimer: ReturnType<typeof setTimeout> | undefined
  function saveSoon(): void {
    saveTimer ??= setTimeout(() => void autosave(), SAVE_STREAMING_MS)
  }

  function newConversation(): void {
    clearTimeout(saveTimer)
    saveTimer = undefined
    remember(null)
    if (streaming.value) void cancel()
    for (const requestId of [...targets.keys()]) forget(requestId)
    epoch++
    conversationId.value = null
    sentWith = {}
    for (const pane of panes.value) {
      pane.turns = []
      pane.offload = null
      pane.offloadResident = false
    }
    sendError.value = null
    sendErrorInReply.value = false
  }

  /**
   * Opens the models a link names (`#/chat?model=…&compare=…`, e.g. "Chat with it" after an export).
   * Models other than the ones open start a new conversation: the turns so far are another model's
   * replies, and would be sent to the new model as its own history.
   */
  function openModels(model: string | undefined, compare?: string): void {
    const wanted: [number, string][] = []
    if (model) wanted.push([0, model])
    if (compare) wanted.push([1, compare])
    if (!wanted.some(([pane, dir]) => panes.value[pane]?.model !== dir)) return
    if (panes.value.some((p) => p.turns.length > 0) || conversationId.value !== null) newConversation()
    if (compare) setCompare(true)
    for (const [pane, dir] of wanted) panes.value[pane].model = dir
  }

  /** The format a model was trained for, from its export's provenance (chat where it says nothing). */
  function trainedFormat(dir: string): ChatFormat {
    return useModelsStore().byDir(dir)?.provenance?.promptFormat === 'plain' ? 'plain' : 'chat'
  }
  /** The format a reopened conversation was held in, by pane, for as long as the pane keeps its model. */
  const reopenedFormats: ({ model: string; format: ChatFormat } | null)[] = [null, null]
  function formatOf(i: number): ChatFormat {
    const reopened = reopenedFormats[i]
    return reopened && reopened.model === panes.value[i].model ? reopened.format : trainedFormat(panes.value[i].model)
  }
  // A pane takes the format its model was trained for (or its reopened conversation's) when its
  // model changes, or once the model's entry is known (a link may name it before the list loads);
  // the user may change it after.
  watch(
    () => panes.value.map((p) => `${useModelsStore().byDir(p.model) ? 'known' : 'unknown'}:${p.model}`),
    (now, before) => now.forEach((key, i) => key !== before?.[i] && (panes.value[i].format = formatOf(i))),
  )

  function openConversation(c: Conversation): void {
    newConversation()
    // A one-model conversation reopens on one side: the other side would have no history with it.
    // Set before the id is taken: a change of sides starts a new conversation, and a side-by-side
    // one reopened from one side was saved as a copy at its next message.
    setCompare(c.compare !== undefined)
    conversationId.value = c.id
    remember(c.id)
    systemPrompt.value = c.systemPrompt ?? ''
    // The settings its latest message was sent with (one saved before they were kept: as they are now).
    sentWith = { ...(c.sampling && { sampling: c.sampling }), ...(c.maxNewTokens !== undefined && { maxNewTokens: c.maxNewTokens }) }
    if (c.sampling) sampling.value = samplingFormOf(c.sampling)
    if (c.maxNewTokens !== undefined) maxNewTokens.value = c.maxNewTokens
    // A reply keeps its tokens' routing where it was saved with it (and still spells the reply).
    const turns = (messages: ConversationMessage[]): ChatTurn[] =>
      messages
        .filter((m) => m.role !== 'system')
        .map((m) => {
          const pieces = m.role === 'assistant' && m.tokens ? unpackTokens(m.tokens, m.content) : null
          const prompt = m.role === 'assistant' && m.prompt ? unpackPrompt(m.prompt) : null
          return {
            role: m.role as 'user' | 'assistant',
            content: m.content,
            ...(pieces && { tokens: pieces.map((p) => markRaw({ text: p.text, routing: p.routing && markRaw(p.routing) })) }),
            ...(m.role === 'assistant' && m.stats && { stats: markRaw({ ...m.stats }) }),
            ...(prompt && { prompt: markRaw(prompt), promptTokens: prompt.tokens.length }),
          }
        })
    const sides = [{ model: c.model, messages: c.messages, format: c.format }, ...(c.compare ? [c.compare] : [])]
    sides.forEach((side, i) => {
      reopenedFormats[i] = side.format ? { model: side.model, format: side.format } : null
      panes.value[i].model = side.model
      panes.value[i].turns = turns(side.messages)
      panes.value[i].format = formatOf(i) // as sent then (the model may be the one open already: no change to watch)
    })
  }

  async function deleteConversation(id: string): Promise<void> {
    try {
      await useWorkbench().conversations.delete({ id })
      conversations.value = conversations.value.filter((c) => c.id !== id)
      if (conversationId.value === id) conversationId.value = null
    } catch (e) {
      throw toUiError(e)
    }
  }

  return {
    conversations,
    conversationsLoading,
    conversationsError,
    conversationId,
    systemPrompt,
    sampling,
    maxNewTokens,
    offload,
    panes,
    compareMode,
    colourLayer,
    sendError,
    composerError,
    saveError,
    streaming,
    setCompare,
    send,
    goneModel,
    goneMessage,
    cancel,
    onEvent,
    listen,
    refreshConversations,
    save,
    newConversation,
    openModels,
    openConversation,
    deleteConversation,
  }
})
