/**
 * Uploading a file to the workbench server (server mode): POST /upload with the file as the body,
 * progress as it is sent. The server answers with the file's path in its workspace, which the
 * datasets screen then reads like a typed path. The desktop app has no uploader: its file
 * dialog and drops give paths on the same machine.
 *
 * XMLHttpRequest, not fetch: only it reports how much of a request body has been sent.
 */
import { ApiError } from '../../../shared/api'
import { tokenHelp } from './http'

export interface UploadedFile {
  /** The file's path on the server (in <workspace>/uploads). */
  file: string
  name: string
  bytes: number
}

export interface UploadHooks {
  onProgress?: (sent: number, total: number) => void
  signal?: AbortSignal
}

export interface Uploader {
  /** The largest file the server takes. */
  limit(): Promise<number>
  upload(file: Blob & { readonly name: string }, hooks?: UploadHooks): Promise<UploadedFile>
}

export interface UploaderOptions {
  origin: string
  token: string | undefined
  XMLHttpRequest?: typeof XMLHttpRequest
}

export function httpUploader(options: UploaderOptions): Uploader {
  const Xhr = options.XMLHttpRequest ?? XMLHttpRequest
  let limit: Promise<number> | undefined

  function send<T>(method: 'GET' | 'POST', path: string, body: Blob | null, hooks: UploadHooks = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (hooks.signal?.aborted) return reject(new ApiError('cancelled', 'the upload was cancelled'))
      const xhr = new Xhr()
      xhr.open(method, `${options.origin}${path}`)
      if (options.token) xhr.setRequestHeader('Authorization', `Bearer ${options.token}`)
      if (body) xhr.setRequestHeader('Content-Type', 'application/octet-stream')
      xhr.responseType = 'text'
      if (hooks.onProgress && body) {
        const total = body.size
        xhr.upload.onprogress = (e: ProgressEvent) => hooks.onProgress?.(Math.min(e.loaded, total), total)
      }
      const onAbort = (): void => xhr.abort()
      hooks.signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => hooks.signal?.removeEventListener('abort', onAbort)
      xhr.onload = () => {
        done()
        let payload: { result?: unknown; error?: unknown } = {}
        try {
          payload = JSON.parse(String(xhr.responseText || '{}')) as typeof payload
        } catch {
          return reject(new ApiError('failed', `the server answered HTTP ${xhr.status} without JSON`))
        }
        if (xhr.status === 200 && payload.result !== undefined) return resolve(payload.result as T)
        const error = payload.error !== undefined ? ApiError.from(payload.error) : new ApiError('failed', `unexpected HTTP ${xhr.status}`)
        if (error.code === 'unauthorized')
          return reject(new ApiError('unauthorized', `This page's access token is not the server's. ${tokenHelp(options.origin)}`))
        reject(error)
      }
      xhr.onerror = () => {
        done()
        reject(new ApiError('failed', `the upload broke off: cannot reach the workbench server at ${options.origin}`, 'file'))
      }
      xhr.onabort = () => {
        done()
        reject(new ApiError('cancelled', 'the upload was cancelled'))
      }
      xhr.send(body)
    })
  }

  return {
    limit: () => {
      limit ??= send<{ maxBytes: number }>('GET', '/upload', null).then(
        (r) => r.maxBytes,
        (e: unknown) => {
          limit = undefined // ask again next time
          throw e
        },
      )
      return limit
    },
    upload: (file, hooks = {}) => send<UploadedFile>('POST', `/upload?name=${encodeURIComponent(file.name)}`, file, hooks),
  }
}
