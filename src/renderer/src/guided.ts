/** The guided path's choices (Home's "Getting started"). */
import type { ModelEntry } from '../../shared/api'
import type { Conversation } from '../../shared/chat'
import type { DatasetManifest } from '../../shared/dataset'
import { runName, type RunRecord } from '../../shared/runs'

/**
 * The sample the guided path fine-tunes when the user has no dataset of their own: the one where
 * the Quick preset visibly works on the bundled model. Measured (CLI, Quick, wasm; exact match on
 * 20 rows, before -> after): record to JSON 0% -> 100% held out and trained with seeds 0, 1 and 2
 * (612 steps; at 306 it was 0%, 70% and 0% held out); word reversal 0% -> 30% held out, 0% -> 100%
 * trained; arithmetic 0% -> 15% held out, 0% trained (seed 0).
 */
export const SHOWCASE_SAMPLE = 'Sample: record to JSON'

/** The user's own newest dataset (the list is newest first), else the showcase sample, else any. */
export function guidedDataset<T extends Pick<DatasetManifest, 'name'>>(list: T[]): T | undefined {
  return list.find((d) => !d.name.startsWith('Sample: ')) ?? list.find((d) => d.name === SHOWCASE_SAMPLE) ?? list[0]
}

/**
 * The model to chat with after a fine-tune: the newest one exported from a run (by its export
 * time, where its provenance has one), not a model made from a preset, which learned nothing.
 */
export function resultModel<T extends Pick<ModelEntry, 'info' | 'provenance'>>(entries: T[]): T | null {
  const time = (m: T): string => (typeof m.provenance?.exported === 'string' ? m.provenance.exported : '')
  const exported = entries.filter((m) => m.info && typeof m.provenance?.fromRun === 'string')
  return exported.sort((a, b) => time(b).localeCompare(time(a)))[0] ?? null
}

/**
 * The chat step's text. It names the run the model to chat with came from, and the newest
 * completed run (the one the fine-tune step names) where that one is not exported yet
 * (`exportedRuns`: the runs some listed model came from). The two steps named different runs with
 * nothing to tie them.
 */
export function chatStepText(
  tuned: Pick<ModelEntry, 'name' | 'provenance'> | null,
  completed: Pick<RunRecord, 'id' | 'name'> | null,
  runs: Pick<RunRecord, 'id' | 'name'>[],
  exportedRuns: string[],
): string {
  const from = typeof tuned?.provenance?.fromRun === 'string' ? tuned.provenance.fromRun : null
  const pending = completed && !exportedRuns.includes(completed.id) ? runName(completed) : null
  const exportIt = (then: string): string => `Run ${pending} is not a model yet: Export it on its run card${then}.`
  if (!tuned)
    return pending
      ? exportIt(', then chat with it next to the base model')
      : 'Export the run as a model, then chat with it next to the base model.'
  const source = from ? runs.find((r) => r.id === from) : undefined
  const compare = `Compare ${tuned.name}${source ? ` (from run ${runName(source)})` : ''} with the base model, token by token.`
  return pending ? `${compare} ${exportIt(' to chat with it too')}` : compare
}

/**
 * Where a step of the path stands: done by the user, ready (what the app ships does it: the
 * bundled model, the samples), or still to do. A fresh workspace said "done" for importing a
 * dataset nobody had imported.
 */
export type StepState = 'done' | 'ready' | 'todo'

/** A model of the user's own (made, linked or exported) that reads: done; the bundled one only: ready. */
export function modelStep(entries: Pick<ModelEntry, 'source' | 'info'>[]): StepState {
  const usable = entries.filter((m) => m.info)
  return usable.some((m) => m.source !== 'bundled') ? 'done' : usable.length ? 'ready' : 'todo'
}

/** A dataset the user imported: done; the samples only: ready. */
export function datasetStep(list: Pick<DatasetManifest, 'name'>[]): StepState {
  return list.some((d) => !d.name.startsWith('Sample: ')) ? 'done' : list.length ? 'ready' : 'todo'
}

/**
 * The chat step: done once a conversation has the fine-tuned model (`tuned`, resultModel's) on
 * either side; to do before there is one. Any conversation marked it done, the bundled model's
 * too, before anything was fine-tuned.
 */
export function chatStep(
  conversations: (Pick<Conversation, 'model'> & { compare?: Pick<NonNullable<Conversation['compare']>, 'model'> })[],
  tuned: Pick<ModelEntry, 'dir'> | null,
): StepState {
  return tuned && conversations.some((c) => c.model === tuned.dir || c.compare?.model === tuned.dir) ? 'done' : 'todo'
}
