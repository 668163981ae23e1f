import { Router } from 'express';
import type { Client } from '@temporalio/client';
import { ping, type Db } from '../db/pool';
import type { BlobStore } from '../storage/blob-store';

const withTimeout = <T>(p: Promise<T>, ms: number) =>
  Promise.race([
    p,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms).unref()),
  ]);

/** /healthz: the process is up. /readyz: it can do its job (database, workflow engine, blob store). */
export function createHealthRouter({ db, temporal, store }: { db: Db; temporal: Client; store: BlobStore }) {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', async (_req, res) => {
    const checks: Record<string, () => Promise<unknown>> = {
      database: () => ping(db),
      temporal: () => temporal.connection.workflowService.getSystemInfo({}),
      store: () => store.ping(),
    };
    const results = await Promise.all(
      Object.entries(checks).map(async ([name, check]) => {
        try {
          await withTimeout(check(), 3_000);
          return [name, { ok: true }] as const;
        } catch (err) {
          // Name the failing dependency, not its connection string or credentials.
          return [
            name,
            { ok: false, error: err instanceof Error ? err.message.split('\n')[0]!.slice(0, 200) : 'failed' },
          ] as const;
        }
      }),
    );
    const ready = results.every(([, r]) => r.ok);
    res
      .status(ready ? 200 : 503)
      .json({ status: ready ? 'ready' : 'unavailable', checks: Object.fromEntries(results) });
  });
  return router;
}
