/** Starts the engine as an Electron utilityProcess (a Node child that Electron manages). */
import { utilityProcess } from 'electron'
import type { EngineSpawner } from '../../service/engineClient'
import { engineArgs, engineEnv } from '../../service/engineClient'

export function utilityProcessSpawner(entry: string): EngineSpawner {
  return (options) => {
    const child = utilityProcess.fork(entry, engineArgs(options), {
      serviceName: 'MoE Workbench engine',
      stdio: 'pipe',
      env: engineEnv(process.env),
    })
    return {
      get pid() {
        return child.pid ?? null
      },
      send: (message) => child.postMessage(message),
      kill: () => void child.kill(),
      onMessage: (listener) => void child.on('message', listener),
      // utilityProcess reports a code only; a crash shows as a non-zero code.
      onExit: (listener) => void child.once('exit', (code) => listener({ code, signal: null })),
      stdout: child.stdout,
      stderr: child.stderr,
    }
  }
}
