import { describe, expect, it } from 'vitest'
import {
  axisDigits,
  binLabel,
  colourLayerChoices,
  contextProblem,
  countOf,
  evalVerdict,
  formatDuration,
  formatMetric,
  namesList,
  parseBytes,
  sizeProblem,
  visibleText,
  visibleToken,
} from '../../src/renderer/src/format'

describe('format', () => {
  it('counts with the noun plural but for one', () => {
    expect(countOf(1, 'row')).toBe('1 row')
    expect(countOf(0, 'row')).toBe('0 rows')
    expect(countOf(1200, 'row')).toBe('1,200 rows')
  })

  it('labels a length bin by the lengths it holds', () => {
    expect(binLabel({ from: 20, to: 21 })).toBe('20')
    expect(binLabel({ from: 20, to: 25 })).toBe('20–24')
    expect(binLabel({ from: 0, to: 2 })).toBe('0–1')
  })

  it('reads sizes the way people type them', () => {
    expect(parseBytes('8 GiB')).toBe(8 * 1024 ** 3)
    expect(parseBytes('512MB')).toBe(512e6)
    expect(parseBytes('1.5g')).toBe(1.5 * 1024 ** 3)
    expect(parseBytes('4096 B')).toBe(4096)
    expect(parseBytes('2000000')).toBe(2_000_000) // a plain number of bytes, from 1 MiB up
    // Under 1 MiB a plain number is a slip for GB ("80" GiB per GPU), not a size: asked for its unit.
    expect(parseBytes('80')).toBeNull()
    expect(parseBytes('1048575')).toBeNull()
    expect(parseBytes('1048576')).toBe(2 ** 20)
    expect(sizeProblem(' 80 ')).toBe('“80” has no unit (as bytes it is 80 B): write e.g. 80 GB or 80 GiB')
    expect(sizeProblem('lots', '256 MiB')).toBe('“lots” is not a size; write e.g. 256 MiB or 512 MB')
    expect(sizeProblem('0')).toBe('“0” is not above 0: a size is more than 0 bytes; write e.g. 8 GiB or 512 MB')
    expect(sizeProblem('-5')).toMatch(/^“-5” is not above 0/)
    expect(sizeProblem('0 GB')).toMatch(/^“0 GB” is not above 0/)
    expect(sizeProblem('0.0g')).toMatch(/^“0.0g” is not above 0/)
    expect(sizeProblem('0.5 GB')).toMatch(/is not a size/) // not refused for its value (parseBytes takes it)
    expect(sizeProblem('10 GB')).toMatch(/is not a size/)
    expect(parseBytes('lots')).toBeNull()
    expect(parseBytes('0 MB')).toBeNull()
    expect(parseBytes('3 parsecs')).toBeNull()
    // Past 2^53 bytes: no size (the service answered "budgetBytes: is too large a number").
    expect(parseBytes('8192 TiB')).toBeNull() // 2^53
    expect(parseBytes('8191 TiB')).toBe(8191 * 1024 ** 4)
    expect(sizeProblem('99999999 TiB')).toBe('“99999999 TiB” is more than any machine holds (8 PiB at most); write e.g. 8 GiB or 512 MB')
  })

  it('writes durations and metrics compactly', () => {
    expect(formatDuration(9)).toBe('9 s')
    expect(formatDuration(75)).toBe('1 min 15 s')
    expect(formatDuration(3725)).toBe('1 h 2 min')
    expect(formatDuration(-1)).toBe('–')
    expect(formatMetric(2.34567)).toBe('2.346')
    expect(formatMetric(0.000123)).toBe('1.23e-4')
    expect(formatMetric(null)).toBe('–')
  })

  it('makes whitespace tokens visible', () => {
    expect(visibleToken(' the')).toBe('·the')
    expect(visibleToken('\n\t')).toBe('↵→')
    expect(visibleToken('')).toBe('∅')
  })
})

describe('namesList', () => {
  it('names the first few, then counts the rest in words (no ellipsis before a full stop)', () => {
    expect(namesList(['a', 'b', 'c'], 4)).toBe('a, b, c')
    expect(namesList(['a', 'b', 'c', 'd'], 4)).toBe('a, b, c, d')
    expect(namesList(['a', 'b', 'c', 'd', 'e', 'f'], 4)).toBe('a, b, c, d and 2 more')
    expect(namesList([], 4)).toBe('')
  })
})

describe('axisDigits', () => {
  it('gives tick labels enough digits to differ over the plotted range', () => {
    // A learning rate easing from 3e-4 to 2.95e-4: ticks 5e-7 apart.
    const lr = [3e-4, 2.99e-4, 2.97e-4, 2.95e-4]
    const d = axisDigits(lr)
    expect(d).toBe(4)
    const values = [2.95e-4, 2.96e-4, 2.97e-4, 2.98e-4, 2.99e-4, 3e-4]
    expect(new Set(values.map((v) => formatMetric(v, d))).size).toBe(values.length)
    expect(new Set(values.map((v) => formatMetric(v, 3))).size).toBeLessThan(values.length) // what 3 digits gave
    expect(axisDigits([0, 10])).toBe(3) // a range as wide as the values
    expect(axisDigits([5, 5])).toBe(3) // one value
    expect(axisDigits([])).toBe(3)
    expect(axisDigits([1, 1 + 1e-12])).toBe(8) // capped
  })
})

describe('evalVerdict', () => {
  const s = (exactMatch: number, f1: number, loss: number | null) => ({ exactMatch, f1, loss })
  it('says a verdict on a few rows is not sure, and never reds one', () => {
    expect(evalVerdict(s(0, 0.1, 1), { ...s(0, 0, 1), n: 4 })).toEqual({
      tone: 'warn',
      words: 'further from the expected answers (F1 0.10 → 0.00), none exact yet; only 4 rows scored, too few to be sure',
    })
    expect(evalVerdict(s(0, 0.1, 2), { ...s(1, 1, 1), n: 1 })).toEqual({
      tone: 'ok',
      words: 'answers 100% exactly, up from 0%; only 1 row scored, too few to be sure',
    })
    expect(evalVerdict(s(0, 0.1, 1), { ...s(0, 0, 1), n: 10 })).toMatchObject({ tone: 'danger', words: expect.not.stringMatching(/sure/) })
  })
  it('exact answers first, then whether the answers came closer or went further', () => {
    expect(evalVerdict(s(0.1, 0.3, 2), s(0.5, 0.6, 1))).toEqual({ tone: 'ok', words: 'answers 50% exactly, up from 10%' })
    expect(evalVerdict(s(0.5, 0.6, 1), s(0.2, 0.5, 1))).toMatchObject({ tone: 'danger', words: expect.stringMatching(/^answers worse/) })
    // the trial's run: none exact before or after, but clearly learned
    expect(evalVerdict(s(0, 0.06, 1.734), s(0, 0.75, 0.6197))).toEqual({
      tone: 'ok',
      words: 'closer to the expected answers (F1 0.06 → 0.75), none exact yet',
    })
    // the loss down a tenth and more, F1 alike: the loss is what it cites
    expect(evalVerdict(s(0.02, 0.3, 2), s(0.03, 0.32, 1.7))).toEqual({
      tone: 'ok',
      words: 'closer to the expected answers (answer loss 2 → 1.7), 3% exact',
    })
    expect(evalVerdict(s(0.02, 0.3, 2), s(0.03, 0.32, 1.9))).toEqual({
      tone: 'warn',
      words: 'no clear change (3% exact, F1 0.32, answer loss 2 → 1.9)',
    })
    // the trial's run: the loss up under a tenth is said, not hidden in "no clear change"
    expect(evalVerdict(s(0, 0, 8.556), s(0, 0, 9.314))).toEqual({
      tone: 'warn',
      words: 'no clear change (0% exact, F1 0.00, answer loss 8.556 → 9.314)',
    })
    expect(evalVerdict(s(0, 0.5, null), s(0, 0.52, null)).words).toBe('no clear change (0% exact, F1 0.52)')
    expect(evalVerdict(s(0, 0.5, 1), s(0, 0.3, 1)).tone).toBe('danger')
    expect(evalVerdict(s(0, 0.5, 1), s(0, 0.5, 1.2)).words).toBe('further from the expected answers (answer loss 1 → 1.2), none exact yet')
    expect(evalVerdict(s(0, 0.5, 1), s(0, 0.3, 1)).words).toBe('further from the expected answers (F1 0.50 → 0.30), none exact yet')
    expect(evalVerdict(s(0, 0.5, null), s(0, 0.52, null)).tone).toBe('warn') // no loss to compare
    expect(evalVerdict(s(0, 0.5, null), s(0, 0.5, 0.5)).tone).toBe('warn') // nor one side of it
    expect(evalVerdict(s(0, 0.5, 1), s(0, 0.5, null)).tone).toBe('warn')
    expect(evalVerdict(s(0, 0.5, 0), s(0, 0.5, 0.5)).tone).toBe('warn') // nor a ratio to a zero loss
    // F1 a little down, the loss down: not "closer"
    expect(evalVerdict(s(0, 0.5, 2), s(0, 0.43, 1.6)).tone).toBe('warn')
  })

  it('the thresholds: 5 points of exact answers, 0.1 of F1 (0.05 down vetoes the loss), a tenth of the loss', () => {
    const tone = (b: [number, number, number], a: [number, number, number]) => evalVerdict(s(...b), s(...a)).tone
    expect(tone([0, 0.5, 1], [0.05, 0.5, 1])).toBe('warn')
    expect(tone([0.05, 0.5, 1], [0, 0.5, 1])).toBe('warn')
    expect(tone([0, 0, 1], [0, 0.1, 1])).toBe('ok')
    expect(tone([0, 0.05, 2], [0, 0, 1.6])).toBe('warn')
    expect(tone([0, 0.5, 1], [0, 0.5, 0.9])).toBe('ok')
    expect(tone([0, 0.1, 1], [0, 0, 1])).toBe('danger')
    expect(tone([0, 0.5, 1], [0, 0.5, 1.1])).toBe('danger')
  })
})

describe('visibleText', () => {
  it('shows control characters as their symbols, keeps newlines, tabs and other text', () => {
    expect(visibleText('Ottawa\u0002')).toBe('Ottawa\u2402')
    expect(visibleText('a\u0000b\u001fc\u007f')).toBe('a\u2400b\u241fc\u2421')
    expect(visibleText('line\n\tnext 😀')).toBe('line\n\tnext 😀')
    expect(visibleToken('\u0002')).toBe('\u2402') // a token of a reply, in its card
  })
})

describe('colourLayerChoices', () => {
  it("lists every model's sparse layers once, in order, and says whose a layer is where the other model has none there", () => {
    const small = { name: 'small', sparseLayers: [0, 1] }
    const big = { name: 'big', sparseLayers: [0, 1, 2, 3] }
    expect(colourLayerChoices([small])).toEqual([
      { layer: 0, label: '0' },
      { layer: 1, label: '1' },
    ])
    expect(colourLayerChoices([big, small])).toEqual([
      { layer: 0, label: '0' },
      { layer: 1, label: '1' },
      { layer: 2, label: '2 (big only)' },
      { layer: 3, label: '3 (big only)' },
    ])
    // Dense layers between sparse ones (qwen2_moe's mlp_only_layers): each model's own.
    expect(
      colourLayerChoices([
        { name: 'a', sparseLayers: [1, 3] },
        { name: 'b', sparseLayers: [0, 1] },
      ]).map((c) => c.label),
    ).toEqual(['0 (b only)', '1', '3 (a only)'])
    expect(colourLayerChoices([])).toEqual([])
  })
})

describe('contextProblem', () => {
  it('takes blank (the default) and whole numbers from 1 to the most, and names what is wrong with anything else', () => {
    for (const ok of ['', '  ', '1', ' 8192 ', '+64', '1048576']) expect(contextProblem(ok, 1048576, 2048), ok).toBeNull()
    expect(contextProblem('2k', 1048576, 2048)).toBe('“2k” is not a whole number of tokens; write e.g. 8192 (blank: 2048)')
    expect(contextProblem('1e3', 1048576, 2048)).toBe('“1e3” is not a whole number of tokens; write e.g. 8192 (blank: 2048)')
    expect(contextProblem('0', 1048576, 2048)).toBe('“0”: a context holds at least 1 token; write e.g. 8192 (blank: 2048)')
    expect(contextProblem('-3', 1048576, 2048)).toBe('“-3”: a context holds at least 1 token; write e.g. 8192 (blank: 2048)')
    expect(contextProblem('1048577', 1048576, 2048)).toBe('“1048577” is more than 1048576 tokens; write e.g. 8192 (blank: 2048)')
  })
})
