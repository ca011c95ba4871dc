/** The app:// scheme's responses (pure Node: no Electron binary needed) and the packaging config. */
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { parse } from 'yaml'

vi.mock('electron', () => ({ protocol: { registerSchemesAsPrivileged: vi.fn(), handle: vi.fn() } }))

import { appResponse } from '../../../../src/main/hosts/electron/protocol'

describe('app:// protocol', () => {
  const root = mkdtempSync(join(tmpdir(), 'moe-app-'))
  const renderer = join(root, 'renderer')
  mkdirSync(join(renderer, 'assets'), { recursive: true })
  writeFileSync(join(renderer, 'index.html'), '<!doctype html><title>app</title>')
  writeFileSync(join(renderer, 'assets', 'a.js'), 'export {}')
  writeFileSync(join(root, 'secret.txt'), 'SECRET')
  symlinkSync(join(root, 'secret.txt'), join(renderer, 'assets', 'link.txt'))

  it('serves the renderer files with the security headers', async () => {
    const page = await appResponse(renderer, 'app://workbench/index.html')
    expect(page.status).toBe(200)
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8')
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'self'/)
    expect(await page.text()).toContain('<title>app</title>')
    expect((await appResponse(renderer, 'app://workbench/assets/a.js')).headers.get('content-type')).toMatch(/javascript/)
    // Client-side routes fall back to index.html.
    expect((await appResponse(renderer, 'app://workbench/runs')).status).toBe(200)
  })

  it('serves nothing outside the renderer folder, through .., encoded escapes or a symbolic link, nor for another host', async () => {
    for (const url of [
      'app://workbench/../secret.txt',
      'app://workbench/%2e%2e/secret.txt',
      'app://workbench/assets/link.txt',
      'app://workbench/assets/missing.js',
    ]) {
      const r = await appResponse(renderer, url)
      expect(r.status, url).toBe(404)
      expect(await r.text()).not.toContain('SECRET')
    }
    expect((await appResponse(renderer, 'app://elsewhere/index.html')).status).toBe(403)
  })
})

describe('packaging (electron-builder.yml)', () => {
  const config = parse(readFileSync(join(__dirname, '../../../../electron-builder.yml'), 'utf8')) as Record<string, never>

  it('builds AppImage and deb, dmg, and nsis installers', () => {
    expect(config.linux).toMatchObject({ target: ['AppImage', 'deb'] })
    expect(config.mac).toMatchObject({ target: ['dmg'] })
    expect(config.win).toMatchObject({ target: ['nsis'] })
  })

  it('flips the Electron fuses: no RunAsNode, no NODE_OPTIONS, app only from its asar, encrypted cookies', () => {
    expect(config.electronFuses).toMatchObject({
      runAsNode: false,
      enableNodeOptionsEnvironmentVariable: false,
      enableNodeCliInspectArguments: false,
      onlyLoadAppFromAsar: true,
      enableEmbeddedAsarIntegrityValidation: true,
      enableCookieEncryption: true,
      grantFileProtocolExtraPrivileges: false,
    })
    expect(config.asar).toBe(true)
  })
})
