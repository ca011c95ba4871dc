/** Model folders: load checks every tensor name and shape; save/load round-trips F32 bit-exactly. */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { inspectModel, loadModel, saveModel } from '../../../src/main/engine/checkpoint'
import { loadSafetensors, saveSafetensors, type TensorToWrite } from '../../../src/main/engine/safetensors'
import { tinyModel } from './helpers'

const FIX = join(__dirname, '../../fixtures/moe-reference')
const tmp = (): string => mkdtempSync(join(tmpdir(), 'moe-ckpt-'))

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length)
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length)
  return x.length === y.length && x.every((v, i) => v === y[i])
}

describe('checkpoint folders', () => {
  beforeAll(async () => {
    await initBackend('cpu')
  })

  it('save then load round-trips every F32 weight bit-exactly, single file and sharded', () => {
    const m = tinyModel({ router: { type: 'noisy_topk', capacityFactorTrain: 1.5 } })
    for (const maxShardBytes of [undefined, 20_000]) {
      const dir = tmp()
      const files = saveModel(m, dir, { maxShardBytes })
      if (maxShardBytes) expect(files).toContain('model.safetensors.index.json')
      const back = loadModel(dir)
      expect(back.config).toEqual(m.config)
      for (const [name, w] of m.weights()) expect(bitsEqual(back.params.get(name)!.dataSync() as Float32Array, w), name).toBe(true)
      back.dispose()
    }
    m.dispose()
  })

  it('the fixture checkpoint survives a load/save/load cycle bit-exactly and gives the same logits', () => {
    const a = loadModel(join(FIX, 'qwen2_moe'))
    const dir = tmp()
    saveModel(a, dir)
    const orig = loadSafetensors(join(FIX, 'qwen2_moe/model.safetensors')).tensors
    const saved = loadSafetensors(join(dir, 'model.safetensors')).tensors
    expect([...saved.keys()].sort()).toEqual([...orig.keys()].sort())
    for (const [name, t] of orig) expect(bitsEqual(saved.get(name)!.data as Float32Array, t.data as Float32Array), name).toBe(true)
    const b = loadModel(dir)
    const ids = [[1, 5, 9, 3]]
    const la = tf.tidy(() => a.forward(ids).logits.dataSync())
    const lb = tf.tidy(() => b.forward(ids).logits.dataSync())
    expect(bitsEqual(la as Float32Array, lb as Float32Array)).toBe(true)
    const hf = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))
    expect(hf.model_type).toBe('qwen2_moe')
    expect(hf.moe_intermediate_size).toBe(24)
    a.dispose()
    b.dispose()
  })

  it('saves BF16 and F16 copies that load back within rounding', () => {
    const m = tinyModel()
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const dir = tmp()
      saveModel(m, dir, { dtype })
      expect(inspectModel(dir).checkpointDtype).toBe(dtype)
      const back = loadModel(dir)
      for (const [name, w] of m.weights()) {
        const b = back.params.get(name)!.dataSync()
        const rel = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11
        for (let i = 0; i < w.length; i++) expect(Math.abs(b[i] - w[i])).toBeLessThanOrEqual(rel * Math.abs(w[i]) + 1e-7)
      }
      back.dispose()
    }
    m.dispose()
  })

  function folderWith(mutate: (t: Map<string, TensorToWrite>) => void): string {
    const dir = tmp()
    copyFileSync(join(FIX, 'mixtral/config.json'), join(dir, 'config.json'))
    const { tensors } = loadSafetensors(join(FIX, 'mixtral/model.safetensors'))
    const out = new Map<string, TensorToWrite>()
    for (const [n, t] of tensors) out.set(n, { dtype: 'F32', shape: t.shape, data: t.data as Float32Array })
    mutate(out)
    saveSafetensors(join(dir, 'model.safetensors'), out)
    return dir
  }

  it('reports missing, unexpected and mis-shaped tensors by name', () => {
    const missing = folderWith((t) => t.delete('model.layers.1.block_sparse_moe.experts.3.w2.weight'))
    expect(() => loadModel(missing)).toThrow(/missing 1 tensor\(s\): model\.layers\.1\.block_sparse_moe\.experts\.3\.w2\.weight/)
    const extra = folderWith((t) => t.set('model.layers.9.mystery.weight', { dtype: 'F32', shape: [2], data: new Float32Array(2) }))
    expect(() => loadModel(extra)).toThrow(/unexpected 1 tensor\(s\): model\.layers\.9\.mystery\.weight/)
    const shaped = folderWith((t) => t.set('model.norm.weight', { dtype: 'F32', shape: [8, 6], data: new Float32Array(48) }))
    expect(() => loadModel(shaped)).toThrow(/wrong shape: model\.norm\.weight is \[8,6\] in model\.safetensors, the config needs \[48\]/)
    expect(() => inspectModel(shaped)).toThrow(/wrong shape/)
  })

  it('names config.json problems', () => {
    const dir = tmp()
    writeFileSync(join(dir, 'config.json'), '{oops')
    expect(() => loadModel(dir)).toThrow(/config\.json: not valid JSON/)
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mixtral' }))
    expect(() => loadModel(dir)).toThrow(/config\.json: "\w+" must be a number/)
  })
})
