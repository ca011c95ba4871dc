import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { autoInput, autoRunConfig, FULL_LIMIT, type AutoInput } from '../../src/shared/autoConfig'
import type { DatasetManifest } from '../../src/shared/dataset'
import { countParams, fromHfConfig, validateMoeConfig } from '../../src/shared/modelConfig'
import { runConfigSchema } from '../../src/shared/runConfig'

const bundled = fromHfConfig(JSON.parse(readFileSync(join(__dirname, '../../resources/default-model/config.json'), 'utf8')))

function lengths(median: number, p95: number, max: number) {
  return { count: 40, min: 1, median, p95, max, mean: median, histogram: [] }
}

/** A manifest's stats and split, as an import writes them. */
function manifest(train: number, chars = lengths(37, 41, 45), tokens?: { median: number; p95: number; max: number }) {
  return {
    stats: {
      rows: train + 4,
      duplicates: 0,
      chars,
      ...(tokens && { tokens: { ...lengths(tokens.median, tokens.p95, tokens.max), tokenizer: '/m', trainable: 100, total: 1000 } }),
    },
    split: { validation: 0.1, seed: 0, train, validationRows: 4 },
  } satisfies Pick<DatasetManifest, 'stats' | 'split'>
}

function large(over: Partial<AutoInput> = {}): AutoInput {
  return {
    trainRows: 36,
    tokens: { median: 30, p95: 40, max: 48, measured: true },
    model: { totalParams: 6.9e9, maxPositions: 4096, hasSharedExpert: false },
    ...over,
  }
}

describe('the Quick preset (autoRunConfig)', () => {
  it('validates about five times, the fifth at the end of the run and not a step before it (two validations in a row)', () => {
    // 270 training rows of the conversion sample: 18 epochs of 34 steps, 612 in all
    const auto = autoRunConfig(autoInput(manifest(270), bundled))
    expect(auto.steps).toBe(612)
    expect(auto.config.evalEvery).toBe(123) // 123 246 369 492, and the end (612); 122 validated at 610 and 612
    expect(auto.config.checkpointEvery).toBe(306)
    const odd = autoRunConfig(autoInput(manifest(262), bundled)) // 33 steps an epoch, 18 epochs: 594
    expect(odd.steps).toBe(594)
    expect(odd.config.evalEvery).toBe(119) // 118 validated at 590 and 594
  })

  it('fully fine-tunes the bundled model on a few dozen rows for about 300 steps at its pretraining rate', () => {
    const auto = autoRunConfig(autoInput(manifest(36), bundled))
    const c = auto.config
    expect(countParams(bundled).total).toBeLessThan(FULL_LIMIT)
    expect(c.method).toBe('full')
    expect(c.optimizer.lr).toBe(3e-3)
    expect(c.optimizer.betas).toEqual([0.9, 0.95])
    expect(c.optimizer.weightDecay).toBe(0)
    expect(c.batchSize).toBe(8)
    // 36 rows in batches of 8: 5 steps an epoch; 60 epochs.
    expect(c.epochs).toBe(60)
    expect(auto.steps).toBe(300)
    expect(c.maxSteps).toBeNull()
    expect(c.schedule).toEqual({ type: 'cosine', warmupSteps: 15, minLrRatio: 0.1 })
    expect(c.data.maskPrompt).toBe(true)
    expect(c.evalEvery).toBe(60)
    expect(c.checkpointEvery).toBe(150)
    expect(c.finalEval.rows).toBe(20)
    expect(runConfigSchema.safeParse(c).success).toBe(true)
  })

  it('says why for every choice, and each choice is what the config holds', () => {
    const auto = autoRunConfig(autoInput(manifest(36), bundled))
    expect(auto.choices.map((x) => x.path)).toEqual(
      expect.arrayContaining(['method', 'optimizer.lr', 'batchSize', 'epochs', 'schedule.warmupSteps', 'data.maxLength']),
    )
    for (const choice of auto.choices) {
      expect(choice.why.length).toBeGreaterThan(10)
      const value = choice.path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], auto.config)
      expect(value).toEqual(choice.value)
    }
    expect(auto.choices.find((x) => x.path === 'method')!.why).toContain('2.7 M parameters')
  })

  it('lists every setting it changes from the defaults (--set starts from the defaults: an unlisted one is lost)', () => {
    const leaves = (o: unknown, path = ''): [string, unknown][] =>
      o !== null && typeof o === 'object' && !Array.isArray(o)
        ? Object.entries(o).flatMap(([k, v]) => leaves(v, path ? `${path}.${k}` : k))
        : [[path, o]]
    const defaults = new Map(leaves(runConfigSchema.parse({})))
    for (const input of [autoInput(manifest(36), bundled), large(), large({ trainRows: 5000 }), autoInput(manifest(3000), bundled)]) {
      const auto = autoRunConfig(input)
      const chosen = auto.choices.map((c) => c.path)
      const changed = leaves(auto.config)
        .filter(([path, v]) => JSON.stringify(v) !== JSON.stringify(defaults.get(path)))
        .map(([path]) => path)
      expect(changed.filter((path) => !chosen.some((c) => path === c || path.startsWith(`${c}.`)))).toEqual([])
    }
  })

  it('gives a 7B-class model LoRA on attention and experts (and the shared expert where there is one)', () => {
    const c = autoRunConfig(large()).config
    expect(c.method).toBe('lora')
    expect(c.lora).toEqual({ rank: 16, alpha: 32, dropout: 0.05, targets: ['attention', 'experts'] })
    expect(c.optimizer.lr).toBe(2e-4)
    // Under a billion parameters LoRA takes larger steps.
    const mid = autoRunConfig(large({ model: { totalParams: 500e6, maxPositions: 4096, hasSharedExpert: false } }))
    expect(mid.config).toMatchObject({ method: 'lora', optimizer: { lr: 5e-4 } })
    expect(mid.choices.find((x) => x.path === 'optimizer.lr')!.why).toMatch(/under a billion parameters/)
    expect(c.batchSize).toBe(4)
    // 9 steps an epoch; 150 steps would be 17 epochs, capped at 10.
    expect(c.epochs).toBe(10)
    const qwen = autoRunConfig(large({ model: { totalParams: 14e9, maxPositions: 8192, hasSharedExpert: true } })).config
    expect(qwen.lora.targets).toEqual(['attention', 'experts', 'shared_expert'])
  })

  it('passes once over a large dataset, with weight decay and rank 8', () => {
    const auto = autoRunConfig(large({ trainRows: 50_000 }))
    expect(auto.config.epochs).toBe(1)
    expect(auto.steps).toBe(12_500)
    expect(auto.config.lora.rank).toBe(8)
    expect(auto.config.optimizer.weightDecay).toBe(0.01)
    expect(auto.config.schedule.warmupSteps).toBe(50)
    const mid = autoRunConfig(autoInput(manifest(1500), bundled))
    // 188 steps an epoch: three passes come nearest the target's 600.
    expect(mid.config.epochs).toBe(3)
  })

  it('reads at most the model allows and at least the longest row, measured or estimated from characters', () => {
    const measured = autoInput(manifest(36, lengths(37, 41, 45), { median: 20, p95: 24, max: 30 }), bundled)
    expect(measured.tokens).toEqual({ median: 20, p95: 24, max: 30, measured: true })
    expect(autoRunConfig(measured).config.data.maxLength).toBe(64)
    const estimated = autoInput(manifest(36, lengths(300, 900, 1000)), bundled)
    // characters / 2 + 16 template tokens
    expect(estimated.tokens).toEqual({ median: 166, p95: 466, max: 516, measured: false })
    const long = autoRunConfig(estimated)
    expect(long.config.data.maxLength).toBe(512) // the bundled model reads 512 positions
    expect(long.choices.find((x) => x.path === 'data.maxLength')!.why).toContain('about 516 tokens')
    expect(autoRunConfig(large({ tokens: { median: 9000, p95: 9000, max: 9000, measured: true } })).config.data.maxLength).toBe(4096)
    // never past what the model reads, even below the usual floor of 64
    const short = large({
      model: { totalParams: 1e6, maxPositions: 32, hasSharedExpert: false },
      tokens: { median: 9, p95: 10, max: 12, measured: true },
    })
    expect(autoRunConfig(short).config.data.maxLength).toBe(32)
  })

  it("reads the model's size and shared expert from its config", () => {
    expect(autoInput(manifest(36), bundled).model).toEqual({ totalParams: 2_714_752, maxPositions: 512, hasSharedExpert: false })
    const qwen = validateMoeConfig({
      ...bundled,
      family: 'qwen2_moe',
      sharedExpertIntermediateSize: 64,
      normTopkProb: false,
      router: { ...bundled.router },
    })
    expect(autoInput(manifest(36), qwen).model.hasSharedExpert).toBe(true)
  })

  it('a mid-sized model on a few thousand rows: full fine-tuning at 1e-3, one pass, long rows cut at what the model reads', () => {
    const auto = autoRunConfig({
      trainRows: 3000,
      tokens: { median: 100, p95: 900, max: 3000, measured: true },
      model: { totalParams: 50e6, maxPositions: 1024, hasSharedExpert: false },
    })
    expect(auto.choices).toEqual([
      { path: 'method', value: 'full', why: 'the model is small (50.0 M parameters): training every weight is cheap and learns fastest' },
      { path: 'optimizer.lr', value: 0.001, why: 'a full fine-tune of a model of tens of millions of parameters' },
      {
        path: 'optimizer.betas',
        value: [0.9, 0.95],
        why: "Adam's β2 0.95 (LLaMA's and most MoE recipes'): steadier steps where gradients change fast",
      },
      { path: 'batchSize', value: 8, why: '3000 training rows: 8 per step' },
      { path: 'epochs', value: 1, why: '3000 rows: one pass (375 steps); more passes start to memorise' },
      { path: 'schedule.warmupSteps', value: 19, why: '5% of the 375 steps warm up, then the rate decays (cosine) to a tenth' },
      { path: 'schedule.minLrRatio', value: 0.1, why: 'the rate ends at a tenth of its peak, not at 0: the last steps still learn' },
      { path: 'data.maxLength', value: 1024, why: 'the longest row is 3000 tokens (longer rows are cut: the model reads at most 1024)' },
      { path: 'evalEvery', value: 75, why: 'validated about 5 times over the 375 steps' },
      { path: 'checkpointEvery', value: 188, why: 'a checkpoint halfway and at the end (and at each new best validation loss)' },
      {
        path: 'finalEval.rows',
        value: 20,
        why: 'after the run, the base and the fine-tuned model answer up to 20 rows of each split (all of a smaller one): did it learn?',
      },
    ])
    expect(auto.config.optimizer.weightDecay).toBe(0.01)
    const big = autoRunConfig(large({ trainRows: 900 }))
    expect(big.choices.find((c) => c.path === 'method')!.why).toContain('6.9 B parameters')
    expect(big.choices.find((c) => c.path === 'lora.rank')!.why).toBe('rank 8 (alpha 16)')
    // one pass over 900 rows in batches of 4 is already past the target's 150 steps
    expect(big.choices.find((c) => c.path === 'epochs')!.why).toBe('one pass over 900 rows is already 225 steps')
  })

  it('refuses a dataset with no training rows, saying what to do', () => {
    expect(() => autoRunConfig(large({ trainRows: 0 }))).toThrow(/no training rows: import a dataset/)
  })
})

describe('the Quick preset at its boundaries', () => {
  const small = (over: Partial<AutoInput> = {}): AutoInput =>
    large({ model: { totalParams: 10e6, maxPositions: 4096, hasSharedExpert: false }, ...over })
  const why = (a: ReturnType<typeof autoRunConfig>, path: string): string => a.choices.find((c) => c.path === path)!.why
  const holds = (a: ReturnType<typeof autoRunConfig>): void => {
    for (const choice of a.choices) {
      const value = choice.path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], a.config)
      expect(value, choice.path).toEqual(choice.value)
      expect(choice.why.length, choice.path).toBeGreaterThan(10)
    }
  }

  it('one training row is enough', () => {
    expect(autoRunConfig(large({ trainRows: 1 })).config.batchSize).toBe(1)
  })

  it('full fine-tuning up to FULL_LIMIT parameters, the higher rate up to 20 M', () => {
    const atLimit = autoRunConfig(large({ model: { totalParams: FULL_LIMIT, maxPositions: 4096, hasSharedExpert: false } }))
    expect(atLimit.config.method).toBe('full')
    expect(atLimit.config.optimizer.lr).toBe(1e-3)
    expect(why(atLimit, 'method')).toMatch(/\(100\.0 M parameters\)/)
    const at20 = autoRunConfig(small({ model: { totalParams: 20e6, maxPositions: 4096, hasSharedExpert: false } }))
    expect(at20.config.optimizer.lr).toBe(3e-3)
    expect(why(at20, 'optimizer.lr')).toMatch(/pretrained at about this rate/)
    expect(why(atLimit, 'optimizer.lr')).toMatch(/tens of millions/)
    expect(why(autoRunConfig(small({ model: { totalParams: 5e5, maxPositions: 4096, hasSharedExpert: false } })), 'method')).toMatch(
      /\(500 k parameters\)/,
    )
    const lora = autoRunConfig(large({ model: { totalParams: 1e9, maxPositions: 4096, hasSharedExpert: false } }))
    expect(lora.config.method).toBe('lora')
    expect(why(lora, 'method')).toMatch(/\(1\.0 B parameters\)/)
    holds(lora)
    holds(atLimit)
  })

  it('500 rows still count as few (rank 16, no weight decay); 501 do not', () => {
    const few = autoRunConfig(large({ trainRows: 500 }))
    expect(few.config.lora.rank).toBe(16)
    expect(few.config.optimizer.weightDecay).toBe(0)
    expect(why(few, 'lora.rank')).toMatch(/rank 16/)
    holds(few)
    const more = autoRunConfig(large({ trainRows: 501 }))
    expect(more.config.lora.rank).toBe(8)
    expect(more.config.optimizer.weightDecay).toBe(0.01)
    expect(more.choices.some((c) => c.path === 'optimizer.weightDecay')).toBe(false)
  })

  it('a batch is a quarter of the rows up to 8; 2000 rows still get whole epochs counted', () => {
    expect(autoRunConfig(small({ trainRows: 12 })).config.batchSize).toBe(3)
    const at2000 = autoRunConfig(small({ trainRows: 2000 }))
    expect(at2000.config.epochs).toBe(2)
    expect(why(at2000, 'epochs')).toBe('few rows need many passes to be learned: 2 epochs of 250 steps')
    // a pass already past the target: one
    expect(
      why(autoRunConfig(small({ trainRows: 1800, model: { totalParams: 5e9, maxPositions: 4096, hasSharedExpert: false } })), 'epochs'),
    ).toBe('one pass over 1800 rows is already 450 steps')
    expect(why(autoRunConfig(small({ trainRows: 2001 })), 'epochs')).toMatch(/^2001 rows: one pass/)
  })

  it('reads a quarter more than the longest row, rounded up to a power of two; says when rows are cut', () => {
    expect(autoRunConfig(small({ tokens: { median: 30, p95: 50, max: 60, measured: true } })).config.data.maxLength).toBe(128)
    const exact = autoRunConfig(small({ tokens: { median: 30, p95: 50, max: 4096, measured: true } }))
    expect(exact.config.data.maxLength).toBe(4096)
    expect(why(exact, 'data.maxLength')).toBe('the longest row is 4096 tokens')
    const cut = autoRunConfig(small({ tokens: { median: 30, p95: 50, max: 5000, measured: false } }))
    expect(why(cut, 'data.maxLength')).toBe('the longest row is about 5000 tokens (longer rows are cut: the model reads at most 4096)')
  })
})
