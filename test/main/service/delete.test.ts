/**
 * runs.delete, datasets.delete and models.delete: a run that is not training goes with its
 * checkpoints (models exported from it stay); a dataset goes unless a run that may still resume
 * reads it; a model made here goes unless a run was trained from it or a chat has it open, a
 * linked one loses its link only; none leaves half a folder for a listing to show.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { RunRecord, RunStatus } from '../../../src/shared/runs'
import { runConfigSchema } from '../../../src/shared/runConfig'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { EngineClient } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { ApiError } from '../../../src/shared/api'
import { linkModelFolder } from '../../../src/main/service/workspace'
import { LAYOUTS, tempDir } from '../data/helpers'
import { fakeSpawner, type FakeEngineOptions } from './fakeEngine'

const services: Workbench[] = []
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()))
})

function setup(options: FakeEngineOptions = {}, bundledModel?: string) {
  const workspace = tempDir()
  const workbench = new Workbench({ engine: new EngineClient(fakeSpawner(options).spawner), host: 'server', workspace, bundledModel })
  services.push(workbench)
  return { workbench, workspace }
}

function makeRun(workspace: string, id: string, status: RunStatus, dataset: string, baseModel = '/models/base'): RunFolder {
  const folder = new RunFolder(join(workspace, 'runs', id))
  const record: RunRecord = {
    id,
    status,
    config: runConfigSchema.parse({ method: 'lora', maxSteps: 10 }),
    baseModel,
    dataset,
    created: '2025-01-01T00:00:00.000Z',
    updated: '2025-01-01T00:00:00.000Z',
    step: 5,
    totalSteps: 10,
    bestValLoss: null,
    lastCheckpoint: null,
  }
  folder.write(record)
  mkdirSync(folder.checkpointDir(5), { recursive: true })
  writeFileSync(join(folder.checkpointDir(5), 'trainer_state.json'), '{}')
  return folder
}

describe('runs.delete', () => {
  it('removes a run that is not training, with its checkpoints; refuses one that is, and an unknown id', async () => {
    const { workbench, workspace } = setup()
    makeRun(workspace, 'done', 'completed', 'd')
    makeRun(workspace, 'stopped', 'cancelled', 'd')
    makeRun(workspace, 'busy', 'running', 'd')
    const lease = new RunFolder(join(workspace, 'runs', 'busy')).acquire('a test') // a live process trains it
    await workbench.api['runs.delete']({ id: 'stopped' })
    expect((await workbench.api['runs.list']()).map((r) => r.id).sort()).toEqual(['busy', 'done'])
    expect(readdirSync(join(workspace, 'runs')).sort()).toEqual(['busy', 'done']) // nothing left aside
    await expect(workbench.api['runs.delete']({ id: 'busy' })).rejects.toMatchObject({
      code: 'failed',
      message: 'run busy is running; cancel it first, then delete it',
    })
    expect(existsSync(join(workspace, 'runs', 'busy', 'run.json'))).toBe(true)
    await expect(workbench.api['runs.delete']({ id: 'nope' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'id' })
    await expect(workbench.call('runs.delete', { id: '../etc' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'id' })
    await workbench.api['runs.delete']({ id: 'done' })
    expect((await workbench.api['runs.list']()).map((r) => r.id)).toEqual(['busy'])
    lease.release()
  })

  it('a run left "running" by a process that died is interrupted, and may go', async () => {
    const { workbench, workspace } = setup()
    makeRun(workspace, 'orphan', 'running', 'd') // no lock: its process is gone
    await workbench.api['runs.delete']({ id: 'orphan' })
    expect(await workbench.api['runs.list']()).toEqual([])
  })
})

describe('datasets.delete', () => {
  it('removes an imported dataset unless a run that may still resume reads it (its source file stays)', async () => {
    const { workbench, workspace } = setup()
    const source = join(LAYOUTS, 'alpaca.jsonl')
    const a = await workbench.api['datasets.import']({ file: source, name: 'a' })
    const b = await workbench.api['datasets.import']({ file: source, name: 'b' })
    makeRun(workspace, 'half', 'interrupted', a.id)
    makeRun(workspace, 'finished', 'completed', b.id)
    await expect(workbench.api['datasets.delete']({ id: a.id })).rejects.toMatchObject({
      code: 'failed',
      message: `dataset ${a.id} is used by run half (interrupted), which may still resume from it; delete that run first, or let it complete`,
    })
    await workbench.api['datasets.delete']({ id: b.id }) // its run completed: it reads nothing more
    expect((await workbench.api['datasets.list']()).map((d) => d.id)).toEqual([a.id])
    expect(readdirSync(join(workspace, 'datasets'))).toEqual([a.id])
    expect(existsSync(source)).toBe(true)
    await workbench.api['runs.delete']({ id: 'half' })
    await workbench.api['datasets.delete']({ id: a.id })
    expect(await workbench.api['datasets.list']()).toEqual([])
    await expect(workbench.api['datasets.delete']({ id: a.id })).rejects.toMatchObject({ code: 'invalid_argument', field: 'id' })
  })
})

/** A model folder as the workspace holds one made or exported here. */
function makeModel(workspace: string, id: string): string {
  const dir = join(workspace, 'models', id)
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'config.json'), '{}')
  writeFileSync(join(dir, 'workbench.json'), JSON.stringify({ name: id }))
  return dir
}

describe('models.delete', () => {
  it('removes a model made here unless a run was trained from it; a linked one loses its link, its folder stays', async () => {
    const elsewhere = tempDir()
    writeFileSync(join(elsewhere, 'config.json'), '{}')
    const { workbench, workspace } = setup()
    makeModel(workspace, 'spare')
    const base = makeModel(workspace, 'base')
    const linked = linkModelFolder(workspace, elsewhere, 'mine')
    makeRun(workspace, 'tuned', 'completed', 'd', base)
    const ids = async (): Promise<string[]> =>
      (await workbench.api['models.list']())
        .filter((m) => m.source !== 'bundled')
        .map((m) => m.id)
        .sort()
    expect(await ids()).toEqual(['base', linked.id, 'spare'].sort())

    await workbench.api['models.delete']({ id: 'spare' })
    expect(await ids()).toEqual(['base', linked.id].sort())
    await expect(workbench.api['models.delete']({ id: 'base' })).rejects.toMatchObject({
      code: 'failed',
      message:
        'model base is the base of run tuned, which needs it to resume, evaluate, chat and export; delete that run first (export it to keep what it learned)',
    })
    expect(existsSync(join(base, 'config.json'))).toBe(true)
    await workbench.api['models.delete']({ id: linked.id })
    expect(existsSync(join(elsewhere, 'config.json'))).toBe(true) // the user's folder
    expect(readdirSync(join(workspace, 'models'))).toEqual(['base']) // nothing left aside
    await workbench.api['runs.delete']({ id: 'tuned' })
    await workbench.api['models.delete']({ id: 'base' })
    expect(await ids()).toEqual([])
    await expect(workbench.api['models.delete']({ id: 'base' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'id' })
    await expect(workbench.call('models.delete', { id: '../runs' })).rejects.toMatchObject({ code: 'invalid_argument', field: 'id' })
  })

  it('refuses the bundled model, and a model the engine has open (its folder stays)', async () => {
    const bundled = tempDir()
    writeFileSync(join(bundled, 'config.json'), '{}')
    const open = new Set<string>()
    const { workbench, workspace } = setup(
      {
        handlers: {
          'models.forget': (args) => {
            if (open.has(args.dir)) throw new ApiError('failed', `${args.dir} is open in a chat`)
          },
        },
      },
      bundled,
    )
    await expect(workbench.api['models.delete']({ id: 'default' })).rejects.toMatchObject({
      code: 'invalid_argument',
      field: 'id',
      message: 'id: the bundled model ships with the app and cannot be deleted',
    })
    expect(existsSync(join(bundled, 'config.json'))).toBe(true)
    const dir = makeModel(workspace, 'chatting')
    open.add(dir)
    await expect(workbench.api['models.delete']({ id: 'chatting' })).rejects.toMatchObject({
      code: 'failed',
      message: `${dir} is open in a chat`,
    })
    expect(existsSync(join(dir, 'config.json'))).toBe(true)
    open.clear()
    await workbench.api['models.delete']({ id: 'chatting' })
    expect(existsSync(dir)).toBe(false)
  })
})
