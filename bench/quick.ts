/**
 * The bench's `quick` section: the bundled model's Quick fine-tune, as a new user runs it (the
 * built CLI's `train` with no --config, on a 40-row question,answer CSV), on 1 and 2 wasm threads:
 * training seconds (the run's own elapsed time at its last step), wall seconds (import, training
 * and both evaluations) and exact match before -> after on the training questions.
 * BENCH_QUICK_BEFORE=DIR runs the same in another built checkout (e.g. an older commit) in the
 * same bench run, so "before" and "after" are measured side by side.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ENGINE_MALLOC_TUNABLES } from '../src/main/service/engineClient'

export interface QuickRun {
  checkout: string
  threads: number
  trainSeconds?: number
  wallSeconds?: number
  exactMatchBefore?: number
  exactMatchAfter?: number
  skipped?: string
}

const DATASET = join(import.meta.dirname, 'data', 'capitals.csv')

/**
 * The environment without the malloc tunables the bench gave itself (run.ts): each checkout's CLI
 * starts its engine as it ships (this one adds them, an older one may not), and PyTorch runs as a
 * user runs it.
 */
export function asShipped(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const t = env.GLIBC_TUNABLES?.split(':').filter((x) => !ENGINE_MALLOC_TUNABLES.split(':').includes(x))
  const out = { ...env }
  if (t?.length) out.GLIBC_TUNABLES = t.join(':')
  else delete out.GLIBC_TUNABLES
  return out
}

function quickRun(checkout: string, threads: number): QuickRun {
  const cli = join(checkout, 'bin', 'moe-workbench.js')
  if (!existsSync(join(checkout, 'out', 'main', 'cli.js')))
    return { checkout, threads, skipped: `${checkout} is not built (npm run build)` }
  const workspace = mkdtempSync(join(tmpdir(), 'moe-bench-quick-'))
  try {
    const t0 = performance.now()
    const r = spawnSync(
      process.execPath,
      [cli, 'train', '--model', join(checkout, 'resources', 'default-model'), '--dataset', DATASET, '--workspace', workspace],
      {
        env: asShipped({ ...process.env, MOE_WORKBENCH_THREADS: String(threads) }),
        encoding: 'utf8',
        maxBuffer: 64 * 2 ** 20,
      },
    )
    const wallSeconds = (performance.now() - t0) / 1000
    if (r.status !== 0)
      return { checkout, threads, skipped: `train exited ${r.status}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` }
    const runs = join(workspace, 'runs')
    const run = join(runs, readdirSync(runs)[0])
    const steps = readFileSync(join(run, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { type: string; elapsedSec?: number })
      .filter((m) => m.type === 'step')
    const evaluation = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as {
      splits: { split: string; before: { exactMatch: number }; after: { exactMatch: number } }[]
    }
    const train = evaluation.splits.find((s) => s.split === 'train')
    return {
      checkout,
      threads,
      trainSeconds: steps[steps.length - 1]?.elapsedSec,
      wallSeconds,
      exactMatchBefore: train?.before.exactMatch,
      exactMatchAfter: train?.after.exactMatch,
    }
  } finally {
    rmSync(workspace, { recursive: true, force: true })
  }
}

export function benchQuick(): QuickRun[] {
  const here = join(import.meta.dirname, '..')
  const checkouts = [here, ...(process.env.BENCH_QUICK_BEFORE ? [process.env.BENCH_QUICK_BEFORE] : [])]
  const runs: QuickRun[] = []
  for (const threads of [1, 2])
    for (const checkout of checkouts) {
      process.stderr.write(`bench: quick fine-tune in ${checkout} with ${threads} thread(s)...\n`)
      runs.push(quickRun(checkout, threads))
    }
  return runs
}
