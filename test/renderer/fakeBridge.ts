/** A WorkbenchBridge for renderer tests: scripted answers, and a hand on the event stream. */
import { vi } from 'vitest'
import type { ModelInfo, SystemInfo, WorkbenchEvent } from '../../src/shared/api'
import type { WorkbenchBridge } from '../../src/shared/bridge'

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

export function fakeBridge() {
  const listeners = new Set<(e: WorkbenchEvent) => void>()
  const bridge = {
    system: { info: vi.fn(async () => systemInfo) },
    models: { inspect: vi.fn(async (dir: string) => ({ ...modelInfo, dir })) },
    datasets: {
      inspect: vi.fn(async () => {
        throw new Error('not faked')
      }),
      import: vi.fn(async () => {
        throw new Error('not faked')
      }),
      list: vi.fn(async () => []),
    },
    onEvent: vi.fn((listener: (e: WorkbenchEvent) => void) => {
      listeners.add(listener)
      return () => void listeners.delete(listener)
    }),
  } satisfies WorkbenchBridge
  return { bridge, emit: (e: WorkbenchEvent) => listeners.forEach((l) => l(e)), listeners }
}
