/** A WorkbenchBridge for renderer tests: scripted answers, and a hand on the event stream. */
import { vi } from 'vitest'
import type {
  ModelsPlanArgs,
  ChatStarted,
  Conversation,
  ExpertAnalysis,
  FitPlan,
  ModelEntry,
  ModelInfo,
  RunDetail,
  RunRecord,
  StepMetrics,
  SystemInfo,
  WorkbenchEvent,
} from '../../src/shared/api'
import type { WorkbenchBridge } from '../../src/shared/bridge'
import { ApiError } from '../../src/shared/api'
import type { EvalReport } from '../../src/shared/runs'
import type { DatasetManifest, InspectResult } from '../../src/shared/dataset'
import { runConfigSchema } from '../../src/shared/runConfig'
import { autoRunConfig } from '../../src/shared/autoConfig'

export const systemInfo: SystemInfo = {
  app: { name: 'MoE Workbench', version: '0.1.0' },
  host: 'server',
  runtime: { node: '20.20.2', platform: 'linux', arch: 'x64' },
  engine: {
    pid: 42,
    backend: {
      name: 'wasm',
      tfBackend: 'wasm',
      source: 'auto',
      attempts: [
        { name: 'tfjs-node-gpu', ok: false, reason: 'Cannot find module' },
        { name: 'tfjs-node', ok: false, reason: 'Cannot find module' },
        { name: 'wasm', ok: true },
      ],
      tfjsVersion: '4.22.0',
    },
  },
}

export const modelInfo: ModelInfo = {
  dir: '/models/mixtral',
  family: 'mixtral',
  numLayers: 2,
  sparseLayers: [0, 1],
  numExperts: 4,
  topK: 2,
  routerType: 'softmax_topk',
  params: { total: 72816, active: 49776, experts: 46080 },
  bytesByDtype: { float32: 291264, bfloat16: 145632, float16: 145632 },
  checkpointDtype: 'float32',
}

export const modelEntries: ModelEntry[] = [
  { id: 'linked-1', name: 'my-olmoe', dir: '/elsewhere/olmoe', source: 'linked', info: null, error: '/elsewhere/olmoe: no config.json' },
  {
    id: 'tiny-moe',
    name: 'tiny-moe',
    dir: '/app/resources/models/tiny-moe',
    source: 'bundled',
    info: { ...modelInfo, dir: '/app/resources/models/tiny-moe' },
  },
  {
    id: 'tuned',
    name: 'tiny-moe-tuned',
    dir: '/ws/models/tuned',
    source: 'workspace',
    info: { ...modelInfo, dir: '/ws/models/tuned' },
    provenance: { run: 'run-1' },
  },
]

export const fitPlan: FitPlan = {
  budgetBytes: 262_144,
  deviceLimitBytes: null,
  residentBytes: 100_000,
  expertBytes: 23_040,
  totalExpertBytes: 184_320,
  modelBytes: 284_320,
  kvCacheBytes: 50_000,
  activationBytes: 10_000,
  trainingBytes: 0,
  cacheBytes: 50_000,
  expertBudgetBytes: 50_000,
  cachedExperts: 2,
  totalExperts: 8,
  embedding: 'resident',
  headChunks: 1,
  pagedLayers: [],
  hostBytes: 0,
  hostLimitBytes: 8_000_000_000,
  storage: 'lazy',
  fitsResident: false,
  fits: true,
  predictedBytes: 196_080,
  message: 'fits with 2 of 8 experts cached',
}

export const inspectResult: InspectResult = {
  file: '/data/train.jsonl',
  format: 'jsonl',
  bytes: 2048,
  layout: 'alpaca',
  detectedLayout: 'alpaca',
  mapping: { instruction: 'instruction', input: 'input', output: 'output' },
  columns: ['instruction', 'input', 'output'],
  report: {
    unit: 'line',
    total: 12,
    valid: 10,
    invalid: 2,
    problems: [
      { line: 3, field: 'output', message: 'is missing' },
      { line: 7, field: '', message: 'is not valid JSON' },
    ],
    problemCount: 2,
  },
  stats: {
    rows: 10,
    duplicates: 1,
    chars: { count: 10, min: 10, median: 40, p95: 90, max: 100, mean: 45, histogram: [] },
    tokens: {
      count: 10,
      min: 8,
      median: 20,
      p95: 40,
      max: 44,
      mean: 22,
      histogram: [
        { from: 0, to: 16, count: 3 },
        { from: 16, to: 32, count: 5 },
        { from: 32, to: 48, count: 2 },
      ],
      tokenizer: '/app/resources/models/tiny-moe',
      trainable: 90,
      total: 220,
    },
  },
  preview: [
    {
      line: 1,
      row: {
        messages: [
          { role: 'user', content: 'Hi' },
          { role: 'assistant', content: 'Hello' },
        ],
      },
      segments: [
        { text: '<|user|>Hi', trainable: false },
        { text: '<|assistant|>Hello</s>', trainable: true },
      ],
      tokens: 9,
    },
  ],
  template: { source: 'default', eosToken: '</s>' },
}

export const datasetManifest: DatasetManifest = {
  version: 1,
  id: 'train-abc',
  name: 'train',
  source: { path: '/data/train.jsonl', format: 'jsonl', bytes: 2048, sha256: 'x' },
  layout: 'alpaca',
  mapping: {},
  counts: { read: 12, valid: 10, invalid: 2, duplicates: 1, deduplicated: 0, rows: 10 },
  stats: inspectResult.stats,
  split: { validation: 0.1, seed: 0, train: 9, validationRows: 1 },
  problems: [],
  files: { original: 'original.jsonl', rows: 'rows.jsonl', split: 'split.json' },
  createdAt: '2025-01-01T00:00:00.000Z',
}

export const runRecord: RunRecord = {
  id: 'run-1',
  status: 'running',
  config: runConfigSchema.parse({ method: 'lora', maxSteps: 10 }),
  baseModel: '/app/resources/models/tiny-moe',
  dataset: 'train-abc',
  created: '2025-01-01T00:00:00.000Z',
  updated: '2025-01-01T00:01:00.000Z',
  step: 2,
  totalSteps: 10,
  bestValLoss: null,
  lastCheckpoint: null,
}

export function stepMetrics(step: number, extra: Partial<StepMetrics> = {}): StepMetrics {
  return {
    step,
    totalSteps: 10,
    epoch: 0,
    loss: 3 - step * 0.1,
    ce: 2.9 - step * 0.1,
    aux: 0.02,
    z: 0.001,
    lr: 1e-4,
    gradNorm: 1.5,
    droppedFraction: 0,
    tokens: 512,
    tokensPerSec: 800,
    elapsedSec: step,
    etaSec: 10 - step,
    layers: [
      { layer: 0, share: [0.4, 0.3, 0.2, 0.1], entropy: 1.2 },
      { layer: 1, share: [0.25, 0.25, 0.25, 0.25], entropy: 1.38 },
    ],
    ...extra,
  }
}

export function runDetail(record: RunRecord = runRecord, steps = 2): RunDetail {
  const rows = Array.from({ length: steps }, (_, i) => stepMetrics(i + 1))
  return {
    record,
    steps: rows.map(({ layers: _layers, ...row }) => row),
    evals: [],
    routing: rows.map((r) => ({ step: r.step, layers: r.layers })),
    alerts: [],
    evaluation: null,
  }
}

export const conversation: Conversation = {
  id: 'conv-1',
  title: 'Hello there',
  model: '/app/resources/models/tiny-moe',
  systemPrompt: 'Be brief.',
  messages: [
    { role: 'user', content: 'Hello there' },
    { role: 'assistant', content: 'Hi!' },
  ],
  created: '2025-01-01T00:00:00.000Z',
  updated: '2025-01-01T00:00:00.000Z',
}

export const expertAnalysis: ExpertAnalysis = {
  model: '/app/resources/models/tiny-moe',
  tokens: 100,
  layers: [
    {
      layer: 0,
      load: [0.4, 0.3, 0.2, 0.1],
      entropy: 1.1,
      coactivation: [
        [40, 10, 5, 2],
        [10, 30, 4, 1],
        [5, 4, 20, 3],
        [2, 1, 3, 10],
      ],
      topTokens: [[{ text: 'the', count: 9 }], [{ text: 'a', count: 5 }], [], []],
    },
  ],
}

export function fakeBridge() {
  const listeners = new Set<(e: WorkbenchEvent) => void>()
  let requests = 0
  const bridge = {
    system: { info: vi.fn(async () => systemInfo) },
    models: {
      inspect: vi.fn(async (dir: string) => ({ ...modelInfo, dir })),
      list: vi.fn(async () => modelEntries),
      plan: vi.fn(async (_args: ModelsPlanArgs) => fitPlan),
      create: vi.fn(async (args: { name: string }) => ({
        ...modelEntries[2],
        id: `new-${args.name}`,
        name: args.name,
        dir: `/ws/models/${args.name}`,
      })),
      link: vi.fn(async (args: { dir: string; name?: string }) => ({
        ...modelEntries[1],
        id: 'linked-2',
        source: 'linked' as const,
        dir: args.dir,
        name: args.name ?? 'linked',
      })),
      delete: vi.fn(async (_args: { id: string }) => {}),
    },
    datasets: {
      inspect: vi.fn(async (args: { file: string }) => ({ ...inspectResult, file: args.file })),
      import: vi.fn(async () => datasetManifest),
      list: vi.fn(async () => [datasetManifest]),
      cancel: vi.fn(async () => 1),
      delete: vi.fn(async (_args: { id: string }) => {}),
    },
    runs: {
      // The Quick preset as the service chooses it, for a 36-row dataset on a small model.
      auto: vi.fn(async (_args: { model: string; dataset: string }) =>
        autoRunConfig({
          trainRows: 36,
          tokens: { median: 25, p95: 30, max: 31, measured: true },
          model: { totalParams: 2.7e6, maxPositions: 512, hasSharedExpert: false },
        }),
      ),
      delete: vi.fn(async (_args: { id: string }) => {}),
      start: vi.fn(async (args: { model: string; dataset: string; name?: string }) => ({
        ...runRecord,
        id: 'run-2',
        status: 'queued' as const,
        step: 0,
        baseModel: args.model,
        dataset: args.dataset,
        ...(args.name ? { name: args.name } : {}),
      })),
      list: vi.fn(async () => [runRecord]),
      get: vi.fn(async ({ id }: { id: string }) => runDetail({ ...runRecord, id })),
      cancel: vi.fn(async ({ id }: { id: string }) => ({ ...runRecord, id, status: 'cancelled' as const })),
      resume: vi.fn(async ({ id }: { id: string }) => ({ ...runRecord, id, status: 'running' as const })),
      export: vi.fn(async ({ name }: { id: string; name?: string }) => ({ ...modelEntries[2], name: name ?? 'exported' })),
      handoff: vi.fn(async (args: { outDir: string; target: 'llamafactory' | 'axolotl' }) => ({
        outDir: args.outDir,
        target: args.target,
        files: ['README.md'],
        modelRef: 'org/model',
        deepspeed: { stage: 2 as const, offload: false, file: 'ds_z2_config.json', reason: 'fits' },
        memoryPerDevice: 2 ** 30,
        mapping: [],
        warnings: [],
        launch: { single: ['llamafactory-cli train llamafactory.yaml'], multi: [] },
      })),
      importAdapter: vi.fn(async () => runRecord),
    },
    chat: {
      send: vi.fn(async (): Promise<ChatStarted> => ({
        requestId: `req-${++requests}`,
        prompt: '<|user|>hi',
        promptTokens: 3,
        template: 'default',
      })),
      cancel: vi.fn(async (_args: { requestId: string }) => undefined),
    },
    conversations: {
      list: vi.fn(async () => [conversation]),
      save: vi.fn(async (args: Omit<Conversation, 'id' | 'created' | 'updated'> & { id?: string }) => ({
        ...args,
        id: args.id ?? 'conv-new',
        created: '2025-01-02T00:00:00.000Z',
        updated: '2025-01-02T00:00:00.000Z',
      })),
      delete: vi.fn(async (_args: { id: string }) => undefined),
    },
    experts: { analyze: vi.fn(async (args: { model: string; taskId?: string }) => ({ ...expertAnalysis, model: args.model })) },
    eval: {
      run: vi.fn(async (): Promise<EvalReport> => {
        throw new ApiError('failed', 'eval.run is not faked: the screens read evaluations from the run')
      }),
    },
    tasks: { cancel: vi.fn(async (_taskId: string) => true) },
    onEvent: vi.fn((listener: (e: WorkbenchEvent) => void) => {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    }),
  } satisfies WorkbenchBridge
  return { bridge, emit: (e: WorkbenchEvent) => listeners.forEach((l) => l(e)), listeners }
}
