/** The learning-rate schedule, step by step: warm-up, then cosine, linear or constant, to the floor just after the last step. */
import { describe, expect, it } from 'vitest'
import { learningRate } from '../../../src/main/train/schedule'

const at = (type: 'cosine' | 'linear' | 'constant', warmupSteps: number, minLrRatio: number, total: number) =>
  Array.from({ length: total }, (_, step) => learningRate(step, total, 1, { type, warmupSteps, minLrRatio }))

describe('learningRate', () => {
  it('warms up linearly to the full rate over warmupSteps, reaching it on the last warm-up step', () => {
    expect(at('constant', 4, 0, 6)).toEqual([0.25, 0.5, 0.75, 1, 1, 1])
    expect(at('constant', 0, 0, 3)).toEqual([1, 1, 1])
  })

  it('cosine: from the full rate after warm-up towards the floor, half-way at the middle, reached after the last step', () => {
    const lr = at('cosine', 2, 0.1, 10) // decay over steps 2..9, the floor at step 10
    expect(lr.slice(0, 2)).toEqual([0.5, 1])
    expect(lr[2]).toBeCloseTo(1, 12)
    expect(lr[6]).toBeCloseTo(0.1 + 0.9 * 0.5, 12)
    expect(lr[4]).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI / 4)), 12)
    expect(lr[9]).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * 7) / 8)), 12)
    expect(learningRate(10, 10, 1, { type: 'cosine', warmupSteps: 2, minLrRatio: 0.1 })).toBeCloseTo(0.1, 12)
  })

  it("with a floor of 0 every step trains: the last one too (Hugging Face's get_cosine_schedule_with_warmup)", () => {
    // transformers: lr_lambda(step) = 0.5 · (1 + cos(π · (step − warmup) / (total − warmup))) after warm-up
    const hf = (step: number, total: number) => 0.5 * (1 + Math.cos((Math.PI * step) / total))
    const lr = at('cosine', 0, 0, 2)
    expect(lr[0]).toBe(1)
    expect(lr[1]).toBeCloseTo(hf(1, 2), 12)
    expect(lr[1]).toBeGreaterThan(0)
    at('cosine', 0, 0, 7).forEach((v, i) => expect(v).toBeCloseTo(hf(i, 7), 12))
    expect(at('linear', 0, 0, 3).at(-1)).toBeCloseTo(1 / 3, 12)
  })

  it('linear: a straight line from the full rate towards the floor', () => {
    const lr = at('linear', 0, 0.2, 5)
    lr.forEach((v, i) => expect(v).toBeCloseTo(1 - 0.8 * (i / 5), 12))
  })

  it('past the last step it stays at the floor; a one-step run trains at the full rate', () => {
    expect(learningRate(10, 5, 2, { type: 'cosine', warmupSteps: 0, minLrRatio: 0.1 })).toBeCloseTo(0.2, 12)
    expect(learningRate(0, 1, 2, { type: 'cosine', warmupSteps: 0, minLrRatio: 0.1 })).toBe(2)
    expect(learningRate(0, 1, 2, { type: 'linear', warmupSteps: 0, minLrRatio: 0.5 })).toBe(2)
  })
})
