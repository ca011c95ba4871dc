/**
 * A filesystem-safe part of a folder name from a display name: lower-case ASCII letters and digits
 * between single hyphens, at most `max` characters, cut between words where the limit falls
 * inside one ("…-run-c9cb6d-fine-tuned" became "…-fine-tune"); `fallback` where nothing is left.
 */
export function slug(name: string, fallback: string, max = 40): string {
  const full = name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '') // the accents NFKD split off: "café" is "cafe", not "cafe-"
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
  let s = full.slice(0, max)
  // Cut inside a word: back to the hyphen before it, unless that throws away most of the name
  // (a cut just after a hyphen goes back to it too: no name ends in one).
  if (full.length > max && full[max] !== '-') {
    const at = s.lastIndexOf('-')
    if (at >= max / 2) s = s.slice(0, at)
  }
  return s === '' ? fallback : s
}
