/**
 * The models, runs, chat, conversations and experts methods through the Workbench service with
 * the real engine handlers (in-process): create a model, import a dataset, fine-tune, watch the
 * events, cancel and resume, export, chat with streamed tokens and routing, analyse experts.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import type { ChatEvent, ModelsCreateArgs, RunEvent, TaskProgressEvent, WorkbenchEvent } from '../../../src/shared/api'
import type { Family } from '../../../src/shared/modelConfig'
import { initBackend } from '../../../src/main/engine/backend'
import { EngineClient } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { CHATML_MODEL, FIXTURES, tempDir } from '../data/helpers'
import { handlers } from '../../../src/main/engineProcess/process'
import { fakeSpawner } from './fakeEngine'

/** The in-process engine with every real handler (a fake backend report only). */
const realEngine = (): ReturnType<typeof fakeSpawner> => fakeSpawner({ handlers: { 'models.inspect': handlers['models.inspect'] } })

function until<T extends WorkbenchEvent>(wb: Workbench, pred: (e: WorkbenchEvent) => e is T, timeoutMs = 60_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error('timed out waiting for an event'))
    }, timeoutMs)
    const off = wb.onEvent((e) => {
      if (pred(e)) {
        clearTimeout(timer)
        off()
        resolve(e)
      }
    })
  })
}

/** A two-layer model of four experts, small enough to train in a test. */
const tiny = (family: Family): ModelsCreateArgs['config'] => ({
  family,
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 8,
  expertIntermediateSize: 32,
  numExperts: 4,
  topK: 2,
})

const runDone =
  (runId: string) =>
  (e: WorkbenchEvent): e is Extract<RunEvent, { type: 'run.status' }> =>
    e.type === 'run.status' && e.runId === runId && ['completed', 'cancelled', 'failed'].includes(e.status)

describe('the workbench API end to end (in-process engine)', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('create a model, import, fine-tune, cancel, resume, export, chat, analyse', async () => {
    const workspace = tempDir()
    const wb = new Workbench({ engine: new EngineClient(realEngine().spawner), host: 'server', workspace, bundledModel: CHATML_MODEL })
    const events: WorkbenchEvent[] = []
    wb.onEvent((e) => events.push(e))
    try {
      // a new model with the fixture tokenizer
      const model = await wb.api['models.create']({ name: 'Tiny MoE', config: tiny('mixtral') })
      expect(model.info).toMatchObject({ family: 'mixtral', numExperts: 4, numLayers: 2, checkpointDtype: 'float32' })
      expect(model.source).toBe('workspace')
      const listed = await wb.api['models.list']()
      expect(listed.map((m) => m.name)).toContain('Tiny MoE')
      // Names stay apart, and a folder linked twice is one entry.
      expect((await wb.api['models.create']({ name: 'Tiny MoE', config: tiny('mixtral') })).name).toBe('Tiny MoE 2')
      const linked = await wb.api['models.link']({ dir: model.dir })
      expect(linked.id).toBe(model.id)
      const outside = join(tempDir(), 'copy')
      cpSync(model.dir, outside, { recursive: true })
      // The config file typed for its folder, and a folder that is not there: each said so.
      await expect(wb.call('models.inspect', { dir: join(outside, 'config.json') })).rejects.toMatchObject({
        field: 'dir',
        message: expect.stringMatching(/config\.json is a file; give the model's folder \(.*copy\)$/),
      })
      await expect(wb.call('models.inspect', { dir: join(outside, 'nope') })).rejects.toMatchObject({
        message: expect.stringMatching(/nope: no such folder/),
      })
      // A download not done (config.json, no weights): described from the config when the
      // inspector asks so, refused otherwise, and never linked.
      const pending = join(tempDir(), 'pending')
      mkdirSync(pending)
      cpSync(join(outside, 'config.json'), join(pending, 'config.json'))
      expect(await wb.api['models.inspect']({ dir: pending, configOnly: true })).toMatchObject({
        configOnly: true,
        family: 'mixtral',
        params: (await wb.api['models.inspect']({ dir: outside })).params,
      })
      expect(await wb.api['models.inspect']({ dir: outside, configOnly: true })).not.toHaveProperty('configOnly')
      await expect(wb.call('models.inspect', { dir: pending })).rejects.toMatchObject({
        message: expect.stringMatching(/no model\.safetensors .* it has the model's config\.json and no weights/),
      })
      await expect(wb.call('models.link', { dir: pending })).rejects.toMatchObject({
        message: expect.stringMatching(/it has the model's config\.json and no weights/),
      })
      const once = await wb.api['models.link']({ dir: outside })
      // unnamed, a copy takes the name the folder gives itself (numbered: the original keeps its own)
      expect(once).toMatchObject({ name: 'Tiny MoE 3', source: 'linked' })
      expect((await wb.api['models.link']({ dir: `${outside}/` })).id).toBe(once.id)
      expect((await wb.api['models.list']()).filter((m) => m.dir === outside)).toHaveLength(1)
      const plan = await wb.api['models.plan']({ dir: model.dir, budgetBytes: 10_000_000 })
      expect(plan.fitsResident).toBe(true)

      const ds = await wb.api['datasets.import']({
        file: join(FIXTURES, 'layouts/messages.jsonl'),
        name: 'chats',
        split: { validation: 0.34 },
      })

      // bad payloads name the field
      await expect(wb.call('runs.start', { model: model.dir, dataset: 'nope' })).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'dataset',
      })
      await expect(wb.call('runs.start', { model: model.dir, dataset: ds.id, config: { optimizer: { lr: -1 } } })).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'config.optimizer.lr',
      })

      // a run that is cancelled at step 2, then resumed to the end
      const cfg = { method: 'lora' as const, batchSize: 2, maxSteps: 6, evalEvery: 3, checkpointEvery: 0, optimizer: { lr: 0.01 } }
      const started = await wb.api['runs.start']({ model: model.dir, dataset: ds.id, config: cfg, name: 'first' })
      expect(['queued', 'running']).toContain(started.status)
      const stepped = until(
        wb,
        (e): e is Extract<RunEvent, { type: 'run.step' }> => e.type === 'run.step' && e.runId === started.id && e.metrics.step >= 2,
      )
      await stepped
      // Its own engine trains it: events, not re-reads.
      expect((await wb.api['runs.get']({ id: started.id })).trainedElsewhere).toBeUndefined()
      await wb.api['runs.cancel']({ id: started.id })
      const cancelled = await until(wb, runDone(started.id))
      expect(cancelled.status).toBe('cancelled')
      const resumed = await wb.api['runs.resume']({ id: started.id })
      expect(resumed.status).toBe('queued')
      const evaluated = until(
        wb,
        (e): e is Extract<RunEvent, { type: 'run.evaluated' }> => e.type === 'run.evaluated' && e.runId === started.id,
      )
      const finished = await until(wb, runDone(started.id))
      expect(finished.status).toBe('completed')
      // Did it learn? The base and the fine-tuned model answer the same rows of each split.
      const { evaluation } = await evaluated
      expect(evaluation.splits.map((x) => x.split)).toEqual(['validation', 'train'])
      for (const x of evaluation.splits) {
        expect(x.before.n).toBeGreaterThan(0)
        expect(x.after.items.map((i) => i.expected)).toEqual(x.before.items.map((i) => i.expected))
        expect(x.after.model).toMatch(new RegExp(`run ${started.id}, step-6`))
      }
      const detail = await wb.api['runs.get']({ id: started.id })
      expect(detail.evaluation?.splits).toHaveLength(2)
      expect(detail.record).toMatchObject({ status: 'completed', step: 6, name: 'first' })
      expect(detail.steps.map((s) => s.step)).toEqual([1, 2, 3, 4, 5, 6])
      expect(detail.steps.at(-1)!.step).toBe(6)
      expect(detail.evals.length).toBeGreaterThan(0)
      expect(detail.routing.at(-1)!.layers).toHaveLength(2)
      expect((await wb.api['runs.list']()).map((r) => r.id)).toContain(started.id)

      const exported = await wb.api['runs.export']({ id: started.id })
      expect(exported.info).toMatchObject({ family: 'mixtral' })
      expect(exported.provenance).toMatchObject({ fromRun: started.id })
      // Its card is headed by the name the lists show, not the folder's id.
      expect(readFileSync(join(exported.dir, 'README.md'), 'utf8')).toContain(`\n# ${exported.name}\n`)

      // Evaluation on demand: the exported folder answers as the run's checkpoint did.
      const onExport = await wb.api['eval.run']({ model: exported.dir, dataset: ds.id, split: 'train', limit: 5 })
      const onRun = await wb.api['eval.run']({ run: started.id, split: 'train', limit: 5 })
      expect(onExport.n).toBeGreaterThan(0)
      expect(onExport.items.map((i) => i.generated)).toEqual(onRun.items.map((i) => i.generated))
      await expect(wb.call('eval.run', { model: exported.dir })).rejects.toMatchObject({ code: 'invalid_argument', field: 'dataset' })
      // A checkpoint of the run answers as the run does where it is the last; another folder is refused.
      const ckpt = (await wb.api['runs.get']({ id: started.id })).checkpoints!.at(-1)!
      const onCheckpoint = await wb.api['eval.run']({ run: started.id, checkpoint: ckpt.dir, split: 'train', limit: 5 })
      expect(onCheckpoint.items.map((i) => i.generated)).toEqual(onRun.items.map((i) => i.generated))
      await expect(wb.call('eval.run', { run: started.id, checkpoint: exported.dir })).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'checkpoint',
        message: expect.stringMatching(/is not a checkpoint of run/),
      })
      // Each score of a run's checkpoint is kept with the run, oldest first (the latest when none is
      // named); a model folder's score is no run's, and a refused one is kept nowhere.
      const kept = (await wb.api['runs.get']({ id: started.id })).scores!
      expect(kept.map((k) => [k.step, k.checkpoint, k.dataset, k.report.split])).toEqual([
        [ckpt.step, ckpt.dir, ds.id, 'train'],
        [ckpt.step, ckpt.dir, ds.id, 'train'],
      ])
      expect(kept[1].report).toEqual(onCheckpoint)
      expect(kept[0].report).toEqual(onRun)
      // Raw text has no answers: refused with the reason, never a score of 0% over no rows.
      const text = await wb.api['datasets.import']({ file: join(FIXTURES, 'paragraphs.txt'), name: 'prose', split: { validation: 0 } })
      await expect(wb.call('eval.run', { model: exported.dir, dataset: text.id, split: 'all' })).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'dataset',
        message: expect.stringMatching(/^nothing to evaluate: dataset "prose" \(\S+\) has \d+ rows, none with an answer/),
      })
      await expect(wb.call('eval.run', { model: exported.dir, dataset: text.id })).rejects.toMatchObject({
        message: expect.stringMatching(
          /the validation split of dataset "prose" \(\S+\) has no rows; score its training rows instead \(or all of them: --split all\), or a dataset with answers$/,
        ),
      })

      // chat: streamed tokens, their routing, done
      const chat = await wb.api['chat.send']({
        model: exported.dir,
        messages: [{ role: 'user', content: 'Hello there' }],
        sampling: { greedy: true },
        maxNewTokens: 6,
      })
      expect(chat.promptTokens).toBeGreaterThan(2)
      const done = await until(
        wb,
        (e): e is Extract<ChatEvent, { type: 'chat.done' }> =>
          (e.type === 'chat.done' || e.type === 'chat.error') && e.requestId === chat.requestId,
      )
      expect(done.type).toBe('chat.done')
      const mine = events.filter((e): e is ChatEvent => e.type.startsWith('chat.') && (e as ChatEvent).requestId === chat.requestId)
      const tokens = mine.filter((e) => e.type === 'chat.token')
      const routing = mine.filter((e) => e.type === 'chat.routing')
      const prompt = mine.find((e) => e.type === 'chat.prompt')
      expect(prompt && prompt.type === 'chat.prompt' && prompt.routing.length).toBe(chat.promptTokens)
      expect(tokens.length).toBe(done.stats.newTokens)
      expect(routing.length).toBe(tokens.length)
      expect(tokens.map((t) => (t.type === 'chat.token' ? t.text : '')).join('')).toBe(done.text)
      for (const r of routing) if (r.type === 'chat.routing') expect(r.routing.layers).toHaveLength(2)
      expect(chat.template).not.toBe('none')
      expect(chat.prompt).not.toBe('Hello there') // templated

      // The plain format: the last user message as it is, no template (as prompt/completion rows train).
      expect(exported.provenance).toMatchObject({ promptFormat: 'chat' }) // trained on chats
      const plain = await wb.api['chat.send']({
        model: exported.dir,
        format: 'plain',
        messages: [
          { role: 'user', content: 'earlier' },
          { role: 'assistant', content: 'x' },
          { role: 'user', content: 'Hello there' },
        ],
        sampling: { greedy: true },
        maxNewTokens: 2,
      })
      expect(plain).toMatchObject({ prompt: 'Hello there', template: 'none' })
      await until(wb, (e): e is ChatEvent => (e.type === 'chat.done' || e.type === 'chat.error') && e.requestId === plain.requestId)
      await expect(
        wb.call('chat.send', { model: exported.dir, format: 'raw', messages: [{ role: 'user', content: 'x' }] }),
      ).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'format',
      })

      // A model trained on prompt/completion rows is chatted with in the plain format.
      const pc = await wb.api['datasets.import']({ file: join(FIXTURES, 'layouts/completion.jsonl'), name: 'pc', split: { validation: 0 } })
      const pcRun = await wb.api['runs.start']({
        model: model.dir,
        dataset: pc.id,
        config: { method: 'lora', maxSteps: 2, batchSize: 2, evalEvery: 0, checkpointEvery: 0, finalEval: { rows: 0 } },
      })
      expect((await until(wb, runDone(pcRun.id))).status).toBe('completed')
      expect((await wb.api['runs.export']({ id: pcRun.id })).provenance).toMatchObject({ promptFormat: 'plain' })

      // conversations
      const conv = await wb.api['conversations.save']({
        title: 'hello',
        model: exported.dir,
        messages: [
          { role: 'user', content: 'Hello there' },
          { role: 'assistant', content: done.text },
        ],
      })
      expect((await wb.api['conversations.list']()).map((c) => c.id)).toEqual([conv.id])
      // Side by side: the right side's model and turns are kept too.
      const both = await wb.api['conversations.save']({
        id: conv.id,
        title: 'hello',
        model: exported.dir,
        messages: [{ role: 'user', content: 'Hello there' }],
        compare: { model: model.dir, messages: [{ role: 'user', content: 'Hello there' }] },
      })
      expect((await wb.api['conversations.list']())[0]).toMatchObject({ id: conv.id, compare: both.compare })
      await wb.api['conversations.delete']({ id: conv.id })
      expect(await wb.api['conversations.list']()).toEqual([])

      // experts over a dataset and over text
      const a = await wb.api['experts.analyze']({ model: model.dir, dataset: ds.id })
      expect(a.layers).toHaveLength(2)
      expect(a.layers[0].load.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 6)
      expect(a.layers[0].coactivation).toHaveLength(4)
      const b = await wb.api['experts.analyze']({ model: model.dir, text: 'hello world' })
      expect(b.tokens).toBeGreaterThan(0)
      await expect(wb.call('experts.analyze', { model: model.dir })).rejects.toMatchObject({ code: 'invalid_argument' })
    } finally {
      await wb.close()
    }
  }, 120_000)

  /** A one-layer OLMoE made in the workspace, and the alpaca fixture imported without a validation split. */
  async function tinyModelAndAlpaca(wb: Workbench) {
    const model = await wb.api['models.create']({
      name: 'm',
      config: {
        family: 'olmoe',
        hiddenSize: 32,
        numLayers: 1,
        numHeads: 4,
        numKvHeads: 4,
        headDim: 8,
        expertIntermediateSize: 16,
        numExperts: 4,
        topK: 2,
      },
    })
    const ds = await wb.api['datasets.import']({ file: join(FIXTURES, 'layouts/alpaca.jsonl'), name: 'a', split: { validation: 0 } })
    return { model, ds }
  }

  it('a maxLength that cuts off every answer fails the run saying so (it "completed" with a validation loss of 0)', async () => {
    const workspace = tempDir()
    const wb = new Workbench({ engine: new EngineClient(realEngine().spawner), host: 'server', workspace, bundledModel: CHATML_MODEL })
    try {
      const { model, ds } = await tinyModelAndAlpaca(wb)
      const run = await wb.api['runs.start']({
        model: model.dir,
        dataset: ds.id,
        config: { maxSteps: 2, batchSize: 1, evalEvery: 0, finalEval: { rows: 0 }, data: { maxLength: 4 } },
      })
      const failed = await until(wb, runDone(run.id))
      expect(failed.status).toBe('failed')
      expect(failed.message).toMatch(
        /data\.maxLength 4 cuts off every training row's answer: there is nothing to learn; raise data\.maxLength/,
      )
    } finally {
      await wb.close()
    }
  }, 60_000)

  it('a crashed engine marks its running run failed', async () => {
    const workspace = tempDir()
    const fake = realEngine()
    const wb = new Workbench({ engine: new EngineClient(fake.spawner), host: 'server', workspace, bundledModel: CHATML_MODEL })
    try {
      const { model, ds } = await tinyModelAndAlpaca(wb)
      const run = await wb.api['runs.start']({
        model: model.dir,
        dataset: ds.id,
        config: { maxSteps: 40, batchSize: 1, checkpointEvery: 1, evalEvery: 0 },
      })
      await until(
        wb,
        (e): e is Extract<RunEvent, { type: 'run.step' }> => e.type === 'run.step' && e.runId === run.id && e.metrics.step >= 2,
      )
      fake.children.at(-1)!.crash('SIGKILL')
      const failed = await until(wb, runDone(run.id))
      expect(failed.status).toBe('failed')
      expect(failed.message).toMatch(/engine process stopped.*; resume continues from step-\d+/)
      expect((await wb.api['runs.get']({ id: run.id })).record.status).toBe('failed')
    } finally {
      await wb.close()
    }
  }, 60_000)

  it('export, model loading and expert analysis report task.progress and stop on tasks.cancel, leaving nothing behind', async () => {
    const workspace = tempDir()
    const wb = new Workbench({ engine: new EngineClient(realEngine().spawner), host: 'server', workspace, bundledModel: CHATML_MODEL })
    const events: WorkbenchEvent[] = []
    wb.onEvent((e) => events.push(e))
    const progressOf = (taskId: string): TaskProgressEvent[] =>
      events.filter((e): e is TaskProgressEvent => e.type === 'task.progress' && e.taskId === taskId)
    const stagesOf = (taskId: string): string[] => [
      ...new Set(progressOf(taskId).map((e) => `${e.progress.stage}/${e.progress.stages} ${e.progress.label}`)),
    ]
    try {
      const model = await wb.api['models.create']({ name: 'Tasks', config: tiny('qwen2_moe') })
      const ds = await wb.api['datasets.import']({
        file: join(FIXTURES, 'layouts/messages.jsonl'),
        name: 'chats',
        split: { validation: 0 },
      })
      const run = await wb.api['runs.start']({
        model: model.dir,
        dataset: ds.id,
        // No evaluation after the run: it loads models in the background, and the loads below
        // would wait for it ("Waiting for another model to finish loading") on a busy machine.
        config: { method: 'full', batchSize: 2, maxSteps: 2, evalEvery: 0, finalEval: { rows: 0 } },
      })
      expect((await until(wb, runDone(run.id))).status).toBe('completed')
      const models = join(workspace, 'models')

      // export: one stage, written tensor by tensor and counted in bytes, the last event says done
      const exported = await wb.api['runs.export']({ id: run.id, taskId: 'export-1' })
      expect(stagesOf('export-1')).toEqual(['1/1 Writing the checkpoint'])
      expect(progressOf('export-1').every((e) => e.operation === 'runs.export')).toBe(true)
      const write = progressOf('export-1')
      expect(write.every((e) => e.progress.unit === 'bytes' && e.progress.total > 0)).toBe(true)
      const total = write[0].progress.total
      expect(write.at(-1)!.progress).toMatchObject({ stage: 1, done: total, total, etaSec: 0 })

      // a cancelled export rejects with 'cancelled' and adds nothing to the models folder
      const before = readdirSync(models).sort()
      const cancelledExport = wb.api['runs.export']({ id: run.id, name: 'never', taskId: 'export-2' })
      expect(await wb.api['tasks.cancel']({ taskId: 'export-2' })).toBe(true)
      await expect(cancelledExport).rejects.toMatchObject({ code: 'cancelled', message: expect.stringMatching(/cancelled/) })
      expect(readdirSync(models).sort()).toEqual(before)
      expect(await wb.api['tasks.cancel']({ taskId: 'export-2' })).toBe(false)

      // chat: the model load is a task; cancelling it leaves the engine able to load it next time
      const ask = { model: exported.dir, messages: [{ role: 'user' as const, content: 'Hi' }], sampling: { greedy: true }, maxNewTokens: 2 }
      const cancelledLoad = wb.api['chat.send']({ ...ask, taskId: 'load-1' })
      expect(await wb.api['tasks.cancel']({ taskId: 'load-1' })).toBe(true)
      await expect(cancelledLoad).rejects.toMatchObject({ code: 'cancelled' })
      const chat = await wb.api['chat.send']({ ...ask, taskId: 'load-2' })
      const loaded = progressOf('load-2')
      expect(loaded.every((e) => e.operation === 'models.load' && e.progress.unit === 'bytes')).toBe(true)
      expect(loaded.at(-1)!.progress.done).toBe(loaded.at(-1)!.progress.total)
      await until(wb, (e): e is Extract<ChatEvent, { type: 'chat.done' }> => e.type === 'chat.done' && e.requestId === chat.requestId)
      // loaded now: no load, no progress
      const again = await wb.api['chat.send']({ ...ask, taskId: 'load-3' })
      await until(wb, (e): e is Extract<ChatEvent, { type: 'chat.done' }> => e.type === 'chat.done' && e.requestId === again.requestId)
      expect(progressOf('load-3')).toEqual([])

      // experts: load, then route the rows; one task id at a time
      const analysis = wb.api['experts.analyze']({ model: model.dir, dataset: ds.id, taskId: 'experts-1' })
      await expect(wb.api['experts.analyze']({ model: model.dir, text: 'hi', taskId: 'experts-1' })).rejects.toMatchObject({
        code: 'invalid_argument',
        field: 'taskId',
      })
      const a = await analysis
      expect(stagesOf('experts-1')).toEqual([`1/2 Loading ${basename(model.dir)}`, '2/2 Routing the text through the model'])
      const routed = progressOf('experts-1').filter((e) => e.progress.stage === 2)
      expect(routed.at(-1)!.progress).toMatchObject({ unit: 'texts', done: ds.split.train, total: ds.split.train })
      expect(a.layers).toHaveLength(2)
      const cancelledAnalysis = wb.api['experts.analyze']({ model: model.dir, dataset: ds.id, taskId: 'experts-2' })
      expect(await wb.api['tasks.cancel']({ taskId: 'experts-2' })).toBe(true)
      await expect(cancelledAnalysis).rejects.toMatchObject({ code: 'cancelled' })
      await expect(wb.call('tasks.cancel', { taskId: '../x' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'taskId' })

      // a run cancelled while its dataset is still being tokenised stops there, as cancelled
      const big = join(workspace, 'big.jsonl')
      const line = (i: number): string =>
        JSON.stringify({
          messages: [
            { role: 'user', content: `What is ${i} + ${i}?` },
            { role: 'assistant', content: `${2 * i}` },
          ],
        })
      writeFileSync(big, Array.from({ length: 20_000 }, (_, i) => line(i)).join('\n'))
      const bigDs = await wb.api['datasets.import']({ file: big, name: 'big', split: { validation: 0 } })
      const early = await wb.api['runs.start']({ model: model.dir, dataset: bigDs.id, config: { maxSteps: 2, evalEvery: 0 } })
      await wb.api['runs.cancel']({ id: early.id })
      expect(await until(wb, runDone(early.id))).toMatchObject({
        status: 'cancelled',
        message: expect.stringMatching(/^tokenising dataset .* was cancelled$/),
      })
      expect((await wb.api['runs.get']({ id: early.id })).record).toMatchObject({ status: 'cancelled', step: 0 })
    } finally {
      await wb.close()
    }
  }, 120_000)
})
