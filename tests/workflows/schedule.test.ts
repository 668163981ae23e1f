import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import type { ActivityDeps } from '../../src/activities/deps';
import { createRunActivities } from '../../src/activities/run';
import { followRun } from '../../src/cli/follow';
import { insertCollectedDataset } from '../../src/db/queries/datasets';
import { listRuns } from '../../src/db/queries/runs';
import { STAGES } from '../../src/domain/model-config';
import { startPipeline } from '../../src/temporal/pipeline-client';
import type { ModelDefinition } from '../../src/domain/model-config';
import { scheduleId, volumeScheduleId, type ScheduledRunResult } from '../../src/workflows/messages';
import {
  coachingRows,
  createTestDb,
  createTestModel,
  createTestStore,
  seed,
  startRunHeldAtExport,
  startTestApi,
  startTestWorker,
  temporalClient,
  testLog,
  testOllama,
  tmpDir,
} from '../helpers/env';
import { COACHING_CONSENT } from '../helpers/stages';

/**
 * The nightly schedule on the real Temporal dev server: set through the API at a time of day in a time zone,
 * triggered (a scheduled run on what is new since the last successful run, ending as insufficient_data with the
 * reason when that is too little), skipped while one of the model's runs is going, paused and resumed with who and
 * why, backfilled; and the training status apps read.
 */

let deps: ActivityDeps;
let drop: () => Promise<void>;
let temporal: Awaited<ReturnType<typeof temporalClient>>;
let worker: Awaited<ReturnType<typeof startTestWorker>>;
let api: Awaited<ReturnType<typeof startTestApi>>;
let operator: string;
let appKey: string;
let model: ModelDefinition;
const cleanup: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  const test = await createTestDb();
  drop = test.drop;
  deps = { db: test.db, store: await createTestStore(), log: testLog, ollama: testOllama(), tmpDir: await tmpDir() };
  temporal = await temporalClient();
  worker = await startTestWorker({ deps });
  api = await startTestApi({ db: deps.db, temporal: temporal.client, store: deps.store, taskQueue: worker.taskQueue });
  ({ key: operator } = await createApiKey(deps.db, { name: 'ops', role: 'operator', appId: null, models: [] }));
  model = await createTestModel(deps.db, { config: { minExamples: 50 } });
  ({ key: appKey } = await createApiKey(deps.db, { name: 'app', role: 'app', appId: model.app, models: [model.id] }));
});

afterAll(async () => {
  for (const c of cleanup) await c().catch(() => undefined);
  await api?.close();
  await worker?.stop();
  await temporal?.close();
  await drop?.();
});

const path = (m: string, action = '') => `/v1/models/${m}/schedule${action}`;

/** The schedule's newest ScheduledRun once it has one newer than `after` runs, and its result. */
async function nextScheduledRun(m: string, after: number): Promise<ScheduledRunResult> {
  let workflow: { workflowId: string; runId: string } | undefined;
  await expect
    .poll(
      async () => {
        const r = await api.call('GET', path(m), operator);
        workflow = r.json.schedule.recentRuns.length > after ? r.json.schedule.recentRuns[0] : undefined;
        return workflow !== undefined;
      },
      { timeout: 30_000, interval: 250 },
    )
    .toBe(true);
  return (await temporal.client.workflow
    .getHandle(workflow!.workflowId, workflow!.runId)
    .result()) as ScheduledRunResult;
}

describe('the nightly schedule', () => {
  it('runs at a time of day in the model’s time zone, and is listed', async () => {
    // Act
    const set = await api.call('PUT', path(model.id), operator, { at: '02:00', timezone: 'Europe/Berlin' });

    // Assert: the next run is at 02:00 in Berlin, within a day
    expect(set.status).toBe(200);
    expect(set.json.schedule).toMatchObject({
      id: scheduleId(model.id),
      at: '02:00',
      timezone: 'Europe/Berlin',
      paused: false,
      catchupWindowMinutes: 360,
    });
    const next = new Date(set.json.schedule.nextRuns[0]);
    const berlin = new Intl.DateTimeFormat('en-GB', {
      timeZone: 'Europe/Berlin',
      hour: '2-digit',
      minute: '2-digit',
      hourCycle: 'h23',
    });
    expect(berlin.format(next)).toBe('02:00');
    expect(next.getTime() - Date.now()).toBeGreaterThan(0);
    expect(next.getTime() - Date.now()).toBeLessThanOrEqual(25 * 3600_000);
    await expect
      .poll(
        async () =>
          (await api.call('GET', '/v1/schedules', operator)).json.schedules.map((s: { model: string }) => s.model),
        {
          timeout: 15_000,
        },
      )
      .toContain(model.id);
    // Setting it again changes what is given, in place, and keeps the rest; a zone in any case is Temporal's name
    const moved = await api.call('PUT', path(model.id), operator, { at: '03:30', catchupWindowMinutes: 60 });
    expect(moved.json.schedule).toMatchObject({ at: '03:30', timezone: 'Europe/Berlin', catchupWindowMinutes: 60 });
    const utc = await api.call('PUT', path(model.id), operator, { timezone: 'utc' });
    expect(utc.json.schedule).toMatchObject({ at: '03:30', timezone: 'UTC' });
    expect(new Date(utc.json.schedule.nextRuns[0]).toISOString()).toMatch(/T03:30:00/);
  });

  it('trains on what is new since the last run, and says why when that is too little', async () => {
    // Arrange: 20 new rows, under the model's minimum of 50
    await seed(deps.db, model, coachingRows(20), COACHING_CONSENT);
    await api.call('PUT', path(model.id), operator, {});
    const before = (await api.call('GET', path(model.id), operator)).json.schedule.recentRuns.length;

    // Act
    const triggered = await api.call('POST', path(model.id, '/trigger'), operator);
    const result = await nextScheduledRun(model.id, before);

    // Assert
    expect(triggered.status).toBe(202);
    expect(result.status).toBe('insufficient_data');
    const [run] = await listRuns(deps.db, { model: model.id, limit: 1 });
    expect(run).toMatchObject({
      id: result.runId,
      trigger: 'schedule',
      requested_by: `schedule:${scheduleId(model.id)}`,
      status: 'insufficient_data',
    });
    expect(run!.error).toBe("20 new examples since the last successful run, fewer than the model's minimum of 50");
    // In the Temporal UI: found by its outcome (not just "Completed"), with a summary and details saying how it ended
    const pipeline = temporal.client.workflow.getHandle(run!.workflow_id, run!.id);
    expect(await (await pipeline.describe()).staticSummary()).toBe(`${model.id} · schedule · ${scheduleId(model.id)}`);
    const metadata = (await pipeline.query('__temporal_workflow_metadata')) as { currentDetails?: string };
    expect(metadata.currentDetails).toMatch(/^\*\*insufficient_data\*\* — 20 new examples/);
    await expect
      .poll(
        async () => {
          const ids: string[] = [];
          const query = `TuneloopModel = "${model.id}" AND TuneloopOutcome = "insufficient_data"`;
          for await (const w of temporal.client.workflow.list({ query })) ids.push(w.runId);
          return ids;
        },
        { timeout: 15_000 },
      )
      .toContain(run!.id);
  });

  it('skips a run while one of the model’s runs is going', async () => {
    // Arrange: a run held in its export stage
    const busy = await createTestModel(deps.db);
    const held = await startRunHeldAtExport(temporal.client, deps.db, deps, busy.id);
    cleanup.push(async () => {
      held.held.release();
      await held.handle.result();
      await held.held.stop();
    });
    await api.call('PUT', path(busy.id), operator, {});

    // Act
    await api.call('POST', path(busy.id, '/trigger'), operator);
    const result = await nextScheduledRun(busy.id, 0);

    // Assert: skipped, and the held run goes on
    expect(result).toEqual({ runId: null, status: 'skipped', reason: `a run of ${busy.id} was going already` });
    held.held.release();
    expect((await held.handle.result()).status).toBe('insufficient_data');
  });

  it('pauses and resumes saying who and why, refuses a pause without a reason, and a run while paused unless forced', async () => {
    // Arrange
    const m = await createTestModel(deps.db);
    await api.call('PUT', path(m.id), operator, {});

    // Act
    const noReason = await api.call('POST', path(m.id, '/pause'), operator, {});
    const paused = await api.call('POST', path(m.id, '/pause'), operator, { reason: 'base model upgrade' });
    const refused = await api.call('POST', path(m.id, '/trigger'), operator);
    const forced = await api.call('POST', path(m.id, '/trigger'), operator, { force: true });
    const resumed = await api.call('POST', path(m.id, '/resume'), operator);

    // Assert
    expect(noReason.status).toBe(400);
    expect(noReason.json.error.field).toBe('body.reason');
    expect(paused.json.schedule).toMatchObject({
      paused: true,
      note: expect.stringMatching(/^paused by .+: base model upgrade$/),
    });
    expect(resumed.json.schedule).toMatchObject({ paused: false, note: expect.stringMatching(/^resumed by /) });
    const audit = await deps.db
      .selectFrom('audit_log')
      .select('action')
      .where('target_id', '=', m.id)
      .orderBy('id')
      .execute();
    expect(refused.status).toBe(409);
    expect(refused.json.error).toMatchObject({ code: 'schedule_paused', field: 'body.force' });
    expect(refused.json.error.message).toContain('base model upgrade');
    expect(forced.status).toBe(202);
    expect(audit.map((a) => a.action)).toEqual([
      'schedule.set',
      'schedule.pause',
      'schedule.trigger',
      'schedule.resume',
    ]);
  });

  it('backfills missed runs: one runs, the rest skip behind it', async () => {
    // Arrange: a schedule every day at 00:00 UTC, and three days missed
    const m = await createTestModel(deps.db);
    await api.call('PUT', path(m.id), operator, { at: '00:00', timezone: 'UTC' });
    const to = new Date(Date.now() - 60_000);
    const from = new Date(to.getTime() - 3 * 24 * 3600_000);

    // Act
    const r = await api.call('POST', path(m.id, '/backfill'), operator, {
      from: from.toISOString(),
      to: to.toISOString(),
    });
    const result = await nextScheduledRun(m.id, 0);

    // Assert
    expect(r.status).toBe(202);
    expect(['insufficient_data', 'skipped']).toContain(result.status);
    await expect
      .poll(async () => (await listRuns(deps.db, { model: m.id, limit: 10 })).length, { timeout: 30_000 })
      .toBeGreaterThan(0);
  });

  it('refuses bad settings, unknown models and app keys, and changes nothing', async () => {
    // Arrange
    const m = await createTestModel(deps.db);

    // Act
    const badTime = await api.call('PUT', path(m.id), operator, { at: '25:00' });
    const badZone = await api.call('PUT', path(m.id), operator, { timezone: 'Mars/Olympus_Mons' });
    const extra = await api.call('PUT', path(m.id), operator, { at: '02:00', cron: '* * * * *' });
    const unknown = await api.call('PUT', path('no-such-model'), operator, {});
    const asApp = await api.call('PUT', path(model.id), appKey, {});
    const future = await api.call('POST', path(model.id, '/backfill'), operator, {
      from: new Date().toISOString(),
      to: new Date(Date.now() + 86_400_000).toISOString(),
    });
    const none = await api.call('POST', path(m.id, '/trigger'), operator);

    // Assert
    expect(badTime.status).toBe(400);
    expect(badTime.json.error.field).toBe('body.at');
    expect(badZone.status).toBe(400);
    expect(badZone.json.error.field).toBe('body.timezone');
    expect(extra.status).toBe(400);
    expect(unknown.status).toBe(404);
    expect(asApp.status).toBe(403);
    expect(future.status).toBe(400);
    expect(none.status).toBe(404);
    expect((await api.call('GET', path(m.id), operator)).status).toBe(404);
  });
});

describe('the volume trigger', () => {
  /** Triggers the model's volume check now, as its schedule would every few minutes, and returns what it did. */
  async function checkVolume(m: string): Promise<ScheduledRunResult> {
    const handle = temporal.client.schedule.getHandle(volumeScheduleId(m));
    const before = (await handle.describe()).info.recentActions.length;
    await handle.trigger();
    let started: { workflowId: string; firstExecutionRunId: string } | undefined;
    await expect
      .poll(
        async () => {
          const actions = (await handle.describe()).info.recentActions;
          started = actions.length > before ? actions[actions.length - 1]!.action.workflow : undefined;
          return started !== undefined;
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(true);
    return (await temporal.client.workflow
      .getHandle(started!.workflowId, started!.firstExecutionRunId)
      .result()) as ScheduledRunResult;
  }

  it('runs once enough new consented examples have arrived, at most once per interval, paused and deleted with the night', async () => {
    // Arrange: a model with a nightly schedule and a volume trigger of 5 new examples
    const m = await createTestModel(deps.db, { config: { minExamples: 3 } });
    cleanup.push(() => api.call('DELETE', path(m.id), operator));
    const set = await api.call('PUT', path(m.id), operator, {
      volume: { examples: 5, minIntervalMinutes: 10, checkEveryMinutes: 60 },
    });
    expect(set.status).toBe(200);
    expect(set.json.schedule.volume).toMatchObject({
      id: volumeScheduleId(m.id),
      examples: 5,
      minIntervalMinutes: 10,
      checkEveryMinutes: 60,
    });
    expect(Date.parse(set.json.schedule.volume.nextCheck) - Date.now()).toBeLessThanOrEqual(3600_000);

    // Act 1: three new examples (one subject without consent does not count)
    await seed(deps.db, m, coachingRows(3), COACHING_CONSENT);
    await seed(deps.db, m, [{ subject: 'no-consent', user: 'q', assistant: 'a' }], { 'no-consent': false });
    const tooFew = await checkVolume(m.id);
    // Act 2: three more
    await seed(deps.db, m, coachingRows(3, 3), COACHING_CONSENT);
    const due = await checkVolume(m.id);
    // Act 3: plenty more, right after that run
    await seed(deps.db, m, coachingRows(6, 6), COACHING_CONSENT);
    const tooSoon = await checkVolume(m.id);

    // Assert
    expect(tooFew).toEqual({
      runId: null,
      status: 'skipped',
      reason: "3 new consented examples since the last run's data, fewer than 5",
    });
    expect(due).toMatchObject({ status: 'succeeded', reason: expect.stringMatching(/^6 new consented examples/) });
    const runs = await listRuns(deps.db, { model: m.id, limit: 10 });
    expect(runs.map((r) => [r.id, r.trigger, r.requested_by])).toEqual([
      [due.runId, 'schedule', `schedule:${volumeScheduleId(m.id)}`],
    ]);
    expect(tooSoon).toMatchObject({
      runId: null,
      status: 'skipped',
      reason: expect.stringMatching(
        /^6 new consented examples .*the last run started 0 min ago \(at most one every 10 min\)$/,
      ),
    });

    // Paused and resumed with the nightly schedule; changed in place; taken off with null; deleted with the night
    const volume = temporal.client.schedule.getHandle(volumeScheduleId(m.id));
    await api.call('POST', path(m.id, '/pause'), operator, { reason: 'GPU host maintenance' });
    expect((await volume.describe()).state).toMatchObject({ paused: true, note: expect.stringContaining('GPU host') });
    expect((await api.call('GET', path(m.id), operator)).json.schedule.volume.nextCheck).toBeNull();
    await api.call('POST', path(m.id, '/resume'), operator, {});
    expect((await volume.describe()).state.paused).toBe(false);
    const changed = await api.call('PUT', path(m.id), operator, { volume: { examples: 50 } });
    expect(changed.json.schedule.volume).toMatchObject({
      examples: 50,
      minIntervalMinutes: 360,
      checkEveryMinutes: 10,
    });
    expect(changed.json.schedule.at).toBe(set.json.schedule.at);
    const off = await api.call('PUT', path(m.id), operator, { volume: null });
    expect(off.json.schedule.volume).toBeNull();
    await api.call('PUT', path(m.id), operator, { volume: { examples: 5 } });
    expect((await api.call('DELETE', path(m.id), operator)).status).toBe(204);
    await expect(volume.describe()).rejects.toThrow(/not found/i);
  });

  it('does not run again on the data a run that did not succeed has already looked at', async () => {
    // Arrange: six new examples, then a run that collected them and failed (the watermark stays where it was)
    const m = await createTestModel(deps.db, { config: { minExamples: 3 } });
    await seed(deps.db, m, coachingRows(6), COACHING_CONSENT);
    const check = (minExamples: number) =>
      createRunActivities(deps).volumeDue({ model: m.id, minExamples, minIntervalMinutes: 10 });
    const before = await check(5);
    const { seq } = await deps.db
      .selectFrom('interactions')
      .select((eb) => eb.fn.max('seq').as('seq'))
      .where('model_id', '=', m.id)
      .executeTakeFirstOrThrow();
    await deps.db
      .insertInto('runs')
      .values({
        id: `failed-${m.id}`,
        workflow_id: `wf-${m.id}`,
        model_id: m.id,
        status: 'failed',
        trigger: 'test',
        started_at: new Date(Date.now() - 3600_000),
      })
      .execute();
    await insertCollectedDataset(deps.db, {
      id: `ds-failed-${m.id}`,
      model: m.id,
      runId: `failed-${m.id}`,
      fromSeq: 0,
      toSeq: Number(seq),
      prefix: 'datasets/x/',
    });

    // Act
    const after = await check(5);
    await seed(deps.db, m, coachingRows(5, 6), COACHING_CONSENT);
    const more = await check(5);

    // Assert
    expect(before).toMatchObject({ due: true, newExamples: 6 });
    expect(after).toEqual({
      due: false,
      newExamples: 0,
      reason: "0 new consented examples since the last run's data, fewer than 5",
    });
    expect(more).toMatchObject({ due: true, newExamples: 5 });
  });

  it("is deleted with the model's schedule even when the nightly one was deleted outside tuneloop", async () => {
    const m = await createTestModel(deps.db);
    await api.call('PUT', path(m.id), operator, { volume: { examples: 5 } });
    await temporal.client.schedule.getHandle(scheduleId(m.id)).delete();

    expect((await api.call('DELETE', path(m.id), operator)).status).toBe(204);
    await expect(temporal.client.schedule.getHandle(volumeScheduleId(m.id)).describe()).rejects.toThrow(/not found/i);
    expect((await api.call('DELETE', path(m.id), operator)).status).toBe(404);
  });

  it('refuses a bad volume trigger and changes nothing', async () => {
    const m = await createTestModel(deps.db);
    const bad = [
      [{ volume: { examples: 0 } }, 'body.volume.examples'],
      [{ volume: { examples: 5, minIntervalMinutes: 1 } }, 'body.volume.minIntervalMinutes'],
      [{ volume: { examples: 5, every: 3 } }, 'body.volume.every'],
      [{ volume: 5 }, 'body.volume'],
    ] as const;
    for (const [body, field] of bad) {
      const r = await api.call('PUT', path(m.id), operator, body);
      expect({ body, status: r.status, field: r.json.error.field }).toEqual({ body, status: 400, field });
    }
    expect((await api.call('GET', path(m.id), operator)).status).toBe(404);
    await expect(temporal.client.schedule.getHandle(volumeScheduleId(m.id)).describe()).rejects.toThrow(/not found/i);
  });
});

describe('tuneloop run --follow', () => {
  it('prints a line per stage as it ends and how the run ended, as plain lines off a terminal', async () => {
    // Arrange
    const m = await createTestModel(deps.db);
    await seed(deps.db, m, coachingRows(12), COACHING_CONSENT);
    const written: string[] = [];
    const out = { isTTY: false, write: (s: string) => written.push(s) > 0 };

    // Act
    const started = await startPipeline(temporal.client, deps.db, {
      model: m.id,
      taskQueue: worker.taskQueue,
      trigger: 'test',
      requestedBy: 'test',
    });
    const status = await followRun(temporal.client, deps.db, started, out, { intervalMs: 100 });

    // Assert: every stage once, in order, then the end
    const lines = written.join('').trimEnd().split('\n');
    expect(status).toBe('succeeded');
    expect(lines.map((l) => /^(?:[✓✗?-] )?(\S+)/.exec(l)?.[1])).toEqual([...STAGES, 'run']);
    expect(lines[0]).toMatch(/^✓ collect +\d+\.\d s {2}/);
    expect(lines.find((l) => l.includes('synthesize'))).toBe(
      '- synthesize skipped: no synthesize config: no synthetic rows',
    );
    expect(lines.at(-1)).toBe(`run ${started.runId} ended succeeded`);
  });
});

describe('GET /v1/training-status', () => {
  it('answers in the shape apps use, with what serves and the next run', async () => {
    // Act
    const r = await api.call('GET', `/v1/training-status?model=${model.id}`, appKey);
    const schedule = (await api.call('GET', path(model.id), operator)).json.schedule;

    // Assert
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      model: model.id,
      trained: false,
      total_runs: expect.any(Number),
      last_run: expect.stringMatching(/^\d{4}-/),
      last_trained_id: 0,
      production: null,
      canary: null,
      served_last_7_days: { calls: 0, local: 0, incumbent: 0, local_share: 0 },
      next_run: { at: schedule.nextRuns[0], schedule: scheduleId(model.id) },
    });
    expect(r.json.total_runs).toBeGreaterThanOrEqual(1);
    expect(r.json.recent_runs[0]).toMatchObject({ trigger: 'schedule', status: 'insufficient_data' });
  });

  it('refuses a missing model and another app’s model', async () => {
    // Arrange
    const other = await createTestModel(deps.db);

    // Act
    const missing = await api.call('GET', '/v1/training-status', appKey);
    const theirs = await api.call('GET', `/v1/training-status?model=${other.id}`, appKey);

    // Assert
    expect(missing.status).toBe(400);
    expect(missing.json.error.field).toBe('query.model');
    expect([403, 404]).toContain(theirs.status);
  });
});
