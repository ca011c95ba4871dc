import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { WorkbenchEvent } from '../../../src/shared/api'
import { EngineClient } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { fakeSpawner } from '../service/fakeEngine'
import { CHATML_MODEL, FIXTURES, LAYOUTS, tempDir } from './helpers'

describe('datasets.* through the Workbench service', () => {
  it('validates, inspects, imports, lists and reports progress', async () => {
    const fake = fakeSpawner()
    const workspace = tempDir()
    const wb = new Workbench({ engine: new EngineClient(fake.spawner), host: 'server', workspace })
    const events: WorkbenchEvent[] = []
    wb.onEvent((e) => events.push(e))
    await expect(wb.call('datasets.inspect', { file: '' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'file' })
    await expect(wb.call('datasets.import', { file: 'x.jsonl', split: { validation: 1 } })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'split.validation',
      message: 'datasets.import: split.validation: must be below 1',
    })
    await expect(wb.call('datasets.inspect', { file: 'x.jsonl', layout: 'chatml' })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'layout',
    })
    const r = await wb.api['datasets.inspect']({ file: join(LAYOUTS, 'messages.jsonl'), model: CHATML_MODEL })
    expect(r.stats.tokens?.count).toBe(2)
    await expect(wb.call('datasets.import', { file: join(FIXTURES, 'bad.jsonl') })).rejects.toMatchObject({
      code: 'failed',
      message: expect.stringMatching(/^13 of 16 rows are invalid/),
    })
    // An argument the schema accepts but the file refuses is still refused by that field (it was
    // a 422 'failed' without one), across the worker thread that reads the file.
    await expect(wb.call('datasets.import', { file: join(LAYOUTS, 'missing.jsonl') })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'file',
      message: expect.stringContaining('no such file'),
    })
    await expect(wb.call('datasets.import', { file: LAYOUTS })).rejects.toMatchObject({ code: 'invalid_argument', field: 'file' })
    await expect(
      wb.call('datasets.inspect', { file: join(LAYOUTS, 'alpaca.jsonl'), layout: 'alpaca', mapping: { output: 'answer' } }),
    ).rejects.toMatchObject({ code: 'invalid_argument', field: 'mapping.output', message: expect.stringContaining('"answer"') })
    await expect(
      wb.call('datasets.import', { file: join(LAYOUTS, 'alpaca.jsonl'), layout: 'alpaca', mapping: { question: 'q' } }),
    ).rejects.toMatchObject({ code: 'invalid_argument', field: 'mapping.question' })
    const m = await wb.api['datasets.import']({ file: join(LAYOUTS, 'alpaca.jsonl'), name: 'alpaca' })
    expect(await wb.api['datasets.list']()).toEqual([m])
    const progress = events.filter((e) => e.type === 'dataset.progress')
    expect(progress.some((e) => e.type === 'dataset.progress' && e.operation === 'import' && e.progress.phase === 'done')).toBe(true)
    expect(fake.children).toHaveLength(0)
    await wb.close()
  })
})
