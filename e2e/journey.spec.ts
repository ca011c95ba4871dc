/**
 * A user's whole journey in server mode (DESIGN.md, Tests; issue 5 §3), in Debian's Chromium:
 * open the app and find the bundled model and the sample datasets, import a file with a few bad
 * rows, fine-tune the bundled model on it while the loss chart and the expert heatmap update,
 * export the run, chat with the export (streamed, expert-coloured tokens with a routing card on
 * hover), then compare it with the base model side by side. The fixture fails the test on any
 * page or console error; each step leaves a screenshot in e2e/artifacts (journey-*.png).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Locator, Page } from '@playwright/test'
import { ROOT, expect, snapshot, test } from './fixtures'

const SAMPLES = join(ROOT, 'resources', 'samples')
const BUNDLED = 'Default MoE (bundled)'
/** The names the first start gives the sample datasets (scripts/default-model/samples.ts). */
const SAMPLE_DATASETS = ['Sample: arithmetic', 'Sample: word reversal', 'Sample: record to JSON']
/** Short enough for the whole journey to stay well under two minutes on a 2-core CPU. */
const MAX_STEPS = 60
const EVAL_EVERY = 10

/**
 * 40 good rows of the arithmetic sample with three bad lines among them: invalid JSON, a row
 * without its answer, a row that is not an object. Returns the file and the bad lines' numbers.
 */
function datasetWithBadRows(): { file: string; badLines: number[]; good: number } {
  const good = readFileSync(join(SAMPLES, 'arithmetic.jsonl'), 'utf8').split('\n').filter(Boolean).slice(0, 40)
  const bad = new Map<number, string>([
    [8, '{"instruction":"What is 3 + 4?","input":"","output":'],
    [21, '{"instruction":"What is 5 + 6?","input":""}'],
    [35, '["What is 7 + 8?", "15"]'],
  ])
  const lines: string[] = []
  for (const row of good) {
    while (bad.has(lines.length + 1)) lines.push(bad.get(lines.length + 1)!)
    lines.push(row)
  }
  const file = join(mkdtempSync(join(tmpdir(), 'moe-e2e-data-')), 'arithmetic-with-bad-rows.jsonl')
  writeFileSync(file, `${lines.join('\n')}\n`)
  return { file, badLines: [...bad.keys()], good: good.length }
}

/** The first arithmetic prompt held out of every dataset. */
function heldOutPrompt(): string {
  const heldOut = JSON.parse(readFileSync(join(SAMPLES, 'heldout.json'), 'utf8')) as Record<string, { prompt: string }[]>
  return heldOut.arithmetic[0].prompt
}

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

/**
 * Records, as the reply in `pane` streams, how many tokens its reply shows each time the DOM
 * changes; read the record with `streamedCounts`.
 */
async function recordStreaming(page: Page, pane: string): Promise<void> {
  await page.evaluate((paneId) => {
    const w = window as unknown as { __streamed?: Record<string, number[]> }
    w.__streamed ??= {}
    const counts: number[] = (w.__streamed[paneId] = [])
    const root = document.querySelector(`[data-testid="${paneId}"]`)!
    new MutationObserver(() => {
      const turn = root.querySelector('[data-role="assistant"][data-streaming="true"]')
      if (!turn) return
      const n = turn.querySelectorAll('[data-testid="chat-reply"] [data-testid="chat-token"]').length
      if (n > 0 && n !== counts.at(-1)) counts.push(n)
    }).observe(root, { childList: true, subtree: true, attributes: true })
  }, pane)
}

function streamedCounts(page: Page, pane: string): Promise<number[]> {
  return page.evaluate((paneId) => (window as unknown as { __streamed: Record<string, number[]> }).__streamed[paneId], pane)
}

/** The newest assistant reply of a chat pane, once it finished. */
async function finishedReply(page: Page, pane: string): Promise<Locator> {
  const reply = page.getByTestId(pane).locator('[data-role="assistant"]').last()
  await expect(reply.getByTestId('chat-stats')).toBeVisible({ timeout: 30_000 })
  await expect(reply).not.toHaveAttribute('data-streaming', 'true')
  await expect(reply.getByTestId('chat-reply-error')).toHaveCount(0)
  return reply
}

// Tall enough that each step's screenshot shows its point above the status bar.
test.use({ viewport: { width: 1280, height: 1000 } })

/** A full-page screenshot from the top (the navigation and status bar are sticky). */
async function shot(page: Page, name: string): Promise<void> {
  await page.evaluate(() => window.scrollTo(0, 0))
  await snapshot(page, name)
}

test('the whole journey: import, fine-tune, export, chat and compare', async ({ page, app }) => {
  test.setTimeout(180_000)
  // Unique within the worker's workspace (--repeat-each reuses the server).
  const suffix = test.info().repeatEachIndex ? ` ${test.info().repeatEachIndex + 1}` : ''
  const DATASET_NAME = `Journey arithmetic${suffix}`
  const EXPORT_NAME = `Journey arithmetic LoRA${suffix}`
  const timings: Record<string, number> = {}
  let last = Date.now()
  const lap = (name: string): void => {
    timings[name] = Math.round((Date.now() - last) / 100) / 10
    last = Date.now()
  }

  await test.step('open the app: the bundled model and the sample datasets', async () => {
    await page.goto(app.url)
    await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready', { timeout: 30_000 })
    await expect(page.getByTestId('start-step-model')).toContainText(BUNDLED)
    // Seeded by the first start from resources/samples/index.json (npm run build:default-model).
    await expect(page.getByTestId('start-step-dataset'), 'the first start imported the sample datasets').toHaveAttribute(
      'data-done',
      'true',
    )
    await expect(page.getByTestId('start-step-dataset')).toContainText('Sample: ')
    await shot(page, 'journey-1-home')

    await page.getByTestId('nav-models').click()
    await expect(page.getByTestId('model-card-default')).toContainText(BUNDLED)
    await page.getByTestId('nav-datasets').click()
    const list = page.getByTestId('dataset-list')
    for (const name of SAMPLE_DATASETS) await expect(list).toContainText(name)
    lap('open')
  })

  const data = datasetWithBadRows()
  await test.step('import a file with bad rows: they are reported by line, the valid rows imported', async () => {
    await page.getByTestId('dataset-file').fill(data.file)
    await page.getByTestId('dataset-inspect').click()
    await expect(page.getByTestId('dataset-detected-layout')).toHaveText('alpaca')
    await expect(page.getByTestId('report-total')).toHaveText(String(data.good + data.badLines.length))
    await expect(page.getByTestId('report-valid')).toHaveText(String(data.good))
    await expect(page.getByTestId('report-invalid')).toHaveText(String(data.badLines.length))
    const problems = page.getByTestId('dataset-problem')
    await expect(problems).toHaveCount(data.badLines.length)
    for (const [i, line] of data.badLines.entries()) await expect(problems.nth(i).locator('td').first()).toHaveText(String(line))
    await expect(problems.nth(0)).toContainText('invalid JSON')
    await expect(problems.nth(1)).toContainText('output')
    await expect(problems.nth(2)).toContainText('expected an object')
    // Bad rows block the import until the user chooses to leave them out.
    await expect(page.getByTestId('dataset-import')).toBeDisabled()
    await shot(page, 'journey-2-bad-rows')

    await page.getByTestId('dataset-name').fill(DATASET_NAME)
    await page.getByTestId('dataset-accept-invalid').check()
    await page.getByTestId('dataset-import').click()
    const imported = page.getByTestId('dataset-imported')
    await expect(imported).toContainText(`Imported ${DATASET_NAME}: ${data.good} rows`)
    await expect(imported).toContainText(`${data.badLines.length} invalid left out`)
    await expect(page.getByTestId('dataset-list')).toContainText(DATASET_NAME)
    await shot(page, 'journey-3-imported')
    lap('import')
  })

  await test.step('fine-tune the bundled model on it, watching the loss and the experts live', async () => {
    await page.getByTestId('dataset-train').click()
    await expect(page.getByTestId('run-form')).toBeVisible()
    await page.getByTestId('preset-quick-lora').click()
    await expect(page.getByTestId('preset-quick-lora')).toHaveAttribute('aria-pressed', 'true')
    await expect(page.getByTestId('train-model').locator('option:checked')).toHaveText(BUNDLED)
    await expect(page.getByTestId('train-dataset').locator('option:checked')).toContainText(DATASET_NAME)
    await expect(page.getByTestId('cfg-method')).toHaveValue('lora')
    await page.getByTestId('cfg-maxSteps').fill(String(MAX_STEPS))
    await page.getByTestId('group-evaluation-toggle').click()
    await page.getByTestId('cfg-evalEvery').fill(String(EVAL_EVERY))
    await expect(page.getByTestId('train-problems')).toHaveCount(0)
    await shot(page, 'journey-4-run-form')
    await page.getByTestId('train-start').click()

    const status = page.getByTestId('run-status')
    await expect(status).toHaveAttribute('data-status', /queued|created|running/)
    const loss = page.getByTestId('chart-loss')
    const heatmap = page.getByTestId('chart-expert-heatmap')
    // The first steps arrive: the charts have something to draw.
    await expect.poll(() => runStep(page), { timeout: 60_000 }).toBeGreaterThanOrEqual(2)
    await expect(heatmap.locator('canvas').first()).toBeVisible()
    await expect(loss.locator('canvas').first()).toBeVisible()
    const early = { step: await runStep(page), loss: await canvasPrint(loss), heatmap: await canvasPrint(heatmap) }
    lap('train: first steps')

    // While it runs, the step counter moves and both charts redraw with the new points.
    await expect.poll(() => runStep(page), { timeout: 60_000 }).toBeGreaterThanOrEqual(early.step + 3)
    await expect.poll(() => canvasPrint(loss), { timeout: 5_000 }).not.toBe(early.loss)
    await expect.poll(() => canvasPrint(heatmap), { timeout: 5_000 }).not.toBe(early.heatmap)
    await expect(page.getByText(/token shares at step \d+/)).not.toHaveText(`token shares at step ${early.step}`)
    await shot(page, 'journey-5-training')
    const seenWhileRunning = await status.getAttribute('data-status')

    await expect(status).toHaveAttribute('data-status', 'completed', { timeout: 90_000 })
    expect(seenWhileRunning, 'the charts changed before the run completed').toBe('running')
    await expect(page.getByTestId('run-eta')).toContainText(`step ${MAX_STEPS} of ${MAX_STEPS}`)
    // Validation ran every EVAL_EVERY steps: there is a best validation loss.
    await expect(page.getByTestId('run-best-val')).toHaveText(/^\d/)
    await shot(page, 'journey-6-trained')
    lap('train: to completion')
  })

  const prompt = heldOutPrompt()
  await test.step('export the run and chat with it: a streamed reply coloured by expert', async () => {
    await page.getByTestId('export-name').fill(EXPORT_NAME)
    await page.getByTestId('run-export').click()
    await expect(page.getByTestId('toast').filter({ hasText: `Exported ${EXPORT_NAME}` })).toBeVisible({ timeout: 30_000 })
    lap('export')

    await page.getByTestId('nav-chat').click()
    await page.getByTestId('chat-model-0').selectOption({ label: EXPORT_NAME })
    // Reproducible replies, and short.
    await page.getByTestId('chat-greedy').check()
    await page.getByTestId('chat-max-tokens').fill('24')
    await recordStreaming(page, 'chat-pane-0')
    await page.getByTestId('chat-input').fill(prompt)
    await page.getByTestId('chat-send').click()
    const reply = await finishedReply(page, 'chat-pane-0')

    const counts = await streamedCounts(page, 'chat-pane-0')
    console.log(`streamed token counts: ${counts.join(', ')}; stats: ${await reply.getByTestId('chat-stats').innerText()}`)
    expect(counts.length, `tokens appeared one after another, not all at once (counts seen: ${counts.join(', ')})`).toBeGreaterThanOrEqual(
      2,
    )
    const tokens = reply.getByTestId('chat-reply').getByTestId('chat-token')
    expect(await tokens.count()).toBeGreaterThanOrEqual(counts.at(-1)!)
    await expect(tokens.first()).toHaveAttribute('data-expert', /^\d+$/)
    await tokens.first().hover()
    const card = reply.getByTestId('chat-routing-card')
    await expect(card).toBeVisible()
    await expect(card).toContainText('L0')
    await expect(card).toContainText(/E\d/)
    await shot(page, 'journey-7-chat')
    lap('chat')
  })

  await test.step('compare with the base model side by side on the same prompt', async () => {
    await page.getByTestId('chat-new').click()
    await page.getByTestId('chat-compare').check()
    await page.getByTestId('chat-model-0').selectOption({ label: BUNDLED })
    await page.getByTestId('chat-model-1').selectOption({ label: EXPORT_NAME })
    await page.getByTestId('chat-input').fill(prompt)
    await page.getByTestId('chat-send').click()
    const replies = [await finishedReply(page, 'chat-pane-0'), await finishedReply(page, 'chat-pane-1')]
    for (const reply of replies) {
      await expect(reply.getByTestId('chat-reply')).not.toBeEmpty()
      await expect(reply.getByTestId('chat-reply').locator('[data-expert]').first()).toBeVisible()
    }
    for (const pane of ['chat-pane-0', 'chat-pane-1']) await expect(page.getByTestId(pane).locator('[data-role="user"]')).toHaveText(prompt)
    await shot(page, 'journey-8-compare')
    lap('compare')
    const texts = await Promise.all(replies.map((r) => r.getByTestId('chat-reply').innerText()))
    test
      .info()
      .annotations.push(
        { type: 'replies', description: `${prompt} base: ${JSON.stringify(texts[0])}; fine-tuned: ${JSON.stringify(texts[1])}` },
        { type: 'timings (s)', description: JSON.stringify(timings) },
      )
    console.log(`journey timings (s): ${JSON.stringify(timings)}; replies: ${JSON.stringify(texts)}`)
  })
})
