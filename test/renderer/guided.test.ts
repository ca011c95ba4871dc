import { describe, expect, it } from 'vitest'
import { chatStep, chatStepText, datasetStep, guidedDataset, modelStep, resultModel, SHOWCASE_SAMPLE } from '../../src/renderer/src/guided'

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

  it('names the run the model to chat with came from, and a newer completed run that is not exported yet', () => {
    const runs = [
      { id: '2026-12-02T10-00-00-bad24296', name: undefined },
      { id: '2026-12-01T10-00-00-aaaa', name: 'cli-top3' },
    ]
    const tuned = { name: 'cli-top3 (fine-tuned)', provenance: { fromRun: '2026-12-01T10-00-00-aaaa' } }
    // The newest completed run is the one exported: one run named, once.
    expect(chatStepText(tuned, runs[1], runs, [runs[1].id])).toBe(
      'Compare cli-top3 (fine-tuned) (from run cli-top3) with the base model, token by token.',
    )
    // A newer completed run, not exported: the step names both, and where to export.
    expect(chatStepText(tuned, runs[0], runs, [runs[1].id])).toBe(
      'Compare cli-top3 (fine-tuned) (from run cli-top3) with the base model, token by token. Run bad24296 is not a model yet: Export it on its run card to chat with it too.',
    )
    // Exported under another model (an older export of it was removed from the list): nothing to export.
    expect(chatStepText(tuned, runs[0], runs, [runs[0].id, runs[1].id])).toBe(
      'Compare cli-top3 (fine-tuned) (from run cli-top3) with the base model, token by token.',
    )
    // No model from a run yet.
    expect(chatStepText(null, runs[0], runs, [])).toBe(
      'Run bad24296 is not a model yet: Export it on its run card, then chat with it next to the base model.',
    )
    expect(chatStepText(null, null, [], [])).toBe('Export the run as a model, then chat with it next to the base model.')
    // A model whose run is gone from the list is still named, without its run.
    expect(chatStepText({ name: 'old', provenance: { fromRun: 'gone' } }, null, runs, ['gone'])).toBe(
      'Compare old with the base model, token by token.',
    )
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

  it('marks the chat step done by a conversation with the fine-tuned model, on either side, not by any conversation', () => {
    const tuned = { dir: '/ws/models/tuned' }
    const withBase = { model: '/app/default-model' }
    expect(chatStep([], tuned)).toBe('todo')
    expect(chatStep([withBase], tuned)).toBe('todo')
    expect(chatStep([withBase], null)).toBe('todo')
    expect(chatStep([withBase, { model: tuned.dir }], tuned)).toBe('done')
    expect(chatStep([{ model: '/app/default-model', compare: { model: tuned.dir } }], tuned)).toBe('done')
  })
})
