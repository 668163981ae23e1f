/**
 * Export throughput and memory: our streaming export (keyset pages → local files → store) side by side with
 * a baseline that does what a cron script usually does (one query for everything, rows built in memory, one
 * string uploaded). Same database, same rows, same store, one process.
 *
 *   npm run bench:export -- [--rows 50000] [--runs 3]
 *
 * Prints a table and writes bench/results/export.json.
 */
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { createActivities } from '../src/activities';
import { buildRow, serializeRow, sha256Hex, splitOf } from '../src/dataset/rows';
import type { ChatMessage } from '../src/db/database';
import { migrateToLatest } from '../src/db/migrate';
import { createDb, type Db } from '../src/db/pool';
import { setConsent } from '../src/db/queries/interactions';
import { upsertModel } from '../src/db/queries/models';
import { modelDefinitionSchema } from '../src/domain/model-config';
import { createLogger } from '../src/log';
import { startEmbeddedPostgres } from '../src/services/embedded-postgres';
import { FileBlobStore } from '../src/storage';

const { values } = parseArgs({
  options: { rows: { type: 'string', default: '50000' }, runs: { type: 'string', default: '3' } },
});
const ROWS = Number(values.rows);
const RUNS = Number(values.runs);
const log = createLogger('warn');

/** Peak RSS while fn runs, sampled every 5 ms, above the RSS when it started. */
async function measure<T>(fn: () => Promise<T>): Promise<{ ms: number; peakRssMb: number; out: T }> {
  global.gc?.();
  const base = process.memoryUsage().rss;
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const t0 = performance.now();
  const out = await fn();
  const ms = performance.now() - t0;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  return { ms, peakRssMb: (peak - base) / 2 ** 20, out };
}

async function seed(db: Db, model: string, app: string) {
  await db
    .transaction()
    .execute((trx) => setConsent(trx, { appId: app, subject: 'bench-user', training: true, policyVersion: 'v1' }));
  const subject = await db
    .selectFrom('subjects')
    .select('id')
    .where('external_id', '=', 'bench-user')
    .executeTakeFirstOrThrow();
  // Server-side generation: realistic sizes (≈ 600 characters a conversation) without a slow client loop.
  await sql`
    insert into interactions (model_id, subject_id, external_id, source, messages)
    select ${model}, ${subject.id}::uuid, 'b' || g, 'api',
      jsonb_build_array(
        jsonb_build_object('role', 'user', 'content', 'How should I train this week? I can do ' || (g % 7) || ' sessions, ' || repeat('details ', 20) || g),
        jsonb_build_object('role', 'assistant', 'content', 'Here is a plan: ' || repeat('squats, rows, presses, rest; ', 10) || g))
    from generate_series(1, ${ROWS}) g`.execute(db);
}

/** The baseline: everything in one query, everything in memory, one upload. */
async function naiveExport(db: Db, store: FileBlobStore, model: string, prefix: string) {
  const rows = await db
    .selectFrom('interactions as i')
    .innerJoin('subjects as s', 's.id', 'i.subject_id')
    .select(['i.id', 'i.seq', 'i.source', 'i.messages'])
    .where('i.model_id', '=', model)
    .where('s.training_consent', '=', true)
    .orderBy('i.seq')
    .execute();
  const out = { train: [] as string[], validation: [] as string[] };
  const seen = new Set<string>();
  for (const r of rows) {
    const d = buildRow(
      { id: r.id, seq: r.seq, source: r.source, messages: r.messages as ChatMessage[], feedback: [] },
      'You are a coach.',
    );
    if (d.kind !== 'sft') continue;
    const text = serializeRow(d.row);
    const h = sha256Hex(text);
    if (seen.has(h)) continue;
    seen.add(h);
    out[splitOf(r.id, 0.1)].push(text);
  }
  await store.put(`${prefix}train.jsonl`, out.train.join('\n') + '\n');
  await store.put(`${prefix}validation.jsonl`, out.validation.join('\n') + '\n');
  return out.train.length + out.validation.length;
}

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-'));
  await chmod(dir, 0o755); // the embedded server runs as the `postgres` OS user when we are root
  const pg = await startEmbeddedPostgres({
    dir: path.join(dir, 'pg'),
    port: 54400 + Math.floor(Math.random() * 500),
    log,
  });
  const db = createDb(pg.url, log);
  try {
    await migrateToLatest(db);
    const def = modelDefinitionSchema.parse({
      id: 'bench',
      app: 'bench-app',
      baseModel: 'x',
      taskFormat: 'chat',
      systemPrompt: 'You are a coach.',
      config: { validationShare: 0.1 },
    });
    await upsertModel(db, def);
    await seed(db, def.id, def.app);
    const store = new FileBlobStore(path.join(dir, 'store'));
    const acts = createActivities({ db, store, log, tmpDir: path.join(dir, 'tmp') });
    const results: { impl: string; run: number; rows: number; ms: number; rowsPerS: number; peakRssMb: number }[] = [];
    for (let run = 1; run <= RUNS; run++) {
      // Alternate the order so neither side always runs on a warmer cache.
      const order = run % 2 ? ['tuneloop', 'baseline'] : ['baseline', 'tuneloop'];
      for (const impl of order) {
        const runId = `bench-${impl}-${run}`;
        await db
          .insertInto('runs')
          .values({
            id: runId,
            workflow_id: 'bench',
            model_id: def.id,
            status: 'running',
            trigger: 'bench',
            requested_by: null,
            request_id: null,
          })
          .execute();
        const m =
          impl === 'tuneloop'
            ? await measure(async () => {
                const c = await acts.collect({ runId, model: def.id });
                const e = await acts.exportDataset({ runId, model: def.id, datasetId: c.datasetId });
                return e.counts.exported;
              })
            : await measure(() => naiveExport(db, store, def.id, `baseline/${runId}/`));
        results.push({
          impl,
          run,
          rows: m.out,
          ms: Math.round(m.ms),
          rowsPerS: Math.round((m.out / m.ms) * 1000),
          peakRssMb: Math.round(m.peakRssMb),
        });
      }
    }
    const summary = ['tuneloop', 'baseline'].map((impl) => {
      const rs = results.filter((r) => r.impl === impl);
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
      return {
        impl,
        rows: rs[0]!.rows,
        medianMs: med(rs.map((r) => r.ms)),
        medianRowsPerS: med(rs.map((r) => r.rowsPerS)),
        maxPeakRssMb: Math.max(...rs.map((r) => r.peakRssMb)),
      };
    });
    console.log(
      `export of ${ROWS} interactions, ${RUNS} runs each, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), Node ${process.version}`,
    );
    console.table(summary);
    await mkdir(path.join(import.meta.dirname, 'results'), { recursive: true });
    const file = path.join(import.meta.dirname, 'results', 'export.json');
    await writeFile(
      file,
      JSON.stringify(
        {
          rows: ROWS,
          runs: RUNS,
          machine: {
            cores: os.cpus().length,
            cpu: os.cpus()[0]?.model,
            memGb: Math.round(os.totalmem() / 2 ** 30),
            node: process.version,
          },
          summary,
          results,
        },
        null,
        2,
      ),
    );
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    await db.destroy();
    await pg.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
