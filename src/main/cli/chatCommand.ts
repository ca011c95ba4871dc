/**
 * `moe-workbench chat --model DIR`: an interactive chat in the terminal through the service's
 * chat.send (the same chat turn, template, stop tokens and sampling defaults as the app),
 * streaming each reply and summarising which experts it used, with optional expert offloading.
 *
 *   /system TEXT   set the system prompt (and start over)
 *   /reset         forget the conversation
 *   /quit          leave (Ctrl-D too); Ctrl-C stops the current reply
 *   //TEXT         a message that starts with "/" (another /word is refused as a mistyped command)
 *   """            a message of several lines, up to a line that ends with """ (an Alpaca prompt,
 *                  a pasted paragraph)
 */
import { createInterface } from 'node:readline'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { restOf } from '../engineProcess/textStream'
import { MAX_NEW_TOKENS, type ChatEvent, type ChatFormat, type ChatStats, type TokenRouting } from '../../shared/chat'
import type { ChatMessage } from '../../shared/dataset'
import { formatOffloadStats, offloadFromFlags, requireModelDir, samplingFromFlags, taskProgressLines } from './commands'
import { cliError, openHost } from './host'
import { UsageError, type CliIo, type ParsedValues } from './util'

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

/** What a line (or a block of lines) typed into the chat asks for. */
export type ChatAction =
  | { kind: 'quit' }
  | { kind: 'reset' }
  | { kind: 'system'; text: string | undefined }
  | { kind: 'unknown'; command: string }
  | { kind: 'message'; content: string }

const FENCE = '"""'

/**
 * The chat's input, line by line: commands, one-line messages, and messages of several lines
 * between """ fences (a line that starts with """ opens one, text after the fence its first line;
 * a line that ends with """ closes it; the lines in between are sent as typed, none of them read
 * as a command).
 */
export class ChatInput {
  private block: string[] | null = null

  /** The action a line completes, or null (an empty line, or a line inside a block). */
  feed(raw: string): ChatAction | null {
    const unterminated = raw.replace(/\r$/, '')
    if (this.block !== null) {
      const end = unterminated.trimEnd()
      if (!end.endsWith(FENCE)) {
        this.block.push(unterminated)
        return null
      }
      this.block.push(end.slice(0, -FENCE.length))
      return this.close()
    }
    const line = unterminated.trim()
    if (line.startsWith(FENCE)) {
      const rest = line.slice(FENCE.length)
      // """text""" on one line is a message of one line.
      if (rest.endsWith(FENCE)) return message(rest.slice(0, -FENCE.length))
      this.block = rest === '' ? [] : [rest]
      return null
    }
    if (line === '/quit' || line === '/exit') return { kind: 'quit' }
    if (line === '/reset') return { kind: 'reset' }
    if (line === '/system' || line.startsWith('/system ')) return { kind: 'system', text: line.slice('/system'.length).trim() || undefined }
    if (/^\/\w+(\s|$)/.test(line)) return { kind: 'unknown', command: line.split(/\s/)[0] }
    return message(line.startsWith('//') ? line.slice(1) : line)
  }

  /** Whether a block is open (its lines wait for the closing """). */
  get open(): boolean {
    return this.block !== null
  }

  /** At the end of the input: what an open block held (not sent: it was never closed), else null. */
  unclosed(): string | null {
    const held = this.block
    this.block = null
    return held === null ? null : held.join('\n')
  }

  private close(): ChatAction | null {
    const text = this.block!.join('\n')
    this.block = null
    return message(text)
  }
}

/** A message of `text` with its blank first and last lines and outer spaces trimmed; null when nothing is left. */
function message(text: string): ChatAction | null {
  const content = text.trim()
  return content === '' ? null : { kind: 'message', content }
}

/** One reply's events, gathered by request id (events can arrive before chat.send answers). */
class ReplyStreams {
  private readonly buffered = new Map<string, ChatEvent[]>()
  private readonly handlers = new Map<string, (e: ChatEvent) => void>()

  push(e: ChatEvent): void {
    const h = this.handlers.get(e.requestId)
    if (h) return h(e)
    const list = this.buffered.get(e.requestId) ?? []
    list.push(e)
    this.buffered.set(e.requestId, list)
  }

  follow(requestId: string, handler: (e: ChatEvent) => void): void {
    this.handlers.set(requestId, handler)
    for (const e of this.buffered.get(requestId) ?? []) handler(e)
    this.buffered.delete(requestId)
  }

  end(requestId: string): void {
    this.handlers.delete(requestId)
    // Anything buffered meanwhile belongs to replies nobody follows any more.
    this.buffered.clear()
  }
}

export async function chatCommand(values: ParsedValues, io: CliIo): Promise<number> {
  const dir = requireModelDir(values)
  const maxText = typeof values['max-new-tokens'] === 'string' ? values['max-new-tokens'] : '256'
  const maxNewTokens = Number(maxText)
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new UsageError(`--max-new-tokens: "${maxText}" is not a positive integer`)
  if (maxNewTokens > MAX_NEW_TOKENS)
    throw new UsageError(`--max-new-tokens: ${maxNewTokens} is over the most a reply may take, ${MAX_NEW_TOKENS}`)
  const flags = samplingFromFlags(values)
  // Only what the user set: the engine fills the shared defaults (DEFAULT_SAMPLING) for the rest.
  const sampling = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined && v !== false))
  const offload = offloadFromFlags(values, dir)
  const format = chatFormat(values.format, dir)
  const host = openHost(values, io)
  const streams = new ReplyStreams()
  const loading = taskProgressLines(io)
  host.onEvent((e) => {
    if (e.type.startsWith('chat.')) streams.push(e as ChatEvent)
    else if (e.type === 'task.progress' && e.operation === 'models.load') loading(e.progress)
  })
  const input = io.input ?? process.stdin
  const interactive = io.input === undefined && process.stdin.isTTY === true
  let rl: ReturnType<typeof createInterface> | undefined
  let system = typeof values.system === 'string' ? values.system : undefined
  let history: ChatMessage[] = []
  let current: string | undefined
  // Messages sent, and those that got no reply (an error instead): a script reading the exit
  // status learns of them (it exited 0 after "error: ... does not fit").
  let sent = 0
  let unanswered = 0
  const onSigint = (): void => {
    if (current) void host.api['chat.cancel']({ requestId: current }).catch(() => {})
    else if (rl) rl.close()
    else void host.close().then(() => process.exit(130))
  }
  process.on('SIGINT', onSigint)
  const write = io.write ?? ((s: string) => process.stdout.write(s))
  try {
    const backend = await host.backend()
    io.err(`chatting with ${dir} on ${backend}; /system TEXT, /reset, /quit; ${FENCE} opens a message of several lines, ${FENCE} closes it`)
    // Read lines only now: lines read while the engine started would be lost to the iterator.
    rl = createInterface({ input, terminal: interactive })
    let announced = false
    const reader = new ChatInput()
    const prompt = (): void => void (interactive && write(reader.open ? '... ' : 'you> '))
    prompt()
    for await (const raw of rl) {
      const action = reader.feed(raw)
      if (action?.kind === 'quit') break
      if (action?.kind === 'reset' || action?.kind === 'system') {
        history = []
        if (action.kind === 'system') {
          system = action.text
          io.err(system ? 'system prompt set; conversation cleared' : 'system prompt removed; conversation cleared')
        } else io.err(system ? `conversation cleared (the system prompt stays: ${JSON.stringify(system)})` : 'conversation cleared')
      } else if (action?.kind === 'unknown') {
        // A mistyped command was sent to the model as a message.
        io.err(`unknown command ${action.command}: /system TEXT, /reset, /quit (a message that starts with "/" is written "//…")`)
      } else if (action?.kind === 'message') {
        const content = action.content
        history.push({ role: 'user', content })
        sent++
        const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...history] : history
        let started
        try {
          started = await host.api['chat.send']({
            model: dir,
            messages,
            ...(format === 'plain' && { format }),
            maxNewTokens,
            ...(Object.keys(sampling).length && { sampling }),
            ...(offload && { offload }),
            taskId: `cli-chat-${process.pid}-${history.length}`,
          })
        } catch (e) {
          history.pop()
          const err = cliError(e)
          if (err instanceof UsageError) throw err
          // The service says "start a new one" (the app has a button for it); here that is /reset.
          io.err(`error: ${err.message}${/start a new one/.test(err.message) ? ' (/reset starts a new conversation)' : ''}`)
          unanswered++
          prompt()
          continue
        }
        if (!announced) {
          io.err(
            `template: ${started.template === 'model' ? "the model's chat template" : started.template === 'default' ? 'the default chat template' : 'none: each message as it is (--format plain)'}`,
          )
          announced = true
        }
        current = started.requestId
        write('model> ')
        const routing: TokenRouting[] = []
        const end = await new Promise<{ text: string; stats?: ChatStats; error?: string }>((resolveReply) => {
          let text = ''
          streams.follow(started.requestId, (e) => {
            if (e.type === 'chat.token') {
              write(e.text)
              text += e.text
            } else if (e.type === 'chat.routing') routing.push(e.routing)
            else if (e.type === 'chat.done') {
              write(restOf(e.text, text)) // bytes held back as part of a character that never came
              resolveReply({ text: e.text, stats: e.stats })
            } else if (e.type === 'chat.error') resolveReply({ text, error: e.message })
          })
        })
        streams.end(started.requestId)
        current = undefined
        write('\n')
        if (end.error) {
          history.pop()
          io.err(`error: ${end.error}`)
          unanswered++
        } else {
          history.push({ role: 'assistant', content: end.text })
          const s = end.stats!
          io.err(
            `[${s.newTokens} tokens, ${s.tokensPerSec.toFixed(1)} tokens/s, stopped by ${s.stoppedBy}] experts: ${routingSummary(routing).join('; ')}`,
          )
          if (s.offload) for (const l of formatOffloadStats(s.offload)) io.err(l)
        }
      }
      prompt()
    }
    const unclosed = reader.unclosed()
    if (unclosed !== null) {
      // Ended inside a block: never sent, and said so (a script would otherwise lose its last message unnoticed).
      io.err(`the message begun with ${FENCE} was not closed (a line ending in ${FENCE}): not sent (${unclosed.split('\n').length} lines)`)
      sent++
      unanswered++
    }
    // At a terminal the user saw each error as it came; read from a pipe or file, the status says it.
    if (!interactive && unanswered > 0) {
      io.err(`${unanswered} of ${sent} ${sent === 1 ? 'message' : 'messages'} got no reply (the errors above)`)
      return 1
    }
    return 0
  } finally {
    process.off('SIGINT', onSigint)
    rl?.close()
    await host.close()
  }
}

/**
 * --format, else what the model folder's workbench.json says it was trained for (an export of a
 * run on prompt/completion or text rows: plain), else chat.
 */
export function chatFormat(flag: unknown, dir: string): ChatFormat {
  if (flag !== undefined) {
    if (flag !== 'chat' && flag !== 'plain') throw new UsageError(`--format: "${String(flag)}" must be chat or plain`)
    return flag
  }
  try {
    const meta = JSON.parse(readFileSync(join(dir, 'workbench.json'), 'utf8')) as { promptFormat?: unknown }
    return meta.promptFormat === 'plain' ? 'plain' : 'chat'
  } catch {
    return 'chat'
  }
}
