/**
 * Runs survive a quit, a kill -9 of the host, a kill -9 of host and engine together, and a second
 * writer: with real engine processes (src/main/engineProcess/process.ts via tsx) and a real host
 * process (fixtures/trainingHost.ts) where a kill is involved.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { RunEvent, RunRecord, WorkbenchEvent } from '../../../src/shared/api'
import { runCli } from '../../../src/main/cli/index'
import { RunFolder } from '../../../src/main/runs/runFolder'
import { EngineClient, forkSpawner } from '../../../src/main/service/engineClient'
import { Workbench } from '../../../src/main/service/workbench'
import { CHATML_MODEL, FIXTURES } from '../data/helpers'

const HOST = fileURLToPath(new URL('./fixtures/trainingHost.ts', import.meta.url))
const LONG_RUN = { maxSteps: 2000, batchSize: 1, checkpointEvery: 1000, evalEvery: 0 }

const services: Workbench[] = []
const hosts: ChildProcess[] = []
afterEach(async () => {
  for (const h of hosts.splice(0)) h.kill('SIGKILL')
  await Promise.all(services.splice(0).map((w) => w.close()))
})

function service(workspace: string): Workbench {
  const wb = new Workbench({
    engine: new EngineClient(forkSpawner(), { backend: 'wasm', stopTimeoutMs: 60_000 }),
    host: 'server',
    workspace,
  })
  services.push(wb)
  return wb
}

function until<T extends WorkbenchEvent>(wb: Workbench, pred: (e: WorkbenchEvent) => e is T, timeoutMs = 90_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error('timed out waiting for an event'))
    }, timeoutMs)
    const off = wb.onEvent((e) => {
      if (pred(e)) {
        clearTimeout(timer)
        off()
        resolve(e)
      }
    })
  })
}

const stepAtLeast =
  (runId: string, n: number) =>
  (e: WorkbenchEvent): e is Extract<RunEvent, { type: 'run.step' }> =>
    e.type === 'run.step' && e.runId === runId && e.metrics.step >= n
const ended =
  (runId: string) =>
  (e: WorkbenchEvent): e is Extract<RunEvent, { type: 'run.status' }> =>
    e.type === 'run.status' && e.runId === runId && ['completed', 'cancelled', 'interrupted', 'failed'].includes(e.status)

/** Steps in metrics.jsonl, in file order. */
function loggedSteps(runDir: string): number[] {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step: number })
    .filter((l) => l.type === 'step')
    .map((l) => l.step)
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a + 1 }, (_, i) => a + i)

/** A workspace with a tiny model and an imported dataset. */
async function workspaceWithData(): Promise<{ workspace: string; model: string; dataset: string }> {
  // Shared by the tests (tempDir() would remove it after the first).
  const workspace = mkdtempSync(join(tmpdir(), 'moe-reliability-'))
  const wb = service(workspace)
  const model = await wb.api['models.create']({
    name: 'tiny',
    tokenizerFrom: CHATML_MODEL,
    config: {
      family: 'mixtral',
      hiddenSize: 32,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      headDim: 8,
      expertIntermediateSize: 32,
      numExperts: 4,
      topK: 2,
    },
  })
  const ds = await wb.api['datasets.import']({ file: join(FIXTURES, 'layouts/alpaca.jsonl'), name: 'a', split: { validation: 0 } })
  await wb.close()
  return { workspace, model: model.dir, dataset: ds.id }
}

interface HostLine {
  type: string
  runId?: string
  enginePid?: number
  metrics?: { step: number }
  message?: string
}

/** Starts a host process training a run; resolves once it has trained `steps` steps. */
async function hostTraining(
  ws: { workspace: string; model: string; dataset: string },
  steps: number,
  /** In a process group of its own (with its engine), as a command started in a terminal is. */
  group = false,
): Promise<{ host: ChildProcess; runId: string; enginePid: number }> {
  const host = spawn(process.execPath, ['--import', 'tsx', HOST, ws.workspace, ws.model, ws.dataset, JSON.stringify(LONG_RUN)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    detached: group,
  })
  hosts.push(host)
  let runId = ''
  let enginePid = 0
  const lines = createInterface({ input: host.stdout! })
  for await (const raw of lines) {
    const line = JSON.parse(raw) as HostLine
    if (line.type === 'host.ready') enginePid = line.enginePid!
    if (line.type === 'host.started') runId = line.runId!
    if (line.type === 'host.error') throw new Error(line.message)
    if (line.type === 'run.step' && line.metrics!.step >= steps) break
  }
  return { host, runId, enginePid }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

function noOrphans(runDir: string): void {
  const ckpts = join(runDir, 'checkpoints')
  if (existsSync(ckpts)) expect(readdirSync(ckpts).filter((n) => n.includes('.tmp-'))).toEqual([])
  expect(readdirSync(runDir).filter((n) => n.includes('.tmp-'))).toEqual([])
  expect(existsSync(join(runDir, 'run.lock'))).toBe(false)
}

/** Resumes with a fresh service, trains a few more steps, cancels: each step is logged once. */
async function resumeAndCheck(workspace: string, record: RunRecord): Promise<void> {
  const wb = service(workspace)
  await wb.api['runs.resume']({ id: record.id })
  await until(wb, stepAtLeast(record.id, record.step + 2))
  await wb.api['runs.cancel']({ id: record.id })
  const end = await until(wb, ended(record.id))
  expect(end.status).toBe('cancelled')
  expect(loggedSteps(join(workspace, 'runs', record.id))).toEqual(range(1, end.step))
}

describe('runs survive a quit, a kill and a second writer (real engine processes)', () => {
  let ws: Awaited<ReturnType<typeof workspaceWithData>>
  beforeAll(async () => {
    ws = await workspaceWithData()
  }, 120_000)

  it('a quit during training keeps the current step and marks the run interrupted; resume logs each step once', async () => {
    const wb = service(ws.workspace)
    const run = await wb.api['runs.start']({ model: ws.model, dataset: ws.dataset, config: LONG_RUN })
    await until(wb, stepAtLeast(run.id, 3))
    const statuses: string[] = []
    wb.onEvent((e) => e.type === 'run.status' && e.runId === run.id && statuses.push(e.status))
    await wb.close()
    // Listeners heard the interrupt before the engine went away.
    expect(statuses).toEqual(['interrupted'])
    const runDir = join(ws.workspace, 'runs', run.id)
    const record = new RunFolder(runDir).read()
    expect(record.status).toBe('interrupted')
    expect(record.step).toBeGreaterThanOrEqual(3)
    expect(record.lastCheckpoint).toBe(join(runDir, 'checkpoints', `step-${record.step}`))
    expect(loggedSteps(runDir)).toEqual(range(1, record.step))
    noOrphans(runDir)
    await resumeAndCheck(ws.workspace, record)
  }, 180_000)

  it('kill -9 of the host: its engine keeps the current step, marks the run interrupted and exits', async () => {
    const { host, runId, enginePid } = await hostTraining(ws, 3)
    host.kill('SIGKILL')
    const runDir = join(ws.workspace, 'runs', runId)
    await waitFor(() => !alive(enginePid), 'the orphaned engine to exit')
    const record = new RunFolder(runDir).read()
    expect(record).toMatchObject({ status: 'interrupted', message: expect.stringMatching(/interrupted at step \d+/) })
    expect(record.lastCheckpoint).toBe(join(runDir, 'checkpoints', `step-${record.step}`))
    noOrphans(runDir)
    await resumeAndCheck(ws.workspace, record)
  }, 180_000)

  it("Ctrl-C in a terminal (SIGINT to the host's whole process group): the engine lives on to keep the current step", async () => {
    const { host, runId, enginePid } = await hostTraining(ws, 3, true)
    const exited = new Promise<number | null>((resolve) => host.once('exit', (code) => resolve(code)))
    // What a terminal does on Ctrl-C: the signal goes to every process of the foreground group.
    process.kill(-host.pid!, 'SIGINT')
    expect(await exited).toBe(0)
    await waitFor(() => !alive(enginePid), 'the engine to exit with its host')
    const runDir = join(ws.workspace, 'runs', runId)
    const record = new RunFolder(runDir).read()
    // Interrupted at the step it reached, with that step's checkpoint (the run's own interval is 1000).
    expect(record).toMatchObject({ status: 'interrupted', message: `interrupted at step ${record.step}` })
    expect(record.step).toBeGreaterThanOrEqual(3)
    expect(record.lastCheckpoint).toBe(join(runDir, 'checkpoints', `step-${record.step}`))
    noOrphans(runDir)
  }, 180_000)

  it('kill -9 of host and engine together: the next start repairs the run as interrupted, resumable', async () => {
    const { host, runId, enginePid } = await hostTraining(ws, 2)
    process.kill(enginePid, 'SIGKILL')
    host.kill('SIGKILL')
    await waitFor(() => !alive(enginePid), 'the engine to die')
    const runDir = join(ws.workspace, 'runs', runId)
    expect(new RunFolder(runDir).read().status).toBe('running') // what the dead process left
    const wb = service(ws.workspace)
    expect(wb.repaired.map((r) => r.id)).toContain(runId)
    const record = (await wb.api['runs.get']({ id: runId })).record
    expect(record).toMatchObject({ status: 'interrupted', message: expect.stringMatching(/stopped before its first checkpoint/) })
    noOrphans(runDir)
    await wb.close()
    await resumeAndCheck(ws.workspace, record)
  }, 180_000)

  it('a second writer is refused with the owner named (another service, the CLI, the folder lock)', async () => {
    const { runId, enginePid } = await hostTraining(ws, 1)
    const runDir = join(ws.workspace, 'runs', runId)
    const wb = service(ws.workspace)
    expect(wb.repaired).toEqual([])
    await expect(wb.api['runs.resume']({ id: runId })).rejects.toMatchObject({
      message: expect.stringMatching(
        new RegExp(`run ${runId} is already running \\(the engine process of MoE Workbench \\(pid ${enginePid}\\)`),
      ),
    })
    await expect(wb.api['runs.cancel']({ id: runId })).rejects.toMatchObject({
      message: expect.stringMatching(new RegExp(`trained by another process .*pid ${enginePid}`)),
    })
    // The page follows such a run by reading it again: the detail says who trains it.
    expect((await wb.api['runs.get']({ id: runId })).trainedElsewhere).toMatch(new RegExp(`\\(pid ${enginePid} on \\S+\\)$`))
    const err: string[] = []
    const code = await runCli(['train', '--resume', runDir, '--backend', 'wasm'], { out: () => {}, err: (l) => err.push(l) })
    expect(code).toBe(1)
    expect(err.at(-1)).toMatch(/already running .*pid \d+/)
    expect(() => new RunFolder(runDir).acquire('this test')).toThrow(/in use by the engine process/)
  }, 180_000)
})
