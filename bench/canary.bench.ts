/**
 * What serving a canary costs production, side by side in one run: both versions on one Ollama (the baseline) vs
 * the canary on a second Ollama reading the same models (what the chat API does):
 *
 *   npm run bench:canary -- [--calls 200]
 *
 * Ollama keeps one runner per weights file, and reloads it when a request for those weights asks for another
 * adapter or other runner options. The two versions here are the tiny model with two context lengths (a runner
 * option: the same reload a second adapter on the same base causes; the tiny model has no trained adapters to
 * import here). Calls go one at a time, as the chat API routes them: production's to production's Ollama, the
 * canary's to the canary's, in the order of a canary at 50 % (alternating) and at 5 % (one in twenty). Each call
 * generates 8 tokens, greedy. Prints a table and writes bench/results/canary.json.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { importModel } from '../src/llm/import';
import { GREEDY, OllamaClient } from '../src/llm/ollama';
import { createLogger } from '../src/log';
import { startOllama } from '../src/embedded/ollama-server';
import { freePort } from '../tests/helpers/ports';
import { runBench, writeResults } from './lib/results';
import { ms, quantile, stageTinyModel } from './lib/tiny-ollama';

const { values } = parseArgs({ options: { calls: { type: 'string', default: '200' } } });
const CALLS = Number(values.calls);
const log = createLogger('warn');
const OPTIONS = { ...GREEDY, num_predict: 8 };
const PRODUCTION = 'fitcoach:production';
const CANARY = 'fitcoach:canary';

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-canary-'));
  const cleanup: (() => Promise<unknown>)[] = [];
  try {
    const main = await startOllama({ dir: path.join(dir, 'ollama'), port: await freePort(), log });
    cleanup.push(() => main.stop());
    const reader = await startOllama({
      dir: path.join(dir, 'ollama'),
      port: await freePort(),
      log,
      readsModelsOf: true,
    });
    cleanup.push(() => reader.stop());
    const production = new OllamaClient(main.url);
    const canary = new OllamaClient(reader.url);
    cleanup.push(
      () => production.close(),
      () => canary.close(),
    );
    const plan = await stageTinyModel(dir, log);
    await importModel(production, plan, PRODUCTION, { parameters: { num_ctx: 1024 } });
    await importModel(production, plan, CANARY, { parameters: { num_ctx: 2048 } });

    const call = async (client: OllamaClient, model: string) => {
      const t0 = performance.now();
      await client.chat({ model, messages: [{ role: 'user', content: 'How many squats?' }], options: OPTIONS });
      return performance.now() - t0;
    };
    const setups = {
      'one Ollama for both (baseline)': { production, canary: production },
      'canary on its own Ollama (tuneloop)': { production, canary },
    };
    const rows = [];
    for (const [share, isCanary] of [
      ['50 %', (i: number) => i % 2 === 1],
      ['5 %', (i: number) => i % 20 === 19],
    ] as const) {
      for (const [setup, servers] of Object.entries(setups)) {
        // Warm both versions where they will be served, then time the sequence.
        await call(servers.canary, CANARY);
        await call(servers.production, PRODUCTION);
        const times = { production: [] as number[], canary: [] as number[] };
        for (let i = 0; i < CALLS; i++) {
          if (isCanary(i)) times.canary.push(await call(servers.canary, CANARY));
          else times.production.push(await call(servers.production, PRODUCTION));
        }
        const all = [...times.production, ...times.canary];
        rows.push({
          'canary share': share,
          setup,
          calls: all.length,
          p50_ms: ms(quantile(all, 0.5)),
          p95_ms: ms(quantile(all, 0.95)),
          production_p50_ms: ms(quantile(times.production, 0.5)),
          canary_p50_ms: ms(quantile(times.canary, 0.5)),
          mean_ms: ms(all.reduce((a, b) => a + b, 0) / all.length),
        });
      }
    }
    console.table(rows);
    const out = {
      bench: 'canary',
      at: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpu: os.cpus()[0]?.model,
        node: process.version,
        ollama: await production.version(),
      },
      settings: { calls: CALLS, numPredict: OPTIONS.num_predict, numCtx: { production: 1024, canary: 2048 } },
      rows,
    };
    await writeResults('canary', out);
  } finally {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
