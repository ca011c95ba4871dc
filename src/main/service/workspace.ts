/**
 * The workspace on disk, as the service reads and writes it (no TF.js here):
 *
 *   <workspace>/models/<id>/         an HF checkpoint folder + workbench.json (provenance), or
 *                                    only workbench.json {"linked": "/abs/dir"} for a linked folder
 *   <workspace>/runs/<id>/           run.json, metrics.jsonl, routing.jsonl, log, checkpoints/
 *   <workspace>/conversations/<id>.json
 *
 * Every write is atomic; ids are filesystem-safe slugs.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Conversation } from '../../shared/chat'
import type { EvalMetrics, ExpertAlert, LayerShare, RunDetail, RunRecord, StepMetrics } from '../../shared/runs'
import { writeJsonAtomic } from '../util/atomic'

export const modelsDir = (ws: string): string => join(ws, 'models')
export const runsDir = (ws: string): string => join(ws, 'runs')
export const conversationsDir = (ws: string): string => join(ws, 'conversations')

/** A filesystem-safe id from a display name, with a random suffix against collisions. */
export function newId(name: string): string {
  const slug = name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
  return `${slug || 'item'}-${randomBytes(3).toString('hex')}`
}

/** A time-ordered run id: 2026-11-22T12-30-05-name-abc123. */
export function newRunId(name: string | undefined): string {
  const stamp = new Date().toISOString().slice(0, 19).replace(/:/g, '-')
  return `${stamp}-${newId(name ?? 'run')}`
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------------------------
// Models

export interface ModelFolder {
  id: string
  name: string
  dir: string
  source: 'workspace' | 'linked'
  provenance?: Record<string, unknown>
}

/** Models in the workspace: made or exported here, or linked from elsewhere. */
export function listModelFolders(ws: string): ModelFolder[] {
  const root = modelsDir(ws)
  if (!existsSync(root)) return []
  const out: ModelFolder[] = []
  for (const id of readdirSync(root).sort()) {
    if (id.startsWith('.') || id.includes('.tmp-')) continue
    const dir = join(root, id)
    const meta = readJson<Record<string, unknown>>(join(dir, 'workbench.json')) ?? {}
    const linked = typeof meta.linked === 'string' ? meta.linked : undefined
    if (!linked && !existsSync(join(dir, 'config.json'))) continue
    out.push({
      id,
      name: typeof meta.name === 'string' ? meta.name : id,
      dir: linked ?? dir,
      source: linked ? 'linked' : 'workspace',
      provenance: meta,
    })
  }
  return out
}

export function linkModelFolder(ws: string, dir: string, name?: string): ModelFolder {
  const abs = resolve(dir)
  const id = newId(name ?? abs.split(/[\\/]/).filter(Boolean).pop() ?? 'model')
  mkdirSync(join(modelsDir(ws), id), { recursive: true })
  const meta = { linked: abs, name: name ?? id, linkedAt: new Date().toISOString() }
  writeJsonAtomic(join(modelsDir(ws), id, 'workbench.json'), meta)
  return { id, name: meta.name, dir: abs, source: 'linked', provenance: meta }
}

/** Adds name and provenance to a model folder's workbench.json (keeping what is there). */
export function describeModelFolder(dir: string, fields: Record<string, unknown>): void {
  const file = join(dir, 'workbench.json')
  writeJsonAtomic(file, { ...(readJson<Record<string, unknown>>(file) ?? {}), ...fields })
}

// ---------------------------------------------------------------------------------------------
// Runs

export function runDir(ws: string, id: string): string {
  return join(runsDir(ws), id)
}

export function readRun(ws: string, id: string): RunRecord {
  const r = readJson<RunRecord>(join(runDir(ws, id), 'run.json'))
  if (!r) throw new Error(`no run named ${id} in ${runsDir(ws)}`)
  return r
}

/** Every run, newest first. */
export function listRuns(ws: string): RunRecord[] {
  const root = runsDir(ws)
  if (!existsSync(root)) return []
  const out: RunRecord[] = []
  for (const id of readdirSync(root)) {
    const r = readJson<RunRecord>(join(root, id, 'run.json'))
    if (r) out.push(r)
  }
  return out.sort((a, b) => b.created.localeCompare(a.created))
}

export function writeRun(ws: string, record: RunRecord): void {
  writeJsonAtomic(join(runDir(ws, record.id), 'run.json'), record)
}

/** Lines of a JSONL file; a torn last line (a crash mid-append) is skipped. */
function readJsonl<T>(file: string): T[] {
  if (!existsSync(file)) return []
  const out: T[] = []
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue
    try {
      out.push(JSON.parse(line) as T)
    } catch {
      // the line being written when the process stopped
    }
  }
  return out
}

export function readRunDetail(ws: string, id: string): RunDetail {
  const record = readRun(ws, id)
  const dir = runDir(ws, id)
  type Line = ({ type: 'step' } & Omit<StepMetrics, 'layers'>) | ({ type: 'eval' } & EvalMetrics) | ({ type: 'alert' } & ExpertAlert)
  const lines = readJsonl<Line>(join(dir, 'metrics.jsonl'))
  const strip = <T extends { type: string }>({ type: _t, ...rest }: T): Omit<T, 'type'> => rest
  return {
    record,
    steps: lines.filter((l) => l.type === 'step').map((l) => strip(l) as Omit<StepMetrics, 'layers'>),
    evals: lines.filter((l) => l.type === 'eval').map((l) => strip(l) as EvalMetrics),
    alerts: lines.filter((l) => l.type === 'alert').map((l) => strip(l) as ExpertAlert),
    routing: readJsonl<{ step: number; layers: LayerShare[] }>(join(dir, 'routing.jsonl')).slice(-200),
  }
}

// ---------------------------------------------------------------------------------------------
// Conversations

export function listConversations(ws: string): Conversation[] {
  const root = conversationsDir(ws)
  if (!existsSync(root)) return []
  return readdirSync(root)
    .filter((f) => f.endsWith('.json') && !f.includes('.tmp-'))
    .map((f) => readJson<Conversation>(join(root, f)))
    .filter((c): c is Conversation => c !== null)
    .sort((a, b) => b.updated.localeCompare(a.updated))
}

export function saveConversation(ws: string, c: Omit<Conversation, 'id' | 'created' | 'updated'> & { id?: string }): Conversation {
  mkdirSync(conversationsDir(ws), { recursive: true })
  const now = new Date().toISOString()
  const existing = c.id ? readJson<Conversation>(join(conversationsDir(ws), `${c.id}.json`)) : null
  if (c.id && !existing) throw new Error(`no conversation named ${c.id}`)
  const out: Conversation = { ...c, id: c.id ?? newId(c.title || 'chat'), created: existing?.created ?? now, updated: now }
  writeJsonAtomic(join(conversationsDir(ws), `${out.id}.json`), out)
  return out
}

export function deleteConversation(ws: string, id: string): void {
  const file = join(conversationsDir(ws), `${id}.json`)
  if (!existsSync(file)) throw new Error(`no conversation named ${id}`)
  rmSync(file)
}
