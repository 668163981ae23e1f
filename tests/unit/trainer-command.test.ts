import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { DefaultLogger } from '@temporalio/worker';
import { MockActivityEnvironment } from '@temporalio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runTrainerCommand, trainerFailure } from '../../src/activities/trainer-command';
import type { TrainerExit } from '../../src/activities/trainer-process';
import { FailureType } from '../../src/activities/failures';
import { createLogger } from '../../src/log';

const log = createLogger('silent');
/** An activity context that keeps its warnings (every failure a test expects) to itself. */
const activityEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

function exit(over: Partial<TrainerExit>): TrainerExit {
  return { code: 1, signal: null, stderrTail: [], error: null, done: null, ...over };
}

describe('trainerFailure', () => {
  it.each([
    ['bad input without a type', exit({ code: 2 }), FailureType.CONFIG_INVALID, true],
    [
      'bad input: the dataset',
      exit({ code: 2, error: { type: 'DATASET_INVALID', message: 'm' } }),
      'DATASET_INVALID',
      true,
    ],
    ['bad input: the model', exit({ code: 2, error: { type: 'MODEL_INVALID', message: 'm' } }), 'CONFIG_INVALID', true],
    [
      'a corrupt checkpoint',
      exit({ code: 2, error: { type: 'CHECKPOINT_INVALID', message: 'm' } }),
      'STORE_INTEGRITY',
      true,
    ],
    ['out of GPU memory', exit({ code: 1, error: { type: 'GPU_OOM', message: 'm' } }), 'GPU_OOM', true],
    ['an interruption that was not ours', exit({ code: 75 }), 'TRAINER_INTERRUPTED', false],
    ['a crash', exit({ code: 1 }), 'TRAINER_CRASHED', false],
    ['a kill', exit({ code: null, signal: 'SIGKILL' }), 'TRAINER_CRASHED', false],
  ] as const)('fails %s as %s', (_, x, type, permanent) => {
    // Act
    const failure = trainerFailure('trainer train', x);

    // Assert
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure.type).toBe(type);
    expect(failure.nonRetryable).toBe(permanent);
    expect(failure.message).toMatch(/^trainer train (exited with|was killed by)/);
  });
});

describe('runTrainerCommand', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'trainer-command-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** A stand-in for the Python trainer: a shell script run as `<script> -m tuneloop_trainer <command> ...`. */
  async function fakeTrainer(name: string, body: string) {
    const file = path.join(dir, name);
    await writeFile(file, `#!/bin/sh\n${body}\n`);
    await chmod(file, 0o755);
    return { python: file, pythonPath: '', threads: null };
  }

  const run = (env: MockActivityEnvironment, trainer: Awaited<ReturnType<typeof fakeTrainer>>, extra = {}) =>
    env.run(() => runTrainerCommand({ trainer, command: 'parity', args: [], cwd: dir, log, ...extra }));

  it('returns the done event of a command that succeeded', async () => {
    // Arrange
    const trainer = await fakeTrainer('ok', `echo '{"event":"done","metrics":{"cases":3}}'`);

    // Act
    const done = await run(activityEnv(), trainer);

    // Assert
    expect(done).toEqual({ event: 'done', metrics: { cases: 3 } });
  });

  it('fails a command that exited 0 without a done event as a crash (retried)', async () => {
    const trainer = await fakeTrainer('no-done', 'exit 0');
    const err = await run(activityEnv(), trainer).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: FailureType.TRAINER_CRASHED, nonRetryable: false });
    expect((err as Error).message).toContain('without a done event');
  });

  it("fails bad input permanently, typed by the trainer's error event", async () => {
    const trainer = await fakeTrainer(
      'bad-input',
      `echo '{"event":"error","type":"DATASET_INVALID","message":"no rows"}'; exit 2`,
    );
    const err = await run(activityEnv(), trainer).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: FailureType.DATASET_INVALID, nonRetryable: true });
    expect((err as Error).message).toBe('trainer parity exited with 2: no rows');
  });

  it('heartbeats while the command runs', async () => {
    // Arrange
    const trainer = await fakeTrainer('slow', `sleep 0.3; echo '{"event":"done"}'`);
    const env = activityEnv();
    const beats: unknown[] = [];
    env.on('heartbeat', (d: unknown) => beats.push(d));

    // Act
    await run(env, trainer, { heartbeat: { everyMs: 50, details: () => ({ phase: 'working' }) } });

    // Assert
    expect(beats.length).toBeGreaterThan(0);
    expect(beats[0]).toEqual({ phase: 'working' });
  });

  it('fails with what afterExit threw, after the process exited', async () => {
    const trainer = await fakeTrainer('ok-then', `echo '{"event":"done"}'`);
    const err = await run(activityEnv(), trainer, {
      afterExit: async () => {
        throw new Error('a checkpoint upload failed');
      },
    }).catch((e: unknown) => e);
    expect((err as Error).message).toBe('a checkpoint upload failed');
  });

  it('interrupts the trainer on cancellation, waits for it, cleans up and throws the cancellation', async () => {
    // Arrange: a trainer that checkpoints on SIGTERM and exits as interrupted
    const marker = path.join(dir, 'interrupted');
    const trainer = await fakeTrainer(
      'cancel',
      `trap 'echo checkpointed > ${marker}; exit 75' TERM\necho '{"event":"start"}'\nwhile :; do sleep 0.05; done`,
    );
    const env = activityEnv();
    let cleaned = false;
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));

    // Act
    const result = run(env, trainer, {
      onEvent: () => started(),
      cleanup: async () => {
        cleaned = true;
      },
    }).catch((e: unknown) => e);
    await running;
    env.cancel();
    const err = await result;

    // Assert
    expect(err).toBeInstanceOf(CancelledFailure);
    expect(await readFile(marker, 'utf8')).toBe('checkpointed\n');
    expect(cleaned).toBe(true);
  });
});
