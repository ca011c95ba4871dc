/**
 * Tests never touch the user's workspace (~/moe-workbench): a command or service started without
 * --workspace gets a fresh temporary one. Every temporary folder a test file makes (its own, its
 * child processes', the workspace) goes under one root per file, removed when the file is done:
 * the suite made tens of thousands of folders (30 GB on this machine) and filled the disk.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from 'vitest'

const root = mkdtempSync(join(tmpdir(), 'moe-test-'))
// os.tmpdir() reads these on every call (TMPDIR on Linux and macOS, TEMP/TMP on Windows), and
// child processes inherit them.
process.env.TMPDIR = root
process.env.TEMP = root
process.env.TMP = root
process.env.MOE_WORKBENCH_WORKSPACE = mkdtempSync(join(root, 'moe-test-workspace-'))

afterAll(() => {
  try {
    rmSync(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 })
  } catch {
    // A child process (an engine a test killed) may still be writing there: the folder stays,
    // as every one did before; cleaning up must never fail a test file.
  }
})
