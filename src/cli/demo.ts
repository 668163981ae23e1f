import { Readable } from 'node:stream';
import type { Config } from '../config';
import type { Db } from '../db/pool';
import { revokeApiKey } from '../db/queries/api-keys';
import { upsertModel } from '../db/queries/models';
import { getVersion } from '../db/queries/registry';
import { readHeldOutQuestions, readSampleDefinition, seedSample } from './demo-sample';
import type { Logger } from '../log';
import type { EvaluateSummary } from '../activities/evaluate';
import { compilePattern } from '../llm/json-schema';
import { inStyle } from '../domain/evaluation';
import type { BlobStore } from '../storage/blob-store';
import { startPipeline } from '../temporal/pipeline-client';
import { ensureDemoBaseModel } from '../embedded/base-models';
import {
  openDb,
  openStore,
  openTemporalClient,
  Stack,
  startEmbeddedServices,
  startWorkers,
  openOllama,
  ollamaUrl,
  startApi,
  stopSignals,
  temporalAddress,
} from '../embedded/stack';
import { createApiKey } from '../api/auth';
import { statusQuery } from '../workflows/messages';

/**
 * The demo: the embedded stack, the bundled sample as one "day" of app traffic (each demo run is a new day,
 * so the loop always has fresh data), one pipeline run, its result. The state stays in the home folder, so
 * `tuneloop up` later shows this run in the Temporal UI.
 */
export async function runDemo(
  config: Config,
  log: Logger,
  opts: { keep: boolean; serve: (stack: Stack, log: Logger) => Promise<void> },
): Promise<void> {
  const started = Date.now();
  const out = (s: string) => process.stdout.write(s + '\n');
  const stack = new Stack(log);
  // Ctrl-C during the demo stops the servers it started, in order, rather than leaving them behind; a second one
  // kills them at once.
  const signals = opts.keep ? null : stopSignals(log);
  let interrupted = false;
  void signals?.first.then(() => {
    interrupted = true;
    out('\nInterrupted; stopping the stack…');
    void stack.stop().finally(() => process.exit(130));
  });
  try {
    out('Starting the embedded stack (PostgreSQL, Temporal dev server, Ollama)…');
    const { temporal } = await startEmbeddedServices(config, stack, log);
    const db = await openDb(config, stack, log, { migrate: true });
    const store = await openStore(config);
    const client = await openTemporalClient(config, stack);
    await ensureDemoBaseModel(config.trainer);
    const servers = openOllama(config, stack);
    await startWorkers(config, stack, { db, store, log, ...servers }, { cpu: true, gpu: true });
    const api = await startApi(config, stack, { db, temporal: client, store, log, ...servers });

    out(`The stack is up (${((Date.now() - started) / 1000).toFixed(1)} s).`);
    const definition = readSampleDefinition();
    const model = await upsertModel(db, definition);
    const day = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
    const seeded = await seedSample(db, { id: model.id, app: model.app_id }, `demo-${day}-`);
    out(
      `Seeded ${seeded.stored} interactions for model "${model.id}" (${seeded.declined} of ${seeded.users} users have not consented to training).`,
    );

    const run = await startPipeline(client, db, {
      model: model.id,
      taskQueue: config.taskQueue,
      gpuTaskQueue: config.gpuTaskQueue,
      gpuHeartbeatTimeoutS: config.gpuHeartbeatTimeoutS,
      trigger: 'cli',
      requestedBy: 'demo',
    });
    const ui = temporal?.uiUrl ?? `(the Temporal UI of ${temporalAddress(config)})`;
    out(`\nRun ${run.runId} started. Watch it in the Temporal UI:`);
    out(
      `  ${ui}/namespaces/${config.temporalNamespace}/workflows/${encodeURIComponent(run.workflowId)}/${run.runId}/history\n`,
    );

    const handle = client.workflow.getHandle(run.workflowId, run.runId);
    let lastStage: string | null = null;
    const poll = setInterval(() => {
      handle
        .query(statusQuery)
        .then((s) => {
          if (s.stage && s.stage !== lastStage) out(`  … ${s.stage}`);
          lastStage = s.stage;
        })
        .catch(() => undefined);
    }, 300);
    const result = await run.result().finally(() => clearInterval(poll));

    out(`\nRun ${result.status}. Stages:`);
    for (const s of result.stages) {
      const detail = s.summary ? JSON.stringify(s.summary) : (s.reason ?? '');
      const took =
        s.startedAt && s.endedAt ? `${((Date.parse(s.endedAt) - Date.parse(s.startedAt)) / 1000).toFixed(1)} s` : '';
      out(`  ${s.name.padEnd(11)} ${s.status.padEnd(10)} ${took.padStart(7)}  ${detail}`);
    }
    if (result.dataset) {
      out(`\nDataset ${result.dataset.id} in ${store.url}`);
      out(`  manifest    ${result.dataset.manifestKey}`);
      out(
        `  train       ${result.dataset.train.key}  ${result.dataset.train.count} rows, ${result.dataset.train.bytes} bytes, sha256 ${result.dataset.train.sha256.slice(0, 16)}…`,
      );
      out(
        `  validation  ${result.dataset.validation.key}  ${result.dataset.validation.count} rows, ${result.dataset.validation.bytes} bytes, sha256 ${result.dataset.validation.sha256.slice(0, 16)}…`,
      );
    }
    if (result.dataset) {
      // Show what anonymize did: the first stored row with a placeholder, as the trainer will read it.
      const text = await new Response(
        Readable.toWeb(await store.get(result.dataset.train.key)) as ReadableStream,
      ).text();
      const redacted = text.split('\n').find((l) => /<[A-Z_]+_\d+>/.test(l));
      if (redacted) {
        const row = JSON.parse(redacted) as { messages: { role: string; content: string }[] };
        out('\nA redacted row, as stored:');
        for (const m of row.messages) out(`  ${m.role.padEnd(10)} ${m.content}`);
      }
    }
    if (result.version) {
      const status = await getVersion(db, result.version.id);
      out(`\nModel version ${result.version.version} (${status?.status ?? 'unknown'}), adapter in ${store.url}:`);
      out(`  ${result.version.adapterKey}`);
      const ev = result.stages.find((s) => s.name === 'evaluate')?.summary as EvaluateSummary | null;
      if (ev?.candidate.loss != null && ev.baseline.loss != null) {
        out(
          `  held-out loss ${ev.candidate.loss.toFixed(3)} vs the ${ev.baselineName}'s ${ev.baseline.loss.toFixed(3)}`,
        );
      }
      if (status?.ollama_tag) out(`  served by Ollama (${ollamaUrl(config)}) as ${status.ollama_tag}`);
      if (ev?.pairsKey) {
        await showSideBySide(
          store,
          ev,
          { base: definition.baseModel, version: result.version.version },
          definition.config.style?.name,
          out,
        );
      }
    }
    await askTheModel(db, api.url, model.id, model.app_id, definition.config.style, out);
    out(`\nDone in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
    if (opts.keep) {
      out(`The stack stays up; browse the run at ${ui}. Press Ctrl-C to stop.`);
      await opts.serve(stack, log);
      return;
    }
    out('Run `npm run tuneloop -- up` to start the stack again and browse this run in the Temporal UI.');
  } catch (err) {
    // What was cut short by the stop is not an error of its own: the stack stops, the exit says interrupted.
    if (!interrupted) throw err;
    await stack.stop();
    process.exit(130);
  } finally {
    signals?.dispose();
    await stack.stop();
  }
}

/**
 * What the run changed, on held-out questions the training set did not contain (the validation split's prompts, as
 * evaluate asked them of both sides, greedy): the base's answer and the new version's, side by side, and how often
 * each side answers in the app's house style.
 */
async function showSideBySide(
  store: BlobStore,
  ev: EvaluateSummary,
  { base, version }: { base: string; version: string },
  styleName: string | undefined,
  out: (s: string) => void,
) {
  const text = await new Response(Readable.toWeb(await store.get(ev.pairsKey!)) as ReadableStream).text();
  const pairs = text
    .split('\n')
    .filter(Boolean)
    .map(
      (l) => JSON.parse(l) as { messages: { role: string; content: string }[]; candidate: string; baseline: string },
    );
  const before = ev.baselineName === 'base' ? base : 'production';
  out(`\nThe same held-out questions, before (${before}) and after (${version}):`);
  for (const p of pairs.slice(0, 2)) {
    out(`  user       ${p.messages.at(-1)!.content}`);
    out(indent(`  before     `, p.baseline));
    out(indent(`  after      `, p.candidate));
  }
  const rate = (r: number | null | undefined) => (typeof r === 'number' ? `${Math.round(r * 100)} %` : 'n/a');
  if (styleName) {
    out(
      `  in the house style (${styleName}) on ${pairs.length} held-out questions: ` +
        `${before} ${rate(ev.baseline.styleRate)}, ${version} ${rate(ev.candidate.styleRate)}`,
    );
  }
}

const indent = (head: string, body: string) =>
  head +
  body
    .trim()
    .split('\n')
    .join('\n' + ' '.repeat(head.length));

/**
 * The app's side of the loop: questions no conversation of the sample asked, through POST /v1/chat, answered by
 * whatever version serves now; two of the answers printed, and the share of all of them in the house style.
 */
async function askTheModel(
  db: Db,
  apiUrl: string,
  model: string,
  app: string,
  style: { name: string; pattern: string } | undefined,
  out: (s: string) => void,
) {
  const { id, key } = await createApiKey(db, { name: 'demo', role: 'app', appId: app, models: [model] });
  const questions = readHeldOutQuestions().slice(0, 6);
  const matches = style ? compilePattern(style.pattern) : null;
  try {
    out(`\nThe app asks ${questions.length} new questions through the API (${apiUrl}/v1/chat):`);
    let styled = 0;
    let answered = 0;
    let by = '';
    for (const [i, question] of questions.entries()) {
      const res = await fetch(`${apiUrl}/v1/chat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model,
          subject: `demo-user-${i + 1}`,
          messages: [{ role: 'user', content: question }],
          options: { temperature: 0, num_predict: 80 },
        }),
      });
      const body = (await res.json()) as {
        version?: string;
        alias?: string;
        message?: { content: string };
        latencyMs?: number;
        error?: { message: string };
      };
      if (!res.ok) {
        out(`  user       ${question}`);
        out(`  (HTTP ${res.status}: ${body.error?.message ?? 'error'})`);
        continue;
      }
      const answer = body.message?.content ?? '';
      answered++;
      if (matches && inStyle(answer, matches)) styled++;
      by = `${body.version} (${body.alias})`;
      if (i < 2) {
        out(`  user       ${question}`);
        out(indent(`  ${body.version} (${body.latencyMs} ms) `, answer));
      }
    }
    if (style && answered > 0) {
      out(`  ${styled} of ${answered} answers from ${by} are in the house style (${style.name})`);
    }
  } finally {
    await revokeApiKey(db, id);
  }
}
