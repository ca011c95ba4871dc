/** Run elsewhere's store: the last result and error per run, errors in the form's words. */
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import { ApiError } from '../../../src/shared/api'
import { setWorkbench } from '../../../src/renderer/src/api/client'
import { useHandoffStore } from '../../../src/renderer/src/stores/handoff'
import { fakeBridge } from '../fakeBridge'

let fake: ReturnType<typeof fakeBridge>
beforeEach(() => {
  setActivePinia(createPinia())
  fake = fakeBridge()
  setWorkbench(fake.bridge)
})

describe('useHandoffStore', () => {
  it('keeps the result per run, passes the model choice on, and names a refused field as the form labels it', async () => {
    const store = useHandoffStore()
    const r = await store.handoff({ run: 'run-1', target: 'axolotl', outDir: '/jobs/a', copyModel: true, nodes: 2 })
    expect(fake.bridge.runs.handoff).toHaveBeenCalledWith({ run: 'run-1', target: 'axolotl', outDir: '/jobs/a', copyModel: true, nodes: 2 })
    expect(store.results['run-1']).toEqual(r)
    expect(store.busy).toBeNull()
    fake.bridge.runs.handoff.mockRejectedValueOnce(
      new ApiError('invalid_argument', 'runs.handoff: outDir: /jobs/a exists and is not an empty folder', 'outDir'),
    )
    expect(await store.handoff({ run: 'run-1', target: 'axolotl', outDir: '/jobs/a' })).toBeNull()
    expect(store.errors['run-1']).toEqual({
      code: 'invalid_argument',
      field: 'outDir',
      message: 'Folder to write: /jobs/a exists and is not an empty folder',
    })
    expect(store.results['run-1']).toEqual(r) // the last folder written stays shown
    expect(store.errors['run-2']).toBeUndefined()
  })
})
