import { describe, expect, it } from 'vitest'
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  allowedHostNames,
  hostAllowed,
  isInside,
  newToken,
  originAllowed,
  refusedPath,
  requestToken,
  tokenMatches,
} from '../../../../src/main/hosts/server/security'

describe('server security', () => {
  it('makes 32-byte hex tokens, different each time', () => {
    const a = newToken()
    expect(a).toMatch(/^[0-9a-f]{64}$/)
    expect(newToken()).not.toBe(a)
  })

  it('reads the token from the Authorization header, else the query', () => {
    const url = new URL('http://127.0.0.1:1/api/x?token=fromquery')
    expect(requestToken({ authorization: 'Bearer abc' }, url)).toBe('abc')
    expect(requestToken({ authorization: 'Basic abc' }, url)).toBeUndefined()
    expect(requestToken({}, url)).toBe('fromquery')
    expect(requestToken({}, new URL('http://127.0.0.1:1/api/x'))).toBeUndefined()
  })

  it('compares tokens exactly', () => {
    expect(tokenMatches('abc', 'abc')).toBe(true)
    expect(tokenMatches('abd', 'abc')).toBe(false)
    expect(tokenMatches('ab', 'abc')).toBe(false)
    expect(tokenMatches(undefined, 'abc')).toBe(false)
  })

  it('accepts only loopback Host names on a loopback-bound server (DNS rebinding)', () => {
    const policy = { boundHost: '127.0.0.1', port: 8080 }
    expect(hostAllowed('127.0.0.1:8080', policy)).toBe(true)
    expect(hostAllowed('localhost:8080', policy)).toBe(true)
    expect(hostAllowed('[::1]:8080', policy)).toBe(true)
    expect(hostAllowed('evil.example:8080', policy)).toBe(false)
    expect(hostAllowed('127.0.0.1:8081', policy)).toBe(false)
    expect(hostAllowed(undefined, policy)).toBe(true)
  })

  it('keeps the Host check on a non-loopback server: only the names it was given, its own addresses and loopback', () => {
    const machine = { hostname: 'gpu-box', addresses: ['10.0.0.5', 'fe80::1'] }
    const wildcard = { boundHost: '0.0.0.0', port: 8080, allowedHosts: allowedHostNames('0.0.0.0', ['gpu.example.org'], machine) }
    expect(hostAllowed('gpu-box:8080', wildcard)).toBe(true)
    expect(hostAllowed('10.0.0.5:8080', wildcard)).toBe(true)
    expect(hostAllowed('[fe80::1]:8080', wildcard)).toBe(true)
    expect(hostAllowed('GPU.example.org:8080', wildcard)).toBe(true)
    expect(hostAllowed('localhost:8080', wildcard)).toBe(true)
    expect(hostAllowed('evil.example:8080', wildcard)).toBe(false)
    const one = { boundHost: '10.0.0.5', port: 8080, allowedHosts: allowedHostNames('10.0.0.5', [], machine) }
    expect(one.allowedHosts).toEqual(['10.0.0.5'])
    expect(hostAllowed('10.0.0.5:8080', one)).toBe(true)
    expect(hostAllowed('gpu-box:8080', one)).toBe(false)
  })

  it('refuses paths outside the allowed folders, symbolic links included, naming the field', () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-allow-'))
    const outside = mkdtempSync(join(tmpdir(), 'moe-outside-'))
    writeFileSync(join(outside, 'secret.jsonl'), '{}')
    mkdirSync(join(root, 'data'))
    writeFileSync(join(root, 'data', 'ok.jsonl'), '{}')
    symlinkSync(join(outside, 'secret.jsonl'), join(root, 'data', 'link.jsonl'))
    expect(refusedPath([{ field: 'file', path: join(root, 'data', 'ok.jsonl') }], [root])).toBeNull()
    expect(refusedPath([{ field: 'outDir', path: join(root, 'new', 'deeper') }], [root])).toBeNull()
    expect(refusedPath([{ field: 'file', path: join(root, 'data', '..', '..', 'etc', 'passwd') }], [root])?.field).toBe('file')
    const viaLink = refusedPath([{ field: 'file', path: join(root, 'data', 'link.jsonl') }], [root])
    // Said as a link to the place outside (it read as if the link itself were outside the folder it is in).
    expect(viaLink?.message).toBe(
      `file: ${join(root, 'data', 'link.jsonl')} is a link to ${join(realpathSync(outside), 'secret.jsonl')}, which is outside the folders this server may read and write (${root}); start the server with --allow-dir to add one`,
    )
    expect(refusedPath([{ field: 'model', path: outside }], [root, outside])).toBeNull()
    // A relative path (against the server's working folder, which a browser cannot see) says so,
    // even where it would land inside an allowed folder.
    expect(refusedPath([{ field: 'outDir', path: 'relative/job' }], [root, process.cwd()])).toEqual({
      field: 'outDir',
      path: 'relative/job',
      message: 'outDir: relative/job is a relative path; write its full path on the server',
    })
    expect(refusedPath([{ field: 'dir', path: '' }], [root])).toBeNull() // the schema says it must not be empty
    expect(refusedPath([{ field: 'dir', path: '   ' }], [root])).toBeNull() // (it trims: spaces are empty too)
    expect(refusedPath([{ field: 'dir', path: '~/models/x' }], [root])?.message).toBe(
      `dir: ~/models/x starts with "~", which only a shell expands; write the full path (${join(homedir(), 'models/x')})`,
    )
    expect(refusedPath([{ field: 'dir', path: '~notes' }], [root])?.message).toMatch(/is a relative path/)
    // Checked as the schema reads it (trimmed): " /etc" is /etc, outside, whatever the working folder.
    expect(refusedPath([{ field: 'dir', path: ' /etc/passwd ' }], [root, process.cwd()])?.message).toMatch(
      /^dir: \/etc\/passwd is outside the folders/,
    )
    expect(refusedPath([{ field: 'file', path: ` ${join(root, 'data', 'ok.jsonl')} ` }], [root])).toBeNull()
    expect(isInside('/a/bc', '/a/b')).toBe(false)
    expect(isInside('/a/b/c', '/a/b')).toBe(true)
  })

  it('accepts the server’s own Origin or none', () => {
    expect(originAllowed(undefined, '127.0.0.1:8080')).toBe(true)
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080')).toBe(true)
    expect(originAllowed('http://evil.example', '127.0.0.1:8080')).toBe(false)
    expect(originAllowed('null', '127.0.0.1:8080')).toBe(false)
    expect(originAllowed('http://localhost:8080', '127.0.0.1:8080')).toBe(false)
  })
})
