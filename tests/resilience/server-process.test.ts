import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimRunDir, procStat, StackAlreadyRunning, writeServerRecord } from '../../src/embedded/server-process';
import { testLog, tmpDir } from '../helpers/env';

/**
 * What a new `tuneloop up` does with servers an earlier one left running (it died where no parent-death signal
 * reached them: another platform, a race at start): real processes, real records. It stops only what is provably
 * a leftover — the recorded process, or members of its group running its program — and never a process that merely
 * reuses a recorded pid.
 */

const started: number[] = [];
afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
});

/** A Node process in a group of its own that starts a second one in the same group, like Ollama and a runner. */
async function leaderWithChild(): Promise<{ leader: number; child: number }> {
  const script = `
    const c = require('node:child_process').spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    console.log(c.pid);
    setInterval(() => {}, 1000);`;
  const p = spawn(process.execPath, ['-e', script], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
  started.push(p.pid!);
  const child = await new Promise<number>((resolve) => p.stdout!.once('data', (d: Buffer) => resolve(Number(d))));
  return { leader: p.pid!, child };
}

const alive = (pid: number) => procStat(pid) !== null && procStat(pid)!.pgrp !== 0;

async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  return !alive(pid);
}

describe('claimRunDir', () => {
  it('stops a recorded server left behind, with the processes of its group that run its program', async () => {
    // Arrange
    const runDir = await tmpDir('run-');
    const { leader, child } = await leaderWithChild();
    await writeServerRecord(
      path.join(runDir, 'ollama-1.json'),
      { name: 'ollama-1', pid: leader, command: process.execPath, stopSignal: 'SIGTERM' },
      testLog,
    );

    // Act
    const release = await claimRunDir(runDir, testLog, 'up');

    // Assert
    expect(await gone(leader)).toBe(true);
    expect(await gone(child)).toBe(true);
    await release();
  });

  it('leaves alone a process that reuses a recorded pid: another program, or one started after the record', async () => {
    // Arrange
    const runDir = await tmpDir('run-');
    const other = await leaderWithChild();
    const later = await leaderWithChild();
    await writeFile(
      path.join(runDir, 'postgres.json'),
      JSON.stringify({
        name: 'postgres',
        pid: other.leader,
        startTime: procStat(other.leader)!.startTime,
        exe: '/usr/lib/postgresql/bin/postgres',
        stopSignal: 'SIGINT',
        owner: { pid: 1, startTime: '0' },
      }),
    );
    await writeFile(
      path.join(runDir, 'temporal.json'),
      JSON.stringify({
        name: 'temporal',
        pid: later.leader,
        startTime: String(BigInt(procStat(later.leader)!.startTime) + 1n),
        exe: process.execPath,
        stopSignal: 'SIGTERM',
        owner: { pid: 1, startTime: '0' },
      }),
    );

    // Act
    const release = await claimRunDir(runDir, testLog, 'up');

    // Assert
    await new Promise((r) => setTimeout(r, 500));
    expect([other.leader, other.child, later.leader, later.child].map(alive)).toEqual([true, true, true, true]);
    await release();
  });

  it('refuses while the tuneloop that holds the folder still runs, and takes it over once that one is gone', async () => {
    // Arrange: the holder is a live process other than this one.
    const runDir = await tmpDir('run-');
    const holder = await leaderWithChild();
    await writeFile(
      path.join(runDir, 'owner.json'),
      JSON.stringify({ pid: holder.leader, startTime: procStat(holder.leader)!.startTime, what: 'up' }),
    );

    // Act + Assert
    await expect(claimRunDir(runDir, testLog, 'up')).rejects.toBeInstanceOf(StackAlreadyRunning);
    await expect(claimRunDir(runDir, testLog, 'up')).rejects.toThrow(`(pid ${holder.leader})`);
    process.kill(-holder.leader, 'SIGKILL');
    expect(await gone(holder.leader)).toBe(true);
    const release = await claimRunDir(runDir, testLog, 'up');
    await release();
  });
});
