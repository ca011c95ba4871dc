import { describe, expect, it } from 'vitest'
import { datasetStep, guidedDataset, modelStep, resultModel, SHOWCASE_SAMPLE } from '../../src/renderer/src/guided'

describe('the guided path', () => {
  const samples = [{ name: 'Sample: arithmetic' }, { name: SHOWCASE_SAMPLE }, { name: 'Sample: word reversal' }]
  it("fine-tunes the user's own newest dataset, else the sample where fine-tuning visibly works", () => {
    expect(guidedDataset(samples)).toEqual({ name: SHOWCASE_SAMPLE })
    expect(guidedDataset([{ name: 'capitals' }, ...samples, { name: 'older' }])).toEqual({ name: 'capitals' })
    expect(guidedDataset([{ name: 'Sample: arithmetic' }])).toEqual({ name: 'Sample: arithmetic' })
    expect(guidedDataset([])).toBeUndefined()
  })

  it('chats with the newest model exported from a run, never one made from a preset', () => {
    const info = {} as never
    const preset = { id: 'zz-preset', info, provenance: { preset: { family: 'mixtral' } } }
    const older = { id: 'b-older', info, provenance: { fromRun: 'r1', exported: '2026-12-01T10:00:00.000Z' } }
    const newer = { id: 'a-newer', info, provenance: { fromRun: 'r2', exported: '2026-12-02T10:00:00.000Z' } }
    const broken = { id: 'c-broken', info: null, provenance: { fromRun: 'r3', exported: '2026-12-03T10:00:00.000Z' } }
    expect(resultModel([preset, older, newer, broken])?.id).toBe('a-newer')
    expect(resultModel([newer, older])?.id).toBe('a-newer')
    expect(resultModel([preset, { id: 'untimed', info, provenance: { fromRun: 'r0' } }])?.id).toBe('untimed')
    expect(resultModel([preset])).toBeNull()
  })

  it('tells a step the user did from one what the app ships does (the bundled model, the samples)', () => {
    const info = {} as never
    expect(modelStep([{ source: 'bundled', info }])).toBe('ready')
    expect(
      modelStep([
        { source: 'bundled', info },
        { source: 'linked', info },
      ]),
    ).toBe('done')
    expect(
      modelStep([
        { source: 'bundled', info },
        { source: 'workspace', info: null },
      ]),
    ).toBe('ready') // one that does not read is no model yet
    expect(modelStep([{ source: 'bundled', info: null }])).toBe('todo')
    expect(modelStep([])).toBe('todo')
    expect(datasetStep(samples)).toBe('ready')
    expect(datasetStep([...samples, { name: 'capitals' }])).toBe('done')
    expect(datasetStep([])).toBe('todo')
  })
})
