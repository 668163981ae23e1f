import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createApiKey } from '../../src/api/auth';
import { createDb, type Db } from '../../src/db/pool';
import { readSampleDefinition, seedSample } from '../../src/cli/demo-sample';
import { upsertModel } from '../../src/db/queries/models';
import { modelDefinitionSchema } from '../../src/domain/model-config';
import { procStat } from '../../src/embedded/server-process';
import { TINY_BASE_MODEL } from '../../src/embedded/base-models';
import { REPO_ROOT } from '../../src/embedded/temporal-dev-server';
import { FailureType } from '../../src/domain/failures';
import { testLog, tmpDir } from '../helpers/env';
import { freePort } from '../helpers/ports';

/**
 * `tuneloop up` as a person runs it: in a terminal, stopped with Ctrl-C (SIGINT to the terminal's foreground
 * process group, sent by the terminal itself), twice in a row, and killed with SIGKILL in the middle of a training
 * run. Whatever happens, no server it started survives, and the next `up` on the same home starts and carries on.
 */

let home: string;
let env: Record<string, string>;

beforeAll(async () => {
  home = await tmpDir('up-home-');
  await chmod(home, 0o755); // as root, PostgreSQL runs as the `postgres` OS user, which must reach its folder
  const [pg, temporal, ui, ollama, canary, api] = await Promise.all(Array.from({ length: 6 }, () => freePort()));
  env = {
    TUNELOOP_HOME: home,
    TUNELOOP_EMBEDDED_PG_PORT: String(pg),
    TEMPORAL_PORT: String(temporal),
    TEMPORAL_UI_PORT: String(ui),
    TUNELOOP_OLLAMA_PORT: String(ollama),
    TUNELOOP_OLLAMA_CANARY_PORT: String(canary),
    TUNELOOP_API_PORT: String(api),
    TUNELOOP_MODELS_DIR: inject('modelsDir'),
    TUNELOOP_TRAINER_THREADS: '1',
    // Only the attempt journal can make a training attempt of a killed `up` retry sooner than this.
    TUNELOOP_GPU_HEARTBEAT_TIMEOUT_S: '3600',
    LOG_LEVEL: 'info',
  };
});

/** `bin/tuneloop up`, in a pseudo-terminal of its own (tests/helpers/pty_run.py) or as a plain child process. */
class Up {
  readonly proc: ChildProcess;
  output = '';
  readonly exited: Promise<number | null>;

  constructor(opts: { terminal: boolean }) {
    const bin = path.join(REPO_ROOT, 'bin/tuneloop');
    // The machine's own PATH: on a machine whose Node is older than 24 this is the path that hands over to ours.
    const [cmd, args] = opts.terminal
      ? ['python3', [path.join(REPO_ROOT, 'tests/helpers/pty_run.py'), bin, 'up']]
      : [bin, ['up']];
    this.proc = spawn(cmd, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: !opts.terminal,
    });
    const keep = (d: Buffer) => (this.output += d.toString());
    this.proc.stdout!.on('data', keep);
    this.proc.stderr!.on('data', keep);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code) => resolve(code)));
  }

  async ready(): Promise<ServerRecords> {
    await waitFor('up to be ready', async () =>
      this.output.includes('Press Ctrl-C to stop.') ? true : undefined,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; its output:\n${this.output.slice(-3000)}`);
    });
    return readRecords();
  }

  /** A key pressed in its terminal. */
  press(key: 'INTR' | 'QUIT') {
    this.proc.stdin!.write(`${key}\n`);
  }

  /** Log lines at error level or above, and PostgreSQL's complaints about being stopped under its clients. */
  errors(): string[] {
    return this.output
      .split(/\r?\n/)
      .filter((l) => /"level":(50|60)/.test(l) || /administrator command|longer than 60 s/.test(l));
  }

  /** The components in the order the stack stopped them. */
  stopOrder(): string[] {
    return [...this.output.matchAll(/"component":"([\w-]+)","msg":"stopped"/g)].map((m) => m[1]!);
  }
}

type ServerRecords = { name: string; pid: number; startTime: string }[];

async function readRecords(): Promise<ServerRecords> {
  const dir = path.join(home, 'run');
  const out: ServerRecords = [];
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.json') || name === 'owner.json') continue;
    out.push(JSON.parse(await readFile(path.join(dir, name), 'utf8')));
  }
  return out;
}

const running = (r: { pid: number; startTime: string }) => procStat(r.pid)?.startTime === r.startTime;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('tuneloop up in a terminal', { timeout: 300_000 }, () => {
  it('Ctrl-C stops everything in order with no errors, nothing survives, and the next up starts', async () => {
    // Arrange
    const up = new Up({ terminal: true });
    const servers = await up.ready();
    expect(servers.map((s) => s.name).sort()).toEqual(
      [
        'ollama-' + env.TUNELOOP_OLLAMA_CANARY_PORT,
        'ollama-' + env.TUNELOOP_OLLAMA_PORT,
        'postgres',
        'temporal',
      ].sort(),
    );
    expect(servers.every(running)).toBe(true);

    // Act
    up.press('INTR');
    const code = await up.exited;

    // Assert
    expect(code).toBe(0);
    expect(servers.filter(running)).toEqual([]);
    expect(up.errors()).toEqual([]);
    const order = up.stopOrder();
    const at = (c: string) => order.indexOf(c);
    expect(at('api')).toBeGreaterThanOrEqual(0);
    expect(at('api')).toBeLessThan(at('serving-recorder'));
    expect(at('serving-recorder')).toBeLessThan(at('workers'));
    expect(at('workers')).toBeLessThan(at('temporal'));
    expect(at('temporal')).toBeLessThan(at('canary-ollama'));
    expect(at('canary-ollama')).toBeLessThan(at('ollama'));
    expect(at('ollama')).toBeLessThan(at('postgres'));
    expect(await readRecords()).toEqual([]);

    const again = new Up({ terminal: true });
    await again.ready();
    again.press('INTR');
    expect(await again.exited).toBe(0);
    expect(again.errors()).toEqual([]);
  });

  it('a second Ctrl-C stops at once, and still leaves nothing behind', async () => {
    // Arrange
    const up = new Up({ terminal: true });
    const servers = await up.ready();

    // Act: the second press comes while the stop the first one began is under way.
    up.press('INTR');
    await waitFor('the stop to begin', async () => (up.output.includes('"msg":"shutting down"') ? true : undefined));
    up.press('INTR');
    const code = await up.exited;

    // Assert
    expect(code).toBe(130);
    await waitFor('the servers to be gone', async () => (servers.some(running) ? undefined : true), 10_000);
    // (The next `up` on this home starts: the SIGKILL test below does, after this.)
  });
});

describe('tuneloop up killed with SIGKILL during a training run', { timeout: 600_000 }, () => {
  let db: Db | undefined;
  let temporal: Connection | undefined;
  afterAll(async () => {
    await db?.destroy();
    await temporal?.close();
  });

  it('leaves no server and no trainer behind; the next up starts and the run carries on from its checkpoint', async () => {
    // Arrange: a model whose training takes long enough to be killed in the middle, one day of data, a run.
    const up = new Up({ terminal: false });
    const servers = await up.ready();
    const password = (await readFile(path.join(home, 'postgres', 'superuser-password'), 'utf8')).trim();
    db = createDb(
      `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${env.TUNELOOP_EMBEDDED_PG_PORT}/tuneloop`,
      testLog,
      2,
    );
    const sampled = readSampleDefinition();
    // The plumbing under a kill is what this test is about: the tiny model (the demo's real one is for the demo and
    // tests/workflows/real-model.test.ts), so no house style to learn either.
    const { style: _style, ...config } = sampled.config;
    const definition = modelDefinitionSchema.parse({
      ...sampled,
      id: 'killcoach',
      baseModel: TINY_BASE_MODEL,
      config: {
        ...config,
        training: { ...config.training, epochs: 20, checkpointEverySteps: 4 },
        canary: { steps: [100], holdSeconds: 1, minCalls: 0 },
      },
    });
    const model = await upsertModel(db, definition);
    await seedSample(db, { id: model.id, app: model.app_id }, '');
    const { key } = await createApiKey(db, { name: 'ops', role: 'operator', appId: null, models: [] });
    const api = `http://127.0.0.1:${env.TUNELOOP_API_PORT}`;
    const started = await fetch(`${api}/v1/runs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: model.id }),
    });
    expect(started.status).toBe(202);
    const run = (await started.json()) as { id: string; workflowId: string };
    const trainerPidFile = path.join(home, 'gpu-work', 'runs', run.id, 'trainer.pid');
    const trainer = await waitFor(
      'the trainer to have written a checkpoint',
      async () => {
        const pid = Number(await readFile(trainerPidFile, 'utf8'));
        const st = procStat(pid);
        const checkpoints = await readdir(path.join(home, 'gpu-work', 'runs', run.id, 'out', 'checkpoints')).catch(
          () => [],
        );
        return st && checkpoints.length > 0 ? { pid, startTime: st.startTime } : undefined;
      },
      240_000,
    );

    // Act
    process.kill(up.proc.pid!, 'SIGKILL');
    await up.exited;

    // Assert: the kernel's parent-death signals stop every server and the trainer (which checkpoints first).
    await waitFor(
      'every server and the trainer to be gone',
      async () => ([...servers, trainer].some(running) ? undefined : true),
      60_000,
    );
    const next = new Up({ terminal: false });
    await next.ready();
    temporal = await Connection.connect({ address: `127.0.0.1:${env.TEMPORAL_PORT}` });
    const client = new Client({ connection: temporal, namespace: 'default' });
    const result = await client.workflow.getHandle(run.workflowId, run.id).result();
    expect(result.status).toBe('succeeded');
    const train = result.stages.find((s: { name: string }) => s.name === 'train')!;
    expect(train.summary).toMatchObject({ attempts: 2 });
    expect((train.summary as { resumedFrom: unknown }).resumedFrom).not.toBeNull();
    // The lost attempt was failed by the next worker at its start, not left to its (hour-long) heartbeat timeout.
    const history = await client.workflow.getHandle(run.workflowId, run.id).fetchHistory();
    const lost = JSON.stringify(history.events).includes(FailureType.WORKER_LOST);
    expect(lost).toBe(true);

    process.kill(next.proc.pid!, 'SIGTERM');
    expect(await next.exited).toBe(0);
    expect(next.errors()).toEqual([]);
    expect(await readRecords()).toEqual([]);
  });
});
