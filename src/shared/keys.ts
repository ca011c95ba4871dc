/**
 * "Did you mean": the closest valid key to a mistyped one, for errors about unknown fields
 * (`--set maxStep=3` → maxSteps, `optimizer.learningRate` → lr). Pure, shared by every host.
 */

/** Names other tools use for a setting, normalised (lower case, no '_' or '-'), to the key here. */
const ALIASES: Record<string, string> = {
  learningrate: 'lr',
  lr: 'lr',
  numtrainepochs: 'epochs',
  numepochs: 'epochs',
  epoch: 'epochs',
  maxstep: 'maxSteps',
  steps: 'maxSteps',
  warmup: 'warmupSteps',
  warmupratio: 'warmupSteps',
  gradientaccumulationsteps: 'gradAccumulation',
  gradientaccumulation: 'gradAccumulation',
  perdevicetrainbatchsize: 'batchSize',
  microbatchsize: 'batchSize',
  maxgradnorm: 'gradClip',
  cutofflen: 'maxLength',
  sequencelen: 'maxLength',
  loraalpha: 'alpha',
  lorar: 'rank',
  lorarank: 'rank',
  r: 'rank',
  loradropout: 'dropout',
  loratarget: 'targets',
  loratargetmodules: 'targets',
  routerauxlosscoef: 'auxLossCoef',
  moeauxlosscoef: 'auxLossCoef',
  routerzlosscoef: 'zLossCoef',
  capacityfactor: 'capacityFactorTrain',
}

const norm = (s: string): string => s.toLowerCase().replace(/[_-]/g, '')

/** Edit distance with adjacent transpositions counted as one edit (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1)
    }
  return d[a.length][b.length]
}

/** The valid key `key` most likely meant, or undefined when none is close. */
export function closestKey(key: string, valid: readonly string[]): string | undefined {
  const n = norm(key)
  const alias = ALIASES[n]
  if (alias && valid.includes(alias)) return alias
  let best: string | undefined
  let bestD = Infinity
  for (const v of valid) {
    const d = editDistance(n, norm(v))
    if (d < bestD) {
      bestD = d
      best = v
    }
  }
  // Close enough: a typo or two, relative to the length.
  return best !== undefined && bestD <= Math.max(1, Math.floor(Math.min(n.length, norm(best).length) / 3)) ? best : undefined
}

/** The keys an object schema accepts at `path` (zod 4: through defaults, optionals and nullables). */
export function keysAt(schema: unknown, path: readonly PropertyKey[]): string[] | undefined {
  let s = unwrap(schema)
  for (const p of path) {
    const shape = (s as { shape?: Record<string, unknown> } | undefined)?.shape
    if (!shape || typeof p !== 'string' || !(p in shape)) return undefined
    s = unwrap(shape[p])
  }
  const shape = (s as { shape?: Record<string, unknown> } | undefined)?.shape
  return shape ? Object.keys(shape) : undefined
}

function unwrap(s: unknown): unknown {
  let cur = s as { unwrap?: () => unknown; def?: { innerType?: unknown; type?: string } } | undefined
  for (let i = 0; i < 8 && cur; i++) {
    const t = cur.def?.type
    if ((t === 'default' || t === 'optional' || t === 'nullable' || t === 'prefault') && cur.def?.innerType !== undefined)
      cur = cur.def.innerType as typeof cur
    else break
  }
  return cur
}

/**
 * The valid keys that start as `key` does, a typo aside (at least 4 characters typed): a key cut
 * short ("capacityFactr") is far from the whole one by edit distance; at most 3, else none.
 */
export function keysStartingLike(key: string, valid: readonly string[]): string[] {
  const n = norm(key)
  if (n.length < 4) return []
  const found = valid.filter((v) => {
    const w = norm(v)
    return w.length > n.length && editDistance(n, w.slice(0, n.length)) <= 1
  })
  return found.length <= 3 ? found : []
}

/** "unknown field "maxStep" (did you mean "maxSteps"?)" for a zod unrecognized_keys issue. */
export function unknownKeysMessage(schema: unknown, path: readonly PropertyKey[], keys: readonly string[]): string {
  const valid = keysAt(schema, path) ?? []
  return keys
    .map((k) => {
      const close = closestKey(k, valid)
      const hints = close ? [close] : keysStartingLike(k, valid)
      return `unknown field ${JSON.stringify(k)}${hints.length ? ` (did you mean ${hints.map((h) => JSON.stringify(h)).join(' or ')}?)` : valid.length ? `; valid fields here: ${valid.join(', ')}` : ''}`
    })
    .join('; ')
}
