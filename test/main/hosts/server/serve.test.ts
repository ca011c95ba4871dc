import { describe, expect, it } from 'vitest'
import { serveCommand, serveSettings } from '../../../../src/main/hosts/server/serve'

describe('serve flags', () => {
  it('defaults to 127.0.0.1 and a free port', () => {
    expect(serveSettings({})).toEqual({ host: '127.0.0.1', port: 0 })
    expect(serveSettings({ host: '0.0.0.0', port: '8888', backend: 'cpu' })).toEqual({ host: '0.0.0.0', port: 8888, backend: 'cpu' })
    expect(serveSettings({ backend: 'auto' })).toEqual({ host: '127.0.0.1', port: 0 })
  })

  it('names the bad flag', () => {
    expect(() => serveSettings({ port: 'http' })).toThrow(/^--port: /)
    expect(() => serveSettings({ port: '70000' })).toThrow(/^--port: /)
    expect(() => serveSettings({ backend: 'cuda' })).toThrow(/^--backend: unknown backend "cuda"/)
    expect(() => serveSettings({ host: true })).toThrow(/^--host needs a value/)
    expect(() => serveSettings({ 'allow-dir': ['/definitely/not/here'] })).toThrow(/^--allow-dir: \/definitely\/not\/here is not a folder/)
  })

  it('takes --allow-dir and --allow-host, repeated', () => {
    expect(serveSettings({ 'allow-dir': ['/tmp', '.'], 'allow-host': ['gpu.lan'] })).toEqual({
      host: '127.0.0.1',
      port: 0,
      allowDirs: ['/tmp', process.cwd()],
      allowHosts: ['gpu.lan'],
    })
  })

  it('takes the token from --token, else MOE_WORKBENCH_TOKEN; refuses a short one or one the URL would have to encode', () => {
    const t = 'a'.repeat(16)
    expect(serveSettings({}, {})).toEqual({ host: '127.0.0.1', port: 0 }) // a new random one
    expect(serveSettings({}, { MOE_WORKBENCH_TOKEN: t })).toMatchObject({ token: t })
    expect(serveSettings({}, { MOE_WORKBENCH_TOKEN: '' })).not.toHaveProperty('token')
    expect(serveSettings({ token: 'B-1._~' + t }, { MOE_WORKBENCH_TOKEN: t })).toMatchObject({ token: 'B-1._~' + t })
    expect(() => serveSettings({ token: 'short' }, {})).toThrow(/^--token: use at least 16 characters .*; got 5 characters$/)
    expect(() => serveSettings({}, { MOE_WORKBENCH_TOKEN: 'with space and more than 16' })).toThrow(
      /^MOE_WORKBENCH_TOKEN: .*got 27 characters with others among them$/,
    )
    expect(() => serveSettings({ token: 'a/b?c=d&e' + t }, {})).toThrow(/^--token: /)
    expect(() => serveSettings({ token: true }, {})).toThrow(/^--token needs a value/)
  })

  it('exits 2 with one line for bad arguments', async () => {
    const err: string[] = []
    expect(await serveCommand(['--port', 'x'], { out: () => {}, err: (l) => err.push(l) })).toBe(2)
    expect(await serveCommand(['--nope'], { out: () => {}, err: (l) => err.push(l) })).toBe(2)
    expect(err).toHaveLength(2)
    expect(err[0]).toMatch(/^moe-workbench serve: --port: /)
    expect(err[1]).toMatch(/^moe-workbench serve: .*--nope/)
  })
})
