// Runs a TypeScript worker entry with tsx (development and tests; the built app runs the bundled
// out/main/dataWorker.js directly). workerData.entry is the .ts file to run.
import { workerData } from 'node:worker_threads'
import { tsImport } from 'tsx/esm/api'

await tsImport(workerData.entry, import.meta.url)
