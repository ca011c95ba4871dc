/**
 * Fine-tuning runs in the engine process: one trains at a time, the rest wait in order. The queue
 * takes each run's lock when the run is queued (so a run queued here is never trained by another
 * process too) and releases it when the run ends. On shutdown, `interruptAll` stops the active run
 * at its next step boundary with a checkpoint and marks every run it holds `interrupted`.
 */
import { ApiError, type WorkbenchEvent } from '../../shared/api'
import { EVAL_NOTHING, EVAL_STOPPED, evaluationText, type RunRecord } from '../../shared/runs'
import { progressLines } from '../../shared/tasks'
import { RunFolder, type RunLock } from '../runs/runFolder'
import { INTERRUPT, train } from '../train/trainer'
import { encodeDataset } from './datasetEncoding'
import { evaluateRun } from './evaluation'
import type { ModelCache } from './models'
import type { EngineRunStartArgs } from './protocol'

type Emit = (event: WorkbenchEvent) => void

interface QueuedRun extends EngineRunStartArgs {
  controller: AbortController
  folder: RunFolder
  lock: RunLock
}

export class RunQueue {
  private readonly queue: QueuedRun[] = []
  private active: QueuedRun | null = null
  /** Settles when the active run has ended. */
  private activeDone: Promise<void> = Promise.resolve()

  constructor(
    private readonly emit: Emit,
    /** Who holds the locks, in words (shown to a second writer). */
    private readonly owner = `the engine process of MoE Workbench (pid ${process.pid})`,
    /** Models for the before/after evaluation of a completed run (none: no evaluation). */
    private readonly models?: ModelCache,
  ) {}

  /** Queues a run (starting it when nothing runs); returns its record as written. */
  start(args: EngineRunStartArgs): RunRecord {
    if (this.active?.runId === args.runId || this.queue.some((q) => q.runId === args.runId))
      throw new ApiError('failed', `run ${args.runId} is already running or queued here`)
    const folder = new RunFolder(args.runDir)
    const lock = folder.acquire(this.owner)
    let record: RunRecord
    try {
      const now = new Date().toISOString()
      const existing = folder.tryRead()
      record = folder.write(
        existing
          ? { ...existing, status: 'queued', message: undefined, updated: now }
          : {
              id: args.runId,
              name: args.name,
              status: 'queued',
              config: args.config,
              baseModel: args.modelDir,
              dataset: args.dataset,
              created: now,
              updated: now,
              step: 0,
              totalSteps: 0,
              bestValLoss: null,
              lastCheckpoint: null,
            },
      )
    } catch (e) {
      lock.release()
      throw e
    }
    this.queue.push({ ...args, controller: new AbortController(), folder, lock })
    this.emit({ type: 'run.status', runId: args.runId, status: 'queued', step: record.step })
    void this.pump()
    return record
  }

  /** Cancels a queued or running run; true when it was known here. */
  cancel(runId: string): boolean {
    if (this.active?.runId === runId) {
      this.active.controller.abort()
      return true
    }
    const i = this.queue.findIndex((q) => q.runId === runId)
    if (i < 0) return false
    const [q] = this.queue.splice(i, 1)
    this.endQueued(q, 'cancelled', 'cancelled before it started')
    return true
  }

  isActive(runId: string): boolean {
    return this.active?.runId === runId || this.queue.some((q) => q.runId === runId)
  }

  /**
   * The process is going away: runs still waiting are marked interrupted, the active one stops at
   * its next step boundary with a checkpoint (interrupted). Resolves once it has.
   */
  async interruptAll(): Promise<void> {
    for (const q of this.queue.splice(0)) this.endQueued(q, 'interrupted', 'interrupted before it started: the engine stopped')
    this.active?.controller.abort(INTERRUPT)
    await this.activeDone
  }

  private endQueued(q: QueuedRun, status: 'cancelled' | 'interrupted', message: string): void {
    try {
      const record = q.folder.update({ status, message })
      this.emit({ type: 'run.status', runId: q.runId, status, step: record.step, message })
    } finally {
      q.lock.release()
    }
  }

  private async pump(): Promise<void> {
    if (this.active) return
    const next = this.queue.shift()
    if (!next) return
    this.active = next
    let done!: () => void
    this.activeDone = new Promise((r) => (done = r))
    try {
      await this.execute(next)
    } finally {
      next.lock.release()
      this.active = null
      done()
      void this.pump()
    }
  }

  /**
   * Did it learn? The base model and the run's checkpoint answer the same rows (config.finalEval);
   * the report goes to eval.json and a run.evaluated event. The run stays completed whatever
   * happens here: a cancel or a failure only ends the evaluation.
   */
  private async evaluate(run: QueuedRun, log: (line: string) => void): Promise<void> {
    const rows = run.config.finalEval.rows
    if (!this.models || rows <= 0) return
    try {
      log(`evaluating the base model and the fine-tuned one on up to ${rows} rows per split`)
      const evaluation = await evaluateRun(this.models, run.runDir, run.workspace, rows, {
        signal: run.controller.signal,
        onProgress: progressLines(log),
      })
      if (!evaluation) {
        log(`${EVAL_NOTHING}: the dataset has no rows with an answer (chat or prompt/completion)`)
        return
      }
      for (const s of evaluation.splits) log(`${s.split}: ${evaluationText(s)}`)
      this.emit({ type: 'run.evaluated', runId: run.runId, evaluation })
    } catch (e) {
      log(`${EVAL_STOPPED}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }

  private async execute(run: QueuedRun): Promise<void> {
    const { runId } = run
    const log = (line: string): void => {
      run.folder.appendLog(line)
      this.emit({ type: 'run.log', runId, line })
    }
    try {
      log(`tokenising dataset ${run.dataset} for ${run.modelDir}`)
      const data = await encodeDataset(run.workspace, run.dataset, run.modelDir, run.config, {
        signal: run.controller.signal,
        onRows: (rows) => log(`tokenised ${rows.toLocaleString('en')} rows…`),
      })
      if (data.train.length === 0)
        throw new Error(`dataset ${run.dataset} has no training rows that fit maxLength ${run.config.data.maxLength}`)
      // Labels are shifted inside the loss (HF): the first position is never predicted.
      const learnable = data.train.filter((e) => e.labels.some((l, i) => i > 0 && l !== -100)).length
      const { maxLength, maskPrompt } = run.config.data
      if (learnable === 0)
        // A row cut before its answer (maxLength 5 of 17-20-token rows) trained nothing, and the run
        // "completed" with a validation loss of 0.
        throw new Error(
          `data.maxLength ${maxLength} cuts off every training row's ${maskPrompt ? 'answer' : 'tokens'}: there is nothing to learn; raise data.maxLength (the dataset's report gives its rows' lengths in tokens)${maskPrompt ? ' or keep the end of each row (data.truncation left)' : ''}`,
        )
      if (learnable < data.train.length)
        log(
          `warning: ${data.train.length - learnable} of ${data.train.length} training rows have no ${maskPrompt ? 'answer ' : ''}token left within data.maxLength ${maxLength}: they train nothing`,
        )
      const result = await train({
        runDir: run.runDir,
        baseModelDir: run.modelDir,
        dataset: run.dataset,
        config: run.config,
        train: data.train,
        validation: data.validation,
        padId: data.padId,
        resume: run.resume,
        lock: run.lock,
        signal: run.controller.signal,
        onEvent: this.emit,
      })
      if (result.status === 'completed') await this.evaluate(run, log)
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e)
      // A cancel or interrupt while tokenising stops before train() starts; the run keeps its last checkpoint.
      const stopped = e instanceof ApiError && e.code === 'cancelled'
      const status = stopped ? (run.controller.signal.reason === INTERRUPT ? 'interrupted' : 'cancelled') : 'failed'
      // train() records its own failures; failures before it (tokenising) are recorded here.
      try {
        const record = run.folder.read()
        if (record.status !== 'failed') {
          run.folder.update({ status, message })
          this.emit({ type: 'run.status', runId, status, step: record.step, message })
        }
      } catch (inner) {
        // The run folder itself is gone or unwritable: say so, and keep serving.
        this.emit({
          type: 'run.status',
          runId,
          status: 'failed',
          step: 0,
          message: `${message} (and the run folder could not be updated: ${inner instanceof Error ? inner.message : String(inner)})`,
        })
      }
    }
  }
}
