import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { FeedbackFacts } from '../../dataset/rows';
import type { ChatMessage } from '../../domain/conversation';
import type { Conn, Trx } from '../pool';

export interface InteractionToStore {
  appId: string;
  model: string;
  subject: string;
  /** The app's own id: a retried write with the same id is recognised and not stored twice. */
  id?: string;
  messages: ChatMessage[];
  metadata?: Record<string, unknown>;
  source: string;
}

export type StoredInteraction =
  | { id: string; externalId: string | null; duplicate: boolean; erased?: false }
  /** The app's id names an interaction of a subject who was erased: not stored again. */
  | { id: null; externalId: string; duplicate: false; erased: true };

/**
 * An erasure of one of the subjects committed while their interactions were being written: the write is refused
 * whole (nothing of it is stored) and a retry finds the erased ones refused.
 */
export class ErasedDuringWrite extends Error {
  constructor() {
    super('a subject of this write was erased while it was being written; retry it');
  }
}

/** Indices of `items` whose app id names an erased interaction of the same model. */
async function erasedItems(
  trx: Trx,
  items: readonly { index: number; model: string; id: string }[],
): Promise<Set<number>> {
  if (!items.length) return new Set();
  const r = await sql<{ index: number }>`
    select u.index from unnest(${items.map((i) => i.index)}::int[], ${items.map((i) => i.model)}::text[],
                               ${items.map((i) => i.id)}::text[]) as u(index, model_id, external_id)
    join erased_interactions e
      on e.model_id = u.model_id and e.external_id_sha256 = sha256(convert_to(u.external_id, 'UTF8'))`.execute(trx);
  return new Set(r.rows.map((row) => row.index));
}

/**
 * Stores interactions (creating their subjects, without consent) inside the caller's transaction, and answers per
 * item, in input order, the stored id and whether the item was a duplicate: of a row stored before (same model and
 * app id), or of an earlier item of the same call. An item whose app id names an interaction that an erasure
 * removed is not stored (nor is its subject created) and is answered `erased`.
 *
 * Set-based: a handful of statements whatever the batch size (subjects upserted at once; one multi-row insert;
 * one look-up of the duplicates). Rows travel as one array parameter per column through unnest(), so the statement
 * text and its parameter count stay the same for 1 row or 5 000, far from PostgreSQL's 65 535-parameter limit.
 */
export async function insertInteractions(trx: Trx, items: InteractionToStore[]): Promise<StoredInteraction[]> {
  if (!items.length) return [];
  const withIds = items.flatMap((it, index) => (it.id === undefined ? [] : [{ index, model: it.model, id: it.id }]));
  const erased = await erasedItems(trx, withIds);
  const live = items.filter((_, index) => !erased.has(index));
  const subjectIds = await upsertSubjects(trx, live);
  // An erasure that committed after the check above deleted a subject row that upsertSubjects then waited on (it
  // reads existing subjects `for key share`): checked again now that any such erasure has committed.
  const erasedSince = await erasedItems(
    trx,
    withIds.filter((w) => !erased.has(w.index)),
  );
  if (erasedSince.size) throw new ErasedDuringWrite();

  // An app id seen earlier in the call is a duplicate of that item: stored once, answered for each.
  const firstOf = new Map<string, number>();
  const rows: { index: number; id: string }[] = [];
  items.forEach((it, index) => {
    if (erased.has(index)) return;
    if (it.id !== undefined) {
      const key = JSON.stringify([it.model, it.id]);
      if (firstOf.has(key)) return;
      firstOf.set(key, index);
    }
    // Ids are made here so that each returned row maps back to its item, app id or not.
    rows.push({ index, id: randomUUID() });
  });
  // Insert order is lock order: rows with an app id go first, sorted by (model, app id), so that concurrent batches
  // naming the same ids in different orders wait for each other instead of deadlocking. seq follows this order.
  const keyOf = (r: { index: number }) => {
    const it = items[r.index]!;
    return it.id === undefined ? null : JSON.stringify([it.model, it.id]);
  };
  rows.sort((a, b) => {
    const [ka, kb] = [keyOf(a), keyOf(b)];
    if (ka === null || kb === null) return ka === kb ? a.index - b.index : ka === null ? 1 : -1;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  const cols = {
    id: rows.map((r) => r.id),
    model: rows.map((r) => items[r.index]!.model),
    subject: rows.map((r) => subjectIds.get(subjectKey(items[r.index]!))!),
    externalId: rows.map((r) => items[r.index]!.id ?? null),
    source: rows.map((r) => items[r.index]!.source),
    messages: rows.map((r) => JSON.stringify(items[r.index]!.messages)),
    metadata: rows.map((r) => JSON.stringify(items[r.index]!.metadata ?? {})),
  };
  // `with ordinality ... order by` makes the insert (and seq, the watermark axis) follow the order of `rows`.
  const inserted = await sql<{ id: string }>`
    insert into interactions (id, model_id, subject_id, external_id, source, messages, metadata)
    select id, model_id, subject_id, external_id, source, messages, metadata
    from unnest(${cols.id}::uuid[], ${cols.model}::text[], ${cols.subject}::uuid[], ${cols.externalId}::text[],
                ${cols.source}::text[], ${cols.messages}::jsonb[], ${cols.metadata}::jsonb[])
      with ordinality as u(id, model_id, subject_id, external_id, source, messages, metadata, ord)
    order by ord
    on conflict (model_id, external_id) do nothing
    returning id`.execute(trx);
  const stored = new Set(inserted.rows.map((r) => r.id));

  // Rows not stored met an earlier row with the same (model, app id): find those rows' ids.
  const missed = rows.filter((r) => !stored.has(r.id)).map((r) => items[r.index]!);
  const existing = new Map<string, string>();
  if (missed.length) {
    const found = await sql<{ id: string; model_id: string; external_id: string }>`
      select i.id, i.model_id, i.external_id
      from interactions i
      join unnest(${missed.map((m) => m.model)}::text[], ${missed.map((m) => m.id!)}::text[]) as u(model_id, external_id)
        on i.model_id = u.model_id and i.external_id = u.external_id`.execute(trx);
    for (const r of found.rows) existing.set(JSON.stringify([r.model_id, r.external_id]), r.id);
  }

  const ownId = new Map(rows.map((r) => [r.index, r.id]));
  return items.map((it, index): StoredInteraction => {
    if (erased.has(index)) return { id: null, externalId: it.id!, duplicate: false, erased: true };
    const mine = ownId.get(index);
    if (mine !== undefined && stored.has(mine)) return { id: mine, externalId: it.id ?? null, duplicate: false };
    const key = JSON.stringify([it.model, it.id]);
    const first = firstOf.get(key);
    const id = existing.get(key) ?? (first !== undefined ? ownId.get(first) : undefined);
    // Only when a concurrent erasure deleted the earlier row between the insert and the look-up: fail the request
    // (the app retries) rather than answer with an id that no longer exists.
    if (id === undefined) throw new Error(`interaction ${it.id} of model ${it.model} was neither stored nor found`);
    return { id, externalId: it.id ?? null, duplicate: true };
  });
}

const subjectKey = (it: { appId: string; subject: string }) => JSON.stringify([it.appId, it.subject]);

/**
 * The subject id of every (app, subject) in `items`, inserting the new ones (without consent). Existing subjects are
 * read `for key share`: an erasure cannot delete one between this and the interactions' insert that points at it.
 * `on conflict do nothing` rather than `do update`: it does not rewrite an existing subject row on every batch.
 */
export async function upsertSubjects(
  trx: Trx,
  items: readonly { appId: string; subject: string }[],
): Promise<Map<string, string>> {
  const ids = new Map<string, string>();
  // Sorted: concurrent batches sharing new subjects then take their insert locks in the same order. In input order,
  // two batches naming the same users in different orders deadlock (PostgreSQL aborts one of them).
  let pending = [...new Map(items.map((it) => [subjectKey(it), { appId: it.appId, subject: it.subject }]))]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, v]) => v);
  // A subject deleted between the insert (which saw it) and the read (which no longer does) is inserted on the next
  // pass; the loop ends because each pass either stores or finds every subject a concurrent erasure leaves alone.
  for (let attempt = 0; pending.length; attempt++) {
    if (attempt === 5) throw new Error('subjects keep disappearing while being stored');
    const apps = pending.map((p) => p.appId);
    const subjects = pending.map((p) => p.subject);
    const inserted = await sql<{ id: string; app_id: string; external_id: string }>`
      insert into subjects (app_id, external_id)
      select * from unnest(${apps}::text[], ${subjects}::text[])
      on conflict (app_id, external_id) do nothing
      returning id, app_id, external_id`.execute(trx);
    for (const r of inserted.rows) ids.set(subjectKey({ appId: r.app_id, subject: r.external_id }), r.id);
    pending = pending.filter((p) => !ids.has(subjectKey(p)));
    if (!pending.length) break;
    const found = await sql<{ id: string; app_id: string; external_id: string }>`
      select s.id, s.app_id, s.external_id
      from subjects s
      join unnest(${pending.map((p) => p.appId)}::text[], ${pending.map((p) => p.subject)}::text[])
        as u(app_id, external_id) on s.app_id = u.app_id and s.external_id = u.external_id
      for key share of s`.execute(trx);
    for (const r of found.rows) ids.set(subjectKey({ appId: r.app_id, subject: r.external_id }), r.id);
    pending = pending.filter((p) => !ids.has(subjectKey(p)));
  }
  return ids;
}

/** Sets a subject's training consent (creating the subject) and records the event. */
export async function setConsent(
  trx: Trx,
  input: { appId: string; subject: string; training: boolean; policyVersion: string },
) {
  const now = new Date();
  const row = await trx
    .insertInto('subjects')
    .values({
      app_id: input.appId,
      external_id: input.subject,
      training_consent: input.training,
      consent_policy_version: input.policyVersion,
      consent_updated_at: now,
    })
    .onConflict((oc) =>
      oc.columns(['app_id', 'external_id']).doUpdateSet({
        training_consent: input.training,
        consent_policy_version: input.policyVersion,
        consent_updated_at: now,
      }),
    )
    .returning(['id', 'training_consent', 'consent_policy_version', 'consent_updated_at'])
    .executeTakeFirstOrThrow();
  await trx
    .insertInto('consent_events')
    .values({ subject_id: row.id, training: input.training, policy_version: input.policyVersion })
    .execute();
  return row;
}

/** A conversation the chat API served, recorded for the next run (source `served`). */
export interface ServedInteraction {
  id: string;
  model: string;
  subjectId: string;
  messages: ChatMessage[];
  metadata: Record<string, unknown>;
  /** The version that answered. */
  versionId: string | null;
  latencyMs: number;
}

/** Stores served conversations; one recorded before (the same id) is left as it is. */
export async function insertServedInteractions(trx: Conn, rows: readonly ServedInteraction[]): Promise<void> {
  if (!rows.length) return;
  await sql`
    insert into interactions (id, model_id, subject_id, source, messages, metadata, model_version_id, latency_ms)
    select * from unnest(
      ${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.model)}::text[],
      ${rows.map((r) => r.subjectId)}::uuid[], ${rows.map(() => 'served')}::text[],
      ${rows.map((r) => JSON.stringify(r.messages))}::jsonb[],
      ${rows.map((r) => JSON.stringify(r.metadata))}::jsonb[],
      ${rows.map((r) => r.versionId)}::uuid[], ${rows.map((r) => Math.round(r.latencyMs))}::int[])
    on conflict do nothing`.execute(trx);
}

/**
 * The highest seq of the model's interactions, once every insert in flight has committed. seq comes from a
 * sequence, so a transaction that took seq 10 can commit after one that took 11. A SHARE lock on the table waits for
 * in-flight inserts to commit (and holds new ones for the instant the caller's transaction lasts), so everything at
 * or below the mark read here is visible and final. Call inside a short transaction.
 */
export async function committedHighSeq(trx: Trx, model: string): Promise<number> {
  await sql`lock table interactions in share mode`.execute(trx);
  const { high } = await trx
    .selectFrom('interactions')
    .select((eb) => eb.fn.max<number | null>('seq').as('high'))
    .where('model_id', '=', model)
    .executeTakeFirstOrThrow();
  return Number(high ?? 0);
}

/**
 * The app's interactions of the model in (afterSeq, toSeq]: all, those of consenting subjects, and those subjects.
 * Synthetic rows are not the app's: the synthesize stage hands them on itself.
 */
export async function rangeCounts(db: Conn, model: string, afterSeq: number, toSeq: number) {
  const counts = await db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select((eb) => [
      eb.fn.countAll<number>().as('interactions'),
      eb.fn.count<number>('i.id').filterWhere('s.training_consent', '=', true).as('consented'),
      eb.fn.count<number>('s.id').distinct().filterWhere('s.training_consent', '=', true).as('subjects'),
    ])
    .where('i.model_id', '=', model)
    .where('i.seq', '>', afterSeq)
    .where('i.seq', '<=', toSeq)
    .where('i.source', '!=', 'synthetic')
    .executeTakeFirstOrThrow();
  return {
    interactions: Number(counts.interactions),
    consented: Number(counts.consented),
    subjects: Number(counts.subjects),
  };
}

/** An interaction of a collected range, with its feedback, as anonymize reads it. */
export interface RangeInteraction {
  id: string;
  seq: number;
  source: string;
  messages: ChatMessage[];
  feedback: FeedbackFacts[];
}

/**
 * The range (afterSeq, toSeq] of the model, consented subjects only (synthetic rows are not the app's), in seq order, with each interaction's feedback,
 * `fetch` rows at a time. Read through a server-side cursor: one plan, linear whatever the table statistics say
 * (keyset pages re-planned per page degrade to a sort of the whole remaining range per page on a freshly loaded
 * table).
 */
export function streamConsentedRange(
  db: Conn,
  model: string,
  afterSeq: number,
  toSeq: number,
  fetch: number,
): AsyncIterableIterator<RangeInteraction> {
  return consentedWithFeedback(db)
    .where('i.model_id', '=', model)
    .where('i.seq', '>', afterSeq)
    .where('i.seq', '<=', toSeq)
    .where('i.source', '!=', 'synthetic')
    .orderBy('i.seq')
    .$castTo<RangeInteraction>()
    .stream(fetch);
}

/**
 * The interactions of `ids` that are still there and whose subject still consents (synthetic ones included), with
 * their feedback, as anonymize reads them: what a quality report's examples are rendered from.
 */
export async function consentedInteractions(db: Conn, ids: readonly string[]): Promise<RangeInteraction[]> {
  if (ids.length === 0) return [];
  return consentedWithFeedback(db).where('i.id', 'in', ids).$castTo<RangeInteraction>().execute();
}

const consentedWithFeedback = (db: Conn) =>
  db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select([
      'i.id',
      'i.seq',
      'i.source',
      'i.messages',
      sql<FeedbackFacts[]>`coalesce((
        select json_agg(json_build_object('thumbs', f.thumbs, 'rating', f.rating, 'correction', f.correction,
                                          'createdAt', to_char(f.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
                        order by f.created_at, f.id)
        from feedback f where f.interaction_id = i.id), '[]'::json)`.as('feedback'),
    ])
    .where('s.training_consent', '=', true);

/** The ids of `ids` whose interaction still exists and whose subject still consents to training. */
export async function stillConsented(db: Conn, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select('i.id')
    .where('i.id', 'in', ids)
    .where('s.training_consent', '=', true)
    .execute();
  return new Set(rows.map((r) => r.id));
}
