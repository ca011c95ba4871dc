/**
 * The workspace on disk, as the service reads and writes it (no TF.js here):
 *
 *   <workspace>/models/<id>/         an HF checkpoint folder + workbench.json (provenance), or
 *                                    only workbench.json {"linked": "/abs/dir"} for a linked folder
 *   <workspace>/runs/<id>/           a run folder (src/main/runs/runFolder.ts owns it)
 *   <workspace>/conversations/<id>.json
 *
 * Every write is atomic; ids are filesystem-safe slugs.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Conversation } from '../../shared/chat'
import { ApiError } from '../../shared/api'
import type { RunRecord } from '../../shared/runs'
import { listRunFolders, RunFolder } from '../runs/runFolder'
import { writeJsonAtomic } from '../util/atomic'
import { slug } from '../util/slug'

export const modelsDir = (ws: string): string => join(ws, 'models')
export const runsDir = (ws: string): string => join(ws, 'runs')
export const conversationsDir = (ws: string): string => join(ws, 'conversations')

/** A filesystem-safe id from a display name, with a random suffix against collisions. */
export function newId(name: string): string {
  return `${slug(name, 'item')}-${randomBytes(3).toString('hex')}`
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
    // A linked folder's own provenance (an export's run, how chat should prompt it) under the
    // link's: a model exported elsewhere was listed without it, and chat prompted a plain-text
    // model with a chat template.
    const own = linked ? (readJson<Record<string, unknown>>(join(linked, 'workbench.json')) ?? {}) : {}
    out.push({
      id,
      name: typeof meta.name === 'string' ? meta.name : id,
      dir: linked ?? dir,
      source: linked ? 'linked' : 'workspace',
      provenance: { ...own, ...meta },
    })
  }
  return out
}

export function linkModelFolder(ws: string, dir: string, name?: string): ModelFolder {
  const abs = resolve(dir)
  // Unnamed, it takes the name the folder gives itself (an export's), else the folder's.
  const own = readJson<Record<string, unknown>>(join(abs, 'workbench.json')) ?? {}
  const given = name ?? ownModelName(abs) ?? undefined
  const id = newId(given ?? abs.split(/[\\/]/).filter(Boolean).pop() ?? 'model')
  mkdirSync(join(modelsDir(ws), id), { recursive: true })
  const meta = { linked: abs, name: given ?? id, linkedAt: new Date().toISOString() }
  writeJsonAtomic(join(modelsDir(ws), id, 'workbench.json'), meta)
  return { id, name: meta.name, dir: abs, source: 'linked', provenance: { ...own, ...meta } }
}

/** The name a model folder gives itself in its workbench.json (an export's), or null. */
export function ownModelName(dir: string): string | null {
  const own = readJson<Record<string, unknown>>(join(resolve(dir), 'workbench.json'))
  return typeof own?.name === 'string' && own.name.trim() ? own.name.trim() : null
}

/** Adds name and provenance to a model folder's workbench.json (keeping what is there). */
export function describeModelFolder(dir: string, fields: Record<string, unknown>): void {
  const file = join(dir, 'workbench.json')
  writeJsonAtomic(file, { ...(readJson<Record<string, unknown>>(file) ?? {}), ...fields })
}

// ---------------------------------------------------------------------------------------------
// Runs (each folder is owned by src/main/runs/runFolder.ts)

export function runDir(ws: string, id: string): string {
  return join(runsDir(ws), id)
}

export function runFolder(ws: string, id: string): RunFolder {
  const folder = new RunFolder(runDir(ws, id))
  if (!folder.exists()) throw new ApiError('invalid_argument', `id: no run named ${id} in ${runsDir(ws)}`, 'id')
  return folder
}

export function readRun(ws: string, id: string): RunRecord {
  return runFolder(ws, id).read()
}

/** Every run, newest first. */
export function listRuns(ws: string): RunRecord[] {
  return listRunFolders(runsDir(ws)).map((r) => r.record)
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
