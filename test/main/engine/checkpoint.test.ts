/** Model folders: load checks every tensor name and shape; save/load round-trips F32 bit-exactly. */
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { initBackend } from '../../../src/main/engine/backend'
import { checkTensors, checkWeights, inspectModel, loadModel, loadModelAsync, saveModel } from '../../../src/main/engine/checkpoint'
import { openCheckpointTensors } from '../../../src/main/engine/safetensors'
import { readModelConfig } from '../../../src/main/engine/modelConfigFile'
import { countParams } from '../../../src/shared/modelConfig'
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

  it('lists at most six names of a kind, then how many more', () => {
    // layer 1's whole MoE block: 1 router + 4 experts × 3 = 13 tensors
    const gone = folderWith((t) => {
      for (const n of [...t.keys()]) if (n.startsWith('model.layers.1.block_sparse_moe.')) t.delete(n)
    })
    const msg = (() => {
      try {
        loadModel(gone)
      } catch (e) {
        return (e as Error).message
      }
      return ''
    })()
    expect(msg).toMatch(/the checkpoint does not match its config\.json: missing 13 tensor\(s\): /)
    expect(msg).toMatch(/ and 7 more$/)
    expect(msg.match(/model\.layers\.1\./g)).toHaveLength(6)
    // exactly six: all named, no "more"
    const six = folderWith((t) => {
      for (const e of [0, 1]) for (const w of ['w1', 'w2', 'w3']) t.delete(`model.layers.1.block_sparse_moe.experts.${e}.${w}.weight`)
    })
    expect(() => loadModel(six)).toThrow(/missing 6 tensor\(s\): (model\.layers\.1\.[\w.]+(, )?){6}$/)
  })

  it('a tied lm_head and rotary inv_freq buffers are not unexpected; an untied extra lm_head is', () => {
    const dir = folderWith(() => {})
    const config = readModelConfig(dir)
    const { index } = openCheckpointTensors(dir)
    const head = index.get('model.embed_tokens.weight')!
    const extra = new Map(index)
    extra.set('lm_head.weight', head)
    extra.set('model.layers.0.self_attn.rotary_emb.inv_freq', head)
    const tied = { ...config, tieWordEmbeddings: true }
    const untied = { ...config, tieWordEmbeddings: false }
    // (a tied config expects no lm_head of its own)
    expect(checkTensors(tied, index).unexpected).toEqual([])
    expect(checkTensors(tied, extra).unexpected).toEqual([])
    expect(checkTensors(untied, extra).unexpected).toEqual([])
    const stray = new Map(index)
    stray.set('model.lm_head.weight', head)
    expect(checkTensors(tied, stray).unexpected).toEqual(['model.lm_head.weight'])
  })

  it('inspects a folder: the dtype most tensors have, and the bytes at each dtype', () => {
    const m = tinyModel()
    const dir = tmp()
    saveModel(m, dir, { dtype: 'bfloat16' })
    const info = inspectModel(dir)
    expect(info.checkpointDtype).toBe('bfloat16')
    const total = countParams(m.config).total
    expect(info.params.total).toBe(total)
    expect(info.bytesByDtype).toEqual({ float32: total * 4, bfloat16: total * 2, float16: total * 2 })
    expect(info).toMatchObject({ family: 'mixtral', numLayers: 2, numExperts: 4, topK: 2, vocabSize: 32 })
    // mostly F32 with one BF16 tensor: float32
    const mixed = folderWith((t) => {
      const n = t.get('model.norm.weight')!
      t.set('model.norm.weight', { ...n, dtype: 'BF16' })
    })
    expect(inspectModel(mixed).checkpointDtype).toBe('float32')
    m.dispose()
  })

  it('checks every weight for NaN and infinities, naming each damaged tensor, with progress in bytes', async () => {
    const clean = folderWith(() => {})
    const events: { done: number; total: number; unit?: string; label: string }[] = []
    const ok = await checkWeights(clean, { onProgress: (p) => events.push(p as (typeof events)[number]) })
    expect(ok.problems).toEqual([])
    const { index } = openCheckpointTensors(clean)
    let bytes = 0
    for (const [name, h] of index) {
      const info = h.tensors.get(name)!
      bytes += info.end - info.begin
    }
    expect(ok.checkedBytes).toBe(bytes)
    expect(events.length).toBe(index.size)
    expect(events.at(-1)).toMatchObject({ done: bytes, total: bytes, unit: 'bytes' })
    expect(events[0].label).toMatch(/^Checking the weights of /)
    for (let i = 1; i < events.length; i++) expect(events[i].done).toBeGreaterThan(events[i - 1].done)

    const damaged = folderWith((t) => {
      for (const n of ['model.norm.weight', 'model.layers.0.self_attn.q_proj.weight']) {
        const d = new Float32Array(t.get(n)!.data as Float32Array)
        d[3] = n === 'model.norm.weight' ? NaN : Infinity
        t.set(n, { ...t.get(n)!, data: d })
      }
    })
    const bad = await checkWeights(damaged)
    expect(bad.problems).toHaveLength(2)
    expect(bad.problems.join('\n')).toMatch(/"model\.norm\.weight" holds 1 NaN or infinite value\(s\) \(the first at flat index 3\)/)
    expect(bad.problems.join('\n')).toMatch(/"model\.layers\.0\.self_attn\.q_proj\.weight" holds 1 NaN/)
    // cancelled: rejects, naming what was cancelled
    const ac = new AbortController()
    ac.abort()
    await expect(checkWeights(clean, { signal: ac.signal })).rejects.toThrow(/cancelled/)
  })

  it('loads asynchronously with progress in bytes under its stage, and a cancel leaves nothing on the device', async () => {
    const dir = folderWith(() => {})
    const events: { done: number; total: number; unit?: string; label: string; stage: number; stages: number }[] = []
    const m = await loadModelAsync(dir, { hooks: { onProgress: (p) => events.push(p as (typeof events)[number]) } })
    expect(events.length).toBeGreaterThan(1)
    expect(events[0]).toMatchObject({ stage: 1, stages: 1, unit: 'bytes' })
    expect(events[0].label).toMatch(/^Loading /)
    expect(events.at(-1)!.done).toBe(events.at(-1)!.total)
    const sync = loadModel(dir)
    for (const [name, w] of sync.weights()) expect(bitsEqual(m.params.get(name)!.dataSync() as Float32Array, w), name).toBe(true)
    sync.dispose()
    m.dispose()
    const staged: typeof events = []
    const again = await loadModelAsync(dir, {
      stage: { label: 'Loading the base', stage: 2, stages: 3 },
      hooks: { onProgress: (p) => staged.push(p as (typeof events)[number]) },
    })
    expect(staged[0]).toMatchObject({ label: 'Loading the base', stage: 2, stages: 3 })
    again.dispose()

    const before = tf.memory().numTensors
    const ac = new AbortController()
    let seen = 0
    await expect(
      loadModelAsync(dir, {
        hooks: {
          signal: ac.signal,
          onProgress: () => {
            if (++seen === 3) ac.abort()
          },
        },
      }),
    ).rejects.toThrow(/cancelled/)
    expect(tf.memory().numTensors).toBe(before)
  })

  it('names config.json problems', () => {
    const dir = tmp()
    writeFileSync(join(dir, 'config.json'), '{oops')
    expect(() => loadModel(dir)).toThrow(/config\.json: not valid JSON/)
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'mixtral' }))
    expect(() => loadModel(dir)).toThrow(/config\.json: "\w+" must be a number/)
  })
})
