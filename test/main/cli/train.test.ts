/** `moe-workbench train` and `export` as a user runs them, in-process. */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runCli } from '../../../src/main/cli/index'
import { autoWithSets, curveLines, formatDuration, progressBar } from '../../../src/main/cli/trainCommands'
import { chatFormat } from '../../../src/main/cli/chatCommand'
import { describeModel, describeRun, runDetailLines } from '../../../src/main/cli/workspaceCommands'
import type { RunDetail, RunRecord } from '../../../src/shared/runs'
import type { ModelEntry } from '../../../src/shared/api'
import { saveModel } from '../../../src/main/engine/checkpoint'
import { MoeModel } from '../../../src/main/engine/model'
import { planPlacement } from '../../../src/main/engine/plan'
import { trainingPlan } from '../../../src/main/train/trainer'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import type { FitPlan } from '../../../src/shared/chat'
import { randomWeights, tinyConfig } from '../engine/helpers'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { linkModelFolder } from '../../../src/main/service/workspace'

async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  // captured apart, as a script sees them (not as one terminal, even where vitest runs in one)
  const code = await runCli(argv, { out: (l) => out.push(l), err: (l) => err.push(l), oneTerminal: false })
  return { code, out, err }
}

/** The command with a Ctrl-C at its first stderr line matching `when`. */
async function cliInterrupted(argv: string[], when: RegExp): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = []
  const err: string[] = []
  let signalled = false
  const code = await runCli(argv, {
    oneTerminal: false,
    out: (l) => out.push(l),
    err: (l) => {
      err.push(l)
      if (!signalled && when.test(l)) {
        signalled = true
        process.emit('SIGINT', 'SIGINT')
      }
    },
  })
  expect(signalled, err.join('\n')).toBe(true)
  return { code, out, err }
}

/** A tiny random Mixtral with a chat tokenizer (tiny-chatml's), made at `dir`; returns `dir`. */
async function tinyChatModel(dir: string): Promise<string> {
  const { createModel } = await import('../../../src/main/engineProcess/models')
  const config = {
    family: 'mixtral',
    hiddenSize: 32,
    numLayers: 1,
    numHeads: 2,
    numKvHeads: 2,
    headDim: 16,
    expertIntermediateSize: 32,
    numExperts: 4,
    topK: 2,
  } as const
  await createModel(dir, config, 1, join(__dirname, '../../fixtures/data/models/tiny-chatml'))
  return dir
}

/** A tiny random Mixtral saved as `dir`/base. */
function tinyBase(dir: string): { base: string; c: ReturnType<typeof tinyConfig> } {
  const base = join(dir, 'base')
  const c = tinyConfig({ vocabSize: 24 })
  const m = new MoeModel(c, randomWeights(c, 2))
  saveModel(m, base)
  m.dispose()
  return { base, c }
}

describe('moe-workbench train / export', () => {
  it('trains from a tokenised JSONL with --set overrides, then exports a loadable folder', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-train-'))
    const { base, c } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    const rows = Array.from({ length: 40 }, (_, i) => {
      const ids = [1, 4 + (i % 20), 4 + ((i * 7) % 20), 2, 4 + ((i * 7) % 20), 4 + (i % 20), 3]
      return JSON.stringify({ input_ids: ids, labels: ids.map((t, j) => (j >= 4 ? t : -100)) })
    })
    writeFileSync(data, rows.join('\n') + '\n')
    const cfg = join(dir, 'run.json')
    writeFileSync(cfg, JSON.stringify({ method: 'lora', lora: { rank: 2 }, batchSize: 8 }))
    const runDir = join(dir, 'ws', 'runs', 'my-run')
    // A device budget too small for the whole model: the frozen base weights are paged.
    const runCfg = validateRunConfig({ method: 'lora', lora: { rank: 2 }, batchSize: 8 })
    const fit = (b: number): FitPlan => planPlacement(c, { budgetBytes: b, training: trainingPlan(c, runCfg), backend: 'wasm' }).fit
    // The smallest budget that fits: the planner then pages whatever it can.
    let [lo, budget] = [1, fit(1e9).predictedBytes]
    while (budget - lo > 1) {
      const mid = Math.floor((lo + budget) / 2)
      if (fit(mid).fits) budget = mid
      else lo = mid
    }
    expect(fit(budget)).toMatchObject({ fits: true, fitsResident: false })
    const r = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--config',
      cfg,
      '--set',
      'maxSteps=4',
      '--set',
      'optimizer.lr=0.01',
      '--set',
      'evalEvery=2',
      '--set',
      'schedule.warmupSteps=3',
      '--out',
      runDir,
      '--offload-budget',
      String(budget),
      '--backend',
      'wasm',
    )
    expect(r.err.join('\n')).toMatch(/starting: 4 steps, 36 training rows, 4 validation rows/)
    expect(r.err.join('\n')).not.toMatch(/^note: --set applies over the defaults/m)
    // The Train screen's warnings, with the --set that follows each; the run starts anyway.
    // (0.01 is within LoRA's range for a model this small: no warning about it.)
    expect(r.err.join('\n')).not.toMatch(/Learning rate/)
    expect(r.err.join('\n')).toMatch(/^warning: Warm-up is 3 steps of a 4-step run: .* \(try --set schedule\.warmupSteps=0\)$/m)
    expect(readFileSync(join(runDir, 'log'), 'utf8')).toMatch(/paging: fits with paging/)
    expect(r.code).toBe(0)
    expect(r.out[0]).toMatch(/^completed 4 steps/) // not "completed: completed 4 steps"
    expect(r.out.join('\n')).toContain(`run         ${runDir}`)
    expect(r.err.join('\n')).toMatch(/\[#+\] 100% step 4\/4 {2}loss \d/)
    expect(r.err.join('\n')).toMatch(/eval at step 2: validation loss/)
    const run = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'))
    expect(run.config).toMatchObject({
      method: 'lora',
      maxSteps: 4,
      optimizer: { lr: 0.01 },
      lora: { rank: 2 },
      offload: { budgetBytes: budget, storage: 'lazy' },
    })

    const out = join(dir, 'exported')
    const e = await cli('export', runDir, '--out', out, '--dtype', 'bfloat16', '--backend', 'wasm')
    expect(e.code).toBe(0)
    expect(e.out[0]).toMatch(/LoRA merged/)
    expect(e.out.at(-1)).toMatch(/^listed as model ".+ \(fine-tuned\)" \(id \S+\) of .*: --model takes the name or the id$/)
    const info = await cli('info', '--model', out, '--json', '--backend', 'wasm')
    expect(JSON.parse(info.out[0])).toMatchObject({ family: 'mixtral', checkpointDtype: 'bfloat16' })
    expect(existsSync(join(out, 'README.md'))).toBe(true)
    // Exported again into the same folder: refused as a usage mistake naming --out (the service's
    // outDir), the folder as it was.
    const again = await cli('export', runDir, '--out', out, '--backend', 'wasm')
    expect(again.code).toBe(2)
    expect(again.err.join('\n')).toContain(`export: --out: ${out} exists and is not empty; choose a new or empty folder`)
    expect(existsSync(join(out, 'README.md'))).toBe(true)
    // --checkpoint by the name the run page shows, or its step: the run's own folder, not one in
    // the current directory; a step it does not have lists those it has.
    const missing = await cli('export', runDir, '--out', join(dir, 'by-name'), '--checkpoint', 'step-99', '--backend', 'wasm')
    expect(missing.code).toBe(2)
    const names = /\(its checkpoints: ([^)]*)\)/.exec(missing.err.join('\n'))?.[1].split(', ') ?? []
    expect(names.length, missing.err.join('\n')).toBeGreaterThan(0)
    expect(missing.err.join('\n')).toContain(
      `--checkpoint: "step-99" is not a complete checkpoint of run ${basename(runDir)} (its checkpoints: `,
    )
    const byName = await cli('export', runDir, '--out', join(dir, 'by-name'), '--checkpoint', names[0], '--backend', 'wasm')
    expect(byName.code, byName.err.join('\n')).toBe(0)
    expect(readFileSync(join(dir, 'by-name', 'README.md'), 'utf8')).toContain(`checkpoint: \`${names[0]}\``)
    // Ctrl-C while the engine starts, before the export or the evaluation has begun: the command
    // ends with 130 and nothing is written (it said "cancelling", then exported and exited 0).
    const models = (await cli('model', 'list', '--workspace', join(dir, 'ws'))).out
    const early = await cliInterrupted(['export', runDir, '--out', join(dir, 'early'), '--backend', 'wasm'], /^backend: /)
    expect(early.code).toBe(130)
    expect(early.err.join('\n')).toMatch(/cancelling the export[^]*interrupted before the export started: nothing was written/)
    expect(early.out).toEqual([])
    expect(existsSync(join(dir, 'early'))).toBe(false)
    expect((await cli('model', 'list', '--workspace', join(dir, 'ws'))).out).toEqual(models)
    // Token-id rows have no answers to score: said so, and not blamed on a deleted dataset (the
    // hint for a run whose dataset is gone was added to every dataset error).
    const noAnswers = await cli('eval', '--model', runDir, '--backend', 'wasm')
    expect(noAnswers.code).toBe(2)
    expect(noAnswers.err.join('\n')).toMatch(/nothing to evaluate: the validation split of dataset .+ has 4 rows, none with an answer/)
    expect(noAnswers.err.join('\n')).not.toMatch(/deleted/)

    // A budget the run cannot fit is refused before the run exists, naming what it needs (it once
    // waited forever, then failed as a run with nothing in it).
    const small = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--config',
      cfg,
      '--offload-budget',
      '1KB',
      '--workspace',
      join(dir, 'ws'),
      '--backend',
      'wasm',
    )
    expect(small.code).toBe(2)
    expect(small.err.join('\n')).toMatch(/config\.offload\.budgetBytes: does not fit: .* raise the budget to at least [\d.]+ MiB/)
    // an absurd batch is named as what does not fit, not the budget
    const huge = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--set',
      'batchSize=100000000',
      '--workspace',
      join(dir, 'ws'),
      '--backend',
      'wasm',
    )
    expect(huge.code).toBe(2)
    expect(huge.err.join('\n')).toMatch(
      /config\.batchSize: 100000000 rows of up to \d+ tokens a step do not fit \(one row does\): lower batchSize .*; the planner: /,
    )
    expect(readdirSync(join(dir, 'ws', 'runs'))).toEqual(['my-run'])
  }, 120_000)

  it("says the MoE settings a run changes from the model's as it starts; the export keeps its top-k", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-topk-'))
    const { base } = tinyBase(dir) // 4 experts, top-2
    const data = join(dir, 'data.jsonl')
    const ids = [1, 4, 5, 2, 5, 4, 3]
    writeFileSync(data, `${JSON.stringify({ input_ids: ids, labels: ids.map((t, j) => (j >= 4 ? t : -100)) })}\n`.repeat(16))
    const runDir = join(dir, 'ws', 'runs', 'k3')
    const set = ['maxSteps=2', 'evalEvery=0', 'finalEval.rows=0', 'moe.topK=3', 'moe.zLossCoef=0.001'].flatMap((x) => ['--set', x])
    const r = await cli('train', '--model', base, '--dataset', data, ...set, '--out', runDir, '--backend', 'wasm')
    expect(r.code, r.err.join('\n')).toBe(0)
    expect(r.err).toContain("moe: topK 3, zLossCoef 0.001 (the model's own for the rest)")
    // --set alone starts from the defaults, not from the settings chosen without it: said, with the way to keep those
    expect(r.err).toContain(
      "note: --set applies over the defaults (train --help lists them); --auto applies it over the settings chosen for this dataset and model instead, --from RUN over a run's",
    )
    const out = join(dir, 'exported')
    expect((await cli('export', runDir, '--out', out, '--backend', 'wasm')).code).toBe(0)
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).num_experts_per_tok).toBe(3)
    // a run on the model's own settings says nothing of them
    const plain = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--set',
      'maxSteps=1',
      '--set',
      'finalEval.rows=0',
      '--out',
      join(dir, 'ws', 'runs', 'p'),
      '--backend',
      'wasm',
    )
    expect(plain.code).toBe(0)
    expect(plain.err.filter((l) => l.startsWith('moe: '))).toEqual([])
  }, 60_000)

  it('names bad input precisely', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-bad-'))
    const c = tinyConfig({ vocabSize: 24 })
    const m = new MoeModel(c, randomWeights(c, 2))
    saveModel(m, join(dir, 'base'))
    m.dispose()
    const ws = join(dir, 'ws')
    writeFileSync(join(dir, 'd.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 99]}\n{"input_ids": [1, 2, 4]}\n')
    let r = await cli(
      'train',
      '--model',
      join(dir, 'base'),
      '--dataset',
      join(dir, 'd.jsonl'),
      '--workspace',
      ws,
      '--val-ratio',
      '0',
      '--backend',
      'cpu',
    )
    expect(r.code).toBe(1)
    expect(r.err.at(-1)).toMatch(/row 2 of its train split has token id 99, outside the model's vocabulary of 24/)
    writeFileSync(join(dir, 'd.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": "x"}\n')
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--workspace', ws, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.join('\n')).toMatch(/line 2, input_ids: /)
    expect(r.err.at(-1)).toMatch(/1 invalid row; .* moe-workbench dataset import .* --accept-invalid/)
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', 'no-such-dataset', '--workspace', ws, '--backend', 'cpu')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/"no-such-dataset" is neither a file nor a dataset/)
    // A setting the model cannot train with is refused before the file is imported for a run that cannot start.
    writeFileSync(join(dir, 'fresh.jsonl'), '{"input_ids": [1, 2, 3]}\n{"input_ids": [1, 2, 4]}\n')
    r = await cli(
      'train',
      '--model',
      join(dir, 'base'),
      '--dataset',
      join(dir, 'fresh.jsonl'),
      '--set',
      'moe.topK=9',
      '--workspace',
      ws,
      '--backend',
      'cpu',
    )
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/config\.moe\.topK: 9 is more than the model's 4 experts per layer; use at most 4/)
    expect(r.err.join('\n')).not.toMatch(/imported/)
    expect((await cli('dataset', 'list', '--workspace', ws)).out.join('\n')).not.toMatch(/fresh/)
    // A folder: the file inside it is wanted (as dataset inspect says).
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', dir, '--workspace', ws, '--backend', 'cpu')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/--dataset: \S+ is a folder: give the data file inside it/)
    // --resume of no run, in the flag's name (it said "id: no run named nosuch").
    r = await cli('train', '--resume', 'nosuch', '--workspace', ws, '--backend', 'cpu')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/^moe-workbench train: --resume: no run named nosuch in /)
    writeFileSync(join(dir, 'd.jsonl'), '{"input_ids": [1, 2, 3]}\n')
    r = await cli(
      'train',
      '--model',
      join(dir, 'base'),
      '--dataset',
      join(dir, 'd.jsonl'),
      '--workspace',
      ws,
      '--set',
      'optimizer.lr=-1',
      '--backend',
      'cpu',
    )
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/config\.optimizer\.lr: /)
    // A mistyped key is named with the closest one, before the file is imported for nothing.
    const ws2 = join(dir, 'ws2')
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--workspace', ws2, '--set', 'maxStep=3')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/config\.maxStep: unknown field "maxStep" \(did you mean "maxSteps"\?\)/)
    expect(existsSync(join(ws2, 'datasets'))).toBe(false)
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--workspace', ws2, '--set', 'maxSteps')
    expect(r.code).toBe(2)
    expect(r.err.at(-1)).toMatch(/--set maxSteps: expected key=value/)
    r = await cli('train', '--dataset', join(dir, 'd.jsonl'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--model is required/)
    r = await cli('export', dir, '--out', join(dir, 'x'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/is neither a run folder nor a run id/)
    // A path to nothing is said to be one.
    r = await cli('handoff', join(dir, 'nope.json'), '--target', 'axolotl', '--out', join(dir, 'job'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/nope\.json: no such file or folder/)
    r = await cli('train', '--model', join(dir, 'base'), '--dataset', join(dir, 'd.jsonl'), '--out', join(dir, 'elsewhere'))
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--out: .* is not inside a workspace's runs\/ folder/)
  })

  it('Ctrl-C stops a run at a step boundary with a checkpoint, and exits 130 (not 0: a script can tell)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-int-'))
    const { base } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: [1, 4 + (i % 20), 2, 3] })).join('\n') + '\n')
    const runDir = join(dir, 'ws', 'runs', 'stopped')
    const err: string[] = []
    const out: string[] = []
    let signalled = false
    const code = await runCli(
      [
        'train',
        '--model',
        base,
        '--dataset',
        data,
        '--set',
        'maxSteps=400',
        '--set',
        'batchSize=2',
        '--set',
        'evalEvery=0',
        // every expert "dead" from step 1: one alert line for them all, not a line each
        '--set',
        'alerts.steps=1',
        '--set',
        'alerts.deadShare=0.99',
        '--out',
        runDir,
        '--backend',
        'wasm',
      ],
      {
        out: (l) => out.push(l),
        err: (l) => {
          err.push(l)
          if (!signalled && /step \d+\/400/.test(l)) {
            signalled = true
            process.emit('SIGINT', 'SIGINT')
          }
        },
        // progress and summary on one terminal: the end is told once ("interrupted at step 186" twice in a row)
        oneTerminal: true,
      },
    )
    expect(signalled).toBe(true)
    expect(err).toContain(`interrupted at step ${JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).step}`)
    expect(out[0]).toMatch(/^run {9}\S+stopped$/)
    expect(err.join('\n')).toMatch(/stopping at the next step boundary/)
    expect(code).toBe(130)
    const alerts = err.filter((l) => l.startsWith('alert '))
    expect(alerts).toEqual([
      expect.stringMatching(
        /^alert at step 1: layer 0 experts 0, 1, 2, 3; layer 1 experts 0, 1, 2, 3 took under 99\.0% of tokens for 1 steps, from the run's first: raise/,
      ),
    ])
    const run = JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'))
    expect(run.status).toBe('interrupted')
    expect(run.step).toBeLessThan(400)
    expect(run.lastCheckpoint).toBe(join(runDir, 'checkpoints', `step-${run.step}`))
  })

  it('Ctrl-C before the run has started ends the command with 130 and makes no run (it made one, trained it unwatched and never returned)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-int0-'))
    const { base } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: [1, 4 + (i % 20), 2, 3] })).join('\n') + '\n')
    const err: string[] = []
    let signalled = false
    const args = ['train', '--model', base, '--dataset', data, '--set', 'maxSteps=400', '--workspace', join(dir, 'ws'), '--backend', 'wasm']
    const code = await runCli(args, {
      out: () => {},
      err: (l) => {
        err.push(l)
        // the engine is up; the dataset, the checks and runs.start are still to come
        if (!signalled && l.startsWith('backend: ')) {
          signalled = true
          process.emit('SIGINT', 'SIGINT')
        }
      },
    })
    expect(signalled).toBe(true)
    expect(code).toBe(130)
    expect(err.join('\n')).toMatch(/interrupted before the run started: no run was made/)
    expect(existsSync(join(dir, 'ws', 'runs')) ? readdirSync(join(dir, 'ws', 'runs')) : []).toEqual([])
  })

  it("without --config and --set, lists the Quick preset's choices and says --set starts from the defaults, not from them", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-quick-'))
    const { base } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: [1, 4 + (i % 20), 2, 3] })).join('\n') + '\n')
    // stopped once the choices are told: nothing is trained
    const r = await cliInterrupted(
      ['train', '--model', base, '--dataset', data, '--workspace', join(dir, 'ws'), '--backend', 'wasm'],
      /^ {2}optimizer\.lr = /,
    )
    expect(r.code).toBe(130)
    const told = r.err.join('\n')
    expect(told).toMatch(
      /settings chosen for this dataset and model \(\d+ steps\); with --set or --config a run starts from the defaults instead \(train --help lists them\): to change some of these and keep the rest, add --auto to your --set:\n {2}method = "full": /,
    )
    expect(told).not.toMatch(/--set to change them/)
  })

  it('--auto keeps the chosen settings and applies --set over them, telling which were changed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-auto-'))
    const { base } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: [1, 4 + (i % 20), 2, 3] })).join('\n') + '\n')
    const ws = join(dir, 'ws')
    const args = ['train', '--model', base, '--dataset', data, '--workspace', ws, '--backend', 'wasm']
    // The plain Quick choices, to compare with (stopped once they are told).
    const quick = await cliInterrupted(args, /^ {2}finalEval\.rows = /)
    const chosen: Record<string, string> = {}
    for (const l of quick.err) {
      const m = /^ {2}(\S+) = (.+?): /.exec(l)
      if (m) chosen[m[1]] = m[2]
    }
    expect(chosen['optimizer.lr']).toBeDefined()
    expect(chosen.epochs).toBeDefined()
    // Stopped once the run has started: its config is in its folder.
    const r = await cliInterrupted([...args, '--auto', '--set', 'optimizer.lr=0.002', '--set', 'moe.auxLossCoef=0.05'], /^run .* on wasm/)
    expect(r.code).toBe(130)
    const told = r.err.join('\n')
    expect(told).toMatch(/settings chosen for this dataset and model \(\d+ steps before your --set\), with your --set over them:/)
    expect(told).toContain(`  optimizer.lr = 0.002: your --set (chosen: ${chosen['optimizer.lr']})`)
    expect(told).toContain('  moe.auxLossCoef = 0.05: your --set')
    expect(told).toMatch(new RegExp(`^ {2}epochs = ${chosen.epochs}: `, 'm'))
    const [id] = readdirSync(join(ws, 'runs')).filter((d) => d.includes('run-'))
    const { config } = JSON.parse(readFileSync(join(ws, 'runs', id, 'run.json'), 'utf8')) as {
      config: { optimizer: { lr: number; betas: number[] }; moe: { auxLossCoef: number }; epochs: number; evalEvery: number }
    }
    expect(config.optimizer.lr).toBe(0.002)
    expect(config.moe.auxLossCoef).toBe(0.05)
    expect(String(config.epochs)).toBe(chosen.epochs)
    expect(JSON.stringify(config.optimizer.betas)).toBe(chosen['optimizer.betas'])
    expect(String(config.evalEvery)).toBe(chosen.evalEvery)
  })

  it("--from starts a run from another's model, dataset and settings, --set over them; its summary points alerts there", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-from-'))
    const { base } = tinyBase(dir)
    const data = join(dir, 'data.jsonl')
    writeFileSync(data, Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: [1, 4 + (i % 20), 2, 3] })).join('\n') + '\n')
    const ws = join(dir, 'ws')
    const common = ['--workspace', ws, '--backend', 'wasm']
    const first = await cli(
      'train',
      '--model',
      base,
      '--dataset',
      data,
      '--name',
      'src',
      '--set',
      'maxSteps=1',
      '--set',
      'finalEval.rows=0',
      '--set',
      'optimizer.lr=0.01',
      '--set',
      'offload.storage=f16',
      ...common,
    )
    expect(first.code, first.err.join('\n')).toBe(0)
    // Every expert under 99% of tokens for a step: an alert at once.
    const alerts = ['alerts.deadShare=0.99', 'alerts.steps=1', 'maxSteps=2'].flatMap((x) => ['--set', x])
    // a device budget given: over the run's offload settings (its expert storage kept)
    const r = await cli('train', '--from', 'src', ...alerts, '--offload-budget', '1GB', ...common)
    expect(r.code, r.err.join('\n')).toBe(0)
    expect(r.err).toContain('settings of run src, with your --set over them:')
    expect(r.err).toContain("  maxSteps = 2: your --set (the run's: 1)")
    expect(r.err.join('\n')).not.toMatch(/^note: --set applies over the defaults/m)
    const runs = readdirSync(join(ws, 'runs')).map((id) => JSON.parse(readFileSync(join(ws, 'runs', id, 'run.json'), 'utf8')) as RunRecord)
    const src = runs.find((x) => x.name === 'src')!
    const again = runs.find((x) => x.name === 'src (again)')!
    expect(again).toBeDefined()
    expect(again.baseModel).toBe(src.baseModel)
    expect(again.dataset).toBe(src.dataset)
    expect(again.config.optimizer.lr).toBe(0.01)
    expect(again.config.maxSteps).toBe(2)
    expect(again.config.finalEval.rows).toBe(0)
    expect(again.config.offload).toEqual({ budgetBytes: 1e9, storage: 'f16' })
    expect(r.out.find((l) => l.startsWith('alerts '))).toMatch(
      new RegExp(
        `^alerts {6}\\d+ \\(above\\); to follow their advice with this run's other settings: moe-workbench train --from ${again.id} --set KEY=VALUE$`,
      ),
    )
    // no alerts, no such line
    expect(first.out.some((l) => l.startsWith('alerts '))).toBe(false)
    // the run's dataset deleted since: said, with what to give instead
    expect((await cli('dataset', 'delete', src.dataset!, '--workspace', ws)).code).toBe(0)
    const gone = await cli('train', '--from', 'src', ...common)
    expect(gone.code).toBe(2)
    expect(gone.err.join('\n')).toContain(`--from: run ${src.id}'s dataset ${src.dataset} was deleted; give another with --dataset ID|FILE`)
    // run show says so too (it named the id as if it were there)
    const shown = await cli('run', 'show', src.id, '--workspace', ws)
    expect(shown.out.filter((l) => l.startsWith('dataset '))).toEqual([`dataset     ${src.dataset} (deleted)`])
    // its model gone: said, with what to give instead
    rmSync(base, { recursive: true })
    const noModel = await cli('train', '--from', 'src', ...common)
    expect(noModel.code).toBe(2)
    expect(noModel.err.join('\n')).toContain(`--from: run ${src.id}'s model ${src.baseModel} is gone; give another with --model DIR`)
    const unknown = await cli('train', '--from', 'nosuch', ...common)
    expect(unknown.code).toBe(2)
    expect(unknown.err.join('\n')).toMatch(/--from: no run "nosuch" in /)
    const both = await cli('train', '--from', 'src', '--auto', ...common)
    expect(both.code).toBe(2)
    expect(both.err.join('\n')).toMatch(
      /--from starts from a run's settings, --config from a file and --auto from those chosen for the data: give one of them/,
    )
  }, 60_000)

  it('--auto is refused beside --config (two starting points) and --resume', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-auto-'))
    const { base } = tinyBase(dir)
    const withConfig = await cli('train', '--model', base, '--dataset', 'x', '--auto', '--config', join(dir, 'run.json'))
    expect(withConfig.code).toBe(2)
    expect(withConfig.err.join('\n')).toMatch(
      /--auto starts from the settings chosen for the dataset and model, --config from a file: give one of them/,
    )
    const withResume = await cli('train', '--resume', join(dir, 'runs', 'r'), '--auto')
    expect(withResume.code).toBe(2)
    expect(withResume.err.join('\n')).toMatch(/drop --model, --dataset, --config, --auto, --from and --set/)
  })

  it("eval of a run whose dataset was deleted says to give another with --dataset (it said only 'no dataset X')", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-gone-'))
    const { base } = tinyBase(dir)
    const now = new Date().toISOString()
    new RunFolder(join(dir, 'ws', 'runs', 'r1')).write({
      id: 'r1',
      status: 'completed',
      config: validateRunConfig({}),
      baseModel: base,
      dataset: 'gone-abc',
      created: now,
      updated: now,
      step: 0,
      totalSteps: 0,
      bestValLoss: null,
      lastCheckpoint: null,
    })
    const r = await cli('eval', '--model', 'r1', '--workspace', join(dir, 'ws'), '--backend', 'wasm')
    expect(r.code).toBe(2)
    expect(r.err.join('\n')).toMatch(
      /no dataset gone-abc in the workspace: the run's dataset was deleted; evaluate it on another with --dataset ID\|FILE/,
    )
  })

  it('chat --format, else what the model folder says it was trained for', () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-fmt-'))
    expect(chatFormat(undefined, dir)).toBe('chat') // no workbench.json
    writeFileSync(join(dir, 'workbench.json'), JSON.stringify({ promptFormat: 'plain' }))
    expect(chatFormat(undefined, dir)).toBe('plain')
    expect(chatFormat('chat', dir)).toBe('chat')
    expect(() => chatFormat('raw', dir)).toThrow('--format: "raw" must be chat or plain')
    writeFileSync(join(dir, 'workbench.json'), '{not json')
    expect(chatFormat(undefined, dir)).toBe('chat')
  })

  it('formats progress and durations', () => {
    expect(progressBar(5, 10, 10)).toBe('[#####.....]  50%')
    expect(formatDuration(3725)).toBe('1h02m')
    expect(formatDuration(65)).toBe('1m05s')
  })

  it('dataset import prints the line-numbered report, refuses bad rows unless accepted, and lists', async () => {
    const ws = mkdtempSync(join(tmpdir(), 'moe-cli-ds-'))
    const bad = join(__dirname, '../../fixtures/data/bad.jsonl')
    let r = await cli('dataset', 'import', bad, '--workspace', ws)
    expect(r.code).toBe(1)
    expect(r.out.join('\n')).toMatch(/rows {7}3 valid, 13 invalid of 16/)
    expect(r.out.join('\n')).toMatch(/ {2}line \d+, \S+: /)
    expect(r.err.at(-1)).toMatch(/pass --accept-invalid to import the 3 valid rows/)
    // Not one record parses: each line's reason, and that (not the layout) as what to fix.
    const allBad = join(ws, 'allbad.jsonl')
    writeFileSync(allBad, '{bad\n[1,2\n')
    r = await cli('dataset', 'import', allBad, '--workspace', ws)
    expect(r.code).toBe(1)
    expect(r.out.join('\n')).toMatch(/rows {7}0 valid, 2 invalid of 2/)
    expect(r.out.join('\n')).toMatch(/ {2}line 2: invalid JSON/)
    expect(r.err.at(-1)).toMatch(/not one of its 2 records could be read \(line 1: invalid JSON.*; 1 more like it\): fix the file/)
    // A path that is not there, or a folder: said as such (both were "is not a file").
    r = await cli('dataset', 'import', join(ws, 'missing.jsonl'), '--workspace', ws)
    expect(r.code).toBe(2)
    expect(r.err[0]).toContain(`${join(ws, 'missing.jsonl')} does not exist: check the path (relative paths start at ${process.cwd()})`)
    r = await cli('dataset', 'inspect', ws, '--workspace', ws)
    expect(r.code).toBe(2)
    expect(r.err[0]).toContain(`${ws} is a folder: give the data file inside it`)
    r = await cli('dataset', 'import', bad, '--workspace', ws, '--accept-invalid', '--name', 'partly bad')
    expect(r.code).toBe(0)
    expect(r.out.join('\n')).toMatch(/imported \S+ {2}partly bad/)
    r = await cli('dataset', 'list', '--workspace', ws)
    expect(r.out).toHaveLength(1)
    expect(r.out[0]).toMatch(/partly bad .* 3 rows/)
    // Common options may come before the command.
    expect((await cli('--workspace', ws, 'dataset', 'list')).out).toEqual(r.out)
    // delete by id: gone from the list, the source file kept; an unknown id is a usage mistake
    const id = r.out[0].split(/\s+/)[0]
    const gone = await cli('dataset', 'delete', id, '--workspace', ws)
    expect(gone).toMatchObject({ code: 0, out: [`deleted dataset ${id} from ${ws} (the file it was imported from stays)`] })
    // An empty workspace points at the samples shipped with the app (a CLI workspace gets none of its own).
    const samples = join(__dirname, '../../../resources/samples')
    expect((await cli('dataset', 'list', '--workspace', ws)).out).toEqual([
      `no datasets in ${ws}: import one with moe-workbench dataset import FILE`,
      `samples to try (made for the bundled model): ${['arithmetic.jsonl', 'reversal.json', 'conversion.csv'].map((f) => join(samples, f)).join(', ')}`,
    ])
    expect(existsSync(bad)).toBe(true)
    const again = await cli('dataset', 'delete', id, '--workspace', ws)
    expect(again.code).toBe(2)
    expect(again.err[0]).toMatch(/ID: no dataset/)
    // by the name dataset list shows, as --dataset takes it
    r = await cli('dataset', 'import', bad, '--workspace', ws, '--accept-invalid', '--name', 'partly bad')
    const byName = await cli('dataset', 'delete', 'partly bad', '--workspace', ws)
    expect(byName).toMatchObject({ code: 0, out: [expect.stringMatching(/^deleted dataset partly-bad-\S+ from /)] })
    r = await cli('dataset', 'import', bad, '--workspace', ws, '--accept-invalid', '--name', 'partly bad')
    expect(r.err.join('\n')).not.toMatch(/warning: another/)
    // A second dataset of that name: imported, with a warning (--dataset then refuses the name as ambiguous)
    const twinFile = join(ws, 'twin.jsonl')
    writeFileSync(twinFile, '{"instruction":"a","output":"b"}\n')
    const first = (await cli('dataset', 'list', '--workspace', ws)).out[0].split(/\s+/)[0]
    r = await cli('dataset', 'import', twinFile, '--workspace', ws, '--name', 'Partly Bad')
    expect(r.code).toBe(0)
    const twinId = /^imported (\S+)/m.exec(r.out.join('\n'))![1]
    expect(r.err).toContain(
      `warning: another dataset is named "Partly Bad" (${first}): where a command takes the name, give this one's id (${twinId}) instead, or delete the other`,
    )
    expect(r.err.join('\n')).not.toMatch(/note: the same file contents/)
    expect((await cli('dataset', 'delete', twinId, '--workspace', ws)).code).toBe(0)
    // The same file again: imported, and the copy it makes is said, with the earlier one's id
    const partly = (await cli('dataset', 'list', '--workspace', ws)).out[0].split(/\s+/)[0]
    r = await cli('dataset', 'import', bad, '--workspace', ws, '--accept-invalid')
    const copyId = /^imported (\S+)/m.exec(r.out.join('\n'))![1]
    expect(r.err).toContain(
      `note: the same file contents were imported before as "partly bad" (${partly}); this import is another copy: moe-workbench dataset delete ID removes one you do not need`,
    )
    expect((await cli('dataset', 'delete', copyId, '--workspace', ws)).code).toBe(0)
    r = await cli(
      'dataset',
      'import',
      join(__dirname, '../../fixtures/data/qa.csv'),
      '--workspace',
      ws,
      '--layout',
      'alpaca',
      '--map',
      'instruction',
    )
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--map instruction: expected field=column/)
    // --map without --layout: the layout its fields belong to (the mapping was ignored, and the file read as empty)
    const qa = join(__dirname, '../../fixtures/data/qa.csv')
    r = await cli('dataset', 'inspect', qa, '--workspace', ws, '--map', 'instruction=question', '--map', 'output=answer')
    expect(r.code).toBe(0)
    expect(r.out.join('\n')).toMatch(/layout +alpaca/)
    expect(r.out.join('\n')).toMatch(/rows +2 valid, 0 invalid of 2/)
    expect(r.out.join('\n')).toMatch(/^characters min \d+/m)
    // token-id rows: their lengths in ids (they read "characters")
    const ids = await cli('dataset', 'inspect', join(__dirname, '../../fixtures/data/layouts/tokens.jsonl'), '--workspace', ws)
    expect(ids.out.join('\n')).toMatch(/^tokens +min \d+, median/m)
    expect(ids.out.join('\n')).not.toMatch(/characters/)
    expect(r.out.join('\n')).toMatch(/columns id, question, answer, notes \(not read: id, notes\)/)
    // a column no field reads is named (it was passed over without a word)
    const extra = join(ws, 'extra.csv')
    writeFileSync(extra, 'id,instruction,output,source\n1,What is 2+2?,4,web\n')
    expect((await cli('dataset', 'inspect', extra, '--workspace', ws)).out.join('\n')).toMatch(
      /layout +alpaca; columns id, instruction, output, source \(not read: id, source\)/,
    )
    // a preference dataset: said to be one, with the import that trains on its chosen answers
    const dpo = join(ws, 'dpo.jsonl')
    writeFileSync(dpo, '{"prompt":"Hi","chosen":"Hello!","rejected":"Go away."}\n')
    r = await cli('dataset', 'inspect', dpo, '--workspace', ws)
    expect(r.err.join('\n')).toMatch(
      /its chosen and rejected columns make it a preference dataset \(for DPO or ORPO\).*--layout completion --map=prompt=prompt --map=completion=chosen$/,
    )
    // inspect exits as import would: 1 where import refuses the file (an unrecognised layout exited 0)
    expect(r.code).toBe(1)
    expect((await cli('dataset', 'import', dpo, '--workspace', ws)).code).toBe(1)
    const someBad = join(ws, 'some-bad.jsonl')
    writeFileSync(someBad, '{"instruction":"a","output":"b"}\n{"instruction":"c"}\n')
    r = await cli('dataset', 'inspect', someBad, '--workspace', ws)
    expect(r.code).toBe(1)
    expect(r.err.join('\n')).toMatch(
      /^1 of 2 rows are invalid: import refuses the file unless --accept-invalid \(it then imports the one valid row\)$/m,
    )
    expect((await cli('dataset', 'import', someBad, '--workspace', ws)).code).toBe(1)
    // prompts and completions joined with nothing between: said, with the first such line
    const joined = join(ws, 'joined.csv')
    writeFileSync(joined, 'prompt,completion\nCapital of France?,Paris\n')
    r = await cli('dataset', 'inspect', joined, '--workspace', ws)
    expect(r.code).toBe(0)
    expect(r.out).toContain(
      'warning    The row joins its prompt and completion with nothing between (line 2: “…pital of France?|Paris”, | marking the join): the model learns them joined so. If a space or a newline belongs there, end each prompt (or start each completion) with one.',
    )
    const garbage = join(ws, 'garbage.jsonl')
    writeFileSync(garbage, 'not json\nnor this\n')
    r = await cli('dataset', 'inspect', garbage, '--workspace', ws)
    expect(r.code).toBe(1)
    expect((await cli('dataset', 'import', garbage, '--workspace', ws)).code).toBe(1)
    // rows longer than the model's positions (--model): said, with what happens to them
    const long = join(ws, 'long.txt')
    writeFileSync(long, `${Array(700).fill('word').join(' ')}\nshort line\n`)
    const bundled = join(__dirname, '../../../resources/default-model') // 512 positions
    expect((await cli('dataset', 'inspect', long, '--workspace', ws, '--model', bundled)).out.join('\n')).toMatch(
      /rows \(up to \d+ tokens\) pass the model's 512 positions: training cuts them, and eval cannot answer them/,
    )
    expect((await cli('dataset', 'inspect', qa, '--workspace', ws, '--model', bundled)).out.join('\n')).not.toMatch(/positions/)
    // a text file a row per paragraph (text between blank lines), as the app can
    const text = join(ws, 'paragraphs.txt')
    writeFileSync(text, 'One, line one.\nline two.\n\nTwo.\n\nThree.\n')
    expect((await cli('dataset', 'inspect', text, '--workspace', ws)).out.join('\n')).toMatch(/rows +4 valid/)
    expect((await cli('dataset', 'inspect', text, '--workspace', ws, '--text-unit', 'paragraph')).out.join('\n')).toMatch(/rows +3 valid/)
    expect((await cli('dataset', 'inspect', text, '--workspace', ws, '--text-unit', 'para')).err[0]).toMatch(
      /--text-unit: "para" must be line or paragraph/,
    )
    r = await cli('dataset', 'inspect', qa, '--workspace', ws, '--map', 'foo=question')
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(
      /--map foo=question: no layout has a field "foo"; the fields are alpaca: instruction, input, output, system, history; /,
    )
    r = await cli('dataset', 'inspect', qa, '--workspace', ws, '--layout', 'completion', '--map', 'instruction=question')
    expect(r.err[0]).toMatch(/--map instruction=question: layout completion has no field "instruction"; its fields: prompt, completion/)
    r = await cli('dataset', 'inspect', qa, '--workspace', ws, '--map', 'instruction=question', '--map', 'prompt=answer')
    expect(r.err[0]).toMatch(/--map: instruction, prompt are fields of different layouts; pass --layout/)

    // A layout it cannot tell: the import that names it, with the file's own columns, ready to paste
    // into a shell (the file's name quoted), which then imports it.
    const odd = join(ws, "odd q's.csv")
    writeFileSync(odd, 'q,a\nhello,world\nfoo,bar\n')
    r = await cli('dataset', 'import', odd, '--workspace', ws)
    expect(r.code).toBe(1)
    expect(r.out.join('\n')).toMatch(/rows +not read: they are read once the layout is known/)
    const hint =
      /name it and the column of each field: moe-workbench (dataset import .*?) \(the layouts' fields: alpaca: instruction, /.exec(
        r.err.join('\n'),
      )
    expect(hint).not.toBeNull()
    const argv = execFileSync('bash', ['-c', `printf '%s\\0' ${hint![1]}`], { encoding: 'utf8' })
      .split('\0')
      .slice(0, -1)
    expect(argv).toEqual(['dataset', 'import', odd, '--layout', 'completion', '--map=prompt=q', '--map=completion=a'])
    r = await cli(...argv, '--workspace', ws)
    expect(r.code).toBe(0)
    expect(r.out.join('\n')).toMatch(/completion {2}2 rows/)
    // inspect says the same; train, with where to go next
    expect((await cli('dataset', 'inspect', odd, '--workspace', ws)).err.at(-1)).toMatch(
      /^the layout of .* was not recognised \(columns: q, a\)/,
    )
    r = await cli('train', '--model', 'default', '--dataset', odd, '--workspace', ws, '--backend', 'cpu')
    expect(r.code).toBe(1)
    expect(r.err.join('\n')).toMatch(/--map=completion=a \(the layouts' fields: .*\); then use the dataset id it prints/)
  })
})

describe('moe-workbench chat', () => {
  it('streams replies, keeps the conversation, summarises experts, and handles /system and /reset', async () => {
    const { createModel } = await import('../../../src/main/engineProcess/models')
    const { Readable } = await import('node:stream')
    const dir = join(mkdtempSync(join(tmpdir(), 'moe-chat-')), 'm')
    await createModel(
      dir,
      {
        family: 'qwen2_moe',
        hiddenSize: 64,
        numLayers: 2,
        numHeads: 4,
        numKvHeads: 2,
        headDim: 16,
        expertIntermediateSize: 64,
        sharedExpertIntermediateSize: 16,
        numExperts: 8,
        topK: 2,
      },
      1,
      join(__dirname, '../../fixtures/data/models/tiny-chatml'),
    )
    const out: string[] = []
    const err: string[] = []
    let written = ''
    const long = `${'word '.repeat(200)}\n` // more than the 64 positions of --context
    const input = Readable.from([
      'Hello there\n',
      '/system Be brief.\n',
      '/sytem typo\n',
      'Hi\n',
      long,
      '/reset\n',
      // one message of three lines (one reply), none of them a command
      '"""Hi.\n/reset\nOk"""\n',
      '/quit\n',
      'never read\n',
    ])
    const code = await runCli(
      ['chat', '--model', dir, '--greedy', '--max-new-tokens', '5', '--offload-budget', '1MiB', '--context', '64', '--backend', 'wasm'],
      {
        out: (l) => out.push(l),
        err: (l) => err.push(l),
        write: (t) => (written += t),
        input,
      },
    )
    // Read from a pipe, a message that got no reply (the one past the context) makes the status 1.
    expect(code, err.join('\n')).toBe(1)
    expect(err.at(-1), err.join('\n')).toBe('1 of 4 messages got no reply (the errors above)')
    expect(written.match(/model> /g), err.join('\n')).toHaveLength(3)
    const summaries = err.filter((l) => l.startsWith('['))
    expect(summaries).toHaveLength(3)
    // the /reset inside the block was text: the conversation was cleared once, before it
    expect(err.filter((l) => l.startsWith('conversation cleared'))).toHaveLength(1)
    expect(summaries[0]).toMatch(/^\[\d+ tokens, [\d.]+ tokens\/s, stopped by \w+\] experts: layer 0: e\d \d+%.*; layer 1: e\d/)
    expect(err.join('\n')).toMatch(/system prompt set; conversation cleared/)
    expect(err).toContain('conversation cleared (the system prompt stays: "Be brief.")') // /reset sets nothing
    // a mistyped command is said to be one, not sent to the model (still two replies above)
    expect(err).toContain('unknown command /sytem: /system TEXT, /reset, /quit (a message that starts with "/" is written "//…")')
    // a conversation past its context says how to start another here
    expect(err.join('\n')).toMatch(
      /error: the conversation \(\d+ tokens\) fills .*start a new one.* \(\/reset starts a new conversation\)$/m,
    )
    expect(err.join('\n')).toMatch(/paging: budget 1\.0 MiB; .* lazy host storage/)
    expect(err.join('\n')).toMatch(/experts hit rate/)
  }, 60_000)

  it('a message of several lines never closed is not sent, and read from a pipe makes the status 1', async () => {
    const { Readable } = await import('node:stream')
    const err: string[] = []
    let written = ''
    const code = await runCli(['chat', '--model', join(__dirname, '../../fixtures/moe-reference/mixtral'), '--backend', 'wasm'], {
      out: () => {},
      err: (l) => err.push(l),
      write: (t) => (written += t),
      input: Readable.from(['"""first line\n', 'second line\n']),
    })
    expect(code, err.join('\n')).toBe(1)
    expect(written).not.toContain('model> ')
    expect(err).toContain('the message begun with """ was not closed (a line ending in """): not sent (2 lines)')
    expect(err.at(-1)).toBe('1 of 1 message got no reply (the errors above)')
  }, 60_000)
})

describe('moe-workbench chat, refused before the model loads', () => {
  it('a --max-new-tokens over the most a reply may take', async () => {
    const r = await cli('chat', '--model', join(__dirname, '../../fixtures/moe-reference/mixtral'), '--max-new-tokens', '100000')
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--max-new-tokens: 100000 is over the most a reply may take, 8192/)
  })

  it('a --context without the --offload-budget it plans for (it did nothing)', async () => {
    const r = await cli('chat', '--model', join(__dirname, '../../fixtures/moe-reference/mixtral'), '--context', '3')
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--context needs --offload-budget/)
  })
  it("a --context past the model's positions (a cache it can never fill was planned against the budget)", async () => {
    const model = join(__dirname, '../../fixtures/moe-reference/mixtral')
    const r = await cli('chat', '--model', model, '--offload-budget', '1GB', '--context', '129')
    expect(r.code).toBe(2)
    expect(r.err[0]).toMatch(/--context: 129 is more than the model's 128 positions \(max_position_embeddings\); give at most 128/)
  })
})

describe('moe-workbench train, Ctrl-C after the last step', () => {
  it('stops the before/after evaluation, exits 0 (the run is complete) and says how to score it', async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-evalstop-'))
    const model = await tinyChatModel(join(root, 'm'))
    const data = join(__dirname, '../../fixtures/data/layouts/messages.jsonl')
    const runDir = join(root, 'ws', 'runs', 'r')
    const args = ['train', '--model', model, '--dataset', data, '--set', 'maxSteps=2', '--set', 'batchSize=2', '--set', 'finalEval.rows=2']
    const t = await cliInterrupted([...args, '--out', runDir, '--backend', 'wasm'], /^evaluating the base model/)
    expect(t.code).toBe(0)
    expect(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8')).status).toBe('completed')
    expect(t.err.at(-1)).toBe(
      'the run is complete; its before/after evaluation was stopped (Ctrl-C): score it with moe-workbench eval --model r',
    )
  })
})

describe('moe-workbench eval', () => {
  it('scores a run (its own dataset) and a model folder (a dataset file), with a JSON last line', async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-eval-'))
    const model = await tinyChatModel(join(root, 'm'))
    const data = join(__dirname, '../../fixtures/data/layouts/messages.jsonl')
    const runDir = join(root, 'ws', 'runs', 'r')
    // The model by its id in the workspace, as `model list` shows it, not its folder.
    const tiny = linkModelFolder(join(root, 'ws'), model, 'tiny')
    const t = await cli(
      'train',
      '--model',
      tiny.id,
      '--dataset',
      data,
      '--set',
      'method=lora',
      '--set',
      'maxSteps=2',
      '--set',
      'batchSize=2',
      '--set',
      'finalEval.rows=2',
      '--set',
      'checkpointEvery=1',
      '--out',
      runDir,
      '--name',
      'Arith LoRA',
      '--backend',
      'wasm',
    )
    expect(t.code).toBe(0)
    // The before/after evaluation is in the summary on stdout, with the result (it was only in
    // the progress on stderr), as the run log says it.
    const evalLines = t.out.filter((l) => /^(val|train) +exact match/.test(l))
    expect(evalLines, t.out.join('\n')).toHaveLength(2)
    for (const l of evalLines) {
      expect(l).toMatch(/^(val|train) +exact match \d+% → \d+%, F1 [\d.]+ → [\d.]+ \(\d+ rows?\), base → tuned$/)
      const [split, text] = [l.split(' ')[0], l.replace(/^\S+ +/, '').replace(/, base → tuned$/, '')]
      expect(t.err).toContain(`${split === 'val' ? 'validation' : split}: ${text}`)
    }
    expect(JSON.parse(readFileSync(join(runDir, 'run.json'), 'utf8'))).toMatchObject({ baseModel: model })
    // The name train --name gave it names it too, as run list shows it ("t1" was refused: 'no run named t1').
    const ws = join(root, 'ws')
    expect((await cli('run', 'list', '--workspace', ws)).out[0]).toMatch(/^r {2}"Arith LoRA" {2}completed/)
    const byName = await cli('eval', '--model', 'arith lora', '--limit', '1', '--workspace', ws, '--backend', 'wasm')
    expect(byName.code).toBe(0)
    // the score is the result: on stdout, after the rows (it was on stderr: `eval > file` lost it)
    expect(byName.out.at(-1)).toMatch(/^run r, step-2 on 1 validation row: exact match/)
    expect(byName.err.join('\n')).not.toMatch(/exact match/)
    // The run as its card shows it (there was no run show: "use: moe-workbench run list | run delete ID").
    const shown = await cli('run', 'show', 'arith lora', '--workspace', ws)
    expect(shown.code).toBe(0)
    expect(shown.out[0]).toBe('run         r  "Arith LoRA"')
    expect(shown.out[1]).toMatch(/^status {6}completed/)
    expect(shown.out[2]).toBe('steps       2/2')
    expect(shown.out.find((l) => l.startsWith('checkpoints '))).toMatch(/^checkpoints step-1, step-2\b/)
    expect(shown.out.find((l) => l.startsWith('dataset '))).toMatch(/^dataset {5}\S+$/) // there: no "(deleted)"
    expect(shown.out.filter((l) => /^(val|train) +exact match \d+% → \d+%/.test(l))).toHaveLength(2)
    expect((await cli('run', 'show', '--workspace', ws)).err[0]).toMatch(/give the run id: moe-workbench run show ID/)
    // An earlier checkpoint (the best validation loss may be one): by --checkpoint, or by its folder
    // (it was "not a model or run folder": a LoRA checkpoint holds adapters, a full one no tokenizer).
    const early1 = await cli('eval', '--model', 'arith lora', '--checkpoint', '1', '--limit', '1', '--workspace', ws, '--backend', 'wasm')
    expect(early1.code).toBe(0)
    expect(early1.out.at(-1)).toMatch(/^run r, step-1 on 1 validation row: exact match/)
    const byFolder = await cli('eval', '--model', join(runDir, 'checkpoints', 'step-1'), '--limit', '1', '--backend', 'wasm')
    expect(byFolder.code).toBe(0)
    expect(byFolder.out.at(-1)).toMatch(/^run r, step-1 on 1 validation row: exact match/)
    const notOne = await cli('eval', '--model', 'arith lora', '--checkpoint', '7', '--workspace', ws, '--backend', 'wasm')
    expect(notOne.code).toBe(2)
    expect(notOne.err[0]).toMatch(/--checkpoint: "7" is not a complete checkpoint of run r \(its checkpoints: step-1, step-2\)/)
    expect((await cli('eval', '--model', model, '--checkpoint', '1', '--dataset', data, '--backend', 'wasm')).err[0]).toMatch(
      /--checkpoint: .* is a model folder, not a run/,
    )
    // Ctrl-C while the engine starts: 130 before the evaluation begins (it said "cancelling", then evaluated).
    const early = await cliInterrupted(
      ['eval', '--model', 'arith lora', '--limit', '1', '--workspace', ws, '--backend', 'wasm'],
      /^backend: /,
    )
    expect(early.code).toBe(130)
    expect(early.err.join('\n')).toMatch(/cancelling the evaluation[^]*interrupted before the evaluation started/)
    expect(early.err.join('\n')).not.toMatch(/exact match/)
    expect(early.out).toEqual([])
    expect((await cli('train', '--resume', 'Arith LoRA', '--workspace', ws, '--backend', 'wasm')).err.join('\n')).toMatch(
      /run r has completed/,
    )
    const r = await cli('eval', '--model', runDir, '--split', 'train', '--limit', '3', '--json', '--backend', 'wasm')
    expect(r.code).toBe(0)
    const last = JSON.parse(r.out.at(-1)!)
    expect(last).toMatchObject({ n: expect.any(Number), exact_match: expect.any(Number), f1: expect.any(Number) })
    expect(last.n).toBeGreaterThan(0)
    expect(last.n).toBeLessThanOrEqual(3)
    expect(r.err.join('\n')).toMatch(new RegExp(`run r, step-2 on ${last.n} train rows?: exact match [\\d.]+%, F1`))
    const m = await cli(
      'eval',
      '--model',
      model,
      '--dataset',
      data,
      '--split',
      'all',
      '--limit',
      '2',
      '--workspace',
      join(root, 'ws'),
      '--backend',
      'wasm',
    )
    expect(m.code).toBe(0)
    expect(m.out).toHaveLength(3)
    expect(m.out[2]).toMatch(/ on 2 rows of both splits: exact match/) // not "on 2 all rows"
    expect(m.out[0]).toMatch(/^[✓✗] ".*" → ".*" \(expected ".*"\)$/)
    // the file train imported, not imported again: one dataset in the workspace
    expect(m.err.join('\n')).toMatch(/using dataset \S+, imported from .*messages\.jsonl before \(the same contents and layout/)
    expect((await cli('dataset', 'list', '--workspace', join(root, 'ws'))).out).toHaveLength(1)
    expect((await cli('eval', '--model', model, '--backend', 'wasm')).err[0]).toMatch(/--dataset is required with a model folder/)
    // a model id of the workspace is a model too (not a run id)
    expect((await cli('eval', '--model', tiny.id, '--workspace', join(root, 'ws'), '--backend', 'wasm')).err[0]).toMatch(
      /--dataset is required with a model folder/,
    )
    expect((await cli('eval', '--model', runDir, '--split', 'dev', '--backend', 'wasm')).err[0]).toMatch(
      /--split: "dev" must be val, train or all/,
    )
    // Neither: every kind --model takes is named ("id: no run named nope-run" named one).
    const nope = await cli('eval', '--model', 'nope-run', '--workspace', join(root, 'ws'), '--backend', 'wasm')
    expect(nope.code).toBe(2)
    expect(nope.err[0]).toBe(
      `moe-workbench eval: --model: "nope-run" is not a model or run folder, nor a model or run of the workspace ${join(root, 'ws')} (moe-workbench model list and run list show them) (see moe-workbench --help)`,
    )
    // A second run of the same name: made, with a warning (commands then refuse the name as ambiguous)
    const twin = await cli(
      'train',
      '--model',
      tiny.id,
      '--dataset',
      data,
      '--set',
      'maxSteps=1',
      '--set',
      'finalEval.rows=0',
      '--name',
      'arith lora',
      '--workspace',
      ws,
      '--backend',
      'wasm',
    )
    expect(twin.code).toBe(0)
    const twinId = basename(/^run (\S+) on /m.exec(twin.err.join('\n'))![1])
    expect(twin.err).toContain(
      `warning: another run is named "arith lora" (r): where a command takes the name, give this one's id (${twinId}) instead, or delete the other`,
    )
  }, 120_000)
})

describe('moe-workbench model / run', () => {
  it("lists the workspace's models and runs, and deletes them with the service's checks", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-ws-'))
    const ws = join(dir, 'ws')
    const made = tinyBase(join(ws, 'models')).base // a model made here: <ws>/models/base
    const elsewhere = tinyBase(dir).base
    const run = new RunFolder(join(ws, 'runs', 'tuned'))
    run.write({
      id: 'tuned',
      status: 'completed',
      config: validateRunConfig({ method: 'lora' }),
      baseModel: made,
      created: '2025-01-01T00:00:00.000Z',
      updated: '2025-01-01T00:00:00.000Z',
      step: 10,
      totalSteps: 10,
      bestValLoss: null,
      lastCheckpoint: null,
    })
    const linked = linkModelFolder(ws, elsewhere, 'mine')
    const list = await cli('model', 'list', '--workspace', ws, '--backend', 'cpu')
    expect(list.code).toBe(0)
    const mine = list.out.filter((l) => !l.startsWith('default '))
    expect(mine).toEqual([
      expect.stringMatching(new RegExp(`^base {2}base {2}workspace {2}mixtral, 4 experts top-2, \\S+ \\S+ in float32 {2}${made}$`)),
      expect.stringMatching(new RegExp(`^${linked.id} {2}mine {2}linked .* {2}${elsewhere}$`)),
    ])
    expect((await cli('run', 'list', '--workspace', ws)).out).toEqual([`tuned  completed  step 10/10  lora  from ${made}`])
    // --model takes the ids the list shows: a made model, a linked one, the bundled one
    for (const [id, folder] of [
      ['base', made],
      [linked.id, elsewhere],
      ['default', join(__dirname, '../../../resources/default-model')],
      // and names, and either regardless of case where that names one model
      ['mine', elsewhere],
      ['MINE', elsewhere],
      ['Default', join(__dirname, '../../../resources/default-model')],
    ]) {
      const info = await cli('info', '--model', id, '--workspace', ws, '--backend', 'cpu')
      expect(info.code).toBe(0)
      expect(info.out[0]).toBe(`model      ${folder}`)
    }
    // Two names that differ in case only: each by its own spelling, neither by a third.
    const other = linkModelFolder(ws, made, 'Mine')
    expect((await cli('info', '--model', 'Mine', '--workspace', ws, '--backend', 'cpu')).out[0]).toBe(`model      ${made}`)
    expect((await cli('info', '--model', 'mine', '--workspace', ws, '--backend', 'cpu')).out[0]).toBe(`model      ${elsewhere}`)
    expect((await cli('info', '--model', 'MINE', '--workspace', ws, '--backend', 'cpu')).code).toBe(2)
    rmSync(join(ws, 'models', other.id), { recursive: true })
    const nothing = await cli('info', '--model', 'no-such-model', '--workspace', ws, '--backend', 'cpu')
    expect(nothing.code).toBe(2)
    expect(nothing.err[0]).toMatch(
      /--model: \S+no-such-model is not a folder, and "no-such-model" is not a model of the workspace .* model list shows them/,
    )

    const refused = await cli('model', 'delete', 'base', '--workspace', ws)
    expect(refused.code).toBe(1)
    expect(refused.err.join('\n')).toMatch(/model base is the base of run tuned, .* delete that run first/)
    expect(existsSync(join(made, 'config.json'))).toBe(true)
    expect(await cli('run', 'delete', 'tuned', '--workspace', ws)).toMatchObject({
      code: 0,
      out: [`deleted run tuned from ${ws} (models exported from it stay)`],
    })
    expect((await cli('run', 'list', '--workspace', ws)).out).toEqual([
      `no runs in ${ws}: start one with moe-workbench train --model default --dataset FILE`,
    ])
    expect(await cli('model', 'delete', 'base', '--workspace', ws)).toMatchObject({ code: 0, out: [`deleted model base from ${ws}`] })
    expect(existsSync(made)).toBe(false)
    expect(await cli('model', 'delete', linked.id, '--workspace', ws)).toMatchObject({
      code: 0,
      out: [`unlinked model ${linked.id} (its folder ${elsewhere} stays)`],
    })
    expect(existsSync(join(elsewhere, 'config.json'))).toBe(true)
    expect((await cli('model', 'list', '--workspace', ws)).out.filter((l) => !l.startsWith('default '))).toEqual([])
    // by the name model list shows; one that names none is said so, not refused as a bad id
    const again = linkModelFolder(ws, elsewhere, 'tuned (fine-tuned)')
    expect(await cli('model', 'delete', 'tuned (fine-tuned)', '--workspace', ws)).toMatchObject({
      code: 0,
      out: [`unlinked model ${again.id} (its folder ${elsewhere} stays)`],
    })
    expect((await cli('model', 'delete', 'tuned (fine-tuned)', '--workspace', ws)).err[0]).toMatch(
      /ID: no model "tuned \(fine-tuned\)" in .*, by id or name/,
    )

    const unknown = await cli('model', 'delete', 'base', '--workspace', ws)
    expect(unknown.code).toBe(2)
    expect(unknown.err[0]).toMatch(/ID: no model base/)
    expect((await cli('model', '--workspace', ws)).err[0]).toMatch(/use: moe-workbench model list \| model delete ID/)
    expect((await cli('run', 'delete', '--workspace', ws)).err[0]).toMatch(/give the run id: moe-workbench run delete ID/)
    expect((await cli('run', 'list', 'x', '--workspace', ws)).code).toBe(2)
    expect((await cli('model', 'delete', 'a', 'b', '--workspace', ws)).err[0]).toMatch(/use: moe-workbench model list \| model delete ID/)
  }, 60_000)
})

describe('model list and run list lines', () => {
  it('name a router other than softmax top-k (hash and switch models read alike), and ESFT runs as such', () => {
    const info = { family: 'mixtral', numExperts: 8, topK: 1, bytesByDtype: { float32: 14.2 * 2 ** 20 } }
    const model = (routerType: string) =>
      describeModel({ id: 'hs', name: 'hs', source: 'workspace', dir: '/m', info: { ...info, routerType } } as unknown as ModelEntry)
    expect(model('hash')).toBe('hs  hs  workspace  mixtral, 8 experts top-1, hash routing, 14.2 MiB in float32  /m')
    expect(model('switch')).toMatch(/top-1, switch router, /)
    expect(model('softmax_topk')).toMatch(/experts top-1, 14\.2 MiB/)
    // Its size as stored: a bfloat16 export read "10.4 MiB in float32" (5.4 MB on disk).
    const bf16 = {
      ...info,
      routerType: 'softmax_topk',
      checkpointDtype: 'bfloat16',
      bytesByDtype: { float32: 10.4 * 2 ** 20, bfloat16: 5.2 * 2 ** 20 },
    }
    expect(describeModel({ id: 'b', name: 'b', source: 'workspace', dir: '/b', info: bf16 } as unknown as ModelEntry)).toBe(
      'b  b  workspace  mixtral, 8 experts top-1, 5.2 MiB in bfloat16  /b',
    )
    const run = (config: RunConfigInput) =>
      describeRun({
        id: 'r',
        status: 'completed',
        step: 3,
        totalSteps: 3,
        config: validateRunConfig(config),
        baseModel: '/m',
      } as unknown as RunRecord)
    expect(run({ esft: { enabled: true } })).toBe('r  completed  step 3/3  full + ESFT  from /m')
    expect(run({ method: 'lora' })).toBe('r  completed  step 3/3  lora  from /m')
  })
})

describe('autoWithSets', () => {
  const chosen = {
    config: { optimizer: { lr: 0.003, betas: [0.9, 0.95] }, epochs: 9 },
    choices: [
      { path: 'optimizer.lr', value: 0.003, why: 'rate' },
      { path: 'optimizer.betas', value: [0.9, 0.95], why: 'betas' },
      { path: 'epochs', value: 9, why: 'passes' },
    ],
    steps: 306,
  } as unknown as Parameters<typeof autoWithSets>[0]

  it('tells a group given whole once, not the choices it replaced', () => {
    const lines: string[] = []
    const config = autoWithSets(chosen, ['optimizer={"lr":0.001}'], { out: () => {}, err: (l) => lines.push(l) })
    expect(config).toEqual({ optimizer: { lr: 0.001 }, epochs: 9 })
    expect(lines.slice(1)).toEqual(['  epochs = 9: passes', '  optimizer = {"lr":0.001}: your --set'])
  })

  it('leaves the chosen settings as they were (each run starts from its own copy)', () => {
    autoWithSets(chosen, ['epochs=2'], { out: () => {}, err: () => {} })
    expect((chosen.config as unknown as { epochs: number }).epochs).toBe(9)
  })
})

describe('curveLines', () => {
  it("points the overfitting advice at what the CLI prints (it said 'check the answers below', and none followed)", () => {
    const steps = Array.from({ length: 60 }, (_, i) => ({
      step: i + 1,
      totalSteps: 60,
      loss: 4 - i / 20,
      ce: 4 - i / 20,
      droppedFraction: 0,
    }))
    const evals = [
      { step: 20, valLoss: 3 },
      { step: 40, valLoss: 2.5 },
      { step: 60, valLoss: 3.2 },
    ]
    const d = { record: { id: 'r1', config: validateRunConfig({}) }, steps, evals, evaluation: null } as unknown as RunDetail
    const advice = (x: RunDetail) => curveLines(x, 0).find((l) => l.includes('Overfitting'))
    expect(advice(d)).toMatch(/this is expected: score its answers with moe-workbench eval --model r1\.( \(next run: .*\))?$/)
    expect(advice({ ...d, evaluation: { splits: [] } } as unknown as RunDetail)).toMatch(
      /this is expected: check its before\/after scores \(exact match, F1\) on the rows it learned\.( \(next run: .*\))?$/,
    )
  })
})

describe('run show', () => {
  it('says which steps a resume trains again, and marks the best validation loss among the checkpoints', () => {
    const detail = {
      record: {
        id: 'k',
        name: 'kill-me',
        status: 'interrupted',
        message: 'the process writing it (pid 1) stopped; resume continues from step-200',
        step: 200,
        totalSteps: 1500,
        baseModel: '/m',
        dataset: 'd',
        bestValLoss: 1.5,
        config: validateRunConfig({ esft: { enabled: true }, moe: { capacityFactorTrain: 1, auxLossCoef: 0.1 } }),
      },
      steps: [{ step: 279, totalSteps: 1500, loss: 2.5, ce: 2.4, droppedFraction: 0.3 }],
      evals: [
        { step: 50, valLoss: NaN }, // a diverged eval is no best
        { step: 100, valLoss: 1.5 },
        { step: 200, valLoss: 1.7 },
        { step: 150, valLoss: 1.2 }, // lower, but not kept
      ],
      checkpoints: [
        { step: 50, dir: '/ws/runs/k/checkpoints/step-50' },
        { step: 100, dir: '/ws/runs/k/checkpoints/step-100' },
        { step: 200, dir: '/ws/runs/k/checkpoints/step-200' },
      ],
      evaluation: null,
    } as unknown as RunDetail
    expect(runDetailLines(detail)).toEqual([
      'run         k  "kill-me"',
      'status      interrupted: the process writing it (pid 1) stopped; resume continues from step-200',
      'steps       200/1500 (metrics to step 279)',
      'model       /m  (full + ESFT)', // not "full": ESFT trained a few experts
      'moe         capacityFactorTrain 1, auxLossCoef 0.1', // the knobs it set, which were only in run.json
      'dataset     d',
      'best val    1.5000',
      'checkpoints step-50, step-100 (best validation loss 1.500), step-200',
      'resume      trains steps 201-279 again from step-200',
      // what the curves say, as the run card's panel (the CLI had the figures and none of the reading)
      'advice      30.0% of tokens are dropped by full experts (capacity factor): they skip the MoE block. Raise the capacity factor (now 1) to 1.25, or set it to dropless. (next run: --set moe.capacityFactorTrain=1.25)',
    ])
    const early = {
      ...detail,
      record: { ...detail.record, step: 0 },
      steps: [{ step: 14, totalSteps: 1500, loss: 2.5, ce: 2.4, droppedFraction: 0 }],
      evals: [],
      checkpoints: [],
    } as unknown as RunDetail
    expect(runDetailLines(early).slice(-2)).toEqual(['checkpoints none yet', 'resume      trains steps 1-14 again, from the base model'])
    expect(runDetailLines({ ...early, record: { ...early.record, config: validateRunConfig({}) } }).slice(3, 5)).toEqual([
      'model       /m  (full)',
      "moe         the model's own settings",
    ])
    // Its checkpoints' scores, as kept in the run folder (another dataset named).
    const report = { split: 'validation', n: 20, exactMatch: 0.45, f1: 0.614, loss: 1.2345, items: [] }
    const scored = {
      ...detail,
      scores: [
        { date: '2026-12-04T10:05:09.000Z', step: 100, checkpoint: '', dataset: 'd', report },
        {
          date: '2026-12-04T11:00:00.000Z',
          step: 200,
          checkpoint: '',
          dataset: 'other',
          report: { ...report, split: 'train', loss: null },
        },
      ],
    } as unknown as RunDetail
    expect(runDetailLines(scored).slice(-2)).toEqual([
      'score       step-100 on 20 validation rows: exact match 45%, F1 0.61, answer loss 1.234  (2026-12-04 10:05 UTC)',
      'score       step-200 on 20 train rows of other: exact match 45%, F1 0.61  (2026-12-04 11:00 UTC)',
    ])
  })
})

describe('moe-workbench handoff', () => {
  it('hands a run config to a cluster trainer, importing a dataset file first as train does; sizes need a unit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-handoff-'))
    const ws = join(dir, 'ws')
    const config = join(dir, 'run.json')
    writeFileSync(config, JSON.stringify({ method: 'lora', maxSteps: 10 }))
    const data = join(__dirname, '../../../resources/samples/arithmetic.jsonl')
    const args = ['handoff', config, '--target', 'axolotl', '--model', 'default', '--dataset', data, '--workspace', ws]
    // "80" meant 80 GB: asked for its unit before anything is written or imported.
    const bare = await cli(...args, '--out', join(dir, 'job'), '--gpu-memory', '80')
    expect(bare.code).toBe(2)
    expect(bare.err[0]).toMatch(/--gpu-memory: "80" has no unit \(as bytes it is 80 B\): write e.g. 80GB or 80GiB/)
    expect(existsSync(join(dir, 'job'))).toBe(false)
    expect(existsSync(join(ws, 'datasets'))).toBe(false)
    // A file, not only a dataset id (it said 'dataset: must be letters, digits, ...').
    const r = await cli(...args, '--out', join(dir, 'job'), '--gpu-memory', '80GB')
    expect(r.code, r.err.join('\n')).toBe(0)
    expect(r.err.join('\n')).toMatch(/imported .*arithmetic\.jsonl as dataset \S+ \(\d+ train, \d+ validation rows\)/)
    expect(r.out[0]).toMatch(/^wrote .*job for axolotl: .*axolotl\.yaml/)
    expect(
      readFileSync(join(dir, 'job', 'data', 'train.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean).length,
    ).toBeGreaterThan(0)
    expect((await cli('dataset', 'list', '--workspace', ws)).out).toHaveLength(1)
    // A dataset by its name as `dataset list` shows it, regardless of case; a name two datasets
    // share asks for an id.
    const id = r.err.join('\n').match(/as dataset (\S+) /)![1]
    const byName = await cli(...args.slice(0, -3), 'ARITHMETIC', '--workspace', ws, '--out', join(dir, 'job2'), '--gpu-memory', '80GB')
    expect(byName.code, byName.err.join('\n')).toBe(0)
    expect(JSON.parse(readFileSync(join(dir, 'job2', 'handoff.json'), 'utf8'))).toMatchObject({ dataset: { id } })
    // A folder that is not empty, in the flag's name (it said "outDir: ...").
    const again = await cli(...args.slice(0, -3), id, '--workspace', ws, '--out', join(dir, 'job2'), '--gpu-memory', '80GB')
    expect(again.code).toBe(2)
    expect(again.err[0]).toMatch(
      /^moe-workbench handoff: --out: \S+job2 exists and is not an empty folder; choose a new folder \(see moe-workbench --help\)$/,
    )
    const twin = await cli('dataset', 'import', data, '--name', 'arithmetic', '--workspace', ws)
    expect(twin.code).toBe(0)
    const twice = await cli(...args.slice(0, -3), 'arithmetic', '--workspace', ws, '--out', join(dir, 'job3'), '--gpu-memory', '80GB')
    expect(twice.code).toBe(2)
    expect(twice.err[0]).toMatch(
      new RegExp(
        `--dataset: "arithmetic" names 2 datasets of .*\\((\\S+, ${id}|${id}, \\S+)\\): give one's id \\(see moe-workbench dataset list\\)$`,
      ),
    )
    expect(existsSync(join(dir, 'job3'))).toBe(false)
  }, 120_000)

  it("uses a dataset imported from another copy of the same file (the app's upload), its invalid rows left out as when it was imported", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-same-'))
    const ws = join(dir, 'ws')
    const config = join(dir, 'run.json')
    writeFileSync(config, JSON.stringify({ method: 'lora', maxSteps: 10 }))
    const rows = readFileSync(join(__dirname, '../../../resources/samples/arithmetic.jsonl'), 'utf8')
    const text = `${rows.trimEnd()}\n{"messages": null}\n`
    // The app imports an uploaded copy (workspace/uploads/...), the user then gives the original.
    const upload = join(dir, 'upload', 'sums.jsonl')
    const original = join(dir, 'sums.jsonl')
    execFileSync('mkdir', ['-p', join(dir, 'upload')])
    writeFileSync(upload, text)
    writeFileSync(original, text)
    const imported = await cli('dataset', 'import', upload, '--accept-invalid', '--workspace', ws)
    expect(imported.code, imported.err.join('\n')).toBe(0)
    const args = ['handoff', config, '--target', 'axolotl', '--model', 'default', '--workspace', ws, '--gpu-memory', '80GB']
    const r = await cli(...args, '--dataset', original, '--out', join(dir, 'job'))
    expect(r.code, r.err.join('\n')).toBe(0)
    expect(r.err.join('\n')).toMatch(
      /using dataset \S+, imported from .*upload\/sums\.jsonl before \(the same contents and layout, its 1 invalid row left out; \d+ train, \d+ validation rows\)/,
    )
    expect((await cli('dataset', 'list', '--workspace', ws)).out).toHaveLength(1)
    // Other contents with invalid rows are still refused, with the way to import the valid ones.
    writeFileSync(original, `${text}{"messages": 3}\n`)
    const changed = await cli(...args, '--dataset', original, '--out', join(dir, 'job2'))
    expect(changed.code).toBe(1)
    expect(changed.err.at(-1)).toMatch(/sums\.jsonl: 2 invalid rows; fix them or import the valid ones with: moe-workbench dataset import/)
    expect((await cli('dataset', 'list', '--workspace', ws)).out).toHaveLength(1)
  }, 120_000)

  it("hands off a run whose dataset was deleted with another one, and says so where none is given (it said only 'no dataset X')", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-cli-handoff-gone-'))
    const ws = join(dir, 'ws')
    const folder = new RunFolder(join(ws, 'runs', 'r'))
    folder.write({
      id: 'r',
      name: 'orphan',
      status: 'completed',
      config: validateRunConfig({ method: 'lora', maxSteps: 10 }),
      baseModel: join(__dirname, '../../../resources/default-model'),
      dataset: 'gone-1',
      created: '2026-12-04T00:00:00.000Z',
      updated: '2026-12-04T00:00:00.000Z',
      step: 10,
      totalSteps: 10,
      bestValLoss: null,
      lastCheckpoint: null,
    })
    const args = ['handoff', 'orphan', '--target', 'axolotl', '--workspace', ws, '--gpu-memory', '80GB']
    const refused = await cli(...args, '--out', join(dir, 'job'))
    expect(refused.code).toBe(2)
    expect(refused.err[0]).toMatch(
      /no dataset "?gone-1"? in .*: the run's dataset was deleted; hand the run off with another: --dataset ID\|FILE/,
    )
    expect(existsSync(join(dir, 'job'))).toBe(false)
    const data = join(__dirname, '../../../resources/samples/arithmetic.jsonl')
    const r = await cli(...args, '--dataset', data, '--out', join(dir, 'job'))
    expect(r.code, r.err.join('\n')).toBe(0)
    expect(r.out[0]).toMatch(/^wrote .*job for axolotl: /)
    // The model by this machine's path (no --copy-model, no --model-ref): said, with the two other ways.
    expect(r.err).toContain(
      `note: model: the cluster reads ${join(__dirname, '../../../resources/default-model')} as this machine's path (a shared file system); otherwise give --copy-model (a copy inside the folder) or --model-ref HUB_ID`,
    )
    const copied = await cli(...args, '--dataset', data, '--out', join(dir, 'job2'), '--copy-model')
    expect(copied.code, copied.err.join('\n')).toBe(0)
    expect(copied.err.join('\n')).not.toMatch(/note: model:/)
    // A path given on purpose (--model-ref) is the user's choice: not noted.
    const shared = await cli(...args, '--dataset', data, '--out', join(dir, 'job3'), '--model-ref', '/shared/models/default')
    expect(shared.code, shared.err.join('\n')).toBe(0)
    expect(shared.err.join('\n')).not.toMatch(/note: model: the cluster reads/)
  }, 120_000)
})
