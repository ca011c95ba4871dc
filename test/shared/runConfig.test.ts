/** `--set` overrides and the run config's own cross-field rules. */
import { describe, expect, it } from 'vitest'
import { familyTraits } from '../../src/shared/modelPresets'
import { applyOverrides, validateRunConfig } from '../../src/shared/runConfig'

const message = (f: () => unknown): string => {
  try {
    f()
  } catch (e) {
    return (e as Error).message
  }
  return 'accepted'
}

describe('applyOverrides', () => {
  it('JSON values where they parse, strings otherwise, everything after the first "="', () => {
    expect(applyOverrides({}, ['optimizer.lr=1e-4', 'name=hello', 'data.template=a=b', 'flag=true', 'list=[1,2]'])).toEqual({
      optimizer: { lr: 1e-4 },
      name: 'hello',
      data: { template: 'a=b' },
      flag: true,
      list: [1, 2],
    })
    expect(applyOverrides({}, ['note='])).toEqual({ note: '' })
  })

  it('keeps what the base had beside the key, replaces a non-object on the way, and never edits the base', () => {
    const base = { optimizer: { lr: 1, betas: [0.9, 0.99] }, data: 'x', lora: null, moe: [1] }
    const out = applyOverrides(base, ['optimizer.lr=2', 'data.maxLength=64', 'lora.rank=4', 'moe.zLossCoef=0.1'])
    expect(out).toEqual({ optimizer: { lr: 2, betas: [0.9, 0.99] }, data: { maxLength: 64 }, lora: { rank: 4 }, moe: { zLossCoef: 0.1 } })
    expect(base).toEqual({ optimizer: { lr: 1, betas: [0.9, 0.99] }, data: 'x', lora: null, moe: [1] })
  })

  it('refuses what is not key=value, with an example', () => {
    expect(message(() => applyOverrides({}, ['=3']))).toBe('--set =3: expected key=value, e.g. optimizer.lr=1e-4')
    expect(message(() => applyOverrides({}, ['maxSteps']))).toBe('--set maxSteps: expected key=value, e.g. optimizer.lr=1e-4')
  })
})

describe('validateRunConfig', () => {
  it('defaults from nothing; messages start with what was wrong', () => {
    expect(validateRunConfig(undefined).method).toBe(validateRunConfig({}).method)
    expect(message(() => validateRunConfig({ freeze: { trainableLayers: 0 } }))).toBe(
      'invalid run config: freeze.trainableLayers: must not be 0 (null trains every layer)',
    )
    expect(validateRunConfig({ freeze: { trainableLayers: -2 } }).freeze.trainableLayers).toBe(-2)
    expect(message(() => validateRunConfig({ method: 'lora', esft: { enabled: true } }))).toBe(
      'invalid run config: esft.enabled: ESFT trains the chosen experts fully; use method "full" or "freeze"',
    )
    expect(validateRunConfig({ method: 'freeze', esft: { enabled: true } }).esft.enabled).toBe(true)
  })
})

describe('familyTraits', () => {
  it("what a family fixes: q/k norm, and renormalised top-k for Mixtral and Qwen3-MoE only", () => {
    expect(familyTraits('mixtral')).toEqual({ family: 'mixtral', qkNorm: 'none', normTopkProb: true })
    expect(familyTraits('qwen3_moe')).toEqual({ family: 'qwen3_moe', qkNorm: 'head', normTopkProb: true })
    expect(familyTraits('qwen2_moe')).toEqual({ family: 'qwen2_moe', qkNorm: 'none' })
    expect(familyTraits('olmoe')).toEqual({ family: 'olmoe', qkNorm: 'projection' })
  })
})
