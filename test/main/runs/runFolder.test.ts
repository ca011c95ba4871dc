/** The run folder: one writer (the lock), atomic checkpoints, log truncation on resume, orphans, repair. */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { RunRecord } from '../../../src/shared/runs'
import { listRunFolders, processStartOf, repairRuns, RunFolder, RunLockedError, spread } from '../../../src/main/runs/runFolder'

const tmp = (): string => mkdtempSync(join(tmpdir(), 'moe-runfolder-'))

function record(id: string, patch: Partial<RunRecord> = {}): RunRecord {
  return {
    id,
    status: 'running',
    config: {} as RunRecord['config'],
    baseModel: '/m',
    created: '2026-01-01T00:00:00.000Z',
    updated: '2026-01-01T00:00:00.000Z',
    step: 7,
    totalSteps: 10,
    bestValLoss: null,
    lastCheckpoint: null,
    ...patch,
  }
}

/** A finished checkpoint folder (trainer_state.json is what makes it complete). */
function checkpoint(f: RunFolder, step: number): void {
  f.writeCheckpoint(step, (dir) => writeFileSync(join(dir, 'trainer_state.json'), '{}'))
}

const children: ReturnType<typeof spawn>[] = []
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL')
})

/** A live process that is not this one. */
async function otherProcess(): Promise<number> {
  const c = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' })
  children.push(c)
  await new Promise((r) => c.once('spawn', r))
  return c.pid!
}

describe('RunFolder', () => {
  it('writes run.json atomically and reads it back; a folder without one is named in the error', () => {
    const f = new RunFolder(join(tmp(), 'r1'))
    expect(f.exists()).toBe(false)
    expect(() => f.read()).toThrow(/r1 is not a run folder/)
    f.write(record('r1'))
    expect(f.update({ status: 'completed' })).toMatchObject({ id: 'r1', status: 'completed', step: 7 })
    expect(f.read().status).toBe('completed')
    expect(readdirSync(f.dir)).toEqual(['run.json'])
  })

  it('keeps one writer: a second lock is refused naming the holder; a dead holder is taken over; release frees it', async () => {
    const f = new RunFolder(join(tmp(), 'r'))
    const lock = f.acquire('the test')
    expect(() => f.acquire('another writer')).toThrow(RunLockedError)
    expect(() => f.acquire('another writer')).toThrow(new RegExp(`in use by the test \\(pid ${process.pid} on ${hostname()}`))
    lock.release()
    expect(existsSync(f.lockFile)).toBe(false)

    // A live process of someone else holds it.
    const pid = await otherProcess()
    writeFileSync(
      f.lockFile,
      JSON.stringify({ pid, host: hostname(), processStart: processStartOf(pid), since: 'now', by: 'moe-workbench train' }),
    )
    expect(f.isLocked()).toBe(true)
    expect(() => f.acquire('me')).toThrow(/in use by moe-workbench train \(pid \d+/)

    // Its process died (or the pid now names another program): the lock is stale.
    writeFileSync(f.lockFile, JSON.stringify({ pid, host: hostname(), processStart: 'not-its-start', since: 'x', by: 'gone' }))
    expect(f.isLocked()).toBe(false)
    const mine = f.acquire('me')
    expect(JSON.parse(readFileSync(f.lockFile, 'utf8'))).toMatchObject({ pid: process.pid, by: 'me' })
    // Releasing twice, or after someone else took the file, removes nothing of theirs.
    writeFileSync(f.lockFile, JSON.stringify({ pid: 1, host: 'elsewhere', processStart: null, since: 'y', by: 'other host' }))
    mine.release()
    expect(existsSync(f.lockFile)).toBe(true)
    // A lock from another host counts as live: we cannot tell.
    expect(f.isLocked()).toBe(true)
  })

  it('writes checkpoints atomically, lists the complete ones, prunes all but the newest and the best', () => {
    const f = new RunFolder(join(tmp(), 'r'))
    for (const s of [10, 20, 30, 40]) checkpoint(f, s)
    mkdirSync(join(f.checkpointsDir, 'step-50')) // no trainer_state.json: incomplete
    expect(f.checkpointSteps()).toEqual([10, 20, 30, 40])
    expect(f.lastCheckpoint()).toBe(join(f.checkpointsDir, 'step-40'))
    expect(() =>
      f.writeCheckpoint(60, (dir) => {
        writeFileSync(join(dir, 'weights'), 'half')
        throw new Error('disk full')
      }),
    ).toThrow('disk full')
    expect(readdirSync(f.checkpointsDir).sort()).toEqual(['step-10', 'step-20', 'step-30', 'step-40', 'step-50'])
    f.pruneCheckpoints(2, 10)
    expect(readdirSync(f.checkpointsDir).sort()).toEqual(['step-10', 'step-40', 'step-50'])
    // The detail lists the complete ones, for the run card's export (only the last could be exported)
    f.write(record('r'))
    expect(f.readDetail().checkpoints).toEqual([10, 40].map((step) => ({ step, dir: join(f.checkpointsDir, `step-${step}`) })))
  })

  it('cuts the logs back to a step on resume, so each step appears once (torn lines dropped)', () => {
    const f = new RunFolder(join(tmp(), 'r'))
    f.write(record('r'))
    for (let s = 1; s <= 6; s++) {
      f.appendMetrics({ type: 'step', step: s, elapsedSec: 10 * s } as never)
      f.appendRouting(s, [])
    }
    f.appendMetrics({ type: 'eval', step: 4 } as never)
    f.appendMetrics({ type: 'alert', step: 5 } as never)
    writeFileSync(f.metricsFile, readFileSync(f.metricsFile, 'utf8') + '{"type":"step","st')
    // the run's time at that step, for a resume to count on from (its Elapsed went back to 0)
    expect(f.truncateLogs(4)).toBe(40)
    const steps = (file: string): unknown[] =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { step: number }).step)
    expect(steps(f.metricsFile)).toEqual([1, 2, 3, 4, 4])
    expect(steps(f.routingFile)).toEqual([1, 2, 3, 4])
    expect(f.truncateLogs(0)).toBe(0)
    expect(readFileSync(f.metricsFile, 'utf8')).toBe('')
    expect(f.readDetail().steps).toEqual([])
  })

  it('gives routing snapshots spread over the whole run, the latest among them (not the last 200 steps only)', () => {
    const f = new RunFolder(join(tmp(), 'r'))
    f.write(record('r'))
    for (let s = 1; s <= 300; s++) f.appendRouting(s, [])
    const steps = f.readDetail().routing.map((r) => r.step)
    expect(steps).toHaveLength(200)
    expect(steps[0]).toBe(1)
    expect(steps.at(-1)).toBe(300)
    // evenly: gaps of 1 or 2 steps, never a run of the tail alone
    const gaps = new Set(steps.slice(1).map((s, i) => s - steps[i]))
    expect([...gaps].sort()).toEqual([1, 2])
    expect(f.readDetail(300).routing.map((r) => r.step)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1))
    expect(spread([1, 2, 3], 1)).toEqual([3])
    expect(spread([1, 2, 3], 0)).toEqual([])
    expect(spread([1, 2, 3, 4, 5], 3)).toEqual([1, 3, 5])
  })

  it("gives the run log's last lines with the detail, without their times (a reopened run showed none)", () => {
    const f = new RunFolder(join(tmp(), 'r'))
    f.write(record('r'))
    expect(f.readDetail().log).toEqual([])
    for (let i = 1; i <= 5; i++) f.appendLog(`line ${i}: starting at 12:00:00`)
    expect(readFileSync(f.logFile, 'utf8')).toMatch(/^\d{4}-\d\d-\d\dT\S+Z line 1: /)
    expect(f.readDetail().log).toEqual([
      'line 1: starting at 12:00:00',
      'line 2: starting at 12:00:00',
      'line 3: starting at 12:00:00',
      'line 4: starting at 12:00:00',
      'line 5: starting at 12:00:00',
    ])
    expect(f.readDetail(200, 2).log).toEqual(['line 4: starting at 12:00:00', 'line 5: starting at 12:00:00'])
  })

  it("keeps its checkpoints' scores, oldest first; a line cut off by a crash spoils only itself, and malformed ones are left out", () => {
    const f = new RunFolder(join(tmp(), 'r1'))
    f.write(record('r1'))
    expect(f.readScores()).toEqual([])
    const report = {
      model: 'm',
      split: 'validation' as const,
      n: 2,
      skipped: 0,
      exactMatch: 0.5,
      f1: 0.75,
      loss: 1.25,
      seconds: 3,
      items: [],
    }
    const score = (step: number): Parameters<RunFolder['appendScore']>[0] => ({
      date: '2026-12-04T10:00:00.000Z',
      step,
      checkpoint: f.checkpointDir(step),
      dataset: 'd1',
      report: { ...report, items: [{ prompt: 'q', expected: 'a', generated: 'a', exact: true, f1: 1, loss: 0.5 }] },
    })
    f.appendScore(score(10))
    // A crash in the middle of writing a score: the next one still reads.
    writeFileSync(f.scoresFile, readFileSync(f.scoresFile, 'utf8') + JSON.stringify(score(15)).slice(0, 40))
    f.appendScore(score(20))
    // By hand: not a score, a report without its figures, an item without its answer.
    const bad = [
      { step: 3 },
      { ...score(4), report: { ...report, exactMatch: 'high' } },
      { ...score(5), report: { ...report, items: [{ prompt: 'q' }] } },
    ]
    writeFileSync(f.scoresFile, readFileSync(f.scoresFile, 'utf8') + bad.map((b) => JSON.stringify(b) + '\n').join(''))
    f.appendScore(score(30))
    expect(f.readScores().map((s) => s.step)).toEqual([10, 20, 30])
    expect(f.readScores()[0]).toEqual(score(10))
    expect(f.readDetail().scores!.map((s) => s.step)).toEqual([10, 20, 30])
  })

  it('removes what a killed writer left half-written', () => {
    const f = new RunFolder(join(tmp(), 'r'))
    f.write(record('r'))
    checkpoint(f, 5)
    mkdirSync(join(f.checkpointsDir, 'step-10.tmp-4242'))
    writeFileSync(join(f.checkpointsDir, 'step-10.tmp-4242', 'model.safetensors'), 'x')
    writeFileSync(join(f.dir, 'run.json.tmp-4242-abc'), '{')
    expect(f.cleanOrphans().length).toBe(2)
    expect(readdirSync(f.checkpointsDir)).toEqual(['step-5'])
    expect(readdirSync(f.dir).sort()).toEqual(['checkpoints', 'run.json'])
  })

  it('repairs a run whose writer died: interrupted, from its last checkpoint; leaves live and finished runs alone', async () => {
    const root = tmp()
    const dead = new RunFolder(join(root, 'dead'))
    dead.write(record('dead', { created: '2026-01-02T00:00:00.000Z' }))
    checkpoint(dead, 5)
    mkdirSync(join(dead.checkpointsDir, 'step-7.tmp-99'))
    writeFileSync(dead.lockFile, JSON.stringify({ pid: 2 ** 22 + 17, host: hostname(), processStart: null, since: 'x', by: 'the engine' }))

    const fresh = new RunFolder(join(root, 'fresh'))
    fresh.write(record('fresh', { status: 'queued', step: 0 }))

    const live = new RunFolder(join(root, 'live'))
    live.write(record('live'))
    const pid = await otherProcess()
    writeFileSync(live.lockFile, JSON.stringify({ pid, host: hostname(), processStart: processStartOf(pid), since: 'x', by: 'the CLI' }))

    const done = new RunFolder(join(root, 'done'))
    done.write(record('done', { status: 'completed' }))

    const repaired = repairRuns(root)
    expect(repaired.map((r) => r.id).sort()).toEqual(['dead', 'fresh'])
    expect(dead.read()).toMatchObject({
      status: 'interrupted',
      step: 5,
      lastCheckpoint: join(dead.checkpointsDir, 'step-5'),
      message: expect.stringMatching(/pid \d+\) stopped; resume continues from step-5/),
    })
    expect(existsSync(dead.lockFile)).toBe(false)
    expect(readdirSync(dead.checkpointsDir)).toEqual(['step-5'])
    expect(fresh.read()).toMatchObject({ status: 'interrupted', message: expect.stringMatching(/before its first checkpoint/) })
    expect(live.read().status).toBe('running')
    expect(live.repair({ force: true, status: 'failed', reason: 'its engine crashed' })?.status).toBe('failed')
    expect(done.read().status).toBe('completed')
    const listed = listRunFolders(root).map((r) => r.record.id)
    expect(listed[0]).toBe('dead') // newest first
    expect(listed.sort()).toEqual(['dead', 'done', 'fresh', 'live'])
  })
})
