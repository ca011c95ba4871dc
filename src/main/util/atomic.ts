/**
 * Atomic file writes: write a temporary file beside the target, fsync it, rename it into place.
 * A crash leaves either the old file or the complete new one, never half of either. Folders go
 * the other way round: renamed aside first, then removed.
 */
import { randomBytes } from 'node:crypto'
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'

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

/**
 * Deletes a folder as one step for everyone listing its parent: renamed aside first (a
 * `.deleting-` name no listing reads), then removed; what an earlier removal left aside (a crash)
 * goes too.
 */
export function removeDirAtomic(dir: string): void {
  const parent = dirname(dir)
  renameSync(dir, join(parent, `.deleting-${basename(dir)}-${randomBytes(4).toString('hex')}`))
  for (const name of readdirSync(parent)) if (name.startsWith('.deleting-')) rmSync(join(parent, name), { recursive: true, force: true })
}
