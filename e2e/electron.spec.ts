/**
 * The same journey in the desktop app, where the Electron binary is installed. It is downloaded
 * lazily (node_modules/electron/path.txt and dist/ appear after `npx install-electron`), which
 * needs network access to GitHub's release downloads.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { _electron as electron } from '@playwright/test'
import type { WorkbenchBridge } from '../src/shared/bridge'
import { ROOT, expect, snapshot, test } from './fixtures'

const ELECTRON_DIR = join(ROOT, 'node_modules', 'electron')
const hasElectron = existsSync(join(ELECTRON_DIR, 'path.txt')) && existsSync(join(ELECTRON_DIR, 'dist'))

test.describe('desktop app (Electron)', () => {
  test.skip(
    !hasElectron,
    'the Electron binary is not installed (node_modules/electron/path.txt and dist/ are missing: its download was blocked or skipped); ' +
      'run `npx install-electron` with network access (Node 22.12+), then `npm run build` and this spec again',
  )

  test('shows the backend, inspects a model, and refuses a bad IPC payload', async () => {
    const app = await electron.launch({ args: [join(ROOT, 'out', 'main', 'index.js')], cwd: ROOT })
    try {
      const win = await app.firstWindow()
      const problems: string[] = []
      win.on('pageerror', (e) => problems.push(e.message))
      win.on('console', (m) => m.type() === 'error' && problems.push(m.text()))

      await expect(win.getByTestId('backend-name')).not.toBeEmpty()
      await win.getByTestId('nav-models').click()
      await win.getByTestId('model-dir').fill(join(ROOT, 'test', 'fixtures', 'moe-reference', 'mixtral'))
      await win.getByTestId('inspect-button').click()
      await expect(win.getByTestId('params-total')).toContainText('72,816')
      await snapshot(win, 'electron-home-inspected')

      // The renderer has the named API and nothing of Node or Electron.
      const surface = await win.evaluate(() => ({
        keys: Object.keys((window as unknown as { workbench?: WorkbenchBridge }).workbench ?? {}).sort(),
        require: typeof (globalThis as { require?: unknown }).require,
        process: typeof (globalThis as { process?: unknown }).process,
      }))
      expect(surface).toEqual({ keys: ['models', 'onEvent', 'system'], require: 'undefined', process: 'undefined' })

      // A bad payload through IPC is refused with the field named, like over HTTP.
      const error = await win.evaluate(() =>
        ((window as unknown as { workbench: WorkbenchBridge }).workbench.models.inspect as (dir: unknown) => Promise<unknown>)(42).then(
          () => null,
          (e: { code?: string; field?: string; message?: string }) => ({ code: e.code, field: e.field, message: e.message }),
        ),
      )
      expect(error).toMatchObject({ code: 'invalid_argument', field: 'dir' })
      expect(problems).toEqual([])
    } finally {
      await app.close()
    }
  })
})
