/**
 * The one owner of a run folder (DESIGN.md "The workspace"):
 *
 *   <run>/run.json              the run record (config, status), written atomically
 *   <run>/metrics.jsonl         one line per step, evaluation and alert
 *   <run>/routing.jsonl         one line per step: each sparse layer's expert shares
 *   <run>/log                   human-readable lines
 *   <run>/checkpoints/step-N/   written to step-N.tmp-PID, then renamed
 *   <run>/run.lock              the one writer: pid, host, process start, since when, who
 *
 * Everything that reads or writes a run goes through here: the trainer and the engine's run queue
 * (the writer, holding the lock), the service (listing, details, and repair of runs whose writer
 * died), the CLI and export. No TF.js here.
 */
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { basename, join } from 'node:path'
import type {
  CheckpointScore,
  EvalMetrics,
  ExpertAlert,
  LayerShare,
  RunDetail,
  RunEvaluation,
  RunRecord,
  RunStatus,
  StepMetrics,
} from '../../shared/runs'
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic'

export class RunFolderError extends Error {}

/** Another live process writes this run. */
export class RunLockedError extends RunFolderError {
  constructor(
    readonly dir: string,
    readonly owner: LockInfo,
  ) {
    super(
      `run ${basename(dir)} is in use by ${owner.by} (pid ${owner.pid} on ${owner.host}, since ${owner.since}); stop it there, or wait for it to finish`,
    )
  }
}

/** What run.lock says about its holder. */
export interface LockInfo {
  pid: number
  host: string
  /** The holder's process start (Linux: /proc/PID/stat field 22), to tell a reused pid apart. */
  processStart: string | null
  since: string
  /** Who holds it, in words: "the engine of moe-workbench serve". */
  by: string
}

const STEP_DIR = /^step-(\d+)$/
export const stepName = (step: number): string => `step-${step}`

/** The start time of a process as the kernel records it, where the platform tells (Linux). */
export function processStartOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 22 (starttime), counted after the command name, which may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return fields[19] ?? null
  } catch {
    return null
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    // EPERM: it exists but belongs to someone else.
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Whether the process that wrote `info` still runs (a lock from another host is taken as live). */
export function lockHolderAlive(info: LockInfo): boolean {
  if (info.host !== hostname()) return true
  if (!pidAlive(info.pid)) return false
  const start = processStartOf(info.pid)
  return start === null || info.processStart === null || start === info.processStart
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return null
  }
}

/** Lines of a JSONL file; a torn last line (a crash mid-append) is skipped. */
/** At most `max` of xs, evenly spaced, the first and the last among them (all of them when they fit). */
export function spread<T>(xs: T[], max: number): T[] {
  if (xs.length <= max) return xs
  if (max <= 1) return max === 1 ? [xs[xs.length - 1]] : []
  return Array.from({ length: max }, (_, i) => xs[Math.round((i * (xs.length - 1)) / (max - 1))])
}

function readJsonl<T>(file: string): T[] {
  if (!existsSync(file)) return []
  const out: T[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue
    try {
      out.push(JSON.parse(line) as T)
    } catch {
      // the line being written when the process stopped
    }
  }
  return out
}

/** A held lock; release() once the run is no longer written. */
export interface RunLock {
  readonly info: LockInfo
  release(): void
}

type MetricsLine = ({ type: 'step' } & Omit<StepMetrics, 'layers'>) | ({ type: 'eval' } & EvalMetrics) | ({ type: 'alert' } & ExpertAlert)

export class RunFolder {
  readonly dir: string

  constructor(dir: string) {
    this.dir = dir
  }

  get id(): string {
    return basename(this.dir)
  }
  get recordFile(): string {
    return join(this.dir, 'run.json')
  }
  get metricsFile(): string {
    return join(this.dir, 'metrics.jsonl')
  }
  get routingFile(): string {
    return join(this.dir, 'routing.jsonl')
  }
  get logFile(): string {
    return join(this.dir, 'log')
  }
  get checkpointsDir(): string {
    return join(this.dir, 'checkpoints')
  }
  get lockFile(): string {
    return join(this.dir, 'run.lock')
  }

  /** Whether the folder holds a run (a run.json). */
  exists(): boolean {
    return existsSync(this.recordFile)
  }

  // -------------------------------------------------------------------------------------------
  // run.json

  /** The run record; throws naming the folder when there is none or it does not read. */
  read(): RunRecord {
    const r = this.tryRead()
    if (!r) throw new RunFolderError(`${this.dir} is not a run folder (no readable run.json)`)
    return r
  }

  tryRead(): RunRecord | null {
    const r = readJson<RunRecord>(this.recordFile)
    return r && typeof r === 'object' && typeof r.id === 'string' && typeof r.status === 'string' ? r : null
  }

  /** Writes the whole record atomically (creating the folder). */
  write(record: RunRecord): RunRecord {
    mkdirSync(this.dir, { recursive: true })
    writeJsonAtomic(this.recordFile, record)
    return record
  }

  /** Merges `patch` into the record on disk and stamps `updated`. */
  update(patch: Partial<RunRecord>): RunRecord {
    return this.write({ ...this.read(), ...patch, updated: new Date().toISOString() })
  }

  // -------------------------------------------------------------------------------------------
  // Logs

  appendMetrics(line: MetricsLine): void {
    appendFileSync(this.metricsFile, JSON.stringify(line) + '\n')
  }

  appendRouting(step: number, layers: LayerShare[]): void {
    appendFileSync(this.routingFile, JSON.stringify({ step, layers }) + '\n')
  }

  appendLog(line: string): void {
    mkdirSync(this.dir, { recursive: true })
    appendFileSync(this.logFile, `${new Date().toISOString()} ${line}\n`)
  }

  /**
   * Cuts metrics.jsonl and routing.jsonl back to what was logged up to `step` (a resume restarts
   * from that checkpoint and logs the later steps again): each step appears once.
   */
  /**
   * Drops what was logged after `step` (a resume trains those steps again); returns the run's
   * elapsed seconds at `step` (its last step line kept), 0 when none.
   */
  truncateLogs(step: number): number {
    let elapsed = 0
    const keep = (file: string, stepOf: (line: Record<string, unknown>) => unknown): void => {
      if (!existsSync(file)) return
      const lines = readFileSync(file, 'utf8').split('\n')
      const kept: string[] = []
      for (const line of lines) {
        if (!line.trim()) continue
        let parsed: Record<string, unknown>
        try {
          parsed = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue // a torn line from a crash
        }
        const s = stepOf(parsed)
        if (typeof s === 'number' && s <= step) {
          kept.push(line)
          if (parsed.type === 'step' && typeof parsed.elapsedSec === 'number' && Number.isFinite(parsed.elapsedSec))
            elapsed = parsed.elapsedSec
        }
      }
      writeFileAtomic(file, kept.length ? kept.join('\n') + '\n' : '')
    }
    keep(this.metricsFile, (l) => l.step)
    keep(this.routingFile, (l) => l.step)
    return elapsed
  }

  get evaluationFile(): string {
    return join(this.dir, 'eval.json')
  }

  /** The latest before/after evaluation, or null (none yet, or unreadable: it is only a report). */
  readEvaluation(): RunEvaluation | null {
    try {
      return JSON.parse(readFileSync(this.evaluationFile, 'utf8')) as RunEvaluation
    } catch {
      return null
    }
  }

  writeEvaluation(e: RunEvaluation): void {
    writeJsonAtomic(this.evaluationFile, e)
  }

  /**
   * The record with its metrics, evaluations, alerts and its routing (what runs.get answers): at
   * most `maxRouting` snapshots spread evenly over the whole run, the first and the latest among
   * them (the entropy chart's history spans the steps the other charts do; the last 200 alone
   * started a reopened 300-step run's chart at step 100).
   */
  readDetail(maxRouting = 200, maxLog = 300): RunDetail {
    const record = this.read()
    const lines = readJsonl<MetricsLine>(this.metricsFile)
    const strip = <T extends { type: string }>({ type: _t, ...rest }: T): Omit<T, 'type'> => rest
    return {
      record,
      steps: lines.filter((l) => l.type === 'step').map((l) => strip(l) as Omit<StepMetrics, 'layers'>),
      evals: lines.filter((l) => l.type === 'eval').map((l) => strip(l) as EvalMetrics),
      alerts: lines.filter((l) => l.type === 'alert').map((l) => strip(l) as ExpertAlert),
      routing: spread(readJsonl<{ step: number; layers: LayerShare[] }>(this.routingFile), maxRouting),
      evaluation: this.readEvaluation(),
      log: this.readLog(maxLog),
      checkpoints: this.checkpointSteps().map((step) => ({ step, dir: this.checkpointDir(step) })),
      scores: this.readScores(),
    }
  }

  get scoresFile(): string {
    return join(this.dir, 'scores.jsonl')
  }

  /**
   * Appends one checkpoint's score. A line cut off by a crash is ended first, so it spoils no
   * more than itself (appended to, it would have taken this score with it).
   */
  appendScore(score: CheckpointScore): void {
    let cut = false
    try {
      const text = readFileSync(this.scoresFile, 'utf8')
      cut = text.length > 0 && !text.endsWith('\n')
    } catch {
      // no scores yet
    }
    appendFileSync(this.scoresFile, `${cut ? '\n' : ''}${JSON.stringify(score)}\n`)
  }

  /** The checkpoints' scores, oldest first; lines that are not a whole score (cut, or edited by hand) are left out. */
  readScores(): CheckpointScore[] {
    const num = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x)
    return readJsonl<CheckpointScore>(this.scoresFile).filter(
      (s) =>
        s !== null &&
        typeof s === 'object' &&
        typeof s.date === 'string' &&
        Number.isInteger(s.step) &&
        typeof s.checkpoint === 'string' &&
        typeof s.dataset === 'string' &&
        s.report !== null &&
        typeof s.report === 'object' &&
        (s.report.split === 'train' || s.report.split === 'validation' || s.report.split === 'all') &&
        [s.report.n, s.report.exactMatch, s.report.f1].every(num) &&
        (s.report.loss === null || num(s.report.loss)) &&
        Array.isArray(s.report.items) &&
        s.report.items.every(
          (i) => i !== null && typeof i === 'object' && [i.prompt, i.expected, i.generated].every((t) => typeof t === 'string'),
        ),
    )
  }

  /** The log's last `max` lines without their leading ISO times (what run.log events carry). */
  readLog(max: number): string[] {
    let text: string
    try {
      text = readFileSync(this.logFile, 'utf8')
    } catch {
      return []
    }
    return text
      .split('\n')
      .filter((l) => l !== '')
      .slice(-max)
      .map((l) => l.replace(/^\d{4}-\d\d-\d\dT[\d:.]+Z /, ''))
  }

  // -------------------------------------------------------------------------------------------
  // Checkpoints

  /** Steps with a complete checkpoint (its trainer_state.json written last), ascending. */
  checkpointSteps(): number[] {
    if (!existsSync(this.checkpointsDir)) return []
    return readdirSync(this.checkpointsDir)
      .map((n) => STEP_DIR.exec(n))
      .filter((m): m is RegExpExecArray => m !== null && existsSync(join(this.checkpointsDir, m[0], 'trainer_state.json')))
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b)
  }

  checkpointDir(step: number): string {
    return join(this.checkpointsDir, stepName(step))
  }

  /** The most recent complete checkpoint folder, or null. */
  lastCheckpoint(): string | null {
    const steps = this.checkpointSteps()
    return steps.length ? this.checkpointDir(steps[steps.length - 1]) : null
  }

  /**
   * Writes checkpoint `step` atomically: `fill` writes into a temporary folder, which then
   * replaces checkpoints/step-N. Returns the final folder.
   */
  writeCheckpoint(step: number, fill: (tmpDir: string) => void): string {
    const final = this.checkpointDir(step)
    const tmp = `${final}.tmp-${process.pid}`
    rmSync(tmp, { recursive: true, force: true })
    mkdirSync(tmp, { recursive: true })
    try {
      fill(tmp)
      rmSync(final, { recursive: true, force: true })
      renameSync(tmp, final)
    } catch (e) {
      rmSync(tmp, { recursive: true, force: true })
      throw e
    }
    return final
  }

  /** Keeps the `keep` most recent checkpoints and the best one. */
  pruneCheckpoints(keep: number, best: number | null): void {
    if (!existsSync(this.checkpointsDir)) return
    const steps = readdirSync(this.checkpointsDir)
      .map((n) => STEP_DIR.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => b - a)
    for (const s of steps.slice(keep)) if (s !== best) rmSync(this.checkpointDir(s), { recursive: true, force: true })
  }

  /**
   * Removes what a killed writer left half-done: checkpoints/step-N.tmp-PID folders and
   * run.json temporaries. Only the lock holder (or a repair of a dead holder's run) calls this.
   */
  cleanOrphans(): string[] {
    const removed: string[] = []
    const sweep = (dir: string, match: (name: string) => boolean): void => {
      if (!existsSync(dir)) return
      for (const n of readdirSync(dir))
        if (match(n)) {
          rmSync(join(dir, n), { recursive: true, force: true })
          removed.push(join(dir, n))
        }
    }
    sweep(this.checkpointsDir, (n) => /^step-\d+\.tmp-/.test(n))
    sweep(this.dir, (n) => /\.tmp-\d+/.test(n))
    return removed
  }

  // -------------------------------------------------------------------------------------------
  // The one writer

  /** The lock's holder, or null when the run is not locked. */
  lockInfo(): LockInfo | null {
    const info = readJson<LockInfo>(this.lockFile)
    if (info && typeof info.pid === 'number' && typeof info.host === 'string') return info
    // Unreadable: a lock being written right now, or garbage from a crash while writing it.
    return existsSync(this.lockFile) ? { pid: -1, host: hostname(), processStart: null, since: '?', by: 'an unknown process' } : null
  }

  /** Whether a live process holds the lock. */
  isLocked(): boolean {
    const info = this.lockInfo()
    return info !== null && info.pid !== -1 && lockHolderAlive(info)
  }

  /**
   * Takes the run's lock for this process: refused with RunLockedError when a live process holds
   * it; a lock whose holder died is taken over. Creation is atomic (O_EXCL), so two processes
   * racing for it cannot both win.
   */
  acquire(by: string): RunLock {
    mkdirSync(this.dir, { recursive: true })
    const info: LockInfo = {
      pid: process.pid,
      host: hostname(),
      processStart: processStartOf(process.pid),
      since: new Date().toISOString(),
      by,
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      let fd: number
      try {
        fd = openSync(this.lockFile, 'wx')
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
        const holder = this.lockInfo()
        if (holder && holder.pid === process.pid && holder.host === info.host && holder.processStart === info.processStart)
          throw new RunLockedError(this.dir, holder)
        if (holder && holder.pid !== -1 && lockHolderAlive(holder)) throw new RunLockedError(this.dir, holder)
        // A dead holder's lock (or garbage): take it over.
        rmSync(this.lockFile, { force: true })
        continue
      }
      try {
        writeSync(fd, JSON.stringify(info, null, 2) + '\n')
      } finally {
        closeSync(fd)
      }
      let released = false
      return {
        info,
        release: () => {
          if (released) return
          released = true
          const now = readJson<LockInfo>(this.lockFile)
          // Remove it only while it is still ours.
          if (now && now.pid === info.pid && now.since === info.since) rmSync(this.lockFile, { force: true })
        },
      }
    }
    throw new RunFolderError(`${this.lockFile}: could not take the run's lock (another process keeps taking it)`)
  }

  /**
   * A run whose writer died (kill -9, power loss, a crashed engine) still says running or queued:
   * record what is true, `status` (default interrupted) with the last checkpoint, remove the dead
   * writer's lock and half-written folders. Returns the repaired record, or null when the run
   * needed nothing (finished, or its writer is alive).
   */
  repair(
    opts: {
      status?: Extract<RunStatus, 'interrupted' | 'failed' | 'cancelled'>
      reason?: string
      /** The caller knows the lock's holder is gone (the service saw its engine exit): repair even if the lock looks live. */
      force?: boolean
    } = {},
  ): RunRecord | null {
    const record = this.tryRead()
    if (!record || (record.status !== 'running' && record.status !== 'queued')) return null
    if (!opts.force && this.isLocked()) return null
    const holder = this.lockInfo()
    rmSync(this.lockFile, { force: true })
    this.cleanOrphans()
    const last = this.lastCheckpoint()
    const step = last ? Number(STEP_DIR.exec(basename(last))![1]) : 0
    const why = opts.reason ?? `the process writing it${holder && holder.pid > 0 ? ` (pid ${holder.pid})` : ''} stopped`
    const message = last
      ? `${why}; resume continues from ${stepName(step)}`
      : `${why} before its first checkpoint; resume starts it again from the base model`
    return this.update({ status: opts.status ?? 'interrupted', message, lastCheckpoint: last, step })
  }
}

/** Every run folder under `root` (a workspace's runs/), newest first; unreadable ones are skipped. */
export function listRunFolders(root: string): { folder: RunFolder; record: RunRecord }[] {
  if (!existsSync(root)) return []
  const out: { folder: RunFolder; record: RunRecord }[] = []
  for (const id of readdirSync(root)) {
    if (id.startsWith('.') || id.includes('.tmp-')) continue
    const folder = new RunFolder(join(root, id))
    const record = folder.tryRead()
    if (record) out.push({ folder, record })
  }
  return out.sort((a, b) => b.record.created.localeCompare(a.record.created))
}

/** Repairs every run under `root` whose writer died; returns the repaired records. */
export function repairRuns(root: string): RunRecord[] {
  const out: RunRecord[] = []
  for (const { folder } of listRunFolders(root)) {
    try {
      const r = folder.repair()
      if (r) out.push(r)
    } catch {
      // an unwritable folder stays as it is; listing it still works
    }
  }
  return out
}
