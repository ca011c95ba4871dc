/**
 * Runs a dataset inspection or import in a worker thread (./worker.ts): the service's thread
 * only relays progress, so other requests are answered meanwhile. Cancel via the signal; a
 * worker that dies is an error naming why.
 */
import { Worker } from 'node:worker_threads'
import { fileURLToPath } from 'node:url'
import type { DatasetManifest, DatasetProgress, DatasetsImportArgs, DatasetsInspectArgs, InspectResult } from '../../shared/dataset'
import { DatasetError } from './errors'
import type { FromDataWorker, ToDataWorker } from './worker'

/** The worker entry: the bundled dataWorker.js next to this chunk, or the TypeScript source with tsx. */
function spawnWorker(): Worker {
  const here = import.meta.url
  if (here.endsWith('.ts'))
    return new Worker(fileURLToPath(new URL('./tsWorkerBoot.mjs', here)), {
      workerData: { entry: fileURLToPath(new URL('./worker.ts', here)) },
    })
  return new Worker(fileURLToPath(new URL('./dataWorker.js', here)))
}

/** An error that crossed the thread boundary, with its name (AbortError, DatasetError...) and field kept. */
function rebuild(name: string, message: string, field: string | undefined): Error {
  const e = name === 'DatasetError' ? new DatasetError(message, field) : new Error(message)
  e.name = name
  return e
}

export function runDatasetWorker(
  op: 'inspect',
  workspace: string,
  args: DatasetsInspectArgs,
  hooks: { signal: AbortSignal; onProgress: (p: DatasetProgress) => void },
): Promise<InspectResult>
export function runDatasetWorker(
  op: 'import',
  workspace: string,
  args: DatasetsImportArgs,
  hooks: { signal: AbortSignal; onProgress: (p: DatasetProgress) => void },
): Promise<DatasetManifest>
export function runDatasetWorker(
  op: 'inspect' | 'import',
  workspace: string,
  args: DatasetsInspectArgs,
  hooks: { signal: AbortSignal; onProgress: (p: DatasetProgress) => void },
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    hooks.signal.throwIfAborted()
    const worker = spawnWorker()
    let settled = false
    const finish = (f: () => void): void => {
      if (settled) return
      settled = true
      hooks.signal.removeEventListener('abort', onAbort)
      f()
      void worker.terminate()
    }
    const onAbort = (): void => worker.postMessage({ kind: 'cancel' } satisfies ToDataWorker)
    hooks.signal.addEventListener('abort', onAbort, { once: true })
    worker.on('message', (m: FromDataWorker) => {
      if (m.kind === 'progress') hooks.onProgress(m.progress)
      else if (m.kind === 'result') finish(() => resolve(m.value))
      else finish(() => reject(rebuild(m.name, m.message, m.field)))
    })
    worker.on('error', (e) => finish(() => reject(new Error(`the dataset worker failed: ${e.message}`))))
    worker.on('exit', (code) => finish(() => reject(new Error(`the dataset worker stopped unexpectedly (exit code ${code})`))))
    worker.postMessage({ kind: 'start', op, workspace, args } as ToDataWorker)
  })
}
