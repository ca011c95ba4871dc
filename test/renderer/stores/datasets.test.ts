import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setUploader, setWorkbench } from '../../../src/renderer/src/api/client'
import type { UploadHooks, Uploader } from '../../../src/renderer/src/api/upload'
import { datasetDeleteQuestion, emptyReadOptions, inspectArgs, useDatasetsStore } from '../../../src/renderer/src/stores/datasets'
import { datasetManifest, fakeBridge, inspectResult, modelEntries } from '../fakeBridge'
import { useModelsStore } from '../../../src/renderer/src/stores/models'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
  setUploader(null)
})

/** An uploader whose uploads the test finishes, with the hooks the store gave it. */
function fakeUploader(limit = 1 << 20) {
  const calls: { file: Blob & { name: string }; hooks: UploadHooks; finish: (path: string) => void; fail: (e: unknown) => void }[] = []
  const uploader: Uploader = {
    limit: async () => limit,
    upload: (file, hooks = {}) =>
      new Promise((resolve, reject) => {
        hooks.signal?.addEventListener('abort', () => reject(new ApiError('cancelled', 'the upload was cancelled')))
        calls.push({ file, hooks, finish: (path) => resolve({ file: path, name: file.name, bytes: file.size }), fail: reject })
      }),
  }
  return { uploader, calls }
}
const until = async (pred: () => boolean): Promise<void> => {
  for (let i = 0; i < 50 && !pred(); i++) await new Promise((r) => setTimeout(r, 0))
  expect(pred()).toBe(true)
}

describe('inspectArgs', () => {
  it('sends only what the user set', () => {
    expect(inspectArgs({ ...emptyReadOptions(), file: ' /d/a.jsonl ' })).toEqual({ file: '/d/a.jsonl', preview: { offset: 0, limit: 10 } })
    const all = inspectArgs(
      {
        file: '/d/a.txt',
        layout: 'alpaca',
        mapping: { instruction: 'q', output: 'a', input: undefined },
        model: '/m',
        maxLength: 128,
        format: 'text',
        textUnit: 'paragraph',
      },
      20,
    )
    expect(all).toEqual({
      file: '/d/a.txt',
      layout: 'alpaca',
      mapping: { instruction: 'q', output: 'a' },
      model: '/m',
      maxLength: 128,
      format: 'text',
      textUnit: 'paragraph',
      preview: { offset: 20, limit: 10 },
    })
    // A length limit needs a tokenizer.
    expect(inspectArgs({ ...emptyReadOptions(), file: 'f', maxLength: 10 }).maxLength).toBeUndefined()
  })
})

describe('datasetDeleteQuestion', () => {
  it('says how many runs were trained on the dataset, and what they lose', () => {
    const runs = [{ dataset: 'a' }, { dataset: 'b' }, { dataset: 'a' }, {}]
    expect(datasetDeleteQuestion('c', runs)).toBe('The imported copy goes; the file it came from stays.')
    expect(datasetDeleteQuestion('b', runs)).toBe(
      'The imported copy goes; the file it came from stays. 1 run was trained on it: it keeps its results, but Run again and evaluation will need another dataset.',
    )
    expect(datasetDeleteQuestion('a', runs)).toMatch(/ 2 runs were trained on it: they keep their results, /)
  })
})

describe('useDatasetsStore', () => {
  it('names a dataset with its import time where another has its name, and its id where even that is shared', () => {
    const datasets = useDatasetsStore()
    const at = (id: string, createdAt: string) => ({ ...datasetManifest, id, createdAt })
    datasets.list = [
      at('a', '2026-12-04T06:45:10.000Z'),
      at('b', '2026-12-04T07:12:00.000Z'),
      { ...at('c', '2026-12-04T07:12:30.000Z'), name: 'other' },
    ]
    expect(datasets.displayName('c')).toBe('other')
    expect(datasets.displayName('a')).toMatch(/^train \(imported \d{4}-\d\d-\d\d \d\d:\d\d\)$/)
    expect(datasets.displayName('a')).not.toBe(datasets.displayName('b'))
    datasets.list.push(at('d', '2026-12-04T07:12:40.000Z'))
    expect(datasets.displayName('b')).toMatch(/^train \(imported .*, b\)$/)
    expect(datasets.displayName('d')).toMatch(/^train \(imported .*, d\)$/)
    expect(datasets.displayName('gone')).toBe('gone')
  })

  it('inspects a file and adopts the detected layout and mapping, so overrides start from them', async () => {
    const datasets = useDatasetsStore()
    datasets.options.file = '/data/train.jsonl'
    await datasets.inspect()
    expect(datasets.inspected?.report.invalid).toBe(2)
    expect(datasets.hasInvalid).toBe(true)
    expect(datasets.options.layout).toBe('alpaca')
    expect(datasets.options.mapping).toEqual(inspectResult.mapping)
    expect(datasets.importOptions.name).toBe('train')
    expect(datasets.stale).toBe(false)
    datasets.options.layout = 'completion'
    expect(datasets.stale).toBe(true)
  })

  it('predicts the split the import makes: at least one validation row of two or more, duplicates left out when asked', async () => {
    const datasets = useDatasetsStore()
    datasets.options.file = '/data/train.jsonl'
    await datasets.inspect()
    const inspected = datasets.inspected!
    const estimate = (valid: number, validation: number, duplicates = 0, dedupe = false) => {
      datasets.inspected = { ...inspected, report: { ...inspected.report, valid }, stats: { ...inspected.stats, duplicates } }
      datasets.importOptions = { ...datasets.importOptions, validation, dedupe }
      return datasets.importEstimate
    }
    expect(estimate(4, 0.1)).toEqual({ rows: 4, train: 3, validation: 1 }) // round(0.4) would say 0
    expect(estimate(100, 0.1)).toEqual({ rows: 100, train: 90, validation: 10 })
    expect(estimate(1, 0.5)).toEqual({ rows: 1, train: 1, validation: 0 })
    expect(estimate(4, 0)).toEqual({ rows: 4, train: 4, validation: 0 })
    expect(estimate(10, 0.1, 3, true)).toEqual({ rows: 7, train: 6, validation: 1 })
    expect(estimate(10, 0.1, 3, false)).toEqual({ rows: 10, train: 9, validation: 1 })
    // A share the import refuses gives no counts to read beside the field's error.
    expect(estimate(10, -0.2)).toBeNull()
    expect(estimate(10, 1)).toBeNull()
    expect(estimate(10, NaN)).toBeNull()
    expect(estimate(10, 0.999)).toEqual({ rows: 10, train: 1, validation: 9 })
  })

  it('says what to do with an empty path instead of asking the service ("file: must not be empty")', async () => {
    const datasets = useDatasetsStore()
    datasets.options.file = '   '
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).not.toHaveBeenCalled()
    expect(datasets.inspectError).toEqual({
      message: 'Type the path of a dataset file, or choose one.',
      field: 'file',
      code: 'invalid_argument',
    })
    datasets.options.file = '/data/train.jsonl'
    await datasets.inspect()
    expect(datasets.inspectError).toBeNull()
  })

  it("names an import after the file's name without its extension where no name is typed, as the service does", async () => {
    const datasets = useDatasetsStore()
    for (const [file, name] of [
      ['/data/train.jsonl', 'train'],
      ['C:\\data\\chat.v2.ndjson', 'chat.v2'],
      ['/data/.hidden', '.hidden'],
      ['/data/notes', 'notes'],
    ]) {
      fake.bridge.datasets.inspect.mockResolvedValueOnce({ ...inspectResult, file })
      datasets.options.file = file
      await datasets.inspect()
      expect(datasets.defaultName).toBe(name)
      expect(datasets.importOptions.name).toBe(name)
    }
  })

  it('follows dataset.progress of its own file only, while busy', async () => {
    const datasets = useDatasetsStore()
    datasets.listen()
    let finish: () => void = () => undefined
    fake.bridge.datasets.inspect.mockImplementationOnce(
      (args) => new Promise((resolve) => (finish = () => resolve({ ...inspectResult, file: args.file }))),
    )
    datasets.options.file = '/data/big.csv'
    const done = datasets.inspect()
    const progress = { phase: 'reading' as const, bytesRead: 50, totalBytes: 200, rows: 10 }
    fake.emit({
      type: 'dataset.progress',
      time: 1,
      operation: 'inspect',
      file: '/data/other.csv',
      progress: { ...progress, bytesRead: 190 },
    })
    expect(datasets.progress).toBeNull()
    fake.emit({ type: 'dataset.progress', time: 2, operation: 'inspect', file: '/data/big.csv', progress })
    expect(datasets.progressFraction).toBe(0.25)
    finish()
    await done
    expect(datasets.progress).toBeNull()
    fake.emit({ type: 'dataset.progress', time: 3, operation: 'inspect', file: '/data/big.csv', progress })
    expect(datasets.progress).toBeNull()
  })

  it('deletes a dataset from the list; a refusal is thrown for the caller to show, the dataset kept', async () => {
    const datasets = useDatasetsStore()
    await datasets.refresh()
    fake.bridge.datasets.delete.mockRejectedValueOnce(new ApiError('failed', 'dataset d is used by run r (interrupted)'))
    await expect(datasets.remove(datasetManifest.id)).rejects.toMatchObject({ message: 'dataset d is used by run r (interrupted)' })
    expect(datasets.list.map((d) => d.id)).toEqual([datasetManifest.id])
    await datasets.remove(datasetManifest.id)
    expect(fake.bridge.datasets.delete).toHaveBeenLastCalledWith({ id: datasetManifest.id })
    expect(datasets.list).toEqual([])
  })

  it("says when rows pass the model's positions and no longest row is set (training cuts them)", async () => {
    const datasets = useDatasetsStore()
    const models = useModelsStore()
    const dir = '/app/resources/models/tiny-moe'
    models.entries = modelEntries.map((m) => (m.info ? { ...m, info: { ...m.info, maxPositionEmbeddings: 32 } } : m))
    datasets.options.file = '/data/train.jsonl'
    datasets.options.model = dir
    await datasets.inspect() // rows up to 44 tokens, p95 40
    expect(datasets.pastPositions).toEqual({ positions: 32, max: 44, many: true })
    datasets.options.maxLength = 32 // asked for: the report lists them as invalid instead
    await datasets.inspect()
    expect(datasets.pastPositions).toBeNull()
    datasets.options.maxLength = null
    models.entries = modelEntries.map((m) => (m.info ? { ...m, info: { ...m.info, maxPositionEmbeddings: 64 } } : m))
    await datasets.inspect()
    expect(datasets.pastPositions).toBeNull() // they fit
  })

  it('imports with the split, de-duplication and acceptInvalid, and lists the result first', async () => {
    const datasets = useDatasetsStore()
    await datasets.refresh()
    datasets.options.file = '/data/train.jsonl'
    datasets.options.model = '/m'
    await datasets.inspect()
    datasets.importOptions.validation = 0.2
    datasets.importOptions.seed = 7
    datasets.importOptions.dedupe = true
    datasets.importOptions.acceptInvalid = true
    const manifest = await datasets.importDataset()
    expect(manifest?.id).toBe(datasetManifest.id)
    // Detection's layout and mapping are left to detection.
    expect(fake.bridge.datasets.import).toHaveBeenCalledWith({
      file: '/data/train.jsonl',
      model: '/m',
      name: 'train',
      split: { validation: 0.2, seed: 7 },
      dedupe: true,
      acceptInvalid: true,
    })
    expect(datasets.list.map((d) => d.id)).toEqual([datasetManifest.id])
    expect(datasets.imported?.id).toBe(datasetManifest.id)
    // The same file with the same settings is imported already (a second click made a twin);
    // another name or split is another import.
    expect(datasets.alreadyImported).toBe(true)
    datasets.importOptions.validation = 0.3
    expect(datasets.alreadyImported).toBe(false)
    datasets.importOptions.validation = 0.2
    expect(datasets.alreadyImported).toBe(true)
    datasets.importOptions.name = 'train v2'
    expect(datasets.alreadyImported).toBe(false)
  })

  it('sends the layout and mapping only where the user overrode detection, and never a column the file lacks', async () => {
    const datasets = useDatasetsStore()
    fake.bridge.datasets.inspect.mockResolvedValue({
      ...inspectResult,
      mapping: { ...inspectResult.mapping, system: 'system' },
    })
    datasets.options.file = '/data/train.jsonl'
    await datasets.inspect()
    // "system" is not among the file's columns: not shown as mapped.
    expect(datasets.options.mapping).toEqual(inspectResult.mapping)
    await datasets.inspect(10)
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith({ file: '/data/train.jsonl', preview: { offset: 10, limit: 10 } })
    datasets.options.mapping.output = 'input'
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith(
      expect.objectContaining({ mapping: { instruction: 'instruction', input: 'input', output: 'input' } }),
    )
    datasets.options.layout = 'completion'
    datasets.options.mapping = { prompt: 'instruction', completion: 'output' }
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith(
      expect.objectContaining({ layout: 'completion', mapping: { prompt: 'instruction', completion: 'output' } }),
    )
  })

  it('shows where an inspection or import went wrong', async () => {
    const datasets = useDatasetsStore()
    fake.bridge.datasets.inspect.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'datasets.inspect: file: must not be empty', 'file'),
    )
    await datasets.inspect()
    expect(datasets.inspectError).toMatchObject({ field: 'file' })
    expect(datasets.inspected).toBeNull()

    datasets.options.file = '/data/train.jsonl'
    await datasets.inspect()
    fake.bridge.datasets.import.mockRejectedValueOnce(new ApiError('failed', '/data/train.jsonl: 2 invalid rows; fix them or accept them'))
    expect(await datasets.importDataset()).toBeNull()
    expect(datasets.importError?.message).toMatch(/2 invalid rows/)
    expect(datasets.importing).toBe(false)
  })

  it('cancels a read the user abandons, and ignores its answer', async () => {
    const datasets = useDatasetsStore()
    let finish: () => void = () => undefined
    fake.bridge.datasets.inspect.mockImplementationOnce(
      (args) => new Promise((resolve) => (finish = () => resolve({ ...inspectResult, file: args.file }))),
    )
    datasets.options.file = '/data/huge.parquet'
    const done = datasets.inspect()
    expect(datasets.busy).toBe(true)
    datasets.abandon()
    expect(datasets.busy).toBe(false)
    expect(fake.bridge.datasets.cancel).toHaveBeenCalledWith('/data/huge.parquet')
    finish()
    await done
    expect(datasets.inspected).toBeNull()
  })

  it('goes back to detection for another file even without "Start over": a layout chosen for one file is not used for the next', async () => {
    const datasets = useDatasetsStore()
    datasets.options.file = '/data/notes.jsonl'
    await datasets.inspect()
    datasets.options.layout = 'text'
    datasets.options.mapping = { text: 'output' }
    datasets.options.format = 'jsonl'
    datasets.importOptions.acceptInvalid = true
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith(expect.objectContaining({ layout: 'text', mapping: { text: 'output' } }))

    // Another file typed over the first: the server detects its layout (messages) and that is what is used.
    fake.bridge.datasets.inspect.mockResolvedValueOnce({
      ...inspectResult,
      file: '/data/chats.jsonl',
      layout: 'messages',
      detectedLayout: 'messages',
      mapping: { messages: 'messages' },
      columns: ['messages'],
    })
    datasets.options.file = '/data/chats.jsonl'
    expect(datasets.options).toMatchObject({ layout: null, mapping: {}, format: null })
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith({ file: '/data/chats.jsonl', preview: { offset: 0, limit: 10 } })
    expect(datasets.options.layout).toBe('messages')
    expect(datasets.options.mapping).toEqual({ messages: 'messages' })
    expect(datasets.importOptions).toMatchObject({ name: 'chats', acceptInvalid: false })

    // A layout chosen for the new file before reading it is kept.
    datasets.options.file = '/data/more.jsonl'
    datasets.options.layout = 'completion'
    await datasets.inspect()
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith(
      expect.objectContaining({ file: '/data/more.jsonl', layout: 'completion' }),
    )
  })

  it('uploads a file from the browser with its progress, then inspects it on the server as a new file', async () => {
    const { uploader, calls } = fakeUploader()
    setUploader(uploader)
    const datasets = useDatasetsStore()
    expect(datasets.canUpload()).toBe(true)
    datasets.options.file = '/data/before.jsonl'
    datasets.options.model = '/m'
    datasets.options.layout = 'text'
    const file = new File(['{"question": "Capital of France?", "answer": "Paris"}\n'.repeat(10)], 'capitals.jsonl')
    const done = datasets.uploadFile(file)
    await until(() => calls.length === 1)
    expect(datasets.busy).toBe(true)
    calls[0].hooks.onProgress?.(200, file.size)
    expect(datasets.upload).toEqual({ name: 'capitals.jsonl', sent: 200, total: file.size })
    expect(datasets.uploadFraction).toBeCloseTo(200 / file.size)
    calls[0].finish('/ws/uploads/2025-01-01-00-00-00-abc123/capitals.jsonl')
    expect(await done).toBe(true)
    expect(datasets.upload).toBeNull()
    // The same inspection as a typed path: the uploaded file, detection (not the layout chosen before), the model kept.
    expect(fake.bridge.datasets.inspect).toHaveBeenLastCalledWith({
      file: '/ws/uploads/2025-01-01-00-00-00-abc123/capitals.jsonl',
      model: '/m',
      preview: { offset: 0, limit: 10 },
    })
    expect(datasets.options.file).toBe('/ws/uploads/2025-01-01-00-00-00-abc123/capitals.jsonl')
    expect(datasets.importOptions.name).toBe('capitals')
  })

  it("names an uploaded file by the name it had in the browser where the server refuses it, not the server's copy", async () => {
    const { uploader, calls } = fakeUploader()
    setUploader(uploader)
    const datasets = useDatasetsStore()
    const copy = '/ws/uploads/2025-01-01-00-00-00-abc123/empty.csv'
    fake.bridge.datasets.inspect.mockRejectedValueOnce(new ApiError('invalid_argument', `datasets.inspect: ${copy} is empty (0 bytes)`))
    const done = datasets.uploadFile(new File([''], 'empty.csv'))
    await until(() => calls.length === 1)
    calls[0].finish(copy)
    await done
    expect(datasets.inspectError?.message).toBe('empty.csv is empty (0 bytes)')
    // Import's refusals too.
    fake.bridge.datasets.import.mockRejectedValueOnce(new ApiError('invalid_argument', `datasets.import: ${copy}: line 3 is not JSON`))
    await datasets.importDataset()
    expect(datasets.importError?.message).toBe('empty.csv: line 3 is not JSON')
    // A typed path is the user's own words: kept as the server says it.
    fake.bridge.datasets.inspect.mockRejectedValueOnce(new ApiError('invalid_argument', 'datasets.inspect: /data/x.csv is empty (0 bytes)'))
    datasets.options.file = '/data/x.csv'
    await datasets.inspect()
    expect(datasets.inspectError?.message).toBe('/data/x.csv is empty (0 bytes)')
  })

  it('refuses a file over the server’s upload limit before sending it, saying what to do', async () => {
    const { uploader, calls } = fakeUploader(1024)
    setUploader(uploader)
    const datasets = useDatasetsStore()
    expect(await datasets.uploadFile(new File([new Uint8Array(4096)], 'big.parquet'))).toBe(false)
    expect(calls).toHaveLength(0)
    expect(datasets.uploadError).toMatchObject({
      field: 'file',
      message: expect.stringMatching(/^big\.parquet is 4\.0 KiB, and the server takes uploads up to 1\.0 KiB\. Copy it to the server/),
    })
    expect(datasets.busy).toBe(false)
    await datasets.fetchUploadLimit()
    expect(datasets.uploadLimit).toBe(1024)
  })

  it('cancels an upload without an error, and shows the server’s refusal of another', async () => {
    const { uploader, calls } = fakeUploader()
    setUploader(uploader)
    const datasets = useDatasetsStore()
    const cancelled = datasets.uploadFile(new File(['x'], 'a.jsonl'))
    await until(() => calls.length === 1)
    datasets.abandon()
    expect(calls[0].hooks.signal?.aborted).toBe(true)
    expect(await cancelled).toBe(false)
    expect(datasets.upload).toBeNull()
    expect(datasets.uploadError).toBeNull()

    const refused = datasets.uploadFile(new File(['x'], 'b.jsonl'))
    await until(() => calls.length === 2)
    calls[1].fail(new ApiError('invalid_argument', 'name: the file name holds control characters', 'name'))
    expect(await refused).toBe(false)
    expect(datasets.uploadError).toMatchObject({ message: 'name: the file name holds control characters' })
    expect(fake.bridge.datasets.inspect).not.toHaveBeenCalled()
  })

  it('has no uploader in the desktop app (files are read where they are)', () => {
    expect(useDatasetsStore().canUpload()).toBe(false)
  })

  it('starts over with another file, keeping the model', async () => {
    const datasets = useDatasetsStore()
    datasets.options.file = '/data/train.jsonl'
    datasets.options.model = '/m'
    await datasets.inspect()
    datasets.reset('/data/next.csv')
    expect(datasets.options).toMatchObject({ file: '/data/next.csv', model: '/m', layout: null, mapping: {} })
    expect(datasets.inspected).toBeNull()
    expect(datasets.importOptions.name).toBe('')
  })
})
