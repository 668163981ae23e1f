/**
 * The data plane at scale: generate a realistic corpus (default 1M interactions, about 470 MB of JSONL), then
 * measure import, collect, anonymize and export as the CLI and the pipeline run them, against a real
 * PostgreSQL (embedded) and the local-folder store. Two baselines run in the same run on the same data:
 * row-at-a-time import (what a first script does) on a slice, and a load-everything export after ours.
 *
 *   npm run bench:data -- [--rows 1000000] [--baseline-import-rows 20000] [--skip-baseline-export]
 *
 * Each phase runs in a process of its own, as it does in production (`tuneloop import` is a CLI process; collect,
 * anonymize and export run in a worker), so one phase's garbage never counts against the next. Peak RSS is the
 * kernel's high-water mark for that process (getrusage maxrss), not a sample; CPU is that process's user+system
 * time, so "MB per CPU-s" is the speed on one core with PostgreSQL's own work on the other left out.
 *
 * Prints a table and writes bench/results/data.json.
 */
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { fork } from 'node:child_process';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { createActivities } from '../src/activities';
import { importInteractions } from '../src/cli/import';
import { buildRow, serializeRow, sha256Hex, splitOf } from '../src/dataset/rows';
import type { ChatMessage } from '../src/domain/conversation';
import { migrateToLatest } from '../src/db/migrate';
import { createDb, type Db } from '../src/db/pool';
import { upsertModel } from '../src/db/queries/models';
import { modelDefinitionSchema } from '../src/domain/model-config';
import { canonicalize, interactionSchema } from '../src/ingest/interaction';
import { createLogger } from '../src/log';
import { createRedactor } from '../src/pii';
import { startEmbeddedPostgres } from '../src/embedded/embedded-postgres';
import { openOllama } from '../src/embedded/stack';
import { loadConfig } from '../src/config';
import { FileBlobStore } from '../src/storage';
import { corpus } from './lib/corpus';
import { NODE_FLAGS } from '../bin/node-flags.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'baseline-import-rows': { type: 'string', default: '20000' },
    'skip-baseline-export': { type: 'boolean', default: false },
    child: { type: 'string' },
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
  cpuS: number;
  mbPerCpuS: number;
  peakRssMb: number;
}
const results: Row[] = [];

/** What a phase child needs to reach the same database and store as the parent. */
interface Ctx {
  pgUrl: string;
  dir: string;
  file: string;
  model: string;
  naiveModel: string;
  datasetId?: string;
  anonymized?: unknown;
}
type PhaseName = 'import' | 'import-baseline' | 'collect' | 'anonymize' | 'export' | 'export-baseline';
interface ChildReport {
  out: unknown;
  seconds: number;
  cpuS: number;
  maxRssKb: number;
}

/** Runs one phase in a fresh Node process (same flags as this one) and reads back its result and resource use. */
async function phase<T>(
  name: PhaseName,
  label: string,
  impl: Row['impl'],
  ctx: Ctx,
  size: (out: T) => { rows: number; bytes: number },
): Promise<T> {
  const child = fork(import.meta.filename, [...process.argv.slice(2), '--child', JSON.stringify({ name, ctx })], {
    stdio: 'inherit',
    execArgv: [...NODE_FLAGS, ...process.execArgv],
  });
  const report = await new Promise<ChildReport>((resolve, reject) => {
    let got: ChildReport | undefined;
    child.on('message', (m) => (got = m as ChildReport));
    child.on('error', reject);
    child.on('exit', (code) =>
      got && code === 0 ? resolve(got) : reject(new Error(`phase ${name} exited with ${code}`)),
    );
  });
  const out = report.out as T;
  const { rows, bytes } = size(out);
  const row: Row = {
    phase: label,
    impl,
    rows,
    seconds: round(report.seconds, 2),
    rowsPerS: Math.round(rows / report.seconds),
    mb: round(bytes / MB, 1),
    mbPerS: round(bytes / MB / report.seconds, 1),
    cpuS: round(report.cpuS, 1),
    mbPerCpuS: round(bytes / MB / report.cpuS, 1),
    peakRssMb: Math.round(report.maxRssKb / 1024),
  };
  results.push(row);
  console.error(`${label} (${impl}): ${row.rows} rows in ${row.seconds} s, peak RSS ${row.peakRssMb} MB`);
  return out;
}

/** The child side: connect, run the one phase, report through IPC, exit. */
async function runChild(spec: { name: PhaseName; ctx: Ctx }) {
  const { name, ctx } = spec;
  const db = createDb(ctx.pgUrl, log);
  const store = new FileBlobStore(path.join(ctx.dir, 'store'));
  // The data-plane activities never call Ollama; the client is there because every activity set gets one.
  const acts = createActivities({
    db,
    store,
    log,
    ollama: openOllama(loadConfig()).ollama,
    tmpDir: path.join(ctx.dir, 'tmp'),
  });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let out: unknown;
  try {
    switch (name) {
      case 'import':
        out = await importInteractions(
          db,
          { file: ctx.file, model: ctx.model, strict: false, batch: 500 },
          { warn: () => undefined, log },
        );
        break;
      case 'import-baseline':
        out = await naiveImport(db, ctx.file, ctx.naiveModel, 'bench-app', BASELINE_IMPORT_ROWS);
        break;
      case 'collect':
        out = await acts.collect({ runId: 'bench-run', model: ctx.model });
        break;
      case 'anonymize':
        out = await acts.anonymize({ runId: 'bench-run', model: ctx.model, datasetId: ctx.datasetId! });
        break;
      case 'export':
        out = await acts.exportDataset({
          runId: 'bench-run',
          model: ctx.model,
          datasetId: ctx.datasetId!,
          anonymized: ctx.anonymized as never,
        });
        break;
      case 'export-baseline':
        out = await naiveExport(db, store, ctx.model, 'baseline/');
        break;
    }
  } finally {
    await db.destroy();
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const report: ChildReport = {
    out,
    seconds,
    cpuS: (cpu.user + cpu.system) / 1e6,
    maxRssKb: process.resourceUsage().maxRSS,
  };
  process.send!(report, () => process.exit(0));
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

    const ctx: Ctx = { pgUrl: pg.url, dir, file, model: model.id, naiveModel: 'bench-naive' };
    await phase<{ imported: number }>('import', 'import', 'tuneloop', ctx, (r) => ({
      rows: r.imported,
      bytes: fileBytes,
    }));
    await phase<{ rows: number; bytes: number }>('import-baseline', 'import', 'baseline', ctx, (r) => r);
    // Nine in ten subjects consent.
    await sql`update subjects set training_consent = (hashtext(external_id) % 10 <> 0), consent_policy_version = 'v1'
      where app_id = 'bench-app'`.execute(db);
    await sql`analyze`.execute(db);

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
    const collected = await phase<{ consented: number; interactions: number; datasetId: string }>(
      'collect',
      'collect',
      'tuneloop',
      ctx,
      (c) => ({ rows: c.consented, bytes: 0 }),
    );
    ctx.datasetId = collected.datasetId;
    const anonymized = await phase<{ considered: number }>('anonymize', 'anonymize', 'tuneloop', ctx, (a) => ({
      rows: a.considered,
      bytes: text * (collected.consented / Math.max(1, collected.interactions)),
    }));
    ctx.anonymized = anonymized;
    await phase<{ counts: { exported: number }; train: { bytes: number }; validation: { bytes: number } }>(
      'export',
      'export',
      'tuneloop',
      ctx,
      (e) => ({ rows: e.counts.exported, bytes: e.train.bytes + e.validation.bytes }),
    );
    if (!values['skip-baseline-export']) {
      await phase<{ rows: number; bytes: number }>('export-baseline', 'anonymize+export', 'baseline', ctx, (r) => r);
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

const entry = values.child ? runChild(JSON.parse(values.child) as { name: PhaseName; ctx: Ctx }) : main();
entry.catch((err) => {
  console.error(err);
  process.exit(1);
});
