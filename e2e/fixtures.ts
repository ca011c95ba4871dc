/**
 * Playwright fixtures: a worker-scoped server (the built `moe-workbench serve`, started once per
 * worker and stopped after), and a page that fails the test on any page error or console error
 * (except those a test declares it expects).
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { type Page, test as base, expect } from '@playwright/test'

export const ROOT = resolve(import.meta.dirname, '..')
export const ARTIFACTS = join(ROOT, 'e2e', 'artifacts')

export interface AppServer {
  /** The page URL with its token, as printed. */
  url: string
  origin: string
  token: string
  /** Everything the server wrote to stderr so far. */
  stderr: () => string
}

interface Fixtures {
  /** Console errors this test provokes on purpose (e.g. the 400 of a bad payload); null: none. */
  allowedConsoleErrors: RegExp | null
}

export const test = base.extend<Fixtures, { app: AppServer }>({
  app: [
    // eslint-disable-next-line no-empty-pattern -- Playwright reads the fixture's dependencies from this pattern
    async ({}, use) => {
      // A workspace of its own, seeded by the first start like a new user's (removed after: 75 MB each).
      const workspace = mkdtempSync(join(tmpdir(), 'moe-e2e-ws-'))
      const server = await startServe(workspace)
      await use(server)
      const code = await server.stop()
      rmSync(workspace, { recursive: true, force: true, maxRetries: 3 })
      // A clean shutdown on SIGTERM is part of the contract.
      expect(code, `the server exited with ${code}; stderr:\n${server.stderr()}`).toBe(0)
    },
    { scope: 'worker', timeout: 90_000 },
  ],

  allowedConsoleErrors: [null, { option: true }],

  page: async ({ page, allowedConsoleErrors }, use) => {
    const problems: string[] = []
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`))
    page.on('console', (message) => {
      if (message.type() !== 'error') return
      const text = message.text()
      if (!allowedConsoleErrors?.test(text)) problems.push(`console error: ${text}`)
    })
    await use(page)
    expect(problems, 'the page logged errors').toEqual([])
  },
})

export { expect }

/** Saves a screenshot under e2e/artifacts (kept by CI). */
export async function snapshot(page: Page, name: string): Promise<void> {
  mkdirSync(ARTIFACTS, { recursive: true })
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
}

/**
 * Starts the built `moe-workbench serve` on `workspace` (a free port unless one is given, more
 * environment where given) once it has printed its URL; stop() sends SIGTERM and gives the exit code.
 */
export async function startServe(
  workspace: string,
  options: { port?: number; env?: Record<string, string> } = {},
): Promise<AppServer & { stop: () => Promise<number | null> }> {
  // The journeys read datasets from the repository and write into temporary folders.
  const args = ['bin/moe-workbench.js', 'serve', '--port', String(options.port ?? 0), '--allow-dir', ROOT, '--allow-dir', tmpdir()]
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, MOE_WORKBENCH_WORKSPACE: workspace, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d))
  const url = await printedUrl(child, () => stderr)
  const parsed = new URL(url)
  return { url, origin: parsed.origin, token: parsed.searchParams.get('token') ?? '', stderr: () => stderr, stop: () => stop(child) }
}

function printedUrl(child: ChildProcess, stderr: () => string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    let out = ''
    const timer = setTimeout(() => fail(new Error('the server printed no URL within 60 s')), 60_000)
    const fail = (error: Error): void => {
      clearTimeout(timer)
      child.kill('SIGKILL')
      reject(new Error(`${error.message}\nstdout:\n${out}\nstderr:\n${stderr()}`))
    }
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d
      const m = /MoE Workbench server: (http:\/\/\S+)/.exec(out)
      if (m) {
        clearTimeout(timer)
        resolvePromise(m[1])
      }
    })
    child.once('exit', (code) => fail(new Error(`the server exited with code ${code} before printing its URL`)))
  })
}

function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  return new Promise((resolvePromise) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolvePromise(code)
    })
    child.kill('SIGTERM')
  })
}
