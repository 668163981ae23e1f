import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { Config } from '../config';
import type { ChatMessage } from '../domain/conversation';
import type { Db } from '../db/pool';
import { insertInteractions, setConsent } from '../db/queries/interactions';
import { revokeApiKey } from '../db/queries/api-keys';
import { upsertModel } from '../db/queries/models';
import { getVersion } from '../db/queries/registry';
import { modelDefinitionSchema } from '../domain/model-config';
import type { Logger } from '../log';
import { startPipeline } from '../temporal/pipeline-client';
import { REPO_ROOT } from '../embedded/temporal-dev-server';
import { ensureTinyBaseModel, TINY_BASE_MODEL } from '../embedded/tiny-model';
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

const SAMPLE_DIR = path.join(REPO_ROOT, 'samples/demo');

const sampleLine = z
  .object({
    id: z.string(),
    subject: z.string(),
    messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict()),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();

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
    out(
      `Making the tiny base model the demo trains (${TINY_BASE_MODEL}, random weights, once) in ${config.trainer.modelsDir}…`,
    );
    await ensureTinyBaseModel(config.trainer, log);
    const servers = openOllama(config, stack);
    await startWorkers(config, stack, { db, store, log, ...servers }, { cpu: true, gpu: true });
    const api = await startApi(config, stack, { db, temporal: client, store, log, ...servers });

    const model = await upsertModel(
      db,
      modelDefinitionSchema.parse(JSON.parse(readFileSync(path.join(SAMPLE_DIR, 'model.json'), 'utf8'))),
    );
    const consent = z
      .object({ policyVersion: z.string(), subjects: z.record(z.string(), z.boolean()) })
      .parse(JSON.parse(readFileSync(path.join(SAMPLE_DIR, 'consent.json'), 'utf8')));
    const sample = readFileSync(path.join(SAMPLE_DIR, 'interactions.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => sampleLine.parse(JSON.parse(l)));
    const day = new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15);
    const stored = await db.transaction().execute(async (trx) => {
      for (const [subject, training] of Object.entries(consent.subjects)) {
        await setConsent(trx, { appId: model.app_id, subject, training, policyVersion: consent.policyVersion });
      }
      return insertInteractions(
        trx,
        sample.map((s) => ({
          appId: model.app_id,
          model: model.id,
          subject: s.subject,
          id: `demo-${day}-${s.id}`,
          messages: s.messages as ChatMessage[],
          metadata: s.metadata,
          source: 'demo',
        })),
      );
    });
    const declined = Object.values(consent.subjects).filter((v) => !v).length;
    out(
      `Seeded ${stored.length} interactions for model "${model.id}" (${declined} of ${Object.keys(consent.subjects).length} users have not consented to training).`,
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
      out(`  ${s.name.padEnd(11)} ${s.status.padEnd(10)} ${detail}`);
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
      const ev = result.stages.find((s) => s.name === 'evaluate')?.summary as {
        baselineName: string;
        candidate: { loss: number; perplexity: number };
        baseline: { loss: number; perplexity: number };
      } | null;
      if (ev) {
        out(
          `  held-out loss ${ev.candidate.loss.toFixed(3)} (perplexity ${ev.candidate.perplexity.toFixed(1)}) vs the ${ev.baselineName}'s ${ev.baseline.loss.toFixed(3)} (${ev.baseline.perplexity.toFixed(1)})`,
        );
      }
      if (status?.ollama_tag) out(`  served by Ollama (${ollamaUrl(config)}) as ${status.ollama_tag}`);
    }
    await askTheModel(db, api.url, model.id, model.app_id, out);
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

/** The app's side of the loop: two questions through POST /v1/chat, answered by whatever version serves now. */
async function askTheModel(db: Db, apiUrl: string, model: string, app: string, out: (s: string) => void) {
  const { id, key } = await createApiKey(db, { name: 'demo', role: 'app', appId: app, models: [model] });
  try {
    out(`\nThe app asks through the API (${apiUrl}/v1/chat):`);
    for (const [subject, question] of [
      ['demo-user-1', 'What should I do for squats on Monday?'],
      ['demo-user-2', 'How long should I rest between sets?'],
    ] as const) {
      const res = await fetch(`${apiUrl}/v1/chat`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model,
          subject,
          messages: [{ role: 'user', content: question }],
          options: { num_predict: 24 },
        }),
      });
      const body = (await res.json()) as {
        version?: string;
        alias?: string;
        message?: { content: string };
        latencyMs?: number;
        error?: { message: string };
      };
      out(`  user       ${question}`);
      if (!res.ok) {
        out(`  (HTTP ${res.status}: ${body.error?.message ?? 'error'})`);
        continue;
      }
      out(`  ${body.version} (${body.alias}, ${body.latencyMs} ms): ${JSON.stringify(body.message?.content)}`);
    }
    out(
      '  (the tiny model has random weights and a few dozen training steps: its answers are noise, its plumbing is not)',
    );
  } finally {
    await revokeApiKey(db, id);
  }
}
