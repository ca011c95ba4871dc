/**
 * One training step (forward, backward, AdamW) of a model with random weights on random tokens,
 * as both the train-step section of `npm run bench` and its peer child process time it.
 */
import { MoeModel } from '../src/main/engine/model'
import { disposeGrads, lossAndGrads } from '../src/main/engine/objective'
import { Rng } from '../src/main/engine/ops'
import { AdamW } from '../src/main/engine/optimizer'
import { paramSpecs, type MoeConfig } from '../src/shared/modelConfig'

export interface TrainStepBench {
  step(): void
  dispose(): void
}

/** Weights drawn from N(0, scale²) (norms 1), one fixed batch of `batch` × `seq` token ids. */
export function trainStepBench(c: MoeConfig, batch: number, seq: number, scale: number): TrainStepBench {
  const rng = new Rng(7)
  const weights = new Map<string, Float32Array>()
  for (const s of paramSpecs(c))
    weights.set(
      s.name,
      rng.normalArray(s.shape.reduce((a, b) => a * b, 1)).map((v) => (s.kind === 'norm' ? 1 : v * scale)),
    )
  const model = new MoeModel(c, weights)
  const opt = new AdamW({ weightDecay: 0.01 })
  const ids = Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(rng.next() * c.vocabSize)))
  return {
    step: () => {
      const r = lossAndGrads(model, { inputIds: ids, labels: ids }, { training: true, rng })
      opt.apply(model.params, r.grads, 1e-4)
      disposeGrads(r.grads)
    },
    dispose: () => {
      opt.dispose()
      model.dispose()
    },
  }
}
