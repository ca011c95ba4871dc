#!/usr/bin/env node
// The `moe-workbench` command: a thin launcher for the built CLI (out/main/cli.js).
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

const cli = fileURLToPath(new URL('../out/main/cli.js', import.meta.url))
if (!existsSync(cli)) {
  console.error(`moe-workbench: ${cli} is missing; run \`npm run build\` first`)
  process.exit(1)
}
const { main } = await import(pathToFileURL(cli).href)
await main(process.argv.slice(2))
