/**
 * Threads on wasm: the count follows MOE_WORKBENCH_THREADS, and a forward's logits and a training
 * step's gradients are bit-identical on 1 and 2 threads (each in its own process: the count is
 * fixed when the backend starts), whether the threads run TF.js's threaded XNNPACK build or the
 * native matmul, with the SIMD loops on either heap.
 */
import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { wasmThreadCount } from '../../../src/main/engine/wasmThreads'
import { wasmMatMulPaths } from './helpers'

const ROOT = join(import.meta.dirname, '../../..')

function probe(threads: number, matmul: 'native' | 'wasm'): { threads: number; matmul: string; simd: boolean; hash: string; loss: number } {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'threadsProbe.ts')], {
    cwd: ROOT,
    env: { ...process.env, MOE_WORKBENCH_THREADS: String(threads), MOE_WORKBENCH_MATMUL: matmul },
    encoding: 'utf8',
    timeout: 120_000,
  })
  return JSON.parse(out.trim().split('\n').at(-1)!)
}

const matmuls = (await wasmMatMulPaths()).map((p) => (p === 'native' ? 'native' : 'wasm') as 'native' | 'wasm')

describe('wasm threads', () => {
  it('reads MOE_WORKBENCH_THREADS, else one thread per CPU up to 8', () => {
    expect(wasmThreadCount({ MOE_WORKBENCH_THREADS: '3' })).toBe(3)
    expect(wasmThreadCount({ MOE_WORKBENCH_THREADS: ' 1 ' })).toBe(1)
    expect(wasmThreadCount({ MOE_WORKBENCH_THREADS: '8' })).toBe(8)
    // unset or blank: one per CPU the OS offers, at most 8
    const perCpu = Math.max(1, Math.min(8, os.availableParallelism()))
    expect(wasmThreadCount({})).toBe(perCpu)
    expect(wasmThreadCount({ MOE_WORKBENCH_THREADS: '  ' })).toBe(perCpu)
    for (const bad of ['0', '9', 'two', '1.5'])
      expect(() => wasmThreadCount({ MOE_WORKBENCH_THREADS: bad })).toThrow(/MOE_WORKBENCH_THREADS=.*a whole number from 1 to 8/)
  })

  it.each(matmuls)('gives the same logits and gradients, bit for bit, on 1 and 2 threads (MOE_WORKBENCH_MATMUL=%s)', (matmul) => {
    const one = probe(1, matmul)
    const two = probe(2, matmul)
    expect(one.threads).toBe(1)
    expect(two.threads).toBe(2)
    expect(one.matmul).toMatch(matmul === 'native' ? /^onnxruntime-node / : /^XNNPACK \(wasm\)$/)
    expect(Number.isFinite(one.loss)).toBe(true)
    // the SIMD loops on both heaps: the threaded build's shared one too
    expect([one.simd, two.simd]).toEqual([true, true])
    expect(two.hash).toBe(one.hash)
  })
})
