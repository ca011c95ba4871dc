/** A tiny base model folder, a synthetic instruction task and a training run of it, for trainer and export tests. */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import { saveModel } from '../../../src/main/engine/checkpoint'
import { MoeModel } from '../../../src/main/engine/model'
import type { Example } from '../../../src/main/train/batches'
import { train, type StepMetrics, type TrainEvent } from '../../../src/main/train/trainer'
import { randomWeights, tinyConfig } from '../engine/helpers'

export const tmp = (p = 'moe-run-'): string => mkdtempSync(join(tmpdir(), p))

/** A tiny base model folder with seeded weights. */
export function baseModel(over: Parameters<typeof tinyConfig>[0] = {}, seed = 1): string {
  const dir = tmp('moe-base-')
  const c = tinyConfig({ vocabSize: 24, ...over })
  const m = new MoeModel(c, randomWeights(c, seed))
  saveModel(m, dir)
  m.dispose()
  return dir
}

/**
 * A synthetic instruction task over a 24-token vocabulary: prompt "1 a b 2" → answer "b a 3"
 * (swap two tokens); loss only on the answer.
 */
export function swapTask(n: number, seed = 0): Example[] {
  const out: Example[] = []
  let s = seed + 1
  const rand = (): number => {
    s = (s * 1103515245 + 12345) >>> 0
    return s / 2 ** 32
  }
  for (let i = 0; i < n; i++) {
    const a = 4 + Math.floor(rand() * 20)
    const b = 4 + Math.floor(rand() * 20)
    const ids = [1, a, b, 2, b, a, 3]
    out.push({ input_ids: ids, labels: ids.map((t, j) => (j >= 4 ? t : -100)) })
  }
  return out
}

export async function run(
  base: string,
  cfg: RunConfigInput,
  data: Example[],
  extra: { runDir?: string; resume?: boolean; signal?: AbortSignal; onEvent?: (e: TrainEvent) => void } = {},
) {
  const runDir = extra.runDir ?? tmp()
  const steps: StepMetrics[] = []
  const events: TrainEvent[] = []
  const result = await train({
    runDir,
    baseModelDir: base,
    config: validateRunConfig(cfg),
    train: data,
    validation: data.slice(0, 8),
    padId: 0,
    resume: extra.resume,
    signal: extra.signal,
    onEvent: (e) => {
      events.push(e)
      if (e.type === 'run.step') steps.push(e.metrics)
      extra.onEvent?.(e)
    },
  })
  return { runDir, result, steps, events }
}
