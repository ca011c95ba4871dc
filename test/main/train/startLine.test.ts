import { describe, expect, it } from 'vitest'
import { startLine } from '../../../src/main/train/trainer'

describe("a run's first log line", () => {
  const run = { resumeStep: null, steps: 12, trainRows: 2, validationRows: 1, tensors: 126, values: 2714752, backend: 'wasm' }
  it('counts in words, one of a thing in the singular (a 10-row dataset holds out 1 validation row)', () => {
    expect(startLine(run)).toBe(
      'starting: 12 steps, 2 training rows, 1 validation row, 126 trainable tensors (2714752 values), backend wasm',
    )
    expect(startLine({ ...run, steps: 1, trainRows: 1, validationRows: 0, tensors: 1 })).toBe(
      'starting: 1 step, 1 training row, 0 validation rows, 1 trainable tensor (2714752 values), backend wasm',
    )
  })
  it('says where a resumed run goes on from', () => {
    expect(startLine({ ...run, resumeStep: 4 })).toMatch(/^resuming at step 4 of 12 steps, /)
  })
})
