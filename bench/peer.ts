/**
 * The engine's side of `npm run bench`'s peer comparison (run as a child process per thread
 * count: the wasm thread count is fixed when the backend starts). Prints one JSON line: training
 * tokens/s of the configuration given in argv[2] (JSON), forward + backward + AdamW.
 */
import { initBackend } from '../src/main/engine/backend'
import { MoeModel } from '../src/main/engine/model'
import { disposeGrads, lossAndGrads } from '../src/main/engine/objective'
import { Rng } from '../src/main/engine/ops'
import { AdamW } from '../src/main/engine/optimizer'
import { countParams, paramSpecs, validateMoeConfig, type MoeConfigInput } from '../src/shared/modelConfig'

const spec = JSON.parse(process.argv[2]) as MoeConfigInput & { batch: number; seq: number; steps: number }
const report = await initBackend((process.env.BENCH_BACKEND ?? 'wasm') as 'wasm')
const { batch, seq, steps, ...input } = spec
const c = validateMoeConfig(input)
const rng = new Rng(7)
const weights = new Map<string, Float32Array>()
for (const s of paramSpecs(c))
  weights.set(
    s.name,
    rng.normalArray(s.shape.reduce((a, b) => a * b, 1)).map((v) => (s.kind === 'norm' ? 1 : v * 0.02)),
  )
const model = new MoeModel(c, weights)
const opt = new AdamW({ weightDecay: 0.01 })
const ids = Array.from({ length: batch }, () => Array.from({ length: seq }, () => Math.floor(rng.next() * c.vocabSize)))
const step = (): void => {
  const r = lossAndGrads(model, { inputIds: ids, labels: ids }, { training: true, rng })
  opt.apply(model.params, r.grads, 1e-4)
  disposeGrads(r.grads)
}
step() // warm-up
const times: number[] = []
for (let i = 0; i < steps; i++) {
  const t0 = performance.now()
  step()
  times.push(performance.now() - t0)
}
times.sort((a, b) => a - b)
const ms = times[Math.floor(times.length / 2)]
console.log(
  JSON.stringify({
    backend: report.name,
    threads: report.threads ?? null,
    params: countParams(c).total,
    msPerStep: ms,
    tokensPerSec: (batch * seq) / (ms / 1000),
  }),
)
process.exit(0)
