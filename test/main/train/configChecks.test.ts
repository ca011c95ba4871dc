/**
 * A run's settings checked against its model before the run exists: each problem names the
 * setting and the value the model allows, and a run the trainer accepts has none.
 */
import { describe, expect, it } from 'vitest'
import { validateRunConfig, type RunConfigInput } from '../../../src/shared/runConfig'
import { runConfigProblems } from '../../../src/main/train/configChecks'
import { tinyConfig } from '../engine/helpers'

const model = tinyConfig() // mixtral: 2 layers, 4 experts, hidden 16, router (4, 16), 64 positions
const problems = (run: RunConfigInput, c = model): { field: string; message: string }[] => runConfigProblems(validateRunConfig(run), c)

describe('runConfigProblems', () => {
  it('has nothing to say of settings the model trains with', () => {
    expect(problems({})).toEqual([])
    expect(problems({ method: 'lora', lora: { rank: 4, targets: ['attention', 'experts', 'router'] } })).toEqual([])
    expect(problems({ method: 'freeze', freeze: { experts: { '1': [0, 3] }, trainableLayers: -2 } })).toEqual([])
    expect(problems({ data: { maxLength: 64, packing: true } })).toEqual([])
  })

  it("LoRA: a rank over a targeted matrix's smaller side names it and the most allowed", () => {
    expect(problems({ method: 'lora', lora: { rank: 8, targets: ['router'] } })).toEqual([
      {
        field: 'lora.rank',
        message:
          'exceeds the smaller side of model.layers.0.block_sparse_moe.gate.weight [4, 16]; use at most 4, or leave its part out of lora.targets'.replace(
            /^/,
            '8 ',
          ),
      },
    ])
  })

  it('LoRA: targets with no layer in this model, and the router of a hash-routed one, say what to choose', () => {
    expect(problems({ method: 'lora', lora: { targets: ['shared_expert'] } })).toEqual([
      {
        field: 'lora.targets',
        message: '["shared_expert"] match no layer of this mixtral model; choose from attention, experts, router, lm_head',
      },
    ])
    const hashed = tinyConfig({ router: { type: 'hash' } })
    expect(problems({ method: 'lora', lora: { targets: ['router'] } }, hashed).map((p) => p.field)).toEqual([
      'lora.targets',
      'lora.targets',
    ])
    expect(problems({ method: 'lora', lora: { targets: ['router'] } }, hashed)[0].message).toMatch(/hash-routed model .* drop it/)
    expect(problems({ method: 'lora', lora: { targets: ['attention', 'router'] } }, hashed)).toHaveLength(1)
  })

  it('freeze: layers and experts the model does not have, and more trainable layers than it has', () => {
    expect(problems({ method: 'freeze', freeze: { experts: { '0': [50], '9': [1] }, trainableLayers: 99 } })).toEqual([
      { field: 'freeze.experts.0', message: 'expert 50 out of range: the model has 4 experts, 0-3' },
      { field: 'freeze.experts.9', message: 'layer 9 is not a sparse layer of this model (it has 2 layers, 0-1)' },
      { field: 'freeze.trainableLayers', message: "99 exceeds the model's 2 layers; use at most 2" },
    ])
  })

  it('at the edges: the last layer, expert and layer count are allowed, one past them is not', () => {
    const fields = (run: RunConfigInput): string[] => problems(run).map((p) => p.field)
    expect(fields({ method: 'freeze', freeze: { experts: { '1': [3] }, trainableLayers: 2 } })).toEqual([])
    expect(fields({ method: 'freeze', freeze: { trainableLayers: -2 } })).toEqual([])
    expect(problems({ method: 'freeze', freeze: { experts: { '2': [0] } } })).toEqual([
      { field: 'freeze.experts.2', message: 'layer 2 is not a sparse layer of this model (it has 2 layers, 0-1)' },
    ])
    expect(fields({ method: 'freeze', freeze: { experts: { '1': [4] } } })).toEqual(['freeze.experts.1'])
    expect(fields({ method: 'freeze', freeze: { trainableLayers: -3 } })).toEqual(['freeze.trainableLayers'])
    expect(problems({ method: 'freeze', freeze: { experts: { '0': [4, 5] } } })[0].message).toMatch(/^expert 4, 5 out of range/)
  })

  it("top-k: up to the model's experts per layer, not one more", () => {
    expect(problems({ moe: { topK: 4 } })).toEqual([])
    expect(problems({ moe: { topK: 1 } })).toEqual([])
    expect(problems({ moe: { topK: 5 } })).toEqual([
      { field: 'moe.topK', message: "5 is more than the model's 4 experts per layer; use at most 4" },
    ])
  })

  it('LoRA: the smallest targeted matrix decides the rank, wherever it comes in the model', () => {
    // attention's matrices are 16 wide at least; the router's (4, 16) comes after them
    expect(problems({ method: 'lora', lora: { rank: 5, targets: ['attention', 'router'] } })).toEqual([
      {
        field: 'lora.rank',
        message:
          '5 exceeds the smaller side of model.layers.0.block_sparse_moe.gate.weight [4, 16]; use at most 4, or leave its part out of lora.targets',
      },
    ])
    expect(problems({ method: 'lora', lora: { rank: 5, targets: ['attention'] } })).toEqual([])
  })

  it('says nothing is left to train, with no word of a hash router where there is none', () => {
    expect(problems({ method: 'freeze', freeze: { trainableParts: ['router'], router: true } })).toEqual([
      { field: 'freeze', message: 'the settings leave nothing to train on this model; unfreeze something or use LoRA' },
    ])
  })

  it("each check is its method's: LoRA settings under full, freeze's layer count under LoRA, nothing to train under ESFT", () => {
    const hashed = tinyConfig({ router: { type: 'hash' } })
    expect(problems({ method: 'full', lora: { rank: 99, targets: ['shared_expert'] } })).toEqual([])
    expect(problems({ method: 'lora', freeze: { trainableLayers: 99 } })).toEqual([])
    expect(problems({ method: 'lora', freeze: { trainableParts: ['router'] } }, hashed)).toEqual([])
    expect(
      problems({ method: 'full', esft: { enabled: true }, freeze: { router: true, attention: true, embeddings: true, allExperts: true } }),
    ).toEqual([])
    // a hash-routed model's LoRA choices leave its router out
    expect(problems({ method: 'lora', lora: { targets: ['shared_expert'] } }, hashed)[0].message).toMatch(
      /choose from attention, experts, lm_head$/,
    )
    expect(problems({ method: 'full', esft: { enabled: true }, freeze: { experts: { '0': [50] } } }).map((p) => p.field)).toEqual([
      'freeze.experts.0',
    ])
    // one problem at a time: the range, not also "nothing to train"
    expect(
      problems({ method: 'freeze', freeze: { trainableParts: ['router'], experts: { '0': [50] } } }, hashed).map((p) => p.field),
    ).toEqual(['freeze.experts.0'])
  })

  it('freeze: the experts of a dense layer', () => {
    const qwen = tinyConfig({ family: 'qwen2_moe', mlpOnlyLayers: [1], sharedExpertIntermediateSize: 8 })
    expect(problems({ method: 'freeze', freeze: { experts: { '1': [0] } } }, qwen)).toEqual([
      { field: 'freeze.experts.1', message: 'layer 1 is a dense layer of this model: it has no experts to freeze' },
    ])
  })

  it("a freeze that leaves nothing to train, and a sequence longer than the model's positions", () => {
    expect(problems({ method: 'freeze', freeze: { trainableParts: ['router'] } }, tinyConfig({ router: { type: 'hash' } }))).toEqual([
      {
        field: 'freeze',
        message:
          'the settings leave nothing to train on this model (a hash router has no weights to train); unfreeze something or use LoRA',
      },
    ])
    expect(problems({ data: { maxLength: 2048, packing: true } })).toEqual([
      {
        field: 'data.maxLength',
        message: "2048 exceeds the model's max_position_embeddings 64, and packing fills every row to it; use at most 64",
      },
    ])
    expect(problems({ data: { maxLength: 2048 } })).toEqual([]) // rows are cut at the model's positions
  })
})
