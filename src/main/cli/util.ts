/** Pieces shared by the CLI's commands. */
import { BACKEND_NAMES, initBackend, isBackendName, type BackendName } from '../engine/backend'
import { jsonErrorWhere } from '../data/readers'

export type ParsedValues = Record<string, string | boolean | string[] | undefined>

export interface CliIo {
  out: (line: string) => void
  err: (line: string) => void
  /** Text without a newline (streamed tokens); default process.stdout. */
  write?: (text: string) => void
  /** Input for interactive commands; default process.stdin. */
  input?: NodeJS.ReadableStream
  /** out and err both show on one terminal (a line told on err need not be told again on out); default: both are TTYs. */
  oneTerminal?: boolean
}

/** A mistake in the command line: printed with a usage hint, exit code 2. */
export class UsageError extends Error {}

/**
 * A JSON file's text, parsed, or an error with the line and column where it stopped and what is
 * there, as dataset files get (it gave V8's character offset: "at position 46").
 */
export function parseJsonFile(file: string, text: string, make: (message: string) => Error = (m) => new Error(m)): unknown {
  try {
    return JSON.parse(text)
  } catch (e) {
    // one line: V8's message may quote the text, newlines and all
    throw make(`${file}: not valid JSON${jsonErrorWhere(text, (e as Error).message).replace(/\s+/g, ' ')}`)
  }
}

/** Initialises the backend named by --backend (or the environment / auto). */
export async function backendFromFlag(values: ParsedValues, io: CliIo): Promise<BackendName> {
  const flag = values.backend
  if (flag !== undefined && !isBackendName(flag))
    throw new UsageError(`--backend: unknown backend "${String(flag)}"; use one of ${BACKEND_NAMES.join(', ')}`)
  const report = await initBackend(flag as BackendName | undefined, (line) => io.err(line))
  return report.name
}
