/**
 * `npm run bench:scale`: the engine at real size (not in CI; needs `npm run build` and ~45 GB of
 * disk). Checkpoints with the exact shapes of OLMoE-1B-7B (13.8 GB) and of Qwen1.5-MoE-A2.7B
 * (28.6 GB, twice as large) with random BF16 weights are made once (make:checkpoint), then the
 * built CLI runs as a user runs it, each command in its own process tree whose peak RSS is
 * sampled from /proc (Linux):
 *
 * - generate: 8 greedy tokens after an 8-token prompt, per backend (wasm, cpu, and webgpu where a
 *   hardware adapter exists) and device budget (1, 2, 4 GB): load time, time to first token,
 *   decode tokens/s, peak RSS, bytes read per token, expert cache hit rate.
 * - the same on the larger checkpoint at 2 GB (peak RSS should not grow with the model).
 * - train: one LoRA step (batch 1, 128 tokens) within 2 GB, then export (merge, BF16 shards,
 *   check): time and peak RSS, on both checkpoints.
 *
 * Env: SCALE_DIR (default $TMPDIR/moe-workbench-scale), SCALE_BACKENDS (default wasm,cpu),
 * SCALE_BUDGETS (default 1GB,2GB,4GB), SCALE_TRAIN_BUDGETS (default 2GB,3GB: the LoRA steps of
 * the two checkpoints), SCALE_SKIP (comma list of generate,large,train).
 * Writes bench/results/scale.json.
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { makeCheckpoint, SHAPES } from '../scripts/checkpointShapes'

const ROOT = join(import.meta.dirname, '..')
const CLI = join(ROOT, 'bin', 'moe-workbench.js')
const DIR = process.env.SCALE_DIR ?? join(tmpdir(), 'moe-workbench-scale')
const BACKENDS = (process.env.SCALE_BACKENDS ?? 'wasm,cpu').split(',').map((s) => s.trim())
const BUDGETS = (process.env.SCALE_BUDGETS ?? '1GB,2GB,4GB').split(',').map((s) => s.trim())
const SKIP = new Set((process.env.SCALE_SKIP ?? '').split(',').map((s) => s.trim()))
/** The LoRA step's budget for each checkpoint (the larger one's LoRA state alone is ~1 GB). */
const TRAIN_BUDGETS = (process.env.SCALE_TRAIN_BUDGETS ?? '2GB,3GB').split(',').map((s) => s.trim())
const PRIMARY = 'olmoe-1b-7b'
const LARGER = 'qwen1.5-moe-a2.7b'

interface Measured {
  code: number | null
  seconds: number
  peakRssBytes: number
  stdout: string
  stderr: string
}

/** Resident bytes of a process and all its descendants (Linux /proc). */
function treeRss(pid: number): number {
  let total = 0
  const stack = [pid]
  while (stack.length) {
    const p = stack.pop()!
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8')
      const m = /VmRSS:\s+(\d+) kB/.exec(status)
      if (m) total += Number(m[1]) * 1024
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const kids = readFileSync(`/proc/${p}/task/${t}/children`, 'utf8').trim()
        if (kids) stack.push(...kids.split(/\s+/).map(Number))
      }
    } catch {
      // the process ended between reads
    }
  }
  return total
}

/** Runs the built CLI, sampling the peak RSS of its process tree every 200 ms. */
function measure(args: string[], label: string): Promise<Measured> {
  process.stderr.write(`scale: ${label}: moe-workbench ${args.join(' ')}\n`)
  return new Promise((resolve) => {
    const started = performance.now()
    const child = spawn(process.execPath, [CLI, ...args], { env: process.env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let peak = 0
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => {
      stderr += d
      process.stderr.write(`  ${String(d).trimEnd().split('\n').join('\n  ')}\n`)
    })
    const timer = setInterval(() => (peak = Math.max(peak, treeRss(child.pid!))), 200)
    child.on('close', (code) => {
      clearInterval(timer)
      resolve({ code, seconds: (performance.now() - started) / 1000, peakRssBytes: peak, stdout, stderr })
    })
  })
}

async function ensureCheckpoint(shape: string): Promise<string> {
  const dir = join(DIR, shape)
  if (existsSync(join(dir, 'model.safetensors.index.json'))) return dir
  const free = statfsSync(DIR).bavail * statfsSync(DIR).bsize
  const need = (SHAPES[shape].config.torch_dtype === 'bfloat16' ? 2 : 4) * 1.05 * 1e9 * (shape === PRIMARY ? 7 : 14.4)
  if (free < need)
    throw new Error(`${DIR}: ${(free / 1e9).toFixed(1)} GB free, ${shape} needs about ${(need / 1e9).toFixed(1)} GB (set SCALE_DIR)`)
  process.stderr.write(`scale: writing the ${shape} checkpoint to ${dir}...\n`)
  await makeCheckpoint({ shape, out: dir, tokenizer: null })
  return dir
}

/** A pre-tokenised dataset (input_ids JSONL): rows of 128 tokens within the vocabulary. */
function dataset(vocab: number): string {
  const file = join(DIR, `rows-${vocab}.jsonl`)
  const rows = Array.from({ length: 12 }, (_, r) =>
    JSON.stringify({ input_ids: Array.from({ length: 128 }, (_, i) => 10 + ((r * 7919 + i * 104729) % (vocab - 20))) }),
  )
  writeFileSync(file, rows.join('\n') + '\n')
  return file
}

const PROMPT = '1,2,3,4,5,6,7,8'

async function generateRow(model: string, shape: string, backend: string, budget: string): Promise<Record<string, unknown>> {
  const m = await measure(
    [
      'generate',
      '--model',
      model,
      '--prompt-ids',
      PROMPT,
      '--max-new-tokens',
      '8',
      '--greedy',
      '--json',
      '--offload-budget',
      budget,
      '--backend',
      backend,
    ],
    `${shape} ${backend} ${budget}`,
  )
  const row: Record<string, unknown> = { shape, backend, budget, ok: m.code === 0, seconds: m.seconds, peakRssBytes: m.peakRssBytes }
  if (m.code !== 0) return { ...row, error: m.stderr.trim().split('\n').at(-1) }
  const j = JSON.parse(m.stdout.trim().split('\n').at(-1)!)
  const tokens = 9 // the prefill's forward and 8 decoding steps
  return {
    ...row,
    loadMs: j.load_ms,
    firstTokenMs: j.first_token_ms,
    decodeTokensPerSec: j.decode_tokens_per_s,
    bytesReadPerToken: j.paging ? j.paging.bytesRead / tokens : 0,
    hitRate: j.paging?.hitRate ?? null,
    plan: /plan: (.*)/.exec(m.stderr)?.[1] ?? 'fits resident',
  }
}

async function trainRow(model: string, shape: string, vocab: number, budget: string): Promise<Record<string, unknown>> {
  const ws = join(DIR, 'ws')
  const name = `${shape}-lora-${Date.now()}`
  const train = await measure(
    [
      'train',
      '--model',
      model,
      '--dataset',
      dataset(vocab),
      '--workspace',
      ws,
      '--name',
      name,
      '--set',
      'method=lora',
      '--set',
      'batchSize=1',
      '--set',
      'maxSteps=1',
      '--set',
      'data.maxLength=128',
      '--set',
      'evalEvery=0',
      '--set',
      'evalBatches=1',
      '--val-ratio',
      '0.1',
      '--offload-budget',
      budget,
      '--backend',
      'wasm',
    ],
    `${shape} LoRA step ${budget}`,
  )
  const row: Record<string, unknown> = {
    shape,
    budget,
    backend: 'wasm',
    trainOk: train.code === 0,
    trainSeconds: train.seconds,
    trainPeakRssBytes: train.peakRssBytes,
  }
  if (train.code !== 0) return { ...row, error: train.stderr.trim().split('\n').at(-1) }
  const runDir = /run\s+(\S+)/.exec(train.stdout)?.[1] ?? join(ws, 'runs', name)
  const out = join(DIR, `${shape}-exported`)
  rmSync(out, { recursive: true, force: true })
  const exp = await measure(['export', runDir, '--out', out, '--backend', 'wasm'], `${shape} export`)
  rmSync(out, { recursive: true, force: true })
  return {
    ...row,
    exportOk: exp.code === 0,
    exportSeconds: exp.seconds,
    exportPeakRssBytes: exp.peakRssBytes,
    ...(exp.code !== 0 && { error: exp.stderr.trim().split('\n').at(-1) }),
  }
}

function gb(bytes: unknown): string {
  return typeof bytes === 'number' ? (bytes / 1e9).toFixed(2) : '–'
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'out', 'main', 'cli.js'))) throw new Error('run `npm run build` first: the bench drives the built CLI')
  mkdirSync(DIR, { recursive: true })
  const primary = await ensureCheckpoint(PRIMARY)
  const generateRows: Record<string, unknown>[] = []
  if (!SKIP.has('generate'))
    for (const backend of BACKENDS) for (const budget of BUDGETS) generateRows.push(await generateRow(primary, PRIMARY, backend, budget))
  let larger: string | null = null
  if (!SKIP.has('large')) {
    larger = await ensureCheckpoint(LARGER)
    generateRows.push(await generateRow(larger, LARGER, 'wasm', '2GB'))
  }
  const trainRows: Record<string, unknown>[] = []
  if (!SKIP.has('train')) {
    trainRows.push(await trainRow(primary, PRIMARY, SHAPES[PRIMARY].config.vocab_size as number, TRAIN_BUDGETS[0]))
    if (larger)
      trainRows.push(await trainRow(larger, LARGER, SHAPES[LARGER].config.vocab_size as number, TRAIN_BUDGETS[1] ?? TRAIN_BUDGETS[0]))
  }
  const record = {
    bench: 'scale',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    description:
      'the built CLI on checkpoints with the shapes of OLMoE-1B-7B and Qwen1.5-MoE-A2.7B (random BF16): generate 8 greedy tokens per backend and device budget, one LoRA step (batch 1, 128 tokens) and its export within 2 GB; peak RSS of each process tree',
    generate: generateRows,
    train: trainRows,
  }
  const dir = join(ROOT, 'bench', 'results')
  mkdirSync(dir, { recursive: true })
  writeFileSync(join(dir, 'scale.json'), JSON.stringify(record, null, 2) + '\n')
  console.log(
    'generate (8 tokens after 8): shape, backend, budget, load s, first token s, decode tok/s, peak RSS GB, read GB/token, hit rate',
  )
  for (const r of generateRows)
    console.log(
      [
        r.shape,
        r.backend,
        r.budget,
        r.ok ? ((r.loadMs as number) / 1000).toFixed(1) : 'FAILED',
        r.ok ? ((r.firstTokenMs as number) / 1000).toFixed(1) : String(r.error ?? ''),
        r.ok ? (r.decodeTokensPerSec as number).toFixed(3) : '',
        gb(r.peakRssBytes),
        gb(r.bytesReadPerToken),
        typeof r.hitRate === 'number' ? `${(100 * r.hitRate).toFixed(1)}%` : '–',
      ].join('\t'),
    )
  console.log('train (LoRA, 1 step) and export: shape, budget, train s, train peak RSS GB, export s, export peak RSS GB')
  for (const r of trainRows)
    console.log(
      [
        r.shape,
        r.budget,
        (r.trainSeconds as number).toFixed(0),
        gb(r.trainPeakRssBytes),
        r.exportSeconds ? (r.exportSeconds as number).toFixed(0) : '–',
        gb(r.exportPeakRssBytes),
        r.error ?? '',
      ].join('\t'),
    )
}

await main()
