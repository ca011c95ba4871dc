/**
 * Long work that answers only when done shows its progress and stops on Cancel: here an expert
 * analysis over a sample dataset (the engine routes it text by text), in server mode.
 */
import { expect, snapshot, test } from './fixtures'

const BUNDLED = 'Default MoE (bundled)'

test.describe('long work', () => {
  // A cancelled call answers HTTP 409 (ApiError 'cancelled'), which Chromium logs as a failed load.
  test.use({ allowedConsoleErrors: /status of 409/ })

  test('an expert analysis shows its stages, counts and ETA, and Cancel stops it without an error', async ({ page, app }) => {
    await page.goto(app.url)
    await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready', { timeout: 30_000 })
    await page.getByTestId('nav-experts').click()
    await expect(page.getByTestId('experts-model').locator('option:checked')).toHaveText(BUNDLED)
    // Both models route the same rows: two tasks under way at once.
    await page.getByTestId('experts-compare-model').selectOption({ label: BUNDLED })
    await page.getByTestId('experts-source-dataset').check()
    await page.getByTestId('experts-dataset').selectOption({ label: 'Sample: arithmetic' })
    await page.getByTestId('experts-max-rows').fill('10000')
    await page.getByTestId('experts-analyze').click()

    const tasks = page.getByTestId('experts-progress').getByTestId('task')
    await expect(tasks).toHaveCount(2)
    const first = tasks.first()
    await expect(first.getByTestId('task-stage')).toHaveText('Step 2 of 2: Routing the text through the model', { timeout: 30_000 })
    await expect(first.getByTestId('task-detail')).toHaveText(/^\d+% · \d+ of \d+ texts( · (about .* left|under a second left))?$/)
    await expect(page.getByTestId('status-task')).toContainText('Analysing')
    await snapshot(page, 'tasks-experts-progress')

    await first.getByTestId('task-cancel').click()
    await expect(page.getByTestId('experts-progress')).toHaveCount(0)
    await expect(page.getByTestId('experts-analyze')).toBeEnabled()
    await expect(page.getByTestId('experts-error')).toBeHidden()
    await expect(page.getByTestId('experts-summary')).toHaveCount(0)
    await expect(page.getByTestId('status-task')).toHaveCount(0)

    // The engine is free again: a short text analyses to the end.
    await page.getByTestId('experts-compare-model').selectOption({ label: 'No comparison' })
    await page.getByTestId('experts-source-text').check()
    await page.getByTestId('experts-text').fill('What is 12 + 30?')
    await page.getByTestId('experts-analyze').click()
    await expect(page.getByTestId('experts-summary')).toContainText('tokens through')
    await expect(page.getByTestId('experts-summary')).toContainText('from the text')
    await snapshot(page, 'tasks-experts-after-cancel')

    // Compared (here with itself): the difference says which way round it is taken.
    await page.getByTestId('experts-compare-model').selectOption({ label: BUNDLED })
    await page.getByTestId('experts-analyze').click()
    await expect(page.getByTestId('experts-diff-sign')).toContainText('minus load in')
    await expect(page.getByTestId('experts-diff-sign')).toContainText('+ = more of the tokens in')
    await expect(page.getByTestId('experts-moves').first()).toHaveText('no change')
    // Two models: the single load column says whose it is
    await expect(page.getByTestId('experts-top-load')).toHaveText(`Load in ${BUNDLED}`)
    await page.getByTestId('experts-compare-model').selectOption({ label: 'No comparison' })
    await page.getByTestId('experts-analyze').click()
    await expect(page.getByTestId('experts-diff')).toHaveCount(0)
    await expect(page.getByTestId('experts-top-load')).toHaveText('Load')

    // Back on the page later: the last analysis with its first layer shown (the selector was empty).
    await page.getByTestId('nav-home').click()
    await page.getByTestId('nav-experts').click()
    await expect(page.getByTestId('experts-summary')).toContainText('from the text')
    await expect(page.getByTestId('experts-layer')).toHaveValue('0')
    await expect(page.getByText('Expert load in layer 0')).toBeVisible()
  })
})
