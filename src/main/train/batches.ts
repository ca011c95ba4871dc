/**
 * Batching: a deterministic shuffle per epoch from the seed, padding (right, labels −100) or
 * packing into full-length rows, and a data position that checkpoints save and resume restores.
 */
import type { Batch } from '../engine/objective'
import { Rng } from '../engine/ops'

/** One tokenised training example (HF convention: labels −100 where no loss is taken). */
export interface Example {
  input_ids: number[]
  labels: number[]
}

/** Where the data stream stands: epoch and index into that epoch's order. */
export interface DataPosition {
  epoch: number
  index: number
}

/** A permutation of 0..n-1 fixed by (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  const rng = new Rng((seed * 0x9e3779b1 + epoch * 0x85ebca6b + 1) >>> 0)
  const order = Array.from({ length: n }, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1))
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  return order
}

/** Pads examples on the right to their longest length (labels −100 on padding). */
export function padBatch(examples: Example[], padId: number): Batch {
  const T = Math.max(...examples.map((e) => e.input_ids.length))
  return {
    inputIds: examples.map((e) => [...e.input_ids, ...new Array<number>(T - e.input_ids.length).fill(padId)]),
    labels: examples.map((e) => [...e.labels, ...new Array<number>(T - e.labels.length).fill(-100)]),
    tokens: examples.reduce((a, e) => a + e.input_ids.length, 0),
    lengths: examples.map((e) => e.input_ids.length),
  }
}

/** Packs examples one after another into rows of exactly maxLength tokens (the last row padded). */
export function packRows(examples: Example[], maxLength: number, padId: number): Example[] {
  const rows: Example[] = []
  let ids: number[] = []
  let labels: number[] = []
  for (const e of examples) {
    for (let i = 0; i < e.input_ids.length; i++) {
      ids.push(e.input_ids[i])
      // the first token of an example is never a target of the previous one
      labels.push(i === 0 ? -100 : e.labels[i])
      if (ids.length === maxLength) {
        rows.push({ input_ids: ids, labels })
        ids = []
        labels = []
      }
    }
  }
  if (ids.length > 1)
    rows.push({
      input_ids: [...ids, ...new Array<number>(maxLength - ids.length).fill(padId)],
      labels: [...labels, ...new Array<number>(maxLength - ids.length).fill(-100)],
    })
  return rows
}

/** Hands out batches in a deterministic order across epochs, resumable from a position. */
export class BatchStream {
  private order: number[]
  constructor(
    private readonly examples: Example[],
    private readonly batchSize: number,
    private readonly seed: number,
    private readonly padId: number,
    public position: DataPosition = { epoch: 0, index: 0 },
  ) {
    if (examples.length === 0) throw new Error('the training split has no examples')
    this.order = epochOrder(examples.length, seed, position.epoch)
  }

  /** Batches in one epoch (the last one may be short). */
  get batchesPerEpoch(): number {
    return Math.ceil(this.examples.length / this.batchSize)
  }

  next(): Batch {
    if (this.position.index >= this.examples.length) {
      this.position = { epoch: this.position.epoch + 1, index: 0 }
      this.order = epochOrder(this.examples.length, this.seed, this.position.epoch)
    }
    const idx = this.order.slice(this.position.index, this.position.index + this.batchSize)
    this.position = { ...this.position, index: this.position.index + idx.length }
    return padBatch(
      idx.map((i) => this.examples[i]),
      this.padId,
    )
  }
}

/** Fixed evaluation batches in data order. */
export function evalBatches(examples: Example[], batchSize: number, padId: number, limit = 0): Batch[] {
  const out: Batch[] = []
  for (let i = 0; i < examples.length && (limit === 0 || out.length < limit); i += batchSize)
    out.push(padBatch(examples.slice(i, i + batchSize), padId))
  return out
}
