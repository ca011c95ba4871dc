import { describe, expect, it } from 'vitest'
import { guidedDataset, SHOWCASE_SAMPLE } from '../../src/renderer/src/guided'

describe('the guided path', () => {
  const samples = [{ name: 'Sample: arithmetic' }, { name: SHOWCASE_SAMPLE }, { name: 'Sample: word reversal' }]
  it("fine-tunes the user's own newest dataset, else the sample where fine-tuning visibly works", () => {
    expect(guidedDataset(samples)).toEqual({ name: SHOWCASE_SAMPLE })
    expect(guidedDataset([{ name: 'capitals' }, ...samples, { name: 'older' }])).toEqual({ name: 'capitals' })
    expect(guidedDataset([{ name: 'Sample: arithmetic' }])).toEqual({ name: 'Sample: arithmetic' })
    expect(guidedDataset([])).toBeUndefined()
  })
})
