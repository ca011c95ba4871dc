import { join } from 'node:path'
import type { SystemInfo } from '../src/shared/api'
import { ROOT, expect, snapshot, test } from './fixtures'

const MIXTRAL = join(ROOT, 'test', 'fixtures', 'moe-reference', 'mixtral')

test.describe('server mode in the browser', () => {
  test('shows the engine backend, then inspects a model folder', async ({ page, app, request }) => {
    const sockets = page.waitForEvent('websocket')
    await page.goto(app.url)

    // The token leaves the address bar once the page has it.
    await expect(page).toHaveURL(`${app.origin}/`)
    // The event stream is connected.
    expect((await sockets).url()).toContain('/events')

    const info = (await (
      await request.post(`${app.origin}/api/system.info`, { headers: { Authorization: `Bearer ${app.token}` } })
    ).json()) as {
      result: SystemInfo
    }
    const backend = info.result.engine.backend
    await expect(page.getByTestId('backend-name')).toHaveText(backend.name)
    await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready')
    for (const attempt of backend.attempts.filter((a) => !a.ok)) {
      await expect(page.getByTestId('backend-unavailable')).toContainText(attempt.name)
    }

    // Inspecting (then linking) a folder lives on the Models screen.
    await page.getByTestId('nav-models').click()
    await page.getByTestId('model-dir').fill(MIXTRAL)
    await page.getByTestId('inspect-button').click()
    const model = page.getByTestId('model-info')
    await expect(model).toBeVisible()
    // Numbers of the mixtral fixture (config.json: 2 layers, 4 experts, top-2, hidden 48, expert width 40).
    await expect(page.getByTestId('model-family')).toHaveText('mixtral')
    await expect(page.getByTestId('model-layers')).toContainText('2 · all sparse')
    await expect(page.getByTestId('model-experts')).toContainText('4 per sparse layer, top-2')
    await expect(page.getByTestId('params-total')).toContainText('72,816')
    await expect(page.getByTestId('params-active')).toContainText('49,776')
    await expect(page.getByTestId('params-experts')).toContainText('46,080')
    await expect(page.getByTestId('checkpoint-dtype')).toHaveText('float32')
    await expect(page.getByTestId('bytes-float32')).toContainText('291,264')
    await expect(page.getByTestId('bytes-bfloat16')).toContainText('145,632')
    await snapshot(page, 'server-home-inspected')

    // The fit planner, for every model: a budget too small names what it would take.
    const card = page.locator('[data-source="bundled"]').first()
    await page.getByTestId('fit-budget').fill('1 KiB')
    await page.getByTestId('fit-check').click()
    await expect(card.getByTestId('fit-verdict')).toHaveText('Does not fit')
    await expect(card.locator('.fit')).toContainText('raise the budget to at least')
    await page.getByTestId('fit-budget').fill('8 GiB')
    await page.getByTestId('fit-check').click()
    await expect(card.getByTestId('fit-verdict')).toHaveText('Fits, nothing paged')
    await expect(card.getByTestId('budget-part-resident')).toBeVisible()
    await snapshot(page, 'models-fit')
  })

  test.describe('errors', () => {
    test.use({ allowedConsoleErrors: /status of 4\d\d/ })

    test('appear where the user acted', async ({ page, app }) => {
      await page.goto(app.url)
      await expect(page.getByTestId('backend-name')).not.toBeEmpty()

      await page.getByTestId('nav-models').click()
      await page.getByTestId('inspect-button').click()
      await expect(page.getByTestId('inspect-error')).toContainText('dir: must not be empty')
      await expect(page.getByTestId('model-dir')).toHaveAttribute('aria-invalid', 'true')

      await page.getByTestId('model-dir').fill(join(ROOT, 'no', 'such', 'model'))
      await page.getByTestId('inspect-button').click()
      await expect(page.getByTestId('inspect-error')).toContainText('no/such/model')
      await expect(page.getByTestId('model-info')).toHaveCount(0)
      await snapshot(page, 'server-home-error')
    })
  })

  test('keeps the token across a reload', async ({ page, app }) => {
    await page.goto(app.url)
    await expect(page.getByTestId('backend-name')).not.toBeEmpty()
    await page.reload()
    await expect(page).toHaveURL(`${app.origin}/`)
    await expect(page.getByTestId('backend-name')).not.toBeEmpty()
  })
})
