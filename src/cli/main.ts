import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { z } from 'zod';
import { ConfigError, loadConfig, type Config } from '../config';
import { createLogger, type Logger } from '../log';
import { migrateToLatest } from '../db/migrate';
import { migrationReport } from '../db/queries/migration';
import { appsOfModels, getModel, modelExists, upsertModel } from '../db/queries/models';
import { compileSchema } from '../llm/json-schema';
import { getRun, listRuns } from '../db/queries/runs';
import { createApiKey } from '../api/auth';
import { describeMigration } from '../domain/migration';
import { modelDefinitionSchema, slug } from '../domain/model-config';
import { MAX_BATCH } from '../ingest/interaction';
import { startPipeline } from '../temporal/pipeline-client';
import { RollbackRefused, rollbackModel } from '../temporal/rollback-client';
import {
  backfillSchema,
  describeSchedule,
  pauseSchema,
  resumeSchema,
  ScheduleMissing,
  SchedulePaused,
  Schedules,
  scheduleSettingsSchema,
  triggerSchema,
  type ScheduleView,
} from '../temporal/schedule-client';
import {
  openDb,
  openStore,
  openTemporalClient,
  Stack,
  startApi,
  startEmbeddedServices,
  startWorkers,
  openOllama,
  canaryOllamaUrl,
  ollamaUrl,
  serveUntilSignalled,
} from '../embedded/stack';
import { anonymizeStream } from './anonymize';
import { runDemo } from './demo';
import { followRun } from './follow';
import { ensureDemoBaseModel } from '../embedded/base-models';
import { checkImportArguments, importInteractions, ImportRefused } from './import';
import { describeInvalidUtf8, invalidUtf8InJson } from '../ingest/utf8';

/** Exit codes: 1 runtime failure, 2 bad input (arguments, files, configuration). */
export class UsageError extends Error {}

function setup(): { config: Config; log: Logger } {
  const config = loadConfig();
  return { config, log: createLogger(config.logLevel) };
}

/** Long-running commands (`up`, `api`, `worker`): serve until asked to stop, stop in order, exit. */
async function serve(stack: Stack, log: Logger): Promise<void> {
  await serveUntilSignalled(stack, log);
  // Everything is stopped; a handle some library forgot must not keep the prompt from coming back.
  setTimeout(() => process.exit(0), 2_000).unref();
}

/** One-shot commands: open what they need, do it, close it. */
async function oneShot<T>(fn: (ctx: { config: Config; log: Logger; stack: Stack }) => Promise<T>): Promise<T> {
  const { config, log } = setup();
  const stack = new Stack(log);
  try {
    return await fn({ config, log, stack });
  } finally {
    await stack.stop();
  }
}

const slugArg = (v: string) => {
  const r = slug.safeParse(v);
  if (!r.success) throw new InvalidArgumentError(r.error.issues[0]!.message);
  return v;
};

/** After --follow: a run that failed, was cancelled or aborted exits 1. */
const exitWith = (status: string) => {
  if (status === 'failed' || status === 'cancelled' || status === 'aborted') process.exitCode = 1;
};

const intArg = (min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max)
    throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
  return n;
};

export function buildProgram(): Command {
  const program = new Command('tuneloop')
    .description('Keep training your app’s own model on its users’ conversations, durably.')
    .showHelpAfterError()
    .exitOverride();

  program
    .command('up')
    .description('start the embedded stack: PostgreSQL, Temporal dev server (with UI), Ollama, API and both workers')
    .action(async () => {
      const { config, log } = setup();
      const stack = new Stack(log);
      try {
        const { temporal } = await startEmbeddedServices(config, stack, log);
        const db = await openDb(config, stack, log, { migrate: true });
        const store = await openStore(config);
        const client = await openTemporalClient(config, stack);
        const servers = openOllama(config, stack);
        // The sample's base (samples/demo/model.json), so `models put` and `run` work with it as they do in the demo.
        await ensureDemoBaseModel(config.trainer).catch((err: Error) =>
          log.warn({ err: err.message }, 'the demo base model is not available'),
        );
        await startWorkers(config, stack, { db, store, log, ...servers }, { cpu: true, gpu: true });
        const api = await startApi(config, stack, { db, temporal: client, store, log, ...servers });
        console.log(`tuneloop is up (state in ${config.home})`);
        console.log(`  API          ${api.url}`);
        if (temporal?.uiUrl) console.log(`  Temporal UI  ${temporal.uiUrl}`);
        console.log(`  Ollama       ${ollamaUrl(config)} (canary traffic: ${canaryOllamaUrl(config)})`);
        console.log(`  store        ${store.url}`);
        console.log('Press Ctrl-C to stop.');
      } catch (err) {
        await stack.stop();
        throw err;
      }
      await serve(stack, log);
    });

  program
    .command('api')
    .description('run the HTTP API only (DATABASE_URL and TEMPORAL_ADDRESS, or a running `tuneloop up`)')
    .action(async () => {
      const { config, log } = setup();
      const stack = new Stack(log);
      const db = await openDb(config, stack, log, { migrate: true });
      const store = await openStore(config);
      const client = await openTemporalClient(config, stack);
      const api = await startApi(config, stack, {
        db,
        temporal: client,
        store,
        log,
        ...openOllama(config, stack),
      });
      log.info({ url: api.url }, 'api listening');
      await serve(stack, log);
    });

  program
    .command('worker')
    .description('run a worker: task queue "tuneloop", or with --gpu the GPU queue "tuneloop-gpu"')
    .option('--gpu', 'serve the GPU task queue (training and evaluation)')
    .action(async (opts: { gpu?: boolean }) => {
      const { config, log } = setup();
      const stack = new Stack(log);
      const db = await openDb(config, stack, log, { migrate: !opts.gpu });
      const store = await openStore(config);
      await startWorkers(
        config,
        stack,
        { db, store, log, ...openOllama(config, stack) },
        { cpu: !opts.gpu, gpu: !!opts.gpu },
      );
      log.info({ taskQueue: opts.gpu ? config.gpuTaskQueue : config.taskQueue }, 'worker running');
      await serve(stack, log);
    });

  program
    .command('migrate')
    .description('apply pending database migrations')
    .action(() =>
      oneShot(async ({ config, log, stack }) => {
        const db = await openDb(config, stack, log, { migrate: false });
        const applied = await migrateToLatest(db);
        console.log(applied.length ? `applied: ${applied.join(', ')}` : 'database is up to date');
      }),
    );

  const keys = program.command('keys').description('manage API keys');
  keys
    .command('create')
    .description('create an API key; the key is printed once and stored only as a hash')
    .addOption(
      new Option('--role <role>', 'role of the key').choices(['app', 'operator', 'admin']).makeOptionMandatory(),
    )
    .option('--app <app>', 'the app an app key belongs to', slugArg)
    .option('--models <ids>', 'comma-separated models an app key may read and write', (v) =>
      v.split(',').map((m) => slugArg(m.trim())),
    )
    .option('--name <name>', 'a label for the key', 'cli')
    .action((opts: { role: 'app' | 'operator' | 'admin'; app?: string; models?: string[]; name: string }) =>
      oneShot(async ({ config, log, stack }) => {
        if (opts.role === 'app' && (!opts.app || !opts.models?.length)) {
          throw new UsageError('an app key needs --app and --models');
        }
        if (opts.role !== 'app' && (opts.app || opts.models))
          throw new UsageError('--app and --models are for app keys only');
        const db = await openDb(config, stack, log, { migrate: true });
        if (opts.app) {
          const appOf = await appsOfModels(db, opts.models!);
          for (const m of opts.models!) {
            const app = appOf.get(m);
            if (!app) throw new UsageError(`model ${m} does not exist (create it with \`tuneloop models put\`)`);
            if (app !== opts.app) throw new UsageError(`model ${m} belongs to app ${app}, not ${opts.app}`);
          }
        }
        const key = await createApiKey(db, {
          name: opts.name,
          role: opts.role,
          appId: opts.app ?? null,
          models: opts.models ?? [],
        });
        console.log(key.key);
      }),
    );

  const models = program.command('models').description('manage model definitions');
  models
    .command('put <file>')
    .description('create or update a model from a JSON definition (validated; see samples/demo/model.json)')
    .action((file: string) =>
      oneShot(async ({ config, log, stack }) => {
        let raw: unknown;
        try {
          const bytes = readFileSync(file);
          const bad = invalidUtf8InJson(bytes);
          if (bad) throw new Error(describeInvalidUtf8(bad));
          raw = JSON.parse(bytes.toString('utf8'));
        } catch (err) {
          throw new UsageError(`${file}: ${err instanceof Error ? err.message : String(err)}`);
        }
        const parsed = modelDefinitionSchema.safeParse(raw);
        if (!parsed.success) {
          const i = parsed.error.issues[0]!;
          throw new UsageError(`${file}: ${i.path.join('.') || '(root)'}: ${i.message}`);
        }
        if (parsed.data.outputSchema) {
          try {
            compileSchema(parsed.data.outputSchema);
          } catch (err) {
            throw new UsageError(`${file}: outputSchema: ${(err as Error).message}`);
          }
        }
        const db = await openDb(config, stack, log, { migrate: true });
        const m = await upsertModel(db, parsed.data);
        console.log(`model ${m.id} (app ${m.app_id}) saved`);
      }),
    );

  program
    .command('run')
    .description('start (or join) the training pipeline for a model')
    .requiredOption('--model <id>', 'the model', slugArg)
    .option('--wait', 'wait for the run to finish and print its result')
    .option('--follow', 'print each stage as it ends, and training progress, until the run ends')
    .action((opts: { model: string; wait?: boolean; follow?: boolean }) =>
      oneShot(async ({ config, log, stack }) => {
        const db = await openDb(config, stack, log, { migrate: false });
        const client = await openTemporalClient(config, stack);
        if (!(await modelExists(db, opts.model))) throw new UsageError(`model ${opts.model} does not exist`);
        const started = await startPipeline(client, db, {
          model: opts.model,
          taskQueue: config.taskQueue,
          gpuTaskQueue: config.gpuTaskQueue,
          gpuHeartbeatTimeoutS: config.gpuHeartbeatTimeoutS,
          trigger: 'cli',
          requestedBy: 'cli',
        });
        console.log(`run ${started.runId} (workflow ${started.workflowId})`);
        if (opts.follow) exitWith(await followRun(client, db, started, process.stdout));
        else if (opts.wait) console.log(JSON.stringify(await started.result(), null, 2));
      }),
    );

  const schedule = program.command('schedule').description("manage each model's nightly run (a Temporal Schedule)");
  /** Validates with the API's schema (exit 2 naming the field), then runs `fn` on the schedules, printing views. */
  const onSchedule = <S extends z.ZodType>(
    schema: S,
    input: unknown,
    model: string | null,
    fn: (s: Schedules, valid: z.output<S>, actor: string) => Promise<ScheduleView | ScheduleView[] | null>,
  ) => {
    const valid = schema.safeParse(input);
    if (!valid.success) {
      const i = valid.error.issues[0]!;
      throw new UsageError(`${i.path.join('.') || 'arguments'}: ${i.message}`);
    }
    return oneShot(async ({ config, log, stack }) => {
      const db = await openDb(config, stack, log, { migrate: false });
      if (model && !(await modelExists(db, model))) throw new UsageError(`model ${model} does not exist`);
      const schedules = new Schedules(await openTemporalClient(config, stack), db, {
        taskQueue: config.taskQueue,
        gpuTaskQueue: config.gpuTaskQueue,
        gpuHeartbeatTimeoutS: config.gpuHeartbeatTimeoutS,
      });
      try {
        const view = await fn(schedules, valid.data, `cli:${process.env.USER ?? 'unknown'}`);
        for (const v of Array.isArray(view) ? view : view ? [view] : []) console.log(describeSchedule(v));
        if (Array.isArray(view) && !view.length) console.log('no schedules');
      } catch (err) {
        if (err instanceof ScheduleMissing || err instanceof SchedulePaused) throw new UsageError(err.message);
        throw err;
      }
    });
  };
  schedule
    .command('set')
    .description("create or change a model's nightly run (what is left out keeps its value; skipped while a run goes)")
    .requiredOption('--model <id>', 'the model', slugArg)
    .option('--at <HH:MM>', 'time of day, 24-hour (new schedules: 02:00)')
    .option('--timezone <zone>', 'an IANA time zone, such as Europe/Berlin (new schedules: UTC)')
    .option('--catchup-minutes <n>', 'after downtime, make up a run missed this long ago or less', intArg(1, 10_080))
    .option('--volume <n>', 'also run as soon as N new consented examples have arrived', intArg(1, 100_000_000))
    .option('--no-volume', 'no more runs on volume (the nightly run stays)')
    .option(
      '--volume-interval-minutes <n>',
      'with --volume: at most one run this often (default 360)',
      intArg(10, 10_080),
    )
    .option(
      '--volume-check-minutes <n>',
      'with --volume: how often to count new examples (default 10)',
      intArg(1, 1440),
    )
    .action(
      (opts: {
        model: string;
        at?: string;
        timezone?: string;
        catchupMinutes?: number;
        volume?: number | false;
        volumeIntervalMinutes?: number;
        volumeCheckMinutes?: number;
      }) => {
        if (typeof opts.volume !== 'number' && (opts.volumeIntervalMinutes || opts.volumeCheckMinutes)) {
          throw new UsageError('--volume-interval-minutes and --volume-check-minutes go with --volume N');
        }
        const volume =
          opts.volume === false
            ? null
            : opts.volume === undefined
              ? undefined
              : {
                  examples: opts.volume,
                  minIntervalMinutes: opts.volumeIntervalMinutes,
                  checkEveryMinutes: opts.volumeCheckMinutes,
                };
        return onSchedule(
          scheduleSettingsSchema,
          { at: opts.at, timezone: opts.timezone, catchupWindowMinutes: opts.catchupMinutes, volume },
          opts.model,
          (s, settings, actor) => s.set(opts.model, settings, actor),
        );
      },
    );
  schedule
    .command('list')
    .description('every model’s schedule: time, zone, paused or not and why, next and recent runs')
    .action(() => onSchedule(z.object({}), {}, null, (s) => s.list()));
  schedule
    .command('pause')
    .description('pause a model’s nightly run, saying why (shown to the next operator and in the Temporal UI)')
    .requiredOption('--model <id>', 'the model', slugArg)
    .requiredOption('--reason <text>', 'why')
    .action((opts: { model: string; reason: string }) =>
      onSchedule(pauseSchema, { reason: opts.reason }, opts.model, (s, body, actor) =>
        s.pause(opts.model, body, actor),
      ),
    );
  schedule
    .command('resume')
    .description('resume a paused nightly run')
    .requiredOption('--model <id>', 'the model', slugArg)
    .option('--reason <text>', 'why')
    .action((opts: { model: string; reason?: string }) =>
      onSchedule(resumeSchema, { reason: opts.reason }, opts.model, (s, body, actor) =>
        s.resume(opts.model, body, actor),
      ),
    );
  schedule
    .command('trigger')
    .description('start the nightly run now (skipped if a run of the model is going; refused while paused)')
    .requiredOption('--model <id>', 'the model', slugArg)
    .option('--force', 'run even though the schedule is paused')
    .action((opts: { model: string; force?: boolean }) =>
      onSchedule(triggerSchema, { force: opts.force ?? false }, opts.model, (s, body, actor) =>
        s.trigger(opts.model, body, actor),
      ),
    );
  schedule
    .command('backfill')
    .description('take the runs missed between two past times, at most 31 days (one runs; the others skip behind it)')
    .requiredOption('--model <id>', 'the model', slugArg)
    .requiredOption('--from <time>', 'ISO 8601 with its offset, such as 2026-12-01T00:00:00Z')
    .requiredOption('--to <time>', 'ISO 8601 with its offset, in the past')
    .option('--force', 'run even though the schedule is paused')
    .action((opts: { model: string; from: string; to: string; force?: boolean }) =>
      onSchedule(
        backfillSchema,
        { from: opts.from, to: opts.to, force: opts.force ?? false },
        opts.model,
        (s, b, actor) => s.backfill(opts.model, b, actor),
      ),
    );
  schedule
    .command('delete')
    .description('delete a model’s schedule (a run it started goes on)')
    .requiredOption('--model <id>', 'the model', slugArg)
    .action((opts: { model: string }) =>
      onSchedule(z.object({}), {}, opts.model, async (s, _none, actor) => {
        await s.delete(opts.model, actor);
        console.log(`${opts.model}: schedule deleted`);
        return null;
      }),
    );

  program
    .command('rollback')
    .description("put the model's previous production version back (Ollama tag and routing), in one step")
    .requiredOption('--model <id>', 'the model', slugArg)
    .option('--reason <text>', 'why (kept in the alias history)', 'rollback from the command line')
    .action((opts: { model: string; reason: string }) =>
      oneShot(async ({ config, log, stack }) => {
        const db = await openDb(config, stack, log, { migrate: false });
        const client = await openTemporalClient(config, stack);
        if (!(await modelExists(db, opts.model))) throw new UsageError(`model ${opts.model} does not exist`);
        try {
          const { result } = await rollbackModel(client, {
            model: opts.model,
            taskQueue: config.taskQueue,
            actor: `cli:${process.env.USER ?? 'unknown'}`,
            reason: opts.reason,
          });
          console.log(
            `${opts.model}: production is ${result.version} again (${result.servedTag} → ${result.tag})` +
              (result.previous ? `; ${result.previous.version} rolled back` : ''),
          );
        } catch (err) {
          if (err instanceof RollbackRefused) throw new UsageError(err.message);
          throw err;
        }
      }),
    );

  program
    .command('status [run]')
    .description('list recent runs, or show one run; with --model, the migration off its incumbent first')
    .option('--model <id>', 'only this model', slugArg)
    .option('--follow', 'with RUN: print each stage as it ends, and training progress, until the run ends')
    .action((runId: string | undefined, opts: { model?: string; follow?: boolean }) =>
      oneShot(async ({ config, log, stack }) => {
        const db = await openDb(config, stack, log, { migrate: false });
        if (opts.follow && !runId) throw new UsageError('--follow needs a RUN');
        if (runId) {
          const run = await getRun(db, runId);
          if (!run) throw new UsageError(`run ${runId} not found`);
          if (opts.follow) {
            const client = await openTemporalClient(config, stack);
            exitWith(await followRun(client, db, { workflowId: run.workflow_id, runId: run.id }, process.stdout));
            return;
          }
          console.log(JSON.stringify(run, null, 2));
          return;
        }
        if (opts.model) {
          const model = await getModel(db, opts.model);
          if (!model) throw new UsageError(`model ${opts.model} not found`);
          console.log(describeMigration(await migrationReport(db, model, 30)));
        }
        const runs = await listRuns(db, { model: opts.model, limit: 20 });
        if (!runs.length) console.log('no runs yet');
        for (const r of runs) {
          console.log(`${r.started_at.toISOString()}  ${r.model_id.padEnd(20)} ${r.status.padEnd(18)} ${r.id}`);
        }
      }),
    );

  program
    .command('import <file>')
    .description('import interactions an app already has: a JSON-lines file, one interaction per line, in any shape')
    .requiredOption('--model <id>', 'the model they belong to (a line may name it too, but no other)', slugArg)
    .option('--strict', 'import nothing if any line is bad (default: skip bad lines and report them)')
    .option(
      '--report <file>',
      'also write the outcome as JSON: { imported, duplicates, erased, rejected: [{ line, error }] }',
    )
    .option('--batch <n>', `interactions per transaction, 1 to 5000`, intArg(1, 5000), MAX_BATCH)
    .addHelpText(
      'after',
      [
        '',
        'Each line is one interaction, validated as POST /v1/interactions does: "subject" and one of "messages",',
        '"prompt"/"completion" or "instruction"/"input"/"output"; "id" (the app\'s own) makes re-imports skip it.',
        'Rejected lines are listed on stderr as "line N: field: problem".',
        '',
        'Exit codes: 0 done (bad lines, if any, were skipped and reported), 1 crash (database, I/O),',
        '            2 bad arguments, unknown model, or under --strict a bad line (nothing imported).',
      ].join('\n'),
    )
    .action((file: string, opts: { model: string; strict?: boolean; report?: string; batch: number }) =>
      oneShot(async ({ config, log, stack }) => {
        const options = { file, model: opts.model, strict: !!opts.strict, batch: opts.batch, report: opts.report };
        try {
          // Arguments first: a wrong path should not wait for a database.
          await checkImportArguments(options);
          const db = await openDb(config, stack, log, { migrate: true });
          const r = await importInteractions(db, options, { warn: (line) => console.error(line), log });
          const rate = r.seconds > 0 ? Math.round(r.lines / r.seconds) : r.lines;
          console.log(
            `imported ${r.imported} interactions into ${r.model}: ${r.duplicates} duplicates, ${r.erased} erased, ` +
              `${r.rejectedCount} rejected lines, ${r.lines} lines in ${r.seconds} s (${rate} lines/s)`,
          );
        } catch (err) {
          throw err instanceof ImportRefused ? new UsageError(err.message) : err;
        }
      }),
    );

  program
    .command('anonymize')
    .description('redact personal data: JSON lines with a "text" field on stdin, {"text","entities"} lines on stdout')
    .addHelpText(
      'after',
      [
        '',
        'Entity offsets are JavaScript string indices into the input text. A bad line gives an {"error","line"}',
        'line in its place, not a crash. Needs no database. Exit code 0 unless reading or writing fails.',
      ].join('\n'),
    )
    .action(async () => {
      // Needs no configuration or database: a pure filter over the PII engine.
      const r = await anonymizeStream(process.stdin, process.stdout);
      process.stderr.write(`${r.lines} lines, ${r.errors} errors\n`);
    });

  program
    .command('demo')
    .description('start the embedded stack, seed the bundled sample, run one pipeline and print its result')
    .option('--keep', 'keep the stack running afterwards so the run can be browsed in the Temporal UI')
    .action(async (opts: { keep?: boolean }) => {
      const config = loadConfig();
      // The demo prints its own story; logs only when something is wrong, unless LOG_LEVEL asks for more.
      const log = createLogger(process.env.LOG_LEVEL ? config.logLevel : 'warn');
      // The demo has the machine to itself while it trains and evaluates: the trainer's OpenMP threads may spin
      // between parallel regions instead of sleeping (training on 2 cores: 27 s instead of 36 s for the sample).
      process.env.OMP_WAIT_POLICY ??= 'ACTIVE';
      await runDemo(config, log, { keep: !!opts.keep, serve });
    });

  return program;
}

export async function main(argv = process.argv): Promise<void> {
  // A terminal that was closed (or a pipe whose reader went away) must not crash a command that still has servers
  // to stop: what it prints then has nowhere to go.
  for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
  try {
    await buildProgram().parseAsync(argv);
  } catch (err) {
    const e = (err ?? {}) as { code?: string; exitCode?: number };
    if (e.code?.startsWith('commander.')) {
      // commander reports its usage errors with exit code 1; ours are 2 (bad input), help and version 0.
      process.exit(e.exitCode === 0 || e.code === 'commander.helpDisplayed' || e.code === 'commander.version' ? 0 : 2);
    }
    if (err instanceof ConfigError || err instanceof UsageError) {
      console.error(`tuneloop: ${err.message}`);
      process.exit(2);
    }
    console.error(`tuneloop: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}

await main();
