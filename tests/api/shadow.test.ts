import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActivityDeps } from '../../src/activities/deps';
import { createShadowActivities } from '../../src/activities/shadow';
import { createApiKey } from '../../src/api/auth';
import type { ShadowRunner } from '../../src/api/shadow';
import type { Db } from '../../src/db/pool';
import { upsertModel } from '../../src/db/queries/models';
import { modelDefinitionSchema, type ModelDefinition } from '../../src/domain/model-config';
import type { ShadowVerdict } from '../../src/domain/shadow';
import {
  createTestDb,
  createTestModel,
  createTestStore,
  importTinyBase,
  startTestApi,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
  uid,
} from '../helpers/env';

/**
 * The shadow stage on real parts: with the `shadow` alias on a candidate, the API has the candidate answer a share of
 * production's calls in the background (real Ollama, real PostgreSQL), never the caller's answer and never on its
 * path; a full queue drops and counts; the pairs hang off their interactions, so an erasure takes them; and the
 * stage's compareShadow judges the pairs, both orders, with a real judge model.
 */

let db: Db;
let drop: () => Promise<void>;
let closeClient: () => Promise<void>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let model: ModelDefinition;
let appKey: string;
let adminKey: string;
let candidateId: string;
const ollama = testOllama();

async function addVersion(m: ModelDefinition, version: string, tag: string, status: 'production' | 'registered') {
  return (
    await db
      .insertInto('model_versions')
      .values({ model_id: m.id, version, status, ollama_tag: tag, adapter_key: null, run_id: null })
      .returning('id')
      .executeTakeFirstOrThrow()
  ).id;
}

const shadowRunner = () => api.app.locals.shadow as ShadowRunner;
const pairsOf = () => db.selectFrom('shadow_pairs').selectAll().where('model_id', '=', model.id).execute();

/** Waits for the background candidate calls to be written (the runner is idle once they are). */
async function settle() {
  await api.recorder.flush();
  await expect
    .poll(async () => (shadowRunner() as unknown as { running: Set<unknown> }).running.size, { timeout: 60_000 })
    .toBe(0);
}

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  const temporal = await temporalClient();
  closeClient = temporal.close;
  api = await startTestApi({ db, temporal: temporal.client, store: await createTestStore(), taskQueue: uid('tq-') });
  const m = await createTestModel(db);
  model = modelDefinitionSchema.parse({
    ...m,
    config: { ...m.config, shadow: { share: 1, maxInFlight: 2 }, judge: { model: `${m.id}-judge:v1` } },
  });
  await upsertModel(db, model);
  await importTinyBase(ollama, `${m.id}:v1`);
  await importTinyBase(ollama, `${m.id}:v2`, { temperature: 0 }); // the candidate: another tag of its own
  await importTinyBase(ollama, `${m.id}-judge:v1`);
  const production = await addVersion(model, 'v1', `${m.id}:v1`, 'production');
  candidateId = await addVersion(model, 'v2', `${m.id}:v2`, 'registered');
  await db
    .insertInto('aliases')
    .values([
      { model_id: model.id, name: 'production', version_id: production, percent: null },
      { model_id: model.id, name: 'shadow', version_id: candidateId, percent: null },
    ])
    .execute();
  ({ key: appKey } = await createApiKey(db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
  ({ key: adminKey } = await createApiKey(db, { name: 'admin', role: 'admin', appId: null, models: [] }));
}, 120_000);

afterAll(async () => {
  await api?.close();
  await closeClient?.();
  await drop?.();
});

const chat = (subject: string | null, content: string) =>
  subject === null
    ? api.call('POST', '/openai/v1/chat/completions', appKey, {
        model: model.id,
        messages: [{ role: 'user', content }],
        max_tokens: 6,
      })
    : api.call('POST', '/v1/chat', appKey, {
        model: model.id,
        subject,
        messages: [{ role: 'user', content }],
        options: { num_predict: 6 },
      });

describe('the shadow in the API', () => {
  it("has the candidate answer production's calls in the background, and keeps each pair with its interaction", async () => {
    // Act: one at a time, so the queue (2) never fills
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const res = await chat(`s-${i}`, `Plan my day ${i}.`);
      answers.push(res.json);
      await settle();
    }

    // Assert: the caller got production's answer; the candidate's is only in the pair
    expect(answers.map((a) => a.version)).toEqual(['v1', 'v1', 'v1', 'v1']);
    const pairs = await pairsOf();
    expect(pairs).toHaveLength(4);
    for (const p of pairs) {
      const answer = answers.find((a) => a.id === p.interaction_id)!;
      expect(p).toMatchObject({
        status: 'answered',
        version_id: candidateId,
        production_answer: answer.message.content,
      });
      expect(typeof p.candidate_answer).toBe('string');
      expect(p.candidate_latency_ms).toBeGreaterThan(0);
      expect(p.messages).toEqual([{ role: 'user', content: expect.stringMatching(/^Plan my day \d\.$/) }]);
    }
  });

  it('never shadows a call without a subject (no conversation is kept to hang it on)', async () => {
    const before = (await pairsOf()).length;
    expect((await chat(null, 'hello')).status).toBe(200);
    await settle();
    expect((await pairsOf()).length).toBe(before);
  });

  it('drops and counts what does not fit in the queue, while every caller is answered', async () => {
    // Act
    const before = await pairsOf();
    const res = await Promise.all(Array.from({ length: 8 }, (_, i) => chat(`burst-${i}`, `Quick tip ${i}?`)));
    await settle();

    // Assert
    expect(res.map((r) => r.status)).toEqual(Array(8).fill(200));
    const added = (await pairsOf()).slice(before.length);
    expect(added).toHaveLength(8);
    const dropped = added.filter((p) => p.status === 'dropped');
    expect(dropped.length).toBeGreaterThan(0);
    for (const p of dropped) expect(p).toMatchObject({ interaction_id: null, messages: null, candidate_answer: null });
  });

  it("takes an erased subject's pairs with their interactions", async () => {
    // Arrange
    const subject = 'to-erase';
    const res = await chat(subject, 'Something personal.');
    await settle();
    expect((await pairsOf()).some((p) => p.interaction_id === res.json.id)).toBe(true);

    // Act
    const erased = await api.call('DELETE', `/v1/subjects/${subject}?app=${model.app}`, adminKey);

    // Assert
    expect(erased.status).toBe(200);
    expect((await pairsOf()).some((p) => p.interaction_id === res.json.id)).toBe(false);
  });
});

describe('compareShadow', () => {
  it('judges every answered pair in both orders with the judge model, and gives the verdict its numbers', async () => {
    // Arrange
    const deps: ActivityDeps = { db, store: await createTestStore(), log: testLog, ollama, tmpDir: await tmpDir() };
    const since = new Date(Date.now() - 3600_000).toISOString();
    const answered = (await pairsOf()).filter((p) => p.status === 'answered').length;

    // Act
    const verdict: ShadowVerdict = await new MockActivityEnvironment().run(createShadowActivities(deps).compareShadow, {
      runId: 'r',
      model: model.id,
      versionId: candidateId,
      since,
    });

    // Assert
    const judged = (await pairsOf()).filter((p) => p.outcome !== null);
    expect(judged).toHaveLength(answered);
    expect(verdict.winOrTie!.judged).toBe(answered);
    expect(verdict.pairs).toBe(answered);
    expect(verdict.dropped).toBeGreaterThan(0);
    expect(['pass', 'fail', 'insufficient']).toContain(verdict.verdict);
    // minPairs is 30 by default: this little evidence is never a pass
    expect(verdict.verdict).not.toBe('pass');
  });
});
