/**
 * The same journey in the desktop app, where the Electron binary is installed. It is downloaded
 * lazily (node_modules/electron/path.txt and dist/ appear after `npx install-electron`), which
 * needs network access to GitHub's release downloads.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { _electron as electron, type Locator, type Page } from '@playwright/test'
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
      expect(surface).toEqual({
        keys: ['chat', 'conversations', 'datasets', 'experts', 'models', 'onEvent', 'runs', 'system'],
        require: 'undefined',
        process: 'undefined',
      })

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

  // The core of e2e/journey.spec.ts in the desktop app: import, train, export, chat, compare.
  test('the journey: import a dataset, fine-tune, watch it, chat with the export next to the base model', async () => {
    test.setTimeout(180_000)
    const app = await electron.launch({
      args: [join(ROOT, 'out', 'main', 'index.js')],
      cwd: ROOT,
      // A workspace of its own, seeded by the first start like a new user's.
      env: { ...process.env, MOE_WORKBENCH_WORKSPACE: mkdtempSync(join(tmpdir(), 'moe-e2e-electron-ws-')) },
    })
    try {
      const win = await app.firstWindow()
      const problems: string[] = []
      win.on('pageerror', (e) => problems.push(e.message))
      win.on('console', (m) => m.type() === 'error' && problems.push(m.text()))
      await expect(win.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready', { timeout: 30_000 })
      await expect(win.getByTestId('start-step-model')).toContainText('Default MoE (bundled)')

      // 20 good rows and a broken line (line 5).
      const rows = readFileSync(join(ROOT, 'resources', 'samples', 'arithmetic.jsonl'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .slice(0, 20)
      rows.splice(4, 0, '{"instruction":"What is 3 + 4?","output":')
      const file = join(mkdtempSync(join(tmpdir(), 'moe-e2e-electron-data-')), 'arithmetic.jsonl')
      writeFileSync(file, `${rows.join('\n')}\n`)
      await win.getByTestId('nav-datasets').click()
      await win.getByTestId('dataset-file').fill(file)
      await win.getByTestId('dataset-inspect').click()
      await expect(win.getByTestId('report-invalid')).toHaveText('1')
      await expect(win.getByTestId('dataset-problem').locator('td').first()).toHaveText('5')
      await win.getByTestId('dataset-name').fill('Electron arithmetic')
      await win.getByTestId('dataset-accept-invalid').check()
      await win.getByTestId('dataset-import').click()
      await expect(win.getByTestId('dataset-imported')).toContainText('Imported Electron arithmetic: 20 rows')

      await win.getByTestId('dataset-train').click()
      // The Quick preset asks the service for settings chosen from the dataset and the model;
      // once they are in, cut the run short.
      await win.getByTestId('preset-quick').click()
      await expect(win.getByTestId('auto-method')).toContainText('= full', { timeout: 30_000 })
      await win.getByTestId('cfg-maxSteps').fill('30')
      await expect(win.getByTestId('auto-changed')).toBeVisible()
      await win.getByTestId('group-evaluation-toggle').click()
      await win.getByTestId('cfg-evalEvery').fill('10')
      await win.getByTestId('train-start').click()
      const heatmap = win.getByTestId('chart-expert-heatmap')
      await expect.poll(() => runStep(win), { timeout: 60_000 }).toBeGreaterThanOrEqual(2)
      const early = {
        step: await runStep(win),
        loss: await canvasPrint(win.getByTestId('chart-loss')),
        heatmap: await canvasPrint(heatmap),
      }
      await expect.poll(() => runStep(win), { timeout: 60_000 }).toBeGreaterThanOrEqual(early.step + 3)
      await expect.poll(() => canvasPrint(win.getByTestId('chart-loss'))).not.toBe(early.loss)
      await expect.poll(() => canvasPrint(heatmap)).not.toBe(early.heatmap)
      await snapshot(win, 'electron-journey-training')
      await expect(win.getByTestId('run-status')).toHaveAttribute('data-status', 'completed', { timeout: 90_000 })
      await expect(win.getByTestId('run-best-val')).toHaveText(/^\d/)

      await win.getByTestId('export-name').fill('Electron fine-tuned')
      await win.getByTestId('run-export').click()
      await expect(win.getByTestId('toast').filter({ hasText: 'Exported Electron fine-tuned' })).toBeVisible({ timeout: 30_000 })
      await win.getByTestId('nav-chat').click()
      await win.getByTestId('chat-compare').check()
      await win.getByTestId('chat-model-0').selectOption({ label: 'Default MoE (bundled)' })
      await win.getByTestId('chat-model-1').selectOption({ label: 'Electron fine-tuned' })
      await win.getByTestId('chat-greedy').check()
      await win.getByTestId('chat-max-tokens').fill('24')
      const heldOut = JSON.parse(readFileSync(join(ROOT, 'resources', 'samples', 'heldout.json'), 'utf8')) as Record<
        string,
        { prompt: string }[]
      >
      await win.getByTestId('chat-input').fill(heldOut.arithmetic[0].prompt)
      await win.getByTestId('chat-send').click()
      for (const pane of ['chat-pane-0', 'chat-pane-1']) {
        const reply = win.getByTestId(pane).locator('[data-role="assistant"]').last()
        await expect(reply.getByTestId('chat-stats')).toBeVisible({ timeout: 30_000 })
        await expect(reply.getByTestId('chat-reply').locator('[data-expert]').first()).toBeVisible()
      }
      const token = win.getByTestId('chat-pane-1').getByTestId('chat-reply').getByTestId('chat-token').first()
      await token.hover()
      await expect(win.getByTestId('chat-pane-1').getByTestId('chat-routing-card')).toContainText('L0')
      await snapshot(win, 'electron-journey-compare')
      expect(problems).toEqual([])
    } finally {
      await app.close()
    }
  })
})

/** The run's "step N of M". */
async function runStep(page: Page): Promise<number> {
  const m = /step (\d+) of/.exec((await page.getByTestId('run-eta').textContent()) ?? '')
  return m ? Number(m[1]) : 0
}

/** A fingerprint of what a chart shows now (ECharts draws on one canvas per layer). */
function canvasPrint(chart: Locator): Promise<string> {
  return chart.evaluate((el) => {
    let h = 2166136261
    for (const canvas of el.querySelectorAll('canvas')) {
      const url = canvas.toDataURL()
      for (let i = 0; i < url.length; i++) h = Math.imul(h ^ url.charCodeAt(i), 16777619)
    }
    return (h >>> 0).toString(16)
  })
}
