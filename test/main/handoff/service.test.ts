/**
 * runs.handoff and runs.importAdapter through the service, as every host calls them: payloads
 * validated (the bad field named), a run's own config, model and dataset handed off, an adapter
 * imported by the engine's handler into a run that lists, and refusals that name what is wrong.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { ApiError } from '../../../src/shared/api'
import { EngineClient } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { validateRunConfig } from '../../../src/shared/runConfig'
import { fakeSpawner } from '../service/fakeEngine'

const ROOT = join(__dirname, '../../..')
const open: Workbench[] = []

function service(): Workbench {
  const w = new Workbench({
    engine: new EngineClient(fakeSpawner().spawner),
    host: 'cli',
    workspace: mkdtempSync(join(tmpdir(), 'handoff-svc-')),
  })
  open.push(w)
  return w
}

/** A completed run r1 of the bundled model on `dataset`, as the trainer leaves it (no training needed to hand it off); its time. */
function completedRun(w: Workbench, dataset: string, config: Parameters<typeof validateRunConfig>[0]): string {
  const now = new Date().toISOString()
  new RunFolder(join(w.workspace, 'runs', 'r1')).write({
    id: 'r1',
    status: 'completed',
    config: validateRunConfig(config),
    baseModel: join(ROOT, 'resources/default-model'),
    dataset,
    created: now,
    updated: now,
    step: 0,
    totalSteps: 0,
    bestValLoss: null,
    lastCheckpoint: null,
  })
  return now
}

afterEach(async () => {
  for (const w of open.splice(0)) await w.close()
})

describe('runs.handoff and runs.importAdapter', () => {
  it('hands off a run of the workspace with its own config, model and dataset', async () => {
    const w = service()
    const ds = await w.api['datasets.import']({ file: join(ROOT, 'resources/samples/arithmetic.jsonl') })
    const now = completedRun(w, ds.id, { method: 'lora', lora: { rank: 4, targets: ['attention', 'experts'] }, data: { maxLength: 128 } })
    const out = join(mkdtempSync(join(tmpdir(), 'handoff-svc-out-')), 'job')
    const r = await w.api['runs.handoff']({ run: 'r1', target: 'axolotl', outDir: out, gpusPerNode: 2 })
    expect(r.files).toEqual(expect.arrayContaining(['axolotl.yaml', 'data/train.jsonl', 'data/validation.jsonl', 'README.md']))
    const yaml = readFileSync(join(out, 'axolotl.yaml'), 'utf8')
    expect(yaml).toMatch(/^lora_r: 4$/m)
    expect(yaml).toMatch(/^sequence_len: 128$/m)
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toMatch(/run r1 on axolotl/)

    // An ESFT run that has chosen its experts: the handoff trains those (it trained every expert).
    new RunFolder(join(w.workspace, 'runs', 'r2')).write({
      id: 'r2',
      status: 'running',
      config: validateRunConfig({ method: 'full', esft: { enabled: true }, data: { maxLength: 128 } }),
      baseModel: join(ROOT, 'resources/default-model'),
      dataset: ds.id,
      created: now,
      updated: now,
      step: 3,
      totalSteps: 10,
      bestValLoss: null,
      lastCheckpoint: null,
      esft: { '0': [2], '1': [0, 5] },
    })
    const esftOut = join(mkdtempSync(join(tmpdir(), 'handoff-svc-out-')), 'job')
    await w.api['runs.handoff']({ run: 'r2', target: 'axolotl', outDir: esftOut })
    const unfrozen = readFileSync(join(esftOut, 'axolotl.yaml'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('experts.') && l.trim().startsWith('- '))
      .map((l) => l.trim())
    expect(unfrozen).toEqual([
      '- ^model.layers.0.mlp.experts.gate_up_proj$[2:3]',
      '- ^model.layers.1.mlp.experts.gate_up_proj$[0:1]',
      '- ^model.layers.1.mlp.experts.gate_up_proj$[5:6]',
      '- ^model.layers.0.mlp.experts.down_proj$[2:3]',
      '- ^model.layers.1.mlp.experts.down_proj$[0:1]',
      '- ^model.layers.1.mlp.experts.down_proj$[5:6]',
    ])
    expect(readFileSync(join(esftOut, 'README.md'), 'utf8')).not.toMatch(/Hand off the run once it has started/)
  })

  it("says where the target trains turns of weight 0 (context only here), in the README's differences", async () => {
    const w = service()
    const dir = mkdtempSync(join(tmpdir(), 'handoff-weight-'))
    const row = (i: number, weight: number): string =>
      JSON.stringify({
        messages: [
          { role: 'user', content: `q${i}` },
          { role: 'assistant', content: `draft ${i}`, weight },
          { role: 'user', content: 'again' },
          { role: 'assistant', content: `a${i}` },
        ],
      })
    writeFileSync(join(dir, 'w.jsonl'), Array.from({ length: 12 }, (_, i) => row(i, i < 3 ? 0 : 1)).join('\n'))
    const ds = await w.api['datasets.import']({ file: join(dir, 'w.jsonl'), split: { validation: 0 } })
    completedRun(w, ds.id, { method: 'lora', data: { maxLength: 128 } })
    const out = join(mkdtempSync(join(tmpdir(), 'handoff-svc-out-')), 'job')
    await w.api['runs.handoff']({ run: 'r1', target: 'llamafactory', outDir: out })
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toMatch(
      /- dataset: 3 assistant turns of the training rows have weight 0 \(context, not trained on here\); the LLaMA-Factory config written here reads no per-turn weight and trains on them/,
    )
  })

  it('names the bad field', async () => {
    const w = service()
    const err = (await w.api['runs.handoff']({ target: 'deepspeed-chat' as 'axolotl', outDir: '/tmp/x' }).catch(
      (e: unknown) => e,
    )) as ApiError
    expect(err).toMatchObject({ code: 'invalid_argument', field: 'target' })
    const noModel = (await w.api['runs.handoff']({ target: 'axolotl', outDir: '/tmp/x', dataset: 'd' }).catch(
      (e: unknown) => e,
    )) as ApiError
    expect(noModel).toMatchObject({ code: 'invalid_argument', field: 'model' })
    const noRun = (await w.api['runs.handoff']({ target: 'axolotl', outDir: '/tmp/x', run: 'nope' }).catch((e: unknown) => e)) as ApiError
    expect(noRun.message).toMatch(/no run named nope/)
    const badCfg = (await w.api['runs.handoff']({
      target: 'axolotl',
      outDir: '/tmp/x',
      config: { lora: { rank: -1 } },
      model: ROOT,
      dataset: 'd',
    }).catch((e: unknown) => e)) as ApiError
    expect(badCfg).toMatchObject({ code: 'invalid_argument', field: 'config.lora.rank' })
  })

  it('imports a PEFT adapter as a completed LoRA run that lists with the others', async () => {
    const w = service()
    const record = await w.api['runs.importAdapter']({
      dir: join(ROOT, 'test/fixtures/peft/qwen3_moe'),
      model: join(ROOT, 'test/fixtures/moe-reference/qwen3_moe'),
      name: 'from the cluster',
    })
    expect(record).toMatchObject({ status: 'completed', name: 'from the cluster', config: { method: 'lora' } })
    expect((await w.api['runs.list']()).map((r) => r.id)).toContain(record.id)
    expect(existsSync(join(record.lastCheckpoint!, 'adapter_model.safetensors'))).toBe(true)
    const wrongBase = (await w.api['runs.importAdapter']({
      dir: join(ROOT, 'test/fixtures/peft/qwen3_moe'),
      model: join(ROOT, 'test/fixtures/moe-reference/mixtral'),
    }).catch((e: unknown) => e)) as ApiError
    expect(wrongBase.message).toMatch(/does not have|takes \d+ inputs|gives \d+ outputs/)
    // Nothing half-written is left behind.
    expect((await w.api['runs.list']()).length).toBe(1)
  })
})
