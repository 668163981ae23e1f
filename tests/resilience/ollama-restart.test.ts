import { truncate } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeProduction, servedTag } from '../../src/activities/promote';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { OllamaClient, OllamaError } from '../../src/llm/ollama';
import { startOllama, type RunningOllama } from '../../src/embedded/ollama-server';
import { rollbackModel } from '../../src/temporal/rollback-client';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  importTinyBase,
  startTestWorker,
  temporalClient,
  testLog,
  tmpDir,
} from '../helpers/env';
import { freePort } from '../helpers/ports';

/**
 * Ollama dies in the middle of a promotion (here: a rollback, which promotes the previous version) on an Ollama of
 * this file's own, killed with SIGKILL, server and runners: the alias does not move while Ollama is away, the
 * retried activity finishes the move once it is back, and no tag is ever missing. Then the other half of a crash
 * during a copy (Ollama writes the served tag's manifest by truncating and rewriting it): a truncated manifest is
 * written whole again by the next promotion.
 */

let db: Db;
let drop: () => Promise<void>;
let server: RunningOllama;
let dir: string;
let port: number;
let ollama: OllamaClient;
let model: ModelDefinition;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
const versions: Record<string, string> = {};

const digestOf = async (tag: string) => (await ollama.list()).find((m) => m.name === tag)?.digest ?? null;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  dir = await tmpDir('ollama-');
  port = await freePort();
  server = await startOllama({ dir, port, log: testLog });
  ollama = new OllamaClient(server.url, { timeoutMs: 10_000 });
  model = await createTestModel(db);
  // Two versions of the model (their weights are the same tiny model; their tags are what matters here).
  for (const v of ['v1', 'v2']) {
    await importTinyBase(ollama, `${model.id}:${v}`);
    const row = await db
      .insertInto('model_versions')
      .values({ model_id: model.id, version: v, status: 'registered', ollama_tag: `${model.id}:${v}` })
      .returning('id')
      .executeTakeFirstOrThrow();
    versions[v] = row.id;
  }
  await makeProduction({ db, ollama }, { actor: 'test', model: model.id, versionId: versions.v1!, reason: 'first' });
  await makeProduction({ db, ollama }, { actor: 'test', model: model.id, versionId: versions.v2!, reason: 'second' });
  temporal = await temporalClient();
  worker = await startTestWorker({
    deps: { db, store: await createTestStore(), log: testLog, ollama, tmpDir: await tmpDir() },
  });
}, 120_000);

afterAll(async () => {
  await worker?.stop();
  await temporal?.close();
  await server?.stop();
  await drop?.();
});

const production = async () =>
  (
    await db
      .selectFrom('aliases')
      .select('version_id')
      .where('model_id', '=', model.id)
      .where('name', '=', 'production')
      .executeTakeFirstOrThrow()
  ).version_id;

describe('Ollama killed during a promotion', () => {
  it('keeps the old version serving while Ollama is away and completes the retried move once it is back', async () => {
    // Arrange
    expect(await production()).toBe(versions.v2);
    await server.kill();
    await expect(ollama.version()).rejects.toBeInstanceOf(OllamaError);

    // Act: the rollback to v1 starts while Ollama is dead; its activity fails and is retried
    const rollback = rollbackModel(temporal.client, {
      model: model.id,
      taskQueue: worker.taskQueue,
      actor: 'test',
      reason: 'ollama crash test',
    });
    await new Promise((r) => setTimeout(r, 3_000));
    const duringOutage = await production();
    server = await startOllama({ dir, port, log: testLog });
    const { result } = await rollback;

    // Assert
    expect(duringOutage).toBe(versions.v2); // nothing moved while the copy could not be made
    expect(result).toMatchObject({ version: 'v1', servedTag: servedTag(model.id) });
    expect(await production()).toBe(versions.v1);
    const tags = (await ollama.list()).map((t) => t.name);
    expect(tags).toEqual(expect.arrayContaining([`${model.id}:v1`, `${model.id}:v2`, servedTag(model.id)]));
    expect(await digestOf(servedTag(model.id))).toBe(await digestOf(`${model.id}:v1`));
    const history = await temporal.client.workflow.getHandle(`rollback:${model.id}`).fetchHistory();
    // The activity that moved it had failed while Ollama was away, and was retried until it could.
    const attempts = history.events!.map((e) => e.activityTaskStartedEventAttributes?.attempt ?? 0);
    expect(Math.max(...attempts)).toBeGreaterThan(1);
  }, 120_000);

  it('writes a served tag whose manifest a crash left truncated whole again on the next promotion', async () => {
    // Arrange: what a SIGKILL in the middle of Ollama's copy leaves behind
    const manifest = path.join(
      server.modelsDir,
      'manifests',
      'registry.ollama.ai',
      'library',
      model.id,
      servedTag(model.id).split(':')[1]!,
    );
    await truncate(manifest, 10);
    await expect(ollama.show(servedTag(model.id))).rejects.toBeInstanceOf(OllamaError);

    // Act
    await makeProduction(
      { db, ollama },
      { actor: 'test', model: model.id, versionId: versions.v2!, reason: 'after the crash' },
    );

    // Assert
    expect(await ollama.show(servedTag(model.id))).not.toBeNull();
    expect(await digestOf(servedTag(model.id))).toBe(await digestOf(`${model.id}:v2`));
    expect(await production()).toBe(versions.v2);
  }, 60_000);
});
