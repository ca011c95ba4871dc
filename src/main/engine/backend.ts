/**
 * TF.js backend selection.
 *
 * Order of preference: tfjs-node-gpu > tfjs-node > wasm > cpu. The first one that loads and
 * initialises wins; every better one that failed is reported with its reason, so a user can
 * tell why they are not on the GPU. The choice is made once, at engine start: nothing inside a
 * run falls back silently.
 *
 * Override with the `MOE_WORKBENCH_BACKEND` environment variable or the `preferred` argument
 * (one of the names below). An override that cannot load is an error, not a fallback.
 */
import * as tf from '@tensorflow/tfjs'
import { createRequire } from 'node:module'

export const BACKEND_NAMES = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const
export type BackendName = (typeof BACKEND_NAMES)[number]

export interface BackendAttempt {
  name: BackendName
  ok: boolean
  /** Why this backend was not used (missing package, no libtensorflow, init failure...). */
  reason?: string
}

export interface BackendReport {
  /** The backend in use. */
  name: BackendName
  /** The TF.js-internal backend name ('tensorflow', 'wasm' or 'cpu'). */
  tfBackend: string
  /** How it was chosen. */
  source: 'auto' | 'env' | 'setting'
  /** Every backend tried, in order, up to and including the chosen one. */
  attempts: BackendAttempt[]
  tfjsVersion: string
}

const requireHere = createRequire(import.meta.url)

export function isBackendName(x: unknown): x is BackendName {
  return typeof x === 'string' && (BACKEND_NAMES as readonly string[]).includes(x)
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e)
  return msg.split('\n')[0].slice(0, 300)
}

async function tryBackend(name: BackendName): Promise<string> {
  switch (name) {
    case 'tfjs-node-gpu':
    case 'tfjs-node': {
      // Both packages register the 'tensorflow' backend; loading them pulls in libtensorflow,
      // which throws when the native library was not downloaded at install time.
      const pkg = name === 'tfjs-node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node'
      requireHere(pkg)
      if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its backend did not initialise`)
      await tf.ready()
      return 'tensorflow'
    }
    case 'wasm': {
      requireHere('@tensorflow/tfjs-backend-wasm')
      if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise')
      await tf.ready()
      return 'wasm'
    }
    case 'cpu': {
      if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise')
      await tf.ready()
      return 'cpu'
    }
  }
}

let current: BackendReport | undefined

/**
 * Selects and initialises the backend. Idempotent for the same request: a second call returns
 * the report of the first, unless `preferred` names another backend.
 */
export async function initBackend(preferred?: BackendName, log: (line: string) => void = () => {}): Promise<BackendReport> {
  const env = process.env.MOE_WORKBENCH_BACKEND
  let forced: BackendName | undefined
  let source: BackendReport['source'] = 'auto'
  if (preferred !== undefined) {
    if (!isBackendName(preferred))
      throw new Error(`backend: unknown backend ${JSON.stringify(preferred)}; use one of ${BACKEND_NAMES.join(', ')}`)
    forced = preferred
    source = 'setting'
  } else if (env !== undefined && env !== '' && env !== 'auto') {
    if (!isBackendName(env))
      throw new Error(`MOE_WORKBENCH_BACKEND=${JSON.stringify(env)} is not a backend; use one of ${BACKEND_NAMES.join(', ')} or auto`)
    forced = env
    source = 'env'
  }
  if (current && (forced === undefined || current.name === forced)) return current

  const attempts: BackendAttempt[] = []
  const order = forced ? [forced] : [...BACKEND_NAMES]
  for (const name of order) {
    try {
      const tfBackend = await tryBackend(name)
      attempts.push({ name, ok: true })
      current = { name, tfBackend, source, attempts, tfjsVersion: tf.version.tfjs }
      const skipped = attempts.filter((a) => !a.ok).map((a) => `${a.name} (${a.reason})`)
      log(
        `backend: using ${name}${source === 'auto' ? '' : ` (from ${source})`}` +
          (skipped.length ? `; unavailable: ${skipped.join('; ')}` : ''),
      )
      return current
    } catch (e) {
      attempts.push({ name, ok: false, reason: errorText(e) })
    }
  }
  const why = attempts.map((a) => `${a.name}: ${a.reason}`).join('; ')
  throw new Error(forced ? `backend ${forced} is unavailable: ${why}` : `no TF.js backend could start: ${why}`)
}

/** The report of the backend in use, or undefined before initBackend. */
export function backendReport(): BackendReport | undefined {
  return current
}
