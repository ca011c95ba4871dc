/**
 * The multi-threaded SIMD build of @tensorflow/tfjs-backend-wasm in Node (the engine process in
 * every host: a Node child, Electron's utilityProcess), without patching node_modules. TF.js
 * 4.22 refuses it in Node for three reasons, each undone here at runtime:
 *
 * 1. WASM_HAS_MULTITHREAD_SUPPORT is hard-wired false under Node: set it true.
 * 2. Its Emscripten glue starts each pthread worker from a blob: URL, which worker_threads
 *    refuses. While the backend initialises, URL.createObjectURL maps that one blob (the worker
 *    source, identified by type and size) to a real file holding the same source, from the
 *    package's wasm-out/ folder; that file also points each worker's `load` message at a real copy
 *    of the unbundled glue (the bundled one refers to names of its bundle).
 * 3. The C++ side caps threads at os.cpus().length / 2 (it assumes two hyper-threads per core),
 *    one thread on a 2-CPU machine: os.cpus reports enough CPUs while the module starts.
 *
 * Results are bit-identical across thread counts (XNNPACK splits outputs into tiles; each output
 * is computed by the same micro-kernel in the same order). Measured on a 2-CPU machine: 1.8-1.9x
 * matmul throughput with 2 threads. The pthreads are unref'd so a process can still exit.
 */
import * as tf from '@tensorflow/tfjs'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import os from 'node:os'
import { dirname, join } from 'node:path'

const requireHere = createRequire(import.meta.url)

/** XNNPACK's pool: Emscripten pre-spawns this many workers, the C++ side allows no more. */
export const MAX_WASM_THREADS = 8

/**
 * Threads for the wasm backend: MOE_WORKBENCH_THREADS, else one per CPU the OS offers (at most
 * 8). Oversubscribing hurts (measured: 4 threads on 2 CPUs ran at 60% of 2 threads).
 */
export function wasmThreadCount(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.MOE_WORKBENCH_THREADS?.trim()
  if (raw) {
    const n = Number(raw)
    if (!Number.isInteger(n) || n < 1 || n > MAX_WASM_THREADS)
      throw new Error(`MOE_WORKBENCH_THREADS=${JSON.stringify(raw)}: expected a whole number from 1 to ${MAX_WASM_THREADS}`)
    return n
  }
  const cpus = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length
  return Math.max(1, Math.min(MAX_WASM_THREADS, cpus))
}

interface WasmModule {
  setThreadsCount(n: number): void
  getThreadsCount(): number
}

interface PThreadRuntime {
  runningWorkers: { unref(): void }[]
}

/** Initialises the wasm backend with `threads` threads (1: the single-threaded SIMD build); returns the count in use. */
export async function setWasmBackend(threads: number): Promise<number> {
  const wasm = requireHere('@tensorflow/tfjs-backend-wasm') as WasmModule
  if (threads <= 1) {
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise')
    return 1
  }
  const wasmOut = join(dirname(requireHere.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'wasm-out')
  const workerFile = readFileSync(join(wasmOut, 'tfjs-backend-wasm-threaded-simd.worker.js'), 'utf8')
  const m = /wasmWorkerContents\s*=\s*`([\s\S]*)`;?\s*$/.exec(workerFile)
  if (!m) throw new Error(`${wasmOut}: the pthread worker source is not where TF.js 4.22 keeps it`)
  // The escaping TF.js applies before it makes the worker blob.
  const workerSource = m[1].replace(/\n/g, '\\n')
  const glue = readFileSync(join(wasmOut, 'tfjs-backend-wasm-threaded-simd.js'), 'utf8')
  // Real files (a worker needs one; also out of an Electron asar archive).
  const dir = mkdtempSync(join(os.tmpdir(), 'moe-workbench-wasm-'))
  const gluePath = join(dir, 'tfjs-backend-wasm-threaded-simd.js')
  const workerPath = join(dir, 'tfjs-backend-wasm-threaded-simd.worker.cjs')
  writeFileSync(gluePath, glue)
  writeFileSync(
    workerPath,
    `${workerSource}\n;(function(){var orig=self.onmessage;self.onmessage=function(e){` +
      `if(e&&e.data&&e.data.cmd==="load"){e.data.urlOrBlob=${JSON.stringify(gluePath)};}return orig.call(this,e);};})();\n`,
  )
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true)
  wasm.setThreadsCount(threads)
  const cpus = os.cpus
  const createObjectURL = URL.createObjectURL
  const workerBytes = Buffer.byteLength(workerSource, 'utf8')
  // Only while the backend starts: both patches are restored before anything else runs on them.
  os.cpus = () => {
    const real = cpus.call(os)
    while (real.length > 0 && real.length < 2 * threads) real.push(real[0])
    return real
  }
  URL.createObjectURL = (obj: Blob | MediaSource) =>
    obj instanceof Blob && obj.type === 'application/javascript' && obj.size === workerBytes ? workerPath : createObjectURL(obj as Blob)
  let ok: boolean
  try {
    ok = await tf.setBackend('wasm')
  } finally {
    URL.createObjectURL = createObjectURL
    os.cpus = cpus
    // Every pool worker has read both files once the backend is up (Emscripten waits for them).
    rmSync(dir, { recursive: true, force: true })
  }
  if (!ok || tf.getBackend() !== 'wasm')
    throw new Error('the threaded wasm backend did not initialise (MOE_WORKBENCH_THREADS=1 uses one thread)')
  const runtime = (tf.backend() as unknown as { wasm: { PThread?: PThreadRuntime } }).wasm
  if (!runtime.PThread) throw new Error('the wasm backend started without its threaded build')
  // XNNPACK's pool threads never end: without this a finished process would wait on them.
  for (const w of runtime.PThread.runningWorkers) w.unref()
  return wasm.getThreadsCount()
}
