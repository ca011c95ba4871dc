import { describe, expect, it } from 'vitest'
import { ApiError } from '../../src/shared/api'
import { remedy, toUiError } from '../../src/renderer/src/errors'

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

describe('toUiError', () => {
  it("drops the API method's name in front of a message, and nothing else", () => {
    expect(toUiError(new ApiError('forbidden', 'datasets.inspect: file: /etc/x is outside the folders', 'file'))).toEqual({
      code: 'forbidden',
      field: 'file',
      message: 'file: /etc/x is outside the folders',
    })
    expect(toUiError(new ApiError('invalid_argument', 'runs.start: config.lr: must be positive')).message).toBe(
      'config.lr: must be positive',
    )
    expect(toUiError(new ApiError('failed', 'model base is the base of run tuned')).message).toBe('model base is the base of run tuned')
    expect(toUiError(new ApiError('failed', 'notamethod: x')).message).toBe('notamethod: x')
    expect(toUiError({ code: 'failed', message: 'chat.send: model: no config.json' }).message).toBe('model: no config.json')
  })

  it("names a field as the form labels it, where the message starts with the field's name", () => {
    const labels = { outDir: 'Folder to write', maxRows: 'Rows' }
    expect(toUiError(new ApiError('invalid_argument', 'runs.handoff: outDir: /x exists and is not empty', 'outDir'), labels)).toEqual({
      code: 'invalid_argument',
      field: 'outDir',
      message: 'Folder to write: /x exists and is not empty',
    })
    // another field, or a message that does not start with it: as it was
    expect(toUiError(new ApiError('invalid_argument', 'nodes: must be at least 1', 'nodes'), labels).message).toBe(
      'nodes: must be at least 1',
    )
    expect(toUiError(new ApiError('failed', 'outDir: x', 'maxRows'), labels).message).toBe('outDir: x')
  })
})
