/**
 * WebGPU in tests: where no GPU driver is configured, Debian's chromium package ships a software
 * Vulkan driver (SwiftShader) that Dawn accepts; point the Vulkan loader at it. Returns why WebGPU
 * cannot run here, or null when it can (then `initBackend('webgpu')` works). With
 * MOE_WORKBENCH_REQUIRE_WEBGPU=1 (CI sets it) a missing adapter is an error, not a skip.
 */
import { spawnSync } from 'node:child_process'
import { useSoftwareVulkanWhereNoDriver } from './vulkanEnv.mjs'

let probed: string | null | undefined

export function prepareWebGpu(): string | null {
  if (probed !== undefined) return probed
  useSoftwareVulkanWhereNoDriver()
  // Ask for an adapter in a child process: a missing Vulkan loader or driver then costs a skip
  // with the reason, not this process.
  const probe = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "import('webgpu').then(async ({ create }) => { const a = await create([]).requestAdapter(); console.log(a ? 'ok ' + a.info.description : 'no adapter (no Vulkan/Metal/D3D12 driver)'); process.exit(0) }, (e) => { console.log('the webgpu package (Dawn) does not load: ' + e.message.split('\\n')[0]); process.exit(0) })",
    ],
    { encoding: 'utf8', env: process.env, timeout: 60_000 },
  )
  const line = (probe.stdout ?? '').trim().split('\n').pop() ?? ''
  probed = line.startsWith('ok ') ? null : line || `the adapter probe failed (${probe.stderr?.trim().split('\n')[0] ?? probe.status})`
  if (probed !== null && process.env.MOE_WORKBENCH_REQUIRE_WEBGPU === '1')
    throw new Error(`MOE_WORKBENCH_REQUIRE_WEBGPU=1 but WebGPU cannot run here: ${probed} (on Debian: apt-get install chromium libvulkan1)`)
  return probed
}
