import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120000,
    pool: 'forks',
    setupFiles: ['test/setup/workspace.ts'],
  },
})
