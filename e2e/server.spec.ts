import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { APIRequestContext, Page } from '@playwright/test'
import type { SystemInfo } from '../src/shared/api'
import type { RunRecord } from '../src/shared/runs'
import { ROOT, expect, snapshot, startServe, test } from './fixtures'

const MIXTRAL = join(ROOT, 'test', 'fixtures', 'moe-reference', 'mixtral')

/** The fixture's PEFT adapter imported as a run named `name`, through the HTTP API. */
async function importAdapter(request: APIRequestContext, app: { origin: string; token: string }, name: string): Promise<RunRecord> {
  const res = await request.post(`${app.origin}/api/runs.importAdapter`, {
    headers: { Authorization: `Bearer ${app.token}` },
    data: { dir: join(ROOT, 'test', 'fixtures', 'peft', 'mixtral'), model: MIXTRAL, name },
  })
  expect(res.status()).toBe(200)
  return ((await res.json()) as { result: RunRecord }).result
}

/** One call of the HTTP API; its result. */
async function api<T>(request: APIRequestContext, app: { origin: string; token: string }, method: string, args: unknown): Promise<T> {
  const res = await request.post(`${app.origin}/api/${method}`, { headers: { Authorization: `Bearer ${app.token}` }, data: args })
  expect(res.status(), `${method}: ${await res.text()}`).toBe(200)
  return ((await res.json()) as { result: T }).result
}

/** Writes a CSV file of `text` and inspects it on the Datasets screen. */
async function inspectCsv(page: Page, url: string, text: string): Promise<void> {
  const file = join(mkdtempSync(join(tmpdir(), 'moe-e2e-csv-')), 'rows.csv')
  writeFileSync(file, text)
  await page.goto(url)
  await page.getByTestId('nav-datasets').click()
  await page.getByTestId('dataset-file').fill(file)
  await page.getByTestId('dataset-inspect').click()
}

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
    // on wasm: the threads and what multiplies (the native matmul, where it loads)
    if (backend.threads)
      await expect(page.getByTestId('backend-threads')).toHaveText(`${backend.threads} thread${backend.threads === 1 ? '' : 's'}`)
    if (backend.matmul) await expect(page.getByTestId('backend-matmul')).toHaveText(`matmul by ${backend.matmul}`)
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
    // The fixture has no tokenizer: said here, not first when chat or evaluation fails.
    await expect(page.getByTestId('model-no-tokenizer')).toContainText('no tokenizer.json: chat, evaluation and text datasets need one')
    await expect(page.getByTestId('model-layers')).toContainText('2 · all sparse')
    await expect(page.getByTestId('model-experts')).toContainText('4 per sparse layer, top-2')
    await expect(page.getByTestId('params-total')).toContainText('72,816')
    await expect(page.getByTestId('params-active')).toContainText('49,776')
    await expect(page.getByTestId('params-experts')).toContainText('46,080')
    await expect(page.getByTestId('bytes-float32').locator('th')).toHaveText('float32 (stored)')
    await expect(page.getByTestId('bytes-bfloat16').locator('th')).toHaveText('bfloat16')
    await expect(page.getByTestId('checkpoint-dtype')).toHaveText('float32')
    await expect(page.getByTestId('bytes-float32')).toContainText('291,264')
    await expect(page.getByTestId('bytes-bfloat16')).toContainText('145,632')
    await snapshot(page, 'server-home-inspected')
    await page.getByTestId('link-name').fill('fixture mixtral')
    await page.getByTestId('link-button').click()
    await expect(page.getByTestId('link-done')).toContainText('Listed as fixture mixtral (linked)')
    await expect(page.getByTestId('link-button')).toHaveCount(0) // listed: no second link to make
    const linked = page.locator('[data-source="linked"]', { hasText: 'fixture mixtral' })
    await expect(linked).toBeVisible()
    // Unlinked from its card: the workbench forgets it, the folder stays.
    const linkedId = (await linked.getAttribute('data-testid'))!.replace('model-card-', '')
    await linked.getByTestId(`model-delete-${linkedId}`).click()
    await expect(linked.getByTestId(`model-delete-${linkedId}-question`)).toHaveText('Unlink fixture mixtral? The folder on disk stays.')
    await linked.getByTestId(`model-delete-${linkedId}-confirm`).click()
    await expect(page.locator('[data-source="linked"]', { hasText: 'fixture mixtral' })).toHaveCount(0)
    expect(existsSync(join(MIXTRAL, 'config.json'))).toBe(true)
    await expect(page.getByTestId('link-button')).toBeVisible() // not listed any more: it may be linked again

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
    // A budget that is not a size: said so, and no card keeps the 8 GiB plan as if it answered it.
    await page.getByTestId('fit-budget').fill('lots')
    await page.getByTestId('fit-check').click()
    await expect(page.getByTestId('fit-budget-error')).toContainText('is not a size')
    await expect(page.getByTestId('fit-verdict')).toHaveCount(0)
  })

  test('an imported adapter reads as imported: where it came from, no empty progress, charts or Run again', async ({
    page,
    app,
    request,
  }) => {
    const result = await importAdapter(request, app, 'peft adapter')
    await page.goto(app.url)
    await page.getByTestId('nav-train').click()
    await expect(page.getByTestId(`run-item-${result.id}`)).toContainText('imported')
    await expect(page.getByTestId(`run-item-${result.id}`)).not.toContainText('0/?')
    await page.getByTestId(`run-item-${result.id}`).click()
    await expect(page.getByTestId('run-title')).toHaveText('peft adapter')
    await expect(page.getByTestId('run-imported')).toContainText('LoRA adapter imported from')
    await expect(page.getByTestId('run-imported')).toContainText(`eval --model ${result.id}`)
    await expect(page.getByTestId('run-export')).toBeEnabled()
    for (const id of ['run-again', 'run-progress', 'chart-loss']) await expect(page.getByTestId(id)).toHaveCount(0)
  })

  test.describe('errors', () => {
    test.use({ allowedConsoleErrors: /status of 4\d\d/ })

    test('appear where the user acted', async ({ page, app }) => {
      await page.goto(app.url)
      await expect(page.getByTestId('backend-name')).not.toBeEmpty()

      await page.getByTestId('nav-models').click()
      await page.getByTestId('inspect-button').click()
      await expect(page.getByTestId('inspect-error')).toContainText('Type the path of a checkpoint folder')
      await expect(page.getByTestId('model-dir')).toHaveAttribute('aria-invalid', 'true')

      await page.getByTestId('model-dir').fill(join(ROOT, 'no', 'such', 'model'))
      await page.getByTestId('inspect-button').click()
      await expect(page.getByTestId('inspect-error')).toContainText('no/such/model')
      await expect(page.getByTestId('model-info')).toHaveCount(0)

      // A download not done: Mixtral-8x7B's config.json, no weights yet. Its figures show, from the
      // config; linking waits for the weights (it was refused as "no model.safetensors").
      await page.getByTestId('model-dir').fill(join(ROOT, 'test', 'fixtures', 'published-configs', 'mixtral-8x7b'))
      await page.getByTestId('inspect-button').click()
      await expect(page.getByTestId('params-total')).toContainText('46,702,792,704')
      await expect(page.getByTestId('checkpoint-dtype')).toHaveText('bfloat16')
      // bfloat16 is what the config names, not what is stored (nothing is yet)
      await expect(page.getByTestId('bytes-bfloat16').locator('th')).toHaveText("bfloat16 (config.json's)")
      await expect(page.getByTestId('model-config-only')).toHaveText(
        /^No weights in this folder yet: the figures above are its config\.json's\. Linking it needs the weights too \(87\.0 GiB in bfloat16: model\.safetensors, or its shards/,
      )
      await expect(page.getByTestId('link-button')).toHaveCount(0)
      await expect(page.getByTestId('inspect-error')).toHaveCount(0)
      // Whether it would fit, before the 87 GiB are fetched: planned from its config for the budget.
      const fit = page.getByTestId('inspect-fit')
      await expect(fit).toContainText('Type a memory budget above to see whether it fits.')
      await page.getByTestId('fit-budget').fill('16 GiB')
      await page.getByTestId('fit-check').click()
      await expect(fit.getByTestId('fit-verdict')).toHaveText(/^(Fits with paging: \d+ of 256 experts cached|Does not fit)$/)
      await expect(fit.getByTestId('fit-message')).not.toBeEmpty()
      // Another screen and back: the budget typed and its answer are still there.
      await page.getByTestId('nav-home').click()
      await page.getByTestId('nav-models').click()
      await expect(page.getByTestId('fit-budget')).toHaveValue('16 GiB')
      await expect(page.getByTestId('inspect-fit').getByTestId('fit-verdict')).toBeVisible()
      await snapshot(page, 'server-home-error')
    })

    test('Run elsewhere opens into view; a refused second write says the commands shown are of the folder written before', async ({
      page,
      app,
      request,
    }) => {
      const result = await importAdapter(request, app, 'to hand off')
      await page.setViewportSize({ width: 1280, height: 600 })
      await page.goto(app.url)
      await page.getByTestId('nav-train').click()
      await page.getByTestId(`run-item-${result.id}`).click()
      await page.getByTestId('run-elsewhere-toggle').click()
      await expect(page.getByTestId('handoff-submit')).toBeInViewport()
      const out = join(mkdtempSync(join(tmpdir(), 'moe-e2e-job-')), 'job')
      await page.getByTestId('handoff-out').fill(out)
      // an imported adapter has no dataset here: the form asks for one
      await page.getByTestId('handoff-submit').click()
      await expect(page.getByTestId('handoff-problems')).toContainText('Dataset: the rows to train on there')
      await page.getByTestId('handoff-dataset').selectOption({ index: 1 })
      await page.getByTestId('handoff-submit').click()
      await expect(page.getByTestId('handoff-result')).toContainText(`Wrote ${out}`)
      await page.getByTestId('handoff-submit').click()
      await expect(page.getByTestId('handoff-error')).toContainText('not an empty folder')
      await expect(page.getByTestId('handoff-result')).toContainText(`Not written this time (above); the folder written before: ${out}`)
    })

    test('a dataset with no valid row offers no import of "the 0 valid rows"; a longest row of 0 is refused like -3', async ({
      page,
      app,
    }) => {
      await inspectCsv(page, app.url, 'question,answer\nWhat is 2+2?,\nWhat is 3+3?,\n')
      await expect(page.getByTestId('report-valid')).toHaveText('0')
      await expect(page.getByTestId('report-invalid')).toHaveText('2')
      await expect(page.getByTestId('dataset-accept-invalid')).toHaveCount(0)
      await expect(page.getByTestId('dataset-import')).toBeDisabled()
      await expect(page.getByTestId('dataset-import-blocked')).toContainText('No valid rows to import')

      await page.getByTestId('dataset-model').selectOption({ index: 1 })
      for (const longest of ['-3', '0']) {
        await page.getByTestId('dataset-max-length').fill(longest)
        await page.getByTestId('dataset-inspect').click()
        await expect(page.getByTestId('dataset-inspect-error'), `Longest row ${longest}`).toContainText('Longest row: must be more than 0')
        await expect(page.getByTestId('dataset-max-length')).toHaveAttribute('aria-invalid', 'true')
      }
    })
  })

  test('columns under other names map onto a layout; an unmapped field says which column it reads, a greyed Apply says why', async ({
    page,
    app,
  }) => {
    await inspectCsv(page, app.url, 'ask,reply\nWhat is 2+2?,4\nWhat is 3+3?,6\n')
    // nothing recognisable: no layout, so nothing is said to be unread
    await expect(page.getByTestId('dataset-unread-columns')).toHaveCount(0)
    await page.getByTestId('dataset-layout').selectOption('alpaca')
    await expect(page.getByTestId('dataset-map-input').locator('option').first()).toHaveText('(the column named “input”)')
    await page.getByTestId('dataset-map-instruction').selectOption('ask')
    await page.getByTestId('dataset-map-output').selectOption('reply')
    await expect(page.getByTestId('dataset-reinspect-why')).toHaveCount(0)
    await page.getByTestId('dataset-reinspect').click()
    await expect(page.getByTestId('report-valid')).toHaveText('2')
    // read as chosen (it said only "Detected: nothing recognisable", as if the mapping had not taken)
    await expect(page.getByTestId('dataset-read-as')).toHaveText('alpaca')
    await expect(page.getByTestId('dataset-rendered-by')).toHaveText("the model's chat template")
    await expect(page.getByTestId('dataset-unread-columns')).toHaveCount(0)
    await expect(page.getByTestId('dataset-reinspect')).toBeDisabled()
    await expect(page.getByTestId('dataset-reinspect-why')).toContainText('change the layout or a column to re-read')
  })

  test('warns where prompts and completions would be joined with nothing between ("France?The")', async ({ page, app }) => {
    await inspectCsv(page, app.url, 'prompt,completion\nWhat is the capital of France?,The capital of France is Paris.\nAnd Peru? ,Lima\n')
    await expect(page.getByTestId('dataset-unspaced-joins')).toContainText(
      '1 of 2 rows joins its prompt and completion with nothing between (line 2: “…pital of France?|The capital of F…”',
    )
  })

  test('says which columns the detected layout does not read (an id, a source)', async ({ page, app }) => {
    await inspectCsv(page, app.url, 'id,instruction,output,source\n1,What is 2+2?,4,web\n2,What is 3+3?,6,web\n')
    await expect(page.getByTestId('dataset-unread-columns')).toHaveText('id, source')
    await page.getByTestId('dataset-map-output').selectOption('source')
    await page.getByTestId('dataset-reinspect').click()
    await expect(page.getByTestId('dataset-unread-columns')).toHaveText('id, output')
  })

  test('a preference dataset (chosen, rejected) is said to be one, and is read as its prompts and chosen answers in one click', async ({
    page,
    app,
  }) => {
    await inspectCsv(page, app.url, 'prompt,chosen,rejected\nHi,Hello!,Go away.\n2+2?,4,5\n')
    await expect(page.getByTestId('dataset-preference-hint')).toContainText('preference dataset (for DPO or ORPO)')
    await expect(page.getByTestId('dataset-preference-hint')).toContainText('prompt ← prompt, completion ← chosen')
    // nothing read yet: no statistics, no preview, no template named
    await expect(page.getByTestId('dataset-histogram')).toHaveCount(0)
    await expect(page.getByTestId('dataset-rendered-by')).toHaveCount(0)
    await page.getByTestId('dataset-use-chosen').click()
    await expect(page.getByTestId('report-valid')).toHaveText('2')
    await expect(page.getByTestId('dataset-detected-layout')).toHaveText('completion')
    await expect(page.getByTestId('dataset-rendered-by')).toHaveText('no chat template: the prompt, then the completion, as written')
    await expect(page.getByTestId('dataset-preference-hint')).toHaveCount(0)
    await expect(page.getByTestId('dataset-unread-columns')).toHaveText('rejected')
  })

  test('the import form says copies of a row stay on one side of the split, and that a name is taken; pickers tell namesakes apart', async ({
    page,
    app,
  }) => {
    const rows = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1].map((g) => `Q${g},A${g}`).join('\n')
    await inspectCsv(page, app.url, `prompt,completion\n${rows}\n`)
    await page.getByTestId('dataset-split').fill('30')
    await expect(page.getByTestId('dataset-estimate')).toContainText('10 rows: about 7 for training, about 3 for validation.')
    await expect(page.getByTestId('dataset-estimate')).toContainText('Copies of a row stay on one side of the split')
    await page.getByTestId('dataset-dedupe').check()
    await expect(page.getByTestId('dataset-estimate')).not.toContainText('Copies')
    await page.getByTestId('dataset-dedupe').uncheck()
    await expect(page.getByTestId('dataset-name-taken')).toHaveCount(0)
    await page.getByTestId('dataset-import').click()
    await expect(page.getByTestId('dataset-imported')).toBeVisible()
    await expect(page.getByTestId('dataset-name-taken')).toHaveCount(0) // the import just made is not "another"
    // the same file again: its name is taken, and the pickers tell the two apart
    await inspectCsv(page, app.url, `prompt,completion\n${rows}\n`)
    await expect(page.getByTestId('dataset-name-taken')).toContainText('“rows” is already in the workspace')
    await page.getByTestId('dataset-import').click()
    await expect(page.getByTestId('dataset-imported')).toBeVisible()
    await page.getByTestId('nav-train').click()
    const names = await page.getByTestId('train-dataset').locator('option').allTextContents()
    expect(names.filter((n) => n.startsWith('rows (imported ')).length).toBe(2)
    expect(new Set(names).size).toBe(names.length)
  })

  test('a run that failed before its first step shows a still progress bar, and why it failed', async ({ page, app, request }) => {
    const ds = await api<{ id: string }>(request, app, 'datasets.import', { file: join(ROOT, 'resources', 'samples', 'arithmetic.jsonl') })
    const run = await api<RunRecord>(request, app, 'runs.start', {
      model: join(ROOT, 'resources', 'default-model'),
      dataset: ds.id,
      name: 'too short',
      config: { data: { maxLength: 4 }, moe: { topK: 3, zLossCoef: 0.001 } },
    })
    await page.goto(app.url)
    await page.getByTestId('nav-train').click()
    await page.getByTestId(`run-item-${run.id}`).click()
    await expect(page.getByTestId('run-message')).toContainText('cuts off every training row', { timeout: 60_000 })
    // The MoE settings it changed from the model's, on its card (they were only in "Run again…").
    await expect(page.getByTestId('run-moe-settings')).toHaveText("MoE settings changed from the model's: topK 3, zLossCoef 0.001")
    const bar = page.getByTestId('run-progress').getByRole('progressbar')
    await expect(bar).toHaveAttribute('aria-valuenow', '0')
    await expect(bar).not.toHaveAttribute('data-indeterminate', 'true')
  })

  test("an expert alert says where its expert stands at the run's last step", async ({ page, app, request }) => {
    test.setTimeout(300_000)
    const ds = await api<{ id: string }>(request, app, 'datasets.import', { file: join(ROOT, 'resources', 'samples', 'arithmetic.jsonl') })
    // a strict band (10%) and short streaks, so a short run alerts
    const run = await api<RunRecord>(request, app, 'runs.start', {
      model: join(ROOT, 'resources', 'default-model'),
      dataset: ds.id,
      name: 'alerts',
      config: { maxSteps: 40, batchSize: 2, evalEvery: 0, alerts: { steps: 3, deadShare: 0.1 }, finalEval: { rows: 0 } },
    })
    await page.goto(app.url)
    await page.getByTestId('nav-train').click()
    await page.getByTestId(`run-item-${run.id}`).click()
    await expect(page.getByTestId('run-status')).toHaveText(/completed/i, { timeout: 240_000 })
    const now = page.getByTestId('run-alert-now')
    await expect(now.first()).toHaveText(/^at step 40: .*(back in the band|still out of the band)$/)
    for (const n of await now.all()) {
      const recovered = (await n.getAttribute('data-recovered')) === 'true'
      await expect(n).toHaveText(recovered ? /back in the band$/ : /out of the band$/)
    }
    // The share heatmap is centred on an even share, and says so (from 0, shares near it were one colour).
    await expect(page.getByTestId('run-heatmap-scale')).toHaveText('blue: more than an even share (12.5%), red: less')
    // No "Did it learn?" (finalEval.rows 0): scoring a checkpoint says what it gives, not "as above".
    await expect(page.getByTestId('run-evaluation')).toHaveCount(0)
    await expect(page.getByTestId('score-what')).toHaveText("greedy answers on the run's own dataset: exact match, F1 and answer loss")
    await page.getByTestId('score-run').click()
    await expect(page.getByTestId('score-note')).toHaveText(/^Answer loss is the loss of the expected answers' tokens alone/, {
      timeout: 60_000,
    })
    // Their advice followed: the run copied to the form, the balancing loss's field shown and focused.
    await page.getByTestId('alerts-run-again').click()
    await expect(page.getByTestId('run-form')).toBeVisible()
    await expect(page.locator('#cfg-moe-auxLossCoef')).toBeFocused()
    await expect(page.locator('#cfg-moe-auxLossCoef')).toBeInViewport()
    await expect(page.getByTestId('group-moe')).toHaveAttribute('open', '')
  })

  test('an overfitting run offers its best checkpoint for export in one click', async ({ page, app, request }) => {
    test.setTimeout(300_000)
    // Ten rows learned by heart with the Quick preset's choices for them (a new user's run): the
    // validation loss of the row held out rises while the training loss falls.
    const csv = [
      'instruction,output',
      'What is the capital of France?,Paris',
      '"List three colors, separated by commas","red, green, blue"',
      '"Write a two-line poem","Roses bloom,',
      'skies are blue"',
      'What is 2+2?,4',
      "Translate 'cat' to Spanish,gato",
      'Name a planet,Mars',
      'What color is the sky?,blue',
      'What is the opposite of hot?,cold',
      'Spell dog backwards,god',
      'What is 3 times 3?,9',
    ]
    const file = join(mkdtempSync(join(tmpdir(), 'moe-e2e-overfit-')), 'qa.csv')
    writeFileSync(file, csv.join('\n') + '\n')
    const ds = await api<{ id: string }>(request, app, 'datasets.import', { file })
    const run = await api<RunRecord>(request, app, 'runs.start', {
      model: join(ROOT, 'resources', 'default-model'),
      dataset: ds.id,
      name: 'by heart',
      config: {
        method: 'full',
        optimizer: { lr: 3e-3, betas: [0.9, 0.95], weightDecay: 0 },
        batchSize: 2,
        epochs: 60,
        schedule: { type: 'cosine', warmupSteps: 15, minLrRatio: 0.1 },
        evalEvery: 60,
        checkpointEvery: 150,
        data: { maxLength: 64 },
        finalEval: { rows: 0 },
      },
    })
    await page.goto(app.url)
    await page.getByTestId('nav-train').click()
    await page.getByTestId(`run-item-${run.id}`).click()
    await expect(page.getByTestId('run-status')).toHaveText(/completed/i, { timeout: 240_000 })
    const advice = page.getByTestId('advice-overfitting')
    await expect(advice).toContainText(/^Overfitting: validation loss rose from [\d.]+ \(step (\d+)\)/)
    const best = (await advice.textContent())!.match(/\(step (\d+)\)/)![1]
    await expect(page.getByTestId('export-checkpoint').locator('option:checked')).toHaveText('step 300 (last)')
    await advice.getByTestId('advice-export-best').click()
    await expect(page.getByTestId('export-checkpoint').locator('option:checked')).toHaveText(
      new RegExp(`^step ${best} \\(best validation loss`),
    )
    await expect(page.getByTestId('export-name')).toHaveAttribute('placeholder', `by heart (checkpoint step ${best} of 300)`)
    // Chosen: the offer is gone.
    await expect(page.getByTestId('advice-export-best')).toHaveCount(0)
  })

  test.describe('upload', () => {
    // The binary file's inspection is refused (HTTP 422), which the console reports.
    test.use({ allowedConsoleErrors: /status of 4\d\d/ })

    test('uploads a dataset file from this computer, with a picker or a drop, and imports it', async ({ page, app }) => {
      await page.goto(app.url)
      await page.getByTestId('nav-datasets').click()
      const rows = Array.from({ length: 12 }, (_, i) => JSON.stringify({ instruction: `What is ${i} + ${i}?`, output: String(2 * i) }))
      // The file picker (a browser's own dialog): the file goes to the server, then is read there.
      await page.getByTestId('dataset-file-picker').setInputFiles({
        name: 'sums.jsonl',
        mimeType: 'application/x-ndjson',
        buffer: Buffer.from(rows.join('\n') + '\n'),
      })
      await expect(page.getByTestId('dataset-detected-layout')).toHaveText('alpaca')
      await expect(page.getByTestId('report-valid')).toHaveText('12')
      await expect(page.getByTestId('dataset-file')).toHaveValue(/\/uploads\/[^/]+\/sums\.jsonl$/)
      await expect(page.getByTestId('dataset-name')).toHaveValue('sums')
      await page.getByTestId('dataset-import').click()
      await expect(page.getByTestId('dataset-imported')).toContainText('Imported sums: 12 rows')

      // A drop: a binary file named .jsonl is uploaded, then refused as not text, saying what to do.
      const dropped = await page.evaluateHandle(() => {
        const transfer = new DataTransfer()
        transfer.items.add(new File([new Uint8Array([0, 1, 2, 3, 0, 255, 0, 7])], 'weights.jsonl'))
        return transfer
      })
      await page.dispatchEvent('body', 'drop', { dataTransfer: dropped })
      const refused = page.getByRole('alert').filter({ hasText: 'weights.jsonl is not a text file' })
      await expect(refused).toContainText('Choose the file that holds the data')
      // By the name the user gave it: not the server's copy in a folder they never saw.
      await expect(refused).not.toContainText('/uploads/')
      await expect(page.getByTestId('report-total')).toHaveCount(0)
      await snapshot(page, 'server-upload-binary-refused')
    })
  })

  test('a tab without the token says how to get the link, once, and asks nothing more', async ({ browser, app }) => {
    const page = await browser.newPage()
    const sockets: string[] = []
    const requests: string[] = []
    page.on('websocket', (ws) => sockets.push(ws.url()))
    page.on('request', (r) => requests.push(new URL(r.url()).pathname))
    await page.goto(`${app.origin}/`)
    const gate = page.getByTestId('token-needed')
    await expect(gate).toContainText('This page was opened without its access token')
    await expect(gate).toContainText(`${app.origin}/?token=`)
    await expect(page.getByText('No runs yet.')).toHaveCount(0)
    await expect(page.getByRole('alert')).toHaveCount(1)
    await snapshot(page, 'server-token-needed')
    await page.waitForTimeout(2000)
    expect(sockets).toEqual([])
    expect(requests.filter((p) => p.startsWith('/api/') || p === '/events')).toEqual([])
    await page.close()
  })

  test('another screen opens at its top, not at the scroll offset of the one left', async ({ page, app }) => {
    await page.setViewportSize({ width: 1280, height: 500 })
    await page.goto(app.url)
    await page.getByTestId('nav-train').click()
    await expect(page.getByTestId('group-checkpoints-toggle')).toBeVisible()
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight))
    expect(await page.evaluate(() => window.scrollY)).toBeGreaterThan(100)
    await page.getByTestId('nav-models').click()
    await expect.poll(() => page.evaluate(() => window.scrollY)).toBe(0)
  })

  test('chat within a device budget: Context is checked as typed; a model that fits says nothing is paged; a reply the context cut short says so', async ({
    page,
    app,
  }) => {
    await page.goto(app.url)
    await page.getByTestId('nav-chat').click()
    await page.getByTestId('chat-model-0').selectOption({ label: 'Default MoE (bundled)' })
    await page.getByTestId('chat-offload').check()
    const context = page.getByTestId('chat-offload-context')
    await context.fill('2k')
    // Said at the field while typing, before any Send.
    await expect(page.getByTestId('chat-offload-context-error')).toHaveText(
      '“2k” is not a whole number of tokens; write e.g. 8192 (blank: 2048)',
    )
    await expect(context).toHaveAttribute('aria-invalid', 'true')
    await context.fill('48')
    await expect(page.getByTestId('chat-offload-context-error')).toHaveCount(0)
    await page.getByTestId('chat-greedy').check()
    await page.getByTestId('chat-max-tokens').fill('500')
    const prompt = 'Count from one to one hundred, in words.'
    await page.getByTestId('chat-input').fill(prompt)
    await page.getByTestId('chat-send').click()
    const pane = page.getByTestId('chat-pane-0')
    await expect(pane.getByTestId('chat-stats')).toBeVisible({ timeout: 60_000 })
    // A context 2 tokens past the prompt: the reply (9 tokens greedy) is cut short, and said to be
    // by the context, not by the 500 asked for.
    const promptTokens = Number(/\((\d+) tokens\)/.exec(await pane.getByTestId('chat-prompt-toggle').innerText())![1])
    await page.getByTestId('chat-new').click()
    await context.fill(String(promptTokens + 2))
    await page.getByTestId('chat-input').fill(prompt)
    await page.getByTestId('chat-send').click()
    await expect(pane.getByTestId('chat-stats')).toHaveText(/^2 tokens · .* · context full: start a new conversation to go on$/, {
      timeout: 60_000,
    })
    await expect(page.getByTestId('chat-offload-resident')).toContainText('The whole model fits within the budget')
  })

  test('a page and a server of different builds (a server left running over an update) say so, and how to fix it', async ({
    page,
    app,
    request,
  }) => {
    // The server and the CLI are one build, and the page is that build too: nothing is said.
    const info = await api<SystemInfo>(request, app, 'system.info', undefined)
    expect(info.app.build).toMatch(new RegExp(`^${info.app.version.replace(/\./g, '\\.')}\\+[0-9a-f]{12}$`))
    const cli = spawnSync(process.execPath, [join(ROOT, 'bin', 'moe-workbench.js'), '--version'], { encoding: 'utf8' })
    expect(cli.stdout.trim()).toBe(`MoE Workbench ${info.app.version} (build ${info.app.build})`)
    await page.goto(app.url)
    await expect(page.getByTestId('backend-name')).not.toBeEmpty()
    await expect(page.getByTestId('stale-server')).toHaveCount(0)
    // A server of another build (its answers altered on the way): the page says what to do.
    await page.route('**/api/system.info', async (route) => {
      const res = await route.fetch()
      const body = (await res.json()) as { result: SystemInfo }
      body.result.app.build = `${body.result.app.version}+000000000000`
      await route.fulfill({ response: res, json: body })
    })
    await page.reload()
    const banner = page.getByTestId('stale-server')
    await expect(banner).toContainText(`and the server answering it (${info.app.version}+000000000000) are different builds`)
    await expect(banner).toContainText(`This page (${info.app.build})`)
    await expect(banner).toContainText('start it again, then reload this page')
  })

  test('keeps the token across a reload', async ({ page, app }) => {
    await page.goto(app.url)
    await expect(page.getByTestId('backend-name')).not.toBeEmpty()
    await page.reload()
    await expect(page).toHaveURL(`${app.origin}/`)
    await expect(page.getByTestId('backend-name')).not.toBeEmpty()
  })
  test.describe(() => {
    // While the server is down, the page's reconnection attempts are refused (and logged by Chromium).
    test.use({ allowedConsoleErrors: /ERR_CONNECTION_REFUSED/ })
    test('a page left open keeps working after the server restarts with the token it was given (MOE_WORKBENCH_TOKEN)', async ({ page }) => {
      test.setTimeout(180_000)
      // The same port again (the page's origin), found free first.
      const port = await new Promise<number>((resolve) => {
        const probe = createServer().listen(0, '127.0.0.1', () => {
          const { port } = probe.address() as { port: number }
          probe.close(() => resolve(port))
        })
      })
      const token = randomBytes(24).toString('hex')
      const workspace = mkdtempSync(join(tmpdir(), 'moe-e2e-ws-token-'))
      const env = { MOE_WORKBENCH_TOKEN: token }
      try {
        const first = await startServe(workspace, { port, env })
        expect(first.token).toBe(token)
        await expect.poll(() => first.stderr()).toContain('the token is the one you gave')
        await page.goto(first.url)
        await expect(page.getByTestId('backend-name')).not.toBeEmpty()
        expect(await first.stop()).toBe(0)
        await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'offline')
        const second = await startServe(workspace, { port, env })
        try {
          // The open page reconnects by itself, and a reload is let in too: no new link needed.
          await expect(page.getByTestId('engine-status')).toHaveAttribute('data-status', 'ready', { timeout: 60_000 })
          await expect(page.getByTestId('token-needed')).toHaveCount(0)
          await page.reload()
          await expect(page.getByTestId('backend-name')).not.toBeEmpty()
          await expect(page.getByTestId('token-needed')).toHaveCount(0)
        } finally {
          expect(await second.stop()).toBe(0)
        }
      } finally {
        rmSync(workspace, { recursive: true, force: true, maxRetries: 3 })
      }
    })
  })
})
