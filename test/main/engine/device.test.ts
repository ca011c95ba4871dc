/**
 * Device work across awaits: the lock runs units of work one at a time in arrival order (also after
 * one throws), and scopedAsync frees what a unit made except what it keeps.
 */
import * as tf from '@tensorflow/tfjs'
import { beforeAll, describe, expect, it } from 'vitest'
import { DeviceLock, read, readsSync, scopedAsync } from '../../../src/main/engine/device'

beforeAll(async () => {
  await tf.setBackend('cpu')
  await tf.ready()
})

const tick = () => new Promise<void>((r) => setTimeout(r, 1))

describe('DeviceLock', () => {
  it('runs units of work one at a time, first come first served, and says when it is held', async () => {
    const lock = new DeviceLock()
    const events: string[] = []
    let inside = 0
    let most = 0
    const unit = (name: string, ticks: number) =>
      lock.run(async () => {
        inside++
        most = Math.max(most, inside)
        events.push(`${name} start`)
        for (let i = 0; i < ticks; i++) await tick()
        events.push(`${name} end`)
        inside--
        return name
      })
    expect(lock.busy).toBe(false)
    const a = unit('a', 3)
    const b = unit('b', 1)
    const c = unit('c', 2)
    await tick()
    expect(lock.busy).toBe(true)
    expect(await Promise.all([a, b, c])).toEqual(['a', 'b', 'c'])
    expect(most).toBe(1)
    expect(events).toEqual(['a start', 'a end', 'b start', 'b end', 'c start', 'c end'])
    expect(lock.busy).toBe(false)
  })

  it('a unit that throws rejects its caller and releases the lock for the next', async () => {
    const lock = new DeviceLock()
    const failing = lock.run(async () => {
      await tick()
      throw new Error('out of memory')
    })
    const next = lock.run(() => 42)
    await expect(failing).rejects.toThrow('out of memory')
    expect(await next).toBe(42)
    expect(lock.busy).toBe(false)
  })

  it('busy is false again after a unit that throws synchronously', async () => {
    const lock = new DeviceLock()
    await expect(
      lock.run(() => {
        throw new Error('bad input')
      }),
    ).rejects.toThrow('bad input')
    expect(lock.busy).toBe(false)
  })
})

describe('scopedAsync', () => {
  it('frees every tensor the work made across awaits, except the ones it keeps', async () => {
    const before = tf.memory().numTensors
    const kept = await scopedAsync(
      async () => {
        const a = tf.ones([4])
        await tick()
        const b = a.mul(2)
        await tick()
        const c = b.add(1)
        return { c, note: 'x' }
      },
      (r) => [r.c],
    )
    expect(tf.memory().numTensors).toBe(before + 1)
    expect(Array.from(await read(kept.c))).toEqual([3, 3, 3, 3])
    kept.c.dispose()
    expect(tf.memory().numTensors).toBe(before)
  })

  it('keeps nothing by default, and frees what was made when the work throws', async () => {
    const before = tf.memory().numTensors
    await scopedAsync(async () => {
      tf.zeros([3])
      await tick()
      return 1
    })
    expect(tf.memory().numTensors).toBe(before)
    await expect(
      scopedAsync(async () => {
        tf.zeros([3])
        await tick()
        throw new Error('cancelled')
      }),
    ).rejects.toThrow('cancelled')
    expect(tf.memory().numTensors).toBe(before)
  })
})

describe('readsSync', () => {
  it('is true on the cpu backend (webgpu reads back only asynchronously)', () => {
    expect(tf.getBackend()).toBe('cpu')
    expect(readsSync()).toBe(true)
  })
})
