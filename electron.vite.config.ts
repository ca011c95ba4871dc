import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { defineConfig } from 'electron-vite'
import vue from '@vitejs/plugin-vue'

const r = (p: string): string => resolve(import.meta.dirname, p)

/**
 * This build's identity, the same in the main bundle and the page: the version and a hash of the
 * sources and package.json, so a rebuild of unchanged code keeps it. A server left running across
 * an update serves the new page against its old code; the page compares the two (src/shared/build.ts).
 */
function buildId(): string {
  const hash = createHash('sha256')
  const add = (file: string): void =>
    void hash
      .update(relative(r('.'), file))
      .update('\0')
      .update(readFileSync(file))
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)))
      if (e.isDirectory()) walk(join(dir, e.name))
      else add(join(dir, e.name))
  }
  walk(r('src'))
  add(r('package.json'))
  const { version } = JSON.parse(readFileSync(r('package.json'), 'utf8')) as { version: string }
  return `${version}+${hash.digest('hex').slice(0, 12)}`
}
const define = { __WORKBENCH_BUILD__: JSON.stringify(buildId()) }

export default defineConfig({
  main: {
    define,
    // Dependencies (tfjs, ws, zod...) stay external: they are resolved from node_modules at run
    // time, so the native tfjs-node backends keep working and the bundle stays small. The optional
    // backends too: webgpu loads its native dawn.node relative to its own folder, onnxruntime-node
    // its binding and libonnxruntime.
    build: {
      externalizeDeps: { include: ['webgpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'onnxruntime-node'] },
      rollupOptions: {
        input: {
          // Electron's main process.
          index: r('src/main/index.ts'),
          // The headless CLI (bin/moe-workbench.js imports it): serve, info, forward, generate...
          cli: r('src/main/cli/index.ts'),
          // The engine process, forked by the service (utilityProcess inside Electron).
          engine: r('src/main/engineProcess/process.ts'),
          // The datasets worker thread: inspection and import, tokenising included, off the service's thread.
          dataWorker: r('src/main/data/worker.ts'),
        },
        output: {
          // Shared chunks next to the entries, so `import.meta.url` means out/main/ in every module.
          chunkFileNames: '[name]-[hash].js',
        },
      },
    },
  },
  preload: {
    build: {
      rollupOptions: {
        input: { index: r('src/preload/index.ts') },
        // A sandboxed preload must be one CommonJS file: Electron loads it with its own require.
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    define,
    root: r('src/renderer'),
    resolve: {
      alias: { '@renderer': r('src/renderer/src') },
    },
    build: {
      // electron-vite leaves the renderer unminified; server mode sends it over the network
      // (an SSH tunnel to a GPU box), where 2 MB of ECharts, Vue and zod is worth minifying.
      minify: true,
      rollupOptions: {
        input: { index: r('src/renderer/index.html') },
      },
    },
    plugins: [vue()],
  },
})
