import { createWriteStream, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { describe, expect, it } from 'vitest'
import type { DatasetProgress } from '../../../src/shared/dataset'
import { importDataset, inspectDataset } from '../../../src/main/data'
import { tempDir } from './helpers'

const TARGET_BYTES = 50 * 1024 * 1024

// A handle on V8's collector, to measure what the heap *retains* rather than garbage not yet collected.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** Heap in use after a full collection. */
function liveHeap(): number {
  gc()
  return process.memoryUsage().heapUsed
}

/** Writes a ~50 MB JSONL of chats (every 1000th row invalid), streaming, and returns its path and rows. */
async function bigChatFile(dir: string): Promise<{ file: string; rows: number; bad: number }> {
  const file = join(dir, 'big.jsonl')
  const out = createWriteStream(file)
  const filler = 'The capital of France is Paris, and the sea keeps its old secrets. '.repeat(5)
  let bytes = 0
  let rows = 0
  let bad = 0
  while (bytes < TARGET_BYTES) {
    let batch = ''
    for (let i = 0; i < 1000; i++, rows++) {
      const last = rows % 1000 === 999
      if (last) bad++
      batch +=
        JSON.stringify({
          messages: [
            { role: 'system', content: 'You are a helpful assistant.' },
            { role: 'user', content: `Question ${rows}: ${filler}` },
            { role: last ? 'user' : 'assistant', content: `Answer ${rows}: ${filler}` },
          ],
        }) + '\n'
    }
    bytes += Buffer.byteLength(batch)
    if (!out.write(batch)) await new Promise<void>((r) => out.once('drain', () => r()))
  }
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())))
  return { file, rows, bad }
}

describe('streaming a large JSONL', () => {
  it('imports ~50 MB with bounded memory, reporting progress', async () => {
    const dir = tempDir()
    const { file, rows, bad } = await bigChatFile(dir)
    const size = statSync(file).size
    expect(size).toBeGreaterThanOrEqual(TARGET_BYTES)

    const baseline = liveHeap()
    let peak = 0
    let peakRaw = 0
    const events: DatasetProgress[] = []
    const t0 = performance.now()
    const manifest = await importDataset(join(dir, 'ws'), file, {
      acceptInvalid: true,
      onProgress: (p) => {
        events.push(p)
        peakRaw = Math.max(peakRaw, process.memoryUsage().heapUsed - baseline)
        // every other event (about every 0.2 s): the heap retained
        if (events.length % 2 === 0) peak = Math.max(peak, liveHeap() - baseline)
      },
    })
    const seconds = (performance.now() - t0) / 1000

    expect(manifest.counts).toMatchObject({ read: rows, valid: rows - bad, invalid: bad, rows: rows - bad })
    expect(manifest.problems[0]).toEqual({ line: 1000, field: 'messages[2].role', message: 'expected an assistant turn, got user' })
    expect(readdirSync(join(dir, 'ws', 'datasets', manifest.id)).sort()).toEqual([
      'manifest.json',
      'original.jsonl',
      'rows.jsonl',
      'split.json',
    ])

    // Progress: several reading events with growing byte counts, ending at the whole file.
    const reading = events.filter((e) => e.phase === 'reading')
    expect(reading.length).toBeGreaterThan(3)
    for (let i = 1; i < reading.length; i++) expect(reading[i].bytesRead).toBeGreaterThanOrEqual(reading[i - 1].bytesRead)
    expect(reading.some((e) => e.bytesRead > 0 && e.bytesRead < size)).toBe(true)
    expect(events[events.length - 1]).toEqual({ phase: 'done', bytesRead: size, totalBytes: size, rows })

    // The heap retains a small, size-independent amount (the duplicate hashes and lengths grow
    // by 12-16 bytes a row); garbage between collections stays below the file size too.
    expect(peak).toBeLessThan(size / 10)
    expect(peakRaw).toBeLessThan(size)
    console.log(
      `imported ${(size / 1024 / 1024).toFixed(1)} MiB (${rows} rows) in ${seconds.toFixed(2)} s: ` +
        `${(size / 1024 / 1024 / seconds).toFixed(1)} MiB/s (with forced GCs), heap retained +${(peak / 1024 / 1024).toFixed(1)} MiB, ` +
        `heap in use at most +${(peakRaw / 1024 / 1024).toFixed(1)} MiB`,
    )
  })

  it('inspects it with the same bound, writing nothing', async () => {
    const dir = tempDir()
    const { file, rows, bad } = await bigChatFile(dir)
    const baseline = liveHeap()
    let peak = 0
    let n = 0
    const r = await inspectDataset(file, { onProgress: () => void (++n % 2 === 0 && (peak = Math.max(peak, liveHeap() - baseline))) })
    expect(r.report).toMatchObject({ total: rows, invalid: bad, problemCount: bad })
    expect(r.report.problems).toHaveLength(Math.min(100, bad))
    expect(r.preview).toHaveLength(20)
    expect(peak).toBeLessThan(statSync(file).size / 10)
    expect(readdirSync(dir)).toEqual(['big.jsonl'])
  })
})
