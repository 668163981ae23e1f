import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../domain/failures';
import type { Logger } from '../log';
import { isAlive, thisProcess } from '../embedded/server-process';

/**
 * Activity attempts in flight in this process, kept on the host's disk while they run. When a worker process dies
 * without a word (SIGKILL, the OOM killer, a power cut), the server learns that its attempts are lost only when
 * their heartbeat timeout passes — two minutes for training. The next worker on the same host reads the journal,
 * finds attempts whose process is gone, and fails them at once (retryable), so the retry starts now, from the last
 * checkpoint.
 */

interface AttemptRecord {
  taskToken: string;
  owner: { pid: number; startTime: string | null };
  activityType: string;
  workflowId: string | null;
  activityId: string;
  attempt: number;
}

/** Records each attempt while it runs (one small file; removed when the attempt ends, however it ends). */
export function attemptJournal(dir: string): ActivityInterceptorsFactory {
  return (ctx: Context) => ({
    inbound: {
      async execute(input, next) {
        const info = ctx.info;
        const file = path.join(dir, `${createHash('sha256').update(info.taskToken).digest('hex').slice(0, 32)}.json`);
        const rec: AttemptRecord = {
          taskToken: Buffer.from(info.taskToken).toString('base64'),
          owner: thisProcess(),
          activityType: info.activityType,
          workflowId: info.workflowExecution?.workflowId ?? null,
          activityId: info.activityId,
          attempt: info.attempt,
        };
        await mkdir(dir, { recursive: true });
        await writeFile(file, JSON.stringify(rec) + '\n');
        try {
          return await next(input);
        } finally {
          await rm(file, { force: true });
        }
      },
    },
  });
}

/** Fails, retryably, every journaled attempt whose worker process no longer runs; returns how many it failed. */
export async function failLostAttempts(
  dir: string,
  opts: { address: string; namespace: string; log: Logger },
): Promise<number> {
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
  const lost: { file: string; rec: AttemptRecord }[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const rec = await readFile(file, 'utf8')
      .then((t) => JSON.parse(t) as AttemptRecord)
      .catch(() => null);
    if (!rec) await rm(file, { force: true });
    else if (!isAlive(rec.owner.pid, rec.owner.startTime)) lost.push({ file, rec });
  }
  if (lost.length === 0) return 0;
  const connection = await Connection.connect({ address: opts.address });
  try {
    const client = new Client({ connection, namespace: opts.namespace });
    let failed = 0;
    for (const { file, rec } of lost) {
      const failure = ApplicationFailure.retryable(
        `the worker process that ran attempt ${rec.attempt} (pid ${rec.owner.pid}) is gone`,
        FailureType.WORKER_LOST,
      );
      try {
        await client.activity.fail(Buffer.from(rec.taskToken, 'base64'), failure);
        failed++;
        opts.log.warn(
          { activityType: rec.activityType, workflowId: rec.workflowId, attempt: rec.attempt },
          'failed an activity attempt whose worker died, so that it is retried now',
        );
      } catch (err) {
        // The attempt already ended (timed out, or completed before the crash): nothing to do.
        opts.log.debug({ err: (err as Error).message, activityType: rec.activityType }, 'lost attempt already ended');
      }
      await rm(file, { force: true });
    }
    return failed;
  } finally {
    await connection.close();
  }
}
