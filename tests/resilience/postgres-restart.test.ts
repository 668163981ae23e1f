import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import { migrateToLatest } from '../../src/db/migrate';
import { createDb, type Db } from '../../src/db/pool';
import { setConsent } from '../../src/db/queries/interactions';
import { startEmbeddedPostgres, type RunningPostgres } from '../../src/embedded/embedded-postgres';
import { REPO_ROOT } from '../../src/embedded/temporal-dev-server';
import { createTestModel, testLog, tmpDir, uid } from '../helpers/env';
import { freePort } from '../helpers/ports';

/**
 * A real PostgreSQL restart under a real API process and a real worker process, both started with the CLI:
 * neither dies, the API answers 503 while the database is gone, every write it acknowledged is there
 * afterwards, and a pipeline run that spans the restart completes.
 */
let pgDir: string;
let pgPort: number;
let pg: RunningPostgres;
let db: Db;
let api: ChildProcess;
let worker: ChildProcess;
let apiUrl: string;
const logs: string[] = [];

function startCli(args: string[], env: Record<string, string>): ChildProcess {
  const bin = path.join(REPO_ROOT, 'bin/tuneloop');
  const child = spawn(process.execPath, [bin, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const keep = (d: Buffer) => logs.push(`[${args[0]}] ${d.toString()}`);
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  return child;
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${logs.slice(-20).join('')}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  pgDir = await tmpDir('restart-pg-');
  pgPort = await freePort();
  pg = await startEmbeddedPostgres({ dir: pgDir, port: pgPort, log: testLog });
  db = createDb(pg.url, testLog, 4);
  await migrateToLatest(db);
  const apiPort = await freePort();
  const env = {
    DATABASE_URL: pg.url,
    TEMPORAL_ADDRESS: inject('temporalAddress'),
    TUNELOOP_TASK_QUEUE: uid('tq-restart-'),
    TUNELOOP_API_PORT: String(apiPort),
    TUNELOOP_HOME: await tmpDir('restart-home-'),
    TUNELOOP_STORE: `file://${await tmpDir('restart-store-')}`,
    LOG_LEVEL: 'warn',
  };
  api = startCli(['api'], env);
  worker = startCli(['worker'], env);
  apiUrl = `http://127.0.0.1:${apiPort}`;
  await waitFor('the API to be ready', async () => ((await fetch(`${apiUrl}/readyz`)).ok ? true : undefined));
});

afterAll(async () => {
  for (const p of [api, worker]) p?.kill('SIGTERM');
  await Promise.all([api, worker].map((p) => p && p.exitCode === null && new Promise((r) => p.once('exit', r))));
  await db?.destroy();
  await pg?.stop();
});

async function restartPostgres(downMs: number) {
  await pg.stop();
  await new Promise((r) => setTimeout(r, downMs));
  pg = await startEmbeddedPostgres({ dir: pgDir, port: pgPort, log: testLog });
}

describe('PostgreSQL restart', () => {
  it('keeps every acknowledged interaction and both processes alive during API traffic', async () => {
    // Arrange
    const model = await createTestModel(db);
    const { key } = await createApiKey(db, { name: 'restart', role: 'app', appId: model.app, models: [model.id] });
    const acked: string[] = [];
    const statuses = new Map<number, number>();
    let stop = false;
    const traffic = async (lane: number) => {
      for (let i = 0; !stop; i++) {
        const id = `lane${lane}-${i}`;
        const res = await fetch(`${apiUrl}/v1/interactions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ id, model: model.id, subject: `s${i % 7}`, prompt: `q ${id}`, completion: `a ${id}` }),
        }).catch(() => null);
        const status = res?.status ?? 0;
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
        if (res && res.status >= 200 && res.status < 300) acked.push(id);
        await new Promise((r) => setTimeout(r, 20));
      }
    };

    // Act: traffic before, during and after a restart
    const lanes = [traffic(1), traffic(2)];
    await new Promise((r) => setTimeout(r, 1_500));
    await restartPostgres(2_000);
    await waitFor('the API to serve again', async () => ((await fetch(`${apiUrl}/readyz`)).ok ? true : undefined));
    await new Promise((r) => setTimeout(r, 1_500));
    stop = true;
    await Promise.all(lanes);

    // Assert
    expect(api.exitCode).toBeNull();
    expect(worker.exitCode).toBeNull();
    expect([...statuses.keys()].every((s) => s === 201 || s === 503)).toBe(true);
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(acked.length).toBeGreaterThan(20);
    const stored = await waitFor('the test pool to reconnect', () =>
      db.selectFrom('interactions').select('external_id').where('model_id', '=', model.id).execute(),
    );
    const storedIds = new Set(stored.map((r) => r.external_id));
    expect(acked.filter((id) => !storedIds.has(id))).toEqual([]);
  });

  it('completes a pipeline run that spans a database restart', async () => {
    // Arrange
    const model = await createTestModel(db);
    const { key } = await createApiKey(db, { name: 'restart-operator', role: 'operator', appId: null, models: [] });
    const { key: appKey } = await createApiKey(db, {
      name: 'restart-app',
      role: 'app',
      appId: model.app,
      models: [model.id],
    });
    await db
      .transaction()
      .execute((trx) => setConsent(trx, { appId: model.app, subject: 'u', training: true, policyVersion: 'v1' }));
    const batch = Array.from({ length: 200 }, (_, i) => ({
      id: `r${i}`,
      model: model.id,
      subject: 'u',
      prompt: `q${i}`,
      completion: `a${i}`,
    }));
    const posted = await fetch(`${apiUrl}/v1/interactions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${appKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ interactions: batch }),
    });
    expect(posted.status).toBe(201);

    // Act: start the run, then take the database away while it is in flight
    const res = await fetch(`${apiUrl}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: model.id }),
    });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const outageStarted = Date.now();
    await restartPostgres(3_000);

    // Assert
    const run = await waitFor(
      'the run to finish',
      async () => {
        const r = await fetch(`${apiUrl}/v1/runs/${id}`, { headers: { authorization: `Bearer ${key}` } });
        if (!r.ok) return undefined;
        const body = (await r.json()) as { run: { status: string; endedAt: string } };
        return body.run.status === 'running' ? undefined : body.run;
      },
      90_000,
    );
    expect(run.status).toBe('succeeded');
    expect(new Date(run.endedAt).getTime()).toBeGreaterThan(outageStarted); // it really spanned the outage
    const items = await db
      .selectFrom('dataset_items')
      .innerJoin('datasets', 'datasets.id', 'dataset_items.dataset_id')
      .select(({ fn }) => fn.countAll<string>().as('n'))
      .where('datasets.run_id', '=', id)
      .executeTakeFirstOrThrow();
    expect(Number(items.n)).toBe(200);
    expect(api.exitCode).toBeNull();
    expect(worker.exitCode).toBeNull();
  });
});
