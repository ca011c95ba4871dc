import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { useModelsStore } from '../../../src/renderer/src/stores/models'
import { fakeBridge } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('useModelsStore', () => {
  it('inspects a folder', async () => {
    const models = useModelsStore()
    const done = models.inspect('/models/mixtral')
    expect(models.inspecting).toBe(true)
    await done
    expect(models.inspecting).toBe(false)
    expect(models.inspected?.params.total).toBe(72816)
    expect(fake.bridge.models.inspect).toHaveBeenCalledWith('/models/mixtral')
  })

  it('keeps the error and its field, and clears the previous result', async () => {
    const models = useModelsStore()
    await models.inspect('/models/mixtral')
    fake.bridge.models.inspect.mockRejectedValueOnce(new ApiError('invalid_argument', 'models.inspect: dir: must not be empty', 'dir'))
    await models.inspect('')
    expect(models.inspected).toBeNull()
    expect(models.inspectError).toEqual({ message: 'models.inspect: dir: must not be empty', field: 'dir' })
  })

  it('accepts the plain error objects the preload rejects with', async () => {
    const models = useModelsStore()
    fake.bridge.models.inspect.mockRejectedValueOnce({ name: 'ApiError', code: 'failed', message: '/x: no config.json' })
    await models.inspect('/x')
    expect(models.inspectError).toEqual({ message: '/x: no config.json' })
  })
})
