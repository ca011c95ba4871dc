/**
 * "Run elsewhere": hands the open run to LLaMA-Factory or axolotl (runs.handoff) and keeps the
 * last result per run, so the Train screen can show the launch commands and what does not carry.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import type { HandoffResult, RunsHandoffArgs } from '../../../shared/api'
import { useWorkbench } from '../api/client'
import { toUiError, type UiError } from '../errors'

/** The form's names of the fields the service may name. */
const FIELD_LABELS: Record<string, string> = {
  outDir: 'Folder to write',
  nodes: 'Nodes',
  gpusPerNode: 'GPUs per node',
  gpuMemoryGiB: 'GiB per GPU',
  modelRef: 'Hub id',
  dataset: 'Dataset',
}

export const useHandoffStore = defineStore('handoff', () => {
  const results = ref<Record<string, HandoffResult>>({})
  const errors = ref<Record<string, UiError | undefined>>({})
  const busy = ref<string | null>(null)

  async function handoff(args: RunsHandoffArgs & { run: string }): Promise<HandoffResult | null> {
    busy.value = args.run
    errors.value = { ...errors.value, [args.run]: undefined }
    try {
      const r = await useWorkbench().runs.handoff(args)
      results.value = { ...results.value, [args.run]: r }
      return r
    } catch (e) {
      errors.value = { ...errors.value, [args.run]: toUiError(e, FIELD_LABELS) }
      return null
    } finally {
      busy.value = null
    }
  }

  return { results, errors, busy, handoff }
})
