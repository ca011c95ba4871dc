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
