import { resolve } from 'node:path'
import { defineConfig } from 'electron-vite'
import vue from '@vitejs/plugin-vue'

const r = (p: string): string => resolve(import.meta.dirname, p)

export default defineConfig({
  main: {
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
