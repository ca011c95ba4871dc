import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { ApiError, type TokenRouting } from '../../../src/shared/api'
import type { Conversation } from '../../../src/shared/chat'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { useTasksStore } from '../../../src/renderer/src/stores/tasks'
import {
  DEFAULT_SAMPLING,
  OPEN_CONVERSATION_KEY,
  SAVE_STREAMING_MS,
  historyOf,
  samplingArgs,
  samplingProblem,
  savedSampling,
  useChatStore,
  type SamplingForm,
} from '../../../src/renderer/src/stores/chat'
import { conversation, fakeBridge } from '../fakeBridge'
import { apiSchemas } from '../../../src/shared/schema'
import { useModelsStore } from '../../../src/renderer/src/stores/models'
import { nextTick } from 'vue'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

const flush = () => new Promise((resolve) => setTimeout(resolve, 0))

/** The chat store listening, side by side: /base on the left, /tuned on the right. */
function sideBySide(): ReturnType<typeof useChatStore> {
  const chat = useChatStore()
  chat.listen()
  chat.setCompare(true)
  chat.panes[0].model = '/base'
  chat.panes[1].model = '/tuned'
  return chat
}
const routing = (position: number, expert: number): TokenRouting => ({
  position,
  token: 7,
  layers: [{ layer: 0, experts: [expert, 0], weights: [0.7, 0.3] }],
})

describe('samplingArgs and historyOf', () => {
  it('sends greedy alone, or every sampling control, with the seed when set', () => {
    expect(samplingArgs({ ...DEFAULT_SAMPLING, greedy: true })).toEqual({ greedy: true })
    expect(samplingArgs({ ...DEFAULT_SAMPLING, seed: 3 })).toEqual({
      temperature: 0.7,
      topK: 0,
      topP: 0.95,
      minP: 0,
      repetitionPenalty: 1,
      seed: 3,
    })
  })

  it('puts the system prompt first and leaves out questions whose reply failed', () => {
    const turns = [
      { role: 'user' as const, content: 'a' },
      { role: 'assistant' as const, content: '', error: 'engine crashed' },
      { role: 'user' as const, content: 'b' },
      { role: 'assistant' as const, content: 'B' },
    ]
    expect(historyOf(turns, 'Be brief.')).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'b' },
      { role: 'assistant', content: 'B' },
    ])
  })
})

describe('useChatStore', () => {
  describe('a reload mid-reply', () => {
    const storage = new Map<string, string>()
    beforeEach(() => {
      storage.clear()
      vi.stubGlobal('sessionStorage', {
        getItem: (k: string) => storage.get(k) ?? null,
        setItem: (k: string, v: string) => void storage.set(k, v),
        removeItem: (k: string) => void storage.delete(k),
      })
      vi.useFakeTimers()
    })
    afterEach(() => {
      vi.useRealTimers()
      vi.unstubAllGlobals()
    })

    it('keeps the reply as far as it came (as a cancel would), in one conversation, and the tab opens it again', async () => {
      const chat = useChatStore()
      chat.listen()
      chat.panes[0].model = '/m'
      await chat.send('hi')
      fake.emit({ type: 'chat.token', requestId: 'req-1', token: 5, index: 0, text: 'Hel' })
      expect(fake.bridge.conversations.save).not.toHaveBeenCalled()
      await vi.advanceTimersByTimeAsync(SAVE_STREAMING_MS)
      expect(fake.bridge.conversations.save).toHaveBeenCalledTimes(1)
      expect(fake.bridge.conversations.save.mock.calls[0][0]).toMatchObject({
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'assistant', content: 'Hel', stats: { newTokens: 1, stoppedBy: 'cancelled' } },
        ],
      })
      expect(storage.get(OPEN_CONVERSATION_KEY)).toBe('conv-new')
      // More tokens, and the end: saved again into the same conversation.
      fake.emit({ type: 'chat.token', requestId: 'req-1', token: 6, index: 1, text: 'lo' })
      fake.emit({
        type: 'chat.done',
        requestId: 'req-1',
        text: 'Hello',
        stats: { newTokens: 2, stoppedBy: 'stop_token', prefillMs: 1, firstTokenMs: 1, decodeMs: 2, tokensPerSec: 10 },
      })
      await vi.advanceTimersByTimeAsync(SAVE_STREAMING_MS)
      const calls = fake.bridge.conversations.save.mock.calls
      expect(calls).toHaveLength(2)
      expect(calls[1][0]).toMatchObject({
        id: 'conv-new',
        messages: [{ content: 'hi' }, { content: 'Hello', stats: { stoppedBy: 'stop_token' } }],
      })

      // The reload: a new store; the list opens the conversation the tab had open.
      const saved = { ...(calls[1][0] as Conversation), id: 'conv-new', created: '', updated: '2025-01-03T00:00:00.000Z' }
      setActivePinia(createPinia())
      fake.bridge.conversations.list.mockResolvedValueOnce([conversation, saved])
      const again = useChatStore()
      await again.refreshConversations()
      expect(again.conversationId).toBe('conv-new')
      expect(again.panes[0].turns.map((t) => t.content)).toEqual(['hi', 'Hello'])
      // A new conversation begun: a reload opens none.
      again.newConversation()
      expect(storage.has(OPEN_CONVERSATION_KEY)).toBe(false)
    })
  })

  it('streams a reply token by token, attaching each token’s routing when it comes', async () => {
    const stats = { newTokens: 2, stoppedBy: 'stop_token' as const, prefillMs: 1, firstTokenMs: 1, decodeMs: 2, tokensPerSec: 10 }
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    chat.systemPrompt = 'Be brief.'
    expect(await chat.send('hi')).toBe(true)
    expect(fake.bridge.chat.send).toHaveBeenCalledWith({
      model: '/m',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'hi' },
      ],
      sampling: samplingArgs(DEFAULT_SAMPLING),
      maxNewTokens: 256,
      taskId: expect.any(String),
    })
    expect(chat.streaming).toBe(true)
    fake.emit({
      type: 'chat.prompt',
      requestId: 'req-1',
      tokens: ['<u>', 'hi', '<a>'],
      routing: [routing(0, 1), routing(1, 2), routing(2, 3)],
    })
    fake.emit({ type: 'chat.token', requestId: 'req-1', token: 5, index: 0, text: 'Hel' })
    fake.emit({ type: 'chat.token', requestId: 'req-1', token: 6, index: 1, text: 'lo' })
    fake.emit({ type: 'chat.routing', requestId: 'req-1', routing: routing(3, 2) })
    const reply = chat.panes[0].turns[1]
    expect(reply.content).toBe('Hello')
    expect(reply.tokens?.map((t) => [t.text, t.routing?.layers[0].experts[0] ?? null])).toEqual([
      ['Hel', 2],
      ['lo', null],
    ])
    expect(reply.prompt?.tokens).toEqual(['<u>', 'hi', '<a>'])
    fake.emit({
      type: 'chat.done',
      requestId: 'req-1',
      text: 'Hello',
      stats: { ...stats, offload: { hits: 1, misses: 0, evictions: 0, bytesLoaded: 0, residentBytes: 0, budgetBytes: 0 } as never },
    })
    expect(chat.streaming).toBe(false)
    expect(reply.stats?.newTokens).toBe(2)
    await flush()
    // The conversation is saved once the reply is complete, the reply with its tokens' routing
    // (the second token's had not arrived: its text only).
    expect(fake.bridge.conversations.save).toHaveBeenCalledWith({
      title: 'hi',
      model: '/m',
      format: 'chat',
      sampling: savedSampling(DEFAULT_SAMPLING),
      maxNewTokens: 256,
      systemPrompt: 'Be brief.',
      messages: [
        { role: 'user', content: 'hi' },
        {
          role: 'assistant',
          content: 'Hello',
          tokens: {
            layers: [0],
            pieces: [{ text: 'Hel', position: 3, token: 7, experts: [[2, 0]], weights: [[0.7, 0.3]] }, { text: 'lo' }],
          },
          // the prompt as the model saw it, each token with its routing
          prompt: {
            layers: [0],
            pieces: ['<u>', 'hi', '<a>'].map((text, i) => ({ text, position: i, token: 7, experts: [[i + 1, 0]], weights: [[0.7, 0.3]] })),
          },
          stats, // its stats line, without the pane's offload counters
        },
      ],
    })
    expect(chat.conversationId).toBe('conv-new')
    // Reopened, the reply shows its tokens and their experts again.
    const saved = fake.bridge.conversations.save.mock.calls.at(-1)![0] as Conversation
    chat.newConversation()
    chat.openConversation({ ...saved, id: 'conv-new', created: '', updated: '' })
    expect(chat.panes[0].turns[1].tokens).toEqual([
      { text: 'Hel', routing: routing(3, 2) },
      { text: 'lo', routing: null },
    ])
    expect(chat.panes[0].turns[1].stats).toEqual(stats)
    // and its prompt as the model saw it (a reopened conversation lost it)
    expect(chat.panes[0].turns[1].prompt).toEqual({ tokens: ['<u>', 'hi', '<a>'], routing: [routing(0, 1), routing(1, 2), routing(2, 3)] })
    // Saved tokens that no longer spell the reply (an edited file) reopen it as text.
    const edited = structuredClone(saved)
    edited.messages[1].content = 'Hi there'
    delete edited.messages[1].stats
    delete edited.messages[1].prompt
    chat.openConversation({ ...edited, id: 'conv-new', created: '', updated: '' })
    expect(chat.panes[0].turns[1]).toEqual({ role: 'assistant', content: 'Hi there' })
  })

  it('a reopened conversation goes on with the sampling and length its latest message was sent with', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    chat.sampling = { ...DEFAULT_SAMPLING, greedy: true, temperature: 0.3, topK: 5, seed: 7 }
    chat.maxNewTokens = 40
    expect(await chat.send('hi')).toBe(true)
    // Changed after the send: not what the reply was made with.
    chat.sampling.temperature = 1.5
    fake.emit({ type: 'chat.token', requestId: 'req-1', token: 5, index: 0, text: 'Hel' })
    fake.emit({
      type: 'chat.done',
      requestId: 'req-1',
      text: 'Hel',
      stats: { newTokens: 1, stoppedBy: 'max_new_tokens', prefillMs: 1, firstTokenMs: 1, decodeMs: 0, tokensPerSec: 0 },
    })
    await flush()
    const saved = fake.bridge.conversations.save.mock.calls.at(-1)![0] as Conversation
    // The whole form, greedy and what greedy ignores.
    expect(saved.sampling).toEqual({ ...savedSampling(DEFAULT_SAMPLING), greedy: true, temperature: 0.3, topK: 5, seed: 7 })
    expect(saved.maxNewTokens).toBe(40)
    expect(() => apiSchemas['conversations.save'].parse(saved)).not.toThrow()
    chat.newConversation()
    chat.sampling = { ...DEFAULT_SAMPLING }
    chat.maxNewTokens = 256
    chat.openConversation({ ...saved, id: 'c-s', created: '', updated: '' })
    expect(chat.sampling).toEqual({ ...DEFAULT_SAMPLING, greedy: true, temperature: 0.3, topK: 5, seed: 7 })
    expect(chat.maxNewTokens).toBe(40)
    // Saved again untouched (a rename, a reply deleted): the same settings, not the form's defaults.
    await chat.save()
    expect(fake.bridge.conversations.save.mock.calls.at(-1)![0]).toMatchObject({ sampling: saved.sampling, maxNewTokens: 40 })
    // A conversation saved before settings were kept leaves them as they are; a new one keeps none.
    chat.sampling.minP = 0.2
    const { sampling: _s, maxNewTokens: _m, ...older } = saved
    chat.openConversation({ ...older, id: 'c-old', created: '', updated: '' })
    expect(chat.sampling.minP).toBe(0.2)
    expect(chat.maxNewTokens).toBe(40)
    chat.newConversation()
    chat.panes[0].turns = [
      { role: 'user', content: 'a' },
      { role: 'assistant', content: 'b' },
    ]
    await chat.save()
    expect(fake.bridge.conversations.save.mock.calls.at(-1)![0]).not.toHaveProperty('sampling')
  })

  it('keeps tokens that arrive before chat.send answers, and replays them', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    let answer: () => void = () => undefined
    fake.bridge.chat.send.mockImplementationOnce(
      () => new Promise((resolve) => (answer = () => resolve({ requestId: 'early', prompt: '', promptTokens: 2, template: 'default' }))),
    )
    const sending = chat.send('hi')
    fake.emit({ type: 'chat.token', requestId: 'early', token: 1, index: 0, text: 'Yo' })
    fake.emit({ type: 'chat.routing', requestId: 'early', routing: routing(2, 4) })
    answer()
    await sending
    const reply = chat.panes[0].turns[1]
    expect(reply.content).toBe('Yo')
    expect(reply.tokens?.[0].routing?.layers[0].experts[0]).toBe(4)
  })

  it('sends the context the budget is planned for where one is typed, and none (the default) where blank', async () => {
    const chat = useChatStore()
    chat.panes[0].model = '/m'
    chat.offload = { enabled: true, budget: '1 GiB', storage: 'lazy', policy: 'lru', prefetch: false, context: ' 8192 ' }
    await chat.send('hi')
    expect(fake.bridge.chat.send).toHaveBeenLastCalledWith(
      expect.objectContaining({ offload: expect.objectContaining({ contextTokens: 8192 }) }),
    )
    // A fresh store (the first reply is still streaming there): blank sends no context.
    setActivePinia(createPinia())
    const fresh = useChatStore()
    fresh.panes[0].model = '/m'
    fresh.offload = { ...chat.offload, context: '  ' }
    await fresh.send('hi again')
    expect(fake.bridge.chat.send).toHaveBeenCalledTimes(2)
    const sent = (fake.bridge.chat.send.mock.calls[1] as unknown as [{ offload: Record<string, unknown> }])[0].offload
    expect(sent).toEqual({ budgetBytes: 2 ** 30, storage: 'lazy', policy: 'lru', prefetch: false })
  })

  it('sends the same prompt to both models side by side, each pane with its own history', async () => {
    const chat = sideBySide()
    chat.offload = { enabled: true, budget: '32 MiB', storage: 'int8', policy: 'lfu', prefetch: false, context: '' }
    await chat.send('compare')
    expect(fake.bridge.chat.send).toHaveBeenCalledTimes(2)
    expect(fake.bridge.chat.send.mock.calls.map((c) => (c as unknown as [{ model: string }])[0].model)).toEqual(['/base', '/tuned'])
    expect(fake.bridge.chat.send).toHaveBeenLastCalledWith(
      expect.objectContaining({ offload: { budgetBytes: 32 * 1024 ** 2, storage: 'int8', policy: 'lfu', prefetch: false } }),
    )
    const offload = {
      budgetBytes: 1,
      residentBytes: 1,
      peakBytes: 1,
      bytesMoved: 5,
      hits: 3,
      misses: 1,
      hitRate: 0.75,
      otherHits: 0,
      otherMisses: 0,
      cacheBytes: 1000,
      bytesRead: 0,
      layers: [],
      prefetched: 0,
      prefetchUsed: 0,
      prefetchUnused: 0,
      prefetchAccuracy: 0,
      storage: 'int8' as const,
      policy: 'lfu' as const,
    }
    fake.emit({ type: 'chat.token', requestId: 'req-2', token: 1, index: 0, text: 'B', offload })
    expect(chat.panes[1].turns[1].content).toBe('B')
    expect(chat.panes[1].offload?.hitRate).toBe(0.75)
    expect(chat.panes[0].turns[1].content).toBe('')
    // The left model fit within the budget (its reply came with no paging figures): said so, not "statistics appear...".
    const stats = { newTokens: 1, stoppedBy: 'stop_token' as const, prefillMs: 1, firstTokenMs: 1, decodeMs: 1, tokensPerSec: 1 }
    fake.emit({ type: 'chat.done', requestId: 'req-1', text: 'A', stats })
    expect(chat.panes[0]).toMatchObject({ offload: null, offloadResident: true })
    fake.emit({ type: 'chat.done', requestId: 'req-2', text: 'B', stats: { ...stats, offload } })
    expect(chat.panes[1]).toMatchObject({ offload: { hitRate: 0.75 }, offloadResident: false })
    chat.setCompare(false)
    expect(chat.panes).toHaveLength(1)
    // the conversation under way starts over: the right side's replies are not dropped from it by a one-sided save
    expect(chat.panes[0].turns).toEqual([])
    expect(chat.panes[0].model).toBe('/base')
  })

  it('side by side turned on mid-conversation starts a new one, so both models answer from the same history', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/base'
    await chat.send('first')
    fake.emit({ type: 'chat.token', requestId: 'req-1', token: 1, index: 0, text: 'A' })
    expect(chat.panes[0].turns).toHaveLength(2)
    chat.setCompare(true)
    expect(chat.conversationId).toBeNull()
    expect(chat.panes.map((p) => p.turns.length)).toEqual([0, 0])
    expect(chat.panes[0].model).toBe('/base')
    chat.panes[1].model = '/tuned'
    await chat.send('second')
    const histories = fake.bridge.chat.send.mock.calls
      .slice(-2)
      .map((c) => (c as unknown as [{ messages: { content: string }[] }])[0].messages)
    expect(histories[0]).toEqual(histories[1])
    // turning it on again, or off with nothing said, keeps what is there
    chat.setCompare(true)
    expect(chat.panes[0].turns).toHaveLength(2)
  })

  it('prompts a model in the format it was trained for (plain for prompt/completion), which the user may change', async () => {
    const models = useModelsStore()
    await models.refresh()
    // A copy: the fake list's entries are shared with the other tests.
    models.entries = models.entries.map((m) =>
      m.dir === '/ws/models/tuned' ? { ...m, provenance: { ...m.provenance, promptFormat: 'plain' } } : m,
    )
    const chat = useChatStore()
    chat.setCompare(true)
    chat.panes[0].model = '/app/resources/models/tiny-moe'
    chat.panes[1].model = '/ws/models/tuned'
    await nextTick()
    expect(chat.panes.map((p) => p.format)).toEqual(['chat', 'plain'])
    await chat.send('What do bees make?')
    const sent = fake.bridge.chat.send.mock.calls.map((c) => (c as unknown as [{ format?: string }])[0].format)
    expect(sent).toEqual([undefined, 'plain'])
    chat.panes[1].format = 'chat' // the user's choice stands until the model changes
    await nextTick()
    expect(chat.panes[1].format).toBe('chat')
    chat.panes[1].model = '/app/resources/models/tiny-moe'
    await nextTick()
    chat.panes[1].model = '/ws/models/tuned'
    await nextTick()
    expect(chat.panes[1].format).toBe('plain')
  })

  it("saves each side's format with the conversation and reopens it in that format, not the model's default", async () => {
    const models = useModelsStore()
    await models.refresh()
    const chat = useChatStore()
    chat.panes[0].model = '/app/resources/models/tiny-moe' // trained on chats
    await nextTick()
    chat.panes[0].format = 'plain' // the user's choice
    chat.panes[0].turns = [
      { role: 'user', content: 'bees make' },
      { role: 'assistant', content: 'honey' },
    ]
    const saved = await chat.save()
    expect(fake.bridge.conversations.save.mock.calls.at(-1)![0]).toMatchObject({ format: 'plain' })
    chat.newConversation()
    chat.panes[0].model = '/ws/models/tuned' // another model open, in the chat format
    await nextTick()
    chat.openConversation({ ...saved!, format: 'plain' })
    await nextTick() // the model changed: the format watch has run
    expect(chat.panes[0]).toMatchObject({ model: '/app/resources/models/tiny-moe', format: 'plain' })
    // The same model open already (no change to watch), and a conversation saved before formats were: its model's.
    chat.openConversation({ ...saved!, format: undefined })
    await nextTick()
    expect(chat.panes[0].format).toBe('chat')
    chat.openConversation({ ...saved!, format: 'plain' })
    expect(chat.panes[0].format).toBe('plain')
    // Choosing another model takes that model's format again.
    chat.panes[0].model = '/ws/models/tuned'
    await nextTick()
    expect(chat.panes[0].format).toBe('chat')
  })

  it('says what is missing before sending, next to the field', async () => {
    const chat = useChatStore()
    expect(await chat.send('hi')).toBe(false)
    expect(chat.sendError).toMatchObject({ field: 'model' })
    chat.panes[0].model = '/m'
    expect(await chat.send('   ')).toBe(false)
    expect(chat.sendError).toMatchObject({ field: 'messages' })
    chat.offload.enabled = true
    chat.offload.budget = 'lots'
    expect(await chat.send('hi')).toBe(false)
    expect(chat.sendError).toMatchObject({ field: 'offload.budgetBytes' })
    // The context the budget is planned for: a whole number of tokens, or blank for the default.
    chat.offload.budget = '1 GiB'
    const calls = fake.bridge.chat.send.mock.calls.length
    for (const [bad, why] of [
      ['2k', '“2k” is not a whole number of tokens'],
      ['1.5', '“1.5” is not a whole number of tokens'],
      ['0', '“0”: a context holds at least 1 token'],
      ['-5', '“-5”: a context holds at least 1 token'],
      [String(2 ** 20 + 1), '“1048577” is more than 1048576 tokens'],
    ]) {
      chat.offload.context = bad
      expect(await chat.send('hi')).toBe(false)
      expect(chat.sendError).toEqual({ message: `Context: ${why}; write e.g. 8192 (blank: 2048)`, field: 'offload.contextTokens' })
    }
    expect(fake.bridge.chat.send.mock.calls.length).toBe(calls)
    chat.offload.context = ''
    chat.offload.enabled = false
    // A reply longer than any may be, in the field's words (the service's named chat.send's maxNewTokens).
    for (const n of [100000, 0, 2.5, Number.NaN]) {
      chat.maxNewTokens = n
      expect(await chat.send('hi')).toBe(false)
      expect(chat.sendError).toEqual({ message: 'Max new tokens: a whole number from 1 to 8192', field: 'maxNewTokens' })
    }
    chat.maxNewTokens = 20
    // Sampling settings the service would refuse ("sampling.topK: must be at least 0"), by the field
    const bad: [Partial<SamplingForm>, string, string][] = [
      [{ topK: -1 }, 'sampling.topK', 'Top-k: a whole number, 0 or more (0 = off)'],
      [{ topK: 2.5 }, 'sampling.topK', 'Top-k: a whole number, 0 or more (0 = off)'],
      [{ repetitionPenalty: 0 }, 'sampling.repetitionPenalty', 'Repetition penalty: a number above 0, at most 10 (1 = off)'],
      [{ repetitionPenalty: 10.5 }, 'sampling.repetitionPenalty', 'Repetition penalty: a number above 0, at most 10 (1 = off)'],
      [
        { repetitionPenalty: '' as unknown as number },
        'sampling.repetitionPenalty',
        'Repetition penalty: a number above 0, at most 10 (1 = off)',
      ],
      [{ temperature: 0 }, 'sampling.temperature', 'Temperature: a number above 0, at most 100'],
      [{ topP: 1.01 }, 'sampling.topP', 'Top-p: a number above 0, at most 1'],
      [{ minP: 1 }, 'sampling.minP', 'Min-p: a number from 0, below 1'],
    ]
    for (const [form, field, message] of bad) {
      chat.sampling = { ...DEFAULT_SAMPLING, ...form }
      expect(await chat.send('hi')).toBe(false)
      expect(chat.sendError).toEqual({ message, field })
      // greedy sends none of them: nothing to refuse
      expect(samplingProblem({ ...chat.sampling, greedy: true })).toBeNull()
    }
    expect(samplingProblem({ ...DEFAULT_SAMPLING, topK: 0, repetitionPenalty: 10, topP: 1, minP: 0, temperature: 100 })).toBeNull()
    expect(fake.bridge.chat.send).not.toHaveBeenCalled()
    expect(chat.panes[0].turns).toEqual([]) // nothing of it kept in the conversation
  })

  it("refuses to send to a reopened conversation's model the workspace no longer lists, naming the side and what to do", async () => {
    const chat = sideBySide()
    chat.panes[0].model = '/ws/models/gone-1a2b3c'
    chat.panes[1].model = '/ws/models/tuned'
    // Not known before the list is loaded: nothing is said of it yet.
    expect(chat.goneModel(0)).toBeNull()
    await useModelsStore().ensureLoaded()
    expect([chat.goneModel(0), chat.goneModel(1)]).toEqual(['/ws/models/gone-1a2b3c', null])
    expect(await chat.send('hi')).toBe(false)
    expect(chat.sendError).toEqual({
      message:
        'The model on the left, “gone-1a2b3c”, is no longer in the workspace (deleted, or its link removed): pick another model for that side to go on, or start a new conversation.',
      field: 'model',
    })
    expect(fake.bridge.chat.send).not.toHaveBeenCalled()
    chat.panes[0].model = '/ws/models/tuned'
    expect(await chat.send('hi')).toBe(true)
  })

  it('marks the reply failed when the service refuses or the engine fails', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    fake.bridge.chat.send.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'chat.send: sampling.topP: must be above 0', 'sampling.topP'),
    )
    expect(await chat.send('hi')).toBe(false)
    expect(chat.sendError).toMatchObject({ field: 'sampling.topP' })
    expect(chat.panes[0].turns[1]).toMatchObject({ streaming: false, error: 'sampling.topP: must be above 0' })
    await chat.send('again')
    fake.emit({ type: 'chat.error', requestId: 'req-1', message: 'the engine stopped' })
    expect(chat.panes[0].turns[3]).toMatchObject({ streaming: false, error: 'the engine stopped' })
  })

  it('says a refusal once per side that failed, not again under the composer; what is missing before sending, there', async () => {
    const chat = useChatStore()
    chat.listen()
    expect(await chat.send('hi')).toBe(false)
    expect(chat.composerError).toMatchObject({ field: 'model' }) // nothing was sent: the composer says it
    chat.setCompare(true)
    chat.panes[0].model = '/a'
    chat.panes[1].model = '/b'
    const refusal = 'models.load: needs 9.0 GiB, more than the budget of 8.0 GiB; raise the budget'
    fake.bridge.chat.send.mockRejectedValue(new ApiError('failed', refusal))
    expect(await chat.send('hi')).toBe(false)
    expect(chat.panes.map((p) => p.turns[1].error)).toEqual([refusal, refusal])
    expect(chat.sendError?.message).toBe(refusal)
    expect(chat.composerError).toBeNull()
    // a setting's error is the setting's (ChatSettings), a missing message the composer's again
    chat.offload.enabled = true
    chat.offload.budget = 'lots'
    expect(await chat.send('hi')).toBe(false)
    expect(chat.composerError).toBeNull()
    chat.offload.enabled = false
    expect(await chat.send(' ')).toBe(false)
    expect(chat.composerError).toMatchObject({ field: 'messages' })
  })

  it('cancels the replies under way', async () => {
    const chat = useChatStore()
    chat.panes[0].model = '/m'
    await chat.send('hi')
    await chat.cancel()
    expect(fake.bridge.chat.cancel).toHaveBeenCalledWith({ requestId: 'req-1' })
  })

  it('shows the model load while chat.send waits on it, and Stop cancels the load without an error', async () => {
    const chat = useChatStore()
    const tasks = useTasksStore()
    tasks.listen()
    chat.panes[0].model = '/models/big'
    let reject: (e: unknown) => void = () => undefined
    fake.bridge.chat.send.mockImplementationOnce(() => new Promise((_resolve, no) => (reject = no)))
    fake.bridge.tasks.cancel.mockImplementationOnce(async () => {
      reject(new ApiError('cancelled', 'loading big was cancelled'))
      return true
    })
    const sending = chat.send('hi')
    const turn = chat.panes[0].turns[1]
    expect(turn.taskId).toBeDefined()
    expect(tasks.byId[turn.taskId!]).toMatchObject({ operation: 'models.load', title: 'Loading big' })
    fake.emit({
      type: 'task.progress',
      taskId: turn.taskId!,
      operation: 'models.load',
      progress: { label: 'Loading big', stage: 1, stages: 1, done: 5, total: 20, unit: 'bytes', elapsedSec: 1, etaSec: 3 },
    })
    expect(tasks.byId[turn.taskId!].progress?.done).toBe(5)
    const taskId = turn.taskId!
    await chat.cancel()
    expect(fake.bridge.tasks.cancel).toHaveBeenCalledWith(taskId)
    expect(await sending).toBe(true)
    expect(chat.panes[0].turns[1]).toMatchObject({ streaming: false, note: 'Stopped while the model was loading.' })
    expect(chat.panes[0].turns[1].error).toBeUndefined()
    expect(chat.panes[0].turns[1].taskId).toBeUndefined()
    expect(chat.sendError).toBeNull()
    expect(chat.streaming).toBe(false)
    expect(tasks.list).toEqual([])
    // the next message leaves the stopped exchange out of the history
    await chat.send('again')
    expect(fake.bridge.chat.send).toHaveBeenLastCalledWith(expect.objectContaining({ messages: [{ role: 'user', content: 'again' }] }))
  })

  it('drops the rest of a reply when the user starts a new conversation', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    await chat.send('hi')
    chat.newConversation()
    expect(fake.bridge.chat.cancel).toHaveBeenCalledWith({ requestId: 'req-1' })
    fake.emit({ type: 'chat.token', requestId: 'req-1', token: 1, index: 0, text: 'late' })
    expect(chat.panes[0].turns).toEqual([])
  })

  it('starts a new conversation when a link opens other models ("Chat with it" after an export)', async () => {
    const chat = useChatStore()
    chat.listen()
    chat.openModels('/base')
    await chat.send('hi')
    fake.emit({
      type: 'chat.done',
      requestId: 'req-1',
      text: 'Hello from the base model',
      stats: { newTokens: 2, stoppedBy: 'stop_token', prefillMs: 1, firstTokenMs: 1, decodeMs: 2, tokensPerSec: 10 },
    })
    await flush()
    expect(chat.conversationId).toBe('conv-new')
    // The same model again (a reload, the link followed twice): the conversation goes on.
    chat.openModels('/base')
    expect(chat.panes[0].turns).toHaveLength(2)

    chat.openModels('/ws/models/tuned', '/base')
    expect(chat.panes.map((p) => p.model)).toEqual(['/ws/models/tuned', '/base'])
    expect(chat.panes.map((p) => p.turns)).toEqual([[], []])
    expect(chat.conversationId).toBeNull()
    await chat.send('who are you?')
    // Neither model is fed the base model's earlier reply as its own history.
    for (const model of ['/ws/models/tuned', '/base'])
      expect(fake.bridge.chat.send).toHaveBeenCalledWith(
        expect.objectContaining({ model, messages: [{ role: 'user', content: 'who are you?' }] }),
      )
  })

  it('saves both sides of a side-by-side conversation, and reopens both', async () => {
    const chat = sideBySide()
    await chat.send('What is 3 + 4?')
    const done = (requestId: string, text: string) =>
      fake.emit({
        type: 'chat.done',
        requestId,
        text,
        stats: { newTokens: 1, stoppedBy: 'stop_token', prefillMs: 1, firstTokenMs: 1, decodeMs: 1, tokensPerSec: 1 },
      })
    chat.panes[0].turns[1].content = 'seven'
    chat.panes[1].turns[1].content = '7'
    done('req-1', 'seven')
    done('req-2', '7')
    await flush()
    const saved = fake.bridge.conversations.save.mock.calls.at(-1)![0] as Conversation
    expect(saved).toMatchObject({
      model: '/base',
      messages: [
        { role: 'user', content: 'What is 3 + 4?' },
        { role: 'assistant', content: 'seven' },
      ],
      compare: {
        model: '/tuned',
        messages: [
          { role: 'user', content: 'What is 3 + 4?' },
          { role: 'assistant', content: '7' },
        ],
      },
    })
    chat.newConversation()
    chat.setCompare(false)
    chat.openConversation({ ...saved, id: 'c2', created: '', updated: '' })
    expect(chat.compareMode).toBe(true)
    expect(chat.panes.map((p) => [p.model, p.turns.map((t) => t.content)])).toEqual([
      ['/base', ['What is 3 + 4?', 'seven']],
      ['/tuned', ['What is 3 + 4?', '7']],
    ])
    // Reopened from one side, it is still that conversation: the next message goes on in it (it
    // was saved as a new one, a duplicate in the list).
    expect(chat.conversationId).toBe('c2')
    await chat.send('And 5 + 6?')
    done('req-3', 'eleven')
    done('req-4', '11')
    await flush()
    expect(fake.bridge.conversations.save.mock.calls.at(-1)![0]).toMatchObject({ id: 'c2' })
    // A one-model conversation reopens on one side.
    chat.openConversation(conversation)
    expect(chat.compareMode).toBe(false)
  })

  it("keeps the newest reply's prompt as the model saw it, with its routing, and shows it again when reopened", async () => {
    const chat = useChatStore()
    chat.listen()
    chat.panes[0].model = '/m'
    const stats = { newTokens: 1, stoppedBy: 'stop_token' as const, prefillMs: 1, firstTokenMs: 1, decodeMs: 1, tokensPerSec: 1 }
    for (const n of [1, 2]) {
      await chat.send(`q${n}`)
      fake.emit({ type: 'chat.prompt', requestId: `req-${n}`, tokens: ['<s>', 'q', `${n}`], routing: [routing(0, 1), routing(2, 3)] })
      fake.emit({ type: 'chat.done', requestId: `req-${n}`, text: `a${n}`, stats })
      await flush()
    }
    const saved = fake.bridge.conversations.save.mock.calls.at(-1)![0] as Conversation
    // The newest reply's only: its prompt holds the turns before it.
    expect(saved.messages.map((m) => m.prompt !== undefined)).toEqual([false, false, false, true])
    expect(() => apiSchemas['conversations.save'].parse(saved)).not.toThrow()
    chat.newConversation()
    chat.openConversation({ ...saved, id: 'c-p', created: '', updated: '' })
    expect(chat.panes[0].turns[3]).toMatchObject({
      prompt: { tokens: ['<s>', 'q', '2'], routing: [routing(0, 1), routing(2, 3)] },
      promptTokens: 3,
    })
    expect(chat.panes[0].turns[1].prompt).toBeUndefined()
  })

  it('lists, opens and deletes saved conversations', async () => {
    const chat = useChatStore()
    await chat.refreshConversations()
    expect(chat.conversations.map((c) => c.id)).toEqual(['conv-1'])
    chat.openConversation(conversation)
    expect(chat.conversationId).toBe('conv-1')
    expect(chat.systemPrompt).toBe('Be brief.')
    expect(chat.panes[0]).toMatchObject({ model: conversation.model, turns: conversation.messages })
    await chat.deleteConversation('conv-1')
    expect(chat.conversations).toEqual([])
    expect(chat.conversationId).toBeNull()
    fake.bridge.conversations.delete.mockRejectedValueOnce(new ApiError('failed', 'no conversation "x"'))
    await expect(chat.deleteConversation('x')).rejects.toMatchObject({ message: 'no conversation "x"' })
  })
})
