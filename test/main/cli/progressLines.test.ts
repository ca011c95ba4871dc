/** The CLI's progress lines on stderr: from the first unit done, every 2 s at most, in the task's unit. */
import { describe, expect, it } from 'vitest'
import { taskProgressLines } from '../../../src/main/cli/commands'
import { alertLines } from '../../../src/main/cli/trainCommands'
import type { ExpertAlert } from '../../../src/shared/runs'
import type { CliIo } from '../../../src/main/cli/util'

function io(): { io: CliIo; lines: string[] } {
  const lines: string[] = []
  return { io: { out: () => {}, err: (s: string) => void lines.push(s) } as unknown as CliIo, lines }
}

describe('taskProgressLines', () => {
  it('says nothing of 0 done, an unknown total or a finished stage, and then a line every 2 s at most', () => {
    const { io: cli, lines } = io()
    let t = 1000
    const progress = taskProgressLines(cli, () => t)
    const p = (done: number, total = 50): void => progress({ label: 'Scoring', done, total, unit: 'items' })
    t += 5000
    p(0) // nothing done yet
    progress({ label: 'Reading', done: 3, total: 0, unit: 'items' }) // no total known
    p(50) // finished: the command's own result follows
    expect(lines).toEqual([])
    p(1)
    expect(lines).toEqual(['Scoring: 1 of 50'])
    t += 1999
    p(2)
    expect(lines).toHaveLength(1)
    t += 1
    p(3)
    expect(lines).toEqual(['Scoring: 1 of 50', 'Scoring: 3 of 50'])
  })

  it('waits 2 s from the start before its first line, and reads bytes as a share of the size', () => {
    const { io: cli, lines } = io()
    let t = 0
    const progress = taskProgressLines(cli, () => t)
    progress({ label: 'Loading', done: 1, total: 3 * 2 ** 30, unit: 'bytes' })
    expect(lines).toEqual([])
    t = 2000
    progress({ label: 'Loading', done: 1.5 * 2 ** 30, total: 3 * 2 ** 30, unit: 'bytes' })
    expect(lines).toEqual(['Loading: 50% of 3.0 GiB'])
    // texts say so, as the app's progress bar does (items are the label's own: questions, checks)
    t = 4000
    progress({ label: 'Routing the text through the model', done: 3, total: 40, unit: 'texts' })
    expect(lines.at(-1)).toBe('Routing the text through the model: 3 of 40 texts')
  })

  it('closes a stage it wrote a line for with its last line, once, so a log does not end on "5 of 7"', () => {
    const { io: cli, lines } = io()
    let t = 0
    const progress = taskProgressLines(cli, () => t)
    const p = (label: string, done: number, total = 7): void => progress({ label, done, total, unit: 'items' })
    p('Evaluating the base model (train)', 7) // too quick for a line: stays silent
    t = 2500
    p('Evaluating the base model (validation)', 5)
    p('Evaluating the base model (validation)', 8) // past the end (a last batch counted whole) reads as the end
    p('Evaluating the base model (validation)', 7)
    expect(lines).toEqual(['Evaluating the base model (validation): 5 of 7', 'Evaluating the base model (validation): 7 of 7'])
    t = 5000
    progress({ label: 'Loading', done: 1 << 20, total: 4 << 20, unit: 'bytes' })
    p('Evaluating the fine-tuned model (validation)', 7) // another stage's end closes nothing
    progress({ label: 'Loading', done: 5 << 20, total: 4 << 20, unit: 'bytes' })
    expect(lines.slice(2)).toEqual(['Loading: 25% of 4.0 MiB', 'Loading: 100% of 4.0 MiB'])
    // A stage whose size turns unknown is not closed as "0 of 0".
    t = 8000
    p('Reading', 1, 10)
    p('Reading', 3, 0)
    expect(lines.slice(4)).toEqual(['Reading: 1 of 10'])
  })
})

describe('alertLines', () => {
  it("groups a step's alerts by kind, with the step, and says what to do once per kind", () => {
    const alert = (step: number, layer: number, expert: number, kind: ExpertAlert['kind']): ExpertAlert => ({
      step,
      layer,
      expert,
      kind,
      message: `layer ${layer} expert ${expert} took ${kind === 'dead' ? 'under 1.0%' : 'over 90%'} of tokens for 20 steps: ${kind === 'dead' ? 'raise the coefficient' : 'lower the rate'}`,
    })
    const told = new Set<string>()
    expect(alertLines([alert(20, 0, 1, 'dead'), alert(20, 1, 3, 'dead'), alert(20, 0, 2, 'dead')], told)).toEqual([
      'alert at step 20: layer 0 experts 1, 2; layer 1 expert 3 took under 1.0% of tokens for 20 steps: raise the coefficient',
    ])
    expect(alertLines([alert(41, 2, 0, 'dead'), alert(41, 2, 5, 'collapse')], told)).toEqual([
      'alert at step 41: layer 2 expert 0 took under 1.0% of tokens for 20 steps (what to do: as above)',
      'alert at step 41: layer 2 expert 5 took over 90% of tokens for 20 steps: lower the rate',
    ])
    expect(alertLines([], told)).toEqual([])
  })

  it('says each piece of advice in full once: an expert idle from the first step takes other advice than one that died', () => {
    const told = new Set<string>()
    const fromStart: ExpertAlert = {
      step: 20,
      layer: 0,
      expert: 1,
      kind: 'dead',
      message: "layer 0 expert 1 took under 1.0% of tokens for 20 steps, from the run's first: raise it only if every expert should learn",
    }
    const died = (step: number, expert: number): ExpertAlert => ({
      step,
      layer: 1,
      expert,
      kind: 'dead',
      message: `layer 1 expert ${expert} took under 1.0% of tokens for 20 steps: raise the coefficient`,
    })
    expect(alertLines([fromStart], told)).toEqual([
      "alert at step 20: layer 0 expert 1 took under 1.0% of tokens for 20 steps, from the run's first: raise it only if every expert should learn",
    ])
    expect(alertLines([died(34, 3)], told)).toEqual([
      'alert at step 34: layer 1 expert 3 took under 1.0% of tokens for 20 steps: raise the coefficient',
    ])
    expect(alertLines([died(49, 5)], told)).toEqual([
      'alert at step 49: layer 1 expert 5 took under 1.0% of tokens for 20 steps (what to do: as above)',
    ])
    // an alert with no advice (after its colon) is told whole every time
    const bare = { ...died(60, 6), message: 'layer 1 expert 6 took under 1.0% of tokens for 20 steps' }
    expect(alertLines([bare], told)).toEqual(['alert at step 60: layer 1 expert 6 took under 1.0% of tokens for 20 steps'])
    expect(alertLines([{ ...bare, step: 80 }], told)).toEqual(['alert at step 80: layer 1 expert 6 took under 1.0% of tokens for 20 steps'])
  })
})
