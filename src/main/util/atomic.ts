/**
 * Atomic file writes: write a temporary file beside the target, fsync it, rename it into place.
 * A crash leaves either the old file or the complete new one, never half of either.
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs'

export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`
  try {
    const fd = openSync(tmp, 'w')
    try {
      writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data)
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    renameSync(tmp, file)
  } catch (e) {
    rmSync(tmp, { force: true })
    throw e
  }
}

export function writeJsonAtomic(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + '\n')
}
