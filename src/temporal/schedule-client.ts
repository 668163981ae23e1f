import {
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleHandle,
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
  VOLUME_RUN_WORKFLOW_TYPE,
  volumeScheduleId,
  type ScheduledRunInput,
  type VolumeRunInput,
} from '../workflows/messages';
import type { ScheduledRun, VolumeRun } from '../workflows/scheduled';

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
export const VOLUME_DEFAULTS = { minIntervalMinutes: 6 * 60, checkEveryMinutes: 10 } as const;

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
    /**
     * Besides the night: a run as soon as `examples` consented examples no run has looked at yet have arrived, at
     * most once every `minIntervalMinutes` (checked every `checkEveryMinutes`). null: no more volume runs.
     */
    volume: z
      .object({
        examples: z.number().int().min(1).max(100_000_000),
        minIntervalMinutes: z
          .number()
          .int()
          .min(10)
          .max(7 * 24 * 60)
          .default(VOLUME_DEFAULTS.minIntervalMinutes),
        checkEveryMinutes: z
          .number()
          .int()
          .min(1)
          .max(24 * 60)
          .default(VOLUME_DEFAULTS.checkEveryMinutes),
      })
      .strict()
      .nullable()
      .optional(),
  })
  .strict();
export type ScheduleSettingsInput = z.output<typeof scheduleSettingsSchema>;
export type ScheduleSettings = Required<Omit<ScheduleSettingsInput, 'volume'>>;
export type VolumeSettings = NonNullable<ScheduleSettingsInput['volume']>;

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
  /** The volume trigger (its own schedule, volume/<model>, paused and resumed with this one), or null. */
  volume: (VolumeSettings & { id: string; nextCheck: string | null }) | null;
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

function scheduledInput(model: string, schedule: string, target: ScheduleTarget): ScheduledRunInput {
  return {
    model,
    schedule,
    ...(target.gpuTaskQueue ? { gpuTaskQueue: target.gpuTaskQueue } : {}),
    ...(target.gpuHeartbeatTimeoutS ? { gpuHeartbeatTimeoutS: target.gpuHeartbeatTimeoutS } : {}),
  };
}

const modelAttribute = (model: string) => new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: model }]);

function nightlyAction(model: string, target: ScheduleTarget): ScheduleOptionsStartWorkflowAction<typeof ScheduledRun> {
  return {
    type: 'startWorkflow',
    workflowType: SCHEDULED_RUN_WORKFLOW_TYPE,
    workflowId: `scheduled:${model}`,
    taskQueue: target.taskQueue,
    args: [scheduledInput(model, scheduleId(model), target)],
    typedSearchAttributes: modelAttribute(model),
    staticSummary: `the nightly run of ${model}: starts its pipeline, or skips while one is going`,
  };
}

function volumeAction(
  model: string,
  target: ScheduleTarget,
  volume: VolumeSettings,
): ScheduleOptionsStartWorkflowAction<typeof VolumeRun> {
  const trigger = { minExamples: volume.examples, minIntervalMinutes: volume.minIntervalMinutes };
  return {
    type: 'startWorkflow',
    workflowType: VOLUME_RUN_WORKFLOW_TYPE,
    workflowId: `volume:${model}`,
    taskQueue: target.taskQueue,
    args: [{ ...scheduledInput(model, volumeScheduleId(model), target), volume: trigger }],
    typedSearchAttributes: modelAttribute(model),
    staticSummary: `the volume check of ${model}: runs its pipeline once ${volume.examples} new examples have arrived`,
  };
}

const volumeSpec = (v: VolumeSettings) => ({ intervals: [{ every: `${v.checkEveryMinutes} minutes` }] });
// A missed check is worth nothing once the next one is due; a run still going makes a check skip.
const volumePolicies = (v: VolumeSettings) => ({
  overlap: ScheduleOverlapPolicy.SKIP,
  catchupWindow: `${v.checkEveryMinutes} minutes`,
  pauseOnFailure: false,
});

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

  private volumeHandle(model: string) {
    return this.temporal.schedule.getHandle(volumeScheduleId(model));
  }

  /** `fn` on the model's volume schedule; null when the model has none. */
  private async onVolume<T>(model: string, fn: (h: ScheduleHandle) => Promise<T>): Promise<T | null> {
    try {
      return await fn(this.volumeHandle(model));
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) return null;
      throw err;
    }
  }

  /** The volume schedule's description, or null when the model has none. */
  private describeVolume(model: string): Promise<ScheduleDescription | null> {
    return this.onVolume(model, (h) => h.describe());
  }

  /**
   * Creates, changes or (null) deletes the volume schedule, `current` as it is now; a new one starts paused when the
   * nightly one is.
   */
  private async setVolume(
    model: string,
    volume: VolumeSettings | null,
    current: ScheduleDescription | null,
    nightly: ScheduleDescription,
    actor: string,
  ) {
    if (volume === null) {
      if (current) await this.volumeHandle(model).delete();
      return;
    }
    const parts = {
      spec: volumeSpec(volume),
      action: volumeAction(model, this.target, volume),
      policies: volumePolicies(volume),
    };
    if (current) {
      await this.volumeHandle(model).update((prev) => ({ ...prev, ...parts }));
    } else {
      await this.temporal.schedule.create({
        scheduleId: volumeScheduleId(model),
        ...parts,
        state: { paused: nightly.state.paused, note: nightly.state.note || `set by ${actor}` },
        typedSearchAttributes: modelAttribute(model),
      });
    }
  }

  private async view(model: string, nightly: ScheduleDescription): Promise<ScheduleView> {
    return viewOf(model, nightly, await this.describeVolume(model));
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
        (d) => viewOf(model, d, null),
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
        ...Object.fromEntries(Object.entries(given).filter(([k, v]) => v !== undefined && k !== 'volume')),
      };
      const parts = {
        spec: specOf(settings),
        action: nightlyAction(model, this.target),
        policies: policiesOf(settings),
      };
      if (current) {
        await handle.update((prev) => ({ ...prev, ...parts }));
      } else {
        await this.temporal.schedule.create({
          scheduleId: scheduleId(model),
          ...parts,
          state: { note: `set by ${actor}` },
          typedSearchAttributes: modelAttribute(model),
        });
      }
      const nightly = await handle.describe();
      // A volume trigger left out keeps its settings but takes today's task queues, as the nightly one does.
      const currentVolume = await this.describeVolume(model);
      const volume = given.volume === undefined ? volumeOf(currentVolume) : given.volume;
      await this.setVolume(model, volume, currentVolume, nightly, actor);
      return this.view(model, nightly);
    });
  }

  /** The model's schedule, or null when it has none. */
  async get(model: string): Promise<ScheduleView | null> {
    try {
      return await this.view(model, await this.handle(model).describe());
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
      const note = `paused by ${actor}: ${reason}`;
      await this.handle(model).pause(note);
      await this.onVolume(model, (h) => h.pause(note));
      return this.view(model, await this.handle(model).describe());
    });
  }

  resume(model: string, { reason }: z.output<typeof resumeSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.resume', { reason: reason ?? null }, async () => {
      const note = `resumed by ${actor}${reason ? `: ${reason}` : ''}`;
      await this.handle(model).unpause(note);
      await this.onVolume(model, (h) => h.unpause(note));
      return this.view(model, await this.handle(model).describe());
    });
  }

  /** Starts a run now, as the schedule would (skipped if one of the model's runs is going). */
  trigger(model: string, { force }: z.output<typeof triggerSchema>, actor: string): Promise<ScheduleView> {
    return this.change(model, actor, 'schedule.trigger', { force }, async () => {
      await this.refuseIfPaused(model, force);
      await this.handle(model).trigger(ScheduleOverlapPolicy.SKIP);
      return this.view(model, await this.handle(model).describe());
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
      return this.view(model, await this.handle(model).describe());
    });
  }

  /** Deletes the model's schedule and its volume trigger (a run they started goes on). */
  delete(model: string, actor: string): Promise<void> {
    return this.change(model, actor, 'schedule.delete', {}, async () => {
      // The volume trigger first: were the nightly one gone already (deleted outside tuneloop), this still ends both.
      const hadVolume = (await this.onVolume(model, (h) => h.delete().then(() => true))) ?? false;
      try {
        await this.handle(model).delete();
      } catch (err) {
        if (!(hadVolume && err instanceof ScheduleNotFoundError)) throw err;
      }
    });
  }

  /** Temporal runs a trigger or a backfill of a paused schedule: the pause is honoured here unless forced. */
  private async refuseIfPaused(model: string, force: boolean) {
    const d = await this.handle(model).describe();
    if (d.state.paused && !force) throw new SchedulePaused(model, d.state.note || null);
  }
}

function volumeOf(d: ScheduleDescription | null): ScheduleView['volume'] {
  if (!d || d.action.type !== 'startWorkflow') return null;
  const input = d.action.args?.[0] as Partial<VolumeRunInput> | undefined;
  if (!input?.volume) return null;
  const every = Number(d.spec.intervals?.[0]?.every ?? VOLUME_DEFAULTS.checkEveryMinutes * 60_000);
  return {
    id: d.scheduleId,
    examples: input.volume.minExamples,
    minIntervalMinutes: input.volume.minIntervalMinutes,
    checkEveryMinutes: Math.round(every / 60_000),
    nextCheck: d.state.paused ? null : (d.info.nextActionTimes[0]?.toISOString() ?? null),
  };
}

function viewOf(model: string, d: ScheduleDescription, volume: ScheduleDescription | null): ScheduleView {
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
    volume: volumeOf(volume),
  };
}

/** One schedule in a few lines, for the command line. */
export function describeSchedule(v: ScheduleView): string {
  const lines = [
    `${v.model}: ${v.paused ? 'PAUSED' : 'nightly'} at ${v.at} ${v.timezone} (catch-up ${v.catchupWindowMinutes} min)`,
  ];
  if (v.note) lines.push(`  note: ${v.note}`);
  if (!v.paused && v.nextRuns[0]) lines.push(`  next: ${v.nextRuns[0]}`);
  if (v.volume) {
    lines.push(
      `  volume: a run once ${v.volume.examples} new consented examples have arrived, at most every ` +
        `${v.volume.minIntervalMinutes} min (checked every ${v.volume.checkEveryMinutes} min)`,
    );
  }
  for (const r of v.recentRuns.slice(0, 3)) lines.push(`  ran:  ${r.scheduledAt} → ${r.workflowId}`);
  return lines.join('\n');
}
