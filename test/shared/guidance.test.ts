import { describe, expect, it } from 'vitest'
import { interpretCurves, preflight, rowTokensFor, typicalLr, type GuidanceContext } from '../../src/shared/guidance'
import { validateRunConfig, type RunConfigInput } from '../../src/shared/runConfig'
import type { EvalMetrics, StepMetrics } from '../../src/shared/runs'

const small: GuidanceContext = { trainRows: 800, totalParams: 2.7e6, vocabSize: 1200, modelCapacityFactor: null }
const big: GuidanceContext = { ...small, trainRows: 1000, totalParams: 6.9e9, vocabSize: 50304 }
const ids = (c: RunConfigInput, ctx = small) => preflight(validateRunConfig(c), ctx).map((a) => a.id)

function step(i: number, ce: number, over: Partial<StepMetrics> = {}): StepMetrics {
  return {
    step: i,
    totalSteps: 100,
    epoch: 0,
    loss: ce,
    ce,
    aux: 0,
    z: 0,
    lr: 1e-3,
    gradNorm: 1,
    droppedFraction: 0,
    tokens: 100,
    tokensPerSec: 100,
    elapsedSec: i,
    etaSec: 0,
    layers: [],
    ...over,
  }
}
const curve = (n: number, f: (i: number) => number, over: Partial<StepMetrics> = {}) =>
  Array.from({ length: n }, (_, i) => step(i + 1, f(i + 1), over))
const ev = (s: number, valLoss: number): EvalMetrics => ({ step: s, valLoss, valAux: 0, valZ: 0, valDroppedFraction: 0, valTokens: 10 })
const read = (steps: StepMetrics[], evals: EvalMetrics[] = [], c: RunConfigInput = {}) =>
  interpretCurves(steps, evals, validateRunConfig(c), { vocabSize: 1200 })

describe('before a run (preflight)', () => {
  it('says where validation is measured only once, at the end (not where there are no validation rows, or the run is tiny)', () => {
    const once = preflight(validateRunConfig({ maxSteps: 60, evalEvery: 60, batchSize: 1 }), small).find((a) => a.id === 'eval-once')
    expect(once).toEqual({
      id: 'eval-once',
      tone: 'info',
      message:
        'Validation every 60 steps of a 60-step run is measured once, at the end: the curves have no validation loss to follow and no checkpoint is marked best. Every 12 steps gives five points.',
      suggest: { path: 'evalEvery', value: 12 },
    })
    // rounded up: every 11 of 56 steps would validate at 55 and again at the end
    const odd = preflight(validateRunConfig({ maxSteps: 56, evalEvery: 60, batchSize: 1 }), small).find((a) => a.id === 'eval-once')
    expect(odd?.suggest).toEqual({ path: 'evalEvery', value: 12 })
    expect(ids({ maxSteps: 60, evalEvery: 30, batchSize: 1 })).not.toContain('eval-once')
    expect(ids({ maxSteps: 60, evalEvery: 0, batchSize: 1 })).not.toContain('eval-once')
    expect(ids({ maxSteps: 60, evalEvery: 60, batchSize: 1 }, { ...small, valRows: 0 })).not.toContain('eval-once')
    expect(ids({ maxSteps: 5, evalEvery: 50, batchSize: 1 })).not.toContain('eval-once')
  })

  it('MoE knobs past where the model learns anything else, with the usual value; usual values say nothing', () => {
    const c = { moe: { expertDropout: 1, tokenDrop: 1, routerJitter: 1, zLossCoef: 1e6, auxLossCoef: 2 } }
    const advice = preflight(validateRunConfig(c), small).filter((a) => a.id.startsWith('extreme-'))
    expect(advice.map((a) => [a.id, a.suggest])).toEqual([
      ['extreme-expertDropout', { path: 'moe.expertDropout', value: 0.1 }],
      ['extreme-tokenDrop', { path: 'moe.tokenDrop', value: 0.1 }],
      ['extreme-routerJitter', { path: 'moe.routerJitter', value: 0.01 }],
      ['extreme-zLossCoef', { path: 'moe.zLossCoef', value: 0.001 }],
      ['extreme-auxLossCoef', { path: 'moe.auxLossCoef', value: 0.01 }],
    ])
    expect(advice[0].message).toMatch(
      /^moe\.expertDropout 1 drops that share of the experts’ activations: the model learns little else \(at 1, nothing\); 0\.1 is usual\.$/,
    )
    expect(advice[3].message).not.toMatch(/at 1, nothing/)
    const usual = { moe: { expertDropout: 0.1, tokenDrop: 0.2, routerJitter: 0.01, zLossCoef: 0.001, auxLossCoef: 0.02 } }
    expect(ids(usual).filter((id) => id.startsWith('extreme-'))).toEqual([])
  })

  it("the router's losses on a hash-routed model, which has no learned router: named, with 'leave them empty'", () => {
    const c = { moe: { auxLossCoef: 0.1, zLossCoef: 0.01, loadLossCoef: 0, routerJitter: 0.2 } }
    const hash = preflight(validateRunConfig(c), { ...small, routerType: 'hash' }).find((a) => a.id === 'hash-router-losses')
    expect(hash).toEqual({
      id: 'hash-router-losses',
      tone: 'warn',
      message:
        'This model routes each token by a hash of its id: it has no learned router, so moe.auxLossCoef 0.1, moe.zLossCoef 0.01 have nothing to act on and change nothing (their losses stay 0). Leave them empty.',
      suggest: { path: 'moe.auxLossCoef', value: null },
    })
    // A learned router, or no router loss set: nothing to say.
    expect(ids(c, { ...small, routerType: 'softmax_topk' })).not.toContain('hash-router-losses')
    expect(ids({ moe: { routerJitter: 0.2 } }, { ...small, routerType: 'hash' })).not.toContain('hash-router-losses')
    expect(preflight(validateRunConfig({ moe: { importanceLossCoef: 0.5 } }), { ...small, routerType: 'hash' }).at(-1)?.message).toMatch(
      /so moe\.importanceLossCoef 0\.5 has nothing to act on .* Leave it empty\.$/,
    )
  })

  it("LoRA's dropout from 0.5, with LoRA only (the adapters see zeros at 1 and never train)", () => {
    const lora = (dropout: number, method = 'lora') =>
      preflight(validateRunConfig({ method, lora: { dropout } } as RunConfigInput), small).filter((a) => a.id.startsWith('extreme-'))
    const one = lora(1)
    expect(one.map((a) => [a.id, a.suggest])).toEqual([['extreme-lora-dropout', { path: 'lora.dropout', value: 0.05 }]])
    expect(one[0].message).toBe(
      'lora.dropout 1 drops that share of the adapters’ input: the model learns little else (at 1, nothing); 0.05 is usual.',
    )
    expect(lora(0.5)).toHaveLength(1)
    expect(lora(0.49)).toEqual([])
    expect(lora(1, 'full')).toEqual([]) // no adapters, nothing dropped
  })

  it('the learning rate: orders of magnitude off for the method and model size, with the usual value', () => {
    expect(typicalLr('full', 2.7e6)).toBe(3e-3)
    expect(typicalLr('lora', 6.9e9)).toBe(2e-4)
    expect(typicalLr('full', 6.9e9)).toBe(2e-5)
    expect(ids({ method: 'full', optimizer: { lr: 3e-3 } })).toEqual([])
    const high = preflight(validateRunConfig({ method: 'lora', optimizer: { lr: 0.1 } }), big)
    expect(high[0]).toMatchObject({ id: 'lr-high', tone: 'danger', suggest: { path: 'optimizer.lr', value: 2e-4 } })
    expect(high[0].message).toContain('500×')
    // exactly 30× is still in range; just past it is not
    expect(ids({ method: 'lora', optimizer: { lr: 6e-3 } }, big)).toEqual([])
    expect(ids({ method: 'lora', optimizer: { lr: 6.1e-3 } }, big)).toEqual(['lr-high'])
    expect(ids({ method: 'full', optimizer: { lr: 1e-5 } })).toEqual(['lr-low'])
    expect(ids({ method: 'full', optimizer: { lr: 1e-4 } })).toEqual([])
    // the same rate is fine for a 7B full fine-tune and far too low for the tiny model
    expect(ids({ method: 'full', optimizer: { lr: 2e-5 } }, big)).toEqual([])
  })

  it('fewer steps than one epoch', () => {
    const a = preflight(validateRunConfig({ optimizer: { lr: 3e-3 }, batchSize: 8, maxSteps: 2 }), { ...small, trainRows: 80 })
    expect(a).toEqual([expect.objectContaining({ id: 'steps-under-epoch', suggest: { path: 'maxSteps', value: 10 } })])
    expect(a[0].message).toContain('20% of the 80 training rows')
    expect(ids({ optimizer: { lr: 3e-3 }, batchSize: 8, maxSteps: 10, evalEvery: 5 }, { ...small, trainRows: 80 })).toEqual([])
    expect(
      ids({ optimizer: { lr: 3e-3 }, batchSize: 4, gradAccumulation: 2, maxSteps: 9, evalEvery: 3 }, { ...small, trainRows: 80 }),
    ).toEqual(['steps-under-epoch'])
  })

  it("a max length under the rows' token lengths (measured with the model's tokenizer) is said before the run", () => {
    const rowTokens = { min: 18, median: 40, p95: 61 }
    const cut = (maxLength: number) =>
      preflight(validateRunConfig({ optimizer: { lr: 3e-3 }, data: { maxLength } }), { ...small, rowTokens })
    const all = cut(8)
    expect(all).toEqual([
      expect.objectContaining({ id: 'max-length-short', tone: 'danger', suggest: { path: 'data.maxLength', value: 61 } }),
    ])
    expect(all[0].message).toBe(
      'Max length 8 tokens is shorter than every row (the shortest is 18 tokens): each is cut there, and a row whose answer starts after token 8 trains nothing.',
    )
    expect(cut(30)).toEqual([expect.objectContaining({ id: 'max-length-short', tone: 'warn' })])
    expect(cut(30)[0].message).toContain('cuts more than half of the rows (their median is 40 tokens)')
    expect(cut(40)).toEqual([])
    // not measured with this model's tokenizer: nothing to say
    expect(ids({ optimizer: { lr: 3e-3 }, data: { maxLength: 8 } })).toEqual([])
    expect(rowTokensFor({ tokens: { tokenizer: '/m', min: 1, median: 2, p95: 3 } }, '/m')).toEqual({ min: 1, median: 2, p95: 3 })
    expect(rowTokensFor({ tokens: { tokenizer: '/other', min: 1, median: 2, p95: 3 } }, '/m')).toBeUndefined()
    expect(rowTokensFor({}, '/m')).toBeUndefined()
  })

  it("a capacity factor below 1, the run's own or the model's, drops tokens even when balanced", () => {
    const a = preflight(validateRunConfig({ optimizer: { lr: 3e-3 }, moe: { capacityFactorTrain: 0.5 } }), small)
    expect(a).toEqual([expect.objectContaining({ id: 'capacity-drops', suggest: { path: 'moe.capacityFactorTrain', value: 1.25 } })])
    expect(a[0].message).toContain('at least 50%')
    expect(ids({ optimizer: { lr: 3e-3 } }, { ...small, modelCapacityFactor: 0.8 })).toEqual(['capacity-drops'])
    expect(ids({ optimizer: { lr: 3e-3 }, moe: { capacityFactorTrain: 'dropless' } }, { ...small, modelCapacityFactor: 0.8 })).toEqual([])
    expect(ids({ optimizer: { lr: 3e-3 }, moe: { capacityFactorTrain: 1 } })).toEqual([])
  })

  it('clipping off with a high rate', () => {
    expect(ids({ optimizer: { lr: 1e-2 }, gradClip: 0 })).toEqual(['no-clip'])
    expect(ids({ optimizer: { lr: 1e-2 }, gradClip: 1 })).toEqual([])
    expect(ids({ optimizer: { lr: 3e-3 }, gradClip: 0 })).toEqual([])
  })
})

describe('the curves, in words', () => {
  it('a loss stuck near ln(vocab) is not learning: raise the learning rate', () => {
    const a = read(curve(30, () => 7.0))
    expect(a).toEqual([expect.objectContaining({ id: 'not-learning', suggest: { path: 'optimizer.lr', value: 3e-3 } })])
    expect(a[0].message).toContain('ln(1200) = 7.09')
    expect(read(curve(30, () => 6.0))).toEqual([]) // 0.85 of ln V: learning something
    // Near ln V, but come down from well above it (a model started at random): it is learning.
    const falling = (i: number) => (i <= 10 ? 9 : 9 - (i - 10) * 0.12)
    expect(falling(30)).toBeCloseTo(6.6)
    expect(read(curve(30, falling)).map((x) => x.id)).not.toContain('not-learning')
    expect(read(curve(19, () => 7.0))).toEqual([]) // too early to tell
    // the vocabulary unknown (a model no longer on disk): no ln(vocab) to compare with
    expect(
      interpretCurves(
        curve(30, () => 7.0),
        [],
        validateRunConfig({}),
        { vocabSize: 0 },
      ),
    ).toEqual([])
  })

  it('a loss that climbed from where it started past a uniform guess diverged: lower the learning rate, not raise it', () => {
    // lr 5 on the bundled model: 7.1 at the start, in the hundreds by the end
    const a = read(
      curve(30, (i) => 7.1 + i * 20),
      [],
      { optimizer: { lr: 5 } },
    )
    expect(a).toEqual([expect.objectContaining({ id: 'diverged', tone: 'danger', suggest: { path: 'optimizer.lr', value: 0.5 } })])
    expect(a[0].message).toMatch(
      /^Diverged: the cross-entropy rose from 117\.10 to 517\.10, worse than a uniform guess .* \(now 5\) is too high/,
    )
    // clipping off: turn it on too
    expect(
      read(
        curve(30, (i) => 7.1 + i * 20),
        [],
        { optimizer: { lr: 5 }, gradClip: 0 },
      )[0].message,
    ).toContain('turn gradient clipping on')
    // risen by half but still under ln(vocab) (a model learning something, then noise): not diverged
    expect(read(curve(30, (i) => (i <= 10 ? 3 : 5))).map((x) => x.id)).not.toContain('diverged')
    // above ln(vocab) from the start and not rising: not learning, as before
    expect(read(curve(30, () => 7.5)).map((x) => x.id)).toEqual(['not-learning'])
    // the vocabulary unknown: the rise alone says it
    expect(
      interpretCurves(
        curve(30, (i) => 2 + i),
        [],
        validateRunConfig({}),
        { vocabSize: 0 },
      ).map((x) => x.id),
    ).toEqual(['diverged'])
    expect(read(curve(19, (i) => 7.1 + i * 20))).toEqual([]) // too early to tell
  })

  it('a flat loss after 50 steps, below ln(vocab)', () => {
    expect(read(curve(60, () => 3)).map((a) => a.id)).toEqual(['flat'])
    expect(read(curve(60, (i) => 3 - i / 60)).map((a) => a.id)).toEqual([])
    expect(read(curve(49, () => 3))).toEqual([])
  })

  it('validation rising while training falls is overfitting, naming the best step', () => {
    const steps = curve(60, (i) => 4 - i / 20)
    const a = read(steps, [ev(20, 3.0), ev(40, 2.5), ev(60, 3.2)])
    expect(a.map((x) => x.id)).toEqual(['overfitting'])
    expect(a[0].message).toContain('best checkpoint was step 40 (kept: Export can write it)')
    // without intermediate checkpoints the best one is not on disk, and the advice says so
    expect(read(steps, [ev(20, 3.0), ev(40, 2.5), ev(60, 3.2)], { checkpointEvery: 0 })[0].message).toContain(
      'best checkpoint was step 40 (not kept: checkpointEvery 0 keeps only the last step)',
    )
    // within 5% of the best: noise, not overfitting
    expect(read(steps, [ev(20, 3.0), ev(40, 2.5), ev(60, 2.6)])).toEqual([])
    // validation and training both rising: not the overfitting pattern
    expect(
      read(
        curve(60, (i) => 1 + i / 20),
        [ev(20, 3.0), ev(40, 2.5), ev(60, 3.2)],
      ).map((x) => x.id),
    ).not.toContain('overfitting')
    expect(read(steps, [ev(20, 3.0), ev(60, 3.2)])).toEqual([])
  })

  it("NaN: advice that matches the settings (no 'turn clipping on' when it is on)", () => {
    const steps = [...curve(5, () => 3), step(6, NaN)]
    const on = read(steps, [], { gradClip: 1, optimizer: { lr: 1e-2 }, schedule: { warmupSteps: 0 } })
    expect(on).toHaveLength(1)
    expect(on[0]).toMatchObject({ id: 'nan', tone: 'danger', suggest: { path: 'optimizer.lr', value: 1e-3 } })
    expect(on[0].message).toContain('at step 6')
    expect(on[0].message).toContain('clipping at 1 is already on')
    expect(on[0].message).toContain('add warm-up')
    expect(on[0].message).not.toContain('turn gradient clipping on')
    const off = read(steps, [], { gradClip: 0, schedule: { warmupSteps: 10 } })
    expect(off[0].message).toContain('turn gradient clipping on')
    expect(off[0].suggest).toEqual({ path: 'gradClip', value: 1 })
    expect(read([...curve(5, () => 3), step(6, Infinity)])[0].id).toBe('nan')
  })

  it('dropped tokens above 5% of the last steps', () => {
    expect(read(curve(10, () => 3, { droppedFraction: 0.2 })).map((a) => a.id)).toEqual(['dropping'])
    expect(read(curve(10, () => 3, { droppedFraction: 0.05 }))).toEqual([])
    // only the recent steps count
    expect(
      read([...curve(10, () => 3, { droppedFraction: 0.5 }), ...curve(10, () => 3).map((s) => ({ ...s, step: s.step + 10 }))]),
    ).toEqual([])
  })
})

describe('the words', () => {
  it('the usual learning rate by method and size, at the boundaries', () => {
    expect([20e6, 20e6 + 1, 100e6, 100e6 + 1, 1e9, 1e9 + 1].map((p) => typicalLr('full', p))).toEqual([3e-3, 1e-3, 1e-3, 1e-4, 1e-4, 2e-5])
    expect(typicalLr('freeze', 2e6)).toBe(3e-3)
    expect([20e6, 20e6 + 1, 100e6, 100e6 + 1, 1e9, 1e9 + 1].map((p) => typicalLr('lora', p))).toEqual([3e-3, 1e-3, 1e-3, 5e-4, 5e-4, 2e-4])
  })

  it('say what is wrong and what to do, word for word', () => {
    const ctx = { trainRows: 80, totalParams: 2.7e6, vocabSize: 1200, modelCapacityFactor: 0.8 }
    expect(preflight(validateRunConfig({ optimizer: { lr: 0.5 }, gradClip: 0, maxSteps: 2 }), ctx).map((a) => a.message)).toEqual([
      'Learning rate 0.5 is 167× what a full fine-tune of this model size usually takes (3.0e-3): the loss is likely to jump or become NaN.',
      '2 steps see 20% of the 80 training rows once (an epoch is 10 steps): the rest are never trained on.',
      "Capacity factor 0.8 drops at least 20% of the tokens' expert assignments even when routing is perfectly balanced (each expert takes 0.8× its even share); dropped tokens skip the experts.",
      'Gradient clipping is off with a high learning rate: one bad batch can throw the weights far; 1.0 is the usual clip.',
    ])
    expect(
      preflight(validateRunConfig({ method: 'lora', optimizer: { lr: 1e-6 }, evalEvery: 5, epochs: 3 }), {
        ...ctx,
        totalParams: 7e9,
        modelCapacityFactor: null,
      }).map((a) => a.message),
    ).toEqual([
      'Learning rate 1.0e-6 is 200× below what LoRA on a model of this size usually takes (2.0e-4): the weights will barely move and the loss will stay where it starts.',
    ])
    const cfg = validateRunConfig({ gradClip: 0 })
    const at = (i: number, ce: number, d = 0) => step(i, ce, { droppedFraction: d })
    expect(
      interpretCurves(
        curve(60, () => 7, { droppedFraction: 0.2 }),
        [],
        cfg,
        { vocabSize: 1200 },
      ).map((a) => a.message),
    ).toEqual([
      'Not learning: the cross-entropy (7.00, the mean of the last 10 steps) is near ln(1200) = 7.09, what a uniform guess over the vocabulary scores. Raise the learning rate (now 3.0e-4).',
      '20.0% of tokens are dropped by full experts (capacity factor): they skip the MoE block. Set the capacity factor to dropless.',
    ])
    expect(
      interpretCurves(
        curve(60, () => 3),
        [],
        cfg,
        { vocabSize: 1200 },
      )[0].message,
    ).toBe(
      'The cross-entropy has not fallen since the start (3.00 → 3.00): raise the learning rate (now 3.0e-4) or check that the answers are what is trained (data.maskPrompt).',
    )
    expect(interpretCurves([at(1, 3), at(2, NaN)], [], cfg, { vocabSize: 1200 })[0].message).toBe(
      'The loss became NaN at step 2: turn gradient clipping on (1.0) and lower the learning rate (now 3.0e-4). Resume from the last checkpoint before it.',
    )
    expect(
      interpretCurves(
        curve(60, (i) => 4 - i / 20),
        [ev(20, 3), ev(40, 2.5), ev(60, 3.2)],
        cfg,
        { vocabSize: 1200 },
      )[0].message,
    ).toBe(
      "Overfitting: validation loss rose from 2.500 (step 40) to 3.200 (step 60) while the training cross-entropy fell (2.225 → 1.225, the mean of the 10 steps up to each); the best checkpoint was step 40 (kept: Export can write it). Stop earlier (earlyStopping.patience) or add data. On a handful of rows to memorise, this is expected: its answers are compared with the base model's when a completed run is evaluated (Did it learn?).",
    )
    // "check the answers below" only where they are (a run still training, or cancelled, had none below)
    expect(
      interpretCurves(
        curve(60, (i) => 4 - i / 20),
        [ev(20, 3), ev(40, 2.5), ev(60, 3.2)],
        cfg,
        { vocabSize: 1200, answersShown: true },
      )[0].message,
    ).toMatch(/this is expected: check the answers below\.$/)
    // where the answers are, in the words of a caller that shows no page (the CLI)
    expect(
      interpretCurves(
        curve(60, (i) => 4 - i / 20),
        [ev(20, 3), ev(40, 2.5), ev(60, 3.2)],
        cfg,
        { vocabSize: 1200, answersShown: true, answersText: 'see elsewhere' },
      )[0].message,
    ).toMatch(/this is expected: see elsewhere\.$/)
  })
})

describe('the rules at their edges', () => {
  const ctx = { trainRows: 36, totalParams: 2.7e6, vocabSize: 1200, modelCapacityFactor: null }
  const advice = (c: RunConfigInput, over: Partial<GuidanceContext> = {}) => preflight(validateRunConfig(c), { ...ctx, ...over })

  it('each preflight advice in full: tone and the value to try', () => {
    expect(advice({ optimizer: { lr: 1 } })[0]).toMatchObject({
      id: 'lr-high',
      tone: 'danger',
      suggest: { path: 'optimizer.lr', value: 3e-3 },
    })
    const low = advice({ method: 'lora', optimizer: { lr: 1e-6 }, maxSteps: 5 })
    expect(low).toEqual([
      {
        id: 'lr-low',
        tone: 'warn',
        message:
          'Learning rate 1.0e-6 is 3000× below what LoRA on a model of this size usually takes (3.0e-3): the weights will barely move and the loss will stay where it starts.',
        suggest: { path: 'optimizer.lr', value: 3e-3 },
      },
    ])
    expect(advice({ optimizer: { lr: 1000 } })[0].message).toMatch(/^Learning rate 1\.0e\+3 is /)
    expect(advice({ maxSteps: 2, batchSize: 4, gradAccumulation: 3 })).toEqual([
      {
        id: 'steps-under-epoch',
        tone: 'warn',
        message: '2 steps see 67% of the 36 training rows once (an epoch is 3 steps): the rest are never trained on.',
        suggest: { path: 'maxSteps', value: 3 },
      },
    ])
    expect(advice({ maxSteps: 1, batchSize: 4, gradAccumulation: 3 })[0].message).toMatch(/^1 step sees 33% of the 36 training rows/)
    expect(advice({ maxSteps: 5 }, { modelCapacityFactor: 0.5 })[0]).toMatchObject({
      id: 'capacity-drops',
      tone: 'warn',
      suggest: { path: 'moe.capacityFactorTrain', value: 1.25 },
    })
    expect(advice({ maxSteps: 5, moe: { capacityFactorTrain: 'dropless' } }, { modelCapacityFactor: 0.5 })).toEqual([])
    expect(advice({ maxSteps: 5, gradClip: 0, optimizer: { lr: 3e-3 } }, { totalParams: 50e6 })).toEqual([
      {
        id: 'no-clip',
        tone: 'info',
        message: 'Gradient clipping is off with a high learning rate: one bad batch can throw the weights far; 1.0 is the usual clip.',
        suggest: { path: 'gradClip', value: 1 },
      },
    ])
  })

  it('a warm-up longer than half the run (as when max steps are cut after the Quick preset chose it)', () => {
    expect(advice({ maxSteps: 20, evalEvery: 5, schedule: { warmupSteps: 15 } })).toEqual([
      {
        id: 'warmup-long',
        tone: 'warn',
        message:
          'Warm-up is 15 steps of a 20-step run: the learning rate reaches 3.0e-4 only at step 15, so most of the run trains at a fraction of it. About 5% of the steps (1) is usual.',
        suggest: { path: 'schedule.warmupSteps', value: 1 },
      },
    ])
    expect(advice({ maxSteps: 10, schedule: { warmupSteps: 10 } })[0].message).toMatch(/the learning rate never reaches 3\.0e-4,/)
    expect(advice({ maxSteps: 6, schedule: { warmupSteps: 5 } })[0]).toMatchObject({
      message: expect.stringMatching(/A run this short needs no warm-up\.$/),
      suggest: { path: 'schedule.warmupSteps', value: 0 },
    })
    expect(advice({ maxSteps: 20, evalEvery: 5, schedule: { warmupSteps: 10 } })).toEqual([])
    // no max steps: epochs of the training rows in batches, over gradient accumulation
    expect(
      advice({ epochs: 2, batchSize: 4, gradAccumulation: 3, schedule: { warmupSteps: 4 } }, { trainRows: 36 }).map((a) => a.id),
    ).toEqual(['few-steps', 'warmup-long'])
    expect(
      advice({ epochs: 2, batchSize: 4, gradAccumulation: 3, schedule: { warmupSteps: 3 } }, { trainRows: 36 }).map((a) => a.id),
    ).toEqual(['few-steps'])
  })

  it('a validation split of a few rows: its scores move by chance (Quick on 10 rows held out one)', () => {
    expect(advice({ maxSteps: 60 }, { valRows: 1 })).toEqual([
      {
        id: 'few-validation-rows',
        tone: 'info',
        message:
          'The validation split holds 1 row: the validation loss and the held-out before/after scores rest on it alone and move by chance. More rows, or a larger share held out when the file is imported (Datasets\' "Held out for validation", the CLI\'s --val-ratio), give a reading that says more.',
      },
    ])
    expect(advice({ maxSteps: 60 }, { valRows: 4 })[0].message).toMatch(/^The validation split holds 4 rows: .* rest on them alone/)
    // 5 rows are enough; none (no validation) and not known are other matters
    for (const valRows of [5, 0, undefined])
      expect(advice({ maxSteps: 60 }, { valRows }).map((a) => a.id)).not.toContain('few-validation-rows')
  })

  it('no validation rows at all: nothing held out to follow or to score, and how to hold some out', () => {
    expect(advice({ maxSteps: 60 }, { valRows: 0 })).toEqual([
      {
        id: 'no-validation-rows',
        tone: 'info',
        message:
          'The dataset holds no validation rows: the run has no validation loss to follow, marks no checkpoint best, and scores no held-out rows before and after. Import the file again with a share held out (Datasets\' "Held out for validation", the CLI\'s --val-ratio) to see whether the model learned more than its training rows.',
      },
    ])
    // Not known (the CLI's --config without a dataset's manifest), some held out, or nothing to train on: not said.
    for (const [valRows, trainRows] of [
      [undefined, 50],
      [1, 50],
      [0, 0],
    ])
      expect(advice({ maxSteps: 60 }, { valRows, trainRows }).map((a) => a.id)).not.toContain('no-validation-rows')
  })

  it('a run of a few steps, the epochs deciding (one epoch of 50 rows is 7 steps), with the epochs that make about 60', () => {
    expect(advice({}, { trainRows: 50 })).toEqual([
      {
        id: 'few-steps',
        tone: 'warn',
        message:
          '1 epoch of 50 training rows at batch 8 is 7 steps: too few for a fine-tune to show in the loss or the before/after scores. 9 epochs make 63 steps (the Quick preset plans a run from the dataset and the model).',
        suggest: { path: 'epochs', value: 9 },
      },
    ])
    // gradient accumulation makes the batch and the steps; one step is said as one
    expect(advice({ epochs: 2, batchSize: 4, gradAccumulation: 4 }, { trainRows: 16 })[0].message).toMatch(
      /^2 epochs of 16 training rows at batch 16 is 2 steps: .* 60 epochs make 60 steps/,
    )
    expect(advice({ batchSize: 100 }, { trainRows: 1 })[0].message).toMatch(/ is 1 step: /)
    // 19 steps are few, 20 are not; max steps set are the user's count; no rows, no advice
    expect(advice({ batchSize: 1 }, { trainRows: 19 }).map((a) => a.id)).toContain('few-steps')
    expect(advice({ batchSize: 1 }, { trainRows: 20 }).map((a) => a.id)).not.toContain('few-steps')
    expect(advice({ maxSteps: 5 }, { trainRows: 50 }).map((a) => a.id)).not.toContain('few-steps')
    expect(advice({}, { trainRows: 0 }).map((a) => a.id)).not.toContain('few-steps')
  })

  it('numbers in words: plain from 0.01 to below 1000, exponent outside', () => {
    const nan = (lr: number) => read([...curve(5, () => 3), step(6, NaN)], [], { gradClip: 1, optimizer: { lr } })[0].message
    expect(nan(0.01)).toContain('(now 0.01; clipping at 1 is already on)')
    expect(nan(999)).toContain('(now 999;')
    expect(nan(1000)).toContain('(now 1.0e+3;')
  })

  it('not learning: judged after enough of the run, with a vocabulary of at least 2', () => {
    const stuck = (n: number, total: number, vocab = 1200) =>
      interpretCurves(
        curve(n, () => Math.log(vocab), { totalSteps: total }),
        [],
        validateRunConfig({}),
        { vocabSize: vocab },
      ).map((a) => a.id)
    expect(stuck(20, 100)).toEqual(['not-learning'])
    expect(stuck(19, 100)).toEqual([])
    expect(stuck(30, 1000)).toEqual([]) // 10% of 1000 steps, at least 20 and at most 50: 50
    expect(stuck(50, 1000)).toEqual(['not-learning'])
    expect(stuck(20, 100, 2)).toEqual(['not-learning'])
    const advice = interpretCurves(
      curve(20, () => Math.log(1200)),
      [],
      validateRunConfig({ optimizer: { lr: 3e-4 } }),
      { vocabSize: 1200 },
    )[0]
    expect(advice).toMatchObject({ tone: 'warn', suggest: { path: 'optimizer.lr', value: 3e-3 } })
  })

  it('flat: the first ten steps against the last ten', () => {
    const flat = (f: (i: number) => number, n = 60) => read(curve(n, f))
    // high start, lower middle, last ten back up but below the start: it did fall
    expect(flat((i) => (i <= 10 ? 6 : i <= 50 ? 3 : 4))).toEqual([])
    // a dip in the middle, the last ten as high as the first: flat
    expect(flat((i) => (i <= 10 ? 5 : i <= 50 ? 3 : 4.95)).map((a) => a.id)).toEqual(['flat'])
    expect(flat(() => 3, 50).map((a) => a.id)).toEqual(['flat'])
    expect(flat(() => 3)[0]).toMatchObject({ tone: 'warn', suggest: { path: 'optimizer.lr', value: 9e-4 } })
  })

  it('overfitting: the training loss over the ten steps up to each evaluation', () => {
    const evals = [ev(10, 1.0), ev(20, 0.9), ev(30, 1.0)]
    // training flat but for a spike at step 20: over 11-20 it is higher than over 21-30, so it "kept falling"
    const spikeAt = (s: number) => curve(30, (i) => (i === s ? 50 : 1))
    const over = read(spikeAt(20), evals)
    expect(over.map((a) => a.id)).toEqual(['overfitting'])
    expect(over[0]).toMatchObject({ tone: 'warn', suggest: { path: 'earlyStopping.patience', value: 2 } })
    expect(over[0].message).toContain('best checkpoint was step 20')
    // a spike on the last step: training did not keep falling
    expect(read(spikeAt(30), evals)).toEqual([])
    // training flat: not the pattern
    expect(
      read(
        curve(30, () => 1),
        evals,
      ),
    ).toEqual([])
    // two equally good evaluations: the earlier is the best
    const tie = read(spikeAt(20), [ev(10, 0.9), ev(20, 0.9), ev(30, 1.0)])
    expect(tie.map((a) => a.id)).toEqual([])
  })

  it('dropping: the advice in full; 1.25 first where the run was below it (as the warning before a run says), then dropless', () => {
    expect(read(curve(10, () => 3, { droppedFraction: 0.2 }))).toEqual([
      {
        id: 'dropping',
        tone: 'warn',
        message:
          '20.0% of tokens are dropped by full experts (capacity factor): they skip the MoE block. Set the capacity factor to dropless.',
        suggest: { path: 'moe.capacityFactorTrain', value: 'dropless' },
      },
    ])
    const at = (cf: number) =>
      interpretCurves(
        curve(10, () => 3, { droppedFraction: 0.2 }),
        [],
        validateRunConfig({ moe: { capacityFactorTrain: cf } }),
        {
          vocabSize: 0,
        },
      )[0]
    expect(at(0.5)).toMatchObject({
      message:
        '20.0% of tokens are dropped by full experts (capacity factor): they skip the MoE block. Raise the capacity factor (now 0.5) to 1.25, or set it to dropless.',
      suggest: { path: 'moe.capacityFactorTrain', value: 1.25 },
    })
    expect(at(1.24).suggest).toEqual({ path: 'moe.capacityFactorTrain', value: 1.25 })
    expect(at(1.25).suggest).toEqual({ path: 'moe.capacityFactorTrain', value: 'dropless' })
  })
})
