// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import { builtinModules } from 'node:module';

const nodeBuiltins = [...builtinModules, ...builtinModules.map((m) => `node:${m}`)];
const DB_LIBRARIES = ['kysely', 'pg', 'pg-copy-streams', 'pg-cursor'];
const DB_ONLY = 'Database code lives in src/db (queries in src/db/queries/<table>.ts): call a repository function.';

export default tseslint.config(
  { ignores: ['node_modules/**', '.tools/**', '.tuneloop/**', 'dist/**', 'coverage/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The operator pages' own browser script, served as is.
    files: ['src/api/pages/assets/**/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: { window: 'readonly', document: 'readonly', addEventListener: 'readonly', uPlot: 'readonly' },
    },
  },
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
    },
  },
  {
    // Every query lives in src/db/queries (STYLE, "Database"): only src/db (and migrations/, outside src/) speaks to
    // the database's libraries; everything else calls a repository function. Workflows' own rule below bans them too.
    files: ['src/**/*.ts'],
    ignores: [
      'src/db/**',
      // Creates the embedded server's database before any pool exists: a server's bootstrap, not a query.
      'src/embedded/embedded-postgres.ts',
    ],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: DB_LIBRARIES.map((name) => ({ name, message: DB_ONLY })),
        },
      ],
    },
  },
  {
    // Tests and benchmarks check what was stored with kysely's `sql`; they query through src/db otherwise. The test
    // helpers create a database per test file with pg.
    files: ['tests/**/*.ts', 'bench/**/*.ts'],
    ignores: ['tests/helpers/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            { name: 'kysely', allowImportNames: ['sql'], message: `${DB_ONLY} Tests may use its \`sql\`.` },
            ...DB_LIBRARIES.filter((name) => name !== 'kysely').map((name) => ({ name, message: DB_ONLY })),
          ],
        },
      ],
    },
  },
  {
    // Workflow code must be deterministic: no Node built-ins, no I/O libraries, only types from activities.
    files: ['src/workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [...nodeBuiltins, ...DB_LIBRARIES, 'minio', 'express', 'pino', 'ollama', 'embedded-postgres'],
          patterns: [
            {
              group: ['../db/**', '../storage/**', '../api/**', '../cli/**', '../llm/**'],
              message: 'I/O modules are not allowed in workflows.',
            },
            {
              group: ['../activities/**'],
              message: 'Workflows import activity types only (import type).',
              allowTypeImports: true,
            },
          ],
        },
      ],
    },
  },
  {
    // Entry points and scripts may print to the terminal.
    files: ['src/cli/**/*.ts', 'bench/**/*.ts', 'scripts/**/*.ts', 'samples/**/*.ts', 'bin/**'],
    rules: { 'no-console': 'off' },
  },
  { files: ['**/*.js'], ...tseslint.configs.disableTypeChecked },
);
