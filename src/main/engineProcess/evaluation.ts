/**
 * Evaluation in the engine process: a model folder, or a run's checkpoint (LoRA adapters applied
 * to the base; a full run's weights with the base model's tokenizer), scored on a workspace
 * dataset's rows, and the before/after evaluation written when a run completes.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import type { NormalizedRow } from '../../shared/dataset'
import type { EvalReport, EvalSplit, RunEvaluation, RunRecord } from '../../shared/runs'
import { loadSafetensors } from '../engine/safetensors'
import type { TaskHooks } from '../engine/tasks'
import { readRows } from '../data/workspace'
import { endOfTurnIds, loadChatTemplate } from '../data/template'
import { loadTokenizer } from '../data/tokenizer'
import { evaluate, type EvalTarget } from '../train/evaluate'
import { LoraAdapters } from '../train/lora'
import { runKnobs } from '../train/trainer'
import { RunFolder } from '../runs/runFolder'
import { folderEosIds, type ModelCache } from './models'

/** Where an evaluation's model comes from. */
export type EvalSource = { modelDir: string } | { runDir: string; checkpoint?: string }

/** Rows of a workspace dataset's split, at most `limit` (spread evenly over the split). */
export async function evalRows(workspace: string, dataset: string, split: EvalSplit, limit: number): Promise<NormalizedRow[]> {
  const all: NormalizedRow[] = []
  for await (const row of readRows(workspace, dataset, split === 'all' ? undefined : split)) all.push(row)
  if (all.length <= limit) return all
  const step = all.length / limit
  return Array.from({ length: limit }, (_, i) => all[Math.floor(i * step)])
}

/** Opens what an evaluation runs on; `release` when done. */
export async function openEvalTarget(
  models: ModelCache,
  source: EvalSource,
  hooks: TaskHooks = {},
): Promise<{ target: EvalTarget; label: string; release(): void }> {
  if ('modelDir' in source) {
    const lease = await models.get(source.modelDir, undefined, hooks)
    if (!lease.tokenizer || !lease.template) {
      lease.release()
      throw new Error(`${source.modelDir} has no tokenizer.json: evaluation generates text, so it needs one`)
    }
    return {
      target: { model: lease.model, tokenizer: lease.tokenizer, template: lease.template, stopIds: lease.stopIds },
      label: source.modelDir,
      release: lease.release,
    }
  }
  const folder = new RunFolder(source.runDir)
  const run = folder.read()
  const ckpt = source.checkpoint ?? folder.lastCheckpoint()
  if (!ckpt) throw new Error(`${source.runDir}: the run has no checkpoint yet`)
  const label = `run ${run.id}, ${ckpt.split(/[\\/]/).pop()}`
  if (run.config.method === 'lora') {
    const lease = await models.get(run.baseModel, undefined, hooks)
    if (!lease.tokenizer || !lease.template) {
      lease.release()
      throw new Error(`${run.baseModel} has no tokenizer.json: evaluation generates text, so it needs one`)
    }
    const adapters = new LoraAdapters(lease.model, run.config.lora, run.config.seed)
    try {
      adapters.load(
        loadSafetensors(join(ckpt, 'adapter_model.safetensors')).tensors as Map<string, { shape: number[]; data: Float32Array }>,
      )
    } catch (e) {
      adapters.dispose()
      lease.release()
      throw e
    }
    return {
      target: {
        // The tuned model routes as the run trained it (its top-k, capacity): the base stays as it is for others.
        model: lease.model.withKnobs(runKnobs(run.config)),
        weights: adapters.wrap(lease.model.weightSource, { training: false }),
        tokenizer: lease.tokenizer,
        template: lease.template,
        stopIds: lease.stopIds,
      },
      label,
      release: () => {
        adapters.dispose()
        lease.release()
      },
    }
  }
  // A full (or freeze) run's checkpoint holds weights only: the tokenizer is the base model's.
  if (!existsSync(join(run.baseModel, 'tokenizer.json'))) throw new Error(`${run.baseModel} has no tokenizer.json: evaluation needs one`)
  const tokenizer = await loadTokenizer(run.baseModel)
  const template = await loadChatTemplate(run.baseModel)
  const lease = await models.get(ckpt, undefined, hooks)
  const stopIds = endOfTurnIds(template, tokenizer, folderEosIds(run.baseModel, lease.model.config.eosTokenId))
  return { target: { model: lease.model, tokenizer, template, stopIds }, label, release: lease.release }
}

/** Opens, scores and releases. */
export async function evaluateSource(
  models: ModelCache,
  source: EvalSource,
  rows: NormalizedRow[],
  split: EvalSplit,
  hooks: TaskHooks = {},
  stage?: { label: string; stage: number; stages: number },
): Promise<EvalReport> {
  const { target, label, release } = await openEvalTarget(models, source, hooks)
  try {
    return await evaluate(target, rows, { split, label, hooks, stage })
  } finally {
    release()
  }
}

/**
 * A completed run's before/after evaluation: the base model and the run's last checkpoint on up
 * to `rows` rows of each split the dataset has (the validation split, and the training rows the
 * run trained on), written to the run folder's eval.json.
 */
export async function evaluateRun(
  models: ModelCache,
  runDir: string,
  workspace: string,
  rows: number,
  hooks: TaskHooks = {},
): Promise<RunEvaluation | null> {
  const folder = new RunFolder(runDir)
  const run: RunRecord = folder.read()
  const ckpt = folder.lastCheckpoint()
  if (!ckpt || !run.dataset || rows <= 0) return null
  const splits: RunEvaluation['splits'] = []
  const wanted = ['validation', 'train'] as const
  const stages = wanted.length * 2
  let stage = 0
  for (const split of wanted) {
    const chosen = await evalRows(workspace, run.dataset, split, rows)
    if (chosen.length === 0) {
      stage += 2
      continue
    }
    const before = await evaluateSource(models, { modelDir: run.baseModel }, chosen, split, hooks, {
      label: `Evaluating the base model (${split})`,
      stage: ++stage,
      stages,
    })
    if (before.n === 0) {
      stage++
      continue
    }
    const after = await evaluateSource(models, { runDir, checkpoint: ckpt }, chosen, split, hooks, {
      label: `Evaluating the fine-tuned model (${split})`,
      stage: ++stage,
      stages,
    })
    splits.push({ split, before, after })
  }
  if (splits.length === 0) return null
  const evaluation: RunEvaluation = { checkpoint: ckpt, step: run.step, date: new Date().toISOString(), splits }
  folder.writeEvaluation(evaluation)
  return evaluation
}
