import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCanaryActivities } from '../../src/activities/canary';
import { createApiKey } from '../../src/api/auth';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { bucketOf } from '../../src/domain/routing';
import { OllamaClient } from '../../src/llm/ollama';
import { startOllama, type RunningOllama } from '../../src/embedded/ollama-server';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  importTinyBase,
  startTestApi,
  temporalClient,
  testLog,
  tmpDir,
  uid,
} from '../helpers/env';
import { freePort } from '../helpers/ports';

/**
 * Canary traffic answered by a second Ollama that reads the first one's models. Ollama keeps one runner per weights
 * file and reloads it whenever a request for the same weights asks for other adapters or runner options: served by
 * one server, production and a canary built on production's base take the runner from each other at every switch.
 * Here production and canary differ in their context length (a runner option: the same reload a different adapter
 * causes) on Ollamas of this file's own.
 */

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let main: RunningOllama;
let reader: RunningOllama;
let ollama: OllamaClient;
let canaryOllama: OllamaClient;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let key: string;
const tags = { production: '', canary: '' };

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const dir = await tmpDir('ollama-');
  main = await startOllama({ dir, port: await freePort(), log: testLog });
  reader = await startOllama({ dir, port: await freePort(), log: testLog, readsModelsOf: true });
  ollama = new OllamaClient(main.url, { timeoutMs: 30_000 });
  canaryOllama = new OllamaClient(reader.url, { timeoutMs: 30_000 });
  model = await createTestModel(db);
  ({ key } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
  tags.production = `${model.id}:v1`;
  tags.canary = `${model.id}:v2`;
  await importTinyBase(ollama, tags.production, { num_ctx: 512 });
  await importTinyBase(ollama, tags.canary, { num_ctx: 1024 });
  for (const [alias, version] of [
    ['production', 'v1'],
    ['canary', 'v2'],
  ] as const) {
    const row = await db
      .insertInto('model_versions')
      .values({ model_id: model.id, version, status: 'registered', ollama_tag: `${model.id}:${version}` })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db
      .insertInto('aliases')
      .values({ model_id: model.id, name: alias, version_id: row.id, percent: alias === 'canary' ? 50 : null })
      .execute();
  }
  const temporal = await temporalClient();
  closeClient = temporal.close;
  api = await startTestApi({
    db,
    temporal: temporal.client,
    store: await createTestStore(),
    taskQueue: uid('tq-'),
    ollama,
    canaryOllama,
  });
});

afterAll(async () => {
  await api?.close();
  await closeClient?.();
  await ollama?.close();
  await canaryOllama?.close();
  await reader?.stop();
  await main?.stop();
  await drop?.();
});

const subject = (toCanary: boolean) => {
  for (let i = 0; ; i++) if (bucketOf(model.id, `s-${i}`) < 50 === toCanary) return `s-${i}`;
};
const ask = (who: string) =>
  api.call('POST', '/v1/chat', key, {
    model: model.id,
    subject: who,
    messages: [{ role: 'user', content: 'squats?' }],
    options: { num_predict: 4 },
  });

describe('a canary served by an Ollama of its own', () => {
  it('is answered there, and production’s runner stays loaded in production’s Ollama throughout', async () => {
    // Arrange
    const [onCanary, onProduction] = [subject(true), subject(false)];

    // Act: calls alternate between the two, as they do under real traffic at 50 %
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await ask(i % 2 ? onCanary : onProduction));

    // Assert
    expect(answers.map((a) => [a.status, a.json.version])).toEqual(
      Array.from({ length: 6 }, (_, i) => [200, i % 2 ? 'v2' : 'v1']),
    );
    expect(await ollama.loaded()).toEqual([tags.production]);
    expect(await canaryOllama.loaded()).toEqual([tags.canary]);
  });

  it('is unloaded from the canary’s Ollama when the canary ends, and production’s runner is left alone', async () => {
    // Arrange
    const acts = createCanaryActivities({
      db,
      store: await createTestStore(),
      log: testLog,
      ollama,
      canaryOllama,
      tmpDir: await tmpDir(),
    });
    const canaryVersion = await db
      .selectFrom('model_versions')
      .select('id')
      .where('model_id', '=', model.id)
      .where('version', '=', 'v2')
      .executeTakeFirstOrThrow();
    expect(await canaryOllama.loaded()).toEqual([tags.canary]);

    // Act
    await acts.endCanary({ runId: 'r1', model: model.id, versionId: canaryVersion.id, reason: 'test' });

    // Assert
    await expect.poll(() => canaryOllama.loaded(), { timeout: 10_000 }).toEqual([]);
    expect(await ollama.loaded()).toEqual([tags.production]);
  });

  it('(why: served by one Ollama, the canary takes production’s runner)', async () => {
    // Act
    await ollama.chat({ model: tags.canary, messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 1 } });

    // Assert
    expect(await ollama.loaded()).toEqual([tags.canary]);
  });
});
