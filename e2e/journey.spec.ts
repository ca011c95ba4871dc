/**
 * A user's whole journey in server mode (DESIGN.md, Tests; issues 5 §3, 11 and 12 §3), in Debian's
 * Chromium: open the app and find the bundled model and the sample datasets, import a
 * question→answer list the user wrote (a CSV with a few bad rows, reported by line), fine-tune the
 * bundled model on it with the Quick preset (settings chosen from the dataset and the model, the
 * steps cut short) while the loss chart and the expert heatmap update, read the evaluation (exact
 * match on the training questions before and after), export the run, chat with the export about
 * one of its training questions (a reply streamed token by token, expert-coloured, with a routing
 * card on hover), then compare it with the base model side by side. The fixture fails the test on
 * any page or console error; each step leaves a screenshot in e2e/artifacts (journey-*.png).
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Locator, Page } from '@playwright/test'
import { expect, snapshot, test } from './fixtures'

const BUNDLED = 'Default MoE (bundled)'
/** The names the first start gives the sample datasets (scripts/default-model/samples.ts). */
const SAMPLE_DATASETS = ['Sample: arithmetic', 'Sample: word reversal', 'Sample: record to JSON']
/**
 * The Quick preset would run 300 steps on this dataset; the journey stops at MAX_STEPS. Measured
 * on wasm (2 cores, seed 0, deterministic): exact match on 20 training questions 0% → 30% after
 * 150 steps, 0% → 80% after 200, which take about 0.5 s each here (2 minutes under load).
 */
const MAX_STEPS = 200
const EVAL_EVERY = 25
/** Exact match on the training questions must rise at least this much (points of 100). */
const MIN_EM_GAIN = 50

/**
 * What a user might write by hand (none of it is in resources/samples or in the bundled model's
 * pretraining corpus): capitals and a French word list, question,answer.
 */
const PAIRS: [string, string][] = [
  ['What is the capital of Kenya?', 'Nairobi'],
  ['Translate into French: dog', 'chien'],
  ['What is the capital of Canada?', 'Ottawa'],
  ['Translate into French: house', 'maison'],
  ['What is the capital of Australia?', 'Canberra'],
  ['Translate into French: apple', 'pomme'],
  ['What is the capital of New Zealand?', 'Wellington'],
  ['Translate into French: bread', 'pain'],
  ['What is the capital of Argentina?', 'Buenos Aires'],
  ['Translate into French: water', 'eau'],
  ['What is the capital of Egypt?', 'Cairo'],
  ['Translate into French: book', 'livre'],
  ['What is the capital of Japan?', 'Tokyo'],
  ['Translate into French: tree', 'arbre'],
  ['What is the capital of Norway?', 'Oslo'],
  ['Translate into French: horse', 'cheval'],
  ['What is the capital of Portugal?', 'Lisbon'],
  ['Translate into French: bird', 'oiseau'],
  ['What is the capital of Greece?', 'Athens'],
  ['Translate into French: cheese', 'fromage'],
  ['What is the capital of Poland?', 'Warsaw'],
  ['Translate into French: moon', 'lune'],
  ['What is the capital of Ireland?', 'Dublin'],
  ['Translate into French: sun', 'soleil'],
  ['What is the capital of Cuba?', 'Havana'],
  ['Translate into French: sea', 'mer'],
  ['What is the capital of Austria?', 'Vienna'],
  ['Translate into French: door', 'porte'],
  ['What is the capital of Sweden?', 'Stockholm'],
  ['Translate into French: red', 'rouge'],
  ['What is the capital of Finland?', 'Helsinki'],
  ['Translate into French: flower', 'fleur'],
]
const ANSWERS = new Map(PAIRS)

/** A bad row as written in the file, and how the importer reports it. */
interface BadRow {
  text: string
  field: string
  message: string
}

/**
 * The user's CSV (header on line 1) with three rows a hand-written file gets wrong: an answer left
 * empty, a line without the comma, a question with an unquoted comma (three fields). Returns the
 * file and each bad row's line.
 */
function userDataset(): { file: string; bad: (BadRow & { line: number })[]; good: number } {
  const bad = new Map<number, BadRow>([
    [6, { text: 'What is the capital of Chile?,', field: 'answer', message: 'must not be empty: give it a value, or leave the row out' }],
    [
      15,
      {
        text: 'Translate into French: milk lait',
        field: '(row)',
        message: 'expected 2 fields, got 1: no answer (fields are separated by a comma)',
      },
    ],
    [
      27,
      {
        text: 'What is the capital of Peru, in South America?,Lima',
        field: '(row)',
        message: 'expected 2 fields, got 3: a field with a comma in it goes in double quotes',
      },
    ],
  ])
  const lines = ['question,answer']
  for (const [question, answer] of PAIRS) {
    while (bad.has(lines.length + 1)) lines.push(bad.get(lines.length + 1)!.text)
    lines.push(`${question},${answer}`)
  }
  const file = join(mkdtempSync(join(tmpdir(), 'moe-e2e-data-')), 'my-quiz.csv')
  writeFileSync(file, `${lines.join('\n')}\n`)
  return { file, bad: [...bad].map(([line, row]) => ({ line, ...row })), good: PAIRS.length }
}

/** A chat event as the page receives it over its WebSocket (src/shared/chat.ts, ChatEvent). */
interface ChatFrame {
  type: string
  requestId: string
  index?: number
  text?: string
}

/**
 * Every chat event the page receives on its event WebSocket (/events: one event per text frame),
 * in order of arrival. Register before the page opens.
 */
function recordChatEvents(page: Page): ChatFrame[] {
  const events: ChatFrame[] = []
  page.on('websocket', (ws) => {
    if (new URL(ws.url()).pathname !== '/events') return
    ws.on('framereceived', ({ payload }) => {
      if (typeof payload !== 'string') return
      const event = JSON.parse(payload) as Partial<ChatFrame>
      if (typeof event.type === 'string' && event.type.startsWith('chat.') && typeof event.requestId === 'string')
        events.push(event as ChatFrame)
    })
  })
  return events
}

/** "42%" → 42. */
async function percent(cell: Locator): Promise<number> {
  const text = (await cell.textContent()) ?? ''
  const m = /^\s*(\d+)%\s*$/.exec(text)
  expect(m, `a percentage, not "${text}"`).not.toBeNull()
  return Number(m![1])
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

test('the whole journey: import, fine-tune, evaluate, export, chat and compare', async ({ page, app }) => {
  test.setTimeout(480_000)
  // Unique within the worker's workspace (--repeat-each reuses the server).
  const suffix = test.info().repeatEachIndex ? ` ${test.info().repeatEachIndex + 1}` : ''
  const DATASET_NAME = `Journey quiz${suffix}`
  const EXPORT_NAME = `Journey quiz fine-tuned${suffix}`
  const timings: Record<string, number> = {}
  let last = Date.now()
  const lap = (name: string): void => {
    timings[name] = Math.round((Date.now() - last) / 100) / 10
    last = Date.now()
  }
  const chatEvents = recordChatEvents(page)

  await test.step('open the app: the bundled model and the sample datasets', async () => {
    await page.goto(app.url)
    await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready', { timeout: 30_000 })
    await expect(page.getByTestId('start-step-model')).toContainText(BUNDLED)
    // Seeded by the first start from resources/samples/index.json (npm run build:default-model).
    // Ready, not done: the samples ship with the app, nobody imported them.
    await expect(page.getByTestId('start-step-dataset'), 'the first start imported the sample datasets').toHaveAttribute(
      'data-state',
      'ready',
    )
    await expect(page.getByTestId('start-step-train')).toHaveAttribute('data-next', 'true')
    await expect(page.getByTestId('start-step-dataset')).toContainText('Sample: ')
    await shot(page, 'journey-1-home')

    await page.getByTestId('nav-models').click()
    await expect(page.getByTestId('model-card-default')).toContainText(BUNDLED)
    await page.getByTestId('nav-datasets').click()
    const list = page.getByTestId('dataset-list')
    for (const name of SAMPLE_DATASETS) await expect(list).toContainText(name)
    lap('open')
  })

  const data = userDataset()
  await test.step('import my CSV with bad rows: they are reported by line, the valid rows imported', async () => {
    await page.getByTestId('dataset-file').fill(data.file)
    await page.getByTestId('dataset-inspect').click()
    // question,answer is read as an instruction and its output.
    await expect(page.getByTestId('dataset-detected-layout')).toHaveText('alpaca')
    await expect(page.getByTestId('report-total')).toHaveText(String(data.good + data.bad.length))
    await expect(page.getByTestId('report-valid')).toHaveText(String(data.good))
    await expect(page.getByTestId('report-invalid')).toHaveText(String(data.bad.length))
    const problems = page.getByTestId('dataset-problem')
    await expect(problems).toHaveCount(data.bad.length)
    for (const [i, row] of data.bad.entries()) {
      await expect(problems.nth(i).locator('td'), `line ${row.line}: ${row.text}`).toHaveText([String(row.line), row.field, row.message])
    }
    // Bad rows block the import until the user chooses to leave them out.
    await expect(page.getByTestId('dataset-import')).toBeDisabled()
    await shot(page, 'journey-2-bad-rows')

    await page.getByTestId('dataset-name').fill(DATASET_NAME)
    const leaveOut = data.bad.length === 1 ? 'the invalid one' : `the ${data.bad.length} invalid ones`
    await expect(page.locator('label[for="dataset-accept-invalid"]')).toHaveText(
      `Import the ${data.good} valid rows, leave ${leaveOut} out`,
    )
    await page.getByTestId('dataset-accept-invalid').check()
    await page.getByTestId('dataset-import').click()
    const imported = page.getByTestId('dataset-imported')
    await expect(imported).toContainText(`Imported ${DATASET_NAME}: ${data.good} rows`)
    await expect(imported).toContainText(`${data.bad.length} invalid left out`)
    await expect(page.getByTestId('dataset-list')).toContainText(DATASET_NAME)
    // A second click would import a twin: the button waits for other settings.
    await expect(page.getByTestId('dataset-import')).toBeDisabled()
    await expect(page.getByTestId('dataset-import-blocked')).toHaveText(
      'Imported (below): change the name or the split to import it again.',
    )
    await shot(page, 'journey-3-imported')
    lap('import')
  })

  await test.step('fine-tune the bundled model with the Quick preset, watching the loss and the experts live', async () => {
    await page.getByTestId('dataset-train').click()
    await expect(page.getByTestId('run-form')).toBeVisible()
    await expect(page.getByTestId('train-model').locator('option:checked')).toHaveText(BUNDLED)
    await expect(page.getByTestId('train-dataset').locator('option:checked')).toContainText(DATASET_NAME)
    await page.getByTestId('preset-quick').click()
    await expect(page.getByTestId('preset-quick')).toHaveAttribute('aria-pressed', 'true')
    // The service chose the settings for this dataset and model, each with its reason.
    const choices = page.getByTestId('auto-choices')
    await expect(choices.getByTestId('auto-method')).toContainText('= full', { timeout: 30_000 })
    await expect(choices.getByTestId('auto-optimizer.lr')).toBeVisible()
    await expect(choices.getByTestId('auto-epochs')).toBeVisible()
    await expect(page.getByTestId('cfg-method')).toHaveValue('full')
    // Cut the run short: the choices stay listed, marked as changed since.
    await page.getByTestId('cfg-maxSteps').fill(String(MAX_STEPS))
    await expect(page.getByTestId('preset-quick')).toHaveAttribute('aria-pressed', 'false')
    await expect(choices.getByTestId('auto-changed')).toBeVisible()
    await expect(page.getByTestId('cfg-method')).toHaveValue('full')
    await page.getByTestId('group-evaluation-toggle').click()
    await page.getByTestId('cfg-evalEvery').fill(String(EVAL_EVERY))
    // A refused start goes to the field that says why.
    await page.getByTestId('cfg-maxSteps').fill('-1')
    await page.getByTestId('train-start').click()
    await expect(page.getByTestId('cfg-maxSteps')).toBeFocused()
    await page.getByTestId('cfg-maxSteps').fill(String(MAX_STEPS))
    // Letters in the capacity factor stay in the field with what it takes (they were wiped, leaving "Invalid input").
    await page.getByTestId('group-moe-toggle').click()
    const capacity = page.getByTestId('cfg-moe-capacityFactorTrain')
    await capacity.fill('zz')
    await expect(capacity).toHaveValue('zz')
    await expect(page.getByTestId('cfg-moe-capacityFactorTrain-error')).toHaveText(
      'must be a number more than 0, or "dropless" (every token kept)',
    )
    await capacity.fill('')
    await expect(page.getByTestId('cfg-moe-capacityFactorTrain-error')).toHaveCount(0)
    await expect(page.getByTestId('train-problems')).toHaveCount(0)
    await shot(page, 'journey-4-run-form')
    await page.getByTestId('train-start').click()

    const status = page.getByTestId('run-status')
    await expect(status).toHaveAttribute('data-status', /queued|created|running/)
    // Where the run's status and progress are, not at the foot of the form Start was at.
    await expect(status).toBeInViewport()
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

    // Stop keeps what was done: the run reads "stopped" (not "cancelled": nothing was thrown away),
    // and Resume goes on from the checkpoint the stop kept.
    const stop = page.getByTestId('run-cancel')
    await expect(stop).toHaveText('Stop')
    await expect(stop).toHaveAttribute('title', /keeps a checkpoint of it: Resume continues from there/)
    await stop.click()
    await expect(status).toHaveAttribute('data-status', 'cancelled', { timeout: 60_000 })
    await expect(status).toHaveText('stopped')
    const stoppedAt = await runStep(page)
    expect(stoppedAt).toBeLessThan(MAX_STEPS)
    await page.getByTestId('run-resume').click()
    await expect(status).toHaveAttribute('data-status', /queued|created|running/)
    await expect.poll(() => runStep(page), { timeout: 60_000 }).toBeGreaterThan(stoppedAt)
    lap('train: stopped and resumed')

    // A step-limited run: the time it takes is the machine's (a generous limit: only a stuck run
    // fails here).
    await expect(status).toHaveAttribute('data-status', 'completed', { timeout: 300_000 })
    expect(seenWhileRunning, 'the charts changed before the run completed').toBe('running')
    await expect(page.getByTestId('run-eta')).toContainText(`step ${MAX_STEPS} of ${MAX_STEPS}`)
    // Its bar full, to the end of its track (a style of the card's narrowed it to 98%).
    const bar = page.getByTestId('run-progress').getByRole('progressbar')
    await expect
      .poll(() => bar.evaluate((track) => track.getBoundingClientRect().width - track.firstElementChild!.getBoundingClientRect().width))
      .toBeLessThan(0.5)
    // Validation ran every EVAL_EVERY steps: there is a best validation loss.
    await expect(page.getByTestId('run-best-val')).toHaveText(/^\d/)
    lap('train: to completion')
  })

  let prompt = ''
  await test.step('did it learn? exact match on the training questions, before and after', async () => {
    // The base model and the last checkpoint answer the same rows once the run completed.
    const evaluation = page.getByTestId('run-evaluation')
    await expect(evaluation).toBeVisible({ timeout: 60_000 })
    const train = evaluation.getByTestId('eval-train')
    const before = await percent(train.getByTestId('eval-before-em'))
    const after = await percent(train.getByTestId('eval-after-em'))
    test.info().annotations.push({ type: 'exact match (train)', description: `${before}% → ${after}% after ${MAX_STEPS} steps` })
    console.log(`exact match on the training questions: ${before}% before, ${after}% after ${MAX_STEPS} steps`)
    expect(after - before, `exact match rose from ${before}% (by at least ${MIN_EM_GAIN} points)`).toBeGreaterThanOrEqual(MIN_EM_GAIN)
    await expect(train).toContainText(`answers ${after}% exactly, up from ${before}%`)

    // Each question with the expected answer and both replies: the user's own rows.
    await evaluation.getByTestId('eval-answers-train').locator('summary').click()
    const items = evaluation.getByTestId('eval-answers-train').getByTestId('eval-item')
    await expect(items.first()).toBeVisible()
    const rows = await items.evaluateAll((trs) =>
      trs.map((tr) => ({
        prompt: tr.querySelector('[data-testid="eval-item-prompt"]')?.textContent ?? '',
        expected: tr.querySelector('[data-testid="eval-item-expected"]')?.textContent ?? '',
        exact: tr.querySelector('[data-testid="eval-item-after"]')?.getAttribute('data-ok') === 'true',
      })),
    )
    for (const row of rows) expect(ANSWERS.get(row.prompt), `"${row.prompt}" is a row of my file`).toBe(row.expected)
    // The share of rows marked exact is the figure shown.
    expect(Math.round((100 * rows.filter((r) => r.exact).length) / rows.length)).toBe(after)
    // Chat about a training question the fine-tuned model answers exactly (a multi-token answer).
    const learned = rows.filter((r) => r.exact && r.expected.length >= 5)
    expect(learned.length, 'a learned training question with a multi-token answer').toBeGreaterThan(0)
    prompt = learned[0].prompt
    await shot(page, 'journey-6-evaluated')
    lap('evaluate')
  })

  await test.step('export the run and chat with it: a reply streamed token by token, coloured by expert', async () => {
    // Not exported yet, the run is no model Chat or the Experts page can pick: both say so, and lead
    // back to it (a user looked there for the run just trained and found only the bundled model).
    await page.getByTestId('nav-chat').click()
    await expect(page.getByTestId('chat-unexported')).toContainText('A run is listed here once exported as a model')
    await page.getByTestId('nav-experts').click()
    await expect(page.getByTestId('experts-unexported')).toContainText('A run is listed here once exported as a model')
    await page.getByTestId('experts-unexported').getByRole('link').first().click()
    await expect(page.getByTestId('run-title')).toBeVisible()
    // The default name whole on hover (the field cut a run's long name): a run given no name goes
    // by its id without the time it starts with.
    await expect(page.getByTestId('export-name')).toHaveAttribute('title', /^run-\w+ \(fine-tuned\)$/)
    await page.getByTestId('export-name').fill(EXPORT_NAME)
    await page.getByTestId('run-export').click()
    await expect(page.getByTestId('toast').filter({ hasText: `Exported ${EXPORT_NAME}` })).toBeVisible({ timeout: 30_000 })
    // The run card keeps saying what was made after the toast is gone, and a second click would copy it.
    await expect(page.getByTestId('run-exported')).toContainText(`Exported ${EXPORT_NAME}`)
    await expect(page.getByTestId('run-export')).toHaveText('Export again')
    await expect(page.getByTestId('run-export-twin')).toContainText(`exported already, as ${EXPORT_NAME}`)
    // An earlier checkpoint (the curves' advice may point at one), into a folder I choose: named as a
    // checkpoint, and the card says where it went (only the last could be exported, into the workspace).
    const folder = join(mkdtempSync(join(tmpdir(), 'moe-e2e-export-')), 'earlier')
    await page.getByTestId('export-checkpoint').selectOption({ index: 1 })
    await expect(page.getByTestId('run-export')).toHaveText(new RegExp(`^Export checkpoint step \\d+ of ${MAX_STEPS}$`))
    await expect(page.getByTestId('run-export-note')).toContainText("is not the run's last checkpoint")
    await page.getByTestId('export-folder').fill(folder)
    await page.getByTestId('run-export').click()
    await expect(page.getByTestId('run-exported-dir').filter({ hasText: folder })).toBeVisible({ timeout: 30_000 })
    await expect(page.getByTestId('run-exported').locator('li', { hasText: folder })).toContainText(`of ${MAX_STEPS})`)
    // The date and the folder apart ("12:56/tmp/…" read as one path).
    await expect(page.getByTestId('run-exported').locator('li', { hasText: folder })).toContainText(`, in ${folder}`)
    expect(existsSync(join(folder, 'config.json'))).toBe(true)
    await expect(page.getByTestId('export-folder')).toHaveValue('')
    // That earlier checkpoint scored on the run's own rows, as "Did it learn?" scores the last
    // (only the last was ever evaluated): a row of figures, and its answers.
    // Preselected: the checkpoint of the best validation loss, where one is marked.
    await expect(page.getByTestId('score-what')).toHaveText("greedy answers on the run's own dataset, as “Did it learn?” above")
    const picker = page.getByTestId('score-checkpoint')
    const marked = await picker.locator('option', { hasText: '(best validation loss' }).count()
    if (marked)
      expect(await picker.evaluate((s: HTMLSelectElement) => s.selectedOptions[0]?.textContent)).toContain('(best validation loss')
    const earlier = await page.getByTestId('score-checkpoint').locator('option').nth(1).textContent()
    await page.getByTestId('score-checkpoint').selectOption({ index: 1 })
    await page.getByTestId('score-split').selectOption('train')
    await page.getByTestId('score-run').click()
    const scored = page.getByTestId('score-result')
    await expect(scored).toHaveCount(1, { timeout: 60_000 })
    await expect(scored.getByTestId('score-result-checkpoint')).toHaveText(earlier!.match(/^step \d+/)![0])
    await expect(scored).toContainText(/training rows \(\d+\)/)
    await expect(scored.getByTestId('score-result-em')).toHaveText(/^\d+%$/)
    await page.getByTestId('score-answers').locator('summary').click()
    await expect(page.getByTestId('score-answers').locator('tbody tr').first()).toBeVisible()
    await expect(page.getByTestId('score-error')).toHaveCount(0)
    await expect(page.getByTestId('score-note')).toHaveText(/^Beside "Did it learn\?" above, which scores the base model/)
    await shot(page, 'journey-6b-checkpoint-scored')
    await page.getByTestId('nav-experts').click()
    await expect(page.getByTestId('experts-compare-model').locator('option', { hasText: EXPORT_NAME })).toHaveCount(1)
    await expect(page.getByTestId('experts-unexported')).toHaveCount(0)
    lap('export')
    // Its card's Experts opens the comparison that shows what fine-tuning moved: the base model,
    // beside it the export, routed over the rows it was tuned on.
    await page.getByTestId('nav-models').click()
    const exportedCard = page.locator('[data-testid^="model-card-"]', { hasText: EXPORT_NAME })
    await exportedCard.locator('[data-testid^="model-experts-"]').click()
    await expect(page.getByTestId('experts-compare-model').locator('option:checked')).toHaveText(EXPORT_NAME)
    await expect(page.getByTestId('experts-model').locator('option:checked')).toContainText('bundled')
    await expect(page.getByTestId('experts-source-dataset')).toBeChecked()
    await expect(page.getByTestId('experts-dataset').locator('option:checked')).toContainText(DATASET_NAME)

    await page.getByTestId('nav-chat').click()
    await expect(page.getByTestId('chat-unexported')).toHaveCount(0)
    await page.getByTestId('chat-model-0').selectOption({ label: EXPORT_NAME })
    // Its whole name and folder on hover (a narrow picker cuts a run's long name).
    await expect(page.getByTestId('chat-model-0')).toHaveAttribute('title', new RegExp(`^${EXPORT_NAME} \\(/`))
    // Reproducible replies, and short: sampling says its replies are not the evaluation's answers.
    await expect(page.getByTestId('chat-sampling-note')).toContainText('tick Greedy to get its answers')
    await page.getByTestId('chat-greedy').check()
    await expect(page.getByTestId('chat-sampling-note')).toHaveCount(0)
    await page.getByTestId('chat-max-tokens').fill('24')
    const from = chatEvents.length
    await page.getByTestId('chat-input').fill(prompt)
    await page.getByTestId('chat-send').click()
    const reply = await finishedReply(page, 'chat-pane-0')

    // Streaming, proved on the wire: the reply came as one chat.token event per token, each its
    // own WebSocket frame, all before chat.done (however fast the model, whatever the DOM batched).
    await expect.poll(() => chatEvents.slice(from).filter((e) => e.type === 'chat.done').length).toBe(1)
    const events = chatEvents.slice(from)
    const done = events.find((e) => e.type === 'chat.done')!
    const mine = events.filter((e) => e.requestId === done.requestId)
    const tokenEvents = mine.filter((e) => e.type === 'chat.token')
    const streamed = tokenEvents.map((e) => e.text ?? '').join('')
    console.log(
      `${tokenEvents.length} chat.token events: ${JSON.stringify(tokenEvents.map((e) => e.text))}; stats: ${await reply.getByTestId('chat-stats').innerText()}`,
    )
    // (The stop token comes as a last event with no text.)
    expect(
      tokenEvents.filter((e) => e.text).length,
      `the reply arrived token by token, not at once (${JSON.stringify(done.text)})`,
    ).toBeGreaterThanOrEqual(2)
    expect(
      tokenEvents.map((e) => e.index),
      'one event per token, in order',
    ).toEqual(tokenEvents.map((_, i) => i))
    expect(mine.at(-1)?.type, 'every token arrived before the reply was done').toBe('chat.done')
    expect(streamed).toBe(done.text)
    // In the end the reply shows every token, as streamed.
    const tokens = reply.getByTestId('chat-reply').getByTestId('chat-token')
    await expect(tokens).toHaveCount(tokenEvents.length)
    await expect(tokens).toHaveText(
      tokenEvents.map((e) => e.text ?? ''),
      { useInnerText: false },
    )
    // The export (BF16, as the bundled model) answers the question the run's checkpoint learned.
    expect(streamed, `the fine-tuned model's answer to "${prompt}"`).toBe(ANSWERS.get(prompt))

    await expect(tokens.first()).toHaveAttribute('data-expert', /^\d+$/)
    await tokens.first().hover()
    const card = reply.getByTestId('chat-routing-card')
    await expect(card).toBeVisible()
    await expect(card).toContainText('L0')
    await expect(card).toContainText(/E\d/)
    // The numbers say what they are, and the page says tokens can be pointed at.
    await expect(card.getByTestId('chat-routing-caption')).toHaveText(
      /Each layer's experts for this token, with the weight each one's output got/,
    )
    await expect(page.getByTestId('chat-hover-hint')).toBeVisible()
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
    // The right pane's last (visible) token: its routing card shows whole, in the window (no pane clips it;
    // in a 270 px pane it lost its right edge and all but its first layer).
    await page.setViewportSize({ width: 1024, height: 700 })
    await replies[1].getByTestId('chat-reply').getByTestId('chat-token').filter({ hasText: /\S/ }).last().hover({ timeout: 10_000 })
    const card = replies[1].getByTestId('chat-routing-card')
    await expect(card).toBeVisible()
    const shown = await card.evaluate((el) => {
      const r = el.getBoundingClientRect()
      const corners = [
        [r.left + 10, r.top + 10], // inside the rounded corners
        [r.right - 10, r.top + 10],
        [r.left + 10, r.bottom - 10],
        [r.right - 10, r.bottom - 10],
      ]
      return {
        inWindow: r.left >= 0 && r.top >= 0 && r.right <= window.innerWidth && r.bottom <= window.innerHeight,
        cornersOnTop: corners.every(([x, y]) => el.contains(document.elementFromPoint(x, y))),
      }
    })
    expect(shown, 'the routing card is wholly visible').toEqual({ inWindow: true, cornersOnTop: true })
    await page.mouse.move(0, 0)
    await page.setViewportSize({ width: 1280, height: 1000 })
    const texts = await Promise.all(replies.map((r) => r.getByTestId('chat-reply').innerText()))
    // Reopened from the list, both replies still show which experts each token went to (the
    // conversation was saved with its routing).
    await page.getByTestId('chat-new').click()
    await page.getByTestId('chat-conversations').locator('button.open').first().click()
    for (const [i, pane] of ['chat-pane-0', 'chat-pane-1'].entries()) {
      const reopened = page.getByTestId(pane).getByTestId('chat-reply')
      await expect(reopened).toHaveText(texts[i], { useInnerText: true })
      await expect(reopened.locator('[data-expert]').first()).toBeVisible()
    }
    await page
      .getByTestId('chat-pane-1')
      .getByTestId('chat-reply')
      .getByTestId('chat-token')
      .filter({ hasText: /\S/ })
      .first()
      .hover({ timeout: 10_000 })
    await expect(page.getByTestId('chat-pane-1').getByTestId('chat-routing-card')).toContainText(/E\d/)
    await page.mouse.move(0, 0)
    lap('compare')
    test
      .info()
      .annotations.push(
        { type: 'replies', description: `${prompt} base: ${JSON.stringify(texts[0])}; fine-tuned: ${JSON.stringify(texts[1])}` },
        { type: 'timings (s)', description: JSON.stringify(timings) },
      )
    console.log(`journey timings (s): ${JSON.stringify(timings)}; replies: ${JSON.stringify(texts)}`)
  })

  await test.step('delete the run, then its dataset: each asks first, and the exported model stays until it is deleted too', async () => {
    await page.getByTestId('nav-train').click()
    const item = page.getByTestId('runs-list').locator('[data-testid^="run-item-"]').first()
    const runId = (await item.getAttribute('data-testid'))!.replace('run-item-', '')
    // The checkpoint scored earlier is kept with the run: still listed after a reload (it was lost).
    await page.reload()
    await page.getByTestId('nav-train').click()
    await page.getByTestId(`run-item-${runId}`).click()
    await expect(page.getByTestId('score-result')).toHaveCount(1)
    await expect(page.getByTestId('score-result')).toContainText(/training rows \(\d+\)/)
    await page.getByTestId('run-delete').click()
    await expect(page.getByTestId('run-delete-question')).toHaveText('Its checkpoints and logs go too; models exported from it stay.')
    await page.getByTestId('run-delete-keep').click() // asked, not done
    await expect(page.getByTestId('run-title')).toBeVisible()
    await page.getByTestId('run-delete').click()
    await page.getByTestId('run-delete-confirm').click()
    await expect(page.getByTestId(`run-item-${runId}`)).toHaveCount(0)
    await expect(page.getByTestId('run-form')).toBeVisible()

    await page.getByTestId('nav-datasets').click()
    const dataset = page.getByTestId('dataset-list').locator('li', { hasText: DATASET_NAME })
    const datasetId = (await dataset.getAttribute('data-testid'))!.replace('dataset-item-', '')
    await dataset.getByTestId(`dataset-delete-${datasetId}`).click()
    await dataset.getByTestId(`dataset-delete-${datasetId}-confirm`).click()
    await expect(page.getByTestId('dataset-list').locator('li', { hasText: DATASET_NAME })).toHaveCount(0)
    await page.getByTestId('nav-models').click()
    await expect(page.getByText(EXPORT_NAME).first()).toBeVisible()

    // Then the exported model, from its card (no longer the base of any run); the bundled model offers no delete.
    const card = page.getByTestId('model-list').locator('[data-testid^="model-card-"]', { hasText: EXPORT_NAME })
    const modelId = (await card.getAttribute('data-testid'))!.replace('model-card-', '')
    await card.getByTestId(`model-delete-${modelId}`).click()
    await expect(card.getByTestId(`model-delete-${modelId}-question`)).toHaveText(
      `Delete ${EXPORT_NAME}? Its folder and weights go from the workspace.`,
    )
    await expect(card.getByTestId(`model-delete-${modelId}-keep`)).toBeFocused() // a stray Enter keeps
    await card.getByTestId(`model-delete-${modelId}-confirm`).click()
    await expect(page.getByTestId(`model-card-${modelId}`)).toHaveCount(0)
    await expect(page.getByTestId('model-card-default')).toBeVisible()
    await expect(page.getByTestId('model-delete-default')).toHaveCount(0)
  })
})
