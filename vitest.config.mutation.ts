/**
 * The unit tests as Stryker runs them (stryker.config.mjs): vitest.config.ts, optionally limited
 * to the test files in MUTATION_TESTS (comma-separated paths or globs), for a run on one file, and
 * to the tests whose names match MUTATION_TEST_NAME (a regular expression; e.g. one that leaves out
 * a minute-long convergence test every mutant of a training loop would otherwise wait for).
 */
import { defineConfig } from 'vitest/config'
import base from './vitest.config'

const only = process.env.MUTATION_TESTS?.split(',')
  .map((s) => s.trim())
  .filter(Boolean)

export default defineConfig({
  test: {
    ...base.test,
    include: only?.length ? only : base.test?.include,
    ...(process.env.MUTATION_TEST_NAME && { testNamePattern: new RegExp(process.env.MUTATION_TEST_NAME) }),
  },
})
