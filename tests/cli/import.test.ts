import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envSchema } from '../../src/config';
import type { Db } from '../../src/db/pool';
import type { ModelDefinition } from '../../src/domain/model-config';
import { createTestDb, createTestModel, tmpDir, uid } from '../helpers/env';

// `tuneloop import` as an operator runs it: bin/tuneloop in a child process, real files in a temp dir, the test
// database through DATABASE_URL.

const root = path.resolve(import.meta.dirname, '../..');
const pinnedNode = path.join(root, '.tools/node/bin/node');
const node = existsSync(pinnedNode) ? pinnedNode : process.execPath;

let db: Db;
let url: string;
let drop: () => Promise<void>;
let dir: string;

beforeAll(async () => {
  ({ db, url, drop } = await createTestDb());
  dir = await tmpDir('import-');
});

afterAll(async () => {
  await drop?.();
});

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

function tuneloop(args: string[]): Promise<CliResult> {
  const env = { ...process.env };
  for (const key of Object.keys(envSchema.shape)) delete env[key];
  const started = performance.now();
  return new Promise((resolve) => {
    execFile(
      node,
      ['bin/tuneloop', ...args],
      {
        cwd: root,
        env: { ...env, TUNELOOP_HOME: dir, DATABASE_URL: url, LOG_LEVEL: 'silent' },
        timeout: 120_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) =>
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : null) : 0,
          stdout,
          stderr,
          ms: performance.now() - started,
        }),
    );
  });
}

async function file(name: string, lines: (string | object)[]): Promise<string> {
  const p = path.join(dir, `${uid()}-${name}`);
  await writeFile(p, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return p;
}

async function countOf(model: string, table: 'interactions' | 'subjects' = 'interactions'): Promise<number> {
  const r =
    table === 'interactions'
      ? await sql<{ n: string }>`select count(*) as n from interactions where model_id = ${model}`.execute(db)
      : await sql<{ n: string }>`select count(*) as n from subjects`.execute(db);
  return Number(r.rows[0]!.n);
}

const chat = (id: string | undefined, subject: string, q = 'How do I export my data?') => ({
  ...(id ? { id } : {}),
  subject,
  messages: [
    { role: 'user', content: q },
    { role: 'assistant', content: 'Settings → Privacy → Export.' },
  ],
});

describe('tuneloop import', () => {
  let model: ModelDefinition;

  beforeAll(async () => {
    model = await createTestModel(db, { id: uid('imp-') });
  });

  it('--help describes the file, the options and what each exit code means', async () => {
    const r = await tuneloop(['import', '--help']);

    expect(r.code).toBe(0);
    for (const option of ['--model', '--strict', '--report', '--batch']) expect(r.stdout).toContain(option);
    expect(r.stdout).toMatch(/Exit codes: 0 done.*1 crash/s);
    expect(r.stdout).toMatch(/2 bad arguments/);
  });

  it('exits 2 naming the problem for a missing file, a bad --batch, or a model that does not exist', async () => {
    const good = await file('good.jsonl', [chat(uid('e-'), 'u')]);

    const missing = await tuneloop(['import', path.join(dir, 'nope.jsonl'), '--model', model.id]);
    const batch = await tuneloop(['import', good, '--model', model.id, '--batch', '0']);
    const unknown = await tuneloop(['import', good, '--model', 'no-such-model']);

    expect([missing.code, batch.code, unknown.code]).toEqual([2, 2, 2]);
    expect(missing.stderr).toContain('nope.jsonl: no such file');
    expect(batch.stderr).toContain('expected a whole number from 1 to 5000');
    expect(unknown.stderr).toContain('model no-such-model does not exist');
    expect(await countOf(model.id)).toBe(0);
  });

  it('--strict: a bad line 7 aborts with exit 2 naming it, and nothing is written', async () => {
    const m = await createTestModel(db, { id: uid('strict-'), app: model.app });
    const lines: (string | object)[] = Array.from({ length: 12 }, (_, i) => chat(uid('s-'), `u${i}`));
    lines[6] = { subject: 'u6', prompt: 'Only a prompt' };
    lines[9] = '{not json';
    const f = await file('strict.jsonl', lines);
    const report = path.join(dir, `${uid()}-strict-report.json`);
    const subjectsBefore = await countOf(m.id, 'subjects');

    const r = await tuneloop(['import', f, '--model', m.id, '--strict', '--batch', '2', '--report', report]);

    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${f} line 7: completion: prompt and completion go together`);
    expect(r.stderr).toContain('nothing was imported');
    expect(await countOf(m.id)).toBe(0);
    expect(await countOf(m.id, 'subjects')).toBe(subjectsBefore);
    expect(JSON.parse(await readFile(report, 'utf8'))).toMatchObject({
      imported: 0,
      duplicates: 0,
      rejected: [{ line: 7, error: 'completion: prompt and completion go together' }],
    });
  });

  it('--strict imports a clean file whole', async () => {
    const m = await createTestModel(db, { id: uid('strict-ok-'), app: model.app });
    const f = await file(
      'clean.jsonl',
      Array.from({ length: 7 }, (_, i) => chat(uid('c-'), `u${i}`)),
    );

    const r = await tuneloop(['import', f, '--model', m.id, '--strict', '--batch', '3']);

    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^imported 7 interactions into .*: 0 duplicates, 0 erased, 0 rejected lines/m);
    expect(await countOf(m.id)).toBe(7);
  });

  it('skips and reports the bad lines of a mixed file, imports the rest canonically, and exits 0', async () => {
    const m = await createTestModel(db, { id: uid('mixed-'), app: model.app });
    const ids = { chat: uid('c-'), prompt: uid('p-'), instruction: uid('i-'), named: uid('n-') };
    const f = await file('mixed.jsonl', [
      chat(ids.chat, 'ann'), // 1
      { id: ids.prompt, subject: 'ben', prompt: 'What is 2+2?', completion: '4', metadata: { category: 'math' } }, // 2
      '', // 3: blank, skipped silently
      '{"subject": "cy", "prompt": "half a line', // 4
      { id: ids.instruction, subject: 'cy', instruction: 'Translate', input: 'cheese', output: 'fromage' }, // 5
      { ...chat(uid('x-'), 'dan'), model: 'someone-else' }, // 6
      {
        subject: 'eve',
        messages: [
          { role: 'user', content: 'q' },
          { role: 'user', content: 'q again' },
        ],
      }, // 7
      {
        ...chat(uid('x-'), 'fay'),
        messages: [
          { role: 'user', content: 'beep\u0007' },
          { role: 'assistant', content: 'a' },
        ],
      }, // 8
      { ...chat(ids.named, 'gus'), model: m.id }, // 9: naming the import's own model is fine
      '[1, 2, 3]', // 10
      '   ', // 11: blank
      '{"subject": "hal", "prompt": "x\\ud800", "completion": "c"}', // 12
    ]);
    const report = path.join(dir, `${uid()}-report.json`);

    const r = await tuneloop(['import', f, '--model', m.id, '--report', report]);

    expect(r.code).toBe(0);
    const rejected = [
      { line: 4, error: expect.stringMatching(/^not valid JSON/) },
      { line: 6, error: expect.stringContaining('model: this line is for "someone-else"') },
      { line: 7, error: 'messages.1.role: expected an assistant turn here: turns alternate user/assistant' },
      { line: 8, error: expect.stringContaining('messages.0.content: contains the control character U+0007') },
      { line: 10, error: 'expected a JSON object (one interaction per line)' },
      { line: 12, error: expect.stringContaining('prompt: contains an unpaired UTF-16 surrogate') },
    ];
    expect(JSON.parse(await readFile(report, 'utf8'))).toMatchObject({
      model: m.id,
      lines: 12,
      imported: 4,
      duplicates: 0,
      rejectedCount: 6,
      rejected,
    });
    for (const line of [4, 6, 7, 8, 10, 12]) expect(r.stderr).toMatch(new RegExp(`^line ${line}: `, 'm'));
    expect(r.stderr).not.toMatch(/^line (1|2|3|5|9|11): /m);
    expect(r.stdout).toContain('imported 4 interactions');

    const rows = await db
      .selectFrom('interactions')
      .select(['external_id', 'messages', 'metadata', 'source'])
      .where('model_id', '=', m.id)
      .execute();
    const byId = new Map(rows.map((row) => [row.external_id, row]));
    expect([...byId.keys()].sort()).toEqual(Object.values(ids).sort());
    expect(rows.every((row) => row.source === 'import')).toBe(true);
    expect(byId.get(ids.prompt)).toMatchObject({
      messages: [
        { role: 'user', content: 'What is 2+2?' },
        { role: 'assistant', content: '4' },
      ],
      metadata: { category: 'math' },
    });
    expect(byId.get(ids.instruction)!.messages[0]).toEqual({ role: 'user', content: 'Translate\n\ncheese' });
    expect(byId.get(ids.chat)!.metadata).toEqual({});
  });

  it('re-importing the same file stores nothing new: every line is a duplicate', async () => {
    const m = await createTestModel(db, { id: uid('again-'), app: model.app });
    const f = await file('again.jsonl', [
      ...Array.from({ length: 25 }, (_, i) => chat(`again-${i}`, `u${i % 5}`)),
      chat('again-3', 'u3'), // repeated within the file, across batches too
    ]);
    const report = path.join(dir, `${uid()}-again.json`);

    const first = await tuneloop(['import', f, '--model', m.id, '--batch', '10']);
    const second = await tuneloop(['import', f, '--model', m.id, '--batch', '10', '--report', report]);

    expect([first.code, second.code]).toEqual([0, 0]);
    expect(first.stdout).toContain('imported 25 interactions');
    expect(first.stdout).toContain('1 duplicates');
    expect(JSON.parse(await readFile(report, 'utf8'))).toMatchObject({ imported: 0, duplicates: 26, rejected: [] });
    expect(await countOf(m.id)).toBe(25);
  });

  it('imports 20 000 lines in batches (figures printed, not asserted)', async () => {
    const m = await createTestModel(db, { id: uid('bulk-'), app: model.app });
    const n = 20_000;
    const lines = Array.from({ length: n }, (_, i) => {
      const base = { id: `bulk-${i}`, subject: `user-${i % 2000}`, metadata: { category: 'support', n: i } };
      if (i % 3 === 0)
        return { ...base, prompt: `Question ${i}: how do I change my plan?`, completion: `Answer ${i}.` };
      if (i % 3 === 1)
        return {
          ...base,
          instruction: `Summarise ticket ${i}`,
          input: `Ticket ${i} body text.`,
          output: `Summary ${i}.`,
        };
      return {
        ...base,
        messages: [
          { role: 'system', content: 'You are the support assistant.' },
          { role: 'user', content: `Hello, question ${i}` },
          { role: 'assistant', content: `Hello, answer ${i}` },
        ],
      };
    });
    const f = await file('bulk.jsonl', lines);

    const r = await tuneloop(['import', f, '--model', m.id]);

    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`imported ${n} interactions`);
    expect(await countOf(m.id)).toBe(n);
    // eslint-disable-next-line no-console -- the figure the issue asks to see; never asserted
    console.info(
      `import of ${n} lines: ${r.stdout.trim()}; whole command ${(r.ms / 1000).toFixed(2)} s ` +
        `(${Math.round(n / (r.ms / 1000))} rows/s including process start)`,
    );
  });
});
