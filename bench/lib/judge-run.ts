import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { judgeOf, judgeRequest, parseJudgement } from '../../src/activities/score';
import { pool } from '../../src/activities/concurrency';
import { readSampleInteractions } from '../../src/cli/demo-sample';
import type { ChatMessage } from '../../src/domain/conversation';
import { scoreConfigSchema } from '../../src/domain/model-config';
import { startOllama } from '../../src/embedded/ollama-server';
import { importModel } from '../../src/llm/import';
import { OllamaClient } from '../../src/llm/ollama';
import type { Logger } from '../../src/log';
import { freePort } from '../../tests/helpers/ports';
import { ms, quantile, stageBaseModel } from './tiny-ollama';

/**
 * Judge throughput: the score stage's judge (activities/score.ts judgeOf, its call pool, its parsing) against the
 * same requests sent straight to Ollama's /api/chat at the same concurrency — what the model server gives on its
 * own, the most a stage could get. The judge is SmolLM2-135M-Instruct (a real model: what it writes decides how
 * long a call takes), on an Ollama of its own that serves as many requests at once as the highest concurrency.
 * Greedy decoding: both sides get the same answers, so a gap between them is the stage's own cost.
 */

export interface JudgeFigures {
  side: 'ollama' | 'tuneloop';
  concurrency: number;
  rows: number;
  rowsPerS: number;
  p50Ms: number;
  p95Ms: number;
  /** Answers that were a valid 1–5 rating. */
  valid: number;
  /** Tokens the judge wrote per second, over all calls (Ollama's counts; the direct side only). */
  genTokensPerS: number | null;
}

export async function judgeThroughput(opts: {
  rows: number;
  concurrency: number[];
  log: Logger;
  onResult?: (f: JudgeFigures) => void;
}): Promise<JudgeFigures[]> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'bench-judge-'));
  const parallel = Math.max(...opts.concurrency);
  const saved = process.env.OLLAMA_NUM_PARALLEL;
  process.env.OLLAMA_NUM_PARALLEL = String(parallel);
  const server = await startOllama({ dir: path.join(dir, 'ollama'), port: await freePort(), log: opts.log });
  if (saved === undefined) delete process.env.OLLAMA_NUM_PARALLEL;
  else process.env.OLLAMA_NUM_PARALLEL = saved;
  const ollama = new OllamaClient(server.url, { timeoutMs: 600_000 });
  try {
    const tag = 'bench-judge:latest';
    await importModel(ollama, await stageBaseModel(dir, opts.log, 'demo'), tag);
    const cfg = scoreConfigSchema.parse({ judge: { provider: 'ollama', model: tag }, timeoutMs: 600_000 });
    const sample = sampleRows(opts.rows + parallel);
    const rows = sample.slice(0, opts.rows);
    const judge = judgeOf({ ollama }, cfg, null)!;
    // Before each timed run, rows it does not judge go through every slot: the model is loaded, and no slot holds
    // a prompt of the run in Ollama's prompt cache, whichever side ran before.
    const warm = () => Promise.all(sample.slice(opts.rows).map((r) => judge(r, new AbortController().signal)));

    const direct = async (messages: ChatMessage[]) => {
      const res = await fetch(`${server.url}/api/chat`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: tag, stream: false, ...judgeRequest(messages, cfg) }),
      });
      if (!res.ok) throw new Error(`ollama answered ${res.status}: ${await res.text()}`);
      const r = (await res.json()) as { message?: { content?: string }; eval_count?: number };
      return { valid: parseJudgement(r.message?.content ?? '') !== null, tokens: r.eval_count ?? 0 };
    };
    const sides = {
      ollama: direct,
      tuneloop: async (messages: ChatMessage[]) => ({
        valid: (await judge(messages, new AbortController().signal)) !== null,
        tokens: null,
      }),
    };

    const out: JudgeFigures[] = [];
    for (const [k, concurrency] of opts.concurrency.entries()) {
      // Each side first every other time: a drift of the machine does not favour one.
      const order = Object.entries(sides) as [JudgeFigures['side'], (typeof sides)['ollama']][];
      for (const [side, call] of k % 2 ? order.reverse() : order) {
        await warm();
        const latencies: number[] = [];
        let valid = 0;
        let tokens: number | null = 0;
        const t0 = performance.now();
        await pool(rows, concurrency, new AbortController(), async (messages) => {
          const t = performance.now();
          const r = await call(messages);
          latencies.push(performance.now() - t);
          if (r.valid) valid++;
          tokens = r.tokens === null || tokens === null ? null : tokens + r.tokens;
        });
        const seconds = (performance.now() - t0) / 1000;
        const f: JudgeFigures = {
          side,
          concurrency,
          rows: rows.length,
          rowsPerS: +(rows.length / seconds).toFixed(3),
          p50Ms: Math.round(ms(quantile(latencies, 0.5))),
          p95Ms: Math.round(ms(quantile(latencies, 0.95))),
          valid,
          genTokensPerS: tokens === null ? null : +((tokens as number) / seconds).toFixed(1),
        };
        opts.onResult?.(f);
        out.push(f);
      }
    }
    return out;
  } finally {
    await ollama.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The demo sample's conversations (real coaching exchanges), the first `n` of them (it has 100). */
function sampleRows(n: number): ChatMessage[][] {
  const sample = readSampleInteractions();
  if (n > sample.length) throw new Error(`the demo sample has ${sample.length} conversations, fewer than ${n}`);
  return sample.slice(0, n).map((s) => s.messages as ChatMessage[]);
}
