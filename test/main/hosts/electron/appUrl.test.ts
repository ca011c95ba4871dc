import { describe, expect, it } from 'vitest'
import { appLocation, isAppUrl } from '../../../../src/main/hosts/electron/appUrl'

describe('appUrl', () => {
  const file = { kind: 'file', file: '/opt/app/out/renderer/index.html' } as const

  it('accepts the built index.html with any hash or query, and nothing else', () => {
    expect(isAppUrl('file:///opt/app/out/renderer/index.html', file)).toBe(true)
    expect(isAppUrl('file:///opt/app/out/renderer/index.html#/models?x=1', file)).toBe(true)
    expect(isAppUrl('file:///opt/app/out/renderer/other.html', file)).toBe(false)
    expect(isAppUrl('file:///etc/passwd', file)).toBe(false)
    expect(isAppUrl('https://example.com/', file)).toBe(false)
    expect(isAppUrl('not a url', file)).toBe(false)
  })

  it('accepts the dev server origin in development', () => {
    const dev = { kind: 'dev', url: 'http://localhost:5173/' } as const
    expect(isAppUrl('http://localhost:5173/index.html', dev)).toBe(true)
    expect(isAppUrl('http://127.0.0.1:5173/', dev)).toBe(false)
  })

  it('uses the dev server only when not packaged', () => {
    const env = { ELECTRON_RENDERER_URL: 'http://localhost:5173' }
    expect(appLocation(env, '/x/index.html', false)).toEqual({ kind: 'dev', url: 'http://localhost:5173' })
    expect(appLocation(env, '/x/index.html', true)).toEqual({ kind: 'file', file: '/x/index.html' })
    expect(appLocation({}, '/x/index.html', false)).toEqual({ kind: 'file', file: '/x/index.html' })
  })
})
