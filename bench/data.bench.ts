/**
 * The data plane at scale: generate a realistic corpus (default 1M interactions, about 470 MB of JSONL), then
 * measure import, collect, anonymize and export as the CLI and the pipeline run them, against a real
 * PostgreSQL (embedded) and the local-folder store. Two baselines run in the same process on the same data:
 * row-at-a-time import (what a first script does) on a slice, and a load-everything export after ours.
 *
 *   npm run bench:data -- [--rows 1000000] [--baseline-import-rows 20000] [--skip-baseline-export]
 *
 * Prints a table and writes bench/results/data.json. Peak RSS is the whole process's, sampled every 20 ms.
 */
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { createActivities } from '../src/activities';
import { importInteractions } from '../src/cli/import';
import { buildRow, serializeRow, sha256Hex, splitOf } from '../src/dataset/rows';
import type { ChatMessage } from '../src/db/database';
import { migrateToLatest } from '../src/db/migrate';
import { createDb, type Db } from '../src/db/pool';
import { upsertModel } from '../src/db/queries/models';
import { modelDefinitionSchema } from '../src/domain/model-config';
import { canonicalize, interactionSchema } from '../src/ingest/interaction';
import { createLogger } from '../src/log';
import { createRedactor } from '../src/pii';
import { startEmbeddedPostgres } from '../src/services/embedded-postgres';
import { FileBlobStore } from '../src/storage';
import { corpus } from './lib/corpus';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'baseline-import-rows': { type: 'string', default: '20000' },
    'skip-baseline-export': { type: 'boolean', default: false },
  },
});
const ROWS = Number(values.rows);
const BASELINE_IMPORT_ROWS = Math.min(ROWS, Number(values['baseline-import-rows']));
const log = createLogger('warn');
const MB = 2 ** 20;

interface Row {
  phase: string;
  impl: 'tuneloop' | 'baseline';
  rows: number;
  seconds: number;
  rowsPerS: number;
  mb: number;
  mbPerS: number;
  startRssMb: number;
  peakRssMb: number;
}
const results: Row[] = [];

async function phase<T>(
  name: string,
  impl: Row['impl'],
  fn: () => Promise<T>,
  size: (out: T) => { rows: number; bytes: number },
): Promise<T> {
  global.gc?.();
  const start = process.memoryUsage().rss;
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
  const t0 = performance.now();
  const out = await fn();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  peak = Math.max(peak, process.memoryUsage().rss);
  const { rows, bytes } = size(out);
  const row: Row = {
    phase: name,
    impl,
    rows,
    seconds: round(seconds, 2),
    rowsPerS: Math.round(rows / seconds),
    mb: round(bytes / MB, 1),
    mbPerS: round(bytes / MB / seconds, 1),
    startRssMb: Math.round(start / MB),
    peakRssMb: Math.round(peak / MB),
  };
  results.push(row);
  console.error(`${name} (${impl}): ${row.rows} rows in ${row.seconds} s, peak RSS ${row.peakRssMb} MB`);
  return out;
}
const round = (x: number, d: number) => Math.round(x * 10 ** d) / 10 ** d;

async function writeCorpus(file: string) {
  const out = createWriteStream(file);
  for (const line of corpus(ROWS)) {
    if (!out.write(JSON.stringify(line) + '\n')) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return (await stat(file)).size;
}

/** The text bytes of a model's interactions (what anonymize reads and redacts). */
async function textBytes(db: Db, model: string) {
  const r = await sql<{ b: string }>`select coalesce(sum(octet_length(messages::text)), 0) b from interactions
    where model_id = ${model}`.execute(db);
  return Number(r.rows[0]!.b);
}

/** Row-at-a-time import: parse a line, insert its subject, insert it; one statement and commit each. */
async function naiveImport(db: Db, file: string, model: string, app: string, limit: number) {
  const { createInterface } = await import('node:readline');
  const { createReadStream } = await import('node:fs');
  let n = 0;
  let bytes = 0;
  for await (const text of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (n >= limit) break;
    bytes += Buffer.byteLength(text) + 1;
    const c = canonicalize(interactionSchema.parse({ ...JSON.parse(text), model }));
    const s = await db
      .insertInto('subjects')
      .values({
        app_id: app,
        external_id: c.subject,
        training_consent: null,
        consent_policy_version: null,
        consent_updated_at: null,
      })
      .onConflict((oc) => oc.columns(['app_id', 'external_id']).doUpdateSet({ external_id: sql`excluded.external_id` }))
      .returning('id')
      .executeTakeFirstOrThrow();
    await db
      .insertInto('interactions')
      .values({
        model_id: model,
        subject_id: s.id,
        external_id: c.id ?? null,
        source: 'import',
        messages: JSON.stringify(c.messages),
        metadata: JSON.stringify(c.metadata ?? {}),
        model_version_id: null,
        latency_ms: null,
      })
      .onConflict((oc) => oc.columns(['model_id', 'external_id']).doNothing())
      .execute();
    n++;
  }
  return { rows: n, bytes };
}

/** The export a cron script writes: one query for everything, rows built in memory, one string uploaded. */
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
    const redactor = createRedactor();
    const messages = (r.messages as ChatMessage[]).map((m) => ({ ...m, content: redactor.redact(m.content).text }));
    const d = buildRow({ id: r.id, seq: r.seq, source: r.source, messages, feedback: [] }, 'You are a coach.');
    if (d.kind !== 'sft') continue;
    const text = serializeRow(d.row);
    const h = sha256Hex(text);
    if (seen.has(h)) continue;
    seen.add(h);
    out[splitOf(r.id, 0.1)].push(text);
  }
  const train = out.train.join('\n') + '\n';
  const validation = out.validation.join('\n') + '\n';
  await store.put(`${prefix}train.jsonl`, train);
  await store.put(`${prefix}validation.jsonl`, validation);
  return {
    rows: out.train.length + out.validation.length,
    bytes: Buffer.byteLength(train) + Buffer.byteLength(validation),
  };
}

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-data-'));
  await chmod(dir, 0o755); // the embedded server runs as the `postgres` OS user when we are root
  const pg = await startEmbeddedPostgres({
    dir: path.join(dir, 'pg'),
    port: 54900 + Math.floor(Math.random() * 90),
    log,
  });
  const db = createDb(pg.url, log);
  try {
    await migrateToLatest(db);
    const define = (id: string) =>
      modelDefinitionSchema.parse({
        id,
        app: 'bench-app',
        baseModel: 'x',
        taskFormat: 'chat',
        systemPrompt: 'You are a coach.',
        config: { validationShare: 0.1 },
      });
    const model = define('bench');
    await upsertModel(db, model);
    await upsertModel(db, define('bench-naive'));

    const file = path.join(dir, 'corpus.jsonl');
    const t0 = performance.now();
    const fileBytes = await writeCorpus(file);
    console.error(
      `corpus: ${ROWS} interactions, ${(fileBytes / MB).toFixed(0)} MB in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );

    await phase(
      'import',
      'tuneloop',
      () =>
        importInteractions(db, { file, model: model.id, strict: false, batch: 500 }, { warn: () => undefined, log }),
      (r) => ({ rows: r.imported, bytes: fileBytes }),
    );
    await phase(
      'import',
      'baseline',
      () => naiveImport(db, file, 'bench-naive', 'bench-app', BASELINE_IMPORT_ROWS),
      (r) => r,
    );
    // Nine in ten subjects consent.
    await sql`update subjects set training_consent = (hashtext(external_id) % 10 <> 0), consent_policy_version = 'v1'
      where app_id = 'bench-app'`.execute(db);
    await sql`analyze`.execute(db);

    const store = new FileBlobStore(path.join(dir, 'store'));
    const acts = createActivities({ db, store, log, tmpDir: path.join(dir, 'tmp') });
    await db
      .insertInto('runs')
      .values({
        id: 'bench-run',
        workflow_id: 'bench',
        model_id: model.id,
        status: 'running',
        trigger: 'bench',
        requested_by: null,
        request_id: null,
      })
      .execute();
    const text = await textBytes(db, model.id);
    const collected = await phase(
      'collect',
      'tuneloop',
      () => acts.collect({ runId: 'bench-run', model: model.id }),
      (c) => ({ rows: c.consented, bytes: 0 }),
    );
    const anonymized = await phase(
      'anonymize',
      'tuneloop',
      () => acts.anonymize({ runId: 'bench-run', model: model.id, datasetId: collected.datasetId }),
      (a) => ({ rows: a.considered, bytes: text * (collected.consented / Math.max(1, collected.interactions)) }),
    );
    await phase(
      'export',
      'tuneloop',
      () => acts.exportDataset({ runId: 'bench-run', model: model.id, datasetId: collected.datasetId, anonymized }),
      (e) => ({ rows: e.counts.exported, bytes: e.train.bytes + e.validation.bytes }),
    );
    if (!values['skip-baseline-export']) {
      await phase(
        'anonymize+export',
        'baseline',
        () => naiveExport(db, store, model.id, 'baseline/'),
        (r) => r,
      );
    }

    console.log(
      `data plane, ${ROWS} interactions (${(fileBytes / MB).toFixed(0)} MB JSONL; ${(text / MB).toFixed(0)} MB of message JSON in PostgreSQL), ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'cpu'}), Node ${process.version}`,
    );
    console.table(results);
    await mkdir(path.join(import.meta.dirname, 'results'), { recursive: true });
    const out = path.join(import.meta.dirname, 'results', 'data.json');
    await writeFile(
      out,
      JSON.stringify(
        {
          rows: ROWS,
          corpusBytes: fileBytes,
          baselineImportRows: BASELINE_IMPORT_ROWS,
          machine: {
            cores: os.cpus().length,
            cpu: os.cpus()[0]?.model,
            memGb: Math.round(os.totalmem() / 2 ** 30),
            node: process.version,
          },
          results,
        },
        null,
        2,
      ),
    );
    console.log(`wrote ${path.relative(process.cwd(), out)}`);
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
