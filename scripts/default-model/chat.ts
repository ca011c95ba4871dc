/**
 * Asking a model folder a question the way the chat does: the model's chat template with the
 * generation prompt, greedy decoding until EOS, the answer decoded without special tokens.
 */
import { loadChatTemplate, loadTokenizer, type ChatTemplate, type ModelTokenizer } from '../../src/main/data/index'
import { loadModel } from '../../src/main/engine/checkpoint'
import { generateGreedy } from '../../src/main/engine/generate'
import type { MoeModel } from '../../src/main/engine/model'

export interface ChatModel {
  model: MoeModel
  tokenizer: ModelTokenizer
  template: ChatTemplate
}

/** Loads weights, tokenizer and template; `tokenizerDir` defaults to `dir` (checkpoints have none). */
export async function loadChatModel(dir: string, tokenizerDir = dir): Promise<ChatModel> {
  return { model: loadModel(dir), tokenizer: await loadTokenizer(tokenizerDir), template: await loadChatTemplate(tokenizerDir) }
}

/** The prompt ids of a one-turn chat ending with the assistant marker. */
export function promptIds(m: Omit<ChatModel, 'model'>, prompt: string): number[] {
  return m.tokenizer.encode(m.template.render([{ role: 'user', content: prompt }], true))
}

/** The greedy answer to one user message. */
export function ask(m: ChatModel, prompt: string, maxNewTokens = 40): string {
  const eos = m.tokenizer.eosId
  const r = generateGreedy(m.model, promptIds(m, prompt), { maxNewTokens, stopTokens: eos === null ? [] : [eos] })
  return r.newTokens.length ? m.tokenizer.decode(r.newTokens, true) : ''
}
