/**
 * The datasets worker (a worker thread): inspections and imports run here, tokenising included,
 * so a 5 MB line or a million rows never stalls the service's own thread (in the desktop app,
 * Electron's main process). One operation per worker; the client (./workerClient.ts) starts it,
 * relays its progress and can cancel it.
 *
 *   in:  { kind: 'start', op: 'inspect' | 'import', workspace, args } then maybe { kind: 'cancel' }
 *   out: { kind: 'progress', progress } ... then { kind: 'result', value } or { kind: 'error', name, message, field? }
 */
import { parentPort } from 'node:worker_threads'
import type { DatasetsImportArgs, DatasetsInspectArgs } from '../../shared/dataset'
import { DatasetError } from './errors'
import { type InspectOptions, inspectDataset } from './inspect'
import { loadChatTemplate } from './template'
import { loadTokenizer } from './tokenizer'
import { importDataset } from './workspace'

export type ToDataWorker =
  | { kind: 'start'; op: 'inspect'; workspace: string; args: DatasetsInspectArgs }
  | { kind: 'start'; op: 'import'; workspace: string; args: DatasetsImportArgs }
  | { kind: 'cancel' }

export type FromDataWorker =
  | { kind: 'progress'; progress: Parameters<NonNullable<InspectOptions['onProgress']>>[0] }
  | { kind: 'result'; value: unknown }
  | { kind: 'error'; name: string; message: string; field?: string }

async function options(args: DatasetsInspectArgs, signal: AbortSignal, post: (m: FromDataWorker) => void): Promise<InspectOptions> {
  const o: InspectOptions = {
    signal,
    layout: args.layout,
    mapping: args.mapping,
    maxLength: args.maxLength,
    format: args.format,
    textUnit: args.textUnit,
    preview: args.preview,
    onProgress: (progress) => post({ kind: 'progress', progress }),
  }
  if (args.model !== undefined) {
    o.tokenizer = await loadTokenizer(args.model)
    o.template = await loadChatTemplate(args.model)
  }
  return o
}

/** Runs one operation for a port (the worker's parentPort, or a test's). */
export function serveDataWorker(port: {
  on(e: 'message', l: (m: ToDataWorker) => void): void
  postMessage(m: FromDataWorker): void
}): void {
  const controller = new AbortController()
  const post = (m: FromDataWorker): void => port.postMessage(m)
  port.on('message', (m) => {
    if (m.kind === 'cancel') return controller.abort()
    void (async () => {
      try {
        const o = await options(m.args, controller.signal, post)
        const value =
          m.op === 'inspect'
            ? await inspectDataset(m.args.file, o)
            : await importDataset(m.workspace, m.args.file, {
                ...o,
                name: m.args.name,
                acceptInvalid: m.args.acceptInvalid,
                split: m.args.split,
                dedupe: m.args.dedupe,
              })
        post({ kind: 'result', value })
      } catch (e) {
        const field = e instanceof DatasetError ? e.field : undefined
        post({
          kind: 'error',
          name: e instanceof Error ? e.name : 'Error',
          message: e instanceof Error ? e.message : String(e),
          ...(field === undefined ? {} : { field }),
        })
      }
    })()
  })
}

if (parentPort) serveDataWorker(parentPort as never)
