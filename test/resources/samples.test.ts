/**
 * The sample datasets: each imports cleanly (0 invalid rows) in its layout, every row fits the
 * default model's context, the held-out prompts are in no dataset, and the generator reproduces
 * the shipped files byte for byte.
 */
import { mkdtempSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import type { ChatRow } from '../../src/shared/dataset'
import { importDataset, loadTokenizer, readRows } from '../../src/main/data/index'
import { readSamplesIndex } from '../../src/main/service/firstRun'
import { heldOut, sampleFiles, samplesIndex, type HeldOutSet } from '../../scripts/default-model/samples'

const RESOURCES = resolve(__dirname, '../../resources')
const SAMPLES = join(RESOURCES, 'samples')
const MODEL = join(RESOURCES, 'default-model')
const seed = (JSON.parse(readFileSync(join(MODEL, 'workbench.json'), 'utf8')) as { seed: number }).seed
const index = readSamplesIndex(RESOURCES)!
const held = JSON.parse(readFileSync(join(SAMPLES, 'heldout.json'), 'utf8')) as HeldOutSet

describe('sample datasets', () => {
  it('lists the three layouts', () => {
    expect(index.datasets.map((d) => [d.file, d.layout])).toEqual([
      ['arithmetic.jsonl', 'alpaca'],
      ['reversal.json', 'sharegpt'],
      ['conversion.csv', 'alpaca'],
    ])
    expect(index).toEqual(samplesIndex())
  })

  for (const entry of index.datasets) {
    it(`${entry.file} imports with 0 invalid rows, held-out prompts excluded`, async () => {
      const ws = mkdtempSync(join(tmpdir(), 'moe-samples-'))
      const tokenizer = await loadTokenizer(MODEL)
      const m = await importDataset(ws, join(SAMPLES, entry.file), { split: { validation: 0.1 }, tokenizer, maxLength: 256 })
      expect(m.layout).toBe(entry.layout)
      expect(m.counts).toMatchObject({ read: entry.rows, valid: entry.rows, invalid: 0, rows: entry.rows })
      expect(m.split.validationRows).toBe(entry.rows / 10)
      expect(m.stats.tokens!.max).toBeLessThan(128)
      const prompts = new Set<string>()
      for await (const row of readRows(ws, m.id))
        for (const msg of (row as ChatRow).messages) if (msg.role === 'user') prompts.add(msg.content)
      const task = entry.task as keyof HeldOutSet
      expect(held[task]).toHaveLength(20)
      for (const h of held[task]) expect(prompts.has(h.prompt), h.prompt).toBe(false)
    })
  }

  it('are reproduced byte for byte from the seed', () => {
    const files = sampleFiles(seed, heldOut(seed).exclude)
    for (const entry of index.datasets)
      expect(files[entry.task as keyof typeof files]).toBe(readFileSync(join(SAMPLES, entry.file), 'utf8'))
    expect(heldOut(seed).set).toEqual(held)
  })
})
