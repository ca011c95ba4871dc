/**
 * The app, the host and the engine: its backend (and why better ones were unavailable), its
 * status as it starts, crashes and restarts, and its recent log lines.
 */
import { defineStore } from 'pinia'
import { computed, ref, shallowRef } from 'vue'
import { ApiError, type EngineStatus, type SystemInfo, type Unsubscribe, type WorkbenchEvent } from '../../../shared/api'
import { useWorkbench } from '../api/client'
import { APP_BUILD, buildMismatch } from '../../../shared/build'

export interface LogLine {
  time: number
  level: string
  source: string
  message: string
}

const MAX_LOG_LINES = 200

export const useSystemStore = defineStore('system', () => {
  const info = ref<SystemInfo | null>(null)
  const loading = ref(false)
  const error = ref<string | null>(null)
  /** Server mode without a valid token: why, and how to get the link. Nothing else can work. */
  const unauthorized = ref<string | null>(null)
  const engineStatus = ref<EngineStatus | 'unknown'>('unknown')
  const engineReason = ref<string | null>(null)
  /** Server mode: whether the page's event stream is up ('lost' while the server is away). */
  const connection = ref<'ok' | 'lost'>('ok')
  // Replaced, never mutated in place: no deep reactivity over hundreds of lines.
  const logs = shallowRef<LogLine[]>([])

  /** Why this page and the server answering it are different builds (server mode, a server left running over an update), or null. */
  const staleServer = computed(() => (info.value ? buildMismatch(APP_BUILD, info.value.app) : null))
  const backend = computed(() => info.value?.engine.backend ?? null)
  /** Better backends that could not be used, with the reason for each. */
  const unavailable = computed(() => backend.value?.attempts.filter((a) => !a.ok) ?? [])

  async function refresh(): Promise<void> {
    loading.value = true
    error.value = null
    try {
      info.value = await useWorkbench().system.info()
      engineStatus.value = 'ready'
      engineReason.value = null
    } catch (e) {
      const failure = ApiError.from(e)
      if (failure.code === 'unauthorized') unauthorized.value = failure.message
      else error.value = failure.message
    } finally {
      loading.value = false
    }
  }

  function onEvent(event: WorkbenchEvent): void {
    switch (event.type) {
      case 'engine.status': {
        engineStatus.value = event.status
        engineReason.value = event.reason ?? null
        // A fresh engine may have chosen another backend.
        if (event.status === 'ready' && event.backend && info.value) {
          info.value = { ...info.value, engine: { pid: event.pid, backend: event.backend } }
        }
        break
      }
      case 'connection': {
        if (event.refused) unauthorized.value = event.refused
        connection.value = event.connected ? 'ok' : 'lost'
        // The server is back (maybe a new one, a new engine): read again what the events missed.
        if (event.connected) void refresh()
        break
      }
      case 'log': {
        const next = [...logs.value, { time: event.time, level: event.level, source: event.source, message: event.message }]
        logs.value = next.length > MAX_LOG_LINES ? next.slice(-MAX_LOG_LINES) : next
        break
      }
    }
  }

  let unsubscribe: Unsubscribe | undefined
  /** Starts listening to the event stream (idempotent); returns the function that stops it. */
  function listen(): Unsubscribe {
    unsubscribe ??= useWorkbench().onEvent(onEvent)
    return () => {
      unsubscribe?.()
      unsubscribe = undefined
    }
  }

  return {
    info,
    loading,
    error,
    unauthorized,
    staleServer,
    engineStatus,
    engineReason,
    connection,
    logs,
    backend,
    unavailable,
    refresh,
    listen,
  }
})
