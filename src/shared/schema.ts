/**
 * Payload schemas of the API (one per method), used by every host before a payload reaches the
 * service or the engine. A failed validation becomes an ApiError('invalid_argument') whose message
 * and `field` name the offending field.
 */
import { z } from 'zod'
import { ApiError, type ArgsOf, type Method, isMethod } from './api'
import { CHAT_FORMATS, EXPERT_STORAGES, MAX_CONTEXT_TOKENS, MAX_NEW_TOKENS } from './chat'
import { DATASET_FORMATS, DATASET_LAYOUTS } from './dataset'
import { DTYPES, moeConfigPartialSchema, plainIssue } from './modelConfig'
import { runConfigSchema } from './runConfig'
import { unknownKeysMessage } from './keys'
import { HANDOFF_TARGETS } from './handoff'

/** A non-empty string without NUL bytes (which the file system APIs reject with odd messages). */
const path = z
  .string()
  .trim()
  .min(1, 'must not be empty')
  .max(4096, 'is too long')
  .refine((s) => !s.includes('\0'), 'must not contain NUL characters')

/** Ids of runs, datasets, conversations and requests: letters, digits, '-', '_' and '.'. */
const id = z
  .string()
  .min(1, 'must not be empty')
  .max(200, 'is too long')
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'must be letters, digits, ".", "_" or "-"')

const name = z.string().trim().min(1, 'must not be empty').max(200, 'is too long')

const sampling = z.strictObject({
  greedy: z.boolean().optional(),
  temperature: z.number().gt(0, 'must be above 0').max(100).optional(),
  topK: z.number().int().min(0).optional(),
  topP: z.number().gt(0, 'must be above 0').max(1).optional(),
  minP: z.number().min(0).lt(1, 'must be below 1').optional(),
  repetitionPenalty: z.number().gt(0, 'must be above 0').max(10).optional(),
  seed: z.number().int().min(0).optional(),
})

/** A saved reply's tokens and routing (SavedTokens): at most a reply's tokens, integers where ids are. */
const index = z.number().int().min(0)
const savedPieces = z.array(
  z.strictObject({
    text: z.string(),
    position: index.optional(),
    token: index.optional(),
    experts: z.array(z.array(index).max(1024)).max(4096).optional(),
    weights: z.array(z.array(z.number()).max(1024)).max(4096).optional(),
  }),
)
const savedTokens = z.strictObject({
  layers: z.array(index).max(4096, 'has too many layers'),
  pieces: savedPieces.max(MAX_NEW_TOKENS, `has more than a reply's ${MAX_NEW_TOKENS} tokens`),
})
/** A saved reply's prompt (SavedTokens): at most a context's tokens (the request's size bounds it first). */
const savedPrompt = z.strictObject({
  layers: savedTokens.shape.layers,
  pieces: savedPieces.max(MAX_CONTEXT_TOKENS, `has more than a context's ${MAX_CONTEXT_TOKENS} tokens`),
})
/** A saved reply's stats line (SavedStats). */
const ms = z.number().min(0)
const savedStats = z.strictObject({
  newTokens: index.max(MAX_NEW_TOKENS),
  firstTokenMs: ms,
  stoppedBy: z.enum(['max_new_tokens', 'context', 'stop_token', 'stop_sequence', 'callback', 'cancelled']),
  prefillMs: ms,
  decodeMs: ms,
  tokensPerSec: ms,
})
const conversationMessages = z.array(
  z.strictObject({
    role: z.enum(['system', 'user', 'assistant']),
    content: z.string(),
    tokens: savedTokens.optional(),
    prompt: savedPrompt.optional(),
    stats: savedStats.optional(),
  }),
)

/** What datasets.inspect and datasets.import share: the file and how to read it. */
const datasetRead = {
  file: path,
  layout: z.enum(DATASET_LAYOUTS).optional(),
  mapping: z.record(z.string().min(1, 'must not be empty'), z.string().min(1, 'must name a column')).optional(),
  model: path.optional(),
  maxLength: z.number().int().positive().optional(),
  format: z.enum(DATASET_FORMATS).optional(),
  textUnit: z.enum(['line', 'paragraph']).optional(),
  preview: z.strictObject({ offset: z.number().int().min(0).optional(), limit: z.number().int().min(0).max(1000).optional() }).optional(),
}

/** A partial model config, checked field by field; passed on as given (the preset fills the rest). */
const modelConfigInput = z
  .custom<ArgsOf<'models.create'>['config']>((v) => typeof v === 'object' && v !== null && !Array.isArray(v), {
    message: 'must be an object of model config fields',
  })
  .superRefine((v, ctx) => {
    const r = moeConfigPartialSchema.safeParse(v)
    if (r.success) return
    for (const i of r.error.issues)
      ctx.addIssue({
        code: 'custom',
        path: i.path as (string | number)[],
        message: i.code === 'unrecognized_keys' ? unknownKeysMessage(moeConfigPartialSchema, i.path, i.keys) : i.message,
      })
  })

export const apiSchemas = {
  'system.info': z.undefined({ error: 'takes no arguments' }),
  'models.inspect': z.strictObject({ dir: path, configOnly: z.boolean().optional() }),
  'datasets.inspect': z.strictObject(datasetRead),
  'datasets.import': z.strictObject({
    ...datasetRead,
    name: z.string().trim().min(1, 'must not be empty').max(200, 'is too long').optional(),
    acceptInvalid: z.boolean().optional(),
    split: z
      .strictObject({
        validation: z.number().min(0, 'must be at least 0').lt(1, 'must be below 1').optional(),
        seed: z.number().int().optional(),
      })
      .optional(),
    dedupe: z.boolean().optional(),
  }),
  'datasets.list': z.undefined({ error: 'takes no arguments' }),
  'datasets.cancel': z.strictObject({ file: path }),
  'datasets.delete': z.strictObject({ id }),
  'models.list': z.undefined({ error: 'takes no arguments' }),
  'models.plan': z.strictObject({
    dir: path,
    budgetBytes: z.number().int().positive().optional(),
    contextTokens: z.number().int().min(0).optional(),
    storage: z.enum(EXPERT_STORAGES).optional(),
    run: runConfigSchema.optional(),
  }),
  'models.create': z.strictObject({
    name,
    config: modelConfigInput,
    seed: z.number().int().min(0).optional(),
    tokenizerFrom: path.optional(),
  }),
  'models.link': z.strictObject({ dir: path, name: name.optional() }),
  'models.delete': z.strictObject({ id }),
  'runs.start': z.strictObject({ model: path, id: id.optional(), dataset: id, config: runConfigSchema.optional(), name: name.optional() }),
  'runs.auto': z.strictObject({ model: path, dataset: id }),
  'runs.list': z.undefined({ error: 'takes no arguments' }),
  'runs.get': z.strictObject({ id }),
  'runs.cancel': z.strictObject({ id }),
  'runs.delete': z.strictObject({ id }),
  'runs.resume': z.strictObject({ id }),
  'runs.export': z.strictObject({
    id,
    name: name.optional(),
    outDir: path.optional(),
    checkpoint: path.optional(),
    dtype: z.enum(DTYPES).optional(),
    taskId: id.optional(),
  }),
  'runs.handoff': z.strictObject({
    target: z.enum(HANDOFF_TARGETS),
    outDir: path,
    run: id.optional(),
    config: runConfigSchema.optional(),
    model: path.optional(),
    dataset: id.optional(),
    modelRef: z.string().trim().min(1, 'must not be empty').max(4096, 'is too long').optional(),
    copyModel: z.boolean().optional(),
    nodes: z.number().int().min(1).max(4096).optional(),
    gpusPerNode: z.number().int().min(1).max(64).optional(),
    gpuMemoryGiB: z.number().positive().max(100_000).optional(),
  }),
  'runs.importAdapter': z.strictObject({ dir: path, model: path.optional(), name: name.optional() }),
  'chat.send': z.strictObject({
    model: path,
    format: z.enum(CHAT_FORMATS).optional(),
    messages: z
      .array(z.strictObject({ role: z.enum(['system', 'user', 'assistant']), content: z.string().max(200_000, 'is too long') }))
      .min(1, 'must hold at least one message'),
    sampling: sampling.optional(),
    maxNewTokens: z.number().int().min(1).max(MAX_NEW_TOKENS).optional(),
    stop: z.array(z.string().min(1, 'must not be empty')).max(16).optional(),
    offload: z
      .strictObject({
        budgetBytes: z.number().int().positive(),
        storage: z.enum(EXPERT_STORAGES),
        policy: z.enum(['lru', 'lfu']).optional(),
        prefetch: z.boolean().optional(),
        contextTokens: z.number().int().positive().max(MAX_CONTEXT_TOKENS).optional(),
      })
      .optional(),
    taskId: id.optional(),
  }),
  'chat.cancel': z.strictObject({ requestId: id }),
  'conversations.list': z.undefined({ error: 'takes no arguments' }),
  'conversations.save': z.strictObject({
    id: id.optional(),
    title: z.string().max(500, 'is too long'),
    model: path,
    systemPrompt: z.string().max(100_000, 'is too long').optional(),
    messages: conversationMessages,
    format: z.enum(CHAT_FORMATS).optional(),
    sampling: sampling.optional(),
    maxNewTokens: z.number().int().min(1).max(MAX_NEW_TOKENS).optional(),
    compare: z
      .strictObject({
        model: path,
        messages: conversationMessages,
        format: z.enum(CHAT_FORMATS).optional(),
      })
      .optional(),
  }),
  'conversations.delete': z.strictObject({ id }),
  'experts.analyze': z
    .strictObject({
      model: path,
      text: z.string().min(1, 'must not be empty').max(1_000_000, 'is too long').optional(),
      dataset: id.optional(),
      maxRows: z.number().int().min(1).max(10_000).optional(),
      taskId: id.optional(),
    })
    .refine((a) => (a.text === undefined) !== (a.dataset === undefined), { message: 'give either text or dataset', path: ['text'] }),
  'eval.run': z
    .strictObject({
      model: path.optional(),
      run: id.optional(),
      checkpoint: path.optional(),
      dataset: id.optional(),
      split: z.enum(['train', 'validation', 'all']).optional(),
      limit: z.number().int().min(1).max(10_000).optional(),
      taskId: id.optional(),
    })
    .refine((a) => (a.model === undefined) !== (a.run === undefined), { message: 'give either a model folder or a run', path: ['model'] })
    .refine((a) => a.checkpoint === undefined || a.run !== undefined, {
      message: "is a run's checkpoint: give the run too",
      path: ['checkpoint'],
    })
    .refine((a) => a.run !== undefined || a.dataset !== undefined, {
      message: 'give the dataset to evaluate a model folder on',
      path: ['dataset'],
    }),
  'tasks.cancel': z.strictObject({ taskId: id }),
} satisfies { [M in Method]: z.ZodType<ArgsOf<M>> }

/**
 * The fields of each method's arguments that name a file or folder on the host, found from the
 * schemas themselves (every field typed `path`), so a new method is covered without a list to
 * keep. Server mode checks them against its allowed folders.
 */
export const PATH_FIELDS: { readonly [M in Method]: readonly string[] } = Object.fromEntries(
  Object.entries(apiSchemas).map(([method, schema]) => {
    const shape = (schema as { shape?: Record<string, { def?: { innerType?: unknown } }> }).shape ?? {}
    const fields = Object.entries(shape)
      .filter(([, f]) => f === (path as unknown) || f.def?.innerType === path)
      .map(([k]) => k)
    return [method, fields]
  }),
) as { [M in Method]: string[] }

/** The paths a request names, by field. */
export function pathsOf(method: Method, args: unknown): { field: string; path: string }[] {
  if (typeof args !== 'object' || args === null) return []
  const a = args as Record<string, unknown>
  return PATH_FIELDS[method].filter((f) => typeof a[f] === 'string').map((f) => ({ field: f, path: a[f] as string }))
}

function fieldOf(issue: z.core.$ZodIssue): string {
  return issue.path.map(String).join('.')
}

function describe(issue: z.core.$ZodIssue, schema: unknown): string {
  // zod's unrecognized_keys issues sit at the object's path and list the keys.
  if (issue.code === 'unrecognized_keys') return unknownKeysMessage(schema, issue.path, issue.keys)
  return plainIssue(issue.message)
}

/** Deepest nesting accepted in a payload: the API's own shapes stay far below it. */
export const MAX_PAYLOAD_DEPTH = 32

/** The path of the first value nested deeper than `max`, or null (iterative: no stack to overflow). */
export function tooDeep(value: unknown, max = MAX_PAYLOAD_DEPTH): string | null {
  const stack: [unknown, string[]][] = [[value, []]]
  while (stack.length) {
    const [v, path] = stack.pop()!
    if (typeof v !== 'object' || v === null) continue
    if (path.length >= max) return path.join('.')
    for (const [k, child] of Object.entries(v)) stack.push([child, [...path, k]])
  }
  return null
}

/** How many of a refusal's further problems it says besides the first. */
const MORE_SHOWN = 2

/**
 * Validates `args` for `method`. Returns the parsed (trimmed, typed) arguments or throws an
 * ApiError naming the method and the field: `models.inspect: dir: must not be empty`.
 */
export function validateArgs<M extends Method>(method: M, args: unknown): ArgsOf<M> {
  if (!isMethod(method)) throw new ApiError('unknown_method', `unknown method ${JSON.stringify(method)}`)
  const schema = apiSchemas[method] as z.ZodType<ArgsOf<M>>
  const deep = tooDeep(args)
  if (deep !== null) {
    const field = deep.split('.').slice(0, 3).join('.')
    throw new ApiError('invalid_argument', `${method}: ${field}: nested deeper than ${MAX_PAYLOAD_DEPTH} levels`, field)
  }
  const r = schema.safeParse(args)
  if (r.success) return r.data
  const said = (issue: z.core.$ZodIssue): { field: string; text: string } => {
    let field = fieldOf(issue)
    if (issue.code === 'unrecognized_keys' && issue.keys.length > 0) field = [field, issue.keys[0]].filter(Boolean).join('.')
    return { field, text: `${field === '' ? '' : `${field}: `}${describe(issue, schema)}` }
  }
  const [first, ...rest] = r.error.issues.map(said)
  // The next problems said too, a few of them ("(and 1 more)" left a script to guess which).
  const shown = rest.slice(0, MORE_SHOWN).map((x) => x.text)
  const more = rest.length ? ` (and ${rest.length} more: ${shown.join('; ')}${rest.length > shown.length ? '; …' : ''})` : ''
  throw new ApiError('invalid_argument', `${method}: ${first.text}${more}`, first.field === '' ? undefined : first.field)
}
