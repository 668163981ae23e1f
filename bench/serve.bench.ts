/**
 * The chat API's cost over calling Ollama directly, side by side in one run, with the same prompts:
 *
 *   npm run bench:serve -- [--requests 300] [--concurrency 32] [--seconds 15]
 *
 * - overhead: the same request, alternately through `POST /v1/chat` and straight to Ollama's `/api/chat`
 *   (non-streamed, greedy, a few tokens, the same rendered conversation): per pair, API latency minus Ollama's.
 * - first byte of a stream: `stream: true` both ways, time to the first byte of the body.
 * - throughput: 32 clients for N seconds, each way, requests/s and latency.
 *
 * Everything is real and local: an embedded PostgreSQL, the Ollama that scripts/setup.sh builds, serving the tiny
 * model, and the API as `tuneloop api` runs it, in a process of its own (the load generator does not share its
 * event loop). The API does all it does in production: authenticates the key, reads the routing (cached), calls
 * Ollama, and records the call and the interaction (batched, off the response path). Prints a table and writes
 * bench/results/serve.json.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApiKey } from '../src/api/auth';
import { REPO_ROOT } from '../src/config';
import { migrateToLatest } from '../src/db/migrate';
import { createDb } from '../src/db/pool';
import { upsertModel } from '../src/db/queries/models';
import { modelDefinitionSchema } from '../src/domain/model-config';
import { importModel } from '../src/llm/import';
import { GREEDY, OllamaClient } from '../src/llm/ollama';
import { createLogger } from '../src/log';
import { startEmbeddedPostgres } from '../src/embedded/embedded-postgres';
import { startOllama } from '../src/embedded/ollama-server';
import { TINY_BASE_MODEL } from '../src/embedded/base-models';
import { freePort } from '../tests/helpers/ports';
import { runBench, writeResults } from './lib/results';
import { ms, quantile, stageTinyModel } from './lib/tiny-ollama';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '32' },
    seconds: { type: 'string', default: '15' },
  },
});
const REQUESTS = Number(values.requests);
const CONCURRENCY = Number(values.concurrency);
const SECONDS = Number(values.seconds);
const log = createLogger('warn');
const SYSTEM = 'You are FitCoach, a friendly strength and conditioning coach. Keep answers short and safe.';
const PROMPTS = [
  'What should I do for squats on Monday?',
  'How many sets of lunges?',
  'Give me a 20 minute workout.',
  'Is it fine to run every day?',
  'How long should I rest between sets?',
  'Plank tips?',
];
const OPTIONS = { ...GREEDY, num_predict: 8 };

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-serve-'));
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    // ---- the stack
    await chmod(dir, 0o755); // the embedded server runs as the `postgres` OS user when we are root
    const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), log });
    cleanup.push(() => pg.stop());
    const ollamaServer = await startOllama({ dir: path.join(dir, 'ollama'), port: await freePort(), log });
    cleanup.push(() => ollamaServer.stop());
    const ollama = new OllamaClient(ollamaServer.url);
    const db = createDb(pg.url, log);
    cleanup.push(() => db.destroy());
    await migrateToLatest(db);
    const tag = 'fitcoach:bench';
    await importModel(ollama, await stageTinyModel(dir, log), tag);
    const def = modelDefinitionSchema.parse({
      id: 'fitcoach',
      app: 'fitcoach-app',
      baseModel: TINY_BASE_MODEL,
      taskFormat: 'chat',
      systemPrompt: SYSTEM,
    });
    await upsertModel(db, def);
    const v = await db
      .insertInto('model_versions')
      .values({ model_id: def.id, version: 'bench', status: 'production', ollama_tag: tag })
      .returning('id')
      .executeTakeFirstOrThrow();
    await db.insertInto('aliases').values({ model_id: def.id, name: 'production', version_id: v.id }).execute();
    const { key } = await createApiKey(db, { name: 'bench', role: 'app', appId: def.app, models: [def.id] });

    // ---- the API, as `tuneloop api` runs it
    const apiPort = await freePort();
    const api: ChildProcess = fork(path.join(REPO_ROOT, 'bin/tuneloop'), ['api'], {
      env: {
        ...process.env,
        TUNELOOP_HOME: path.join(dir, 'home'),
        DATABASE_URL: pg.url,
        OLLAMA_HOST: ollamaServer.url,
        TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, // chat never needs the workflow engine
        TUNELOOP_API_PORT: String(apiPort),
        LOG_LEVEL: 'warn',
      },
      stdio: 'inherit',
    });
    cleanup.push(async () => {
      api.kill('SIGTERM');
      await new Promise((r) => api.once('exit', r));
    });
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    for (let i = 0; ; i++) {
      if (
        await fetch(`${apiUrl}/healthz`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      if (i > 300) throw new Error('the API did not come up');
      await sleep(100);
    }

    const directWith = (system: string, content: string, stream = false) =>
      fetch(`${ollamaServer.url}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: tag,
          stream,
          messages: [
            { role: 'system', content: system },
            { role: 'user', content },
          ],
          options: OPTIONS,
        }),
      });
    const direct = (content: string, stream = false) => directWith(SYSTEM, content, stream);
    const viaApi = (content: string, subject: string, stream = false) =>
      fetch(`${apiUrl}/v1/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({
          model: def.id,
          subject,
          stream,
          messages: [{ role: 'user', content }],
          options: OPTIONS,
        }),
      });
    const timed = async (call: () => Promise<Response>) => {
      const t0 = performance.now();
      const res = await call();
      await res.arrayBuffer();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return performance.now() - t0;
    };
    const firstByte = async (call: () => Promise<Response>) => {
      const t0 = performance.now();
      const res = await call();
      const reader = res.body!.getReader();
      await reader.read();
      const t = performance.now() - t0;
      while (!(await reader.read()).done);
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      return t;
    };

    // ---- warm-up: model loaded, connections open, caches filled
    for (let i = 0; i < 20; i++) {
      await timed(() => direct(PROMPTS[i % PROMPTS.length]!));
      await timed(() => viaApi(PROMPTS[i % PROMPTS.length]!, `warm-${i}`));
    }

    // Ollama keeps the last prompt's KV cache and reuses its longest common prefix: a request right after the
    // same prompt skips most of its prompt evaluation. Before each timed call, an untimed request with another
    // system prompt puts the cache in the same state for both sides.
    const reset = () => timed(() => directWith('You are a strict librarian.', 'Quiet, please.'));

    // ---- added latency, non-streamed: pairs, alternating which goes first
    const pairs: { api: number; ollama: number }[] = [];
    for (let i = 0; i < REQUESTS; i++) {
      const prompt = PROMPTS[i % PROMPTS.length]!;
      const a = async () => (await reset(), timed(() => viaApi(prompt, `user-${i % 50}`)));
      const o = async () => (await reset(), timed(() => direct(prompt)));
      if (i % 2) pairs.push({ ollama: await o(), api: await a() });
      else pairs.push({ api: await a(), ollama: await o() });
    }

    // ---- first byte of a stream
    const ttfb: { api: number; ollama: number }[] = [];
    for (let i = 0; i < Math.min(REQUESTS, 200); i++) {
      const prompt = PROMPTS[i % PROMPTS.length]!;
      const a = async () => (await reset(), firstByte(() => viaApi(prompt, `user-${i % 50}`, true)));
      const o = async () => (await reset(), firstByte(() => direct(prompt, true)));
      if (i % 2) ttfb.push({ ollama: await o(), api: await a() });
      else ttfb.push({ api: await a(), ollama: await o() });
    }

    // ---- throughput with CONCURRENCY clients, each way
    const load = async (call: (i: number) => Promise<Response>) => {
      const latencies: number[] = [];
      let errors = 0;
      const until = performance.now() + SECONDS * 1000;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async (_, c) => {
          for (let i = 0; performance.now() < until; i++) {
            try {
              latencies.push(await timed(() => call(c * 1000 + i)));
            } catch {
              errors++;
            }
          }
        }),
      );
      return {
        requests: latencies.length,
        errors,
        perS: latencies.length / SECONDS,
        p50: quantile(latencies, 0.5),
        p99: quantile(latencies, 0.99),
      };
    };
    const loadOllama = await load((i) => direct(PROMPTS[i % PROMPTS.length]!));
    const loadApi = await load((i) => viaApi(PROMPTS[i % PROMPTS.length]!, `load-${i % 500}`));

    const rows = [summary('non-streamed latency (ms)', pairs), summary('stream first byte (ms)', ttfb)];
    const throughput = [
      { target: 'ollama direct', clients: CONCURRENCY, ...roundAll(loadOllama) },
      { target: 'tuneloop API', clients: CONCURRENCY, ...roundAll(loadApi) },
    ];
    console.table(rows);
    console.table(throughput);
    const out = {
      bench: 'serve',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model,
        node: process.version,
        ollama: await ollama.version(),
      },
      settings: { requests: REQUESTS, concurrency: CONCURRENCY, seconds: SECONDS, numPredict: OPTIONS.num_predict },
      latency: rows,
      throughput,
    };
    await writeResults('serve', out);
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** p50 of each side and of the per-pair difference (API minus Ollama), and the difference's p99. */
function summary(measure: string, pairs: { api: number; ollama: number }[]) {
  const added = pairs.map((p) => p.api - p.ollama);
  return {
    measure,
    ollama_p50: ms(
      quantile(
        pairs.map((p) => p.ollama),
        0.5,
      ),
    ),
    api_p50: ms(
      quantile(
        pairs.map((p) => p.api),
        0.5,
      ),
    ),
    added_p50: ms(quantile(added, 0.5)),
    added_p99: ms(quantile(added, 0.99)),
  };
}

function roundAll(o: Record<string, number>) {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, ms(v)]));
}

runBench(main);
