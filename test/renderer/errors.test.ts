import { describe, expect, it } from 'vitest'
import { remedy } from '../../src/renderer/src/errors'

describe('remedy', () => {
  it("points a page refused by the server to its URL, but leaves a refused path's own advice alone", () => {
    expect(remedy({ code: 'forbidden', message: 'Origin "x" may not call this server' })).toMatch(/open the URL the server printed/)
    expect(
      remedy({
        code: 'forbidden',
        field: 'file',
        message:
          'datasets.inspect: file: /etc/x is outside the folders this server may read and write; start the server with --allow-dir to add one',
      }),
    ).toBeUndefined()
    expect(remedy({ code: 'unauthorized', message: 'no token' })).toMatch(/token/)
  })
})
