/**
 * A model folder's config.json, read and normalised. Free of TF.js, so the service (which never
 * loads the engine's numerics) reads configs with the same checks and messages as the engine.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ConfigError, fromHfConfig, type MoeConfig } from '../../shared/modelConfig'
import { CheckpointError } from './weights'

/** Reads and normalises a folder's config.json. */
export function readModelConfig(dir: string): MoeConfig {
  const file = join(dir, 'config.json')
  if (!existsSync(dir)) throw new CheckpointError(`${dir}: no such folder; give the folder of a Hugging Face checkpoint`)
  if (!existsSync(file))
    throw new CheckpointError(`${file}: not found; a model folder needs config.json and *.safetensors (a Hugging Face checkpoint)`)
  let json: unknown
  try {
    json = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    throw new CheckpointError(`${file}: not valid JSON (${(e as Error).message})`)
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new CheckpointError(`${file}: must hold a JSON object`)
  try {
    return fromHfConfig(json as Record<string, unknown>, file)
  } catch (e) {
    if (e instanceof ConfigError) throw new CheckpointError(e.message)
    throw e
  }
}
