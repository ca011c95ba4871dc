/** A workspace dataset tokenised for a model: the examples a run trains and validates on. */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { NormalizedRow } from '../../shared/dataset'
import type { RunConfig } from '../../shared/runConfig'
import { encodeExample, type EncodedExample } from '../data/encode'
import { loadChatTemplate } from '../data/template'
import { loadTokenizer } from '../data/tokenizer'
import { readRows } from '../data/workspace'
import { readModelConfig } from '../engine/checkpoint'
import { cancelledError } from '../engine/tasks'

export type { EncodedExample }

/** Tokenises a dataset's rows for training with the model's tokenizer and template. */
export async function encodeDataset(
  workspace: string,
  dataset: string,
  modelDir: string,
  cfg: RunConfig,
  opts: { signal?: AbortSignal; onRows?: (rows: number) => void } = {},
): Promise<{ train: EncodedExample[]; validation: EncodedExample[]; padId: number }> {
  const model = readModelConfig(modelDir)
  const tokenizer = existsSync(join(modelDir, 'tokenizer.json')) ? await loadTokenizer(modelDir) : null
  const template = tokenizer ? await loadChatTemplate(modelDir) : null
  // Rows are cut at the model's positions too (as a tokenizer's model_max_length cuts them): a
  // longer row failed the run at its first step. Packing fills rows to maxLength: checked before
  // the run (configChecks.ts).
  const maxLength = Math.min(cfg.data.maxLength, model.maxPositionEmbeddings)
  const encode = (row: NormalizedRow): EncodedExample | null => {
    if ('input_ids' in row) {
      const labels = row.labels ?? row.input_ids
      return { input_ids: row.input_ids.slice(0, maxLength), labels: labels.slice(0, maxLength) }
    }
    if (!tokenizer || !template) throw new Error(`${modelDir} has no tokenizer.json, so only pre-tokenised datasets can train it`)
    return encodeExample(row, tokenizer, template, {
      maskPrompt: cfg.data.maskPrompt,
      maxLength,
      truncation: cfg.data.truncation,
    })
  }
  let rows = 0
  let reported = Date.now()
  const split = async (which: 'train' | 'validation'): Promise<EncodedExample[]> => {
    const out: EncodedExample[] = []
    let n = 0 // rows of this split read
    for await (const row of readRows(workspace, dataset, which)) {
      n++
      if (opts.signal?.aborted) throw cancelledError(`tokenising dataset ${dataset}`)
      if (++rows % 256 === 0 && Date.now() - reported >= 2000) {
        reported = Date.now()
        opts.onRows?.(rows)
      }
      const e = encode(row)
      if (e && e.input_ids.length >= 2) {
        const bad = e.input_ids.find((t) => t >= model.vocabSize)
        if (bad !== undefined)
          throw new Error(
            `dataset ${dataset}: row ${n} of its ${which} split has token id ${bad}, outside the model's vocabulary of ${model.vocabSize}; was it tokenised for another model?`,
          )
        out.push(e)
      }
    }
    return out
  }
  const eos = model.eosTokenId
  const padId = tokenizer?.padId ?? model.padTokenId ?? (Array.isArray(eos) ? eos[0] : eos) ?? 0
  return { train: await split('train'), validation: await split('validation'), padId }
}
