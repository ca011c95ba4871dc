import { describe, expect, it } from 'vitest'
import { httpUploader } from '../../../src/renderer/src/api/upload'

/** An XMLHttpRequest stand-in: records what was sent; the test answers it. */
function xhrKind() {
  const made: FakeXhr[] = []
  class FakeXhr {
    method = ''
    url = ''
    headers: Record<string, string> = {}
    body: unknown
    status = 0
    responseText = ''
    responseType = ''
    upload: { onprogress?: (e: { loaded: number }) => void } = {}
    onload?: () => void
    onerror?: () => void
    onabort?: () => void
    aborted = false
    constructor() {
      made.push(this)
    }
    open(method: string, url: string): void {
      this.method = method
      this.url = url
    }
    setRequestHeader(name: string, value: string): void {
      this.headers[name] = value
    }
    send(body: unknown): void {
      this.body = body
    }
    abort(): void {
      this.aborted = true
      this.onabort?.()
    }
    answer(status: number, body: unknown): void {
      this.status = status
      this.responseText = JSON.stringify(body)
      this.onload?.()
    }
  }
  return { made, Xhr: FakeXhr as unknown as typeof XMLHttpRequest }
}

describe('httpUploader', () => {
  it('POSTs the file as octet-stream with the token and its name, reports progress and returns its path on the server', async () => {
    const { made, Xhr } = xhrKind()
    const uploader = httpUploader({ origin: 'http://127.0.0.1:5000', token: 't0k', XMLHttpRequest: Xhr })
    const file = new File(['0123456789'], 'my data.jsonl')
    const seen: [number, number][] = []
    const done = uploader.upload(file, { onProgress: (sent, total) => seen.push([sent, total]) })
    const xhr = made[0]
    expect(xhr.method).toBe('POST')
    expect(xhr.url).toBe('http://127.0.0.1:5000/upload?name=my%20data.jsonl')
    expect(xhr.headers).toEqual({ Authorization: 'Bearer t0k', 'Content-Type': 'application/octet-stream' })
    expect(xhr.body).toBe(file)
    xhr.upload.onprogress?.({ loaded: 4 })
    xhr.upload.onprogress?.({ loaded: 10 })
    xhr.answer(200, { result: { file: '/ws/uploads/x/my data.jsonl', name: 'my data.jsonl', bytes: 10 } })
    expect(await done).toEqual({ file: '/ws/uploads/x/my data.jsonl', name: 'my data.jsonl', bytes: 10 })
    expect(seen).toEqual([
      [4, 10],
      [10, 10],
    ])
  })

  it('asks the limit once, and rejects with the server’s error, a refused token’s help, a cancel or a lost server', async () => {
    const { made, Xhr } = xhrKind()
    const uploader = httpUploader({ origin: 'http://127.0.0.1:5000', token: 't', XMLHttpRequest: Xhr })
    const limit = uploader.limit()
    made[0].answer(200, { result: { maxBytes: 2048 } })
    expect(await limit).toBe(2048)
    expect(await uploader.limit()).toBe(2048)
    expect(made).toHaveLength(1)
    expect(made[0]).toMatchObject({ method: 'GET', url: 'http://127.0.0.1:5000/upload', body: null })

    const file = new File(['x'], 'a.jsonl')
    const big = uploader.upload(file)
    made[1].answer(413, { error: { code: 'invalid_argument', message: 'file: larger than the upload limit', field: 'file' } })
    await expect(big).rejects.toMatchObject({ code: 'invalid_argument', field: 'file', message: 'file: larger than the upload limit' })

    const refused = uploader.upload(file)
    made[2].answer(401, { error: { code: 'unauthorized', message: 'a valid token is required' } })
    await expect(refused).rejects.toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/moe-workbench serve/) })

    const controller = new AbortController()
    const cancelled = uploader.upload(file, { signal: controller.signal })
    controller.abort()
    expect(made[3].aborted).toBe(true)
    await expect(cancelled).rejects.toMatchObject({ code: 'cancelled' })

    const lost = uploader.upload(file)
    made[4].onerror?.()
    await expect(lost).rejects.toMatchObject({ code: 'failed', message: expect.stringMatching(/the upload broke off/) })
  })
})
