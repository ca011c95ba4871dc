/**
 * First run: the bundled samples are imported once (10% validation, no invalid rows), the marker
 * makes every later call a no-op, user data is never touched, and an interrupted seeding is
 * finished without importing twice.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { importDataset, listDatasets } from '../../../src/main/data/workspace'
import {
  defaultModelDir,
  FIRST_RUN_MARKER,
  readFirstRunMarker,
  readSamplesIndex,
  resourcesDir,
  seedWorkspace,
} from '../../../src/main/service/firstRun'

const RESOURCES = resolve(__dirname, '../../../resources')
const tmp = (): string => mkdtempSync(join(tmpdir(), 'moe-first-run-'))
const datasetDirs = (ws: string): string[] => (existsSync(join(ws, 'datasets')) ? readdirSync(join(ws, 'datasets')).sort() : [])

describe('resourcesDir', () => {
  it('finds the repository resources from the sources', () => {
    expect(resourcesDir({})).toBe(RESOURCES)
    expect(defaultModelDir(RESOURCES)).toBe(join(RESOURCES, 'default-model'))
  })
  it('takes MOE_WORKBENCH_RESOURCES first', () => {
    expect(resourcesDir({ MOE_WORKBENCH_RESOURCES: '/somewhere/else' })).toBe('/somewhere/else')
  })
})

describe('seedWorkspace', () => {
  const index = readSamplesIndex(RESOURCES)!

  it('imports every sample once with a 10% validation split, then does nothing', async () => {
    const ws = tmp()
    const first = await seedWorkspace(ws, RESOURCES)
    expect(first.seeded).toBe(true)
    expect(first.datasets.map((d) => d.name)).toEqual(index.datasets.map((d) => d.name))
    for (const [i, m] of first.datasets.entries()) {
      expect(m.counts.invalid).toBe(0)
      expect(m.counts.rows).toBe(index.datasets[i].rows)
      expect(m.layout).toBe(index.datasets[i].layout)
      expect(m.split.validationRows).toBe(Math.round(index.datasets[i].rows * 0.1))
      // token statistics from the default model's tokenizer
      expect(m.stats.tokens).toBeTruthy()
    }
    const marker = readFirstRunMarker(ws)!
    expect(marker.datasets.map((d) => d.id).sort()).toEqual(first.datasets.map((d) => d.id).sort())
    const dirs = datasetDirs(ws)

    const again = await seedWorkspace(ws, RESOURCES)
    expect(again.seeded).toBe(false)
    expect(again.datasets.map((d) => d.id).sort()).toEqual(first.datasets.map((d) => d.id).sort())
    expect(datasetDirs(ws)).toEqual(dirs)
  })

  it('never brings back a sample the user deleted, and leaves user datasets alone', async () => {
    const ws = tmp()
    const mine = join(ws, 'mine.jsonl')
    writeFileSync(mine, '{"prompt": "a", "completion": "b"}\n')
    const own = await importDataset(ws, mine, { name: 'mine' })
    const first = await seedWorkspace(ws, RESOURCES)
    expect(first.seeded).toBe(true)
    rmSync(join(ws, 'datasets', first.datasets[0].id), { recursive: true })
    const again = await seedWorkspace(ws, RESOURCES)
    expect(again.seeded).toBe(false)
    expect(again.datasets.map((d) => d.id).sort()).toEqual(
      first.datasets
        .slice(1)
        .map((d) => d.id)
        .sort(),
    )
    const all = await listDatasets(ws)
    expect(all.find((d) => d.id === own.id)?.name).toBe('mine')
    expect(all).toHaveLength(index.datasets.length)
  })

  it('finishes an interrupted seeding without importing a sample twice', async () => {
    const ws = tmp()
    const first = await seedWorkspace(ws, RESOURCES)
    // as if the process died after the imports, before the marker
    rmSync(join(ws, FIRST_RUN_MARKER))
    const again = await seedWorkspace(ws, RESOURCES)
    expect(again.seeded).toBe(true)
    expect(again.datasets.map((d) => d.id).sort()).toEqual(first.datasets.map((d) => d.id).sort())
    expect(datasetDirs(ws)).toHaveLength(index.datasets.length)
  })

  it('shares one seeding between concurrent calls', async () => {
    const ws = tmp()
    const [a, b] = await Promise.all([seedWorkspace(ws, RESOURCES), seedWorkspace(ws, RESOURCES)])
    expect(a).toBe(b)
    expect(datasetDirs(ws)).toHaveLength(index.datasets.length)
  })

  it('does nothing, and writes no marker, where there are no samples', async () => {
    const ws = tmp()
    const r = await seedWorkspace(ws, tmp())
    expect(r).toEqual({ seeded: false, datasets: [] })
    expect(existsSync(join(ws, FIRST_RUN_MARKER))).toBe(false)
  })

  it('keeps an unreadable marker as "seeded"', async () => {
    const ws = tmp()
    writeFileSync(join(ws, FIRST_RUN_MARKER), '{not json')
    const r = await seedWorkspace(ws, RESOURCES)
    expect(r.seeded).toBe(false)
    expect(datasetDirs(ws)).toEqual([])
    expect(readFileSync(join(ws, FIRST_RUN_MARKER), 'utf8')).toBe('{not json')
  })
})
