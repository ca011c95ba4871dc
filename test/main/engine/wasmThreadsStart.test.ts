/**
 * The threaded wasm build started in this process (a test file runs in its own process, so the
 * backend starts here first): the thread count asked for, its pool workers not keeping the
 * process alive, the start-up patches undone and the temporary files gone. threads.test.ts
 * checks the results across thread counts in child processes; this file lets mutation testing
 * see the start-up code, which runs once per process.
 */
import { readdirSync } from 'node:fs'
import os from 'node:os'
import * as tf from '@tensorflow/tfjs'
import { describe, expect, it } from 'vitest'
import { setWasmBackend } from '../../../src/main/engine/wasmThreads'

const leftovers = (): string[] => readdirSync(os.tmpdir()).filter((n) => n.startsWith('moe-workbench-wasm-'))

describe('starting the threaded wasm build in this process', () => {
  it('runs on the threads asked for, undoes its patches, leaves no files, and multiplies correctly', async () => {
    const cpus = os.cpus
    const createObjectURL = URL.createObjectURL
    const before = leftovers()
    const cpuCount = os.cpus().length
    expect(await setWasmBackend(2)).toBe(2)
    expect(tf.getBackend()).toBe('wasm')
    expect(tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT')).toBe(true)
    // the patches were only there while the backend started
    expect(os.cpus).toBe(cpus)
    expect(os.cpus().length).toBe(cpuCount)
    expect(URL.createObjectURL).toBe(createObjectURL)
    expect(leftovers()).toEqual(before)
    // the threaded build: Emscripten's pthread runtime, with its pool
    const runtime = (tf.backend() as unknown as { wasm: { PThread?: { runningWorkers: unknown[] } } }).wasm
    expect(runtime.PThread).toBeDefined()
    expect(runtime.PThread!.runningWorkers.length).toBeGreaterThanOrEqual(1)
    // a product large enough for XNNPACK to split across the threads
    const a = tf.tensor2d(
      Array.from({ length: 64 * 48 }, (_, i) => (i % 7) - 3),
      [64, 48],
    )
    const b = tf.tensor2d(
      Array.from({ length: 48 * 40 }, (_, i) => (i % 5) - 2),
      [48, 40],
    )
    const y = tf.matMul(a, b).arraySync() as number[][]
    const [x, z] = [a.arraySync(), b.arraySync()]
    for (const [r, c] of [
      [0, 0],
      [63, 39],
      [17, 23],
    ]) {
      let s = 0
      for (let k = 0; k < 48; k++) s += x[r][k] * z[k][c]
      expect(y[r][c]).toBe(s)
    }
    // a second start with one thread is the plain build's path: no patches, the backend as is
    expect(await setWasmBackend(1)).toBe(1)
    expect(os.cpus).toBe(cpus)
  })
})
