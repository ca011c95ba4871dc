import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach } from 'vitest'

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/data')
export const LAYOUTS = join(FIXTURES, 'layouts')
/** Byte-level BPE, ChatML special tokens, a chat_template; eos <|im_end|>, no bos. */
export const CHATML_MODEL = join(FIXTURES, 'models/tiny-chatml')
/** SentencePiece-style BPE (Metaspace "first", byte fallback), <s>/</s>, no chat_template. */
export const BASE_MODEL = join(FIXTURES, 'models/tiny-base')

const temps: string[] = []
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true })
})

/** A temporary folder removed after the test. */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'moe-data-'))
  temps.push(dir)
  return dir
}

export async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const x of iterable) out.push(x)
  return out
}
