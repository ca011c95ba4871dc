/**
 * A reply's text as its tokens arrive. A byte-level tokenizer (Qwen, Mixtral's byte fallback)
 * can split one character's UTF-8 bytes over several tokens: the reply decoded after the first
 * of them ends in U+FFFD, which was sent as the new text and never taken back, and the character
 * itself was lost once its last byte came ("I��stoot" in the terminal). Text ending in U+FFFD is
 * held back until the character completes; what is still U+FFFD when the reply ends (bytes that
 * never form a character) is the reply's: `text` holds it, and `restOf` says what of it was not sent.
 */
export class TokenTextStream {
  private readonly ids: number[] = []
  private sent = ''

  constructor(private readonly decode: (ids: number[]) => string) {}

  /** Adds a token; returns the text it settles (possibly '', while a character is incomplete). */
  push(id: number): string {
    this.ids.push(id)
    const settled = this.decode(this.ids).replace(/\uFFFD+$/, '')
    if (settled.length <= this.sent.length) return ''
    const delta = settled.slice(this.sent.length)
    this.sent = settled
    return delta
  }

  /** The whole reply as decoded. */
  get text(): string {
    return this.ids.length ? this.decode(this.ids) : ''
  }

  /** The text sent so far. */
  get streamed(): string {
    return this.sent
  }
}

/** What `full` adds to the text already streamed (a reply's held-back end, at its end). */
export function restOf(full: string, streamed: string): string {
  return full.startsWith(streamed) ? full.slice(streamed.length) : ''
}
