/**
 * The built CLI (bin/moe-workbench.js over out/main/cli.js) as a user runs it: the bundle must
 * load every backend the source does (a bundled `webgpu` package once broke Dawn's loading).
 */
import { spawn, spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { test, expect } from '@playwright/test'
import { prepareWebGpu } from '../test/main/engine/webgpuEnv'

const ROOT = join(import.meta.dirname, '..')
const MIXTRAL = join(ROOT, 'test', 'fixtures', 'moe-reference', 'mixtral')

function cli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'moe-workbench.js'), ...args], {
    encoding: 'utf8',
    env: process.env,
    timeout: 120_000,
  })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

test('the built CLI generates the reference tokens on wasm', () => {
  const r = cli([
    'generate',
    '--model',
    MIXTRAL,
    '--prompt-ids',
    '1,2,3',
    '--max-new-tokens',
    '4',
    '--greedy',
    '--json',
    '--backend',
    'wasm',
  ])
  expect(r.code, r.err).toBe(0)
  expect(JSON.parse(r.out.trim().split('\n').at(-1)!).output_ids).toHaveLength(7)
})

test('the built CLI leaves quietly when its reader stops reading (`run list | head -1`), no EPIPE stack trace', async () => {
  // --help writes line after line; the reader's end is closed before the first of them.
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'moe-workbench.js'), '--help'], { stdio: ['ignore', 'pipe', 'pipe'] })
  child.stdout.destroy()
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  expect(err).not.toMatch(/EPIPE|Unhandled 'error' event/)
  expect(code).toBe(0)
})

test('the built CLI runs on webgpu', () => {
  const missing = prepareWebGpu()
  test.skip(missing !== null, `WebGPU cannot run here: ${missing}`)
  const r = cli(['info', '--model', MIXTRAL, '--backend', 'webgpu'])
  expect(r.code, r.err).toBe(0)
  expect(r.err).toMatch(/backend: using webgpu on /)
  expect(r.out).toMatch(/backend\s+webgpu/)
})
