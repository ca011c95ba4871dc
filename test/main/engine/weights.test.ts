/** Reading a model folder's config.json and weight tensors: refused with the file, the tensor and what is wrong. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { readModelConfig } from '../../../src/main/engine/modelConfigFile'
import { readHeader, saveSafetensors } from '../../../src/main/engine/safetensors'
import { CheckpointError, nonFinite, readWeight } from '../../../src/main/engine/weights'
import { toHfConfig } from '../../../src/shared/modelConfig'
import { tinyConfig } from './helpers'

const caught = (f: () => unknown): Error => {
  try {
    f()
  } catch (e) {
    return e as Error
  }
  throw new Error('accepted')
}

describe('nonFinite', () => {
  it('counts NaN and ±Infinity and finds the first', () => {
    expect(nonFinite(new Float32Array([1, 2, 3]))).toEqual({ count: 0, first: -1 })
    expect(nonFinite(new Float32Array([1, Number.NaN, Infinity, -Infinity, 0]))).toEqual({ count: 3, first: 1 })
    expect(nonFinite(new Float32Array([-Infinity]))).toEqual({ count: 1, first: 0 })
    expect(nonFinite(new Float32Array([3.4e38, -3.4e38]))).toEqual({ count: 0, first: -1 })
  })
})

describe('readWeight', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moe-weights-'))
  const file = join(dir, 'model.safetensors')
  saveSafetensors(file, {
    ok: { dtype: 'F32', shape: [2], data: new Float32Array([1, 2]) },
    half: { dtype: 'F16', shape: [2], data: new Float32Array([0.5, -1]) },
    ids: { dtype: 'I32', shape: [2], data: new Int32Array([1, 2]) },
    nan: { dtype: 'F32', shape: [4], data: new Float32Array([0, 1, Number.NaN, Number.NaN]) },
  })

  it('float tensors as float32', () => {
    const h = readHeader(file)
    expect(Array.from(readWeight(h, 'ok'))).toEqual([1, 2])
    expect(Array.from(readWeight(h, 'half'))).toEqual([0.5, -1])
  })

  it('refuses integer tensors and damaged values, naming the file and tensor', () => {
    const h = readHeader(file)
    const ints = caught(() => readWeight(h, 'ids'))
    expect(ints).toBeInstanceOf(CheckpointError)
    expect(ints.message).toBe(`${file}: tensor "ids" has integer dtype I32; weights must be F32, F16 or BF16`)
    const nan = caught(() => readWeight(h, 'nan'))
    expect(nan).toBeInstanceOf(CheckpointError)
    expect(nan.message).toBe(
      `${file}: tensor "nan" holds 2 NaN or infinite value(s) (the first at flat index 2); the checkpoint is damaged or was saved after training diverged`,
    )
  })
})

describe('readModelConfig', () => {
  const folder = (configText?: string): string => {
    const d = mkdtempSync(join(tmpdir(), 'moe-config-'))
    mkdirSync(d, { recursive: true })
    if (configText !== undefined) writeFileSync(join(d, 'config.json'), configText)
    return d
  }

  it('reads and normalises a config.json', () => {
    const c = tinyConfig()
    expect(readModelConfig(folder(JSON.stringify(toHfConfig(c))))).toEqual(c)
  })

  it('names the file and what to do when it is missing, not JSON, not an object, or not a supported model', () => {
    const missing = folder()
    expect(caught(() => readModelConfig(missing)).message).toBe(
      `${join(missing, 'config.json')}: not found; a model folder needs config.json and *.safetensors (a Hugging Face checkpoint)`,
    )
    expect(caught(() => readModelConfig(join(missing, 'gone'))).message).toBe(
      `${join(missing, 'gone')}: no such folder; give the folder of a Hugging Face checkpoint`,
    )
    const broken = folder('{"model_type": ')
    const e = caught(() => readModelConfig(broken))
    expect(e).toBeInstanceOf(CheckpointError)
    expect(e.message).toMatch(new RegExp(`^${join(broken, 'config.json').replace(/[/.]/g, '\\$&')}: not valid JSON \\(.+\\)$`))
    for (const text of ['[1]', 'null', '3']) {
      const d = folder(text)
      expect(caught(() => readModelConfig(d)).message, text).toBe(`${join(d, 'config.json')}: must hold a JSON object`)
    }
    const gpt = folder('{"model_type": "gpt2"}')
    const g = caught(() => readModelConfig(gpt))
    expect(g).toBeInstanceOf(CheckpointError)
    expect(g.message).toMatch(/config\.json: model_type "gpt2" is not supported/)
  })
})
