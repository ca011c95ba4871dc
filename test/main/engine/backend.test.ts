/**
 * Backend selection: best first, reasons for every better backend that could not start, overrides
 * by setting and environment, and no silent fallback when a named backend is unavailable.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import * as tf from '@tensorflow/tfjs'
import { createRequire } from 'node:module'
import { prepareWebGpu } from './webgpuEnv'

type BackendModule = typeof import('../../../src/main/engine/backend')

async function fresh(): Promise<BackendModule> {
  vi.resetModules()
  return import('../../../src/main/engine/backend')
}

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg)
    return true
  } catch {
    return false
  }
}

// Before any backend is tried: where WebGPU can run here, it runs on SwiftShader.
const webgpuMissing = prepareWebGpu()

describe('backend selection', () => {
  const saved = process.env.MOE_WORKBENCH_BACKEND
  beforeEach(() => {
    delete process.env.MOE_WORKBENCH_BACKEND
  })
  afterEach(() => {
    if (saved === undefined) delete process.env.MOE_WORKBENCH_BACKEND
    else process.env.MOE_WORKBENCH_BACKEND = saved
  })

  it('auto: takes the best that starts and says why each better one did not', async () => {
    const b = await fresh()
    const lines: string[] = []
    const r = await b.initBackend(undefined, (l) => lines.push(l))
    expect(r.source).toBe('auto')
    expect(r.attempts.at(-1)).toEqual({ name: r.name, ok: true })
    const order = b.BACKEND_NAMES.indexOf(r.name)
    expect(r.attempts.map((a) => a.name)).toEqual(b.BACKEND_NAMES.slice(0, order + 1))
    for (const a of r.attempts.slice(0, -1)) {
      expect(a.ok).toBe(false)
      expect(a.reason).toBeTruthy()
    }
    expect(lines[0]).toMatch(new RegExp(`^backend: using ${r.name}`))
    if (!installed('@tensorflow/tfjs-node') && !installed('@tensorflow/tfjs-node-gpu')) {
      // this machine: libtensorflow could not be downloaded, so the optional packages are absent
      // (and the only WebGPU adapter, if any, is software: never picked automatically)
      expect(r.name).toBe('wasm')
      expect(lines[0]).toMatch(/unavailable: tfjs-node-gpu \(.+\); webgpu \(.+\); tfjs-node \(.+\)/)
      if (webgpuMissing === null)
        expect(r.attempts.find((a) => a.name === 'webgpu')?.reason).toMatch(
          /only a software adapter \(SwiftShader.*\) was found.*--backend webgpu/,
        )
    }
  })

  it('MOE_WORKBENCH_BACKEND overrides the choice', async () => {
    process.env.MOE_WORKBENCH_BACKEND = 'cpu'
    const b = await fresh()
    const r = await b.initBackend()
    expect(r).toMatchObject({ name: 'cpu', tfBackend: 'cpu', source: 'env' })
    expect(r.attempts).toEqual([{ name: 'cpu', ok: true }])
  })

  it('a setting wins over the environment', async () => {
    process.env.MOE_WORKBENCH_BACKEND = 'cpu'
    const b = await fresh()
    const r = await b.initBackend('wasm')
    expect(r).toMatchObject({ name: 'wasm', source: 'setting' })
  })

  it('a named backend that cannot start is an error, not a fallback', async () => {
    const b = await fresh()
    if (installed('@tensorflow/tfjs-node')) return // a machine with libtensorflow can start it
    await expect(b.initBackend('tfjs-node')).rejects.toThrow(/backend tfjs-node is unavailable: tfjs-node: .+/)
  })

  it('webgpu when forced: a software adapter is used, and reported with its limits', async () => {
    if (webgpuMissing) return expect(webgpuMissing).toBeTruthy()
    const b = await fresh()
    const lines: string[] = []
    const r = await b.initBackend('webgpu', (l) => lines.push(l))
    expect(r).toMatchObject({ name: 'webgpu', tfBackend: 'webgpu', source: 'setting' })
    expect(r.adapter).toMatchObject({ software: true, architecture: expect.any(String), description: expect.any(String) })
    expect(r.adapter!.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 << 20)
    expect(lines[0]).toMatch(/^backend: using webgpu on .+ \(software\)/)
  })

  it('tells a software adapter from a hardware one', async () => {
    const b = await fresh()
    const adapter = (description: string, isFallbackAdapter = false) => ({
      info: { vendor: 'v', architecture: 'a', device: 'd', description, isFallbackAdapter },
      limits: { maxStorageBufferBindingSize: 1 << 30, maxBufferSize: 1 << 30 },
    })
    expect(b.adapterReport(adapter('NVIDIA GeForce RTX 4090')).software).toBe(false)
    expect(b.adapterReport(adapter('AMD Radeon RX 7900 XTX (RADV NAVI31)')).software).toBe(false)
    expect(b.adapterReport(adapter('Apple M3 Max')).software).toBe(false)
    expect(b.adapterReport(adapter('SwiftShader driver 5.0.0')).software).toBe(true)
    expect(b.adapterReport(adapter('llvmpipe (LLVM 15.0.6, 256 bits)')).software).toBe(true)
    expect(b.adapterReport(adapter('Microsoft Basic Render Driver')).software).toBe(true)
    expect(b.adapterReport(adapter('unknown', true)).software).toBe(true)
  })

  it('rejects unknown names, naming the choices', async () => {
    process.env.MOE_WORKBENCH_BACKEND = 'tpu'
    const b = await fresh()
    await expect(b.initBackend()).rejects.toThrow(
      /MOE_WORKBENCH_BACKEND="tpu" is not a backend; use one of tfjs-node-gpu, webgpu, tfjs-node, wasm, cpu or auto/,
    )
    await expect(b.initBackend('gpu' as never)).rejects.toThrow(/unknown backend "gpu"/)
  })
})

describe('backend reports and log lines', () => {
  const saved = process.env.MOE_WORKBENCH_BACKEND
  afterEach(() => {
    if (saved === undefined) delete process.env.MOE_WORKBENCH_BACKEND
    else process.env.MOE_WORKBENCH_BACKEND = saved
  })

  it('says which backend, with how many threads and from where, and keeps the report until another is asked for', async () => {
    delete process.env.MOE_WORKBENCH_BACKEND
    const b = await fresh()
    const { wasmThreadCount } = await import('../../../src/main/engine/wasmThreads')
    expect(b.backendReport()).toBeUndefined()
    const lines: string[] = []
    const r = await b.initBackend('wasm', (l) => lines.push(l))
    expect(r).toMatchObject({ name: 'wasm', tfBackend: 'wasm', source: 'setting', tfjsVersion: tf.version.tfjs })
    expect(r.threads).toBeGreaterThanOrEqual(1)
    expect(r.threads).toBe(wasmThreadCount())
    const n = r.threads!
    // the native matmul where it loads (always in CI), else XNNPACK with the reason
    expect(r.matmul).toMatch(
      process.env.MOE_WORKBENCH_REQUIRE_NATIVE_MATMUL === '1' ? /^onnxruntime-node \S+ \(MLAS\)$/ : /^onnxruntime-node|^XNNPACK/,
    )
    expect(lines).toEqual([`backend: using wasm with ${n} thread${n === 1 ? '' : 's'}, matmul by ${r.matmul} (from setting)`])
    expect(b.backendReport()).toBe(r)
    // the same request, or none: the same report, nothing started again or logged
    expect(await b.initBackend('wasm', (l) => lines.push(l))).toBe(r)
    expect(await b.initBackend(undefined, (l) => lines.push(l))).toBe(r)
    expect(lines).toHaveLength(1)
    // another backend named: switched
    const c = await b.initBackend('cpu', (l) => lines.push(l))
    expect(c).toMatchObject({ name: 'cpu', tfBackend: 'cpu', source: 'setting' })
    expect(c).not.toHaveProperty('threads')
    expect(c).not.toHaveProperty('matmul')
    expect(c).not.toHaveProperty('adapter')
    expect(lines[1]).toBe('backend: using cpu (from setting)')
    expect(tf.getBackend()).toBe('cpu')
    expect(b.backendReport()).toBe(c)
  })

  it('the environment names the source; empty or auto means automatic', async () => {
    process.env.MOE_WORKBENCH_BACKEND = 'cpu'
    let b = await fresh()
    const lines: string[] = []
    await b.initBackend(undefined, (l) => lines.push(l))
    expect(lines).toEqual(['backend: using cpu (from env)'])
    for (const value of ['', 'auto']) {
      process.env.MOE_WORKBENCH_BACKEND = value
      b = await fresh()
      const r = await b.initBackend()
      expect(r.source).toBe('auto')
      expect(r.attempts.length).toBeGreaterThanOrEqual(1)
    }
  })

  it('a backend that cannot start is reported in one line, with every attempt in the error', async () => {
    if (installed('@tensorflow/tfjs-node-gpu')) return
    const b = await fresh()
    const err = await b.initBackend('tfjs-node-gpu').catch((e: Error) => e)
    expect(err).toBeInstanceOf(Error)
    // "Cannot find module '@tensorflow/tfjs-node-gpu'\nRequire stack: ..." → its first line only
    expect((err as Error).message).toMatch(/^backend tfjs-node-gpu is unavailable: tfjs-node-gpu: [^\n]*tfjs-node-gpu[^\n]*$/)
    expect((err as Error).message).not.toMatch(/Require stack/)
    expect(b.backendReport()).toBeUndefined()
  })
})

describe('probeWebGpu', () => {
  it('finds the adapter in a child process, and none where the loader has no driver', async () => {
    const { probeWebGpu } = await import('../../../src/main/engine/backend')
    const none = probeWebGpu({ ...process.env, VK_ICD_FILENAMES: '/nonexistent/none_icd.json', VK_DRIVER_FILES: '' })
    expect(none).toEqual({ adapter: null })
    if (webgpuMissing) return expect(webgpuMissing).toBeTruthy()
    const found = probeWebGpu()
    expect('adapter' in found && found.adapter?.info.description).toMatch(/swiftshader/i)
  })

  it('keeps Dawn and the Vulkan loader off the stderr of a process that picks its backend', async () => {
    if (webgpuMissing) return expect(webgpuMissing).toBeTruthy()
    const { spawnSync } = await import('node:child_process')
    const { pathToFileURL } = await import('node:url')
    const backend = pathToFileURL(new URL('../../../src/main/engine/backend.ts', import.meta.url).pathname).href
    const env: NodeJS.ProcessEnv = { ...process.env }
    delete env.XDG_RUNTIME_DIR // Dawn complains of it on stderr (twice) when it loads
    delete env.MOE_WORKBENCH_BACKEND
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `const { initBackend } = await import(${JSON.stringify(backend)}); const r = await initBackend(); console.log(JSON.stringify(r.attempts))`,
      ],
      { env, encoding: 'utf8', timeout: 120_000 },
    )
    expect(r.status, r.stderr).toBe(0)
    // Only a software adapter here (SwiftShader): refused without Dawn ever loading in this process.
    expect(r.stdout).toMatch(/"name":"webgpu","ok":false,"reason":"only a software adapter/)
    expect(r.stderr).not.toMatch(/XDG_RUNTIME_DIR|Vulkan|Dawn|dawn/)
  }, 180_000)
})

describe('hasVulkanDriver', () => {
  it('finds an ICD named by the environment or in a data folder, and none in an empty system', async () => {
    const { mkdtempSync, mkdirSync, writeFileSync } = await import('node:fs')
    const { join } = await import('node:path')
    const { tmpdir } = await import('node:os')
    const { hasVulkanDriver } = await import('../../../src/main/engine/backend')
    const root = mkdtempSync(join(tmpdir(), 'vk-'))
    const icd = join(root, 'x_icd.json')
    writeFileSync(icd, '{}')
    expect(hasVulkanDriver({ VK_ICD_FILENAMES: icd })).toBe(true)
    expect(hasVulkanDriver({ VK_DRIVER_FILES: `${join(root, 'missing.json')}` })).toBe(false)
    // a list: one driver that exists is enough
    expect(hasVulkanDriver({ VK_ICD_FILENAMES: `${join(root, 'missing.json')}:${icd}` })).toBe(true)
    const data = join(root, 'share')
    const empty = { XDG_DATA_HOME: join(root, 'none'), XDG_DATA_DIRS: data }
    // (a machine whose /etc/vulkan/icd.d holds a driver finds it whatever the data folders say)
    const systemWide = hasVulkanDriver({ XDG_DATA_HOME: join(root, 'none'), XDG_DATA_DIRS: join(root, 'none') })
    expect(hasVulkanDriver(empty)).toBe(systemWide)
    mkdirSync(join(data, 'vulkan/icd.d'), { recursive: true })
    // a folder without a manifest (.json) holds no driver
    writeFileSync(join(data, 'vulkan/icd.d/README'), 'x')
    if (!systemWide) expect(hasVulkanDriver(empty)).toBe(false)
    writeFileSync(join(data, 'vulkan/icd.d/radeon_icd.x86_64.json'), '{}')
    expect(hasVulkanDriver(empty)).toBe(true)
    // the user's own data folder counts too
    const home = { XDG_DATA_HOME: data, XDG_DATA_DIRS: join(root, 'none') }
    expect(hasVulkanDriver(home)).toBe(true)
  })
})
