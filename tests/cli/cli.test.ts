import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { envSchema } from '../../src/config';

// The real command, as an operator runs it: bin/tuneloop through tsx, in a child process. Each spawn costs a
// second or two, so every case here is one that only the process boundary can show (exit codes, stderr).

const root = path.resolve(import.meta.dirname, '../..');
const pinnedNode = path.join(root, '.tools/node/bin/node');
const node = existsSync(pinnedNode) ? pinnedNode : process.execPath;

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

let home: string;

beforeAll(async () => {
  home = await mkdtemp(path.join(inject('tmpRoot'), 'cli-home-'));
});

/** A copy of this process's environment without any tuneloop setting, so the host cannot change the outcome. */
function baseEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(envSchema.shape)) delete env[key];
  return { ...env, TUNELOOP_HOME: home, LOG_LEVEL: 'silent' };
}

function tuneloop(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      node,
      ['bin/tuneloop', ...args],
      { cwd: root, env: { ...baseEnv(), ...env }, timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : null) : 0, stdout, stderr }),
    );
    child.stdin?.end(input ?? '');
  });
}

describe('tuneloop CLI', () => {
  it('--help exits 0 and lists every command', async () => {
    // Act
    const r = await tuneloop(['--help']);

    // Assert
    expect(r.code).toBe(0);
    for (const command of [
      'up',
      'migrate',
      'keys',
      'models',
      'run',
      'status',
      'demo',
      'worker',
      'api',
      'import',
      'anonymize',
      'schedule',
    ]) {
      expect(r.stdout).toMatch(new RegExp(`^  ${command}\\b`, 'm'));
    }
  });

  it('anonymize redacts JSON lines from stdin and answers a bad line with an error line', async () => {
    // Arrange
    const input = [
      JSON.stringify({ text: 'I am Sarah Connolly 😀, mail sarah@example.org. Romans 8:28 at 152 bpm.' }),
      'not json',
      JSON.stringify({ nottext: 1 }),
    ].join('\n');

    // Act
    const r = await tuneloop(['anonymize'], {}, input);

    // Assert
    expect(r.code).toBe(0);
    const [ok, bad, missing] = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(ok.text).toBe('I am <PERSON_1> 😀, mail <EMAIL_1>. Romans 8:28 at 152 bpm.');
    const original = JSON.parse(input.split('\n')[0]!).text as string;
    expect(ok.entities.map((e: { start: number; end: number }) => original.slice(e.start, e.end))).toEqual([
      'Sarah Connolly',
      'sarah@example.org',
    ]);
    expect(bad).toMatchObject({ line: 2, error: expect.stringContaining('line 2') });
    expect(missing).toMatchObject({ line: 3 });
  });

  it('schedule set, pause and backfill refuse bad input with the API’s rules before reaching any server, exit 2', async () => {
    // Act
    const time = await tuneloop(['schedule', 'set', '--model', 'coach', '--at', '25:00']);
    const zone = await tuneloop(['schedule', 'set', '--model', 'coach', '--timezone', 'Mars/Olympus_Mons']);
    const future = await tuneloop([
      'schedule',
      'backfill',
      '--model',
      'coach',
      '--from',
      '2026-01-01T00:00:00Z',
      '--to',
      '2999-01-01T00:00:00Z',
    ]);
    const notATime = await tuneloop(['schedule', 'backfill', '--model', 'coach', '--from', 'yesterday', '--to', 'now']);
    const blankReason = await tuneloop(['schedule', 'pause', '--model', 'coach', '--reason', '  ']);
    const noVolume = await tuneloop(['schedule', 'set', '--model', 'coach', '--volume', '0']);
    const lonelyInterval = await tuneloop(['schedule', 'set', '--model', 'coach', '--volume-interval-minutes', '60']);
    const shortInterval = await tuneloop([
      'schedule',
      'set',
      '--model',
      'c',
      '--volume',
      '9',
      '--volume-interval-minutes',
      '5',
    ]);

    // Assert
    expect(time.code).toBe(2);
    expect(time.stderr).toMatch(/at: expected a time of day as HH:MM/);
    expect(zone.code).toBe(2);
    expect(zone.stderr).toMatch(/timezone: expected an IANA time zone/);
    expect(future.code).toBe(2);
    expect(future.stderr).toContain('to: a backfill takes past runs only');
    expect(notATime.code).toBe(2);
    expect(notATime.stderr).toMatch(/from: /);
    expect(blankReason.code).toBe(2);
    expect(blankReason.stderr).toMatch(/reason: /);
    for (const r of [noVolume, lonelyInterval, shortInterval]) expect(r.code).toBe(2);
    expect(noVolume.stderr).toMatch(/--volume/);
    expect(lonelyInterval.stderr).toContain('--volume-interval-minutes and --volume-check-minutes go with --volume N');
    expect(shortInterval.stderr).toMatch(/--volume-interval-minutes/);
  });

  it('rejects an unknown command with a usage error', async () => {
    // Act
    const r = await tuneloop(['frobnicate']);

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown command 'frobnicate'");
  });

  it('keys create without --role exits 2 naming --role', async () => {
    // Act
    const r = await tuneloop(['keys', 'create']);

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/required option '--role/);
  });

  it('keys create --role superuser is rejected naming the allowed roles', async () => {
    // Act
    const r = await tuneloop(['keys', 'create', '--role', 'superuser']);

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('superuser');
    expect(r.stderr).toMatch(/app, operator, admin/);
  });

  it('run --model with a non-slug exits 2 stating the slug rule', async () => {
    // Act
    const r = await tuneloop(['run', '--model', 'Bad Model!']);

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Bad Model!');
    expect(r.stderr).toContain('lower-case slug');
  });

  it('a bad environment variable exits 2 naming it', async () => {
    // Act
    const r = await tuneloop(['migrate'], { TUNELOOP_API_PORT: 'abc' });

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Invalid configuration');
    expect(r.stderr).toMatch(/TUNELOOP_API_PORT: .*number/);
  });

  it('models put of a missing file exits 2 naming the file', async () => {
    // Act
    const r = await tuneloop(['models', 'put', '/nonexistent.json']);

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('/nonexistent.json');
  });

  it('models put validates the definition before opening any database', async () => {
    // Arrange: no DATABASE_URL and a home without an embedded server; reaching the database would fail differently.
    const emptyHome = await mkdtemp(path.join(inject('tmpRoot'), 'cli-nodb-'));
    const file = path.join(emptyHome, 'model.json');
    await writeFile(file, JSON.stringify({ id: 'x' }));

    // Act
    const r = await tuneloop(['models', 'put', file], { TUNELOOP_HOME: emptyHome });

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: app: `);
    expect(await readdir(emptyHome)).toEqual(['model.json']);
  });

  it('models put refuses an output schema that does not compile, before opening any database', async () => {
    // Arrange
    const emptyHome = await mkdtemp(path.join(inject('tmpRoot'), 'cli-schema-'));
    const file = path.join(emptyHome, 'model.json');
    const definition = JSON.parse(await readFile('samples/demo/model.json', 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...definition, outputSchema: { type: 'string', pattern: '(a)\\1' } }));

    // Act
    const r = await tuneloop(['models', 'put', file], { TUNELOOP_HOME: emptyHome });

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: outputSchema: not a valid JSON schema`);
    expect(await readdir(emptyHome)).toEqual(['model.json']);
  });

  it('models put refuses a file that is not UTF-8, naming the field, before opening any database', async () => {
    // Arrange
    const emptyHome = await mkdtemp(path.join(inject('tmpRoot'), 'cli-utf8-'));
    const file = path.join(emptyHome, 'model.json');
    const definition = JSON.parse(await readFile('samples/demo/model.json', 'utf8')) as Record<string, unknown>;
    const text = JSON.stringify({ ...definition, systemPrompt: 'You are a BAD coach.' });
    const at = text.indexOf('BAD');
    await writeFile(
      file,
      Buffer.concat([Buffer.from(text.slice(0, at)), Buffer.from([0xff]), Buffer.from(text.slice(at))]),
    );

    // Act
    const r = await tuneloop(['models', 'put', file], { TUNELOOP_HOME: emptyHome });

    // Assert
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}: systemPrompt: not valid UTF-8 (byte 0xFF at offset ${at})`);
    expect(await readdir(emptyHome)).toEqual(['model.json']);
  });

  it('a database failure exits 1 without printing the database password', async () => {
    // Act
    const r = await tuneloop(['migrate'], { DATABASE_URL: 'postgres://u:secretpw@127.0.0.1:1/x' });

    // Assert
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^tuneloop: /m);
    expect(r.stderr).not.toContain('secretpw');
    expect(r.stdout).not.toContain('secretpw');
  });
});
