/**
 * The OpenAI-compatible gateway's own cost, against calling the upstream directly and against the LiteLLM proxy in
 * front of the same upstream, side by side in one run:
 *
 *   npm run bench:gateway -- [--rates 50,200,1000] [--seconds 10] [--ttft 200] [--targets direct,tuneloop,litellm]
 *                            [--profile DIR]
 *
 * - The upstream is a minimal OpenAI-compatible responder (bench/lib/openai-responder.ts) that answers at once, in
 *   a process of its own, so only the gateways' cost shows.
 * - tuneloop: `tuneloop api` in its own process, the model's production being its incumbent (the responder), every
 *   call recorded as in production (interaction and call rows in an embedded PostgreSQL, batched off the response
 *   path), fair-use limits raised out of the way.
 * - LiteLLM: its proxy (PyPI, pinned in scripts/versions.sh) with one model routed to the responder, one worker, no
 *   database (so no spend logs: less work than tuneloop's recording).
 * - Open-loop load at each rate for N seconds: requests leave on schedule whether or not earlier ones have come back,
 *   and latency counts from the scheduled time (no coordinated omission). Added latency is each target's quantile
 *   minus the direct one's at the same rate.
 * - Streaming: N sequential streamed calls each way, time to the first content chunk.
 *
 * `--profile DIR` writes a V8 CPU profile of `tuneloop api` there (open it in Chrome's DevTools).
 *
 * Prints tables and writes bench/results/gateway.json.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { createApiKey } from '../src/api/auth';
import { REPO_ROOT } from '../src/config';
import { migrateToLatest } from '../src/db/migrate';
import { createDb } from '../src/db/pool';
import { upsertModel } from '../src/db/queries/models';
import { modelDefinitionSchema } from '../src/domain/model-config';
import { startEmbeddedPostgres } from '../src/embedded/embedded-postgres';
import { createLogger } from '../src/log';
import { freePort } from '../tests/helpers/ports';
import { pinnedVersion } from '../tests/helpers/versions';
import { runBench, writeResults } from './lib/results';
import { ms, quantile } from './lib/tiny-ollama';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '50,200,1000' },
    seconds: { type: 'string', default: '10' },
    ttft: { type: 'string', default: '200' },
    targets: { type: 'string', default: 'direct,tuneloop,litellm' },
    profile: { type: 'string' },
  },
});
const RATES = values.rates.split(',').map(Number);
const SECONDS = Number(values.seconds);
const TTFT_CALLS = Number(values.ttft);
const TARGETS = new Set(values.targets.split(','));
if (!TARGETS.has('direct')) throw new Error('--targets must include direct: added latency is measured against it');
const log = createLogger('warn');
const BODY = (i: number, stream = false) =>
  JSON.stringify({
    model: 'fitcoach',
    messages: [{ role: 'user', content: 'What should I do for squats on Monday?' }],
    max_tokens: 8,
    user: `user-${i % 100}`,
    ...(stream ? { stream: true } : {}),
  });

interface Target {
  name: string;
  origin: string;
  path: string;
  key: string;
}

async function waitFor(url: string, what: string, init?: RequestInit) {
  for (let i = 0; ; i++) {
    const ok = await fetch(url, init).then(
      (r) => r.status < 500,
      () => false,
    );
    if (ok) return;
    if (i > 600) throw new Error(`${what} did not come up`);
    await sleep(100);
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
  });
}

/** Open-loop load: `rate` requests a second for `seconds`, latency from each request's scheduled time. */
async function openLoop(pool: Pool, t: Target, rate: number, seconds: number) {
  const total = Math.round(rate * seconds);
  const latencies: number[] = [];
  let errors = 0;
  const inflight: Promise<void>[] = [];
  const t0 = performance.now() + 50;
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait); // never early: latency counts from the scheduled time
    inflight.push(
      pool
        .request({
          path: t.path,
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
          body: BODY(i),
          headersTimeout: 30_000,
          bodyTimeout: 30_000,
        })
        .then(async (res) => {
          await res.body.arrayBuffer();
          if (res.statusCode !== 200) errors++;
          else latencies.push(performance.now() - due);
        })
        .catch(() => {
          errors++;
        }),
    );
  }
  await Promise.all(inflight);
  const elapsed = (performance.now() - t0) / 1000;
  return {
    target: t.name,
    rate,
    sent: total,
    ok: latencies.length,
    errors,
    achieved: latencies.length / elapsed,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: Math.max(...latencies),
  };
}

/** Time to the first content chunk of a streamed answer. */
async function firstToken(pool: Pool, t: Target, i: number): Promise<number> {
  const start = performance.now();
  const res = await pool.request({
    path: t.path,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${t.key}` },
    body: BODY(i, true),
  });
  if (res.statusCode !== 200) throw new Error(`${t.name}: HTTP ${res.statusCode}`);
  let seen = '';
  let at: number | null = null;
  for await (const part of res.body) {
    seen += Buffer.from(part as Buffer).toString('utf8');
    if (at === null && /"content":"[^"]/.test(seen)) at = performance.now() - start;
  }
  if (at === null) throw new Error(`${t.name}: no content in the stream`);
  return at;
}

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-gateway-'));
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    await chmod(dir, 0o755);
    // ---- the upstream, in its own process
    const upstreamPort = await freePort();
    const upstream = fork(path.join(REPO_ROOT, 'bench/lib/openai-responder.ts'), [String(upstreamPort)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    cleanup.push(() => stop(upstream));
    const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
    await waitFor(`${upstreamUrl}/v1/chat/completions`, 'the responder', { method: 'POST', body: BODY(0) });

    // ---- tuneloop: PostgreSQL, the model (its incumbent is the responder), `tuneloop api`
    const pg = await startEmbeddedPostgres({ dir: path.join(dir, 'pg'), port: await freePort(), log });
    cleanup.push(() => pg.stop());
    const db = createDb(pg.url, log);
    cleanup.push(() => db.destroy());
    await migrateToLatest(db);
    const def = modelDefinitionSchema.parse({
      id: 'fitcoach',
      app: 'fitcoach-app',
      baseModel: 'tiny',
      taskFormat: 'chat',
      config: {
        incumbent: {
          baseUrl: `${upstreamUrl}/v1`,
          model: 'bench-upstream',
          apiKeyEnv: 'BENCH_UPSTREAM_KEY',
          maxRetries: 0,
        },
      },
    });
    await upsertModel(db, def);
    const { key } = await createApiKey(db, { name: 'bench', role: 'app', appId: def.app, models: [def.id] });
    const apiPort = await freePort();
    const api = fork(path.join(REPO_ROOT, 'bin/tuneloop'), ['api'], {
      env: {
        ...process.env,
        TUNELOOP_HOME: path.join(dir, 'home'),
        DATABASE_URL: pg.url,
        OLLAMA_HOST: `http://127.0.0.1:${await freePort()}`, // nothing local serves: production is the incumbent
        TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`, // chat never needs the workflow engine
        TUNELOOP_API_PORT: String(apiPort),
        TUNELOOP_LIMIT_KEY_RPS: '1000000',
        TUNELOOP_LIMIT_KEY_BURST: '1000000',
        TUNELOOP_LIMIT_KEY_CONCURRENCY: '100000',
        TUNELOOP_LIMIT_MODEL_CONCURRENCY: '100000',
        BENCH_UPSTREAM_KEY: 'sk-bench-upstream',
        LOG_LEVEL: 'warn',
        ...(values.profile
          ? {
              NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --cpu-prof --cpu-prof-dir=${path.resolve(values.profile)}`,
            }
          : {}),
      },
      stdio: 'inherit',
    });
    cleanup.push(() => stop(api));
    const apiUrl = `http://127.0.0.1:${apiPort}`;
    await waitFor(`${apiUrl}/healthz`, 'the API');

    // ---- LiteLLM's proxy, one model routed to the responder
    let litellmUrl = '';
    if (TARGETS.has('litellm')) {
      const litellmPort = await freePort();
      const cfg = path.join(dir, 'litellm.yaml');
      await writeFile(
        cfg,
        [
          'model_list:',
          '  - model_name: fitcoach',
          '    litellm_params:',
          '      model: openai/bench-upstream',
          `      api_base: ${upstreamUrl}/v1`,
          '      api_key: sk-bench-upstream',
          'general_settings:',
          '  master_key: sk-litellm-bench',
          'litellm_settings:',
          '  drop_params: false',
          '',
        ].join('\n'),
      );
      const litellm = spawn(
        path.join(REPO_ROOT, '.tools/py-litellm/bin/python'),
        ['-m', 'litellm.proxy.proxy_cli', '--config', cfg, '--port', String(litellmPort), '--num_workers', '1'],
        {
          stdio: ['ignore', 'ignore', 'inherit'],
          env: { ...process.env, LITELLM_LOG: 'ERROR', LITELLM_TELEMETRY: 'False' },
        },
      );
      cleanup.push(() => stop(litellm));
      litellmUrl = `http://127.0.0.1:${litellmPort}`;
      await waitFor(`${litellmUrl}/health/liveliness`, 'LiteLLM');
    }

    const targets: Target[] = [
      { name: 'direct', origin: upstreamUrl, path: '/v1/chat/completions', key: 'sk-bench-upstream' },
      { name: 'tuneloop', origin: apiUrl, path: '/openai/v1/chat/completions', key },
      { name: 'litellm', origin: litellmUrl, path: '/v1/chat/completions', key: 'sk-litellm-bench' },
    ].filter((t) => TARGETS.has(t.name));
    const pools = new Map(targets.map((t) => [t.name, new Pool(t.origin, { connections: 512, pipelining: 1 })]));
    cleanup.push(async () => Promise.all([...pools.values()].map((p) => p.close())));

    // ---- warm-up: connections open, caches filled, each side's first-call costs paid
    for (const t of targets) await openLoop(pools.get(t.name)!, t, 50, 3);

    // ---- open-loop rates, targets interleaved per rate
    const rows: Awaited<ReturnType<typeof openLoop>>[] = [];
    for (const rate of RATES) {
      for (const t of targets) {
        rows.push(await openLoop(pools.get(t.name)!, t, rate, SECONDS));
        await sleep(1_000);
      }
    }
    const added = rows
      .filter((r) => r.target !== 'direct')
      .map((r) => {
        const d = rows.find((x) => x.target === 'direct' && x.rate === r.rate)!;
        return { target: r.target, rate: r.rate, added_p50: ms(r.p50 - d.p50), added_p99: ms(r.p99 - d.p99) };
      });

    // ---- time to first token, streamed, sequential, alternating the order
    const ttft: Record<string, number[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
    for (let i = 0; i < TTFT_CALLS; i++) {
      const order = i % 2 ? [...targets].reverse() : targets;
      for (const t of order) ttft[t.name]!.push(await firstToken(pools.get(t.name)!, t, i));
    }
    const ttftRows = targets.map((t) => ({
      target: t.name,
      p50: ms(quantile(ttft[t.name]!, 0.5)),
      p99: ms(quantile(ttft[t.name]!, 0.99)),
      added_p50: ms(quantile(ttft[t.name]!, 0.5) - quantile(ttft.direct!, 0.5)),
    }));

    const table = rows.map((r) => ({
      target: r.target,
      rate: r.rate,
      achieved: Math.round(r.achieved),
      errors: r.errors,
      p50: ms(r.p50),
      p99: ms(r.p99),
      max: ms(r.max),
    }));
    console.table(table);
    console.table(added);
    console.table(ttftRows);
    const recorded = await db.selectFrom('serving_calls').select(db.fn.countAll<string>().as('n')).executeTakeFirst();
    const out = {
      bench: 'gateway',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model,
        node: process.version,
        memGiB: Math.round(os.totalmem() / 2 ** 30),
      },
      settings: {
        rates: RATES,
        seconds: SECONDS,
        ttftCalls: TTFT_CALLS,
        litellm: pinnedVersion('LITELLM_VERSION'),
      },
      load: table,
      added,
      ttft: ttftRows,
      tuneloopCallsRecorded: Number(recorded?.n ?? 0),
    };
    await writeResults('gateway', out);
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
