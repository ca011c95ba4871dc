/**
 * Learning-rate schedules: a pure function of the optimiser step.
 */
import type { RunConfig } from '../../shared/runConfig'

/**
 * The learning rate for optimiser step `step` (0-based) of `total`: linear warm-up over
 * warmupSteps (the first step already trains), then cosine or linear decay towards minLrRatio·lr,
 * reached just after the last step as in Hugging Face's schedulers (so with a floor of 0 the last
 * step still trains), or constant.
 */
export function learningRate(step: number, total: number, lr: number, s: RunConfig['schedule']): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return (lr * (step + 1)) / s.warmupSteps
  if (s.type === 'constant') return lr
  const span = Math.max(1, total - s.warmupSteps)
  const progress = Math.min(1, Math.max(0, (step - s.warmupSteps) / span))
  const floor = s.minLrRatio
  const factor = s.type === 'cosine' ? floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - (1 - floor) * progress
  return lr * factor
}
