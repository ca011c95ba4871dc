/** Reading weight tensors safely: float dtypes only, no NaN or infinite values, named when wrong. */
import { readTensor, type SafetensorsHeader } from './safetensors'

export class CheckpointError extends Error {}

/** Values that are NaN or ±Infinity in `data`: how many, and the first one's index. */
export function nonFinite(data: Float32Array): { count: number; first: number } {
  let count = 0
  let first = -1
  for (let i = 0; i < data.length; i++) {
    const v = data[i]
    if (v - v !== 0) {
      if (first < 0) first = i
      count++
    }
  }
  return { count, first }
}

/**
 * One weight tensor as float32, refused with its name when it is not a float dtype or holds NaN
 * or infinite values (which would otherwise surface later as a NaN loss).
 */
export function readWeight(header: SafetensorsHeader, name: string): Float32Array {
  const t = readTensor(header, name)
  if (!(t.data instanceof Float32Array))
    throw new CheckpointError(`${header.file}: tensor "${name}" has integer dtype ${t.dtype}; weights must be F32, F16 or BF16`)
  const bad = nonFinite(t.data)
  if (bad.count > 0)
    throw new CheckpointError(
      `${header.file}: tensor "${name}" holds ${bad.count} NaN or infinite value(s) (the first at flat index ${bad.first}); the checkpoint is damaged or was saved after training diverged`,
    )
  return t.data
}
