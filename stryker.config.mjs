// @ts-check
/**
 * Mutation testing (StrykerJS) of the engine, the trainer and the shared code: `npm run
 * test:mutation`. A surviving mutant is a missing test or dead code. Incremental: a rerun only
 * re-tests mutants whose code or tests changed (reports/stryker-incremental.json).
 *
 * One file at a time, with the tests that cover it:
 *   MUTATION_TESTS=test/main/engine/moe.test.ts npx stryker run --mutate src/main/engine/losses.ts
 */
import process from 'node:process'
import { useSoftwareVulkanWhereNoDriver } from './test/main/engine/vulkanEnv.mjs'

// Stryker's vitest runner runs the tests in worker threads, whose process.env is a copy: setting
// VK_ICD_FILENAMES there (test/main/engine/webgpuEnv.ts) does not reach the Vulkan loader, which
// reads the process's real environment. Set it here, before the runners start, so the WebGPU
// tests (and backend.ts's mutants) run on SwiftShader as they do under plain vitest.
useSoftwareVulkanWhereNoDriver()
// A mutant that breaks loading the native matmul must fail its tests, not skip them (they skip
// where onnxruntime-node is not installed; see test/main/engine/helpers.ts wasmMatMulPaths).
process.env.MOE_WORKBENCH_REQUIRE_NATIVE_MATMUL = '1'

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
const config = {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  // vitest.config.mutation.ts: the unit tests (or MUTATION_TESTS), without end-to-end specs.
  vitest: { configFile: 'vitest.config.mutation.ts', related: true },
  mutate: ['src/main/engine/**/*.ts', 'src/main/train/**/*.ts', 'src/shared/**/*.ts', '!**/*.d.ts'],
  coverageAnalysis: 'perTest',
  incremental: true,
  incrementalFile: 'reports/stryker-incremental.json',
  ignorePatterns: ['out', 'playwright-report', 'test-results', 'e2e', 'docs', 'bench/results', '.workspace'],
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 80, low: 60, break: null },
  // Engine tests start TF.js backends and train tiny models: allow for it.
  timeoutMS: 60_000,
  tempDirName: '.stryker-tmp',
}
export default config
