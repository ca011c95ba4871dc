/**
 * Which screen is open, and with what (a run, a model), mirrored in the address's hash
 * (`#/train?run=abc`) so a reload or the back button keeps the place. No router library: six
 * screens and a few parameters.
 */
import { defineStore } from 'pinia'
import { ref } from 'vue'

export const VIEWS = ['home', 'models', 'datasets', 'train', 'chat', 'experts'] as const
export type View = (typeof VIEWS)[number]

export const VIEW_TITLES: Record<View, string> = {
  home: 'Home',
  models: 'Models',
  datasets: 'Datasets',
  train: 'Train',
  chat: 'Chat',
  experts: 'Experts',
}

export type NavParams = Record<string, string>

export function parseHash(hash: string): { view: View; params: NavParams } {
  const [path = '', query = ''] = hash.replace(/^#\/?/, '').split('?')
  const view = (VIEWS as readonly string[]).includes(path) ? (path as View) : 'home'
  return { view, params: Object.fromEntries(new URLSearchParams(query)) }
}

export function toHash(view: View, params: NavParams = {}): string {
  const query = new URLSearchParams(params).toString()
  return `#/${view}${query ? `?${query}` : ''}`
}

export const useNavStore = defineStore('nav', () => {
  const view = ref<View>('home')
  const params = ref<NavParams>({})

  function go(next: View, nextParams: NavParams = {}): void {
    view.value = next
    params.value = nextParams
    if (typeof window !== 'undefined') {
      const hash = toHash(next, nextParams)
      if (window.location.hash !== hash) window.history.pushState(null, '', hash)
    }
  }

  /** Follows the address's hash (at start and on back/forward); returns the function that stops. */
  function syncWithLocation(win: Window = window): () => void {
    const apply = (): void => {
      const parsed = parseHash(win.location.hash)
      view.value = parsed.view
      params.value = parsed.params
    }
    apply()
    win.addEventListener('popstate', apply)
    win.addEventListener('hashchange', apply)
    return () => {
      win.removeEventListener('popstate', apply)
      win.removeEventListener('hashchange', apply)
    }
  }

  return { view, params, go, syncWithLocation }
})
