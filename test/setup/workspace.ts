/**
 * Tests never touch the user's workspace (~/moe-workbench): a command or service started without
 * --workspace gets a fresh temporary one.
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

process.env.MOE_WORKBENCH_WORKSPACE = mkdtempSync(join(tmpdir(), 'moe-test-workspace-'))
