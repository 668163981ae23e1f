import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Logger } from '../log';
import { withParentDeathSignal } from '../embedded/server-process';

/**
 * The Python trainer as a child process (gpu-worker/, `python -m tuneloop_trainer`), speaking the protocol of
 * gpu-worker/src/tuneloop_trainer/protocol.py: one JSON object per stdout line, logs on stderr, exit codes that
 * tell bad input from crashes.
 *
 * The trainer runs in a process group of its own, so a signal reaches it and everything it started. It dies with
 * this process even on `kill -9`: it gets a parent-death signal (SIGTERM) and, with --watch-stdin, treats the end
 * of its stdin (this process's end of the pipe closes when it dies) the same way. Either way it checkpoints first.
 */

export const TRAINER_EXIT = { OK: 0, CRASH: 1, BAD_INPUT: 2, INTERRUPTED: 75 } as const;

export interface TrainerEvent {
  event: 'start' | 'progress' | 'checkpoint' | 'eval' | 'done' | 'error';
  [field: string]: unknown;
}

export interface TrainerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines the trainer logged, for error messages. */
  stderrTail: string[];
  /** The `error` event, when the trainer sent one before exiting. */
  error: { type: string; message: string } | null;
  done: TrainerEvent | null;
}

export interface TrainerProcess {
  pid: number;
  exited: Promise<TrainerExit>;
  /** SIGTERM to the group: the trainer finishes its step, writes a checkpoint and exits with INTERRUPTED. */
  interrupt(): void;
  /** SIGKILL to the group (only when it ignores SIGTERM past a deadline). */
  kill(): void;
}

/** Where the trainer is and how it may use the host: `Config['trainer']` or the part of it a command needs. */
export interface TrainerRuntime {
  python: string;
  pythonPath: string;
  /** OMP_NUM_THREADS; null: torch's default (every core). */
  threads: number | null;
}

export interface TrainerOptions {
  trainer: TrainerRuntime;
  command: 'train' | 'evaluate' | 'export' | 'init-tiny' | 'ollama-stage' | 'parity';
  args: string[];
  cwd: string;
  log: Logger;
  /** Called in order for every event; not awaited (slow work belongs on the caller's own queue). */
  onEvent?: (e: TrainerEvent) => void;
}

const STDERR_TAIL = 40;

export function startTrainer(opts: TrainerOptions): TrainerProcess {
  const { python, pythonPath, threads } = opts.trainer;
  // Every command gets SIGTERM as its parent-death signal (train also sets it itself, and watches its stdin).
  const [cmd, args] = withParentDeathSignal(
    python,
    ['-m', 'tuneloop_trainer', opts.command, ...opts.args, ...watchArgs(opts.command)],
    'SIGTERM',
  );
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    detached: true, // its own process group
    stdio: ['pipe', 'pipe', 'pipe'],
    env: {
      ...process.env,
      PYTHONPATH: [pythonPath, process.env.PYTHONPATH].filter(Boolean).join(':'),
      PYTHONUNBUFFERED: '1',
      // Never reach for a hub from a worker: base models are local directories.
      HF_HUB_OFFLINE: '1',
      TOKENIZERS_PARALLELISM: 'false',
      // OpenMP threads that spin while they wait cost a CPU trainer several times its speed when the host's cores
      // are shared (the worker, PostgreSQL, an eval): wait passively. No effect on GPU kernels.
      OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? 'PASSIVE',
      ...(threads !== null ? { OMP_NUM_THREADS: String(threads) } : {}),
    },
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start the trainer (${python})`);
  // Our end of stdin stays open for the trainer's lifetime; it closes when this process dies.
  child.stdin.on('error', () => undefined);

  const stderrTail: string[] = [];
  let error: TrainerExit['error'] = null;
  let done: TrainerEvent | null = null;
  const log = opts.log.child({ trainerPid: pid, command: opts.command });

  createInterface({ input: child.stderr, crlfDelay: Infinity }).on('line', (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL) stderrTail.shift();
    log.debug({ trainer: line }, 'trainer log');
  });
  const stdoutClosed = new Promise<void>((resolve) => {
    const rl = createInterface({ input: child.stdout, crlfDelay: Infinity });
    rl.on('line', (line) => {
      const e = parseEvent(line);
      if (!e) {
        log.warn({ line: line.slice(0, 500) }, 'trainer wrote a line that is not a protocol event');
        return;
      }
      if (e.event === 'error') error = { type: String(e.type ?? 'CRASH'), message: String(e.message ?? '') };
      if (e.event === 'done') done = e;
      opts.onEvent?.(e);
    });
    rl.on('close', resolve);
  });
  const exited = new Promise<TrainerExit>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      // 'close' fires after stdio ends; wait for the last stdout line to have been handled too.
      void stdoutClosed.then(() => resolve({ code, signal, stderrTail, error, done }));
    });
  });
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  return { pid, exited, interrupt: () => signalGroup('SIGTERM'), kill: () => signalGroup('SIGKILL') };
}

/** Long commands watch their stdin (the driver's death closes it); short ones have no flag for it. */
function watchArgs(command: TrainerOptions['command']): string[] {
  return command === 'train' ? ['--watch-stdin'] : [];
}

export function parseEvent(line: string): TrainerEvent | null {
  if (!line.startsWith('{')) return null;
  try {
    const v = JSON.parse(line) as unknown;
    if (typeof v === 'object' && v !== null && typeof (v as { event?: unknown }).event === 'string') {
      return v as TrainerEvent;
    }
  } catch {
    // not JSON
  }
  return null;
}

/** One message out of an exit that was not a success: the trainer's own error line, else its last log lines. */
export function describeExit(name: string, x: TrainerExit): string {
  const how = x.signal ? `was killed by ${x.signal}` : `exited with ${x.code}`;
  if (x.error) return `${name} ${how}: ${x.error.message}`;
  const tail = x.stderrTail.slice(-8).join('\n');
  return `${name} ${how}${tail ? `; its last log lines:\n${tail}` : ''}`;
}
