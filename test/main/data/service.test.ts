import { writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { DatasetProgressEvent } from '../../../src/shared/dataset'
import { datasetMethods, defaultWorkspace } from '../../../src/main/data/service'
import { CHATML_MODEL, FIXTURES, LAYOUTS, tempDir } from './helpers'

describe('the datasets.* methods for the service', () => {
  it('inspects with a model, imports, lists, and reports progress as dataset.progress events', async () => {
    const workspace = tempDir()
    const events: DatasetProgressEvent[] = []
    const methods = datasetMethods(workspace, (e) => events.push(e))
    const file = join(LAYOUTS, 'messages.jsonl')
    const inspected = await methods['datasets.inspect']({ file, model: CHATML_MODEL, maxLength: 512 })
    expect(inspected.template.source).toBe('model')
    expect(inspected.stats.tokens?.count).toBe(2)
    expect(events.every((e) => e.type === 'dataset.progress' && e.operation === 'inspect' && e.file === file)).toBe(true)
    expect(events.at(-1)?.progress).toMatchObject({ phase: 'reading', bytesRead: inspected.bytes, totalBytes: inspected.bytes, rows: 2 })

    await expect(methods['datasets.import']({ file: join(FIXTURES, 'bad.jsonl') })).rejects.toThrow(/^13 of 16 rows are invalid/)
    const manifest = await methods['datasets.import']({ file, name: 'chats', split: { validation: 0.5, seed: 3 } })
    expect(manifest).toMatchObject({ name: 'chats', split: { train: 1, validationRows: 1 } })
    expect(events.at(-1)).toMatchObject({ operation: 'import', progress: { phase: 'done' } })
    expect(await methods['datasets.list']()).toEqual([manifest])
  })

  it('puts the workspace in $MOE_WORKBENCH_WORKSPACE, else ~/moe-workbench', () => {
    expect(defaultWorkspace({ MOE_WORKBENCH_WORKSPACE: '/data/wb' })).toBe('/data/wb')
    expect(defaultWorkspace({})).toBe(join(homedir(), 'moe-workbench'))
  })
})

describe('datasets.cancel', () => {
  it('stops an import under way and leaves no dataset behind', async () => {
    const workspace = tempDir()
    const file = join(tempDir(), 'big.jsonl')
    writeFileSync(file, Array.from({ length: 200_000 }, (_, i) => JSON.stringify({ text: `row ${i} ${'x'.repeat(40)}` })).join('\n') + '\n')
    let cancelled = 0
    const api = datasetMethods(workspace, (e) => {
      if (e.progress.phase !== 'done' && cancelled === 0) void api['datasets.cancel']({ file }).then((n) => (cancelled = n))
    })
    await expect(api['datasets.import']({ file, name: 'big' })).rejects.toThrow(/cancel|abort/i)
    expect(cancelled).toBe(1)
    expect(await api['datasets.list']()).toEqual([])
    expect(await api['datasets.cancel']({ file })).toBe(0)
  })
})

describe('the service thread stays free while a dataset is read', () => {
  it('answers a storm of other requests while a 5 MB line is tokenised (it runs in a worker thread)', async () => {
    const workspace = tempDir()
    const file = join(tempDir(), 'one-long-line.jsonl')
    const words = Array.from({ length: 600_000 }, (_, i) => `w${i % 977}`).join(' ')
    writeFileSync(file, JSON.stringify({ instruction: 'Summarise.', output: words }) + '\n')
    const methods = datasetMethods(workspace, () => {})
    let inspected = false
    const inspecting = methods['datasets.inspect']({ file, model: CHATML_MODEL }).then((r) => {
      inspected = true
      return r
    })
    // 200 requests one after another: each needs this thread. Were the tokeniser on it, they
    // would only be answered after the inspection.
    for (let i = 0; i < 200; i++) {
      await methods['datasets.list']()
      await new Promise((r) => setImmediate(r))
    }
    expect(inspected).toBe(false)
    const r = await inspecting
    expect(r.report.valid).toBe(1)
    expect(r.stats.tokens?.max).toBeGreaterThan(100_000)
  }, 120_000)
})
