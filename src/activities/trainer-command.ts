import { Context } from '@temporalio/activity';
import { FailureType, permanentFailure, retryableFailure } from './failures';
import {
  describeExit,
  startTrainer,
  TRAINER_EXIT,
  type TrainerEvent,
  type TrainerExit,
  type TrainerOptions,
} from './trainer-process';

/** How long an interrupted trainer may take to write its checkpoint and exit before it is killed. */
export const INTERRUPT_GRACE_MS = 5 * 60_000;

/** The trainer's own bad-input types (its `error` event) as failure types; any other bad input is CONFIG_INVALID. */
const BAD_INPUT_TYPES: Record<string, FailureType> = {
  CONFIG_INVALID: FailureType.CONFIG_INVALID,
  DATASET_INVALID: FailureType.DATASET_INVALID,
  MODEL_INVALID: FailureType.CONFIG_INVALID,
  CHECKPOINT_INVALID: FailureType.STORE_INTEGRITY,
};

export interface TrainerCommand extends TrainerOptions {
  /** Heartbeats `details()` every `everyMs` while the command runs. */
  heartbeat?: { everyMs: number; details: () => unknown };
  /** Called once the process has started (train records its pid for the next attempt). */
  started?: (pid: number) => Promise<void>;
  /**
   * Called when the process has exited, before the outcome is judged (train waits for its checkpoint uploads here).
   * What it throws fails the command, unless the activity was cancelled.
   */
  afterExit?: () => Promise<void>;
  /** Called last, whatever happened. */
  cleanup?: () => Promise<void>;
  /** From the interrupt (on cancellation) to the kill; INTERRUPT_GRACE_MS by default. */
  graceMs?: number;
}

/**
 * Runs one trainer command inside an activity, to its `done` event, which it returns. The one policy for every
 * command (train, evaluate, ollama-stage, parity):
 *
 * - cancellation of the activity interrupts the trainer (SIGTERM: it checkpoints where it can and exits), kills it
 *   after `graceMs` if it has not exited, waits for it, and throws the cancellation's reason;
 * - an exit is judged by trainerFailure(): bad input is permanent, a crash or an interruption is retried;
 * - exit 0 without a `done` event is a crash (retried).
 */
export async function runTrainerCommand(cmd: TrainerCommand): Promise<TrainerEvent> {
  const ctx = Context.current();
  const signal = ctx.cancellationSignal;
  const name = `trainer ${cmd.command}`;
  const proc = startTrainer(cmd);
  await cmd.started?.(proc.pid);
  const beat = cmd.heartbeat;
  const timer = beat ? setInterval(() => ctx.heartbeat(beat.details()), beat.everyMs) : undefined;
  let killTimer: NodeJS.Timeout | undefined;
  const onCancel = () => {
    cmd.log.info({ reason: String(signal.reason), command: cmd.command }, 'cancelled: interrupting the trainer');
    proc.interrupt();
    killTimer = setTimeout(() => proc.kill(), cmd.graceMs ?? INTERRUPT_GRACE_MS);
  };
  signal.addEventListener('abort', onCancel, { once: true });
  let x: TrainerExit;
  let afterExit: { error: unknown } | null = null;
  try {
    x = await proc.exited;
    try {
      await cmd.afterExit?.();
    } catch (error) {
      afterExit = { error };
    }
  } finally {
    clearInterval(timer);
    clearTimeout(killTimer);
    signal.removeEventListener('abort', onCancel);
    await cmd.cleanup?.();
  }
  if (signal.aborted) throw signal.reason;
  if (afterExit) throw afterExit.error;
  if (x.code !== TRAINER_EXIT.OK) throw trainerFailure(name, x);
  if (!x.done) throw retryableFailure(FailureType.TRAINER_CRASHED, `${name} exited 0 without a done event`);
  return x.done;
}

/**
 * What a trainer's exit (not a success) fails with. Bad input is permanent, typed by the trainer's error event; out
 * of GPU memory is permanent (the same config on the same host fails the same way); an interruption that was not our
 * cancellation (host preemption) and a crash are retried, train from its newest checkpoint.
 */
export function trainerFailure(name: string, x: TrainerExit) {
  const message = describeExit(name, x);
  if (x.code === TRAINER_EXIT.BAD_INPUT) {
    return permanentFailure(BAD_INPUT_TYPES[x.error?.type ?? ''] ?? FailureType.CONFIG_INVALID, message);
  }
  if (x.error?.type === 'GPU_OOM') return permanentFailure(FailureType.GPU_OOM, message);
  if (x.code === TRAINER_EXIT.INTERRUPTED) return retryableFailure(FailureType.TRAINER_INTERRUPTED, message);
  return retryableFailure(FailureType.TRAINER_CRASHED, message);
}
