/**
 * Evaluation: does the model answer? For each row with an answer (a chat's last assistant turn,
 * or a completion), generate greedily from the prompt (the model's chat template, stop at the end
 * of the turn) and score the reply against the expected answer: exact match after normalisation
 * (case, surrounding whitespace and punctuation, inner whitespace), token-level F1 (SQuAD's), and
 * the loss of the expected answer given the prompt. Runs with progress and cancel.
 */
import { rowKind, type ChatMessage, type NormalizedRow } from '../../shared/dataset'
import type { EvalItem, EvalReport, EvalSplit } from '../../shared/runs'
import { deviceLock, readsSync } from '../engine/device'
import { generate, generateAsync } from '../engine/generate'
import type { MoeModel } from '../engine/model'
import { objectiveValues } from '../engine/objective'
import type { Weights } from '../engine/ops'
import { pacer, type TaskHooks } from '../engine/tasks'
import { encodeExample } from '../data/encode'
import type { ChatTemplate } from '../data/template'
import type { ModelTokenizer } from '../data/tokenizer'

/** Around an answer: whitespace, quotes, brackets, sentence punctuation and markdown emphasis. */
const LEADING = /^[\s.,;:!?…'"`‘’“”«»()[\]{}¿¡*_~]+/u
const TRAILING = /[\s.,;:!?…'"`‘’“”«»()[\]{}*_~]+$/u

/**
 * Lower case, inner whitespace collapsed, and around the answer whitespace, quotes, brackets,
 * sentence punctuation (.,;:!?…) and markdown emphasis (* _ ~) removed. Signs, currency, %, # and emoji stay: "-5", "$5" and
 * "3%" are not "5" or "3", and an empty reply is not an answer of symbols.
 */
export function normalizeAnswer(s: string): string {
  return s.normalize('NFKC').toLowerCase().replace(/\s+/g, ' ').replace(LEADING, '').replace(TRAILING, '')
}

/**
 * Words of a normalised answer, for F1: split at whitespace, quotes and brackets, sentence
 * punctuation before a space, and a hyphen between letters (New-York); "3.14", "-5" and "3%" stay whole.
 */
function words(s: string): string[] {
  return normalizeAnswer(s)
    .replace(/(\p{L})[-‐–](?=\p{L})/gu, '$1 ')
    .replace(/[.,;:!?…]+(?=\s|$)/gu, ' ')
    .replace(/['"`‘’“”«»()[\]{}]/gu, ' ')
    .split(' ')
    .filter(Boolean)
}

export function exactMatch(generated: string, expected: string): boolean {
  return normalizeAnswer(generated) === normalizeAnswer(expected)
}

/** Token-level F1 of the two answers' words (bag of words with counts); 1 when both are empty. */
export function tokenF1(generated: string, expected: string): number {
  const g = words(generated)
  const e = words(expected)
  if (g.length === 0 || e.length === 0) return g.length === e.length ? 1 : 0
  const counts = new Map<string, number>()
  for (const w of e) counts.set(w, (counts.get(w) ?? 0) + 1)
  let common = 0
  for (const w of g) {
    const n = counts.get(w) ?? 0
    if (n > 0) {
      common++
      counts.set(w, n - 1)
    }
  }
  if (common === 0) return 0
  const precision = common / g.length
  const recall = common / e.length
  return (2 * precision * recall) / (precision + recall)
}

/**
 * The index of the turn a chat is scored on: its last assistant turn, or the last trained one
 * before its trailing turns of weight 0 (context, never learned, so never the answer); after at
 * least one other turn. -1 for none, or a chat that ends with another role's turn.
 */
function answerTurn(messages: ChatMessage[]): number {
  for (let i = messages.length - 1; i >= 1; i--) {
    if (messages[i].role !== 'assistant') return -1
    if (messages[i].weight !== 0) return i
    i-- // the turn before a context answer: its question, skipped with it
  }
  return -1
}

/** Whether a row has an answer to score: a chat with a trained assistant turn after another turn, or a prompt/completion row. */
export function answerable(row: NormalizedRow): boolean {
  switch (rowKind(row)) {
    case 'chat':
      return answerTurn((row as { messages: ChatMessage[] }).messages) >= 1
    case 'completion':
      return true
    default:
      return false
  }
}

/** A row as a question with an answer: what to generate from and what to expect; null when it has none. */
export function questionOf(
  row: NormalizedRow,
  template: ChatTemplate,
): { prompt: string; shown: string; expected: string; row: NormalizedRow } | null {
  switch (rowKind(row)) {
    case 'chat': {
      if (!answerable(row)) return null
      const messages = (row as { messages: ChatMessage[] }).messages
      const last = answerTurn(messages)
      const context = messages.slice(0, last)
      // The question as a reader tells rows apart: the last user turn, after the first where the
      // conversation has more (every row of a tutoring chat ended "Go on.").
      const users = context.filter((m) => m.role === 'user')
      const shown = users.length > 1 ? `${users[0].content} … ${users[users.length - 1].content}` : (users[0]?.content ?? '')
      return {
        prompt: template.render(context, true),
        shown,
        expected: messages[last].content,
        row: { messages: messages.slice(0, last + 1) },
      }
    }
    case 'completion': {
      const r = row as { prompt: string; completion: string }
      return { prompt: r.prompt, shown: r.prompt, expected: r.completion, row }
    }
    default:
      return null
  }
}

/** What an evaluation runs on: a loaded model (with LoRA adapters as a weight source) and its tokenizer. */
export interface EvalTarget {
  model: MoeModel
  weights?: Weights
  tokenizer: ModelTokenizer
  template: ChatTemplate
  stopIds: number[]
}

export interface EvalOptions {
  split: EvalSplit
  /** Name of the model for the report (a folder, or "run X, step N"). */
  label: string
  /** Longest reply generated (default: twice the expected answer's tokens plus 8, at most 64). */
  maxNewTokens?: number
  hooks?: TaskHooks
  stage?: { label: string; stage: number; stages: number }
}

/** Scores the target on the rows that have an answer (the others are counted as skipped). */
export async function evaluate(target: EvalTarget, rows: NormalizedRow[], opts: EvalOptions): Promise<EvalReport> {
  const started = performance.now()
  const { model, weights, tokenizer, template, stopIds } = target
  const questions = rows.map((r) => questionOf(r, template)).filter((q): q is NonNullable<typeof q> => q !== null)
  const pace = pacer(opts.hooks?.signal, `evaluating ${opts.label}`)
  const stage = opts.stage ?? { label: `Evaluating ${opts.label}`, stage: 1, stages: 1 }
  const items: EvalItem[] = []
  let lossSum = 0
  let lossN = 0
  for (const q of questions) {
    opts.hooks?.onProgress?.({ ...stage, done: items.length, total: questions.length, unit: 'items' })
    await pace()
    const promptIds = tokenizer.encode(q.prompt)
    const expectedTokens = tokenizer.encode(q.expected, false).length
    const room = model.config.maxPositionEmbeddings - promptIds.length
    const maxNewTokens = Math.min(opts.maxNewTokens ?? Math.min(64, 2 * expectedTokens + 8), room)
    let generated = ''
    if (maxNewTokens > 0) {
      const gopts = { maxNewTokens, sampling: { greedy: true }, stopTokens: stopIds, weights, signal: opts.hooks?.signal }
      const r = readsSync()
        ? await deviceLock.run(async () => generate(model, promptIds, gopts))
        : await generateAsync(model, promptIds, gopts)
      generated = tokenizer.decode(
        r.newTokens.filter((t) => !stopIds.includes(t)),
        true,
      )
    }
    // The expected answer's loss given the prompt (teacher forcing), as training measures it.
    const example = encodeExample(q.row, tokenizer, template, { maskPrompt: true, maxLength: model.config.maxPositionEmbeddings })
    let loss: number | null = null
    if (example && example.labels.some((l) => l >= 0)) {
      const parts = await deviceLock.run(() =>
        objectiveValues(model, { inputIds: [example.input_ids], labels: [example.labels] }, { weights }),
      )
      loss = parts.ce
      lossSum += parts.ce
      lossN++
    }
    items.push({
      prompt: q.shown,
      expected: q.expected,
      generated,
      exact: exactMatch(generated, q.expected),
      f1: tokenF1(generated, q.expected),
      loss,
    })
  }
  opts.hooks?.onProgress?.({ ...stage, done: items.length, total: questions.length, unit: 'items' })
  const n = items.length
  return {
    model: opts.label,
    split: opts.split,
    n,
    skipped: rows.length - questions.length,
    exactMatch: n ? items.filter((i) => i.exact).length / n : 0,
    f1: n ? items.reduce((a, i) => a + i.f1, 0) / n : 0,
    loss: lossN ? lossSum / lossN : null,
    seconds: (performance.now() - started) / 1000,
    items,
  }
}
