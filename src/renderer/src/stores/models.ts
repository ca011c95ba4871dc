/** Model folders: inspecting one (config, parameter counts, sizes) before loading it. */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { ApiError, type ModelInfo } from '../../../shared/api'
import { useWorkbench } from '../api/client'

export const useModelsStore = defineStore('models', () => {
  const inspected = ref<ModelInfo | null>(null)
  const inspecting = ref(false)
  /** The last inspection's error, with the field it concerns when the server named one. */
  const inspectError = ref<{ message: string; field?: string } | null>(null)

  async function inspect(dir: string): Promise<void> {
    inspecting.value = true
    inspectError.value = null
    try {
      inspected.value = await useWorkbench().models.inspect(dir)
    } catch (e) {
      const error = ApiError.from(e)
      inspected.value = null
      inspectError.value = error.field === undefined ? { message: error.message } : { message: error.message, field: error.field }
    } finally {
      inspecting.value = false
    }
  }

  return { inspected, inspecting, inspectError, inspect }
})
