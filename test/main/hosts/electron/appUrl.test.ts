import { describe, expect, it } from 'vitest'
import { appLocation, isAllowedExternal, isAppUrl } from '../../../../src/main/hosts/electron/appUrl'

describe('appUrl', () => {
  const built = appLocation({}, '/opt/app/out/renderer', false)

  it('serves the built renderer over app://workbench/, never file://', () => {
    expect(built).toEqual({ kind: 'app', dir: '/opt/app/out/renderer', url: 'app://workbench/index.html' })
    expect(isAppUrl('app://workbench/index.html', built)).toBe(true)
    expect(isAppUrl('app://workbench/index.html#/models?x=1', built)).toBe(true)
    expect(isAppUrl('app://other/index.html', built)).toBe(false)
    expect(isAppUrl('file:///opt/app/out/renderer/index.html', built)).toBe(false)
    expect(isAppUrl('file:///etc/passwd', built)).toBe(false)
    expect(isAppUrl('https://example.com/', built)).toBe(false)
    expect(isAppUrl('not a url', built)).toBe(false)
  })

  it('accepts the dev server origin in development', () => {
    const dev = { kind: 'dev', url: 'http://localhost:5173/' } as const
    expect(isAppUrl('http://localhost:5173/index.html', dev)).toBe(true)
    expect(isAppUrl('http://127.0.0.1:5173/', dev)).toBe(false)
  })

  it('uses the dev server only when not packaged (a packaged app ignores ELECTRON_RENDERER_URL)', () => {
    const env = { ELECTRON_RENDERER_URL: 'http://localhost:5173' }
    expect(appLocation(env, '/x', false)).toEqual({ kind: 'dev', url: 'http://localhost:5173' })
    expect(appLocation(env, '/x', true)).toMatchObject({ kind: 'app', url: 'app://workbench/index.html' })
  })

  it('opens only https links to the allowed documentation hosts in the browser', () => {
    expect(isAllowedExternal('https://huggingface.co/allenai/OLMoE-1B-7B-0924')).toBe(true)
    expect(isAllowedExternal('https://github.com/hiyouga/LLaMA-Factory')).toBe(true)
    expect(isAllowedExternal('http://huggingface.co/')).toBe(false)
    expect(isAllowedExternal('https://evil.example/')).toBe(false)
    expect(isAllowedExternal('https://huggingface.co.evil.example/')).toBe(false)
    expect(isAllowedExternal('https://user:pw@github.com/')).toBe(false)
    expect(isAllowedExternal('file:///etc/passwd')).toBe(false)
    expect(isAllowedExternal('vscode://x')).toBe(false)
  })
})
