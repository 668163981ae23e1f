import { createReadStream } from 'node:fs';
import { access, constants, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Db } from '../db/pool';
import { ErasedDuringWrite, insertInteractions } from '../db/queries/interactions';
import { appsOfModels } from '../db/queries/models';
import type { CanonicalInteraction } from '../ingest/interaction';
import { parseImportLine, splitLines } from '../ingest/jsonl';
import type { Logger } from '../log';

/** Rejected lines kept in the report (and printed); the rest are counted. */
export const MAX_REPORTED_REJECTIONS = 1000;
/** A batch is written at `--batch` lines or at this many bytes of input, whichever comes first. */
const MAX_BATCH_BYTES = 32 * 1024 * 1024;

export interface ImportOptions {
  file: string;
  model: string;
  strict: boolean;
  /** Interactions per transaction. */
  batch: number;
  /** Where to write the JSON report, if anywhere. */
  report?: string;
}

export interface ImportReport {
  file: string;
  model: string;
  strict: boolean;
  /** Lines in the file, blank ones included. */
  lines: number;
  imported: number;
  duplicates: number;
  /** Lines naming (by the app's id) an interaction erased with its subject: not imported again. */
  erased: number;
  /** Every rejected line, counted; `rejected` lists the first MAX_REPORTED_REJECTIONS of them. */
  rejectedCount: number;
  rejected: { line: number; error: string }[];
  seconds: number;
}

/** The import cannot start or, under --strict, must not: the caller exits 2. */
export class ImportRefused extends Error {}

interface Io {
  /** One line for a person, on stderr. */
  warn: (line: string) => void;
  log: Logger;
}

/** One line of the file: an interaction, an error, or neither (a blank line, skipped). */
interface ParsedLine {
  line: number;
  bytes: number;
  value?: CanonicalInteraction;
  error?: string;
}

/** The file's lines, each validated by the API's own rules; streamed, never held whole. */
async function* readInteractions(file: string, model: string): AsyncGenerator<ParsedLine> {
  for await (const raw of splitLines(createReadStream(file, { highWaterMark: 1 << 20 }))) {
    const { line, bytes } = raw;
    if (raw.text === null) yield { line, bytes, error: raw.error! };
    else if (raw.text.trim() === '') yield { line, bytes };
    else {
      const r = parseImportLine(raw.text, model);
      yield r.ok ? { line, bytes, value: r.value } : { line, bytes, error: r.error };
    }
  }
}

/** Checks what can be checked without a database: the file is a readable file, the report can be written. */
export async function checkImportArguments(opts: ImportOptions): Promise<void> {
  try {
    const s = await stat(opts.file);
    if (!s.isFile()) throw new ImportRefused(`${opts.file}: not a file`);
    await access(opts.file, constants.R_OK);
  } catch (err) {
    if (err instanceof ImportRefused) throw err;
    throw new ImportRefused(
      `${opts.file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : 'cannot be read'}`,
    );
  }
  if (opts.report) {
    const dir = path.dirname(path.resolve(opts.report));
    const writable = await access(dir, constants.W_OK).then(
      () => true,
      () => false,
    );
    if (!writable) throw new ImportRefused(`--report ${opts.report}: cannot write in ${dir}`);
    const existing = await stat(opts.report).catch(() => null);
    if (existing?.isDirectory()) throw new ImportRefused(`--report ${opts.report}: is a directory`);
  }
}

/**
 * `tuneloop import`: streams a JSON-lines file of interactions into one model, in batches through the same insert
 * as the API. Lines are validated by the API's rules (src/ingest); an app id makes a line idempotent, so importing a
 * file again stores nothing twice.
 *
 * Without --strict a bad line is reported and skipped. With --strict any bad line aborts with nothing written, by
 * validating the whole file first and writing in a second pass, rather than holding one transaction open over the
 * file: the collect stage takes a SHARE lock on `interactions` to fix its range, which waits for every open insert
 * transaction, and API writes queue behind that lock. A transaction spanning a 1 GB import would stall collect and,
 * through it, every app's writes for as long as the import runs. Two passes cost a second read of the file. What
 * they do not give is atomicity against a crash in the second pass (the database going away): the batches committed
 * so far stay, and running the import again skips every line that has an `id`.
 */
export async function importInteractions(db: Db, opts: ImportOptions, io: Io): Promise<ImportReport> {
  const started = performance.now();
  const appId = (await appsOfModels(db, [opts.model])).get(opts.model);
  if (!appId) throw new ImportRefused(`model ${opts.model} does not exist (create it with \`tuneloop models put\`)`);

  const report: ImportReport = {
    file: opts.file,
    model: opts.model,
    strict: opts.strict,
    lines: 0,
    imported: 0,
    duplicates: 0,
    erased: 0,
    rejectedCount: 0,
    rejected: [],
    seconds: 0,
  };
  const finish = async () => {
    report.seconds = Math.round(performance.now() - started) / 1000;
    if (opts.report) await writeFile(opts.report, `${JSON.stringify(report, null, 2)}\n`);
    return report;
  };

  if (opts.strict) {
    const before = await stat(opts.file);
    for await (const l of readInteractions(opts.file, opts.model)) {
      if (l.error === undefined) continue;
      report.lines = l.line;
      report.rejectedCount = 1;
      report.rejected.push({ line: l.line, error: l.error });
      await finish();
      throw new ImportRefused(`${opts.file} line ${l.line}: ${l.error}; nothing was imported (--strict)`);
    }
    const after = await stat(opts.file);
    if (after.size !== before.size || after.mtimeMs !== before.mtimeMs)
      throw new Error(`${opts.file} changed while it was being checked; nothing was imported`);
  }

  let batch: CanonicalInteraction[] = [];
  let batchBytes = 0;
  const flush = async () => {
    if (!batch.length) return;
    const items = batch;
    batch = [];
    batchBytes = 0;
    const write = () =>
      db.transaction().execute((trx) =>
        insertInteractions(
          trx,
          items.map((it) => ({ ...it, appId, source: 'import' })),
        ),
      );
    // An erasure committing during the write refuses the batch whole; written again, its erased lines are skipped.
    const stored = await write().catch((err: unknown) => {
      if (err instanceof ErasedDuringWrite) return write();
      throw err;
    });
    const duplicates = stored.filter((s) => s.duplicate).length;
    const erased = stored.filter((s) => s.erased).length;
    report.duplicates += duplicates;
    report.erased += erased;
    report.imported += stored.length - duplicates - erased;
  };

  let nextProgress = 100_000;
  for await (const l of readInteractions(opts.file, opts.model)) {
    report.lines = l.line;
    if (l.value === undefined && l.error === undefined) continue;
    if (l.error !== undefined) {
      // Validated in the first pass: a bad line now means the file changed under us.
      if (opts.strict) throw new Error(`${opts.file} changed while it was imported (line ${l.line}: ${l.error})`);
      report.rejectedCount++;
      if (report.rejected.length < MAX_REPORTED_REJECTIONS) {
        report.rejected.push({ line: l.line, error: l.error });
        io.warn(`line ${l.line}: ${l.error}`);
      }
      continue;
    }
    batch.push(l.value!);
    batchBytes += l.bytes;
    if (batch.length >= opts.batch || batchBytes >= MAX_BATCH_BYTES) await flush();
    if (l.line >= nextProgress) {
      io.log.info({ line: l.line, imported: report.imported, rejected: report.rejectedCount }, 'importing');
      nextProgress += 100_000;
    }
  }
  await flush();
  if (report.rejectedCount > report.rejected.length)
    io.warn(`… and ${report.rejectedCount - report.rejected.length} more rejected lines`);
  return finish();
}
