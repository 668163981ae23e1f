import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleOptionsStartWorkflowAction,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { z } from 'zod';
import type { Db } from '../db/pool';
import { withAdvisoryLock } from '../db/locks';
import { audit } from '../db/queries/audit';
import { text } from '../ingest/text';
import {
  MODEL_SEARCH_ATTRIBUTE,
  SCHEDULED_RUN_WORKFLOW_TYPE,
  scheduleId,
  type ScheduledRunInput,
} from '../workflows/messages';
import type { ScheduledRun } from '../workflows/scheduled';

/**
 * Each model's nightly run is a Temporal Schedule, `nightly/<model>`, that starts a ScheduledRun (workflows/
 * scheduled.ts) at a time of day in a time zone. A run still going when the next is due makes the next one skip
 * (the overlap policy); after downtime, only the runs missed within the catch-up window are made up, and of those
 * only one starts (the others skip behind it). Pausing and resuming say who and why in the schedule's note, which
 * the Temporal UI shows.
 */

/** The canonical name of an IANA time zone (`europe/berlin` → `Europe/Berlin`: Temporal's server is case-sensitive). */
const canonicalZone = (tz: string): string | null => {
  try {
    return new Intl.DateTimeFormat('en', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    return null;
  }
};

export const SCHEDULE_DEFAULTS = { at: '02:00', timezone: 'UTC', catchupWindowMinutes: 6 * 60 } as const;

/** A schedule's settings as given: what is left out keeps its current value (or the default, for a new one). */
export const scheduleSettingsSchema = z
  .object({
    /** Time of day, 24-hour. */
    at: z
      .string()
      .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a time of day as HH:MM (24-hour), such as 02:00')
      .optional(),
    /** An IANA time zone. */
    timezone: z
      .string()
      .max(64)
      .transform((tz, ctx) => {
        const zone = canonicalZone(tz);
        if (!zone) {
          ctx.addIssue({ code: 'custom', message: 'expected an IANA time zone, such as Europe/Berlin or UTC' });
          return z.NEVER;
        }
        return zone;
      })
      .optional(),
    /** After downtime, runs missed this many minutes ago or less are made up (one of them). */
    catchupWindowMinutes: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 60)
      .optional(),
  })
  .strict();
export type ScheduleSettingsInput = z.output<typeof scheduleSettingsSchema>;
export type ScheduleSettings = Required<ScheduleSettingsInput>;

export const pauseSchema = z
  .object({ reason: text(500).refine((r) => r.trim() !== '', 'say why: the note is what the next operator reads') })
  .strict();
export const resumeSchema = z.object({ reason: text(500).optional() }).strict();
/** `force`: run even though the schedule is paused (the pause is there for a reason; the bypass is audited). */
export const triggerSchema = z.object({ force: z.boolean().default(false) }).strict();
export const backfillSchema = z
  .object({
    from: z.iso.datetime({ offset: true }),
    to: z.iso.datetime({ offset: true }),
    force: z.boolean().default(false),
  })
  .strict()
  .refine((b) => Date.parse(b.from) < Date.parse(b.to), { message: 'from must be before to', path: ['to'] })
  .refine((b) => Date.parse(b.to) <= Date.now(), { message: 'a backfill takes past runs only', path: ['to'] })
  .refine((b) => Date.parse(b.to) - Date.parse(b.from) <= 31 * 24 * 3600_000, {
    message: 'at most 31 days at once',
    path: ['from'],
  });

export interface ScheduleView {
  id: string;
  model: string;
  at: string;
  timezone: string;
  catchupWindowMinutes: number;
  paused: boolean;
  /** Who paused or resumed it last, and why (or who set it). */
  note: string | null;
  /** The next times it will start a run, ISO 8601 (up to three). */
  nextRuns: string[];
  /**
   * The runs it started most recently, newest first: when each was due, and the ScheduledRun workflow it started
   * (whose result names the pipeline run, or says it was skipped).
   */
  recentRuns: { scheduledAt: string; startedAt: string; workflowId: string; runId: string }[];
}

export class ScheduleMissing extends Error {
  override readonly name = 'ScheduleMissing';
  constructor(readonly model: string) {
    super(`model ${model} has no schedule`);
  }
}

export interface ScheduleTarget {
  taskQueue: string;
  gpuTaskQueue?: string;
  gpuHeartbeatTimeoutS?: number;
}

function action(model: string, target: ScheduleTarget): ScheduleOptionsStartWorkflowAction<typeof ScheduledRun> {
  const input: ScheduledRunInput = {
    model,
    schedule: scheduleId(model),
    ...(target.gpuTaskQueue ? { gpuTaskQueue: target.gpuTaskQueue } : {}),
    ...(target.gpuHeartbeatTimeoutS ? { gpuHeartbeatTimeoutS: target.gpuHeartbeatTimeoutS } : {}),
  };
  return {
    type: 'startWorkflow',
    workflowType: SCHEDULED_RUN_WORKFLOW_TYPE,
    workflowId: `scheduled:${model}`,
    taskQueue: target.taskQueue,
    args: [input],
    typedSearchAttributes: new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: model }]),
    staticSummary: `the nightly run of ${model}: starts its pipeline, or skips while one is going`,
  };
}

function specOf(s: ScheduleSettings) {
  const [hour, minute] = s.at.split(':').map(Number) as [number, number];
  return { calendars: [{ hour, minute, comment: `nightly at ${s.at}` }], timezone: s.timezone };
}

const policiesOf = (s: ScheduleSettings) => ({
  overlap: ScheduleOverlapPolicy.SKIP,
  catchupWindow: `${s.catchupWindowMinutes} minutes`,
  pauseOnFailure: false,
});

export class SchedulePaused extends Error {
  override readonly name = 'SchedulePaused';
  constructor(
    readonly model: string,
    readonly note: string | null,
  ) {
    super(`the schedule of ${model} is paused (${note ?? 'no note'}): ask with force to run it anyway`);
  }
}

/**
 * The schedules, as the API and the command line change them: one way, so both validate alike (the schemas above),
 * take the model's lock (a pause cannot be lost to a concurrent set, which writes the whole schedule back), and
 * audit every change with who asked.
 */
export class Schedules {
  constructor(
    private readonly temporal: Client,
    private readonly db: Db,
    private readonly target: ScheduleTarget,
  ) {}

  private handle(model: string) {
    return this.temporal.schedule.getHandle(scheduleId(model));
  }

  /** Runs `fn` under the model's schedule lock, then audits `action`; ScheduleMissing when it has no schedule. */
  private async change<T>(
    model: string,
    actor: string,
    action: string,
    details: Record<string, unknown>,
    fn: () => Promise<T>,
  ): Promise<T> {
    const done = await withAdvisoryLock(this.db, `schedule:${model}`, { waitMs: 30_000 }, async () => {
      try {
        return await fn();
      } catch (err) {
        if (err instanceof ScheduleNotFoundError) throw new ScheduleMissing(model);
        throw err;
      }
    });
    if (!done.ran) throw new Error(`the schedule of ${model} is locked`); // unreachable with waitMs
    await audit(this.db, { actor, action, targetType: 'schedule', targetId: model, details });
    return done.value;
  }

  /**
   * Creates the model's schedule, or changes it: what `given` leaves out keeps its value (the default, for a new
   * one); a paused schedule stays paused. The task queues are today's (set it again after moving them).
   */
  set(model: string, given: ScheduleSettingsInput, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.set', { ...given }, async () => {
      const handle = this.handle(model);
      const current = await handle.describe().then(
        (d) => viewOf(model, d),
        (err: unknown) => {
          if (err instanceof ScheduleNotFoundError) return null;
          throw err;
        },
      );
      const settings: ScheduleSettings = {
        ...SCHEDULE_DEFAULTS,
        ...(current
          ? { at: current.at, timezone: current.timezone, catchupWindowMinutes: current.catchupWindowMinutes }
          : {}),
        ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)),
      };
      const parts = { spec: specOf(settings), action: action(model, this.target), policies: policiesOf(settings) };
      if (current) {
        await handle.update((prev) => ({ ...prev, ...parts }));
      } else {
        await this.temporal.schedule.create({
          scheduleId: scheduleId(model),
          ...parts,
          state: { note: `set by ${actor}` },
          typedSearchAttributes: new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: model }]),
        });
      }
      return viewOf(model, await handle.describe());
    });
  }

  /** The model's schedule, or null when it has none. */
  async get(model: string): Promise<ScheduleView | null> {
    try {
      return viewOf(model, await this.handle(model).describe());
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) return null;
      throw err;
    }
  }

  /** Every model's schedule (from Temporal's visibility store, which may lag a change by a moment). */
  async list(): Promise<ScheduleView[]> {
    const out: ScheduleView[] = [];
    for await (const s of this.temporal.schedule.list()) {
      if (!s.scheduleId.startsWith('nightly/')) continue;
      const view = await this.get(s.scheduleId.slice('nightly/'.length));
      if (view) out.push(view);
    }
    return out.sort((a, b) => a.model.localeCompare(b.model));
  }

  pause(model: string, { reason }: z.output<typeof pauseSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.pause', { reason }, async () => {
      await this.handle(model).pause(`paused by ${actor}: ${reason}`);
      return viewOf(model, await this.handle(model).describe());
    });
  }

  resume(model: string, { reason }: z.output<typeof resumeSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.resume', { reason: reason ?? null }, async () => {
      await this.handle(model).unpause(`resumed by ${actor}${reason ? `: ${reason}` : ''}`);
      return viewOf(model, await this.handle(model).describe());
    });
  }

  /** Starts a run now, as the schedule would (skipped if one of the model's runs is going). */
  trigger(model: string, { force }: z.output<typeof triggerSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.trigger', { force }, async () => {
      await this.refuseIfPaused(model, force);
      await this.handle(model).trigger(ScheduleOverlapPolicy.SKIP);
      return viewOf(model, await this.handle(model).describe());
    });
  }

  /** Takes the runs the schedule would have started between `from` and `to` (one; the others skip behind it). */
  backfill(model: string, b: z.output<typeof backfillSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.backfill', { ...b }, async () => {
      await this.refuseIfPaused(model, b.force);
      await this.handle(model).backfill({
        start: new Date(b.from),
        end: new Date(b.to),
        overlap: ScheduleOverlapPolicy.SKIP,
      });
      return viewOf(model, await this.handle(model).describe());
    });
  }

  /** Deletes the model's schedule (a run it started goes on). */
  delete(model: string, actor: string): Promise<void> {
    return this.change(model, actor, 'schedule.delete', {}, () => this.handle(model).delete());
  }

  /** Temporal runs a trigger or a backfill of a paused schedule: the pause is honoured here unless forced. */
  private async refuseIfPaused(model: string, force: boolean) {
    const d = await this.handle(model).describe();
    if (d.state.paused && !force) throw new SchedulePaused(model, d.state.note || null);
  }
}

function viewOf(model: string, d: ScheduleDescription): ScheduleView {
  const cal = d.spec.calendars?.[0];
  const hour = cal?.hour?.[0]?.start ?? 0;
  const minute = cal?.minute?.[0]?.start ?? 0;
  return {
    id: d.scheduleId,
    model,
    at: `${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}`,
    timezone: d.spec.timezone ?? 'UTC',
    catchupWindowMinutes: Math.round(d.policies.catchupWindow / 60_000),
    paused: d.state.paused,
    note: d.state.note || null,
    nextRuns: d.info.nextActionTimes.slice(0, 3).map((t) => t.toISOString()),
    recentRuns: [...d.info.recentActions].reverse().map((a) => ({
      scheduledAt: a.scheduledAt.toISOString(),
      startedAt: a.takenAt.toISOString(),
      workflowId: a.action.workflow.workflowId,
      runId: a.action.workflow.firstExecutionRunId,
    })),
  };
}

/** One schedule in a few lines, for the command line. */
export function describeSchedule(v: ScheduleView): string {
  const lines = [
    `${v.model}: ${v.paused ? 'PAUSED' : 'nightly'} at ${v.at} ${v.timezone} (catch-up ${v.catchupWindowMinutes} min)`,
  ];
  if (v.note) lines.push(`  note: ${v.note}`);
  if (!v.paused && v.nextRuns[0]) lines.push(`  next: ${v.nextRuns[0]}`);
  for (const r of v.recentRuns.slice(0, 3)) lines.push(`  ran:  ${r.scheduledAt} → ${r.workflowId}`);
  return lines.join('\n');
}
