/**
 * A model split into the pieces the planner places and the cache pages: units of weights that
 * are used together (an expert's three matrices, a layer's attention projections, a dense MLP, a
 * shared expert, a vocabulary chunk of lm_head), the small tensors that always stay on the device
 * (norms, routers, biases), and the embedding (on the device, or its rows gathered from the host).
 */
import { expertProjNames, isSparseLayer, moePrefix, paramSpecs, type MoeConfig, type ParamSpec } from '../../shared/modelConfig'

export type UnitKind = 'attention' | 'mlp' | 'shared' | 'expert' | 'head'

/** One matrix of a unit: a whole 2-D tensor, or (lm_head chunks) a range of its rows. */
export interface UnitPart {
  name: string
  /** The shape on the device: [rows, cols]. */
  shape: [number, number]
  /** Rows [from, to) of the source tensor (lm_head chunks); the whole tensor when absent. */
  rows?: [number, number]
}

export interface Unit {
  id: string
  kind: UnitKind
  layer?: number
  expert?: number
  parts: UnitPart[]
  /** Float32 device bytes. */
  bytes: number
}

const bytesOf = (parts: UnitPart[]): number => parts.reduce((a, p) => a + p.shape[0] * p.shape[1] * 4, 0)

/** The tensor lm_head reads: the embedding when tied. */
export function headTensor(c: MoeConfig): string {
  return c.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'
}

/**
 * lm_head is computed in vocabulary chunks of at most this many float32 bytes, resident or paged
 * alike: its backward (a sum over the vocabulary) then adds the same partial sums in the same
 * order either way, so a paged model's gradients are bit-identical to the resident one's. 64 MiB
 * is below every WebGPU device's binding limit (at least 128 MiB).
 */
let headChunkBytes = 64 * 2 ** 20

/** Rows of lm_head per chunk (at least one row). */
export function headChunkRows(c: MoeConfig): number {
  return Math.max(1, Math.min(c.vocabSize, Math.floor(headChunkBytes / (c.hiddenSize * 4))))
}

/** Sets the chunk size (tests use small ones to exercise chunking on tiny models); returns the previous. */
export function setHeadChunkBytes(bytes: number): number {
  const before = headChunkBytes
  headChunkBytes = bytes
  return before
}

/** Every pageable unit of a model; lm_head cut into chunks of headChunkRows vocabulary rows. */
export function modelUnits(c: MoeConfig): Unit[] {
  const chunkRows = headChunkRows(c)
  const H = c.hiddenSize
  const q = c.numHeads * c.headDim
  const kv = c.numKvHeads * c.headDim
  const out: Unit[] = []
  const unit = (id: string, kind: UnitKind, parts: UnitPart[], layer?: number, expert?: number): void =>
    void out.push({
      id,
      kind,
      parts,
      bytes: bytesOf(parts),
      ...(layer !== undefined && { layer }),
      ...(expert !== undefined && { expert }),
    })
  for (let i = 0; i < c.numLayers; i++) {
    const a = `model.layers.${i}.self_attn`
    unit(
      `attention:${i}`,
      'attention',
      [
        { name: `${a}.q_proj.weight`, shape: [q, H] },
        { name: `${a}.k_proj.weight`, shape: [kv, H] },
        { name: `${a}.v_proj.weight`, shape: [kv, H] },
        { name: `${a}.o_proj.weight`, shape: [H, q] },
      ],
      i,
    )
    if (isSparseLayer(c, i)) {
      const I = c.expertIntermediateSize
      for (let e = 0; e < c.numExperts; e++) {
        const [g, u, d] = expertProjNames(c, i, e)
        unit(
          `expert:${i}:${e}`,
          'expert',
          [
            { name: g, shape: [I, H] },
            { name: u, shape: [I, H] },
            { name: d, shape: [H, I] },
          ],
          i,
          e,
        )
      }
      if (c.sharedExpertIntermediateSize > 0) {
        const S = c.sharedExpertIntermediateSize
        const se = `${moePrefix(c, i)}.shared_expert`
        unit(
          `shared:${i}`,
          'shared',
          [
            { name: `${se}.gate_proj.weight`, shape: [S, H] },
            { name: `${se}.up_proj.weight`, shape: [S, H] },
            { name: `${se}.down_proj.weight`, shape: [H, S] },
          ],
          i,
        )
      }
    } else {
      const m = `model.layers.${i}.mlp`
      const I = c.intermediateSize
      unit(
        `mlp:${i}`,
        'mlp',
        [
          { name: `${m}.gate_proj.weight`, shape: [I, H] },
          { name: `${m}.up_proj.weight`, shape: [I, H] },
          { name: `${m}.down_proj.weight`, shape: [H, I] },
        ],
        i,
      )
    }
  }
  const V = c.vocabSize
  const rows = Math.max(1, Math.min(V, chunkRows))
  for (let r = 0, n = 0; r < V; r += rows, n++) {
    const to = Math.min(V, r + rows)
    unit(`head:${n}`, 'head', [{ name: headTensor(c), shape: [to - r, H], rows: [r, to] }])
  }
  return out
}

/** Tensors never paged: norms, routers, biases, q/k norms, shared-expert gates (small, used every token). */
export function smallSpecs(c: MoeConfig): ParamSpec[] {
  const paged = new Set(modelUnits(c).flatMap((u) => u.parts.map((p) => p.name)))
  return paramSpecs(c).filter((s) => !paged.has(s.name) && s.kind !== 'embed')
}

/** The unit holding hub tensor `name` (not for lm_head chunks: they are found by row). */
export function unitIndex(units: Unit[]): Map<string, { unit: Unit; part: number }> {
  const out = new Map<string, { unit: Unit; part: number }>()
  for (const u of units) if (u.kind !== 'head') u.parts.forEach((p, part) => out.set(p.name, { unit: u, part }))
  return out
}
