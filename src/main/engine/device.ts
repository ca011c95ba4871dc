/**
 * Device work across awaits.
 *
 * TF.js tracks the tensors an operation makes in the innermost open scope, and one scope stack
 * is shared by everything in the process. Work that keeps a scope open across an await (every
 * forward on webgpu, which can only read back asynchronously) must therefore not interleave with
 * other tensor work: `deviceLock.run` serialises such units of work (a training step, a generated
 * token, an analysed text), and `scopedAsync` opens and closes the scope around one.
 */
import * as tf from '@tensorflow/tfjs'

/** Whether the backend reads tensors back synchronously (webgpu cannot: its reads are mapAsync). */
export function readsSync(): boolean {
  return tf.getBackend() !== 'webgpu'
}

/** A FIFO mutex for device work. Not re-entrant: take it once, at the unit of work's entry. */
export class DeviceLock {
  private tail: Promise<void> = Promise.resolve()
  private held = false

  get busy(): boolean {
    return this.held
  }

  async run<T>(work: () => Promise<T> | T): Promise<T> {
    let release!: () => void
    const previous = this.tail
    this.tail = new Promise<void>((r) => (release = r))
    await previous
    this.held = true
    try {
      return await work()
    } finally {
      this.held = false
      release()
    }
  }
}

/** The engine process's one lock (every backend: sync work must not land in an async scope). */
export const deviceLock = new DeviceLock()

/**
 * Runs `work` inside a TF.js scope that may span awaits: tensors it makes are disposed when it
 * ends, except those `keep` names from its result (the caller disposes them). Call it holding
 * deviceLock.
 */
export async function scopedAsync<T>(work: () => Promise<T>, keep: (result: T) => tf.Tensor[] = () => []): Promise<T> {
  const engine = tf.engine()
  engine.startScope('scopedAsync')
  let result: T | undefined
  let kept: tf.Tensor[] = []
  try {
    result = await work()
    kept = keep(result)
    for (const t of kept) tf.keep(t)
    return result
  } finally {
    engine.endScope(kept as unknown as tf.TensorContainer)
  }
}

/** The values of a tensor, read asynchronously (works on every backend). */
export async function read(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array
}
