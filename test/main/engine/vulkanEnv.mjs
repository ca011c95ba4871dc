// @ts-check
/**
 * Points the Vulkan loader at SwiftShader (the software driver in Debian's chromium package)
 * where no driver is configured, and gives Dawn a writable XDG_RUNTIME_DIR. Plain JavaScript so
 * that stryker.config.mjs can call it too: the Vulkan loader reads the process's real
 * environment, which a worker thread's process.env does not reach.
 */
import { existsSync, mkdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import process from 'node:process'

export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json'

export function useSoftwareVulkanWhereNoDriver() {
  if (!process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES && existsSync(SWIFTSHADER_ICD))
    process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = join(tmpdir(), `xdg-${process.getuid?.() ?? 'user'}`)
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    process.env.XDG_RUNTIME_DIR = dir
  }
}
