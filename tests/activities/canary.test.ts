import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCanaryActivities } from '../../src/activities/canary';
import type { ActivityDeps } from '../../src/activities/deps';
import { getVersion, moveAlias, servingAliases } from '../../src/db/queries/registry';
import { insertServingCalls } from '../../src/db/queries/serving';
import type { ModelDefinition } from '../../src/domain/model-config';
import { OllamaClient } from '../../src/llm/ollama';
import { startOllama, type RunningOllama } from '../../src/embedded/ollama-server';
import { createTestDb, createTestModel, createTestStore, importTinyBase, testLog, tmpDir } from '../helpers/env';
import { freePort } from '../helpers/ports';

/**
 * The canary's first step against a real Ollama of this file's own (the test run's shared one would not do: every
 * test imports the same tiny weights, and Ollama keeps one runner per weights file, whichever tag asked for it):
 * the model is loaded before subjects reach it.
 */

let deps: ActivityDeps;
let drop: () => Promise<void>;
let model: ModelDefinition;
let server: RunningOllama;

beforeAll(async () => {
  const { db, drop: dropDb } = await createTestDb();
  drop = dropDb;
  server = await startOllama({ dir: await tmpDir('ollama-'), port: await freePort(), log: testLog });
  const ollama = new OllamaClient(server.url, { timeoutMs: 30_000 });
  deps = { db, store: await createTestStore(), log: testLog, ollama, tmpDir: await tmpDir() };
  model = await createTestModel(db);
});
afterAll(async () => {
  await deps?.ollama.close();
  await server?.stop();
  await drop?.();
});

async function version(name: string, tag: string): Promise<string> {
  const row = await deps.db
    .insertInto('model_versions')
    .values({ model_id: model.id, version: name, status: 'registered', ollama_tag: tag })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

async function waitUntil(check: () => Promise<boolean>) {
  for (let i = 0; i < 100 && !(await check()); i++) await new Promise((r) => setTimeout(r, 100));
  return check();
}

describe('canary steps', () => {
  it('load the canary’s model into Ollama before its subjects are routed to it', async () => {
    // Arrange: the version's tag exists but is not in memory
    const tag = `${model.id}:warm`;
    await importTinyBase(deps.ollama, tag);
    const versionId = await version('warm', tag);
    await deps.ollama.load(tag, { keepAlive: 0 });
    expect(await waitUntil(async () => !(await deps.ollama.loaded()).includes(tag))).toBe(true);

    // Act
    await createCanaryActivities(deps).setCanary({ runId: 'r1', model: model.id, versionId, percent: 5 });

    // Assert
    expect(await deps.ollama.loaded()).toContain(tag);
    const aliases = await servingAliases(deps.db, model.id);
    expect(aliases.canary).toMatchObject({ versionId, percent: 5 });
  });

  it('still begin the step when the model cannot be loaded: its errors are the comparison’s to judge', async () => {
    // Arrange: a version whose tag Ollama does not have
    const versionId = await version('gone', `${model.id}:gone`);

    // Act
    await createCanaryActivities(deps).setCanary({ runId: 'r2', model: model.id, versionId, percent: 5 });

    // Assert
    const aliases = await servingAliases(deps.db, model.id);
    expect(aliases.canary).toMatchObject({ versionId, percent: 5 });
  });
});

describe('the canary judged and ended on the database (what a rolled-back run leaves)', () => {
  it('fails at once on five failed calls of the step, and ending it leaves production serving alone', async () => {
    // Arrange: production and a canary at 50 %, five failed canary calls since the step began
    const production = await version('prod', `${model.id}:prod`);
    const canary = await version('bad', `${model.id}:bad`);
    await deps.db.transaction().execute((trx) =>
      moveAlias(trx, {
        model: model.id,
        name: 'production',
        versionId: production,
        percent: null,
        actor: 't',
        reason: 't',
      }),
    );
    const activities = createCanaryActivities(deps);
    const { since } = await activities.setCanary({ runId: 'r3', model: model.id, versionId: canary, percent: 50 });
    await insertServingCalls(
      deps.db,
      Array.from({ length: 5 }, () => ({
        model: model.id,
        versionId: canary,
        alias: 'canary' as const,
        ok: false,
        fellBack: true,
        error: 'model not found',
        latencyMs: 5,
        schemaValid: null,
        interactionId: null,
        callId: randomUUID(),
      })),
    );

    // Act
    const verdict = await activities.compareCanary({ runId: 'r3', model: model.id, versionId: canary, since });
    await activities.endCanary({ runId: 'r3', model: model.id, versionId: canary, reason: verdict.reasons.join('; ') });

    // Assert
    expect(verdict.verdict).toBe('fail');
    expect(verdict.reasons.join()).toMatch(/error rate 100\.0 %/);
    const aliases = await servingAliases(deps.db, model.id);
    expect(aliases.canary).toBeUndefined();
    expect(aliases.production).toMatchObject({ versionId: production });
    const row = await getVersion(deps.db, canary);
    expect([row?.status, row?.status_reason]).toEqual(['rolled_back', expect.stringMatching(/error rate 100\.0 %/)]);
  });
});
