/**
 * make:checkpoint: the published shapes parse to the published parameter counts, and a written
 * checkpoint (the same code path, with a small override) is a sharded Hugging Face folder the
 * engine loads and runs.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { makeCheckpoint, shapeConfig, SHAPES } from '../../scripts/checkpointShapes'
import { countParams, fromHfConfig } from '../../src/shared/modelConfig'
import { loadModel } from '../../src/main/engine/checkpoint'
import { openCheckpointTensors, readTensor } from '../../src/main/engine/safetensors'
import { initBackend } from '../../src/main/engine/backend'
import { generateGreedy } from '../../src/main/engine/generate'

const tmp = mkdtempSync(join(tmpdir(), 'make-ckpt-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

describe('make:checkpoint', () => {
  it('each shape has its published parameter count', () => {
    const published: Record<string, [number, number]> = {
      // total and active parameters (billions) as the model cards give them
      'olmoe-1b-7b': [6.92, 1.28],
      'qwen1.5-moe-a2.7b': [14.3, 2.7],
      'mixtral-8x7b': [46.7, 12.9],
      'qwen3-30b-a3b': [30.5, 3.3],
    }
    expect(Object.keys(SHAPES).sort()).toEqual(Object.keys(published).sort())
    for (const [shape, [total, active]] of Object.entries(published)) {
      const c = countParams(fromHfConfig(shapeConfig(shape)))
      expect(c.total / 1e9, shape).toBeCloseTo(total, 1)
      // Active counts on model cards exclude the embeddings (Qwen) or round differently: within 10%.
      expect(Math.abs(c.active / 1e9 - active) / active, shape).toBeLessThan(0.15)
    }
    expect(shapeConfig('qwen3-30b-a3b', 8).num_hidden_layers).toBe(8)
    expect(() => shapeConfig('llama-70b')).toThrow(/unknown shape "llama-70b"; known: olmoe-1b-7b/)
    expect(() => shapeConfig('olmoe-1b-7b', 17)).toThrow(/--layers: expected an integer from 1 to 16, got 17/)
  })

  it('writes a sharded BF16 checkpoint that loads and generates', async () => {
    await initBackend('cpu')
    const out = join(tmp, 'small')
    const progress: number[] = []
    const r = await makeCheckpoint({
      shape: 'qwen3-30b-a3b',
      out,
      layers: 2,
      tokenizer: null,
      maxShardBytes: 100_000,
      override: {
        vocab_size: 256,
        hidden_size: 64,
        head_dim: 16,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        moe_intermediate_size: 32,
        num_experts: 8,
        num_experts_per_tok: 2,
      },
      onProgress: (done) => void progress.push(done),
    })
    expect(r.files.at(-1)).toBe('model.safetensors.index.json')
    expect(r.files.length).toBeGreaterThanOrEqual(3)
    const index = JSON.parse(readFileSync(join(out, 'model.safetensors.index.json'), 'utf8'))
    expect(index.metadata.total_size).toBe(r.bytes)
    expect(progress.at(-1)).toBe(r.bytes)
    const { index: tensors } = openCheckpointTensors(out)
    const norm = readTensor(tensors.get('model.norm.weight')!, 'model.norm.weight')
    expect(norm.dtype).toBe('BF16')
    expect([...(norm.data as Float32Array)].every((v) => v === 1)).toBe(true)
    const q = readTensor(tensors.get('model.layers.0.self_attn.q_proj.weight')!, 'model.layers.0.self_attn.q_proj.weight')
      .data as Float32Array
    const mean = q.reduce((a, b) => a + b, 0) / q.length
    const std = Math.sqrt(q.reduce((a, b) => a + (b - mean) ** 2, 0) / q.length)
    expect(Math.abs(mean)).toBeLessThan(0.002)
    expect(std).toBeGreaterThan(0.018)
    expect(std).toBeLessThan(0.022)
    const model = loadModel(out)
    expect(model.config.family).toBe('qwen3_moe')
    const g = generateGreedy(model, [1, 2, 3], { maxNewTokens: 3, stopTokens: [] })
    expect(g.newTokens).toHaveLength(3)
    model.dispose()
    expect(existsSync(`${out}.tmp-${process.pid}`)).toBe(false)
    await expect(makeCheckpoint({ shape: 'olmoe-1b-7b', out })).rejects.toThrow(/exists and is not empty/)
  })
})
