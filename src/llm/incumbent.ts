import { setTimeout as sleep } from 'node:timers/promises';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import type { ChatMessage } from '../domain/conversation';
import type { IncumbentConfig } from '../domain/model-config';
import { Deadline } from './deadline';
import type { ChatChunk, ChatRequest, ChatResult } from './ollama';

/**
 * The app's hosted model (its incumbent), through its OpenAI-compatible endpoint, with the official `openai`
 * client. We retry connection errors, 408, 409, 429 and 5xx ourselves (the SDK's own retries would wait out a
 * Retry-After past the call's budget): after the provider's Retry-After or a jittered backoff, as long as the wait
 * fits in what is left of `timeoutMs`, which bounds the whole call (to the first chunk, for a stream). A wait that
 * does not fit ends the call at once with the provider's error, Retry-After included.
 *
 * The key is read from the environment variable the config names, when a client is made, and lives only inside
 * that client: every error message that leaves this module has it cut out, whatever the provider echoed.
 */

export type IncumbentFailure = 'timeout' | 'rate_limited' | 'unavailable' | 'refused' | 'misconfigured';

export class IncumbentError extends Error {
  override readonly name = 'IncumbentError';
  constructor(
    readonly kind: IncumbentFailure,
    message: string,
    /** The provider's upstream status, 0 when there was no answer. */
    readonly status: number,
    /** Seconds the provider asked us to wait (429, 503), when it said. */
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

export interface IncumbentClientOptions {
  /** Where keys are read (process.env by default). */
  env?: NodeJS.ProcessEnv;
}

export class IncumbentClient {
  readonly model: string;
  private readonly client: OpenAI;
  private readonly secret: string | null;
  private readonly budgetMs: number;

  constructor(
    readonly config: IncumbentConfig,
    opts: IncumbentClientOptions = {},
  ) {
    const env = opts.env ?? process.env;
    const key = config.apiKeyEnv ? env[config.apiKeyEnv] : undefined;
    if (config.apiKeyEnv && !key) {
      throw new IncumbentError(
        'misconfigured',
        `the incumbent's key is not set: environment variable ${config.apiKeyEnv} is empty or missing`,
        0,
      );
    }
    this.secret = key ?? null;
    this.model = config.model;
    this.budgetMs = config.timeoutMs;
    this.client = new OpenAI({
      apiKey: key ?? 'none',
      baseURL: config.baseUrl,
      maxRetries: 0,
      timeout: config.timeoutMs,
      // The SDK's own logging stays off whatever OPENAI_LOG says: it would print request headers.
      logLevel: 'off',
    });
  }

  /** One answer. */
  async chat(req: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
    const budget = new Deadline(signal, this.budgetMs);
    try {
      const r = await this.withRetries(budget, () =>
        this.client.chat.completions.create({ ...this.params(req), stream: false }, { signal: budget.signal }),
      );
      const choice = r.choices[0];
      return {
        content: choice?.message?.content ?? '',
        done: true,
        doneReason: choice?.finish_reason ?? null,
        promptTokens: r.usage?.prompt_tokens ?? null,
        completionTokens: r.usage?.completion_tokens ?? null,
        totalDurationNs: null,
      };
    } catch (err) {
      throw this.failure(err, budget, signal);
    } finally {
      budget.end();
    }
  }

  /** The answer as chunks; the last has `done` with the finish reason and usage. */
  async *chatStream(req: ChatRequest, signal: AbortSignal): AsyncGenerator<ChatChunk> {
    const budget = new Deadline(signal, this.budgetMs);
    let stream;
    try {
      stream = await this.withRetries(budget, () =>
        this.client.chat.completions.create(
          { ...this.params(req), stream: true, stream_options: { include_usage: true } },
          { signal: budget.signal },
        ),
      );
    } catch (err) {
      budget.end();
      throw this.failure(err, budget, signal);
    }
    let finish: string | null = null;
    let usage: { prompt_tokens?: number; completion_tokens?: number } | null = null;
    let first = true;
    try {
      for await (const chunk of stream) {
        if (first) {
          budget.end(); // the budget is to the first chunk; then only the caller's signal ends it
          first = false;
        }
        if (chunk.usage) usage = chunk.usage;
        const choice = chunk.choices[0];
        if (choice?.finish_reason) finish = choice.finish_reason;
        const content = choice?.delta?.content;
        if (content) yield { content, done: false };
      }
    } catch (err) {
      throw this.failure(err, budget, signal);
    } finally {
      budget.end();
    }
    yield {
      content: '',
      done: true,
      doneReason: finish,
      promptTokens: usage?.prompt_tokens ?? null,
      completionTokens: usage?.completion_tokens ?? null,
    };
  }

  /** `call`, tried again on a retryable failure while the wait fits in the budget. */
  private async withRetries<T>(budget: Deadline, call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (budget.signal.aborted || attempt >= this.config.maxRetries || !retryable(err)) throw err;
        const asked = err instanceof APIError ? retryAfterS(err.headers) : undefined;
        const waitMs =
          asked !== undefined ? asked * 1000 : Math.min(8_000, 500 * 2 ** attempt) * (0.75 + Math.random() / 2);
        if (waitMs >= budget.remainingMs()) throw err;
        await sleep(waitMs, undefined, { signal: budget.signal }).catch(() => {
          throw err;
        });
      }
    }
  }

  private params(req: ChatRequest) {
    const o = req.options ?? {};
    const format = req.format;
    return {
      model: this.model,
      messages: req.messages.map((m: ChatMessage) => ({ role: m.role, content: m.content })),
      ...(o.temperature !== undefined ? { temperature: o.temperature } : {}),
      ...(o.top_p !== undefined ? { top_p: o.top_p } : {}),
      ...(o.seed !== undefined ? { seed: o.seed } : {}),
      ...(o.num_predict !== undefined ? { max_tokens: o.num_predict } : {}),
      ...(o.stop?.length ? { stop: o.stop } : {}),
      ...(o.presence_penalty !== undefined ? { presence_penalty: o.presence_penalty } : {}),
      ...(o.frequency_penalty !== undefined ? { frequency_penalty: o.frequency_penalty } : {}),
      ...(format === 'json'
        ? { response_format: { type: 'json_object' as const } }
        : format
          ? { response_format: { type: 'json_schema' as const, json_schema: { name: 'answer', schema: format } } }
          : {}),
    };
  }

  /** Any error as an IncumbentError whose message names no secret. */
  private failure(err: unknown, budget: Deadline, caller: AbortSignal): unknown {
    if (caller.aborted) return err; // the caller went away: nothing to report
    const clean = (s: string) => (this.secret ? s.split(this.secret).join('[redacted]') : s);
    // The budget ran out (our abort, or the SDK's own per-request timeout).
    if (budget.expired || err instanceof APIConnectionTimeoutError || err instanceof APIUserAbortError) {
      return new IncumbentError('timeout', `the incumbent did not answer within ${this.budgetMs} ms`, 0);
    }
    if (err instanceof APIError && err.status !== undefined) {
      const status = err.status;
      const retryAfter = retryAfterS(err.headers);
      const what = clean(`the incumbent answered HTTP ${status}: ${err.message}`).slice(0, 500);
      if (status === 429) return new IncumbentError('rate_limited', what, status, retryAfter);
      if (status === 401 || status === 403) return new IncumbentError('misconfigured', what, status);
      if (status === 400 || status === 404 || status === 422) return new IncumbentError('refused', what, status);
      return new IncumbentError('unavailable', what, status, retryAfter);
    }
    if (err instanceof APIConnectionError || err instanceof APIError) {
      return new IncumbentError('unavailable', clean(`the incumbent could not be reached: ${err.message}`), 0);
    }
    return new IncumbentError('unavailable', clean(`the incumbent failed: ${(err as Error)?.message ?? err}`), 0);
  }
}

/** What the provider may answer differently a moment later: no answer, 408, 409, 429, 5xx. */
function retryable(err: unknown): boolean {
  if (err instanceof APIUserAbortError) return false;
  if (err instanceof APIConnectionError) return true;
  if (!(err instanceof APIError) || err.status === undefined) return false;
  return err.status === 408 || err.status === 409 || err.status === 429 || err.status >= 500;
}

function retryAfterS(headers: Headers | undefined): number | undefined {
  const v = headers?.get('retry-after');
  if (!v) return undefined;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return Math.ceil(s);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/**
 * Incumbent clients by model, made again when the model's config (or its key variable's value) changes, so that a
 * `models put` or a rotated key takes effect without a restart.
 */
export class IncumbentClients {
  private readonly clients = new Map<string, { fingerprint: string; client: IncumbentClient }>();
  constructor(private readonly opts: IncumbentClientOptions = {}) {}

  get(model: string, config: IncumbentConfig): IncumbentClient {
    const env = this.opts.env ?? process.env;
    const key = config.apiKeyEnv ? (env[config.apiKeyEnv] ?? '') : '';
    // The key's value is compared in memory only (a rotated key makes a new client); it is never stored elsewhere.
    const fingerprint = JSON.stringify(config) + '\u0000' + key;
    const hit = this.clients.get(model);
    if (hit && hit.fingerprint === fingerprint) return hit.client;
    const client = new IncumbentClient(config, this.opts);
    this.clients.set(model, { fingerprint, client });
    return client;
  }
}
