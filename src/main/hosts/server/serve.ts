/**
 * `moe-workbench serve [--host H] [--port P] [--backend NAME] [--token T]`: starts server mode,
 * prints the page URL with its token (as Jupyter does) and runs until SIGINT/SIGTERM, then closes
 * the server and stops the engine. The token is a new random one each start, or the one given
 * (--token, or MOE_WORKBENCH_TOKEN as JUPYTER_TOKEN: kept out of the process list), which a page
 * left open keeps across a restart.
 */
import { existsSync, statSync } from 'node:fs'
import { join, resolve as resolvePath } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { BACKEND_NAMES, type BackendName, type WorkbenchEvent } from '../../../shared/api'
import { startServer } from './server'
import { isLoopback } from './security'

export interface ServeFlags {
  host?: string | boolean
  port?: string | boolean
  backend?: string | boolean
  token?: string | boolean
  'allow-dir'?: string | boolean | string[]
  'allow-host'?: string | boolean | string[]
  [other: string]: string | boolean | string[] | undefined
}

export interface ServeIo {
  out: (line: string) => void
  err: (line: string) => void
}

const defaultIo: ServeIo = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
}

/** The built renderer, seen from the built main bundle (out/main -> out/renderer). */
export function defaultRendererDir(): string {
  return fileURLToPath(new URL('../renderer', import.meta.url))
}

export interface ServeSettings {
  host: string
  port: number
  backend?: BackendName
  /** --allow-dir (repeatable): folders requests may name; undefined = the defaults. */
  allowDirs?: string[]
  /** --allow-host (repeatable): more Host names a non-loopback server answers to. */
  allowHosts?: string[]
  /** --token or MOE_WORKBENCH_TOKEN: the access token; undefined = a new random one. */
  token?: string
}

/** The environment variable that gives the server its token (as JUPYTER_TOKEN). */
export const TOKEN_ENV = 'MOE_WORKBENCH_TOKEN'

/** A token a page URL carries as it is: long enough not to be guessed. */
const TOKEN_PATTERN = /^[A-Za-z0-9._~-]{16,}$/

/** Validates the flags (and MOE_WORKBENCH_TOKEN); throws an Error naming the flag. */
export function serveSettings(flags: ServeFlags, env: NodeJS.ProcessEnv = process.env): ServeSettings {
  const str = (name: 'host' | 'port' | 'backend' | 'token'): string | undefined => {
    const v = flags[name]
    if (v === undefined) return undefined
    if (typeof v !== 'string' || v === '') throw new Error(`--${name} needs a value`)
    return v
  }
  const host = str('host') ?? '127.0.0.1'
  const portText = str('port') ?? '0'
  if (!/^\d+$/.test(portText) || Number(portText) > 65535)
    throw new Error(`--port: expected a port number 0-65535 (0 picks a free one), got ${JSON.stringify(portText)}`)
  const backend = str('backend')
  if (backend !== undefined && backend !== 'auto' && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new Error(`--backend: unknown backend ${JSON.stringify(backend)}; use one of ${BACKEND_NAMES.join(', ')} or auto`)
  }
  const list = (name: 'allow-dir' | 'allow-host'): string[] | undefined => {
    const v = flags[name]
    if (v === undefined) return undefined
    const items = Array.isArray(v) ? v : [v]
    for (const i of items) if (typeof i !== 'string' || i.trim() === '') throw new Error(`--${name} needs a value`)
    return items as string[]
  }
  const allowDirs = list('allow-dir')?.map((d) => {
    const abs = resolvePath(d)
    if (!existsSync(abs) || !statSync(abs).isDirectory()) throw new Error(`--allow-dir: ${abs} is not a folder`)
    return abs
  })
  const allowHosts = list('allow-host')
  const given = str('token')
  const token = given ?? (env[TOKEN_ENV] || undefined)
  if (token !== undefined && !TOKEN_PATTERN.test(token))
    throw new Error(
      `${given !== undefined ? '--token' : TOKEN_ENV}: use at least 16 characters of A-Z a-z 0-9 . _ ~ - (it goes in the page's URL as it is), e.g. the output of \`openssl rand -hex 32\`; got ${token.length} characters${/[^A-Za-z0-9._~-]/.test(token) ? ' with others among them' : ''}`,
    )
  return {
    host,
    port: Number(portText),
    ...(backend && backend !== 'auto' ? { backend: backend as BackendName } : {}),
    ...(allowDirs && { allowDirs }),
    ...(allowHosts && { allowHosts }),
    ...(token !== undefined && { token }),
  }
}

function parseServeArgv(argv: readonly string[]): ServeFlags {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      host: { type: 'string' },
      port: { type: 'string' },
      backend: { type: 'string' },
      token: { type: 'string' },
      'allow-dir': { type: 'string', multiple: true },
      'allow-host': { type: 'string', multiple: true },
    },
    strict: true,
    allowPositionals: false,
  })
  return values
}

/**
 * Runs server mode until a signal; resolves with the exit code (0 after a clean shutdown, 2 for
 * bad flags, 1 when the server cannot start). Takes raw arguments (`['--port', '8080']`) or
 * flags already parsed by the CLI.
 */
export async function serveCommand(input: readonly string[] | ServeFlags, io: ServeIo = defaultIo): Promise<number> {
  let settings: ServeSettings
  try {
    settings = serveSettings(Array.isArray(input) ? parseServeArgv(input) : (input as ServeFlags))
  } catch (e) {
    io.err(`moe-workbench serve: ${e instanceof Error ? e.message.split('\n')[0] : String(e)} (see moe-workbench --help)`)
    return 2
  }
  const rendererDir = defaultRendererDir()
  if (!existsSync(join(rendererDir, 'index.html'))) {
    io.err(`moe-workbench serve: the renderer is not built (${rendererDir} has no index.html); run \`npm run build\` first`)
    return 1
  }

  let server: Awaited<ReturnType<typeof startServer>>
  try {
    server = await startServer({
      host: settings.host,
      port: settings.port,
      rendererDir,
      ...(settings.backend ? { backend: settings.backend } : {}),
      ...(settings.allowDirs && { allowDirs: settings.allowDirs }),
      ...(settings.allowHosts && { allowHosts: settings.allowHosts }),
      ...(settings.token !== undefined && { token: settings.token }),
    })
  } catch (e) {
    io.err(`moe-workbench serve: cannot listen on ${settings.host}:${settings.port}: ${e instanceof Error ? e.message : String(e)}`)
    return 1
  }

  const verbose = Boolean(process.env.MOE_WORKBENCH_DEBUG)
  server.workbench.onEvent((event) => {
    const line = describeEvent(event, verbose)
    if (line) io.err(line)
  })
  io.out(`MoE Workbench server: ${server.url}`)
  io.err(
    settings.token !== undefined
      ? 'moe-workbench serve: the token is the one you gave: pages opened with it keep working after a restart with the same one'
      : `moe-workbench serve: a new token each start (a page left open needs the new link); set ${TOKEN_ENV} (or --token) to keep one`,
  )
  io.err(
    `moe-workbench serve: requests may name files under ${server.allowDirs.join(', ')} (${settings.allowDirs ? 'your --allow-dir folders replace the home folder' : 'choose others with --allow-dir, which replace the home folder'})`,
  )
  if (!isLoopback(settings.host)) {
    io.err(
      `moe-workbench serve: EXPOSED: listening on ${settings.host}:${server.port}; anyone who can reach this port and has the token can train, read and write files under the folders above`,
    )
    io.err(
      `moe-workbench serve: answering to the names ${server.allowedHosts.join(', ')} (add one with --allow-host); prefer an SSH tunnel to a loopback server`,
    )
  }
  // Start the engine now, so the page finds the backend ready; a failure is shown there too.
  server.workbench.start().catch(() => {})

  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      io.err(`moe-workbench serve: ${signal}, shutting down`)
      process.off('SIGINT', stop)
      process.off('SIGTERM', stop)
      // A second signal while closing exits at once.
      process.once('SIGINT', () => process.exit(130))
      process.once('SIGTERM', () => process.exit(143))
      resolve()
    }
    process.on('SIGINT', stop)
    process.on('SIGTERM', stop)
  })
  await server.close()
  return 0
}

/** One stderr line for an event worth a terminal's attention, or undefined. */
function describeEvent(event: WorkbenchEvent, verbose: boolean): string | undefined {
  switch (event.type) {
    case 'engine.status':
      if (event.status === 'ready' && event.backend) {
        const skipped = event.backend.attempts.filter((a) => !a.ok).map((a) => `${a.name}: ${a.reason ?? 'unavailable'}`)
        return `engine: ready on ${event.backend.name} (pid ${event.pid})${skipped.length ? `; not used: ${skipped.join('; ')}` : ''}`
      }
      if (event.status === 'crashed') return `engine: ${event.reason ?? 'crashed'}`
      return verbose ? `engine: ${event.status}` : undefined
    case 'log':
      if (verbose || event.level === 'error' || (event.level === 'warn' && event.source === 'server'))
        return `${event.source}: ${event.message}`
      return undefined
    case 'run.status':
      return `run ${event.runId}: ${event.status}${event.message ? ` (${event.message})` : ''}`
    case 'run.alert':
      return `run ${event.runId}: ${event.message}`
    default:
      // progress, metrics and tokens are for the UI, not the terminal
      return undefined
  }
}
