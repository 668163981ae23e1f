import type { Client } from '@temporalio/client';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '../db/pool';
import { getRun } from '../db/queries/runs';
import { trainingProgress, type TrainingProgress } from '../temporal/training-progress';
import { statusQuery, type PipelineStatusValue, type StageReport } from '../workflows/messages';

/**
 * `tuneloop run --follow` and `tuneloop status RUN --follow`: one line per stage as it ends (its time and a few of
 * its figures, or why it was skipped), and while training a progress bar with step, loss and ETA, rewritten in place
 * on a terminal; elsewhere (a pipe, a log file) plain lines, a training line at most every `plainEveryMs`. Reads the
 * workflow's status query while the run goes, and the database once it has ended. Returns how the run ended.
 */
export async function followRun(
  temporal: Client,
  db: Db,
  run: { workflowId: string; runId: string },
  out: Pick<NodeJS.WriteStream, 'write'> & { isTTY?: boolean; columns?: number },
  opts: { intervalMs?: number; plainEveryMs?: number } = {},
): Promise<PipelineStatusValue> {
  const interval = opts.intervalMs ?? 1_000;
  const plainEvery = opts.plainEveryMs ?? 30_000;
  const printed = new Set<string>();
  let bar = false;
  let lastPlain = 0;
  let unanswered = false;
  const handle = temporal.workflow.getHandle(run.workflowId, run.runId);
  const line = (text: string) => {
    if (bar) out.write('\r\x1b[2K');
    bar = false;
    out.write(`${text}\n`);
  };
  const printEnded = (stages: readonly StageReport[]) => {
    for (const s of stages) {
      if (printed.has(s.name) || s.status === 'pending' || s.status === 'running') continue;
      printed.add(s.name);
      line(describeStage(s));
    }
  };

  for (;;) {
    const stored = await getRun(db, run.runId);
    if (stored && stored.status !== 'running') {
      printEnded(stored.stages as StageReport[]);
      line(`run ${run.runId} ended ${stored.status}${stored.error ? `: ${stored.error}` : ''}`);
      return stored.status as PipelineStatusValue;
    }
    const live = await handle.query(statusQuery).catch((err: unknown) => err as Error);
    if (live instanceof Error) {
      // No answer: no worker is up, or the workflow has ended without its run being recorded (terminated, timed
      // out). Said once; a closed workflow ends the follow.
      const closed = await handle.describe().then(
        (d) => (d.status.name === 'RUNNING' ? null : d.status.name),
        () => null,
      );
      if (closed) {
        line(`run ${run.runId}: its workflow is ${closed.toLowerCase()} and recorded no outcome`);
        return 'failed';
      }
      if (!unanswered) line(`(the run does not answer its status query: ${live.message}; still watching)`);
      unanswered = true;
    } else {
      unanswered = false;
      printEnded(live.stages);
      const training =
        live.stage === 'train' ? await trainingProgress(temporal, run.workflowId, run.runId).catch(() => null) : null;
      if (training && out.isTTY) {
        out.write(`\r\x1b[2K${progressBar(training, Math.min(out.columns ?? 80, 100))}`);
        bar = true;
      } else if (training && Date.now() - lastPlain >= plainEvery) {
        lastPlain = Date.now();
        line(progressLine(training));
      }
    }
    await sleep(interval);
  }
}

const seconds = (s: StageReport) =>
  s.startedAt && s.endedAt ? `${((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s` : '';

/** A few of a stage's summary figures: its numbers and short strings, at most six. */
function figures(summary: Record<string, unknown> | null): string {
  if (!summary) return '';
  const parts = Object.entries(summary)
    .filter(([, v]) => typeof v === 'number' || (typeof v === 'string' && v.length <= 40 && !v.includes('/')))
    .slice(0, 6)
    .map(([k, v]) => `${k}=${v}`);
  return parts.join(' ');
}

export function describeStage(s: StageReport): string {
  const mark = { succeeded: '✓', skipped: '-', failed: '✗', cancelled: '✗' }[s.status as string] ?? '?';
  const name = s.name.padEnd(10);
  if (s.status === 'skipped') return `${mark} ${name} skipped: ${s.reason ?? ''}`;
  if (s.status !== 'succeeded') return `${mark} ${name} ${s.status}${s.reason ? `: ${s.reason}` : ''}`;
  return `${mark} ${name} ${seconds(s).padStart(8)}  ${figures(s.summary)}`.trimEnd();
}

const eta = (s: number | null) =>
  s === null
    ? '?'
    : s >= 3600
      ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
      : s >= 60
        ? `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`
        : `${Math.round(s)}s`;

function stats(t: TrainingProgress): string {
  return [
    `step ${t.step}/${t.totalSteps ?? '?'}`,
    t.loss !== null ? `loss ${t.loss.toFixed(3)}` : null,
    t.tokensPerS !== null ? `${Math.round(t.tokensPerS)} tok/s` : null,
    `ETA ${eta(t.etaS)}`,
    t.attempt > 1 ? `attempt ${t.attempt}` : null,
  ]
    .filter(Boolean)
    .join('  ');
}

/** `train [#######-------]  step 12/40  loss 2.310  512 tok/s  ETA 1m20s`, within `width` columns. */
export function progressBar(t: TrainingProgress, width: number): string {
  const text = stats(t);
  const room = Math.max(10, width - text.length - 15);
  const done = t.totalSteps ? Math.min(room, Math.round((t.step / t.totalSteps) * room)) : 0;
  return `  train    [${'#'.repeat(done)}${'-'.repeat(room - done)}]  ${text}`;
}

export const progressLine = (t: TrainingProgress) => `  train    ${stats(t)}`;
