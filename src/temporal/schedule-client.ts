import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
  type Client,
  type ScheduleDescription,
  type ScheduleOptionsStartWorkflowAction,
} from '@temporalio/client';
import { TypedSearchAttributes } from '@temporalio/common';
import { z } from 'zod';
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

const isTimeZone = (tz: string) => {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return true;
  } catch {
    return false;
  }
};

export const scheduleSettingsSchema = z
  .object({
    /** Time of day, 24-hour. */
    at: z
      .string()
      .regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'expected a time of day as HH:MM (24-hour), such as 02:00')
      .default('02:00'),
    /** An IANA time zone. */
    timezone: z
      .string()
      .max(64)
      .refine(isTimeZone, 'expected an IANA time zone, such as Europe/Berlin or UTC')
      .default('UTC'),
    /** After downtime, runs missed this many minutes ago or less are made up (one of them). */
    catchupWindowMinutes: z
      .number()
      .int()
      .min(1)
      .max(7 * 24 * 60)
      .default(6 * 60),
  })
  .strict();
export type ScheduleSettings = z.output<typeof scheduleSettingsSchema>;

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
  /** The runs it started most recently, newest first: when each was due and the workflow it started. */
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

/** Creates the model's schedule, or changes its time, zone and catch-up window (a paused one stays paused). */
export async function setSchedule(
  temporal: Client,
  opts: { model: string; settings: ScheduleSettings; target: ScheduleTarget; actor: string },
): Promise<ScheduleView> {
  const handle = temporal.schedule.getHandle(scheduleId(opts.model));
  try {
    await handle.update((prev) => ({
      ...prev,
      spec: specOf(opts.settings),
      action: action(opts.model, opts.target),
      policies: policiesOf(opts.settings),
    }));
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await temporal.schedule
      .create({
        scheduleId: scheduleId(opts.model),
        spec: specOf(opts.settings),
        action: action(opts.model, opts.target),
        policies: policiesOf(opts.settings),
        state: { note: `set by ${opts.actor}` },
        typedSearchAttributes: new TypedSearchAttributes([{ key: MODEL_SEARCH_ATTRIBUTE, value: opts.model }]),
      })
      .catch(async (e: unknown) => {
        // Two sets at once: the other one created it; ours updates it.
        if (!(e instanceof ScheduleAlreadyRunning)) throw e;
        await handle.update((prev) => ({ ...prev, spec: specOf(opts.settings), policies: policiesOf(opts.settings) }));
      });
  }
  return viewOf(opts.model, await handle.describe());
}

/** The model's schedule, or null when it has none. */
export async function getSchedule(temporal: Client, model: string): Promise<ScheduleView | null> {
  try {
    return viewOf(model, await temporal.schedule.getHandle(scheduleId(model)).describe());
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return null;
    throw err;
  }
}

/** Every model's schedule (from Temporal's visibility store, which may lag a change by a moment). */
export async function listSchedules(temporal: Client): Promise<ScheduleView[]> {
  const out: ScheduleView[] = [];
  for await (const s of temporal.schedule.list()) {
    if (!s.scheduleId.startsWith('nightly/')) continue;
    const view = await getSchedule(temporal, s.scheduleId.slice('nightly/'.length));
    if (view) out.push(view);
  }
  return out.sort((a, b) => a.model.localeCompare(b.model));
}

/** Runs `fn` on the model's schedule; ScheduleMissing when it has none. */
async function onSchedule<T>(
  temporal: Client,
  model: string,
  fn: (h: ReturnType<Client['schedule']['getHandle']>) => Promise<T>,
) {
  const handle = temporal.schedule.getHandle(scheduleId(model));
  try {
    await fn(handle);
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new ScheduleMissing(model);
    throw err;
  }
  return viewOf(model, await handle.describe());
}

export const pauseSchedule = (temporal: Client, model: string, actor: string, reason: string) =>
  onSchedule(temporal, model, (h) => h.pause(`paused by ${actor}: ${reason}`));

export const resumeSchedule = (temporal: Client, model: string, actor: string, reason: string | null) =>
  onSchedule(temporal, model, (h) => h.unpause(`resumed by ${actor}${reason ? `: ${reason}` : ''}`));

/** Starts a run now, as the schedule would (skipped if one of the model's runs is going). */
export const triggerSchedule = (temporal: Client, model: string) =>
  onSchedule(temporal, model, (h) => h.trigger(ScheduleOverlapPolicy.SKIP));

/** Takes the runs the schedule would have started between `from` and `to` (one; the others skip behind it). */
export const backfillSchedule = (temporal: Client, model: string, from: Date, to: Date) =>
  onSchedule(temporal, model, (h) => h.backfill({ start: from, end: to, overlap: ScheduleOverlapPolicy.SKIP }));

export async function deleteSchedule(temporal: Client, model: string): Promise<boolean> {
  try {
    await temporal.schedule.getHandle(scheduleId(model)).delete();
    return true;
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) return false;
    throw err;
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
