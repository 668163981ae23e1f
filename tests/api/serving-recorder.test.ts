import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newInteractionId, ServingRecorder, type ServedRecord } from '../../src/api/serving';
import type { Db } from '../../src/db/pool';
import { eraseSubjectRecords } from '../../src/db/queries/erasure';
import type { ModelDefinition } from '../../src/domain/model-config';
import { createTestDb, createTestModel, testLog, waitForLockWait } from '../helpers/env';

/** The chat API's recorder against a real PostgreSQL: batches, one bad record isolated, U+0000 dropped. */

let db: Db;
let drop: () => Promise<void>;
let model: ModelDefinition;

beforeAll(async () => {
  ({ db, drop } = await createTestDb());
  model = await createTestModel(db);
});
afterAll(async () => drop?.());

function served(over: Partial<ServedRecord> = {}): ServedRecord {
  return {
    interactionId: newInteractionId(),
    callId: randomUUID(),
    appId: model.app,
    model: model.id,
    subject: 'subject-1',
    messages: [
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'hello' },
    ],
    answeredBy: null,
    latencyMs: 12.5,
    metadata: {},
    call: {
      versionId: null,
      alias: 'production',
      ok: true,
      fellBack: false,
      error: null,
      latencyMs: 12.5,
      schemaValid: null,
    },
    ...over,
  };
}

const count = async (table: 'interactions' | 'serving_calls') =>
  Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(db)).rows[0]!.n);

describe('ServingRecorder', () => {
  it('writes what was served, the conversation as an interaction of source "served"', async () => {
    // Arrange
    const recorder = new ServingRecorder(db, testLog);
    const r = served();

    // Act
    recorder.record(r);
    await recorder.close();

    // Assert
    const row = await db
      .selectFrom('interactions')
      .selectAll()
      .where('id', '=', r.interactionId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ source: 'served', latency_ms: 13, model_id: model.id });
    expect(await count('serving_calls')).toBe(1);
  });

  it('drops a record the database refuses, alone, and writes the others of its batch', async () => {
    // Arrange: one record names a model that does not exist (a foreign key refuses it)
    const recorder = new ServingRecorder(db, testLog);
    const [interactions, calls] = [await count('interactions'), await count('serving_calls')];
    const good = Array.from({ length: 6 }, () => served());
    const bad = served({ model: 'no-such-model' });

    // Act
    for (const r of [...good.slice(0, 3), bad, ...good.slice(3)]) recorder.record(r);
    for (let i = 0; i < 20 && (await count('serving_calls')) < calls + 6; i++) await recorder.flush();
    await recorder.close();

    // Assert
    expect(await count('interactions')).toBe(interactions + 6);
    expect(await count('serving_calls')).toBe(calls + 6);
    const stored = await db
      .selectFrom('interactions')
      .select('id')
      .where(
        'id',
        'in',
        good.map((g) => g.interactionId),
      )
      .execute();
    expect(stored).toHaveLength(6);
  });

  it('counts a call once when its batch is written again after a lost commit acknowledgement', async () => {
    // Arrange: the first commit goes through, then the connection "drops" before the recorder hears of it.
    let lose = true;
    let writes = 0;
    const flaky = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop !== 'transaction') return Reflect.get(target, prop, receiver) as unknown;
        return () => {
          const trx = target.transaction();
          return {
            execute: async <T>(fn: Parameters<typeof trx.execute<T>>[0]) => {
              writes++;
              const result = await trx.execute(fn);
              if (lose) {
                lose = false;
                throw new Error('Connection terminated unexpectedly');
              }
              return result;
            },
          };
        };
      },
    });
    const recorder = new ServingRecorder(flaky, testLog);
    const records = [served(), served({ messages: null, call: { ...served().call, ok: false, error: 'down' } })];
    const [interactions, calls] = [await count('interactions'), await count('serving_calls')];

    // Act
    for (const r of records) recorder.record(r);
    await recorder.flush(); // committed, but reported lost: queued again
    expect(lose).toBe(false);
    await recorder.close(); // written again

    // Assert
    expect(await count('interactions')).toBe(interactions + 1);
    expect(await count('serving_calls')).toBe(calls + 2);
    const ids = await db
      .selectFrom('serving_calls')
      .select('call_id')
      .where(
        'call_id',
        'in',
        records.map((r) => r.callId!),
      )
      .execute();
    expect(ids).toHaveLength(2);
    expect(writes).toBe(2); // the second write went through whole: nothing refused, split or dropped
  });

  it('drops U+0000 from an answer rather than failing to store it', async () => {
    // Arrange
    const recorder = new ServingRecorder(db, testLog);
    const r = served({
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'a\u0000b' },
      ],
    });

    // Act
    recorder.record(r);
    await recorder.close();

    // Assert
    const row = await db
      .selectFrom('interactions')
      .select('messages')
      .where('id', '=', r.interactionId)
      .executeTakeFirstOrThrow();
    expect(row.messages).toEqual([
      { role: 'user', content: 'hi' },
      { role: 'assistant', content: 'ab' },
    ]);
  });

  describe('and erasure', () => {
    const subjectRows = (subject: string) =>
      db.selectFrom('subjects').select('id').where('external_id', '=', subject).execute();
    const erase = (subject: string) =>
      db.transaction().execute((trx) => eraseSubjectRecords(trx, { appId: model.app, subject, actor: 'test' }));

    it('does not record, after an erasure, a conversation served before it (or within a minute after)', async () => {
      // Arrange: sam chatted and was recorded; the erasure took effect ten minutes ago (by the database's clock).
      const recorder = new ServingRecorder(db, testLog);
      recorder.record(served({ subject: 'sam' }));
      await recorder.flush();
      const erasure = await erase('sam');
      await db
        .updateTable('erasures')
        .set({ effective_at: sql`now() - interval '10 minutes'` })
        .where('id', '=', erasure!.id)
        .execute();
      const minute = 60_000;
      const before = served({ subject: 'sam', servedAt: Date.now() - 11 * minute });
      const margin = served({ subject: 'sam', servedAt: Date.now() - 9.5 * minute });
      const after = served({ subject: 'sam', servedAt: Date.now() });

      // Act
      for (const r of [before, margin, after]) recorder.record(r);
      await recorder.close();

      // Assert
      const ids = (await db.selectFrom('interactions').select('id').execute()).map((r) => r.id);
      expect(ids).not.toContain(before.interactionId);
      expect(ids).not.toContain(margin.interactionId);
      expect(ids).toContain(after.interactionId);
      const calls = await db
        .selectFrom('serving_calls')
        .select(['call_id', 'interaction_id'])
        .where('call_id', 'in', [before.callId!, margin.callId!, after.callId!])
        .orderBy('id')
        .execute();
      expect(calls).toEqual([
        { call_id: before.callId, interaction_id: null },
        { call_id: margin.callId, interaction_id: null },
        { call_id: after.callId, interaction_id: after.interactionId },
      ]);
    });

    it('leaves out a conversation whose subject’s erasure commits while the batch is being written', async () => {
      // Arrange: tia exists; her erasure has deleted her rows but not committed when the recorder writes.
      const recorder = new ServingRecorder(db, testLog);
      recorder.record(served({ subject: 'tia' }));
      await recorder.flush();
      const queued = served({ subject: 'tia', servedAt: Date.now() - 60_000 });
      const trx = await db.startTransaction().execute();
      let committed = false;
      try {
        await eraseSubjectRecords(trx, { appId: model.app, subject: 'tia', actor: 'test' });
        recorder.record(queued);
        const writing = recorder.flush();
        await waitForLockWait(db, '%insert into subjects%');

        // Act
        await trx.commit().execute();
        committed = true;
        await writing;
        await recorder.close();

        // Assert
        const stored = await db
          .selectFrom('interactions')
          .select('id')
          .where('id', '=', queued.interactionId)
          .execute();
        expect(stored).toEqual([]);
        expect(await subjectRows('tia')).toEqual([]);
        const call = await db
          .selectFrom('serving_calls')
          .select('interaction_id')
          .where('call_id', '=', queued.callId!)
          .execute();
        expect(call).toEqual([{ interaction_id: null }]);
      } finally {
        if (!committed) await trx.rollback().execute();
      }
    });
  });
});
