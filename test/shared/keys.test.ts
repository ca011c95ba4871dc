/** "Did you mean": edit distance, the closest valid key, and the keys a schema accepts at a path. */
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { closestKey, editDistance, keysAt, keysStartingLike, unknownKeysMessage } from '../../src/shared/keys'
import { runConfigSchema } from '../../src/shared/runConfig'

describe('editDistance (optimal string alignment)', () => {
  it('counts inserts, deletes, substitutions, and an adjacent swap as one', () => {
    expect(editDistance('', 'abc')).toBe(3)
    expect(editDistance('abc', '')).toBe(3)
    expect(editDistance('a', 'b')).toBe(1)
    expect(editDistance('ab', 'ba')).toBe(1)
    expect(editDistance('abcd', 'acbd')).toBe(1)
    expect(editDistance('ca', 'abc')).toBe(3)
    expect(editDistance('same', 'same')).toBe(0)
  })
})

describe('closestKey', () => {
  it('the first of equally close keys, within a third of the length', () => {
    expect(closestKey('ab', ['ac', 'ad'])).toBe('ac')
    expect(closestKey('abcdefgh', ['abcdefxy'])).toBe('abcdefxy') // 2 edits of 8 characters
    expect(closestKey('abcdefgh', ['abcdexyz'])).toBeUndefined() // 3 edits
    expect(closestKey('ab', ['xy'])).toBeUndefined()
    expect(closestKey('a', ['b'])).toBe('b') // at least one edit is always allowed
    // the allowance is a third of the shorter name: 3 edits are too many for a 6-letter key, even against a 9-letter one
    expect(closestKey('abcdef', ['abcdefghi'])).toBeUndefined()
    expect(closestKey('abcdefghi', ['abcdefghijkl'])).toBe('abcdefghijkl')
  })

  it('the names HF Trainer, LLaMA-Factory and axolotl use map to ours', () => {
    const theirs: [string, string][] = [
      ['learning_rate', 'lr'],
      ['LR', 'lr'],
      ['num_train_epochs', 'epochs'],
      ['num_epochs', 'epochs'],
      ['epoch', 'epochs'],
      ['max_step', 'maxSteps'],
      ['steps', 'maxSteps'],
      ['warmup', 'warmupSteps'],
      ['warmup_ratio', 'warmupSteps'],
      ['gradient_accumulation_steps', 'gradAccumulation'],
      ['gradient_accumulation', 'gradAccumulation'],
      ['per_device_train_batch_size', 'batchSize'],
      ['micro_batch_size', 'batchSize'],
      ['max_grad_norm', 'gradClip'],
      ['cutoff_len', 'maxLength'],
      ['sequence_len', 'maxLength'],
      ['lora_alpha', 'alpha'],
      ['lora_r', 'rank'],
      ['lora_rank', 'rank'],
      ['r', 'rank'],
      ['lora_dropout', 'dropout'],
      ['lora_target', 'targets'],
      ['lora_target_modules', 'targets'],
      ['router_aux_loss_coef', 'auxLossCoef'],
      ['moe_aux_loss_coef', 'auxLossCoef'],
      ['router_z_loss_coef', 'zLossCoef'],
      ['capacity_factor', 'capacityFactorTrain'],
    ]
    const valid = [...new Set(theirs.map(([, ours]) => ours))]
    for (const [name, ours] of theirs) expect(closestKey(name, valid), name).toBe(ours)
  })

  it("another tool's name maps to ours only when ours is valid here", () => {
    expect(closestKey('learning_rate', ['lr', 'epochs'])).toBe('lr')
    expect(closestKey('learning_rate', ['epochs'])).toBeUndefined()
    expect(closestKey('Batch-Size', ['batchSize'])).toBe('batchSize')
  })
})

describe('keysAt', () => {
  const schema = z
    .strictObject({
      a: z.strictObject({ b: z.number(), c: z.strictObject({ d: z.string() }).nullable() }).optional(),
      p: z.strictObject({ q: z.number() }).prefault({ q: 1 }),
      n: z.number(),
    })
    .default({ n: 1, p: { q: 1 } })

  it('reads through defaults, optionals, nullables and prefaults', () => {
    expect(keysAt(schema, [])).toEqual(['a', 'p', 'n'])
    expect(keysAt(schema, ['a'])).toEqual(['b', 'c'])
    expect(keysAt(schema, ['a', 'c'])).toEqual(['d'])
    expect(keysAt(schema, ['p'])).toEqual(['q'])
  })

  it('nothing where the path leaves the objects', () => {
    expect(keysAt(schema, ['n'])).toBeUndefined()
    expect(keysAt(schema, ['zz'])).toBeUndefined()
    expect(keysAt(schema, ['a', 'b', 'x'])).toBeUndefined()
    expect(keysAt(schema, [0])).toBeUndefined()
    expect(keysAt(undefined, [])).toBeUndefined()
    expect(keysAt(undefined, ['a'])).toBeUndefined()
    expect(keysAt(schema, ['n', 'x'])).toBeUndefined()
    // any object with a shape will do (no zod internals needed)
    expect(keysAt({ shape: { a: { shape: { b: 1 } } } }, ['a'])).toEqual(['b'])
  })

  it('messages: a hint, else the valid fields, else just the name; several joined', () => {
    expect(unknownKeysMessage(schema, ['a'], ['bb'])).toBe('unknown field "bb" (did you mean "b"?)')
    expect(unknownKeysMessage(schema, ['a'], ['zzzz'])).toBe('unknown field "zzzz"; valid fields here: b, c')
    expect(unknownKeysMessage(schema, ['n'], ['x'])).toBe('unknown field "x"')
    expect(unknownKeysMessage(schema, ['a'], ['bb', 'zzzz'])).toBe(
      'unknown field "bb" (did you mean "b"?); unknown field "zzzz"; valid fields here: b, c',
    )
  })

  it('a key cut short: the keys it starts like, a typo aside (it listed all 11 fields of moe)', () => {
    expect(unknownKeysMessage(runConfigSchema, ['moe'], ['capacityFactr'])).toBe(
      'unknown field "capacityFactr" (did you mean "capacityFactorTrain" or "capacityFactorEval"?)',
    )
    expect(unknownKeysMessage(runConfigSchema, ['moe'], ['routerJit'])).toBe('unknown field "routerJit" (did you mean "routerJitter"?)')
    expect(keysStartingLike('capacitx', ['capacityFactorTrain', 'capacityFactorEval'])).toEqual([
      'capacityFactorTrain',
      'capacityFactorEval',
    ])
    expect(keysStartingLike('capaxxty', ['capacityFactorTrain'])).toEqual([]) // two typos
    expect(keysStartingLike('cap', ['capacityFactorTrain'])).toEqual([]) // too short to tell
    expect(keysStartingLike('capacityFactorTrain', ['capacityFactorTrain'])).toEqual([]) // not longer: not cut short
    expect(keysStartingLike('abcd', ['abcd1', 'abcd2', 'abcd3'])).toEqual(['abcd1', 'abcd2', 'abcd3'])
    expect(keysStartingLike('abcd', ['abcd1', 'abcd2', 'abcd3', 'abcd4'])).toEqual([]) // too many to help
    expect(keysStartingLike('ABC_D', ['abcd1'])).toEqual(['abcd1']) // case and separators aside
  })
})
