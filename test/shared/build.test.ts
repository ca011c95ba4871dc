import { describe, expect, it } from 'vitest'
import { APP_BUILD, buildMismatch } from '../../src/shared/build'

describe('buildMismatch: a page and the server answering it', () => {
  it('is null for the same build, and where the page runs unbuilt (tests, the dev server without a define)', () => {
    expect(buildMismatch('1.2.0+abcdef012345', { version: '1.2.0', build: '1.2.0+abcdef012345' })).toBeNull()
    expect(buildMismatch(null, { version: '1.2.0', build: '1.2.0+abcdef012345' })).toBeNull()
    expect(buildMismatch(null, { version: '1.2.0' })).toBeNull()
  })

  it('names both builds and says to restart the server, then reload', () => {
    const m = buildMismatch('1.2.0+abcdef012345', { version: '1.2.0', build: '1.2.0+999999999999' })
    expect(m).toContain('This page (1.2.0+abcdef012345) and the server answering it (1.2.0+999999999999) are different builds')
    expect(m).toContain('Stop the server (Ctrl-C where “moe-workbench serve” runs) and start it again, then reload this page.')
  })

  it('a server without a build (one from before builds were compared) is another build too', () => {
    expect(buildMismatch('1.2.0+abcdef012345', { version: '1.1.0' })).toContain('the server answering it (1.1.0, an older build)')
  })

  it('code run from source has no build', () => {
    expect(APP_BUILD).toBeNull()
  })
})
