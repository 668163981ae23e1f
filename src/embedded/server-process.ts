import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log';

/**
 * The servers tuneloop starts (PostgreSQL, the Temporal dev server, Ollama) and the trainer, as child processes that
 * never outlive the process that started them:
 *
 * - Each runs in a process group (and session) of its own, so the terminal's Ctrl-C reaches tuneloop only, and
 *   tuneloop stops them in order; stopping or killing addresses the whole group (Ollama's runners, PostgreSQL's
 *   backends).
 * - On Linux each gets a parent-death signal (util-linux `setpriv --pdeathsig`, set in the child before it execs the
 *   server): if tuneloop dies in a way no handler sees — SIGKILL, the OOM killer — the kernel sends each server its
 *   own stop signal at once.
 * - With a `runDir`, each writes a record (pid, the kernel's start time of the process, its executable): a later
 *   start finds what an earlier one left behind — only processes that are provably ours — and stops it.
 * - A process that exits (a crash included) kills, on its way out, every server still running.
 */

export interface ServerProcess {
  name: string;
  pid: number;
  child: ChildProcess;
  /** Resolves when the server's main process has exited. */
  exited: Promise<void>;
  /** Asks the server to stop (its stop signal), then kills what remains of its group after `stopTimeoutMs`. */
  stop(): Promise<void>;
  /** SIGKILL to the whole group at once: a crash, for tests; and the second Ctrl-C. */
  kill(): Promise<void>;
  /** The last few thousand characters the server wrote to stderr (for error messages). */
  stderrTail(): string;
}

export interface ServerSpec {
  /** Names the record in `runDir`: `postgres`, `temporal`, `ollama-11535`. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  uid?: number;
  gid?: number;
  /** What asks this server for a clean, quick stop: SIGINT is PostgreSQL's fast shutdown, SIGTERM the others'. */
  stopSignal: NodeJS.Signals;
  /** How long a stop waits before SIGKILL of the group. */
  stopTimeoutMs?: number;
  /** Where the record of the running server is kept (`<home>/run`); none for throwaway servers. */
  runDir?: string;
  stdio?: SpawnOptions['stdio'];
  log: Logger;
}

const live = new Set<ServerProcess>();

// A crash of this process (an uncaught exception, process.exit) must not leave servers behind; 'exit' handlers run
// synchronously, which process.kill is.
process.once('exit', () => {
  for (const s of live) killGroup(s.pid, 'SIGKILL');
});

/** Kills every server this process started that is still running (the second Ctrl-C). */
export function killAllServers(): void {
  for (const s of live) killGroup(s.pid, 'SIGKILL');
}

/** The util-linux helper that sets a parent-death signal before it execs a command (Linux only). */
let setprivPath: string | null | undefined;
function setpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return null;
  for (const dir of ['/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = path.join(dir, 'setpriv');
    if (existsSync(p) && spawnSync(p, ['--pdeathsig', 'TERM', '--', 'true']).status === 0) {
      setprivPath = p;
      break;
    }
  }
  return setprivPath;
}

/**
 * The command line that runs `command` with `signal` as its parent-death signal, where the platform has one; the
 * command itself elsewhere. (Node cannot call prctl between fork and exec itself.)
 */
export function withParentDeathSignal(command: string, args: string[], signal: NodeJS.Signals): [string, string[]] {
  const sp = setpriv();
  return sp ? [sp, ['--pdeathsig', signal.replace(/^SIG/, ''), '--', command, ...args]] : [command, args];
}

export function spawnServer(spec: ServerSpec): ServerProcess {
  const [cmd, args] = withParentDeathSignal(spec.command, spec.args, spec.stopSignal);
  const child = spawn(cmd, args, {
    detached: true,
    stdio: spec.stdio ?? ['ignore', 'ignore', 'pipe'],
    env: spec.env ?? process.env,
    cwd: spec.cwd,
    uid: spec.uid,
    gid: spec.gid,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not start ${spec.name} (${spec.command})`);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  let done = false;
  const exited = new Promise<void>((resolve) => {
    const finish = () => {
      if (done) return;
      done = true;
      resolve();
    };
    child.once('exit', finish);
    child.once('error', finish);
  });
  const record = spec.runDir ? path.join(spec.runDir, `${spec.name}.json`) : null;
  const server: ServerProcess = {
    name: spec.name,
    pid,
    child,
    exited,
    async stop() {
      if (!done) {
        killProcess(pid, spec.stopSignal);
        const timer = setTimeout(() => killGroup(pid, 'SIGKILL'), spec.stopTimeoutMs ?? 15_000);
        await exited;
        clearTimeout(timer);
      }
      // What the leader started may outlive it (Ollama's runners); nothing of the group stays.
      killGroup(pid, 'SIGKILL');
      live.delete(server);
      if (record) await rm(record, { force: true });
    },
    async kill() {
      killGroup(pid, 'SIGKILL');
      await exited;
      live.delete(server);
      if (record) await rm(record, { force: true });
    },
    stderrTail: () => stderr,
  };
  live.add(server);
  // A server that exited on its own (a crash) is no longer ours to signal: its pid may be reused.
  void exited.then(() => live.delete(server));
  if (record)
    void writeServerRecord(
      record,
      { name: spec.name, pid, command: spec.command, stopSignal: spec.stopSignal },
      spec.log,
    );
  return server;
}

/**
 * Waits until `ready()` answers true (polled every `intervalMs`). A server that exits first, or is not ready by the
 * deadline (it is killed then), fails the start with what it last wrote to stderr.
 */
export async function waitUntilReady(
  server: ServerProcess,
  ready: () => Promise<boolean>,
  opts: { timeoutMs: number; intervalMs: number },
): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  for (;;) {
    const { exitCode, signalCode } = server.child;
    if (exitCode !== null || signalCode !== null) {
      throw new Error(
        `${server.name} exited (${exitCode ?? signalCode}) while starting: ${server.stderrTail().slice(-2000)}`,
      );
    }
    if (await ready().catch(() => false)) return;
    if (Date.now() > deadline) {
      await server.kill();
      throw new Error(`${server.name} not ready after ${opts.timeoutMs} ms: ${server.stderrTail().slice(-2000)}`);
    }
    await sleep(opts.intervalMs);
  }
}

interface ServerRecord {
  name: string;
  pid: number;
  /** Field 22 of /proc/<pid>/stat: with the pid, names one process for the life of the machine. */
  startTime: string;
  /** The server's executable (realpath): a group member must run it to be ours. */
  exe: string;
  stopSignal: NodeJS.Signals;
  /** The tuneloop process that started it. */
  owner: { pid: number; startTime: string | null };
}

/** Records a running server in `file` (`<runDir>/<name>.json`), for a later start to find if this process dies. */
export async function writeServerRecord(
  file: string,
  server: { name: string; pid: number; command: string; stopSignal: NodeJS.Signals },
  log: Logger,
): Promise<void> {
  // A process keeps its start time through exec, so the record is right whether or not setpriv has exec'd yet.
  const startTime = procStat(server.pid)?.startTime ?? null;
  if (!startTime) return; // no /proc, or it is gone already
  let exe: string;
  try {
    exe = realpathSync(server.command);
  } catch {
    exe = server.command;
  }
  const rec: ServerRecord = {
    name: server.name,
    pid: server.pid,
    startTime,
    exe,
    stopSignal: server.stopSignal,
    owner: thisProcess(),
  };
  try {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify(rec) + '\n');
  } catch (err) {
    log.warn({ err, file }, 'could not record a server process (a crash would leave it for the next start)');
  }
}

/** pid's process group and start time, from /proc (Linux); null when there is no such process or no /proc. */
export function procStat(pid: number): { pgrp: number; startTime: string } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) is in parentheses and may hold spaces or parentheses: fields follow the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // rest[0] is field 3 (state): field n is rest[n - 3].
    return { pgrp: Number(rest[2]), startTime: rest[19]! };
  } catch {
    return null;
  }
}

function procExe(pid: number): string | null {
  try {
    return readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  } catch {
    return null;
  }
}

/** Whether the process that wrote a record still runs: by pid and start time, or by pid alone without /proc. */
export function isAlive(pid: number, startTime: string | null): boolean {
  if (procStat(process.pid) === null) {
    try {
      process.kill(pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }
  return startTime !== null && procStat(pid)?.startTime === startTime;
}

/**
 * The processes of a recorded server that still run: the recorded process, and members of its process group that
 * run its program. If the recorded pid names another process now (another start time), the pid was reused and the
 * group is someone else's: nothing. (While a member of the old group lives, Linux does not hand its id out again.)
 */
function survivors(rec: ServerRecord): number[] {
  const leader = procStat(rec.pid);
  if (leader && leader.startTime !== rec.startTime) return [];
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const st = procStat(pid);
    if (!st || st.pgrp !== rec.pid) continue;
    if (BigInt(st.startTime) < BigInt(rec.startTime)) continue;
    if (procExe(pid) !== rec.exe) continue;
    out.push(pid);
  }
  return out;
}

/** This process, as records name their owner. */
export const thisProcess = () => ({ pid: process.pid, startTime: procStat(process.pid)?.startTime ?? null });

export class StackAlreadyRunning extends Error {
  override readonly name = 'StackAlreadyRunning';
}

/**
 * Makes `runDir` ours: refuses when the tuneloop process that holds it still runs, and stops every server an
 * earlier holder left behind (it died without stopping them: SIGKILL, a crash, a machine without a parent-death
 * signal). Returns a release function for a clean exit.
 */
export async function claimRunDir(runDir: string, log: Logger, what: string): Promise<() => Promise<void>> {
  await mkdir(runDir, { recursive: true });
  const lock = path.join(runDir, 'owner.json');
  const me = { ...thisProcess(), what };
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lock, JSON.stringify(me) + '\n', { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const held = await readJson<{ pid: number; startTime: string | null; what?: string }>(lock);
      if (held && held.pid !== process.pid && isAlive(held.pid, held.startTime)) {
        throw new StackAlreadyRunning(
          `\`tuneloop ${held.what ?? 'up'}\` is already running on ${path.dirname(runDir)} (pid ${held.pid}); ` +
            'stop it first (Ctrl-C in its terminal, or kill it), or choose another TUNELOOP_HOME',
        );
      }
      await rm(lock, { force: true });
    }
  }
  await reclaimLeftovers(runDir, log);
  return () => rm(lock, { force: true });
}

/** Stops the servers recorded in `runDir` whose owner is gone. */
export async function reclaimLeftovers(runDir: string, log: Logger): Promise<void> {
  for (const name of await readdir(runDir).catch(() => [] as string[])) {
    if (!name.endsWith('.json') || name === 'owner.json') continue;
    const file = path.join(runDir, name);
    const rec = await readJson<ServerRecord>(file);
    if (!rec || !procStat(process.pid)) {
      // Unreadable, or no /proc to check a record against: nothing can be stopped safely.
      await rm(file, { force: true });
      continue;
    }
    let pids = survivors(rec);
    if (pids.length > 0) {
      log.warn(
        { server: rec.name, pids, ownerPid: rec.owner.pid },
        'stopping a server an earlier tuneloop left running',
      );
      if (pids.includes(rec.pid)) killProcess(rec.pid, rec.stopSignal);
      for (let waited = 0; waited < 15_000 && pids.length > 0; waited += 100) {
        await sleep(100);
        pids = survivors(rec);
      }
      for (const pid of pids) killProcess(pid, 'SIGKILL');
    }
    await rm(file, { force: true });
  }
}

async function readJson<T>(file: string): Promise<T | null> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

function killProcess(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

function killGroup(pid: number, signal: NodeJS.Signals) {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone
  }
}
