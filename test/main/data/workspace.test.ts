import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { DatasetProgress } from '../../../src/shared/dataset'
import { deleteDataset, importDataset, listDatasets, readManifest, readRows, validationIndices } from '../../../src/main/data'
import { FIXTURES, LAYOUTS, collect, tempDir } from './helpers'

const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')

/** A JSONL file of n distinct text rows (plus the given extra lines). */
function textFile(dir: string, n: number, extra: string[] = []): string {
  const file = join(dir, 'rows.jsonl')
  writeFileSync(file, [...Array.from({ length: n }, (_, i) => JSON.stringify({ text: `row ${i}` })), ...extra].join('\n') + '\n')
  return file
}

describe('importDataset', () => {
  it('writes manifest.json, a byte copy of the original and the normalised rows, and leaves the original alone', async () => {
    const workspace = tempDir()
    const file = join(LAYOUTS, 'alpaca.csv')
    const before = { sha: sha256(file), mtime: statSync(file).mtimeMs }
    const manifest = await importDataset(workspace, file, { name: 'Capitals & haiku', split: { validation: 0.34, seed: 7 } })

    expect(manifest.id).toMatch(/^capitals-haiku-[a-z0-9]+$/)
    const dir = join(workspace, 'datasets', manifest.id)
    expect(readdirSync(dir).sort()).toEqual(['manifest.json', 'original.csv', 'rows.jsonl', 'split.json'])
    expect(readFileSync(join(dir, 'original.csv'))).toEqual(readFileSync(file))
    expect({ sha: sha256(file), mtime: statSync(file).mtimeMs }).toEqual(before)
    expect(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'))).toEqual(manifest)
    expect(manifest).toMatchObject({
      version: 1,
      name: 'Capitals & haiku',
      source: { path: file, format: 'csv', bytes: statSync(file).size, sha256: before.sha },
      layout: 'alpaca',
      mapping: { instruction: 'instruction', input: 'input', output: 'output' },
      counts: { read: 3, valid: 3, invalid: 0, duplicates: 0, deduplicated: 0, rows: 3 },
      split: { validation: 0.34, seed: 7, train: 2, validationRows: 1 },
      problems: [],
      files: { original: 'original.csv', rows: 'rows.jsonl', split: 'split.json' },
    })
    expect(new Date(manifest.createdAt).getTime()).toBeGreaterThan(Date.now() - 60_000)
    expect(manifest.stats.rows).toBe(3)
    const rows = readFileSync(join(dir, 'rows.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as unknown)
    expect(rows[1]).toEqual({
      messages: [
        { role: 'user', content: 'Translate to German.\n\nHello, "world"' },
        { role: 'assistant', content: 'Hallo, Welt' },
      ],
    })
  })

  it('refuses a file with invalid rows unless asked, writing nothing, and says how many and how to accept', async () => {
    const workspace = tempDir()
    await expect(importDataset(workspace, join(FIXTURES, 'bad.jsonl'))).rejects.toThrow(
      '13 of 16 rows are invalid; inspect the file to see why, or import again with acceptInvalid: true to import only the 3 valid rows',
    )
    expect(readdirSync(join(workspace, 'datasets'))).toEqual([])
    expect(await listDatasets(workspace)).toEqual([])
  })

  it('with acceptInvalid, writes only the valid rows and keeps the report in the manifest', async () => {
    const workspace = tempDir()
    const manifest = await importDataset(workspace, join(FIXTURES, 'bad.jsonl'), { acceptInvalid: true, split: { validation: 0 } })
    expect(manifest.counts).toEqual({ read: 16, valid: 3, invalid: 13, duplicates: 1, deduplicated: 0, rows: 3 })
    expect(manifest.problems[0]).toEqual({ line: 2, field: 'messages[0].role', message: "the last turn must be the assistant's, got user" })
    const rows = await collect(readRows(workspace, manifest.id))
    expect(rows.map((r) => ('messages' in r ? r.messages.length : 0))).toEqual([2, 3, 2])
  })

  it('refuses a file whose layout is unknown, naming its columns', async () => {
    const dir = tempDir()
    const file = join(dir, 'odd.jsonl')
    writeFileSync(file, '{"q": "a", "a": "b"}\n')
    await expect(importDataset(join(dir, 'ws'), file)).rejects.toThrow(
      'could not detect the layout of ' +
        file +
        ' (columns: q, a): choose a layout (alpaca, sharegpt, messages, completion, text, tokens) and map the columns',
    )
    const manifest = await importDataset(join(dir, 'ws'), file, { layout: 'alpaca', mapping: { instruction: 'q', output: 'a' } })
    expect(manifest.mapping).toMatchObject({ instruction: 'q', output: 'a' })
  })

  it('de-duplicates exact duplicates when asked, keeping the first', async () => {
    const dir = tempDir()
    const file = textFile(dir, 5, [JSON.stringify({ text: 'row 1' }), JSON.stringify({ text: 'row 3' }), JSON.stringify({ text: 'row 1' })])
    const kept = await importDataset(join(dir, 'ws'), file, { split: { validation: 0 } })
    expect(kept.counts).toMatchObject({ valid: 8, duplicates: 3, deduplicated: 0, rows: 8 })
    const deduped = await importDataset(join(dir, 'ws'), file, { dedupe: true, split: { validation: 0 } })
    expect(deduped.counts).toMatchObject({ valid: 8, duplicates: 3, deduplicated: 3, rows: 5 })
    expect((await collect(readRows(join(dir, 'ws'), deduped.id))).map((r) => (r as { text: string }).text)).toEqual([
      'row 0',
      'row 1',
      'row 2',
      'row 3',
      'row 4',
    ])
  })

  it('splits by ratio with a seed: the same seed gives the same split, another seed another', async () => {
    const dir = tempDir()
    const file = textFile(dir, 200)
    const ws = join(dir, 'ws')
    const a = await importDataset(ws, file, { split: { validation: 0.1, seed: 42 } })
    const b = await importDataset(ws, file, { split: { validation: 0.1, seed: 42 } })
    const c = await importDataset(ws, file, { split: { validation: 0.1, seed: 43 } })
    expect(a.split).toEqual({ validation: 0.1, seed: 42, train: 180, validationRows: 20 })
    const texts = async (id: string, split: 'train' | 'validation') =>
      (await collect(readRows(ws, id, split))).map((r) => (r as { text: string }).text)
    const va = await texts(a.id, 'validation')
    expect(va).toHaveLength(20)
    expect(await texts(b.id, 'validation')).toEqual(va)
    expect(await texts(c.id, 'validation')).not.toEqual(va)
    const ta = await texts(a.id, 'train')
    expect(ta).toHaveLength(180)
    expect(new Set([...ta, ...va]).size).toBe(200)
    expect(await texts(a.id, 'train')).toEqual(ta)
  })

  it('chooses validation rows deterministically, never all of them', () => {
    expect(Array.from(validationIndices(10, 0.3, 1))).toEqual(Array.from(validationIndices(10, 0.3, 1)))
    expect(validationIndices(10, 0.3, 1)).toHaveLength(3)
    expect(validationIndices(10, 0.01, 1)).toHaveLength(1)
    expect(validationIndices(1, 0.5, 1)).toHaveLength(0)
    expect(validationIndices(3, 0.99, 1)).toHaveLength(2)
    expect(validationIndices(10, 0, 1)).toHaveLength(0)
  })

  it('keeps copies of a row on one side of the split (a copy on each side scored the model on rows it trained on)', async () => {
    // rows without copies: the split of validationIndices without groups, row for row
    const distinct = Array.from({ length: 50 }, (_, i) => i)
    for (const seed of [0, 1, 7])
      expect(Array.from(validationIndices(50, 0.2, seed, distinct))).toEqual(Array.from(validationIndices(50, 0.2, seed)))
    // 10 rows, 4 distinct: every group on one side, whatever the seed; training always keeps a row
    const groups = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    for (let seed = 0; seed < 20; seed++) {
      const validation = new Set(validationIndices(10, 0.3, seed, groups))
      expect(validation.size).toBeGreaterThan(0)
      for (let i = 0; i < 10; i++)
        for (let j = 0; j < 10; j++) if (groups[i] === groups[j]) expect(validation.has(i)).toBe(validation.has(j))
    }
    expect(validationIndices(4, 0.5, 0, [0, 0, 0, 0])).toHaveLength(0)

    const dir = tempDir()
    const file = join(dir, 'dups.jsonl')
    writeFileSync(file, groups.map((g) => JSON.stringify({ prompt: `Q${g}`, completion: `A${g}` })).join('\n'))
    for (const seed of [0, 1, 2, 3]) {
      const m = await importDataset(join(dir, 'ws'), file, { split: { validation: 0.3, seed } })
      const prompts = async (split: 'train' | 'validation') =>
        new Set((await collect(readRows(join(dir, 'ws'), m.id, split))).map((r) => (r as { prompt: string }).prompt))
      const [train, validation] = [await prompts('train'), await prompts('validation')]
      expect(validation.size).toBeGreaterThan(0)
      expect([...validation].filter((p) => train.has(p))).toEqual([])
      expect(m.split.train + m.split.validationRows).toBe(10)
    }
  })

  it('lists datasets newest first, skipping unfinished imports, and deletes them', async () => {
    const workspace = tempDir()
    const first = await importDataset(workspace, join(LAYOUTS, 'text.txt'), { name: 'first' })
    const second = await importDataset(workspace, join(LAYOUTS, 'completion.jsonl'), { name: 'second' })
    // What a crash midway would leave: an .import-* folder without a rename.
    mkdirSync(join(workspace, 'datasets', '.import-crashed-abc'))
    writeFileSync(join(workspace, 'datasets', '.import-crashed-abc', 'rows.jsonl'), '{"text": "half')
    const listed = await listDatasets(workspace)
    expect(listed.map((m) => m.id)).toEqual([second.id, first.id])
    expect(await readManifest(workspace, first.id)).toEqual(first)
    await deleteDataset(workspace, first.id)
    expect((await listDatasets(workspace)).map((m) => m.id)).toEqual([second.id])
    await expect(readManifest(workspace, first.id)).rejects.toThrow(`no dataset "${first.id}"`)
    await expect(readManifest(workspace, '../etc')).rejects.toThrow('invalid dataset id "../etc"')
  })

  it('removes stale import folders left by a crash', async () => {
    const workspace = tempDir()
    const stale = join(workspace, 'datasets', '.import-old-abc')
    mkdirSync(stale, { recursive: true })
    const old = new Date(Date.now() - 2 * 60 * 60 * 1000)
    utimesSync(stale, old, old)
    await importDataset(workspace, join(LAYOUTS, 'text.txt'))
    expect(existsSync(stale)).toBe(false)
  })

  it('reports progress and cancels through an AbortSignal, leaving no dataset folder', async () => {
    const dir = tempDir()
    const file = textFile(dir, 300_000) // about 6 MB
    const ws = join(dir, 'ws')
    const events: DatasetProgress[] = []
    const controller = new AbortController()
    const importing = importDataset(ws, file, {
      signal: controller.signal,
      onProgress: (p) => {
        events.push(p)
        if (p.rows > 1000) controller.abort()
      },
    })
    await expect(importing).rejects.toMatchObject({ name: 'AbortError' })
    expect(events.length).toBeGreaterThan(0)
    expect(readdirSync(join(ws, 'datasets'))).toEqual([])
    expect(await listDatasets(ws)).toEqual([])
  })
})
