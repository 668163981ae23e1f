import { randomUUID } from 'node:crypto';
import { isTransientDbError, type Conn, type Db } from '../db/pool';
import { erasedSubjectKey, lastErasedAt, subjectHash } from '../db/queries/erasure';
import { insertServedInteractions, upsertSubjects } from '../db/queries/interactions';
import { servingModel } from '../db/queries/models';
import { servingAliases, type AliasName, type ServingVersion } from '../db/queries/registry';
import { insertServingCalls, type ServingCall } from '../db/queries/serving';
import { servedBeforeErasure } from '../domain/chat';
import type { ChatMessage } from '../domain/conversation';
import type { FallbackConfig, IncumbentConfig, ShadowConfig } from '../domain/model-config';
import type { Logger } from '../log';

export interface ServingInfo {
  model: {
    id: string;
    appId: string;
    systemPrompt: string | null;
    outputSchema: Record<string, unknown> | null;
    incumbent: IncumbentConfig | null;
    fallback: FallbackConfig;
    shadow: ShadowConfig;
  } | null;
  aliases: Partial<Record<AliasName, ServingVersion>>;
}

/**
 * What serves a model (its definition's serving fields and its aliases), read from PostgreSQL at most once a
 * second per model: a promotion or rollback reaches every API process within a second, and a chat call costs no
 * query. Versions are served by their own Ollama tags, which are never rewritten, so a request routed to the
 * version that just stopped serving still succeeds.
 */
export class ServingCache {
  private readonly entries = new Map<string, { at: number; value: Promise<ServingInfo> }>();
  constructor(
    private readonly db: Db,
    private readonly ttlMs = 1_000,
  ) {}

  get(model: string): Promise<ServingInfo> {
    const hit = this.entries.get(model);
    const now = Date.now();
    if (hit && now - hit.at < this.ttlMs) return hit.value;
    const value = this.load(model);
    this.entries.set(model, { at: now, value });
    value.catch(() => this.entries.delete(model)); // a failed read is not cached
    if (this.entries.size > 10_000) this.entries.delete(this.entries.keys().next().value!);
    return value;
  }

  /** Forgets a model's entry (the API moved its aliases itself). */
  invalidate(model: string) {
    this.entries.delete(model);
  }

  private async load(model: string): Promise<ServingInfo> {
    const found = await servingModel(this.db, model);
    if (!found) return { model: null, aliases: {} };
    return { model: found, aliases: await servingAliases(this.db, model) };
  }
}

export interface ServedRecord {
  interactionId: string;
  appId: string;
  model: string;
  /** Null for a call without a subject, whose conversation is never recorded (messages is null). */
  subject: string | null;
  /** The conversation as the app sent it, with the answer appended; null when nothing answered. */
  messages: ChatMessage[] | null;
  answeredBy: string | null;
  latencyMs: number;
  call: Omit<ServingCall, 'interactionId' | 'model' | 'callId'>;
  metadata: Record<string, unknown>;
  /** When the call was served (ms since the epoch); the recorder stamps it when left out. */
  servedAt?: number;
  /**
   * The call's own id (stamped by the recorder when left out): not the interaction's id, which the app is given, so
   * that a call row cannot be joined back to a conversation erased since.
   */
  callId?: string;
}

/**
 * Writes what the chat API served (the interaction, for the next training run, and the call, for the canary) in
 * batches, off the request's path: a batch every 100 ms or 200 records, one transaction each (seven round trips to
 * PostgreSQL, which shares the machine: at 200 calls a second, batches every 20 ms cost the API a third more CPU a
 * call, bench:gateway). A kill -9 loses at most the calls of the last 100 ms. While the database is
 * away, batches are retried once a second (not once per request) with the queue capped at 50 000 records; beyond
 * that the oldest are dropped and counted in the log, rather than the API running out of memory. A batch that
 * keeps failing while the database answers is split until the record at fault is found, and that record alone is
 * dropped (logged): one bad answer never blocks every app's records.
 */
export class ServingRecorder {
  private queue: ServedRecord[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private closed = false;
  private dropped = 0;
  private retryAt = 0;
  private readonly failures = new WeakMap<ServedRecord, number>();
  static readonly MAX_QUEUE = 50_000;
  static readonly MAX_ATTEMPTS = 5;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly everyMs = 100,
    private readonly batch = 200,
  ) {}

  /** Told of every call recorded, as it is (the API's metrics). */
  readonly observers: ((r: ServedRecord) => void)[] = [];

  record(r: ServedRecord) {
    for (const observe of this.observers) observe(r);
    if (this.queue.length >= ServingRecorder.MAX_QUEUE) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(sanitize({ ...r, servedAt: r.servedAt ?? Date.now(), callId: r.callId ?? randomUUID() }));
    if (this.queue.length >= this.batch && Date.now() >= this.retryAt) void this.flush();
    else this.schedule(Math.max(this.everyMs, this.retryAt - Date.now()));
  }

  /** Writes everything queued so far (tests and shutdown wait on it), retry delays aside. */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    while (this.flushing) await this.flushing;
    if (this.queue.length === 0) return;
    // After a failure about the data, batches are smaller (halved each time) until one goes through.
    const batch = this.queue.splice(0, Math.min(this.batch, this.batchLimit));
    this.flushing = this.write(batch)
      .then(() => {
        this.retryAt = 0;
        this.batchLimit = Infinity;
      })
      .catch((err: unknown) => this.failed(batch, err))
      .finally(() => {
        this.flushing = null;
      });
    await this.flushing;
    if (this.dropped) {
      this.log.error({ dropped: this.dropped }, 'served calls dropped: the database was away too long');
      this.dropped = 0;
    }
    if (this.queue.length > 0) this.schedule(Math.max(0, this.retryAt - Date.now()));
  }

  async close(): Promise<void> {
    for (let i = 0; i < 5 && this.queue.length > 0; i++) {
      this.retryAt = 0;
      await this.flush();
    }
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.queue.length) this.log.error({ records: this.queue.length }, 'served calls not recorded at shutdown');
  }

  private schedule(ms: number) {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => void this.flush(), ms);
  }

  private failed(batch: ServedRecord[], err: unknown) {
    const message = (err as Error).message;
    if (err instanceof ErasedWhileRecording) {
      // Nothing about the data: written again at once, and this time the erased subject's conversations are left out.
      this.queue.unshift(...batch);
      return;
    }
    if (isTransientDbError(err)) {
      // The database is away: everything waits, in order, and is tried again in a second.
      this.queue.unshift(...batch);
      this.retryAt = Date.now() + 1_000;
      this.log.warn({ err: message, records: batch.length }, 'could not record served calls yet');
      return;
    }
    // The database answered with an error about the data: find the record at fault.
    const retry: ServedRecord[] = [];
    for (const r of batch) {
      const n = (this.failures.get(r) ?? 0) + 1;
      this.failures.set(r, n);
      if (batch.length === 1 && n >= ServingRecorder.MAX_ATTEMPTS) {
        this.log.error({ err: message, interactionId: r.interactionId, model: r.model }, 'served call dropped');
      } else {
        retry.push(r);
      }
    }
    // The next batches are half as big, so the good records of a bad batch are written and the bad one isolated.
    this.queue.unshift(...retry);
    this.batchLimit = Math.max(1, Math.ceil(batch.length / 2));
    this.retryAt = Date.now() + 100;
  }

  private batchLimit = Infinity;

  private async write(batch: ServedRecord[]) {
    await this.db.transaction().execute(async (trx) => {
      // A conversation served before its subject was erased is not recorded after the erasure (the call still is,
      // for the canary: it names no subject).
      const erasedBefore = await conversationsOfErasedSubjects(
        trx,
        batch.filter((r) => r.messages !== null),
      );
      const answered = batch.filter(
        (r): r is ServedRecord & { messages: ChatMessage[]; subject: string } =>
          r.messages !== null && r.subject !== null && !erasedBefore.has(r),
      );
      if (answered.length) {
        const subjects = await upsertSubjects(
          trx,
          answered.map((r) => ({ appId: r.appId, subject: r.subject })),
        );
        // An erasure that committed while upsertSubjects waited on the subject's row: written again, without it.
        if ((await conversationsOfErasedSubjects(trx, answered)).size) throw new ErasedWhileRecording();
        const key = (r: ServedRecord) => JSON.stringify([r.appId, r.subject]);
        await insertServedInteractions(
          trx,
          answered.map((r) => ({
            id: r.interactionId,
            model: r.model,
            subjectId: subjects.get(key(r))!,
            messages: r.messages,
            metadata: r.metadata,
            versionId: r.answeredBy,
            latencyMs: r.latencyMs,
          })),
        );
      }
      await insertServingCalls(
        trx,
        batch.map((r) => ({
          ...r.call,
          model: r.model,
          callId: r.callId!,
          interactionId: r.messages !== null && !erasedBefore.has(r) ? r.interactionId : null,
        })),
      );
    });
  }
}

class ErasedWhileRecording extends Error {
  constructor() {
    super('a subject was erased while their served calls were being recorded');
  }
}

/** The records whose subject was erased after the call was served. */
async function conversationsOfErasedSubjects(trx: Conn, records: readonly ServedRecord[]): Promise<Set<ServedRecord>> {
  if (!records.length) return new Set();
  const hashes = records.map((r) => subjectHash(r.appId, r.subject ?? ''));
  const erasedAt = await lastErasedAt(trx, hashes);
  if (!erasedAt.size) return new Set();
  return new Set(
    records.filter((r, i) => {
      const at = erasedAt.get(erasedSubjectKey(r.appId, hashes[i]!));
      return at !== undefined && servedBeforeErasure(r.servedAt!, at);
    }),
  );
}

/** PostgreSQL text cannot hold U+0000, which a model may well emit: it is dropped from what is recorded. */
function sanitize(r: ServedRecord): ServedRecord {
  if (!r.messages?.some((m) => m.content.includes('\u0000'))) return r;
  return { ...r, messages: r.messages.map((m) => ({ ...m, content: m.content.replaceAll('\u0000', '') })) };
}

export const newInteractionId = () => randomUUID();
