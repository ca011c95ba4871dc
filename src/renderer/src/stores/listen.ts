/** The event-stream subscription every store that follows events shares the shape of. */
import type { Unsubscribe, WorkbenchEvent } from '../../../shared/api'
import { useWorkbench } from '../api/client'

/**
 * A `listen()` for a store: subscribes its handler once however often it is called, and returns
 * the function that unsubscribes (App.vue calls it on mount and the returned one on unmount).
 */
export function listener(handler: (event: WorkbenchEvent) => void): () => Unsubscribe {
  let unsubscribe: Unsubscribe | undefined
  return () => {
    unsubscribe ??= useWorkbench().onEvent(handler)
    return () => {
      unsubscribe?.()
      unsubscribe = undefined
    }
  }
}
