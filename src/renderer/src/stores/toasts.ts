/**
 * Short notices near the status bar: errors of actions that have no form to show them in (cancel,
 * resume, export, delete), and confirmations with an optional action ("Open in chat").
 * Errors stay until dismissed; other notices leave after a few seconds.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'
import { type UiError, remedy } from '../errors'

export interface Toast {
  id: number
  /** error and warn stay until dismissed (warn: a caution about something that worked); the others leave by themselves. */
  kind: 'error' | 'warn' | 'info' | 'success'
  title: string
  message: string
  hint?: string
  action?: { label: string; run: () => void }
}

const INFO_MS = 6000
/** Errors and cautions stay until read and dismissed. */
const lasting = (kind: Toast['kind']): boolean => kind === 'error' || kind === 'warn'
const MAX_TOASTS = 5

export const useToastsStore = defineStore('toasts', () => {
  const toasts = ref<Toast[]>([])
  let nextId = 1
  const timers = new Map<number, ReturnType<typeof setTimeout>>()

  function push(toast: Omit<Toast, 'id'>): number {
    const id = nextId++
    toasts.value = [...toasts.value, { ...toast, id }].slice(-MAX_TOASTS)
    if (!lasting(toast.kind))
      timers.set(
        id,
        setTimeout(() => dismiss(id), INFO_MS),
      )
    return id
  }

  /** An action failed: what was attempted, why, and what to do. */
  function error(title: string, error: UiError): number {
    const hint = remedy(error)
    return push({ kind: 'error', title, message: error.message, ...(hint ? { hint } : {}) })
  }

  function success(title: string, message = '', action?: Toast['action']): number {
    return push({ kind: 'success', title, message, ...(action ? { action } : {}) })
  }

  function dismiss(id: number): void {
    const timer = timers.get(id)
    if (timer) clearTimeout(timer)
    timers.delete(id)
    toasts.value = toasts.value.filter((t) => t.id !== id)
  }

  /**
   * Drops the notices that would leave by themselves (not errors): called on a change of screen,
   * where they no longer apply and would cover the new screen's controls (the chat composer's
   * Send button sits where they stack).
   */
  function dismissTransient(): void {
    for (const t of toasts.value) if (!lasting(t.kind)) dismiss(t.id)
  }

  return { toasts, push, error, success, dismiss, dismissTransient }
})
