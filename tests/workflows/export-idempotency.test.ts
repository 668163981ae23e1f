import type { Client } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Db } from '../../src/db/pool';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { BlobStore } from '../../src/storage/blob-store';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  seed,
  startTestWorker,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
} from '../helpers/env';

let db: Db;
let drop: () => Promise<void>;
let client: Client;
let closeClient: () => Promise<void>;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  ({ client, close: closeClient } = await temporalClient());
});
afterAll(async () => {
  await closeClient?.();
  await drop?.();
});

/** The real store, except that the first `failures` manifest writes succeed and then report a crash. */
function crashAfterManifest(store: BlobStore, failures: number): BlobStore & { crashes: number } {
  const wrapped = {
    crashes: 0,
    url: store.url,
    get: (key: string) => store.get(key),
    stat: (key: string) => store.stat(key),
    list: (prefix: string) => store.list(prefix),
    delete: (key: string) => store.delete(key),
    deletePrefix: (prefix: string) => store.deletePrefix(prefix),
    ping: () => store.ping(),
    put: async (...args: Parameters<BlobStore['put']>) => {
      const info = await store.put(...args);
      if (args[0].endsWith('/manifest.json') && wrapped.crashes < failures) {
        wrapped.crashes++;
        throw new Error(`injected crash after writing ${args[0]}`);
      }
      return info;
    },
  };
  return wrapped;
}

describe('export idempotency', () => {
  it('leaves exactly one dataset and one set of objects after failing twice after writing', async () => {
    // Arrange
    const store = crashAfterManifest(await createTestStore(), 2);
    const worker = await startTestWorker({
      deps: { db, store, log: testLog, ollama: testOllama(), tmpDir: await tmpDir() },
    });
    const model = await createTestModel(db);
    await seed(
      db,
      model,
      Array.from({ length: 40 }, (_, i) => ({ subject: `u${i % 5}`, user: `question ${i}`, assistant: `answer ${i}` })),
      { u0: true, u1: true, u2: true, u3: true, u4: true },
    );
    try {
      // Act
      const run = await startPipeline(client, db, {
        model: model.id,
        taskQueue: worker.taskQueue,
        trigger: 'test',
        requestedBy: null,
      });
      const result = await run.result();

      // Assert
      expect(store.crashes).toBe(2);
      expect(result.status).toBe('succeeded');
      const datasets = await db.selectFrom('datasets').selectAll().where('model_id', '=', model.id).execute();
      expect(datasets).toHaveLength(1);
      expect(datasets[0]!.status).toBe('ready');
      const keys: string[] = [];
      for await (const b of store.list(`datasets/${model.id}/`)) keys.push(b.key);
      expect(keys.sort()).toEqual(
        ['manifest.json', 'train.jsonl', 'validation.jsonl'].map((n) => `${datasets[0]!.prefix}${n}`),
      );
      const items = await db
        .selectFrom('dataset_items')
        .select('interaction_id')
        .where('dataset_id', '=', datasets[0]!.id)
        .execute();
      expect(items).toHaveLength(40);
      expect(new Set(items.map((i) => i.interaction_id)).size).toBe(40);
      // The third attempt is the one that completed.
      const history = await client.workflow.getHandle(run.workflowId, run.runId).fetchHistory();
      const exportAttempts = history
        .events!.filter((e) => e.activityTaskStartedEventAttributes)
        .map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 0);
      expect(Math.max(...exportAttempts)).toBe(3);
    } finally {
      await worker.stop();
    }
  });
});
