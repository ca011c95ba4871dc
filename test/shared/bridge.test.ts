/** The client bridge: every API method reachable by name, its arguments passed through unchanged. */
import { describe, expect, it } from 'vitest'
import { METHODS, type WorkbenchEvent } from '../../src/shared/api'
import { createBridge, type Invoke } from '../../src/shared/bridge'

describe('createBridge', () => {
  // Built inside each test (not at collection time), so mutation testing sees the tests cover it.
  let calls: [string, unknown][] = []
  let subscribed: ((e: WorkbenchEvent) => void) | null = null
  const make = () => {
    calls = []
    const invoke = ((method: string, args: unknown) => {
      calls.push([method, args])
      return Promise.resolve(`result of ${method}`)
    }) as unknown as Invoke
    return createBridge(invoke, (listener) => {
      subscribed = listener
      return () => {
        subscribed = null
      }
    })
  }

  it('reaches every API method once, with the arguments as given, and returns its result', async () => {
    const bridge = make()
    const a = { any: 'args' } as never
    const b = bridge
    const results = await Promise.all([
      b.system.info(),
      b.models.inspect('/models/m'),
      b.models.list(),
      b.models.plan(a),
      b.models.create(a),
      b.models.link(a),
      b.models.delete(a),
      b.datasets.inspect(a),
      b.datasets.import(a),
      b.datasets.list(),
      b.datasets.cancel('/data/x.jsonl'),
      b.datasets.delete(a),
      b.runs.start(a),
      b.runs.auto(a),
      b.runs.list(),
      b.runs.get(a),
      b.runs.cancel(a),
      b.runs.delete(a),
      b.runs.resume(a),
      b.runs.export(a),
      b.runs.handoff(a),
      b.runs.importAdapter(a),
      b.chat.send(a),
      b.chat.cancel(a),
      b.conversations.list(),
      b.conversations.save(a),
      b.conversations.delete(a),
      b.experts.analyze(a),
      b.eval.run(a),
      b.tasks.cancel('task-1'),
    ])
    expect(calls.map(([m]) => m).sort()).toEqual([...METHODS].sort())
    expect(results).toEqual(calls.map(([m]) => `result of ${m}`))
    const byMethod = new Map(calls)
    expect(byMethod.get('models.inspect')).toEqual({ dir: '/models/m' })
    // The inspector's reading of a download not done: asked for, and only then.
    await b.models.inspect('/models/m', { configOnly: true })
    expect(calls.at(-1)).toEqual(['models.inspect', { dir: '/models/m', configOnly: true }])
    await b.models.inspect('/models/m', { configOnly: false })
    expect(calls.at(-1)).toEqual(['models.inspect', { dir: '/models/m' }])
    expect(byMethod.get('datasets.cancel')).toEqual({ file: '/data/x.jsonl' })
    expect(byMethod.get('tasks.cancel')).toEqual({ taskId: 'task-1' })
    for (const m of ['system.info', 'models.list', 'datasets.list', 'runs.list', 'conversations.list'])
      expect(byMethod.get(m), m).toBeUndefined()
    for (const [m, args] of calls)
      if (!['models.inspect', 'datasets.cancel', 'tasks.cancel'].includes(m) && byMethod.get(m) !== undefined) expect(args, m).toBe(a)
  })

  it('subscribes to events and hands back the unsubscribe', () => {
    const bridge = make()
    const seen: WorkbenchEvent[] = []
    const off = bridge.onEvent((e) => seen.push(e))
    const event = { type: 'log', level: 'info', message: 'hello' } as unknown as WorkbenchEvent
    subscribed!(event)
    expect(seen).toEqual([event])
    off()
    expect(subscribed).toBeNull()
  })
})
