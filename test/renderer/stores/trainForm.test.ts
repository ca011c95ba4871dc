import { createPinia, setActivePinia } from 'pinia'
import { nextTick } from 'vue'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { runConfigSchema } from '../../../src/shared/runConfig'
import { preflight } from '../../../src/shared/guidance'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import {
  QUICK_PRESET,
  RUN_PRESETS,
  defaultRunConfig,
  formatExpertMap,
  parseExpertMap,
  useTrainFormStore,
} from '../../../src/renderer/src/stores/trainForm'
import { useRunsStore } from '../../../src/renderer/src/stores/runs'
import { datasetManifest, fakeBridge, inspectResult, modelEntries, modelInfo, runRecord } from '../fakeBridge'
import { useModelsStore } from '../../../src/renderer/src/stores/models'
import { useDatasetsStore } from '../../../src/renderer/src/stores/datasets'

/** Lets pending promises and Vue watchers run. */
const flushPromises = (): Promise<void> => new Promise((r) => setTimeout(r, 0))

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('run presets', () => {
  it.each(RUN_PRESETS.map((p) => [p.id, p] as const))('%s is a valid run config', (_id, preset) => {
    const config = defaultRunConfig()
    preset.apply(config, { totalParams: null })
    expect(runConfigSchema.safeParse(config).success).toBe(true)
  })

  it.each(RUN_PRESETS.filter((p) => !p.auto).map((p) => [p.id, p] as const))(
    "%s does not trip the form's own learning-rate warning, on a small model or a large one",
    (_id, preset) => {
      for (const totalParams of [5.4e6, 47e9]) {
        const config = defaultRunConfig()
        preset.apply(config, { totalParams })
        const advice = preflight(config, { trainRows: 1000, totalParams, vocabSize: 32000, modelCapacityFactor: null })
        expect(
          advice.filter((a) => a.id.startsWith('lr-')),
          `${totalParams} parameters`,
        ).toEqual([])
      }
    },
  )
})

describe('parseExpertMap', () => {
  it('reads "layer: experts" lists and writes them back', () => {
    expect(parseExpertMap('0: 3, 1; 2: 0\n0: 1')).toEqual({ '0': [1, 3], '2': [0] })
    expect(parseExpertMap('')).toEqual({})
    expect(parseExpertMap('0 - 1')).toMatch(/is not “layer: expert, expert”/)
    expect(formatExpertMap({ '0': [1, 3], '2': [0] })).toBe('0: 1, 3; 2: 0')
  })
})

describe('useTrainFormStore', () => {
  it('validates inline with the shared schema, naming each field', () => {
    const form = useTrainFormStore()
    expect(form.configIssues).toEqual({})
    form.set('optimizer.lr', -1)
    form.set('lora.targets', [])
    form.set('maxSteps', 2.5)
    expect(Object.keys(form.configIssues).sort()).toEqual(['lora.targets', 'maxSteps', 'optimizer.lr'])
    form.set('optimizer.lr', 1e-4)
    form.set('lora.targets', ['experts'])
    form.set('maxSteps', null)
    form.set('method', 'lora')
    form.set('esft.enabled', true)
    expect(form.configIssues).toEqual({ 'esft.enabled': 'ESFT trains the chosen experts fully; use method "full" or "freeze"' })
    form.setFrozenExperts('0: x')
    expect(form.configIssues['freeze.experts']).toMatch(/not “layer: expert, expert”/)
  })

  it('applies a preset over the defaults and forgets it once a knob changes', () => {
    const form = useTrainFormStore()
    form.set('batchSize', 64)
    form.applyPreset('quick-lora')
    expect(form.presetId).toBe('quick-lora')
    expect(form.config).toMatchObject({ method: 'lora', batchSize: 4, maxSteps: 60 })
    form.set('maxSteps', 10)
    expect(form.presetId).toBeNull()
  })

  it('keeps the experts per token the user typed across presets, and Defaults resets it', async () => {
    const form = useTrainFormStore()
    form.set('moe.topK', 3)
    form.applyPreset('quick-lora')
    expect(form.config.moe.topK).toBe(3)
    form.model = '/m'
    form.dataset = 'd'
    form.applyPreset(QUICK_PRESET)
    await flushPromises()
    expect(form.config).toMatchObject({ method: 'full', epochs: 60, moe: { topK: 3 } })
    form.reset()
    expect(form.config.moe.topK).toBeNull()
  })

  it("sets LoRA's learning rate for the chosen model's size, and again when the model changes", async () => {
    const models = useModelsStore()
    await models.refresh()
    const form = useTrainFormStore()
    form.applyPreset('quick-lora')
    expect(form.config.optimizer.lr).toBe(2e-4) // no model yet: the rate of billions of parameters
    form.model = '/app/resources/models/tiny-moe' // 72 816 parameters
    await nextTick()
    expect(form.presetId).toBe('quick-lora')
    expect(form.config.optimizer.lr).toBe(3e-3)
  })

  it('Quick asks the service for settings chosen from the model and dataset, lists why, and chooses again for another dataset', async () => {
    const form = useTrainFormStore()
    form.applyPreset(QUICK_PRESET)
    await flushPromises()
    expect(form.autoState.error?.message).toMatch(/Choose the model and the dataset first/)
    expect(fake.bridge.runs.auto).not.toHaveBeenCalled()
    form.model = '/m'
    form.dataset = 'd'
    await flushPromises()
    expect(fake.bridge.runs.auto).toHaveBeenLastCalledWith({ model: '/m', dataset: 'd' })
    expect(form.presetId).toBe(QUICK_PRESET)
    expect(form.config).toMatchObject({ method: 'full', batchSize: 8, epochs: 60, optimizer: { lr: 3e-3 } })
    expect(form.autoChoices?.steps).toBe(300)
    expect(form.autoChoices?.choices.map((c) => c.path)).toContain('optimizer.lr')
    form.dataset = 'e'
    await flushPromises()
    expect(fake.bridge.runs.auto).toHaveBeenLastCalledWith({ model: '/m', dataset: 'e' })
    // A change by hand keeps the list (what was chosen) but leaves the preset; no new choice then.
    form.set('epochs', 2)
    expect(form.presetId).toBeNull()
    expect(form.autoChoices).not.toBeNull()
    form.dataset = 'd'
    await flushPromises()
    expect(fake.bridge.runs.auto).toHaveBeenCalledTimes(2)
    expect(form.config.epochs).toBe(2)
    fake.bridge.runs.auto.mockRejectedValueOnce(new ApiError('invalid_argument', 'dataset: the dataset has no training rows', 'dataset'))
    form.applyPreset(QUICK_PRESET)
    await flushPromises()
    expect(form.autoState.error?.message).toMatch(/no training rows/)
    form.reset()
    expect(form.autoChoices).toBeNull()
  })

  it('Defaults puts back every field, the ones inside lists too (Adam betas stayed as edited)', () => {
    const form = useTrainFormStore()
    form.set('optimizer.betas.0', 0.5)
    form.set('optimizer.betas.1', 0.5)
    form.set('lora.targets', ['router'])
    form.set('seed', 42)
    form.reset()
    expect(form.config.optimizer.betas).toEqual([0.9, 0.999])
    expect(form.config.lora.targets).toEqual(['attention', 'experts'])
    expect(form.config.seed).toBe(0)
  })

  it("says how the chosen model routes (top-k, router): top-k a run may change, the router the model's own", () => {
    const form = useTrainFormStore()
    useModelsStore().entries = [
      ...modelEntries,
      {
        id: 'h',
        name: 'hashed',
        dir: '/ws/models/h',
        source: 'workspace',
        info: { ...modelInfo, topK: 1, numExperts: 8, routerType: 'hash' },
      },
    ]
    expect(form.routing).toBe('') // no model chosen yet
    form.model = '/app/resources/models/tiny-moe'
    expect(form.routing).toMatch(
      /^This model sends each token to 2 of its 4 experts\. A run may route to more or fewer \(Experts per token, below; the export keeps it\)\. The router type is the model's own/,
    )
    form.model = '/ws/models/h'
    expect(form.routing).toMatch(/^This model sends each token to 1 of its 8 experts \(hash routing\)\. /)
    form.model = '/elsewhere/olmoe' // unreadable: nothing known to say
    expect(form.routing).toBe('')
  })

  it('warns before start about settings that will not work for the chosen model and dataset, and applies the suggestion', () => {
    const form = useTrainFormStore()
    useModelsStore().entries = modelEntries
    useDatasetsStore().list = [{ ...datasetManifest, split: { ...datasetManifest.split, train: 90, validationRows: 10 } }]
    form.set('optimizer.lr', 1)
    expect(form.warnings).toEqual([]) // no model or dataset chosen: nothing to judge against
    form.model = '/app/resources/models/tiny-moe'
    form.dataset = 'train-abc'
    form.set('batchSize', 8)
    form.set('maxSteps', 3)
    expect(form.warnings.map((w) => w.id)).toEqual(['lr-high', 'steps-under-epoch'])
    const lr = form.warnings[0]
    form.set(lr.suggest!.path, lr.suggest!.value)
    expect(form.config.optimizer.lr).toBe(3e-3)
    expect(form.warnings.map((w) => w.id)).toEqual(['steps-under-epoch'])
    form.set('maxSteps', 12)
    // validated every 50 steps of 12: once, at the end (where the dataset has validation rows)
    expect(form.warnings.map((w) => w.id)).toEqual(['eval-once'])
    // none held out: no validation to measure once, and the form says there is none
    useDatasetsStore().list = [{ ...datasetManifest, split: { ...datasetManifest.split, train: 90, validationRows: 0 } }]
    expect(form.warnings.map((w) => w.id)).toEqual(['no-validation-rows'])
    // one validation row: its scores are chance
    useDatasetsStore().list = [{ ...datasetManifest, split: { ...datasetManifest.split, train: 90, validationRows: 1 } }]
    expect(form.warnings.map((w) => w.id)).toEqual(['eval-once', 'few-validation-rows'])
    useDatasetsStore().list = [{ ...datasetManifest, split: { ...datasetManifest.split, train: 90, validationRows: 10 } }]
    form.set('evalEvery', 4)
    expect(form.warnings).toEqual([])
    // rows measured with this model's tokenizer: a max length under them is said, with a value to try
    const tokens = {
      ...inspectResult.stats.chars,
      tokenizer: '/app/resources/models/tiny-moe',
      trainable: 1,
      total: 2,
      min: 20,
      median: 30,
      p95: 50,
    }
    useDatasetsStore().list = [
      {
        ...datasetManifest,
        split: { ...datasetManifest.split, train: 90, validationRows: 10 },
        stats: { ...datasetManifest.stats, tokens },
      },
    ]
    form.set('data.maxLength', 16)
    expect(form.warnings.map((w) => w.id)).toEqual(['max-length-short'])
    form.set(form.warnings[0].suggest!.path, form.warnings[0].suggest!.value)
    expect(form.config.data.maxLength).toBe(50)
    expect(form.warnings).toEqual([])
  })

  it("sizes the full fine-tune preset's warm-up to the run: a tenth of a short one, so it does not warn about itself", () => {
    const form = useTrainFormStore()
    useModelsStore().entries = modelEntries
    useDatasetsStore().list = [
      { ...datasetManifest, id: 'small', split: { ...datasetManifest.split, train: 13 } },
      { ...datasetManifest, id: 'big', split: { ...datasetManifest.split, train: 4000 } },
    ]
    form.model = '/app/resources/models/tiny-moe'
    form.applyPreset('full')
    expect(form.config.schedule.warmupSteps).toBe(10) // no dataset yet
    form.dataset = 'small'
    form.applyPreset('full')
    expect(form.config.schedule.warmupSteps).toBe(0) // 2 steps
    expect(form.warnings.map((w) => w.id)).not.toContain('warmup-long')
    form.dataset = 'big'
    form.applyPreset('full')
    expect(form.config.schedule.warmupSteps).toBe(10) // 500 steps
    useDatasetsStore().list.push({ ...datasetManifest, id: 'mid', split: { ...datasetManifest.split, train: 400 } })
    form.dataset = 'mid'
    form.applyPreset('full')
    expect(form.config.schedule.warmupSteps).toBe(5) // 50 steps
  })

  it('asks for a model and a dataset only once the user tries to start', async () => {
    const form = useTrainFormStore()
    expect(form.errors.model).toBeUndefined()
    expect(await form.start()).toBeNull()
    expect(form.errors).toMatchObject({ model: expect.any(String), dataset: expect.any(String) })
    expect(fake.bridge.runs.start).not.toHaveBeenCalled()
  })

  it("top-k over the chosen model's experts is said at its field as typed, and blocks Start", () => {
    const form = useTrainFormStore()
    useModelsStore().entries = [...modelEntries]
    form.set('moe.topK', 5)
    expect(form.errors['moe.topK']).toBeUndefined() // no model chosen: nothing to compare with
    form.model = '/app/resources/models/tiny-moe' // 4 experts
    expect(form.errors['moe.topK']).toBe("at most the model's 4 experts per layer")
    expect(form.valid).toBe(false)
    form.set('moe.topK', 4)
    expect(form.errors['moe.topK']).toBeUndefined()
    form.set('moe.topK', null)
    expect(form.errors['moe.topK']).toBeUndefined()
  })

  it('starts the run with the whole config, and shows a refusal next to its field', async () => {
    const form = useTrainFormStore()
    form.model = '/m'
    form.dataset = 'd'
    form.name = '  first  '
    form.applyPreset('quick-lora')
    expect(await form.start()).toBe('run-2')
    expect(fake.bridge.runs.start).toHaveBeenCalledWith({ model: '/m', dataset: 'd', name: 'first', config: form.config })
    fake.bridge.runs.start.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'runs.start: config.data.maxLength: too long for the model', 'config.data.maxLength'),
    )
    expect(await form.start()).toBeNull()
    // under its field, the message without the field's key (the label is beside it)
    expect(form.errors['data.maxLength']).toBe('too long for the model')
    expect(useRunsStore().startError?.field).toBe('config.data.maxLength')
    // Once the field holds another value (typed, a preset, Defaults) the refusal is not its own any more.
    const refused = form.config.data.maxLength
    form.set('data.maxLength', 64)
    expect(form.errors['data.maxLength']).toBeUndefined()
    form.set('data.maxLength', refused) // back to the refused value: said again
    expect(form.errors['data.maxLength']).toBe('too long for the model')
    form.set('seed', 7) // another field: the refusal stays
    expect(form.errors['data.maxLength']).toBeDefined()
  })

  it('copies a past run to run it again', () => {
    const form = useTrainFormStore()
    form.copyFrom({
      ...runRecord,
      name: 'old',
      config: { ...runRecord.config, freeze: { ...runRecord.config.freeze, experts: { '1': [2] } } },
    })
    expect(form).toMatchObject({ model: runRecord.baseModel, dataset: 'train-abc', name: 'old (again)', frozenExpertsText: '1: 2' })
    expect(form.config.method).toBe('lora')
    expect(form.focus).toBeNull()
    // copied from its expert alerts: the field their advice names, for the form to show
    form.copyFrom(runRecord, 'moe.auxLossCoef')
    expect(form.focus).toBe('moe.auxLossCoef')
    form.copyFrom(runRecord)
    expect(form.focus).toBeNull()
  })

  it('runs again a run whose dataset was deleted: the picker empty, and saying which dataset went and what to do', async () => {
    const datasets = useDatasetsStore()
    await datasets.refresh() // holds train-abc only
    const form = useTrainFormStore()
    form.copyFrom({ ...runRecord, dataset: 'gone-123' })
    expect(form.dataset).toBe('')
    expect(form.errors.dataset).toBe("The run's dataset (gone-123) was deleted: choose another, or import its file again under Datasets.")
    form.dataset = 'train-abc'
    expect(form.errors.dataset).toBeUndefined()
    // a run whose dataset is there is copied with it, and no word
    form.copyFrom(runRecord)
    expect(form.dataset).toBe('train-abc')
    form.dataset = ''
    expect(form.errors.dataset).toBeUndefined()
    // the run card names the deleted dataset as deleted; before the list is read, only its id
    expect(datasets.displayName('gone-123')).toBe('gone-123 (deleted)')
    expect(datasets.displayName('train-abc')).toBe('train')
  })

  it('takes a device budget as a size, keeps it across presets, and asks the planner with the run config', async () => {
    const form = useTrainFormStore()
    form.setBudget('lots')
    expect(form.errors['offload.budgetBytes']).toMatch(/“lots” is not a size/)
    form.setBudget('2 GiB')
    expect(form.errors['offload.budgetBytes']).toBeUndefined()
    expect(form.config.offload.budgetBytes).toBe(2 * 1024 ** 3)
    form.applyPreset(RUN_PRESETS[0].id)
    expect(form.config.offload.budgetBytes).toBe(2 * 1024 ** 3)
    await form.checkPlan()
    expect(form.plan.error).toMatchObject({ field: 'model' })
    form.model = '/m'
    form.set('offload.storage', 'int8')
    await form.checkPlan()
    expect(fake.bridge.models.plan).toHaveBeenCalledWith(
      expect.objectContaining({
        dir: '/m',
        budgetBytes: 2 * 1024 ** 3,
        storage: 'int8',
        run: expect.objectContaining({ method: form.config.method }),
      }),
    )
    expect(form.plan).toMatchObject({ loading: false, error: null, plan: { fits: true } })
    // Empty: the backend's default (no budget sent).
    form.setBudget('')
    expect(form.config.offload.budgetBytes).toBeNull()
    expect(form.plan.plan).toBeNull()
    await form.checkPlan()
    expect(fake.bridge.models.plan.mock.calls.at(-1)![0]).not.toHaveProperty('budgetBytes')
    form.copyFrom({ config: { ...form.config, offload: { budgetBytes: 123_456_789, storage: 'lazy' } }, baseModel: '/m' })
    expect(form.budgetText).toBe('123456789 B') // bytes no binary unit spells exactly, with their unit
    expect(form.errors['offload.budgetBytes']).toBeUndefined()
    form.setBudget('80')
    expect(form.errors['offload.budgetBytes']).toBe(
      "“80” has no unit (as bytes it is 80 B): write e.g. 80 GB or 80 GiB, or leave it empty for the backend's default",
    )
  })
})
