/**
 * Errors as the UI shows them: the message, and the field it concerns when the service named one
 * (ApiError.field, a dotted path such as `config.optimizer.lr`), so a form can mark that field.
 */
import { ApiError, METHODS } from '../../shared/api'

export interface UiError {
  message: string
  /** Dotted path of the bad field (invalid_argument), when known. */
  field?: string
  code?: ApiError['code']
}

/**
 * The message without the API method's name in front ("datasets.inspect: file: ..." reads
 * "file: ..."): the name helps a script that made the call, not someone who pressed a button.
 */
function withoutMethod(message: string): string {
  const colon = message.indexOf(': ')
  return colon > 0 && (METHODS as readonly string[]).includes(message.slice(0, colon)) ? message.slice(colon + 2) : message
}

/**
 * An error as a form shows it. `labels` names fields as the form does: "outDir: /x exists ..."
 * reads "Folder to write: /x exists ..." (a field's dotted name means nothing on screen).
 */
export function toUiError(e: unknown, labels: Record<string, string> = {}): UiError {
  const error = ApiError.from(e)
  let message = withoutMethod(error.message)
  const label = error.field !== undefined ? labels[error.field] : undefined
  if (label && message.startsWith(`${error.field}: `)) message = `${label}: ${message.slice(error.field!.length + 2)}`
  const out: UiError = { message, code: error.code }
  if (error.field !== undefined) out.field = error.field
  return out
}

/** Whether the user stopped the operation themselves (tasks.cancel): nothing to report as a failure. */
export function isCancelled(e: unknown): boolean {
  // An ApiError, or its JSON or UiError form (they carry the same code).
  return ApiError.from(e).code === 'cancelled'
}

/** What to do about an error, in a few words, from its code (shown under the message). */
export function remedy(error: UiError): string | undefined {
  switch (error.code) {
    case 'engine_unavailable':
      return 'The engine process stopped; it restarts on the next request. Try again, and see the engine log on Home if it keeps failing.'
    case 'unauthorized':
      return 'The server token is missing or wrong: open the URL the server printed at start.'
    case 'forbidden':
      // A path outside the allowed folders names its field and says what to do itself.
      return error.field ? undefined : 'This page is not allowed to call the server: open the URL the server printed at start.'
    default:
      return undefined
  }
}
