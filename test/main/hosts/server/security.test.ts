import { describe, expect, it } from 'vitest'
import { hostAllowed, newToken, originAllowed, requestToken, tokenMatches } from '../../../../src/main/hosts/server/security'

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
    expect(hostAllowed('gpu-box:8080', { boundHost: '0.0.0.0', port: 8080 })).toBe(true)
  })

  it('accepts the server’s own Origin or none', () => {
    expect(originAllowed(undefined, '127.0.0.1:8080')).toBe(true)
    expect(originAllowed('http://127.0.0.1:8080', '127.0.0.1:8080')).toBe(true)
    expect(originAllowed('http://evil.example', '127.0.0.1:8080')).toBe(false)
    expect(originAllowed('null', '127.0.0.1:8080')).toBe(false)
    expect(originAllowed('http://localhost:8080', '127.0.0.1:8080')).toBe(false)
  })
})
