/** Expert analysis in the engine process: how a model routes some text or a dataset's rows. */
import { basename } from 'node:path'
import { deviceLock, scopedAsync } from '../engine/device'
import type { ExpertAnalysis } from '../../shared/chat'
import { readRows } from '../data/workspace'
import { pacer, type TaskHooks } from '../engine/tasks'
import type { LoadedModel, ModelCache } from './models'
/**
 * Routes text (or rows rendered with the chat template) through a model and summarises expert
 * use. Task stages: load the model (when it is not loaded), then route the texts; cancel acts
 * between tensors while loading and between texts while routing.
 */
export async function analyzeExperts(
  models: ModelCache,
  modelDir: string,
  input: { text?: string; workspace?: string; dataset?: string; maxRows?: number },
  hooks: TaskHooks = {},
): Promise<ExpertAnalysis> {
  // The load reports itself as stage 1 of 1; here it is 1 of 2, routing the texts the second.
  const lease = await models.get(modelDir, undefined, {
    signal: hooks.signal,
    onProgress: hooks.onProgress && ((p) => hooks.onProgress!({ ...p, stages: 2 })),
  })
  try {
    return await routeTexts(lease, modelDir, input, hooks)
  } finally {
    lease.release()
  }
}

async function routeTexts(
  { model, tokenizer, template }: LoadedModel,
  modelDir: string,
  input: { text?: string; workspace?: string; dataset?: string; maxRows?: number },
  hooks: TaskHooks,
): Promise<ExpertAnalysis> {
  if (!tokenizer || !template) throw new Error(`${modelDir} has no tokenizer.json; expert analysis needs a tokenizer`)
  const pace = pacer(hooks.signal, `analysing ${basename(modelDir)}`)
  const texts: string[] = []
  if (input.text !== undefined) texts.push(input.text)
  else {
    for await (const row of readRows(input.workspace!, input.dataset!)) {
      if ('messages' in row) texts.push(template.render(row.messages, false))
      else if ('completion' in row) texts.push(row.prompt + row.completion)
      else if ('text' in row) texts.push(row.text)
      else texts.push(tokenizer.decode(row.input_ids, false))
      if (texts.length >= (input.maxRows ?? 200)) break
      await pace()
    }
  }
  const report = (done: number): void =>
    hooks.onProgress?.({ label: 'Routing the text through the model', stage: 2, stages: 2, done, total: texts.length, unit: 'texts' })
  report(0)
  const max = model.config.maxPositionEmbeddings
  const tally = new RoutingTally(model.config.numExperts, model.config.topK)
  for (const [i, text] of texts.entries()) {
    await pace()
    report(i)
    const ids = tokenizer.encode(text).slice(0, max)
    if (ids.length === 0) continue
    await deviceLock.run(() =>
      scopedAsync(async () => {
        const f = await model.forwardAsync([ids])
        tally.add(f.routing, ids)
      }),
    )
  }
  report(texts.length)
  return { model: modelDir, ...tally.result((id) => tokenizer.decode([id], false)) }
}

/** What the analysis reads of one sparse layer's routing of a text (host data). */
export interface LayerChoices {
  layer: number
  decision: { topk: Int32Array }
  /** Mean router entropy (nats) over the text's tokens. */
  entropy: number
}

/**
 * Expert use summed over texts, per sparse layer: the share of (token, slot) choices per expert,
 * the router entropy averaged over tokens (a text weighs its token count), co-activation counts
 * ([i][j]: tokens that chose both i and j; the diagonal: tokens that chose i) and each expert's
 * most frequent tokens.
 */
export class RoutingTally {
  private readonly layers = new Map<number, { load: number[]; entropy: number; n: number; co: number[][]; top: Map<number, number>[] }>()
  private tokens = 0

  constructor(
    readonly numExperts: number,
    readonly topK: number,
  ) {}

  /** The routing of one text of token ids `ids`, every sparse layer. */
  add(routing: LayerChoices[], ids: number[]): void {
    const E = this.numExperts
    const k = this.topK
    this.tokens += ids.length
    for (const r of routing) {
      let l = this.layers.get(r.layer)
      if (!l)
        this.layers.set(
          r.layer,
          (l = {
            load: new Array<number>(E).fill(0),
            entropy: 0,
            n: 0,
            co: Array.from({ length: E }, () => new Array<number>(E).fill(0)),
            top: Array.from({ length: E }, () => new Map<number, number>()),
          }),
        )
      l.entropy += r.entropy * ids.length
      l.n += ids.length
      for (let n = 0; n < ids.length; n++) {
        const chosen = Array.from(r.decision.topk.subarray(n * k, n * k + k))
        for (const a of chosen) {
          l.load[a]++
          l.top[a].set(ids[n], (l.top[a].get(ids[n]) ?? 0) + 1)
          for (const b of chosen) l.co[a][b]++
        }
      }
    }
  }

  result(decode: (id: number) => string): Omit<ExpertAnalysis, 'model'> {
    return {
      tokens: this.tokens,
      layers: [...this.layers]
        .sort((a, b) => a[0] - b[0])
        .map(([layer, l]) => {
          const total = l.load.reduce((a, b) => a + b, 0)
          return {
            layer,
            load: l.load.map((c) => (total ? c / total : 0)),
            entropy: l.n ? l.entropy / l.n : 0,
            coactivation: l.co,
            topTokens: l.top.map((m) =>
              [...m]
                .sort((a, b) => b[1] - a[1])
                .slice(0, 10)
                .map(([id, count]) => ({ text: decode(id), count })),
            ),
          }
        }),
    }
  }
}
