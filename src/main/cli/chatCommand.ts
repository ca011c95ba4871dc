/**
 * `moe-workbench chat --model DIR`: an interactive chat in the terminal, streaming each reply and
 * summarising which experts it used, with optional expert offloading.
 *
 *   /system TEXT   set the system prompt (and start over)
 *   /reset         forget the conversation
 *   /quit          leave (Ctrl-D too); Ctrl-C stops the current reply
 */
import { createInterface } from 'node:readline'
import type { ChatMessage } from '../../shared/dataset'
import type { TokenRouting } from '../../shared/chat'
import { loadChatTemplate } from '../data/template'
import { loadTokenizer } from '../data/tokenizer'
import { loadModel } from '../engine/checkpoint'
import { generateAsync } from '../engine/generate'
import { formatOffloadStats, offloadFromFlags, requireModelDir, samplingFromFlags } from './commands'
import { backendFromFlag, UsageError, type CliIo, type ParsedValues } from './util'

/** Per layer, the experts that took most of a reply's tokens: "layer 0: e3 41%, e1 27%". */
export function routingSummary(routing: TokenRouting[], top = 3): string[] {
  const perLayer = new Map<number, Map<number, number>>()
  for (const t of routing)
    for (const l of t.layers) {
      const m = perLayer.get(l.layer) ?? new Map<number, number>()
      perLayer.set(l.layer, m)
      for (const e of l.experts) m.set(e, (m.get(e) ?? 0) + 1)
    }
  return [...perLayer].map(([layer, m]) => {
    const total = [...m.values()].reduce((a, b) => a + b, 0)
    const best = [...m].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, top)
    return `layer ${layer}: ${best.map(([e, c]) => `e${e} ${Math.round((100 * c) / total)}%`).join(', ')}`
  })
}

export async function chatCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const dir = requireModelDir(values)
  const maxText = typeof values['max-new-tokens'] === 'string' ? values['max-new-tokens'] : '256'
  const maxNewTokens = Number(maxText)
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new UsageError(`--max-new-tokens: "${maxText}" is not a positive integer`)
  const sampling = samplingFromFlags(values)
  if (!sampling.greedy && sampling.temperature === undefined) sampling.temperature = 0.8
  const offload = offloadFromFlags(values)
  const backend = await backendFromFlag(values, io)
  const tokenizer = await loadTokenizer(dir)
  const template = await loadChatTemplate(dir)
  const model = loadModel(dir, { offload })
  const input = io.input ?? process.stdin
  const interactive = io.input === undefined && process.stdin.isTTY === true
  const rl = createInterface({ input, terminal: interactive })
  let system = typeof values.system === 'string' ? values.system : undefined
  let history: ChatMessage[] = []
  let current: AbortController | undefined
  const onSigint = (): void => {
    if (current) current.abort()
    else rl.close()
  }
  process.on('SIGINT', onSigint)
  io.err(
    `chatting with ${dir} on ${backend} (${template.source === 'model' ? "the model's chat template" : 'the default chat template'}); /system TEXT, /reset, /quit`,
  )
  const write = io.write ?? ((s: string) => process.stdout.write(s))
  try {
    if (interactive) write('you> ')
    for await (const raw of rl) {
      const line = raw.trim()
      if (line === '/quit' || line === '/exit') break
      if (line === '/reset' || line.startsWith('/system')) {
        if (line.startsWith('/system')) system = line.slice('/system'.length).trim() || undefined
        history = []
        io.err(system ? `system prompt set; conversation cleared` : 'conversation cleared')
      } else if (line !== '') {
        history.push({ role: 'user', content: line })
        const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...history] : history
        const promptIds = tokenizer.encode(template.render(messages, true))
        const room = model.config.maxPositionEmbeddings - promptIds.length
        if (room <= 0) {
          history.pop()
          io.err(`the conversation fills the model's ${model.config.maxPositionEmbeddings} positions; /reset to start over`)
        } else {
          const newTokens: number[] = []
          const routing: TokenRouting[] = []
          let text = ''
          current = new AbortController()
          write('model> ')
          const eos = tokenizer.eosId
          const r = await generateAsync(model, promptIds, {
            maxNewTokens: Math.min(maxNewTokens, room),
            sampling,
            stopTokens: eos === null ? undefined : [eos],
            signal: current.signal,
            routeLastToken: true,
            // the first forward routes the prompt; each later one, the token chosen before it
            onRouting: (p) => routing.push(...p.filter((x) => x.position >= promptIds.length)),
            onToken: (t) => {
              newTokens.push(t)
              const full = tokenizer.decode(newTokens, true)
              write(full.slice(text.length))
              text = full
            },
          })
          current = undefined
          write('\n')
          history.push({ role: 'assistant', content: text })
          const tps = r.newTokens.length > 1 ? (r.newTokens.length - 1) / Math.max(r.decodeMs / 1000, 1e-9) : 0
          io.err(
            `[${r.newTokens.length} tokens, ${tps.toFixed(1)} tokens/s, stopped by ${r.stoppedBy}] experts: ${routingSummary(routing).join('; ')}`,
          )
          if (model.offload) for (const l of formatOffloadStats(model.offload.cache.stats())) io.err(l)
        }
      }
      if (interactive) write('you> ')
    }
    return 0
  } finally {
    process.off('SIGINT', onSigint)
    rl.close()
    model.dispose()
  }
}
