/**
 * The engine's side of `npm run bench`'s peer comparison (run as a child process per thread
 * count: the wasm thread count is fixed when the backend starts). Prints one JSON line: training
 * tokens/s of the configuration given in argv[2] (JSON), forward + backward + AdamW.
 */
import { initBackend } from '../src/main/engine/backend'
import { countParams, validateMoeConfig, type MoeConfigInput } from '../src/shared/modelConfig'
import { trainStepBench } from './trainStep'

const spec = JSON.parse(process.argv[2]) as MoeConfigInput & { batch: number; seq: number; steps: number }
const report = await initBackend((process.env.BENCH_BACKEND ?? 'wasm') as 'wasm')
const { batch, seq, steps, ...input } = spec
const c = validateMoeConfig(input)
const { step } = trainStepBench(c, batch, seq, 0.02)
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
