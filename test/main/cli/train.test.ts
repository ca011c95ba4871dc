/** `moe-workbench train` and `export` as a user runs them, in-process. */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../../src/main/cli/index'
import { formatDuration, progressBar, splitExamples } from '../../../src/main/cli/trainCommands'
import { saveModel } from '../../../src/main/engine/checkpoint'
import { MoeModel } from '../../../src/main/engine/model'
import { randomWeights, tinyConfig } from '../engine/helpers'

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l) })
  return { code, out, err }
}

describe('moe-workbench train / export', () => {
  it('trains from a tokenised JSONL with --set overrides, then exports a loadable folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-train-'))
    const base = join(dir, 'base')
    const c = tinyConfig({ vocabSize: 24 })
    const m = new MoeModel(c, randomWeights(c, 2))
    saveModel(m, base)
    m.dispose()
    const data = join(dir, 'data.jsonl')
    const rows = Array.from({ length: 40 }, (_, i) => {
      const ids = [1, 4 + (i % 20), 4 + ((i * 7) % 20), 2, 4 + ((i * 7) % 20), 4 + (i % 20), 3]
      return JSON.stringify({ input_ids: ids, labels: ids.map((t, j) => (j >= 4 ? t : -100)) })
    })
    writeFileSync(data, rows.join('\n') + '\n')
    const cfg = join(dir, 'run.json')
    writeFileSync(cfg, JSON.stringify({ method: 'lora', lora: { rank: 2 }, batchSize: 8 }))
    const runDir = join(dir, 'run')
    const r = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--config',
      cfg,
      '--set',
      'maxSteps=4',
      '--set',
      'optimizer.lr=0.01',
      '--set',
      'evalEvery=2',
      '--out',
      runDir,
      '--backend',
      'wasm',
    )
    expect(r.err.join('\n')).toMatch(/36 training and 4 validation examples/)
    expect(r.code).toBe(0)
    expect(r.out[0]).toMatch(/^completed: completed 4 steps/)
    expect(r.err.join('\n')).toMatch(/\[#+\] 100% step 4\/4 {2}loss \d/)
    expect(r.err.join('\n')).toMatch(/eval at step 2: validation loss/)
    const run = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'))
    expect(run.config).toMatchObject({ method: 'lora', maxSteps: 4, optimizer: { lr: 0.01 }, lora: { rank: 2 } })

    const out = join(dir, 'exported')
    const e = await cli('export', runDir, '--out', out, '--dtype', 'bfloat16', '--backend', 'wasm')
    expect(e.code).toBe(0)
    expect(e.out[0]).toMatch(/LoRA merged/)
    const info = await cli('info', '--model', out, '--json', '--backend', 'wasm')
    expect(JSON.parse(info.out[0])).toMatchObject({ family: 'mixtral', checkpointDtype: 'bfloat16' })
    expect(existsSync(join(out, 'README.md'))).toBe(true)
  }, 60_000)

  it('names bad input precisely', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-bad-'))
    const c = tinyConfig({ vocabSize: 24 })
    const m = new MoeModel(c, randomWeights(c, 2))
    saveModel(m, join(dir, 'base'))
    m.dispose()
    writeFileSync(join(dir, 'd.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 99]}\n')
    let r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/d\.jsonl:2: input_ids must be at least 2 token ids in \[0, 24\)/)
    writeFileSync(join(dir, 'd.jsonl'), '{"input_ids": [1, 2, 3]}\n')
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--set', 'optimizer.lr=-1', '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/optimizer\.lr/)
    r = await cli('train', '--dataset', join(dir, 'd.jsonl'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--model is required/)
    r = await cli('export', dir, '--out', join(dir, 'x'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/is not a run folder/)
  })

  it('formats progress, durations and splits deterministically', () => {
    expect(progressBar(5, 10, 10)).toBe('[#####.....]  50%')
    expect(formatDuration(3725)).toBe('1h02m')
    expect(formatDuration(65)).toBe('1m05s')
    const ex = Array.from({ length: 50 }, (_, i) => ({ input_ids: [i, i], labels: [i, i] }))
    const a = splitExamples(ex, 0.2, 3)
    expect(a.validation).toHaveLength(10)
    expect(splitExamples(ex, 0.2, 3)).toEqual(a)
    expect(splitExamples(ex, 0.2, 4).validation).not.toEqual(a.validation)
  })
})
