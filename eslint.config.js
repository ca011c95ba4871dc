// Flat ESLint config: typescript-eslint for all TypeScript, eslint-plugin-vue for the renderer's
// single-file components (script blocks in TypeScript only). Formatting is Prettier's job.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'
import pluginVue from 'eslint-plugin-vue'
import globals from 'globals'

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'out/',
      'dist/',
      'test-results/',
      'playwright-report/',
      'e2e/artifacts/',
      'bench/results/',
      '.stryker-tmp/',
      'reports/',
      'scratch/',
      '**/*.d.ts',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...pluginVue.configs['flat/recommended'],
  {
    files: ['**/*.vue'],
    languageOptions: { parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.vue'] } },
    rules: {
      'vue/block-lang': ['error', { script: { lang: 'ts' } }],
      // Prettier decides line breaks and attribute layout.
      'vue/max-attributes-per-line': 'off',
      'vue/singleline-html-element-content-newline': 'off',
      'vue/multiline-html-element-content-newline': 'off',
      'vue/html-self-closing': 'off',
      'vue/html-indent': 'off',
      'vue/html-closing-bracket-newline': 'off',
    },
  },
  {
    files: ['src/renderer/**/*.{ts,vue}'],
    languageOptions: { globals: globals.browser },
  },
  {
    files: ['src/main/**/*.ts', 'src/preload/**/*.ts', 'test/**/*.ts', 'e2e/**/*.ts', 'bench/**/*.ts', 'bin/**/*.js', '*.{js,ts}'],
    languageOptions: { globals: globals.node },
  },
  // The layers (DESIGN.md): the renderer never imports main; shared stays pure; the engine never
  // imports the process host, training, the service or a host; only hosts import electron.
  ...layers(),
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      'no-console': 'off',
    },
  },
)

/** no-restricted-imports per layer: [files, forbidden import patterns, why]. */
function layers() {
  const electron = { name: 'electron', message: 'only the Electron host (src/main/index.ts, src/main/hosts/electron) imports electron' }
  const rule = (files, patterns, paths = [electron], ignores = []) => ({
    files,
    ignores,
    rules: { 'no-restricted-imports': ['error', { paths, patterns }] },
  })
  const group = (dirs, message) => ({ group: dirs.map((d) => `**/${d}/**`).concat(dirs.map((d) => `**/${d}`)), message })
  // Later entries override earlier ones for the same files: the general rule comes first.
  return [
    rule(['src/main/**/*.ts'], [], [electron], ['src/main/index.ts', 'src/main/hosts/electron/**']),
    rule(['src/renderer/**/*.{ts,vue}'], [group(['main'], 'the renderer talks to window.workbench (src/shared/bridge.ts), never to main')]),
    rule(
      ['src/shared/**/*.ts'],
      [
        group(['main', 'renderer'], 'shared code is the contract: pure TypeScript, no main or renderer'),
        { group: ['node:*'], message: 'shared code runs in the renderer too: no Node built-ins' },
      ],
    ),
    rule(
      ['src/main/engine/**/*.ts'],
      [
        group(
          ['engineProcess', 'train', 'service', 'hosts', 'cli', 'data'],
          'the engine (numerics) imports only shared code, util and itself',
        ),
      ],
    ),
    rule(['src/main/train/**/*.ts'], [group(['engineProcess', 'service', 'hosts', 'cli'], 'training sits below the engine process host')]),
    rule(
      ['src/main/engineProcess/**/*.ts'],
      [group(['service', 'hosts', 'cli'], 'the engine process never imports the service or a host')],
    ),
    rule(
      ['src/main/{service,data,runs,util}/**/*.ts'],
      [group(['hosts', 'cli'], 'the service is host-neutral: hosts import it, not the reverse')],
    ),
  ]
}
