/**
 * TF.js backend selection.
 *
 * Order of preference: tfjs-node-gpu (CUDA) > webgpu (Dawn: Vulkan, Metal or D3D12, any GPU
 * vendor; a hardware adapter only) > tfjs-node > wasm > cpu. The first one that loads and
 * initialises wins; every better one that failed is reported with its reason, so a user can tell
 * why they are not on the GPU. The choice is made once, at engine start: nothing inside a run
 * falls back silently. A software WebGPU adapter (SwiftShader, llvmpipe) is never picked
 * automatically, but can be forced.
 *
 * Override with the `MOE_WORKBENCH_BACKEND` environment variable or the `preferred` argument
 * (one of BACKEND_NAMES). An override that cannot load is an error, not a fallback.
 */
import * as tf from '@tensorflow/tfjs'
import { existsSync, readdirSync } from 'node:fs'
import { createRequire } from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import { setWasmBackend, wasmThreadCount } from './wasmThreads'
import { registerWasmKernels } from './wasmKernels'
import { loadNativeMatMul, useNativeMatMul, type NativeMatMul } from './nativeMatMul'
import { BACKEND_NAMES, type BackendAttempt, type BackendName, type BackendReport, type GpuAdapterReport } from '../../shared/api'

export { BACKEND_NAMES }
export type { BackendAttempt, BackendName, BackendReport, GpuAdapterReport }

const requireHere = createRequire(import.meta.url)

export function isBackendName(x: unknown): x is BackendName {
  return typeof x === 'string' && (BACKEND_NAMES as readonly string[]).includes(x)
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e)
  return msg.split('\n')[0].slice(0, 300)
}

/** Adapter descriptions of software rasterisers (CPU implementations of Vulkan/Metal/D3D). */
const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|warp|basic render driver|microsoft basic/i

interface GpuAdapterLike {
  info: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter?: boolean }
  limits: { maxStorageBufferBindingSize: number; maxBufferSize: number }
}

/**
 * WebGPU in Node: Dawn's bindings (the `webgpu` package) installed as `navigator.gpu`, as a
 * browser would have it, so @tensorflow/tfjs-backend-webgpu finds it. Returns the adapter it will
 * use. Works in every host's engine process (a Node child, or Electron's utilityProcess).
 */
async function installWebGpu(forced: boolean): Promise<GpuAdapterLike> {
  // Dawn prints Vulkan's own complaints to stderr when there is no driver: look first.
  if (process.platform === 'linux' && !hasVulkanDriver())
    throw new Error(
      'no Vulkan driver: no ICD file in /usr/share/vulkan/icd.d or /etc/vulkan/icd.d (install the GPU vendor driver and libvulkan1, or set VK_ICD_FILENAMES)',
    )
  // Dawn and the Vulkan loader also print to this process's stderr while they look (a refused
  // software driver, XDG_RUNTIME_DIR unset): a CPU-only machine showed those lines on every
  // command. So a child process looks first, its stderr kept from the user; Dawn is loaded here
  // only where it found an adapter.
  const probe = probeWebGpu()
  if ('error' in probe) throw new Error(probe.error)
  if (!probe.adapter)
    throw new Error('no WebGPU adapter: no Vulkan/Metal/D3D12 driver was found (on Linux install the GPU vendor driver and libvulkan1)')
  if (!forced && adapterReport(probe.adapter).software) return probe.adapter // refused by the caller, Dawn never loaded here
  const { create, globals } = (await import('webgpu')) as unknown as {
    create: (flags: string[]) => { requestAdapter(o?: object): Promise<GpuAdapterLike | null> }
    globals: Record<string, unknown>
  }
  Object.assign(globalThis, globals)
  const gpu = create([])
  const g = globalThis as unknown as { navigator?: Record<string, unknown> }
  const nav = (g.navigator ??= {})
  // tfjs-backend-webgpu asks navigator.gpu for its adapter and device: this instance.
  Object.defineProperty(nav, 'gpu', { value: gpu, configurable: true, writable: true })
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' })
  if (!adapter)
    throw new Error('no WebGPU adapter: no Vulkan/Metal/D3D12 driver was found (on Linux install the GPU vendor driver and libvulkan1)')
  return adapter
}

/** What a child process found: the adapter (its info and limits), none, or why it could not look. */
type WebGpuProbe = { adapter: GpuAdapterLike | null } | { error: string }

/** Asks Dawn for an adapter in a child process (see installWebGpu), within 30 s. */
export function probeWebGpu(env: NodeJS.ProcessEnv = process.env): WebGpuProbe {
  let url: string
  try {
    url = pathToFileURL(requireHere.resolve('webgpu')).href
  } catch (e) {
    return { error: errorText(e) }
  }
  const script = `
    const { create, globals } = await import(${JSON.stringify(url)})
    Object.assign(globalThis, globals)
    const a = await create([]).requestAdapter({ powerPreference: 'high-performance' })
    const { vendor, architecture, device, description, isFallbackAdapter } = a?.info ?? {}
    const limits = a ? { maxStorageBufferBindingSize: a.limits.maxStorageBufferBindingSize, maxBufferSize: a.limits.maxBufferSize } : null
    process.stdout.write('\\n' + JSON.stringify(a ? { info: { vendor, architecture, device, description, isFallbackAdapter }, limits } : null) + '\\n')
    process.exit(0)`
  // Electron's utilityProcess runs the engine on Electron's binary: as Node for the child.
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...env, ELECTRON_RUN_AS_NODE: '1' },
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const line = r.stdout?.trim().split('\n').at(-1)
  if (r.status === 0 && line) {
    try {
      return { adapter: JSON.parse(line) as GpuAdapterLike | null }
    } catch {
      // not the probe's answer: the reason below
    }
  }
  const why = r.error ? errorText(r.error) : (r.stderr?.trim().split('\n').at(-1) ?? `exit ${r.status ?? r.signal}`)
  return { error: `looking for a WebGPU adapter failed: ${why}` }
}

/** Whether the Vulkan loader would find a driver (an ICD manifest) on Linux. */
export function hasVulkanDriver(env: NodeJS.ProcessEnv = process.env): boolean {
  const named = (env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean)
  if (named.length) return named.some((f) => existsSync(f))
  const dataDirs = [
    env.XDG_DATA_HOME ?? join(homedir(), '.local/share'),
    ...(env.XDG_DATA_DIRS ?? '/usr/local/share:/usr/share').split(':'),
  ]
  const dirs = ['/etc/vulkan/icd.d', '/etc/xdg/vulkan/icd.d', ...dataDirs.filter(Boolean).map((d) => join(d, 'vulkan/icd.d'))]
  return dirs.some((d) => {
    try {
      return readdirSync(d).some((f) => f.endsWith('.json'))
    } catch {
      return false
    }
  })
}

/** What the report says about an adapter: who made it, whether it is software, its binding limits. */
export function adapterReport(adapter: GpuAdapterLike): GpuAdapterReport {
  const { vendor, architecture, device, description, isFallbackAdapter } = adapter.info
  return {
    vendor,
    architecture,
    device,
    description,
    software: isFallbackAdapter === true || SOFTWARE_ADAPTER.test(`${description} ${architecture} ${device}`),
    limits: {
      maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
      maxBufferSize: adapter.limits.maxBufferSize,
    },
  }
}

async function tryBackend(
  name: BackendName,
  forced: boolean,
): Promise<{ tfBackend: string; adapter?: GpuAdapterReport; threads?: number; matmul?: string }> {
  switch (name) {
    case 'tfjs-node-gpu':
    case 'tfjs-node': {
      // Both packages register the 'tensorflow' backend; loading them pulls in libtensorflow,
      // which throws when the native library was not downloaded at install time.
      const pkg = name === 'tfjs-node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node'
      requireHere(pkg)
      if (!(await tf.setBackend('tensorflow'))) throw new Error(`${pkg} loaded but its backend did not initialise`)
      await tf.ready()
      return { tfBackend: 'tensorflow' }
    }
    case 'webgpu': {
      const adapter = adapterReport(await installWebGpu(forced))
      if (adapter.software && !forced)
        throw new Error(
          `only a software adapter (${adapter.description || adapter.architecture}) was found; it is slower than wasm, so it is used only when asked for (--backend webgpu)`,
        )
      requireHere('@tensorflow/tfjs-backend-webgpu')
      if (!(await tf.setBackend('webgpu'))) throw new Error('the webgpu backend did not initialise')
      await tf.ready()
      return { tfBackend: 'webgpu', adapter }
    }
    case 'wasm': {
      requireHere('@tensorflow/tfjs-backend-wasm')
      const count = wasmThreadCount()
      const { native, failure } = chooseNativeMatMul(count)
      // ONNX Runtime reads no SharedArrayBuffer (the threaded build's heap): with it, wasm runs
      // single-threaded and the threads go to the products, where the time is.
      const threads = await setWasmBackend(native ? 1 : count)
      await tf.ready()
      registerWasmKernels()
      useNativeMatMul(native)
      return native
        ? { tfBackend: 'wasm', threads: native.threads, matmul: native.library }
        : { tfBackend: 'wasm', threads, matmul: `XNNPACK (wasm)${failure ? `; native: ${failure}` : ''}` }
    }
    case 'cpu': {
      if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise')
      await tf.ready()
      return { tfBackend: 'cpu' }
    }
  }
}

/**
 * The native matmul for the wasm backend: MOE_WORKBENCH_MATMUL=native requires it (an error that
 * says why, where it cannot load), =wasm turns it off, unset or auto uses it where it loads (and
 * says why not, where it does not).
 */
export function chooseNativeMatMul(
  threads: number,
  env: NodeJS.ProcessEnv = process.env,
  load: (threads: number) => NativeMatMul = loadNativeMatMul,
): { native: NativeMatMul | null; failure?: string } {
  const want = env.MOE_WORKBENCH_MATMUL?.trim() || 'auto'
  if (!['auto', 'native', 'wasm'].includes(want))
    throw new Error(`MOE_WORKBENCH_MATMUL=${JSON.stringify(want)}: expected native, wasm or auto`)
  if (want === 'wasm') return { native: null }
  try {
    return { native: load(threads) }
  } catch (e) {
    if (want === 'native')
      throw new Error(
        `MOE_WORKBENCH_MATMUL=native: onnxruntime-node did not load (${errorText(e)}); reinstall with npm install, or unset it`,
      )
    return { native: null, failure: errorText(e) }
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
  if (current && (forced === undefined || current.name === forced)) {
    // Already started: make it the active TF.js backend again (a caller may have switched away).
    if (tf.getBackend() !== current.tfBackend) await tf.setBackend(current.tfBackend)
    return current
  }

  const attempts: BackendAttempt[] = []
  const order = forced ? [forced] : [...BACKEND_NAMES]
  for (const name of order) {
    try {
      const { tfBackend, adapter, threads, matmul } = await tryBackend(name, forced === name)
      attempts.push({ name, ok: true })
      current = {
        name,
        tfBackend,
        source,
        attempts,
        tfjsVersion: tf.version.tfjs,
        ...(adapter && { adapter }),
        ...(threads && { threads }),
        ...(matmul && { matmul }),
      }
      const skipped = attempts.filter((a) => !a.ok).map((a) => `${a.name} (${a.reason})`)
      log(
        `backend: using ${name}${adapter ? ` on ${adapter.description || adapter.architecture}${adapter.software ? ' (software)' : ''}` : ''}${threads ? ` with ${threads} thread${threads === 1 ? '' : 's'}` : ''}${matmul ? `, matmul by ${matmul}` : ''}${source === 'auto' ? '' : ` (from ${source})`}` +
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
