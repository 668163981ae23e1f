import { performance } from 'node:perf_hooks';
import type { Db } from '../db/pool';
import { insertDroppedShadow, insertShadowPair } from '../db/queries/shadow';
import type { ChatMessage } from '../domain/conversation';
import { Deadline } from '../llm/deadline';
import type { ChatRequest, OllamaClient } from '../llm/ollama';
import type { Logger } from '../log';
import type { ServingRecorder } from './serving';

/** A production answer the candidate is to answer too, in the background. */
export interface ShadowJob {
  model: string;
  versionId: string;
  tag: string;
  interactionId: string;
  /** What production was asked (system prompt, format and options included). */
  request: Omit<ChatRequest, 'model'>;
  /** The conversation as the app sent it (what the judge sees). */
  messages: ChatMessage[];
  productionAnswer: string;
  productionLatencyMs: number;
  maxInFlight: number;
  timeoutMs: number;
}

/**
 * The shadow stage's work in the API: the candidate answers a sample of production's calls in the background, on
 * the canary's Ollama, after the caller has its answer: never shown, never on the caller's path. At most
 * `maxInFlight` of a model's candidate calls run at once; a call beyond is dropped and counted (a row with no
 * text), so a slow candidate costs bounded memory and no latency. Each pair is written once its interaction is
 * (the recorder is flushed first), hanging off it so an erasure takes both.
 */
export class ShadowRunner {
  private readonly inFlight = new Map<string, number>();
  private readonly running = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private closed = false;

  constructor(
    private readonly db: Db,
    private readonly candidateOllama: OllamaClient,
    private readonly recorder: ServingRecorder,
    private readonly log: Logger,
  ) {}

  /** Told of each call dropped (the API's metrics). */
  readonly dropObservers: ((model: string) => void)[] = [];

  offer(job: ShadowJob): void {
    if (this.closed) return;
    const n = this.inFlight.get(job.model) ?? 0;
    if (n >= job.maxInFlight) {
      for (const observe of this.dropObservers) observe(job.model);
      this.track(
        insertDroppedShadow(this.db, job.model, job.versionId).catch((err: unknown) =>
          this.log.warn({ model: job.model, err: (err as Error).message }, 'a dropped shadow call was not counted'),
        ),
      );
      return;
    }
    this.inFlight.set(job.model, n + 1);
    this.track(
      this.run(job).finally(() => {
        const left = (this.inFlight.get(job.model) ?? 1) - 1;
        if (left > 0) this.inFlight.set(job.model, left);
        else this.inFlight.delete(job.model);
      }),
    );
  }

  /** Waits for the candidate calls in flight (at most `waitMs`), then abandons what is left. */
  async close(waitMs = 5_000): Promise<void> {
    this.closed = true;
    const all = Promise.allSettled([...this.running]);
    const timer = setTimeout(() => this.stop.abort(), waitMs);
    await all;
    clearTimeout(timer);
  }

  private track(p: Promise<void>) {
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
  }

  private async run(job: ShadowJob): Promise<void> {
    const t0 = performance.now();
    const deadline = new Deadline(this.stop.signal, job.timeoutMs);
    let answer: string | null = null;
    let error: string | null = null;
    try {
      answer = (await this.candidateOllama.chat({ model: job.tag, ...job.request }, deadline.signal)).content;
    } catch (err) {
      if (this.stop.signal.aborted) return; // shutting down: not the candidate's failure
      error = deadline.expired ? `no answer within ${job.timeoutMs} ms` : (err as Error).message;
    } finally {
      deadline.end();
    }
    const candidateLatencyMs = performance.now() - t0;
    try {
      await this.recorder.flush(); // the interaction first: the pair hangs off it
      const written = await insertShadowPair(this.db, {
        model: job.model,
        versionId: job.versionId,
        interactionId: job.interactionId,
        status: error === null ? 'answered' : 'failed',
        messages: job.messages,
        productionAnswer: job.productionAnswer,
        candidateAnswer: answer,
        productionLatencyMs: job.productionLatencyMs,
        candidateLatencyMs: error === null ? candidateLatencyMs : null,
        error: error?.slice(0, 500) ?? null,
      });
      if (!written) await insertDroppedShadow(this.db, job.model, job.versionId);
    } catch (err) {
      this.log.warn({ model: job.model, err: (err as Error).message }, 'a shadow pair was not recorded');
    }
  }
}
