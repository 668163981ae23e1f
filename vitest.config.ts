import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    pool: 'forks',
    projects: [
      {
        // Pure logic and decisions: no servers, milliseconds each (`vitest run --project unit`).
        extends: true,
        test: { name: 'unit', include: ['tests/unit/**/*.test.ts'] },
      },
      {
        // The workflows' decisions on Temporal's time-skipping test server with fake activities: seconds, days of
        // timers skipped (`vitest run --project decisions`).
        extends: true,
        test: { name: 'decisions', include: ['tests/decisions/**/*.test.ts'] },
      },
      {
        // Real servers (PostgreSQL, Temporal, Ollama) start once per run in the global setup; each test file gets
        // its own database and task queues, so files may run in parallel on the two cores we have.
        extends: true,
        test: {
          name: 'integration',
          include: ['tests/**/*.test.ts'],
          exclude: ['tests/unit/**', 'tests/decisions/**'],
          globalSetup: ['tests/setup/global-setup.ts'],
        },
      },
    ],
  },
});
