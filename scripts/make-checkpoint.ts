/**
 * npm run make:checkpoint -- --shape NAME --out DIR [--layers N] [--seed N] [--tokenizer DIR|none]
 *
 * Writes a Hugging Face checkpoint with the exact shapes of a published MoE model and random BF16
 * weights, sharded as the hub stores it (5 GB shards, model.safetensors.index.json), one tensor
 * at a time (host memory stays around 100 MB whatever the size). Shapes: olmoe-1b-7b,
 * qwen1.5-moe-a2.7b, mixtral-8x7b, qwen3-30b-a3b. `--layers N` keeps the first N layers.
 * Qwen shapes get the Qwen3 tokenizer and Mixtral the Llama-2 one where those dev packages are
 * installed; OLMoE has none unless `--tokenizer DIR` names one (generate with --prompt-ids).
 */
import { parseArgs } from 'node:util'
import { makeCheckpoint, shapeConfig, SHAPES } from './checkpointShapes'
import { countParams, fromHfConfig } from '../src/shared/modelConfig'

function fail(message: string): never {
  process.stderr.write(`make:checkpoint: ${message}\n`)
  process.exit(2)
}

let values
try {
  values = parseArgs({
    options: {
      shape: { type: 'string' },
      out: { type: 'string' },
      layers: { type: 'string' },
      seed: { type: 'string', default: '0' },
      tokenizer: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  }).values
} catch (e) {
  fail((e as Error).message)
}
if (values.help || !values.shape || !values.out) {
  process.stderr.write(
    `usage: npm run make:checkpoint -- --shape NAME --out DIR [--layers N] [--seed N] [--tokenizer DIR|none]\nshapes:\n${Object.entries(
      SHAPES,
    )
      .map(([k, s]) => {
        const params = countParams(fromHfConfig(s.config)).total
        return `  ${k.padEnd(18)} ${s.repo} (${(params / 1e9).toFixed(1)} B parameters, ${((params * 2) / 1e9).toFixed(1)} GB in BF16)`
      })
      .join('\n')}\n`,
  )
  process.exit(values.help ? 0 : 2)
}
const layers = values.layers === undefined ? undefined : Number(values.layers)
const seed = Number(values.seed)
if (!Number.isInteger(seed) || seed < 0) fail(`--seed: expected a whole number, got "${values.seed}"`)
let planned
try {
  planned = countParams(fromHfConfig(shapeConfig(values.shape, layers))).total
} catch (e) {
  fail((e as Error).message)
}
process.stderr.write(
  `writing ${values.shape}${layers ? ` (first ${layers} layers)` : ''}: ${(planned / 1e9).toFixed(2)} B parameters, ${((planned * 2) / 1e9).toFixed(2)} GB of BF16 to ${values.out}\n`,
)
const started = Date.now()
let last = 0
try {
  const r = await makeCheckpoint({
    shape: values.shape,
    out: values.out,
    layers,
    seed,
    tokenizer: values.tokenizer === 'none' ? null : values.tokenizer,
    onProgress: (done, total) => {
      if (Date.now() - last < 2000 && done < total) return
      last = Date.now()
      const s = (Date.now() - started) / 1000
      const eta = done > 0 ? (s * (total - done)) / done : 0
      process.stderr.write(
        `  ${((100 * done) / total).toFixed(1)}% (${(done / 1e9).toFixed(2)} of ${(total / 1e9).toFixed(2)} GB), ${s.toFixed(0)} s, about ${eta.toFixed(0)} s left\n`,
      )
    },
  })
  process.stderr.write(`done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${r.files.join(', ')}\n`)
  process.stdout.write(`${JSON.stringify({ dir: r.dir, params: r.params, bytes: r.bytes })}\n`)
} catch (e) {
  fail((e as Error).message)
}
