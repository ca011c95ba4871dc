/**
 * runs.export names what it writes: the final model of a completed run, or "checkpoint step N of
 * M" for a run still training or stopped before its end (exporting step 30 of 60 of a run still
 * training once gave a model named like a final one).
 */
import { cpSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { basename, join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { RunRecord, RunStatus } from '../../../src/shared/runs'
import { runConfigSchema } from '../../../src/shared/runConfig'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { EngineClient } from '../../../src/main/service/engineClient'
import { exportedCheckpoint } from '../../../src/main/service/methods'
import { Workbench } from '../../../src/main/service/workbench'
import { linkModelFolder } from '../../../src/main/service/workspace'
import { tempDir } from '../data/helpers'
import { fakeSpawner } from './fakeEngine'

const services: Workbench[] = []
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()))
})

function setup() {
  const workspace = tempDir()
  const exported: { outDir: string; checkpoint?: string; name?: string }[] = []
  const fake = fakeSpawner({
    handlers: {
      'runs.export': (args) => {
        exported.push(args)
        mkdirSync(args.outDir, { recursive: true })
        writeFileSync(join(args.outDir, 'config.json'), '{}') // listed among the models, as a real export is
        return { outDir: args.outDir, files: ['model.safetensors'], mergedLora: false }
      },
    },
  })
  const workbench = new Workbench({ engine: new EngineClient(fake.spawner), host: 'server', workspace })
  services.push(workbench)
  return { workbench, workspace, exported }
}

/** A run folder as the trainer leaves it: run.json and complete checkpoints. */
function makeRun(
  workspace: string,
  status: RunStatus,
  step: number,
  checkpoints: number[],
  { id = 'capitals-run', name = 'capitals' as string | null } = {},
): RunFolder {
  const folder = new RunFolder(join(workspace, 'runs', id))
  const record: RunRecord = {
    id,
    name: name ?? undefined,
    status,
    config: runConfigSchema.parse({ method: 'lora', maxSteps: 60 }),
    baseModel: '/models/base',
    dataset: 'capitals',
    created: '2025-01-01T00:00:00.000Z',
    updated: '2025-01-01T00:00:00.000Z',
    step,
    totalSteps: 60,
    bestValLoss: null,
    lastCheckpoint: null,
  }
  folder.write(record)
  for (const s of checkpoints) {
    mkdirSync(folder.checkpointDir(s), { recursive: true })
    writeFileSync(join(folder.checkpointDir(s), 'trainer_state.json'), JSON.stringify({ step: s }))
  }
  return folder
}

const provenanceOf = (dir: string): Record<string, unknown> => JSON.parse(readFileSync(join(dir, 'workbench.json'), 'utf8'))

describe('runs.export', () => {
  it('names and labels the export of a run still training "checkpoint step N of M", and writes exactly that checkpoint', async () => {
    const { workbench, workspace, exported } = setup()
    // Created after the service started: it is the engine's live run, not one to repair.
    const folder = makeRun(workspace, 'running', 33, [10, 30])
    const before = new Date().toISOString()
    const entry = await workbench.api['runs.export']({ id: 'capitals-run' })
    const after = new Date().toISOString()
    expect(entry.name).toBe('capitals (checkpoint step 30 of 60)')
    expect(entry.name).not.toMatch(/fine-tuned/)
    expect(exported.at(-1)?.checkpoint).toBe(folder.checkpointDir(30))
    expect(exported.at(-1)?.name).toBe('capitals (checkpoint step 30 of 60)') // the README's heading, not the folder's id
    expect(provenanceOf(entry.dir)).toMatchObject({
      name: 'capitals (checkpoint step 30 of 60)',
      fromRun: 'capitals-run',
      checkpoint: { step: 30, totalSteps: 60, final: false, runStatus: 'running', label: 'checkpoint step 30 of 60' },
    })
    // When (Home's guided path chats with the newest export; the card says it)
    const exportedAt = provenanceOf(entry.dir).exported as string
    expect(exportedAt >= before && exportedAt <= after, `${before} <= ${exportedAt} <= ${after}`).toBe(true)
    // A name the user chose keeps the label.
    expect((await workbench.api['runs.export']({ id: 'capitals-run', name: 'mine' })).name).toBe('mine (checkpoint step 30 of 60)')
  })

  it('labels a stopped run’s export by the checkpoint it stopped at, and a completed run’s as final', async () => {
    const { workbench, workspace } = setup()
    const folder = makeRun(workspace, 'cancelled', 43, [30, 43])
    expect((await workbench.api['runs.export']({ id: 'capitals-run' })).name).toBe('capitals (checkpoint step 43 of 60)')

    folder.update({ status: 'completed', step: 60 })
    mkdirSync(folder.checkpointDir(60))
    writeFileSync(join(folder.checkpointDir(60), 'trainer_state.json'), '{}')
    const final = await workbench.api['runs.export']({ id: 'capitals-run', name: 'capitals-tuned' })
    expect(final.name).toBe('capitals-tuned')
    expect(provenanceOf(final.dir)).toMatchObject({ checkpoint: { step: 60, final: true, runStatus: 'completed' } })
    expect((await workbench.api['runs.export']({ id: 'capitals-run' })).name).toBe('capitals (fine-tuned)')
    // A run given no name: its id without the time it starts with, and a folder named after that.
    const stamped = '2026-12-04T23-20-18-run-c9cb6d'
    makeRun(workspace, 'completed', 60, [60], { id: stamped, name: null })
    const unnamed = await workbench.api['runs.export']({ id: stamped })
    expect(unnamed.name).toBe('run-c9cb6d (fine-tuned)')
    expect(basename(unnamed.dir)).toMatch(/^run-c9cb6d-fine-tuned-[0-9a-f]{6}$/)
    // Exported again: a name the model lists can tell apart.
    expect((await workbench.api['runs.export']({ id: 'capitals-run' })).name).toBe('capitals (fine-tuned) 2')
    expect((await workbench.api['runs.export']({ id: 'capitals-run', name: 'capitals-tuned' })).name).toBe('capitals-tuned 2')
    // An earlier checkpoint of a completed run is not its final model either.
    const earlier = await workbench.api['runs.export']({ id: 'capitals-run', checkpoint: folder.checkpointDir(30) })
    expect(earlier.name).toBe('capitals (checkpoint step 30 of 60)')
  })

  it("refuses a checkpoint that is not one of the run's own (another run's, a model folder, an incomplete one), exporting nothing", async () => {
    const { workbench, workspace, exported } = setup()
    const folder = makeRun(workspace, 'completed', 60, [30, 60])
    const other = join(workspace, 'runs', 'other-run', 'checkpoints', 'step-10')
    mkdirSync(other, { recursive: true })
    writeFileSync(join(other, 'trainer_state.json'), '{}')
    const model = join(workspace, 'models', 'some-model')
    mkdirSync(model, { recursive: true })
    const partial = folder.checkpointDir(45) // no trainer_state.json: not complete
    mkdirSync(partial)
    for (const checkpoint of [other, model, partial, join(workspace, 'nowhere')]) {
      const call = workbench.api['runs.export']({ id: 'capitals-run', checkpoint })
      await expect(call, checkpoint).rejects.toMatchObject({ code: 'invalid_argument', field: 'checkpoint' })
      await expect(workbench.api['runs.export']({ id: 'capitals-run', checkpoint })).rejects.toThrow(
        `is not a checkpoint of run capitals-run; pick one of its checkpoints (step-30, step-60 in ${folder.checkpointsDir})`,
      )
    }
    expect(exported).toHaveLength(0)
    // its own, written with a trailing slash or through a link: taken
    await workbench.api['runs.export']({ id: 'capitals-run', checkpoint: `${folder.checkpointDir(30)}/` })
    const link = join(workspace, 'link-30')
    symlinkSync(folder.checkpointDir(30), link)
    await workbench.api['runs.export']({ id: 'capitals-run', checkpoint: link })
    expect(exported).toHaveLength(2)
  })

  it('refuses an outDir that is a file or a folder with something in it, by the field, before the engine writes', async () => {
    const { workbench, workspace, exported } = setup()
    makeRun(workspace, 'completed', 60, [60])
    const full = join(workspace, 'mine')
    mkdirSync(full)
    writeFileSync(join(full, 'notes.txt'), 'keep me')
    const file = join(workspace, 'a-file')
    writeFileSync(file, 'x')
    await expect(workbench.api['runs.export']({ id: 'capitals-run', outDir: full })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'outDir',
      message: `outDir: ${full} exists and is not empty; choose a new or empty folder`,
    })
    await expect(workbench.api['runs.export']({ id: 'capitals-run', outDir: file })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'outDir',
      message: expect.stringContaining('is a file'),
    })
    expect(exported).toHaveLength(0)
    expect(readFileSync(join(full, 'notes.txt'), 'utf8')).toBe('keep me')
    // an empty folder, or one that does not exist yet: taken
    const empty = join(workspace, 'empty')
    mkdirSync(empty)
    await workbench.api['runs.export']({ id: 'capitals-run', outDir: empty })
    await workbench.api['runs.export']({ id: 'capitals-run', outDir: join(workspace, 'new', 'folder') })
    expect(exported.map((x) => x.outDir)).toEqual([empty, join(workspace, 'new', 'folder')])
    // Listed (linked) with the export's own provenance: its run, and how chat should prompt it
    // (it was listed without, and chat prompted a plain-text model with a chat template).
    const listed = (await workbench.api['models.list']()).find((m) => m.dir === empty)
    expect(listed?.source).toBe('linked')
    expect(listed?.provenance).toMatchObject({ fromRun: 'capitals-run', promptFormat: expect.any(String), linked: empty })
    // A copy of the folder linked without a name takes the export's name, not the copy's folder name.
    const copy = join(workspace, 'copy1')
    cpSync(empty, copy, { recursive: true })
    const link = linkModelFolder(workspace, copy)
    expect(link.name).toBe(listed?.name)
    expect(link.provenance).toMatchObject({ fromRun: 'capitals-run', linked: copy })
    expect(linkModelFolder(workspace, copy, 'mine').name).toBe('mine')
  })

  it('replaces the listing of a folder deleted by hand when exporting into it again (it was listed twice, as "X" and "X 2")', async () => {
    const { workbench, workspace } = setup()
    makeRun(workspace, 'completed', 60, [60])
    const out = join(workspace, 'out')
    const first = await workbench.api['runs.export']({ id: 'capitals-run', outDir: out })
    expect(first.name).toBe('capitals (fine-tuned)')
    rmSync(out, { recursive: true })
    const second = await workbench.api['runs.export']({ id: 'capitals-run', outDir: out })
    expect(second.name).toBe('capitals (fine-tuned)')
    const listed = (await workbench.api['models.list']()).filter((m) => m.dir === out)
    expect(listed.map((m) => m.id)).toEqual([second.id])
    // A link to another folder, or a folder that has a model in it, stays.
    const other = await workbench.api['runs.export']({ id: 'capitals-run', outDir: join(workspace, 'other') })
    await expect(workbench.api['runs.export']({ id: 'capitals-run', outDir: out })).rejects.toMatchObject({ field: 'outDir' })
    expect((await workbench.api['models.list']()).map((m) => m.id)).toEqual(expect.arrayContaining([second.id, other.id]))
  })

  it("an outDir inside the workspace's models/ is listed once, as a workspace model, by the name it was given", async () => {
    const { workbench, workspace } = setup()
    makeRun(workspace, 'completed', 60, [60])
    const out = join(workspace, 'models', 'esft-exp')
    const entry = await workbench.api['runs.export']({ id: 'capitals-run', outDir: out })
    expect(entry).toMatchObject({ id: 'esft-exp', name: 'capitals (fine-tuned)', source: 'workspace', dir: out })
    // (it was listed twice, linked and in the workspace, and the name printed then named neither)
    const listed = (await workbench.api['models.list']()).filter((m) => m.dir === out)
    expect(listed.map((m) => [m.id, m.name, m.source])).toEqual([['esft-exp', 'capitals (fine-tuned)', 'workspace']])
  })

  it("passes the engine's warnings on with the exported model (a hash-routed model in transformers)", async () => {
    const { workbench, workspace } = setup()
    makeRun(workspace, 'completed', 60, [60])
    const warned = fakeSpawner({
      handlers: {
        'runs.export': (args) => {
          mkdirSync(args.outDir, { recursive: true })
          writeFileSync(join(args.outDir, 'config.json'), '{}')
          return { outDir: args.outDir, files: ['model.safetensors'], mergedLora: false, warnings: ['routes by hash'] }
        },
      },
    })
    const service = new Workbench({ engine: new EngineClient(warned.spawner), host: 'server', workspace })
    services.push(service)
    const entry = await service.api['runs.export']({ id: 'capitals-run' })
    expect(entry.provenance).toMatchObject({ warnings: ['routes by hash'] })
    expect((await workbench.api['runs.export']({ id: 'capitals-run' })).provenance?.warnings).toBeUndefined()
  })

  it('exportedCheckpoint', () => {
    const last = '/ws/runs/r/checkpoints/step-60'
    expect(exportedCheckpoint({ status: 'completed', totalSteps: 60 }, `${last}/`, last)).toMatchObject({ final: true, step: 60 })
    expect(exportedCheckpoint({ status: 'running', totalSteps: 60 }, last, last)).toEqual({
      step: 60,
      final: false,
      label: 'checkpoint step 60 of 60',
    })
    expect(exportedCheckpoint({ status: 'interrupted', totalSteps: 0 }, '/x/step-5', '/x/step-5').label).toBe('checkpoint step 5')
  })
})
