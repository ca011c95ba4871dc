/**
 * A soak test of run reliability (not part of `npm test`): trains a tiny model in a host process
 * (a Workbench service with its real engine), and at random moments kills the host (-9), kills
 * host and engine together, sends SIGINT or SIGTERM to the host, or kills the engine alone; then
 * restarts and resumes. After every round it checks the invariants:
 *
 * - the run is never left `running` once its processes are gone (after a restart's repair);
 * - every step in metrics.jsonl appears once, 1..step in order;
 * - no checkpoints/step-N.tmp-* or run.json.tmp-* orphans, no stale run.lock;
 * - the run resumes, and finally completes.
 *
 *   npx tsx scripts/soak-runs.ts [--rounds 20] [--seed 1] [--keep]
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { parseArgs } from 'node:util'
import { RunFolder } from '../src/main/runs/runFolder'
import { EngineClient, forkSpawner } from '../src/main/service/engineClient'
import { Workbench } from '../src/main/service/workbench'
import { Rng } from '../src/main/engine/ops'

const ROOT = resolve(import.meta.dirname, '..')
const HOST = join(ROOT, 'test/main/service/fixtures/trainingHost.ts')
const CONFIG = { maxSteps: 400, batchSize: 1, checkpointEvery: 7, evalEvery: 25, keepCheckpoints: 2 }

const { values } = parseArgs({ options: { rounds: { type: 'string' }, seed: { type: 'string' }, keep: { type: 'boolean' } } })
const rounds = Number(values.rounds ?? 20)
const rng = new Rng(Number(values.seed ?? 1))

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function waitFor(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function check(runDir: string, label: string): { step: number; status: string } {
  const folder = new RunFolder(runDir)
  const record = folder.read()
  const problems: string[] = []
  const steps = readFileSync(folder.metricsFile, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { type: string; step: number })
    .filter((l) => l.type === 'step')
    .map((l) => l.step)
  steps.forEach((s, i) => s !== i + 1 && problems.push(`metrics step ${s} at line ${i + 1}`))
  if (record.status === 'running' || record.status === 'queued') problems.push(`left ${record.status}`)
  const orphans = [
    ...(existsSync(folder.checkpointsDir) ? readdirSync(folder.checkpointsDir) : []).filter((n) => n.includes('.tmp-')),
    ...readdirSync(runDir).filter((n) => n.includes('.tmp-')),
  ]
  if (orphans.length) problems.push(`orphans: ${orphans.join(', ')}`)
  if (existsSync(folder.lockFile)) problems.push('a stale run.lock')
  if (problems.length) throw new Error(`${label}: ${problems.join('; ')}`)
  return { step: record.step, status: record.status }
}

async function host(
  ws: string,
  model: string,
  dataset: string,
  resumeId?: string,
): Promise<{ child: ChildProcess; runId: string; enginePid: number }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', HOST, ws, model, dataset, JSON.stringify(CONFIG), ...(resumeId ? [resumeId] : [])],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  )
  let runId = resumeId ?? ''
  let enginePid = 0
  const target = 1 + Math.floor(rng.next() * 12)
  for await (const raw of createInterface({ input: child.stdout! })) {
    const line = JSON.parse(raw) as { type: string; runId?: string; enginePid?: number; status?: string; metrics?: { step: number } }
    if (line.type === 'host.ready') enginePid = line.enginePid!
    if (line.type === 'host.started') runId = line.runId!
    if (line.type === 'host.error') throw new Error(`host: ${JSON.stringify(line)}`)
    if (line.type === 'run.status' && line.status === 'completed') break
    // A random number of steps into this session (checkpoint writes included, every 7 steps).
    if (line.type === 'run.step' && line.metrics!.step % 13 === target) break
  }
  return { child, runId, enginePid }
}

async function main(): Promise<void> {
  const ws = mkdtempSync(join(tmpdir(), 'moe-soak-'))
  const setup = new Workbench({ engine: new EngineClient(forkSpawner(), { backend: 'wasm' }), host: 'cli', workspace: ws })
  const model = await setup.api['models.create']({
    name: 'soak',
    tokenizerFrom: join(ROOT, 'test/fixtures/data/models/tiny-chatml'),
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
  const ds = await setup.api['datasets.import']({
    file: join(ROOT, 'test/fixtures/data/layouts/alpaca.jsonl'),
    name: 'a',
    split: { validation: 0.34 },
  })
  await setup.close()

  const kinds = ['kill -9 host', 'kill -9 host and engine', 'SIGINT host', 'SIGTERM host', 'kill -9 engine'] as const
  let runId: string | undefined
  for (let round = 1; round <= rounds; round++) {
    const kind = kinds[Math.floor(rng.next() * kinds.length)]
    const h = await host(ws, model.dir, ds.id, runId)
    runId = h.runId
    const runDir = join(ws, 'runs', runId)
    if (new RunFolder(runDir).read().status === 'completed') break
    if (kind === 'kill -9 host') h.child.kill('SIGKILL')
    else if (kind === 'kill -9 host and engine') {
      process.kill(h.enginePid, 'SIGKILL')
      h.child.kill('SIGKILL')
    } else if (kind === 'kill -9 engine') {
      process.kill(h.enginePid, 'SIGKILL')
      await new Promise((r) => setTimeout(r, 300))
      h.child.kill('SIGKILL')
    } else h.child.kill(kind === 'SIGINT host' ? 'SIGINT' : 'SIGTERM')
    await waitFor(() => h.child.exitCode !== null || h.child.signalCode !== null, 'the host to end')
    await waitFor(() => !alive(h.enginePid), 'the engine to end')
    // A restart repairs what the dead processes left, as the app and server do at start.
    const wb = new Workbench({ engine: new EngineClient(forkSpawner(), { backend: 'wasm' }), host: 'cli', workspace: ws })
    await wb.close()
    const state = check(runDir, `round ${round} (${kind})`)
    console.log(`round ${round}: ${kind} → ${state.status} at step ${state.step}`)
  }
  // Finish the run and check it once more.
  const wb = new Workbench({ engine: new EngineClient(forkSpawner(), { backend: 'wasm' }), host: 'cli', workspace: ws })
  const runDir = join(ws, 'runs', runId!)
  if (new RunFolder(runDir).read().status !== 'completed') {
    await wb.api['runs.resume']({ id: runId! })
    await waitFor(() => new RunFolder(runDir).read().status === 'completed', 'the run to complete', 600_000)
  }
  await wb.close()
  const final = check(runDir, 'final')
  console.log(`soak passed: ${rounds} rounds, the run completed at step ${final.step}; every step logged once, no orphans`)
  if (!values.keep) rmSync(ws, { recursive: true, force: true })
  else console.log(`workspace kept: ${ws}`)
}

main().catch((e: unknown) => {
  console.error(`soak FAILED: ${e instanceof Error ? e.message : String(e)}`)
  process.exit(1)
})
