import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // Real servers (PostgreSQL, Temporal, MinIO) start once per run in the global setup; each test file gets
    // its own database and task queues, so files may run in parallel on the two cores we have.
    globalSetup: ['tests/setup/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    maxWorkers: 2,
    pool: 'forks',
  },
});
