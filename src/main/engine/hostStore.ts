/**
 * The host side of paging: weights the device does not hold, kept in host memory as float32,
 * 16-bit or 8-bit (per-row scales), or not kept at all ('lazy': read from the checkpoint's
 * safetensors files by offset whenever needed). Built tensor by tensor, so host memory never
 * holds more than one float32 tensor beyond the store itself. Reads return float32 rows: a whole
 * matrix, a range of rows (lm_head chunks) or gathered rows (embedding lookups).
 */
import type { ExpertStorage } from '../../shared/chat'
import { decodeToFloat32, DTYPE_SIZES, encodeFromFloat32, readTensorRange, type SafetensorsHeader } from './safetensors'
import { CheckpointError, nonFinite } from './weights'

type Quantized = { q: Int8Array; scale: Float32Array }
type Held = Float32Array | { bytes: Uint8Array; dtype: 'F16' | 'BF16' } | Quantized

/** Symmetric 8-bit quantisation per output channel (row of W (out, in)). */
export function quantizeInt8(w: Float32Array, rows: number, cols: number): Quantized {
  const q = new Int8Array(rows * cols)
  const scale = new Float32Array(rows)
  for (let r = 0; r < rows; r++) {
    let max = 0
    for (let c = 0; c < cols; c++) max = Math.max(max, Math.abs(w[r * cols + c]))
    const s = max > 0 ? max / 127 : 1
    scale[r] = s
    for (let c = 0; c < cols; c++) q[r * cols + c] = Math.round(w[r * cols + c] / s)
  }
  return { q, scale }
}

export function dequantizeInt8({ q, scale }: Quantized, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols)
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = q[r * cols + c] * scale[r]
  return out
}

/** Host bytes a storage takes per float32 value of a [rows, cols] matrix. */
export function storageBytes(storage: ExpertStorage, rows: number, cols: number): number {
  switch (storage) {
    case 'lazy':
      return 0
    case 'f32':
      return rows * cols * 4
    case 'f16':
    case 'bf16':
      return rows * cols * 2
    case 'int8':
      return rows * cols + rows * 4
  }
}

export interface HostTensor {
  name: string
  shape: [number, number]
}

export class HostStore {
  private readonly held = new Map<string, Held>()
  private readonly shapes = new Map<string, [number, number]>()
  /** Bytes read from the checkpoint files so far (lazy storage reads on every use). */
  bytesRead = 0

  constructor(
    readonly storage: ExpertStorage,
    private readonly index: Map<string, SafetensorsHeader>,
  ) {}

  /**
   * Adds a tensor: lazy storage only notes its shape; any other reads it from the checkpoint,
   * checks it and keeps it encoded (one float32 tensor in memory at a time). Returns the bytes read.
   */
  add(t: HostTensor, storage: ExpertStorage = this.storage): number {
    if (!this.index.has(t.name)) throw new CheckpointError(`the checkpoint has no tensor ${t.name}`)
    this.shapes.set(t.name, t.shape)
    if (storage === 'lazy') return 0
    const before = this.bytesRead
    const w = this.readRows(t.name, 0, t.shape[0])
    const [rows, cols] = t.shape
    const s = storage
    this.held.set(
      t.name,
      s === 'f32'
        ? w
        : s === 'int8'
          ? quantizeInt8(w, rows, cols)
          : { bytes: encodeFromFloat32(s === 'f16' ? 'F16' : 'BF16', w), dtype: s === 'f16' ? 'F16' : 'BF16' },
    )
    // Building is not paging: only reads made while running count as bytes read.
    const read = this.bytesRead - before
    this.bytesRead = before
    return read
  }

  /** Host bytes the store holds (0 for lazy storage). */
  get hostBytes(): number {
    let n = 0
    for (const h of this.held.values()) {
      if (h instanceof Float32Array) n += h.byteLength
      else if ('q' in h) n += h.q.byteLength + h.scale.byteLength
      else n += h.bytes.byteLength
    }
    return n
  }

  has(name: string): boolean {
    return this.shapes.has(name)
  }

  /** Rows [from, to) of a matrix as float32 (the whole matrix by default). */
  matrix(name: string, rows?: [number, number]): Float32Array {
    const shape = this.shape(name)
    const [from, to] = rows ?? [0, shape[0]]
    const h = this.held.get(name)
    const cols = shape[1]
    if (!h) return this.readRows(name, from, to - from)
    if (h instanceof Float32Array) return from === 0 && to === shape[0] ? h : h.slice(from * cols, to * cols)
    if ('q' in h) return dequantizeInt8({ q: h.q.subarray(from * cols, to * cols), scale: h.scale.subarray(from, to) }, to - from, cols)
    return decodeToFloat32(h.dtype, h.bytes.subarray(from * cols * 2, to * cols * 2))
  }

  /** Rows `ids` (any order, repeats allowed) of a matrix, gathered into (ids.length, cols) float32. */
  gather(name: string, ids: Int32Array): Float32Array {
    const [rows, cols] = this.shape(name)
    const out = new Float32Array(ids.length * cols)
    const seen = new Map<number, Float32Array>()
    ids.forEach((id, i) => {
      if (!(id >= 0 && id < rows)) throw new RangeError(`token id ${id} is out of range for a vocabulary of ${rows}`)
      let row = seen.get(id)
      if (!row) seen.set(id, (row = this.matrix(name, [id, id + 1])))
      out.set(row, i * cols)
    })
    return out
  }

  private shape(name: string): [number, number] {
    const s = this.shapes.get(name)
    if (!s) throw new Error(`the host store holds no ${name}`)
    return s
  }

  /** Rows read from the checkpoint file, decoded and checked for NaN/Inf. */
  private readRows(name: string, from: number, count: number): Float32Array {
    const header = this.index.get(name)!
    const info = header.tensors.get(name)!
    const cols = info.shape.length === 2 ? info.shape[1] : info.shape.slice(1).reduce((a, b) => a * b, 1)
    const size = DTYPE_SIZES[info.dtype]
    if (!['F32', 'F16', 'BF16'].includes(info.dtype))
      throw new CheckpointError(`${header.file}: tensor "${name}" has dtype ${info.dtype}; weights must be F32, F16 or BF16`)
    const bytes = readTensorRange(header, name, from * cols * size, count * cols * size)
    this.bytesRead += bytes.byteLength
    const data = decodeToFloat32(info.dtype, bytes)
    // Checked once: a paged weight is read again on every miss, and the check costs as much as the decoding.
    const key = `${name}:${from}:${count}`
    if (this.checked.has(key)) return data
    const bad = nonFinite(data)
    if (bad.count > 0)
      throw new CheckpointError(
        `${header.file}: tensor "${name}" holds ${bad.count} NaN or infinite value(s) in rows ${from}..${from + count - 1}; the checkpoint is damaged`,
      )
    this.checked.add(key)
    return data
  }

  /** Row ranges already read and found finite. */
  private readonly checked = new Set<string>()
}
