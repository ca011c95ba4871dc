/**
 * Handing a run to another trainer (LLaMA-Factory, axolotl) and bringing its adapter back: the
 * payloads of runs.handoff and runs.importAdapter. Types and constants only (the renderer imports them).
 */
import type { RunConfigInput } from './runConfig'

export const HANDOFF_TARGETS = ['llamafactory', 'axolotl'] as const
export type HandoffTarget = (typeof HANDOFF_TARGETS)[number]

/** One run-config setting and what carries it in the target. */
export interface MappingRow {
  /** Dotted run-config path, e.g. lora.rank. */
  setting: string
  /** Its value in this run. */
  value: string
  /** The target's key(s) with their values; null when none is needed or none exists (see `equivalent`). */
  target: string | null
  /** 'mapped': carried by `target`; 'unneeded': unused here, or the target behaves the same by default; 'none': no equivalent there. */
  equivalent: 'mapped' | 'unneeded' | 'none'
  note?: string
}

/** A setting's value where it is not set (the run's default decides: epochs, the backend's budget, off). */
export const UNSET = 'unset'

/**
 * The settings in use that do not carry (no equivalent there, and set: not unset, not false):
 * the short list to read; the README's table has every row. "No equivalent: offload.budgetBytes,
 * earlyStopping.patience ..." listed settings the run never used.
 */
export function notCarried(mapping: readonly MappingRow[]): string[] {
  return mapping.filter((m) => m.equivalent === 'none' && m.value !== UNSET && m.value !== 'false').map((m) => m.setting)
}

export interface RunsHandoffArgs {
  target: HandoffTarget
  /** The folder written (missing or empty). */
  outDir: string
  /** A run of the workspace: its config, base model and dataset. */
  run?: string
  /** Or a run config with a model folder and a workspace dataset. */
  config?: RunConfigInput
  model?: string
  dataset?: string
  /** The model as the cluster names it (a hub id or a path there); default: config.json's _name_or_path when it is a hub id, else the folder. */
  modelRef?: string
  /** Copy the base model folder into the handoff folder (model/) and point the config at it. */
  copyModel?: boolean
  /** Machines and GPUs per machine (default 1 and 8) and each GPU's memory in GiB (default 80). */
  nodes?: number
  gpusPerNode?: number
  gpuMemoryGiB?: number
}

export interface HandoffResult {
  outDir: string
  target: HandoffTarget
  /** Files written, relative to outDir. */
  files: string[]
  modelRef: string
  deepspeed: { stage: 2 | 3; offload: boolean; file: string; reason: string }
  /** Estimated GPU memory per device (bytes). */
  memoryPerDevice: number
  mapping: MappingRow[]
  warnings: string[]
  launch: { single: string[]; multi: string[] }
}

export interface RunsImportAdapterArgs {
  /** A PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  dir: string
  /** The base model folder; default the adapter's base_model_name_or_path when that is a folder. */
  model?: string
  name?: string
}
