/**
 * Fine-tuning runs end to end: the fixture AdamW losses through the trainer, learning a synthetic
 * task on wasm, resume = uninterrupted, cancel keeps a loadable checkpoint, NaN stops the run,
 * LoRA merges exactly and leaves the base untouched, freeze policies and ESFT train only what
 * they should.
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import { initBackend } from '../../../src/main/engine/backend'
import { loadModel } from '../../../src/main/engine/checkpoint'
import { MoeModel } from '../../../src/main/engine/model'
import type { Example } from '../../../src/main/train/batches'
import type { StageProgress } from '../../../src/main/engine/tasks'
import { LoraAdapters } from '../../../src/main/train/lora'
import { INTERRUPT, trainingPlan, type TrainEvent } from '../../../src/main/train/trainer'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { loadSafetensors, readHeader } from '../../../src/main/engine/safetensors'
import { baseModel, run, swapTask, tmp } from './helpers'
import { tinyConfig } from '../engine/helpers'

const readRunRecord = (dir: string) => new RunFolder(dir).read()
/** The records of a JSON-lines file. */
const jsonl = (file: string) =>
  readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l))

const FIX = join(__dirname, '../../fixtures/moe-reference')

function bits(t: tf.Tensor): Uint32Array {
  return new Uint32Array((t.dataSync() as Float32Array).slice().buffer)
}

describe('trainer', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  for (const family of ['mixtral', 'qwen2_moe', 'olmoe']) {
    it(`${family}: three AdamW steps through the trainer reproduce the reference losses`, async () => {
      const meta = JSON.parse(readFileSync(join(FIX, family, 'expected.json'), 'utf8'))
      const c = meta.cases[0]
      const o = meta.optimizer
      const data: Example[] = c.input_ids.map((ids: number[], i: number) => ({ input_ids: ids, labels: c.labels[i] }))
      const { steps, result } = await run(
        join(FIX, family),
        {
          optimizer: { lr: o.lr, betas: o.betas, eps: o.eps, weightDecay: o.weight_decay, decayNormsAndBiases: true },
          schedule: { type: 'constant' },
          gradClip: 0,
          batchSize: data.length,
          maxSteps: 3,
          evalEvery: 0,
          checkpointEvery: 0,
        },
        data,
      )
      expect(result.status).toBe('completed')
      const expected = [c.adamw.loss_before, ...c.adamw.total_loss_after_step.slice(0, 2)]
      steps.forEach((s, i) => expect(Math.abs(s.loss - expected[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 + 1e-4 * expected[i]))
    })
  }

  it('a tiny MoE learns a synthetic instruction task on wasm (answer loss below 0.6)', async () => {
    const base = baseModel({ numLayers: 2, hiddenSize: 32, headDim: 8, expertIntermediateSize: 48 })
    const data = swapTask(256)
    const { steps, events, runDir, result } = await run(
      base,
      {
        optimizer: { lr: 1e-2, weightDecay: 0 },
        schedule: { type: 'cosine', warmupSteps: 10 },
        batchSize: 32,
        maxSteps: 150,
        evalEvery: 50,
        checkpointEvery: 0,
      },
      data,
    )
    expect(result.status).toBe('completed')
    const evals = events.filter((e): e is Extract<TrainEvent, { type: 'run.eval' }> => e.type === 'run.eval')
    expect(steps[0].ce).toBeGreaterThan(2.5) // ~ln(24) at the start
    expect(evals.at(-1)!.metrics.valLoss).toBeLessThan(0.6)
    // metrics are streamed and appended
    const lines = jsonl(join(runDir, 'metrics.jsonl'))
    expect(lines.filter((l) => l.type === 'step')).toHaveLength(150)
    expect(lines.filter((l) => l.type === 'eval')).toHaveLength(3)
    const m = steps.at(-1)!
    expect(m.layers).toHaveLength(2)
    expect(m.layers[0].share.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6)
    expect(m.tokensPerSec).toBeGreaterThan(0)
    expect(m.lr).toBeLessThan(1e-3) // cosine decayed
    expect(readRunRecord(runDir)).toMatchObject({ status: 'completed', step: 150 })
  }, 300_000)

  it('a cancel while the model loads ends the run cancelled before any step, with nothing written', async () => {
    const base = baseModel()
    const ac = new AbortController()
    ac.abort()
    const before = tf.memory().numTensors
    const r = await run(base, { batchSize: 8, maxSteps: 4, evalEvery: 0 }, swapTask(16), { signal: ac.signal })
    expect(r.result).toMatchObject({ status: 'cancelled', step: 0, lastCheckpoint: null, message: `stopped while loading ${base}` })
    expect(r.steps).toEqual([])
    expect(readRunRecord(r.runDir)).toMatchObject({ status: 'cancelled', step: 0 })
    expect(existsSync(join(r.runDir, 'checkpoints'))).toBe(false)
    expect(r.events.filter((e) => e.type === 'run.status').map((e) => e.type === 'run.status' && e.status)).toEqual(['cancelled'])
    expect(tf.memory().numTensors).toBe(before)
  })

  it('resume after cancel reproduces the uninterrupted loss sequence, and cancel keeps a loadable checkpoint', async () => {
    const base = baseModel({ router: { type: 'noisy_topk' }, expertDropout: 0.1 })
    const data = swapTask(64, 3)
    const cfg: RunConfigInput = {
      optimizer: { lr: 5e-3 },
      batchSize: 8,
      maxSteps: 8,
      evalEvery: 4,
      checkpointEvery: 0,
      moe: { capacityFactorTrain: 1.5 },
    }
    const whole = await run(base, cfg, data)
    expect(whole.steps).toHaveLength(8)
    // Per layer: the tokens its capacity dropped, adding up to the step's dropped fraction's count.
    const dropped = whole.steps.map((m) => m.layers.reduce((a, l) => a + (l.droppedTokens ?? 0), 0))
    expect(dropped.every((d) => Number.isInteger(d) && d >= 0)).toBe(true)
    expect(dropped.some((d, i) => d > 0 === whole.steps[i].droppedFraction > 0)).toBe(true)

    const ac = new AbortController()
    const first = await run(base, cfg, data, {
      signal: ac.signal,
      onEvent: (e) => e.type === 'run.step' && e.metrics.step === 3 && ac.abort(),
    })
    expect(first.result.status).toBe('cancelled')
    expect(first.result.step).toBe(3)
    expect(existsSync(join(first.runDir, 'checkpoints/step-3/model.safetensors'))).toBe(true)
    const cancelled = loadModel(join(first.runDir, 'checkpoints/step-3'))
    expect(cancelled.config.router.capacityFactorTrain).toBe(1.5)
    cancelled.dispose()

    const second = await run(base, cfg, data, { runDir: first.runDir, resume: true })
    expect(second.result.status).toBe('completed')
    const resumed = [...first.steps, ...second.steps].map((s) => s.loss)
    expect(resumed).toEqual(whole.steps.map((s) => s.loss))
    // the run's elapsed time goes on from where the first session left it, not from 0
    expect(second.steps[0].elapsedSec).toBeGreaterThan(first.steps[2].elapsedSec)
  }, 120_000)

  it('a NaN loss stops the run with the reason and keeps the last good checkpoint', async () => {
    const base = baseModel()
    const { result, runDir } = await run(
      base,
      {
        optimizer: { lr: 1e30 },
        gradClip: 0,
        schedule: { type: 'constant' },
        batchSize: 8,
        maxSteps: 10,
        checkpointEvery: 1,
        evalEvery: 0,
      },
      swapTask(32),
    )
    expect(result.status).toBe('failed')
    expect(result.message).toMatch(
      /the loss became (NaN|Infinity|-Infinity|finite but) .*at step \d+; the last good checkpoint is .*step-\d+/,
    )
    // the step that failed is the one after the last good checkpoint; the advice fits the run
    const [, failedAt, goodAt] = /at step (\d+); the last good checkpoint is .*step-(\d+)/.exec(result.message ?? '')!
    expect(Number(failedAt)).toBe(Number(goodAt) + 1)
    expect(result.message).toMatch(/\. Lower the learning rate or turn on gradient clipping \(gradClip 1\)\.$/)
    const clipped = await run(
      base,
      {
        optimizer: { lr: 1e30 },
        gradClip: 1,
        schedule: { type: 'constant' },
        batchSize: 8,
        maxSteps: 10,
        checkpointEvery: 0,
        evalEvery: 0,
      },
      swapTask(32),
    )
    expect(clipped.result.status).toBe('failed')
    expect(clipped.result.message).toMatch(
      /; no checkpoint was written yet\. Lower the learning rate \(now 1e\+30\); gradient clipping at 1 is already on\.$/,
    )
    const rec = readRunRecord(runDir)
    expect(rec.status).toBe('failed')
    const good = loadModel(rec.lastCheckpoint!)
    const loss = tf.tidy(() => good.forward([[1, 5, 6, 2]]).logits.dataSync())
    expect(Array.from(loss).every(Number.isFinite)).toBe(true)
    good.dispose()
  }, 60_000)

  it('LoRA: base weights stay bit-identical, merged and adapter forwards agree', async () => {
    const base = baseModel()
    const { result, runDir } = await run(
      base,
      {
        method: 'lora',
        lora: { rank: 4, alpha: 8, targets: ['attention', 'experts', 'router'] },
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 5,
        evalEvery: 0,
      },
      swapTask(40),
    )
    expect(result.status).toBe('completed')
    const ckpt = join(runDir, 'checkpoints/step-5')
    const adapterCfg = JSON.parse(readFileSync(join(ckpt, 'adapter_config.json'), 'utf8'))
    expect(adapterCfg).toMatchObject({ peft_type: 'LORA', r: 4, lora_alpha: 8 })
    const model = loadModel(base)
    const before = new Map([...model.params].map(([n, v]) => [n, bits(v)]))
    const lora = new LoraAdapters(
      model,
      validateRunConfig({ method: 'lora', lora: { rank: 4, alpha: 8, targets: ['attention', 'experts', 'router'] } }).lora,
      0,
    )
    lora.load(loadSafetensors(join(ckpt, 'adapter_model.safetensors')).tensors as never)
    // the adapters learned something
    expect(Math.max(...Array.from(lora.B.values().next().value!.dataSync(), Math.abs))).toBeGreaterThan(0)
    const ids = [[1, 7, 9, 2, 9]]
    const adapted = tf.tidy(() => model.forward(ids, { weights: lora.wrap(model.weightSource, { training: false }) }).logits.dataSync())
    const merged = new MoeModel(model.config, await lora.mergedWeights())
    const mergedLogits = tf.tidy(() => merged.forward(ids).logits.dataSync())
    let diff = 0
    for (let i = 0; i < adapted.length; i++) diff = Math.max(diff, Math.abs(adapted[i] - mergedLogits[i]))
    expect(diff).toBeLessThan(1e-4)
    for (const [n, v] of model.params) expect(bits(v), n).toEqual(before.get(n))
    lora.dispose()
    merged.dispose()
    model.dispose()
  }, 60_000)

  it('Shazeer importance and load losses from the run config join the loss and are logged with the other auxiliary losses', async () => {
    const base = baseModel({ router: { type: 'noisy_topk' } })
    const { runDir, steps } = await run(
      base,
      { moe: { importanceLossCoef: 0.5, loadLossCoef: 0.25 }, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 2, evalEvery: 0 },
      swapTask(16),
    )
    for (const m of steps) {
      expect(m.importance).toBeGreaterThan(0)
      expect(m.load).toBeGreaterThan(0)
      // tinyConfig's aux coefficient 0.01, no z-loss
      expect(m.loss).toBeCloseTo(m.ce + 0.01 * m.aux + 0.5 * m.importance! + 0.25 * m.load!, 5)
    }
    const lines = jsonl(join(runDir, 'metrics.jsonl'))
    expect(lines.find((l) => l.type === 'step')).toMatchObject({ importance: steps[0].importance, load: steps[0].load })
    const ev = lines.find((l) => l.type === 'eval')
    expect(ev.valImportance).toBeGreaterThan(0)
    expect(ev.valLoad).toBeGreaterThanOrEqual(0)
  }, 60_000)

  it('freeze policies keep frozen tensors bit-identical; ESFT trains only the chosen experts', async () => {
    const base = baseModel()
    const original = loadModel(base)
    const orig = new Map([...original.params].map(([n, v]) => [n, bits(v)]))
    original.dispose()
    const changed = async (cfg: RunConfigInput): Promise<{ names: Set<string>; log: string; runDir: string }> => {
      const { runDir } = await run(base, { ...cfg, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 3, evalEvery: 0 }, swapTask(32))
      const m = loadModel(join(runDir, 'checkpoints/step-3'))
      const names = new Set([...m.params].filter(([n, v]) => bits(v).some((x, i) => x !== orig.get(n)![i])).map(([n]) => n))
      m.dispose()
      return { names, log: readFileSync(join(runDir, 'log'), 'utf8'), runDir }
    }
    const frozen = await changed({ method: 'freeze', freeze: { router: true, attention: true, experts: { '0': [1, 2] } } })
    for (const n of frozen.names) {
      expect(n).not.toMatch(/\.gate\.weight$|self_attn/)
      expect(n).not.toMatch(/layers\.0\.block_sparse_moe\.experts\.[12]\./)
    }
    expect(frozen.names.has('model.layers.0.block_sparse_moe.experts.0.w1.weight')).toBe(true)
    expect(frozen.names.has('lm_head.weight')).toBe(true)

    const esft = await changed({ method: 'full', esft: { enabled: true, score: 'token_share', threshold: 0.5 } })
    const sel = readRunRecord(esft.runDir).esft!
    expect(Object.keys(sel)).toEqual(['0', '1'])
    const allowed = new Set(
      Object.entries(sel).flatMap(([l, es]) =>
        es.flatMap((e) => ['w1', 'w2', 'w3'].map((w) => `model.layers.${l}.block_sparse_moe.experts.${e}.${w}.weight`)),
      ),
    )
    expect(esft.names.size).toBeGreaterThan(0)
    for (const n of esft.names) expect(allowed.has(n), n).toBe(true)
    for (const es of Object.values(sel)) expect(es.length).toBeLessThan(4)
    expect(esft.log).toMatch(/esft: scored experts by token_share/)
  }, 120_000)

  it('freeze tuning (last N layers, chosen parts): exactly the chosen weights change, the rest stay bit-identical, as counted before the start', async () => {
    const base = baseModel({ numLayers: 3 })
    const original = loadModel(base)
    const orig = new Map([...original.params].map(([n, v]) => [n, bits(v)]))
    const config = original.config
    original.dispose()
    const { trainingPlan } = await import('../../../src/main/train/trainer')
    const cases: [NonNullable<RunConfigInput['freeze']>, (name: string) => boolean][] = [
      [{ trainableLayers: 1 }, (n) => n.startsWith('model.layers.2.')],
      [{ trainableParts: ['experts'] }, (n) => n.includes('.experts.')],
      [{ trainableLayers: -1, trainableParts: ['attention'] }, (n) => n.startsWith('model.layers.0.self_attn.')],
    ]
    for (const [freeze, chosen] of cases) {
      const cfg: RunConfigInput = { method: 'freeze', freeze, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 3, evalEvery: 0 }
      const { runDir } = await run(base, cfg, swapTask(32))
      const m = loadModel(join(runDir, 'checkpoints/step-3'))
      const changed = [...m.params].filter(([n, v]) => bits(v).some((x, i) => x !== orig.get(n)![i])).map(([n]) => n)
      const changedValues = changed.reduce((a, n) => a + m.params.get(n)!.size, 0)
      m.dispose()
      const expected = [...orig.keys()].filter(chosen)
      expect(changed.sort(), JSON.stringify(freeze)).toEqual(expected.sort())
      // the count shown before the start is what trained, and what the run says it trains
      const count = trainingPlan(config, validateRunConfig(cfg)).trainableParams
      expect(changedValues).toBe(count)
      expect(readFileSync(join(runDir, 'log'), 'utf8')).toContain(`(${count} values)`)
    }
  }, 120_000)
})

describe('run knobs', () => {
  it('null keeps the model value, "dropless" removes a capacity, numbers set it', async () => {
    const { runKnobs } = await import('../../../src/main/train/trainer')
    const { withKnobs } = await import('../../../src/main/engine/model')
    const c = tinyConfig({ router: { capacityFactorTrain: 1.5, capacityFactorEval: 2 } })
    const keep = withKnobs(c, runKnobs(validateRunConfig({})))
    expect(keep.router).toMatchObject({ capacityFactorTrain: 1.5, capacityFactorEval: 2 })
    const set = withKnobs(
      c,
      runKnobs(validateRunConfig({ moe: { capacityFactorTrain: 'dropless', capacityFactorEval: 1, tokenDrop: 0.1 } })),
    )
    expect(set.router).toMatchObject({ capacityFactorTrain: null, capacityFactorEval: 1 })
    expect(set.tokenDrop).toBe(0.1)
    expect(() => validateRunConfig({ moe: { capacityFactorTrain: 'none' } })).toThrow(/moe\.capacityFactorTrain/)
  })

  it('every knob reaches the model config', async () => {
    const { runKnobs } = await import('../../../src/main/train/trainer')
    const { withKnobs } = await import('../../../src/main/engine/model')
    const moe = {
      topK: 3,
      capacityFactorTrain: 1.5,
      capacityFactorEval: 2.5,
      auxLossCoef: 0.03,
      zLossCoef: 0.004,
      importanceLossCoef: 0.2,
      loadLossCoef: 0.3,
      routerJitter: 0.05,
      expertDropout: 0.15,
      tokenDrop: 0.25,
      attentionDropout: 0.35,
      hiddenDropout: 0.45,
    }
    const c = withKnobs(tinyConfig({}), runKnobs(validateRunConfig({ moe })))
    expect(c).toMatchObject({
      topK: 3,
      routerAuxLossCoef: 0.03,
      routerZLossCoef: 0.004,
      routerImportanceLossCoef: 0.2,
      routerLoadLossCoef: 0.3,
      expertDropout: 0.15,
      tokenDrop: 0.25,
      attentionDropout: 0.35,
      hiddenDropout: 0.45,
      router: { capacityFactorTrain: 1.5, capacityFactorEval: 2.5, jitter: 0.05 },
    })
    // The run config's moe block has no knob left unmapped.
    expect(Object.keys(validateRunConfig({}).moe).sort()).toEqual(Object.keys(moe).sort())
  })
})

describe('expert alerts (hand-computed)', () => {
  it('dead below deadShare and collapsing above collapseShare for `steps` steps in a row, again only once recovered for `steps`', async () => {
    const { expertAlerts } = await import('../../../src/main/train/trainer')
    const cfg = validateRunConfig({ alerts: { deadShare: 0.1, collapseShare: 0.6, steps: 3 } })
    const state: Parameters<typeof expertAlerts>[0] = { step: 0, streaks: {} }
    const step = (share: number[], layer = 1, assignments?: number) => {
      state.step++
      return expertAlerts(state, [{ layer, share, entropy: 0 }], cfg, assignments === undefined ? undefined : [assignments]).map(
        (a) => `${a.step} ${a.kind} ${a.layer}:${a.expert}`,
      )
    }
    const skewed = [0.05, 0.7, 0.25]
    const even = [0.3, 0.4, 0.3]
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual(['3 dead 1:0', '3 collapse 1:1'])
    expect(step(skewed)).toEqual([]) // the same streak is not reported again
    // the bounds are strict: exactly 0.1 is not dead, exactly 0.6 not collapsing; the streaks end,
    // but a step back in the band is no recovery: a new streak is not reported
    expect(step([0.1, 0.6, 0.3])).toEqual([])
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual([])
    expect(state.streaks['1:0']).toEqual({ low: 3, high: 0, lowCleared: 0 })
    // `steps` steps in the band clear the alerts; a step too short to judge (under 1 / deadShare =
    // 10 assignments) clears nothing of a dead one
    expect(step(even)).toEqual([])
    expect(step(even, 1, 9)).toEqual([])
    expect(step(even)).toEqual([])
    expect(state.streaks['1:0']).toEqual({ low: 0, high: 0, lowCleared: 2 })
    expect(state.streaks['1:1']).toEqual({ low: 0, high: 0 })
    expect(step(even)).toEqual([])
    expect(state.streaks['1:0']).toEqual({ low: 0, high: 0 })
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual([])
    expect(step(skewed)).toEqual(['15 dead 1:0', '15 collapse 1:1'])
    // another layer keeps its own streaks
    expect(step([0.5, 0.5, 0], 2)).toEqual([])
    expect(state.streaks['2:2']).toEqual({ low: 1, high: 0 })
    // A checkpoint written before these records held [low, high] pairs: a run resumed from one goes on counting.
    const resumed: Parameters<typeof expertAlerts>[0] = { step: 20, streaks: { '0:0': [2, 0] } }
    expect(expertAlerts(resumed, [{ layer: 0, share: [0, 1], entropy: 0 }], cfg).map((a) => `${a.kind} ${a.expert}`)).toEqual(['dead 0'])
    // (at step 2 with no streak before: in the band at step 1)
    const alert = expertAlerts({ step: 2, streaks: {} }, [{ layer: 0, share: [1, 0], entropy: 0 }], {
      alerts: { deadShare: 0.01, collapseShare: 0.9, steps: 1 },
    })
    expect(alert.map((a) => a.message)).toEqual([
      'layer 0 expert 0 took over 90% of tokens for 1 steps: raise the load-balancing loss coefficient (moe.auxLossCoef), or lower the learning rate if it came on suddenly',
      'layer 0 expert 1 took under 1.0% of tokens for 1 steps: raise the load-balancing loss coefficient (moe.auxLossCoef) or the router jitter (moe.routerJitter) so the router tries it again',
    ])
    // Under 1 / deadShare assignments a step (here 99 < 100) judges no expert dead: it would mean
    // no token at all, which a short batch gives by chance; collapse is still judged.
    const few = (n: number) =>
      expertAlerts(
        { step: 1, streaks: {} },
        [{ layer: 0, share: [1, 0], entropy: 0 }],
        { alerts: { deadShare: 0.01, collapseShare: 0.9, steps: 1 } },
        [n],
      )
    expect(few(99).map((a) => a.kind)).toEqual(['collapse'])
    expect(few(100).map((a) => a.kind)).toEqual(['collapse', 'dead'])
    // Idle from the run's first step (the streak is as long as the run): the data goes to other
    // experts, which training did not cause; an expert that took its share first and then lost it
    // gets the usual advice.
    const run: Parameters<typeof expertAlerts>[0] = { step: 0, streaks: {} }
    const cfg2 = { alerts: { deadShare: 0.1, collapseShare: 0.9, steps: 2 } }
    const next = (share: number[]) => {
      run.step++
      return expertAlerts(run, [{ layer: 0, share, entropy: 0 }], cfg2).map((a) => a.message)
    }
    expect(next([0.05, 0.5, 0.45])).toEqual([])
    expect(next([0.05, 0.05, 0.9])).toEqual([
      "layer 0 expert 0 took under 10.0% of tokens for 2 steps, from the run's first: raise the load-balancing loss coefficient (moe.auxLossCoef) only if every expert should learn this data (the model sends it to other experts, as it does a narrow dataset's)",
    ])
    expect(next([0.05, 0.05, 0.9])).toEqual([
      'layer 0 expert 1 took under 10.0% of tokens for 2 steps: raise the load-balancing loss coefficient (moe.auxLossCoef) or the router jitter (moe.routerJitter) so the router tries it again',
    ])
  })

  it("are about the run's routers: none where no router trains (LoRA without the router, a frozen router)", async () => {
    await initBackend('wasm')
    const base = baseModel()
    const data = swapTask(16)
    // Every expert of every layer is "dead" (share under 100%) from the first step.
    const alerting = {
      maxSteps: 2,
      batchSize: 8,
      evalEvery: 0,
      finalEval: { rows: 0 },
      alerts: { deadShare: 1, collapseShare: 1, steps: 1 },
    }
    const alerts = async (cfg: RunConfigInput) =>
      (await run(base, { ...alerting, ...cfg }, data)).events.filter((e) => e.type === 'run.alert').length
    expect(await alerts({ method: 'full' })).toBeGreaterThan(0)
    expect(await alerts({ method: 'lora', lora: { rank: 2, targets: ['router'] } })).toBeGreaterThan(0)
    expect(await alerts({ method: 'lora', lora: { targets: ['attention', 'experts'] } })).toBe(0)
    expect(await alerts({ method: 'full', freeze: { router: true } })).toBe(0)
  })
})

describe('export', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('LoRA export merges, verifies and writes an HF folder with tokenizer files and a card', async () => {
    const base = baseModel()
    const { writeFileSync } = await import('node:fs')
    writeFileSync(join(base, 'tokenizer.json'), '{"version":"1.0"}')
    const { runDir } = await run(
      base,
      {
        method: 'lora',
        lora: { rank: 2, targets: ['experts'] },
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 3,
        evalEvery: 0,
        moe: { topK: 3, capacityFactorEval: 1.25, zLossCoef: 0.002 },
      },
      swapTask(24),
    )
    const { exportRun } = await import('../../../src/main/train/export')
    const out = join(tmp('moe-export-'), 'merged')
    const seen: StageProgress[] = []
    const r = await exportRun(runDir, out, {}, { onProgress: (p) => seen.push(p) })
    expect(r.mergedLora).toBe(true)
    // Two stages in order; writing counts the checkpoint's bytes up to all of them; the last report says done.
    expect([...new Set(seen.map((p) => `${p.stage}/${p.stages} ${p.label}`))]).toEqual([
      '1/2 Merging the LoRA adapters into the base weights',
      '2/2 Checking the merged model against the base model with its adapters',
    ])
    const writing = seen.filter((p) => p.stage === 1)
    expect(writing.every((p) => p.unit === 'bytes' && p.total === writing[0].total)).toBe(true)
    expect(writing.map((p) => p.done)).toEqual([...writing.map((p) => p.done)].sort((a, b) => a - b))
    expect(writing.at(-1)!.done).toBe(writing[0].total)
    expect(writing[0].total).toBeGreaterThan(0)
    expect(seen.at(-1)).toMatchObject({ stage: 2, done: 2, total: 2 })
    expect(r.mergeError).toBeLessThan(1e-4)
    for (const f of ['config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'README.md'])
      expect(existsSync(join(out, f)), f).toBe(true)
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toMatch(/LoRA rank 2 merged/)
    // the export is a plain model whose logits equal base + adapters
    const m = loadModel(out)
    // The run's MoE settings travel with a LoRA export as with a full one.
    expect(m.config.router.capacityFactorEval).toBe(1.25)
    expect(m.config.routerZLossCoef).toBe(0.002)
    // The top-k it trained with, as Hugging Face reads it (the base routes to 2 of its 4 experts).
    expect(m.config.topK).toBe(3)
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_experts_per_tok).toBe(3)
    const baseM = loadModel(base)
    expect(baseM.config.topK).toBe(2)
    const { runKnobs } = await import('../../../src/main/train/trainer')
    baseM.setKnobs(runKnobs(validateRunConfig({ moe: { topK: 3, capacityFactorEval: 1.25, zLossCoef: 0.002 } })))
    const lora = new LoraAdapters(baseM, validateRunConfig({ method: 'lora', lora: { rank: 2, targets: ['experts'] } }).lora, 0)
    lora.load(loadSafetensors(join(runDir, 'checkpoints/step-3/adapter_model.safetensors')).tensors as never)
    const ids = [[1, 4, 5, 2]]
    const a = tf.tidy(() => m.forward(ids).logits.dataSync())
    const b = tf.tidy(() => baseM.forward(ids, { weights: lora.wrap(baseM.weightSource, { training: false }) }).logits.dataSync())
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThan(1e-4)
    await expect(exportRun(runDir, out)).rejects.toThrow(/exists and is not empty/)
    const file = join(out, 'config.json') // a file named as the folder: said so, the file untouched
    const before = readFileSync(file, 'utf8')
    await expect(exportRun(runDir, file)).rejects.toThrow(`${file} is a file; choose a new folder to export to`)
    expect(readFileSync(file, 'utf8')).toBe(before)
    m.dispose()
    lora.dispose()
    baseM.dispose()
  }, 60_000)

  it('a cancelled export, while loading or after the merge, rejects with "cancelled" and leaves no folder and no tensors', async () => {
    const base = baseModel()
    const { runDir } = await run(
      base,
      { method: 'lora', lora: { rank: 2, targets: ['experts'] }, optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 2, evalEvery: 0 },
      swapTask(16),
    )
    const { exportRun } = await import('../../../src/main/train/export')
    for (const cancelAt of [1, 2]) {
      const parent = tmp('moe-export-cancel-')
      const controller = new AbortController()
      const before = tf.memory().numTensors
      const stages: number[] = []
      const attempt = exportRun(
        runDir,
        join(parent, 'out'),
        {},
        {
          signal: controller.signal,
          onProgress: (p) => {
            stages.push(p.stage)
            // Abort mid-write (after the first tensor) or as the check starts.
            if (p.stage === cancelAt && (cancelAt === 2 || p.done > 0)) controller.abort()
          },
        },
      )
      await expect(attempt).rejects.toMatchObject({ code: 'cancelled' })
      expect(readdirSync(parent), `cancelled at stage ${cancelAt}`).toEqual([])
      expect(Math.max(...stages)).toBe(cancelAt)
      expect(tf.memory().numTensors, `tensors after a cancel at stage ${cancelAt}`).toBe(before)
    }
  }, 60_000)
})

describe('early stopping', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('stops, completed, after `patience` evaluations in a row without beating the best by minDelta; the best checkpoint survives pruning', async () => {
    const { result, events, runDir, steps } = await run(
      baseModel(),
      {
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 20,
        evalEvery: 2,
        checkpointEvery: 2,
        keepCheckpoints: 1,
        // nothing improves by 100: the first evaluation sets the best, the next two do not beat it
        earlyStopping: { patience: 2, minDelta: 100 },
      },
      swapTask(16),
    )
    const evals = events.filter((e): e is Extract<TrainEvent, { type: 'run.eval' }> => e.type === 'run.eval')
    expect(evals.map((e) => e.metrics.step)).toEqual([2, 4, 6])
    expect(steps).toHaveLength(6)
    expect(result).toMatchObject({ status: 'completed', step: 6, bestValLoss: evals[0].metrics.valLoss })
    expect(result.message).toBe(
      `early stopping: no validation improvement in 2 evaluations (best ${evals[0].metrics.valLoss.toFixed(4)} at step-2)`,
    )
    // keepCheckpoints 1 keeps the last one, and the best one is never pruned
    expect(readdirSync(join(runDir, 'checkpoints')).sort()).toEqual(['step-2', 'step-6'])
    expect(readRunRecord(runDir)).toMatchObject({ status: 'completed', step: 6 })
  })

  it('a new best validation loss between checkpoint steps is checkpointed, so the best step names a folder', async () => {
    const { result, runDir } = await run(
      baseModel(),
      {
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 4,
        evalEvery: 2,
        checkpointEvery: 3,
        keepCheckpoints: 1,
        // the first evaluation (step 2, not a checkpoint step) is the best; nothing beats it by 100
        earlyStopping: { patience: 0, minDelta: 100 },
      },
      swapTask(16),
    )
    expect(result).toMatchObject({ status: 'completed', step: 4 })
    // step-3 (checkpointEvery) was pruned by step-4 (keep 1); step-2, the best, stays
    expect(readdirSync(join(runDir, 'checkpoints')).sort()).toEqual(['step-2', 'step-4'])
  })

  it('patience 0 never stops early; an improvement by more than minDelta resets the count', async () => {
    const { result, events } = await run(
      baseModel(),
      {
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 6,
        evalEvery: 2,
        checkpointEvery: 0,
        earlyStopping: { patience: 0, minDelta: 100 },
      },
      swapTask(16),
    )
    expect(result).toMatchObject({ status: 'completed', step: 6 })
    expect(result.message ?? '').not.toMatch(/early stopping/)
    const evals = events.filter((e): e is Extract<TrainEvent, { type: 'run.eval' }> => e.type === 'run.eval')
    expect(evals).toHaveLength(3)
    // learning lowers the validation loss at every evaluation: with minDelta 0 and patience 1 the run goes to the end
    const learning = await run(
      baseModel(),
      { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 6, evalEvery: 2, checkpointEvery: 0, earlyStopping: { patience: 1, minDelta: 0 } },
      swapTask(16),
    )
    const losses = learning.events
      .filter((e): e is Extract<TrainEvent, { type: 'run.eval' }> => e.type === 'run.eval')
      .map((e) => e.metrics.valLoss)
    expect(losses).toHaveLength(3)
    expect(losses[1]).toBeLessThan(losses[0])
    expect(losses[2]).toBeLessThan(losses[1])
    expect(learning.result).toMatchObject({ status: 'completed', step: 6, bestValLoss: losses[2] })
  })
})

describe('gradient accumulation', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('two micro-batches of 4 make the same steps as one batch of 8 (equal-length rows), and count the tokens of both', async () => {
    // No auxiliary losses: each is a nonlinear function of its batch's routing, so two halves differ from the whole.
    const cfg = { optimizer: { lr: 1e-2 }, maxSteps: 3, evalEvery: 0, checkpointEvery: 0, moe: { auxLossCoef: 0, zLossCoef: 0 } }
    const data = swapTask(24)
    const whole = await run(baseModel(), { ...cfg, batchSize: 8 }, data)
    const micro = await run(baseModel(), { ...cfg, batchSize: 4, gradAccumulation: 2 }, data)
    expect(micro.steps).toHaveLength(3)
    for (let i = 0; i < 3; i++) {
      expect(micro.steps[i].loss).toBeCloseTo(whole.steps[i].loss, 5)
      expect(micro.steps[i].ce).toBeCloseTo(whole.steps[i].ce, 5)
      expect(micro.steps[i].gradNorm).toBeCloseTo(whole.steps[i].gradNorm, 4)
      expect(micro.steps[i].lr).toBe(whole.steps[i].lr)
      expect(micro.steps[i].tokens).toBe(whole.steps[i].tokens)
    }
    // a different split of the same rows is a different step: accumulation is not a no-op
    const single = await run(baseModel(), { ...cfg, batchSize: 4 }, data)
    expect(single.steps[0].loss).not.toBeCloseTo(whole.steps[0].loss, 5)
  })
})

describe('step and evaluation metrics', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('each step logs its epoch, tokens, speed, ETA and per-layer routing; each evaluation the validation loss of the weights at that step', async () => {
    const data = swapTask(16)
    const { steps, events, runDir } = await run(
      baseModel(),
      { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 4, evalEvery: 2, checkpointEvery: 2, keepCheckpoints: 5 },
      data,
    )
    expect(steps.map((m) => m.step)).toEqual([1, 2, 3, 4])
    expect(steps.every((m) => m.totalSteps === 4)).toBe(true)
    // 16 rows in batches of 8: half an epoch per step
    expect(steps.map((m) => m.epoch)).toEqual([0.5, 1, 1.5, 2])
    for (const m of steps) {
      // every swap-task row has 7 tokens, 3 of them answer targets after the shift
      expect(m.tokens).toBe(8 * 7)
      expect(m.tokensPerSec).toBeGreaterThan(0)
      expect(m.elapsedSec).toBeGreaterThan(0)
      expect(m.loss).toBeGreaterThanOrEqual(m.ce)
      expect(m.layers.map((l) => l.layer)).toEqual([0, 1])
      for (const l of m.layers) {
        expect(l.share).toHaveLength(4)
        expect(l.share.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6)
        expect(l.entropy).toBeGreaterThan(0)
        expect(l.entropy).toBeLessThanOrEqual(Math.log(4) + 1e-6)
      }
    }
    // ETA: the time per step times the steps left, the first step (which builds kernels and
    // buffers) left out of the pace once there is another; nothing left at the end
    expect(steps[0].etaSec).toBeCloseTo(steps[0].elapsedSec * 3, 6)
    for (const m of steps.slice(1, -1))
      expect(m.etaSec).toBeCloseTo(((m.elapsedSec - steps[0].elapsedSec) / (m.step - 1)) * (4 - m.step), 6)
    expect(steps.at(-1)!.etaSec).toBe(0)
    expect(steps[1].elapsedSec).toBeGreaterThan(steps[0].elapsedSec)

    // metrics.jsonl: a line per step (without the layers) and per evaluation; routing.jsonl: the layers
    const lines = jsonl(join(runDir, 'metrics.jsonl'))
    const stepLines = lines.filter((l) => l.type === 'step')
    expect(stepLines.map((l) => l.step)).toEqual([1, 2, 3, 4])
    expect(stepLines[0]).not.toHaveProperty('layers')
    expect(stepLines[0]).toMatchObject({ loss: steps[0].loss, tokens: steps[0].tokens, epoch: 0.5 })
    const routing = jsonl(join(runDir, 'routing.jsonl'))
    expect(routing.map((r) => r.step)).toEqual([1, 2, 3, 4])
    expect(routing[2].layers).toEqual(steps[2].layers)

    const evals = events.filter((e): e is Extract<TrainEvent, { type: 'run.eval' }> => e.type === 'run.eval').map((e) => e.metrics)
    expect(evals.map((e) => e.step)).toEqual([2, 4])
    expect(lines.filter((l) => l.type === 'eval').map((l) => l.step)).toEqual([2, 4])
    // the validation split (8 rows, one batch) through the step-2 weights, computed here
    const { evalBatches } = await import('../../../src/main/train/batches')
    const { objectiveValues } = await import('../../../src/main/engine/objective')
    const [batch] = evalBatches(data.slice(0, 8), 8, 0)
    const model = loadModel(join(runDir, 'checkpoints/step-2'))
    const want = await objectiveValues(model, batch, { training: false })
    model.dispose()
    expect(evals[0].valTokens).toBe(8 * 3)
    expect(evals[0].valLoss).toBeCloseTo(want.ce, 5)
    expect(evals[0].valAux).toBeCloseTo(want.aux, 5)
    expect(evals[0].valZ).toBeCloseTo(want.z, 5)
    expect(evals[0].valImportance).toBeCloseTo(want.importance, 5)
    expect(evals[0].valDroppedFraction).toBe(0)
    expect(evals[1].valLoss).not.toBeCloseTo(evals[0].valLoss, 6)
  })
})

describe('a run from start to end', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  const statuses = (events: TrainEvent[]) =>
    events.flatMap((e) => (e.type === 'run.status' ? [`${e.status}${e.message ? `: ${e.message}` : ''}`] : []))

  it('evaluates and checkpoints on schedule and at the last step, and says so in its events, record and log', async () => {
    const { result, events, runDir } = await run(
      baseModel(),
      { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 5, evalEvery: 2, checkpointEvery: 2, keepCheckpoints: 10 },
      swapTask(16),
    )
    expect(result).toMatchObject({
      status: 'completed',
      step: 5,
      message: 'completed 5 steps',
      lastCheckpoint: join(runDir, 'checkpoints/step-5'),
    })
    const evals = events.flatMap((e) => (e.type === 'run.eval' ? [e.metrics.step] : []))
    expect(evals).toEqual([2, 4, 5])
    const ckpts = events.flatMap((e) => (e.type === 'run.checkpoint' ? [e.step] : []))
    expect(ckpts).toEqual([2, 4, 5])
    expect(readdirSync(join(runDir, 'checkpoints')).sort()).toEqual(['step-2', 'step-4', 'step-5'])
    expect(statuses(events)).toEqual(['running', 'completed: completed 5 steps'])
    expect(readRunRecord(runDir)).toMatchObject({ status: 'completed', step: 5, totalSteps: 5, message: 'completed 5 steps' })
    // every log event is in the run's log file, in order
    const logged = events.flatMap((e) => (e.type === 'run.log' ? [e.line] : []))
    expect(logged[0]).toMatch(
      /^starting: 5 steps, 16 training rows, 8 validation rows, \d+ trainable tensors \(\d+ values\), backend wasm$/,
    )
    expect(logged.at(-1)).toBe('completed 5 steps')
    const file = readFileSync(join(runDir, 'log'), 'utf8').trim().split('\n')
    expect(file.map((l) => l.replace(/^\S+ /, ''))).toEqual(logged)
  })

  it('an interrupt (the app quitting) ends the run "interrupted" with a checkpoint of the step it reached', async () => {
    const ac = new AbortController()
    const { result, events, runDir } = await run(
      baseModel(),
      { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 6, evalEvery: 0, checkpointEvery: 0 },
      swapTask(16),
      {
        signal: ac.signal,
        onEvent: (e) => {
          if (e.type === 'run.step' && e.metrics.step === 2) ac.abort(INTERRUPT)
        },
      },
    )
    expect(result).toMatchObject({
      status: 'interrupted',
      step: 2,
      message: 'interrupted at step 2',
      lastCheckpoint: join(runDir, 'checkpoints/step-2'),
    })
    expect(statuses(events).at(-1)).toBe('interrupted: interrupted at step 2')
    expect(readRunRecord(runDir)).toMatchObject({ status: 'interrupted', step: 2 })
    expect(readdirSync(join(runDir, 'checkpoints'))).toEqual(['step-2'])
  })

  it('a stop right after a checkpoint keeps that checkpoint instead of writing the same step again', async () => {
    // Rewriting it would first remove the complete folder: a crash then would leave none.
    const ac = new AbortController()
    const { result, events, runDir } = await run(
      baseModel(),
      { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 6, evalEvery: 0, checkpointEvery: 2 },
      swapTask(16),
      { signal: ac.signal, onEvent: (e) => e.type === 'run.checkpoint' && e.step === 2 && ac.abort(INTERRUPT) },
    )
    expect(result).toMatchObject({ status: 'interrupted', step: 2, lastCheckpoint: join(runDir, 'checkpoints/step-2') })
    expect(events.filter((e) => e.type === 'run.checkpoint').map((e) => e.type === 'run.checkpoint' && e.step)).toEqual([2])
    expect(existsSync(join(runDir, 'checkpoints/step-2/trainer_state.json'))).toBe(true)
  })

  it('a model that cannot load fails the run with the reason, in its record and events', async () => {
    const missing = join(tmp('moe-nobase-'), 'nothing-here')
    const runDir = tmp()
    const events: TrainEvent[] = []
    const err = await run(missing, { batchSize: 8, maxSteps: 2, evalEvery: 0 }, swapTask(8), {
      runDir,
      onEvent: (e) => events.push(e),
    }).catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    const message = (err as Error).message
    expect(message).toMatch(/nothing-here/)
    expect(statuses(events)).toEqual([`failed: ${message}`])
    expect(readRunRecord(runDir)).toMatchObject({ status: 'failed', message, step: 0 })
    expect(readFileSync(join(runDir, 'log'), 'utf8')).toContain(message)
  })

  it('resume: without a checkpoint it says so and starts from the base model; with another config it is refused', async () => {
    const base = baseModel()
    const cfg = { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 2, evalEvery: 0, checkpointEvery: 1 }
    const fresh = await run(base, cfg, swapTask(16), { resume: true })
    expect(fresh.result.status).toBe('completed')
    expect(fresh.events.find((e) => e.type === 'run.log')).toMatchObject({
      line: 'resume: no checkpoint yet, starting from the base model',
    })
    const first = fresh.events.find((e) => e.type === 'run.status')
    expect(first).toMatchObject({ status: 'running', step: 0 })
    expect(first).toHaveProperty('message', undefined)
    await expect(
      run(base, { ...cfg, maxSteps: 4, optimizer: { lr: 2e-2 } }, swapTask(16), { runDir: fresh.runDir, resume: true }),
    ).rejects.toThrow(`resume: the run config differs from the one ${fresh.runDir} was started with; start a new run to change it`)
  })

  it('plans LoRA runs by their adapter values: rank × (out + in) for every targeted matrix', () => {
    const c = tinyConfig()
    const cfg = validateRunConfig({ method: 'lora', lora: { rank: 4, targets: ['attention'] }, batchSize: 3, data: { maxLength: 64 } })
    // per layer q (16 × 16), k and v (8 × 16), o (16 × 16); 2 layers
    const perLayer = 4 * (16 + 16) + 4 * (8 + 16) * 2 + 4 * (16 + 16)
    expect(trainingPlan(c, cfg)).toEqual({ method: 'lora', trainableParams: 2 * perLayer, batch: 3, seqLength: 64 })
    const full = trainingPlan(c, validateRunConfig({ method: 'full' }))
    expect(full.trainableParams).toBeGreaterThan(2 * perLayer)
  })
})

describe('gradient clipping', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it("scales the step's gradient to norm gradClip when it is larger, and leaves it alone when not", async () => {
    const cfg = { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 1, evalEvery: 0, checkpointEvery: 1 }
    const data = swapTask(8)
    // AdamW's first moment after one step is (1 − β1) · g: its norm shows the gradient applied
    const momentNorm = (runDir: string): number => {
      const t = loadSafetensors(join(runDir, 'checkpoints/step-1/optimizer.safetensors')).tensors
      let sq = 0
      for (const [name, x] of t) if (name.startsWith('m.')) for (const v of x.data as Float32Array) sq += v * v
      return Math.sqrt(sq)
    }
    const free = await run(baseModel(), { ...cfg, gradClip: 0 }, data)
    expect(new RunFolder(free.runDir).read().message).toBe('completed 1 step') // not "1 steps"
    const norm = free.steps[0].gradNorm
    expect(norm).toBeGreaterThan(0.01)
    const clip = norm / 4
    const clipped = await run(baseModel(), { ...cfg, gradClip: clip }, data)
    // the reported norm is the one before clipping
    expect(clipped.steps[0].gradNorm).toBeCloseTo(norm, 4)
    expect(momentNorm(clipped.runDir) / momentNorm(free.runDir)).toBeCloseTo(1 / 4, 4)
    // a limit above the norm changes nothing
    const loose = await run(baseModel(), { ...cfg, gradClip: norm * 2 }, data)
    expect(momentNorm(loose.runDir)).toBeCloseTo(momentNorm(free.runDir), 6)
  })
})

describe('evaluation over several validation batches', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('weights the loss by target tokens, averages the auxiliary terms per batch, and counts dropped assignments', async () => {
    const data = swapTask(16)
    const cfg = { optimizer: { lr: 1e-2 }, batchSize: 3, maxSteps: 1, evalEvery: 1, checkpointEvery: 1, moe: { capacityFactorEval: 0.5 } }
    const { events, runDir } = await run(baseModel(), cfg, data)
    const ev = events.flatMap((e) => (e.type === 'run.eval' ? [e.metrics] : []))
    expect(ev).toHaveLength(1)
    // the 8 validation rows in batches of 3, 3 and 2, through the step-1 weights with the run's knobs
    const { evalBatches } = await import('../../../src/main/train/batches')
    const { objectiveValues } = await import('../../../src/main/engine/objective')
    const { runKnobs } = await import('../../../src/main/train/trainer')
    const batches = evalBatches(data.slice(0, 8), 3, 0)
    expect(batches.map((b) => b.inputIds.length)).toEqual([3, 3, 2])
    const model = loadModel(join(runDir, 'checkpoints/step-1'))
    model.setKnobs(runKnobs(validateRunConfig(cfg)))
    const parts: Awaited<ReturnType<typeof objectiveValues>>[] = []
    for (const b of batches) parts.push(await objectiveValues(model, b, { training: false }))
    model.dispose()
    const targets = parts.reduce((a, p) => a + p.targets, 0)
    expect(ev[0].valTokens).toBe(targets)
    expect(ev[0].valLoss).toBeCloseTo(parts.reduce((a, p) => a + p.ce * p.targets, 0) / targets, 5)
    const mean = (k: 'aux' | 'z' | 'importance' | 'load') => parts.reduce((a, p) => a + p[k], 0) / parts.length
    expect(ev[0].valAux).toBeCloseTo(mean('aux'), 5)
    expect(ev[0].valZ).toBeCloseTo(mean('z'), 5)
    expect(ev[0].valImportance).toBeCloseTo(mean('importance'), 5)
    expect(ev[0].valLoad).toBeCloseTo(mean('load'), 5)
    const dropped = parts.flatMap((p) => p.routing).reduce((a, r) => a + r.dropped, 0)
    const assignments = parts.flatMap((p) => p.routing).reduce((a, r) => a + r.tokens * 2, 0) // top-2
    expect(dropped).toBeGreaterThan(0) // capacity 0.5 at evaluation drops assignments
    expect(ev[0].valDroppedFraction).toBeCloseTo(dropped / assignments, 6)
  })
})

describe('more of a run', () => {
  beforeAll(async () => {
    await initBackend('wasm')
  })

  it('a LoRA run resumed after a cancel continues from its saved adapters: the losses of one uninterrupted run', async () => {
    const base = baseModel()
    const data = swapTask(32, 5)
    const cfg: RunConfigInput = {
      method: 'lora',
      lora: { rank: 2, targets: ['attention', 'experts'] },
      optimizer: { lr: 2e-2 },
      batchSize: 8,
      maxSteps: 5,
      evalEvery: 0,
      checkpointEvery: 0,
    }
    const whole = await run(base, cfg, data)
    const ac = new AbortController()
    const first = await run(base, cfg, data, {
      signal: ac.signal,
      onEvent: (e) => e.type === 'run.step' && e.metrics.step === 2 && ac.abort(),
    })
    expect(first.result).toMatchObject({ status: 'cancelled', step: 2, message: 'stopped at step 2' })
    // the adapter file is PEFT's: safetensors with the "pt" format tag
    const file = join(first.runDir, 'checkpoints/step-2/adapter_model.safetensors')
    expect(readHeader(file).metadata).toEqual({ format: 'pt' })
    const second = await run(base, cfg, data, { runDir: first.runDir, resume: true })
    expect(second.events.find((e) => e.type === 'run.status')).toMatchObject({ status: 'running', step: 2, message: 'resumed from step-2' })
    expect(second.events.find((e) => e.type === 'run.log' && e.line.startsWith('resuming at step 2 of '))).toBeTruthy()
    expect([...first.steps, ...second.steps].map((s) => s.loss)).toEqual(whole.steps.map((s) => s.loss))
  })

  it('dropout acts while training: the same run with hidden dropout has other losses, and the same again with the same seed', async () => {
    const base = baseModel()
    const data = swapTask(16)
    const cfg = { optimizer: { lr: 1e-2 }, batchSize: 8, maxSteps: 1, evalEvery: 0, checkpointEvery: 0 }
    const plain = await run(base, cfg, data)
    const dropped = await run(base, { ...cfg, moe: { hiddenDropout: 0.3 } }, data)
    const again = await run(base, { ...cfg, moe: { hiddenDropout: 0.3 } }, data)
    expect(dropped.steps[0].loss).not.toBeCloseTo(plain.steps[0].loss, 4)
    expect(again.steps[0].loss).toBe(dropped.steps[0].loss)
  })

  it('dead-expert alerts come from a run whose routers train, logged in metrics.jsonl', async () => {
    // every expert's share is under 100%: with deadShare 1 each is "dead" once the streak reaches 2 steps
    const { events, runDir } = await run(
      baseModel(),
      {
        optimizer: { lr: 1e-2 },
        batchSize: 8,
        maxSteps: 3,
        evalEvery: 0,
        checkpointEvery: 0,
        alerts: { deadShare: 1, collapseShare: 1, steps: 2 },
      },
      swapTask(16),
    )
    const alerts = events.flatMap((e) => (e.type === 'run.alert' ? [`${e.step} ${e.kind} ${e.layer}:${e.expert}`] : []))
    expect(alerts).toEqual([0, 1].flatMap((l) => [0, 1, 2, 3].map((e) => `2 dead ${l}:${e}`)))
    const logged = jsonl(join(runDir, 'metrics.jsonl')).filter((l) => l.type === 'alert')
    expect(logged.map((l) => `${l.step} ${l.kind} ${l.layer}:${l.expert}`)).toEqual(alerts)
  })
})
