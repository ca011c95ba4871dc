/**
 * A reply's tokens and their routing, packed for a saved conversation and unpacked when it is
 * reopened (SavedTokens in chat.ts). Unpacking trusts nothing: a conversation file may have been
 * edited or written by an older version, and a reply whose saved tokens do not spell its text, or
 * whose routing is malformed, reopens as plain text rather than as a wrong routing.
 */
import type { ConversationMessage, SavedPiece, SavedTokens, TokenRouting } from './chat'

/** A token of a reply as the chat shows it: its text, and its routing once it arrived. */
export interface RoutedPiece {
  text: string
  routing: TokenRouting | null
}

const round4 = (x: number): number => Math.round(x * 1e4) / 1e4

/**
 * The pieces of a reply in saved form; undefined where there is nothing to keep (no pieces).
 * A token whose routing lists other layers than the first routed token's keeps its text only.
 */
export function packTokens(pieces: readonly RoutedPiece[]): SavedTokens | undefined {
  if (!pieces.length) return undefined
  const layers = pieces.find((p) => p.routing)?.routing?.layers.map((l) => l.layer) ?? []
  const sameLayers = (r: TokenRouting): boolean => r.layers.length === layers.length && r.layers.every((l, i) => l.layer === layers[i])
  return {
    layers,
    pieces: pieces.map(({ text, routing: r }): SavedPiece => {
      if (!r || !sameLayers(r)) return { text }
      return {
        text,
        position: r.position,
        token: r.token,
        experts: r.layers.map((l) => [...l.experts]),
        weights: r.layers.map((l) => l.weights.map(round4)),
      }
    }),
  }
}

const isInt = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0
const isNumbers = (x: unknown, ok: (v: unknown) => boolean): x is number[] => Array.isArray(x) && x.every(ok)

/**
 * The pieces of a saved reply whose text is `content`; null where the saved tokens are malformed
 * or do not spell the content (the reply then shows as text, without routing).
 */
export function unpackTokens(saved: unknown, content: string): RoutedPiece[] | null {
  if (typeof saved !== 'object' || saved === null) return null
  const { layers, pieces } = saved as Partial<SavedTokens>
  if (!isNumbers(layers, isInt) || !Array.isArray(pieces)) return null
  const out: RoutedPiece[] = []
  for (const p of pieces as unknown[]) {
    if (typeof p !== 'object' || p === null || typeof (p as SavedPiece).text !== 'string') return null
    const { text, position, token, experts, weights } = p as SavedPiece
    if (position === undefined && token === undefined && experts === undefined && weights === undefined) {
      out.push({ text, routing: null })
      continue
    }
    const perLayer = (x: unknown, ok: (v: unknown) => boolean): x is number[][] =>
      Array.isArray(x) && x.length === layers.length && x.every((l) => isNumbers(l, ok))
    if (!isInt(position) || !isInt(token) || !perLayer(experts, isInt) || !perLayer(weights, Number.isFinite)) return null
    if (experts.some((e, i) => e.length !== weights[i].length)) return null
    out.push({
      text,
      routing: { position, token, layers: layers.map((layer, i) => ({ layer, experts: experts[i], weights: weights[i] })) },
    })
  }
  return out.map((p) => p.text).join('') === content ? out : null
}

/**
 * The most bytes of routing one saved conversation keeps: the server takes requests of up to
 * 1 MiB, and the text of the conversation must always fit beside it.
 */
export const SAVED_ROUTING_MAX_BYTES = 512 * 1024

/**
 * The pieces of a prompt as the chat shows it (its tokens' text, and the routing whose position is
 * the token's index).
 */
export function promptPieces(prompt: { tokens: readonly string[]; routing: readonly TokenRouting[] }): RoutedPiece[] {
  const byPosition = new Map(prompt.routing.map((r) => [r.position, r]))
  return prompt.tokens.map((text, i) => ({ text, routing: byPosition.get(i) ?? null }))
}

/** A saved prompt as the chat shows it; null where it is malformed (the reply then has no prompt view). */
export function unpackPrompt(saved: unknown): { tokens: string[]; routing: TokenRouting[] } | null {
  const pieces = (saved as Partial<SavedTokens> | null)?.pieces
  if (!Array.isArray(pieces) || !pieces.every((p) => typeof (p as SavedPiece | null)?.text === 'string')) return null
  const out = unpackTokens(saved, (pieces as SavedPiece[]).map((p) => p.text).join(''))
  return out && { tokens: out.map((p) => p.text), routing: out.flatMap((p) => (p.routing ? [p.routing] : [])) }
}

/**
 * Drops the saved routing of the earliest replies (of either side) until the rest is at most
 * `maxBytes` of JSON: the newest replies keep theirs, and every reply keeps its text. A reply's
 * saved prompt is kept after its own routing and before the routing of older replies.
 */
export function keepNewestRouting(sides: ConversationMessage[][], maxBytes = SAVED_ROUTING_MAX_BYTES): void {
  const routed = sides
    .flatMap((messages) =>
      messages.flatMap((m, at) => [
        ...(m.tokens ? [{ m, at, key: 'tokens' as const }] : []),
        ...(m.prompt ? [{ m, at: at - 0.5, key: 'prompt' as const }] : []),
      ]),
    )
    .sort((a, b) => b.at - a.at)
  let total = 0
  for (const { m, key } of routed) {
    total += JSON.stringify(m[key]).length
    if (total > maxBytes) delete m[key]
  }
}
