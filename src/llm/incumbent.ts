import { setTimeout as sleep } from 'node:timers/promises';
import { createParser } from 'eventsource-parser';
import { Pool, type Dispatcher } from 'undici';
import type { ChatMessage } from '../domain/conversation';
import type { IncumbentConfig } from '../domain/model-config';
import { Deadline } from './deadline';
import type { ChatChunk, ChatRequest, ChatResult } from './ollama';

/**
 * The app's hosted model (its incumbent), through its OpenAI-compatible endpoint (`POST {baseUrl}/chat/completions`,
 * OpenAI's wire format, server-sent events for streams). The calls go through a pool of kept-alive connections with
 * undici's request API: the official `openai` client (which the gateway's tests use as the judge of our own
 * surface) did the same job at about three times our per-call cost on the gateway's path (bench:gateway).
 *
 * We retry connection errors, 408, 409, 429 and 5xx: after the provider's Retry-After or a jittered backoff, as long
 * as the wait fits in what is left of `timeoutMs`, which bounds the whole call (to the first chunk, for a stream). A
 * wait that does not fit ends the call at once with the provider's error, Retry-After included.
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

/** The provider answered with an error status. */
class StatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfterS: number | undefined,
  ) {
    super(message);
  }
}

/** No (complete) answer: refused, reset, cut, or not OpenAI's format. */
class ConnectionError extends Error {}

export interface IncumbentClientOptions {
  /** Where keys are read (process.env by default). */
  env?: NodeJS.ProcessEnv;
}

/** What an error body may say, at most. */
const MAX_ERROR_BODY = 64 * 1024;

export class IncumbentClient {
  readonly model: string;
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
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
    const url = new URL(config.baseUrl);
    this.pool = new Pool(url.origin, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
    this.path = `${url.pathname.replace(/\/+$/, '')}/chat/completions`;
    this.headers = {
      'content-type': 'application/json',
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    };
  }

  /** Closes the kept-alive connections once the calls in flight are over. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  /** One answer. */
  async chat(req: ChatRequest, signal: AbortSignal): Promise<ChatResult> {
    const budget = new Deadline(signal, this.budgetMs);
    try {
      const r = await this.withRetries(budget, async () => {
        const res = await this.post({ ...this.params(req), stream: false }, budget.signal);
        const text = await res.body.text().catch((err: unknown) => {
          if (budget.signal.aborted) throw err;
          throw new ConnectionError(causeOf(err)); // cut mid-answer: tried again like no answer
        });
        return parseCompletion(text);
      });
      const choice = r.choices?.[0];
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
    let res: Dispatcher.ResponseData;
    try {
      res = await this.withRetries(budget, () =>
        this.post(
          { ...this.params(req), stream: true, stream_options: { include_usage: true } },
          budget.signal,
          this.budgetMs, // after the first bytes, no wait between two chunks longer than the budget
        ),
      );
    } catch (err) {
      budget.end();
      throw this.failure(err, budget, signal);
    }
    let finish: string | null = null;
    let usage: Usage | null = null;
    let ended = false;
    try {
      if (!/^text\/event-stream/i.test(String(res.headers['content-type'] ?? ''))) {
        // A provider that answers a stream request with one JSON answer: its content as one chunk, read within the
        // budget.
        const r = parseCompletion(await res.body.text());
        budget.end();
        const content = r.choices?.[0]?.message?.content;
        if (content) yield { content, done: false };
        finish = r.choices?.[0]?.finish_reason ?? null;
        usage = r.usage ?? null;
        ended = true;
      } else {
        const events: string[] = [];
        const parser = createParser({ onEvent: (e) => events.push(e.data) });
        res.body.setEncoding('utf8');
        let first = true;
        for await (const piece of res.body as AsyncIterable<string>) {
          if (first) {
            budget.end(); // the budget is to the first bytes; then only the caller's signal ends the stream
            first = false;
          }
          parser.feed(piece);
          for (const data of events.splice(0)) {
            if (data === '[DONE]') {
              ended = true;
              continue;
            }
            const chunk = parseChunk(data);
            if (chunk.usage) usage = chunk.usage;
            const choice = chunk.choices?.[0];
            if (choice?.finish_reason) finish = choice.finish_reason;
            const content = choice?.delta?.content;
            if (content) yield { content, done: false };
          }
        }
      }
      if (!ended && finish === null) throw new ConnectionError('the stream ended before the answer did');
    } catch (err) {
      throw this.failure(err, budget, signal);
    } finally {
      budget.end();
      res.body.destroy();
    }
    yield {
      content: '',
      done: true,
      doneReason: finish,
      promptTokens: usage?.prompt_tokens ?? null,
      completionTokens: usage?.completion_tokens ?? null,
    };
  }

  /** The request; any status but 2xx as a StatusError, no answer as a ConnectionError. */
  private async post(body: unknown, signal: AbortSignal, idleMs = 0): Promise<Dispatcher.ResponseData> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.pool.request({
        path: this.path,
        method: 'POST',
        headers: this.headers,
        body: JSON.stringify(body),
        signal,
        // The budget (the signal) bounds the wait for an answer; a stream's body is bounded by idleMs between chunks.
        headersTimeout: 0,
        bodyTimeout: idleMs,
      });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new ConnectionError(causeOf(err));
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res;
    const text = await readAtMost(res.body, MAX_ERROR_BODY).catch(() => '');
    throw new StatusError(res.statusCode, `${res.statusCode} ${errorMessage(text)}`, retryAfterS(res.headers));
  }

  /** `call`, tried again on a retryable failure while the wait fits in the budget. */
  private async withRetries<T>(budget: Deadline, call: () => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (budget.signal.aborted || attempt >= this.config.maxRetries || !retryable(err)) throw err;
        const asked = err instanceof StatusError ? err.retryAfterS : undefined;
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
    if (budget.expired) {
      return new IncumbentError('timeout', `the incumbent did not answer within ${this.budgetMs} ms`, 0);
    }
    if (err instanceof StatusError) {
      const status = err.status;
      const what = clean(`the incumbent answered HTTP ${status}: ${err.message}`).slice(0, 500);
      if (status === 429) return new IncumbentError('rate_limited', what, status, err.retryAfterS);
      if (status === 401 || status === 403) return new IncumbentError('misconfigured', what, status);
      if (status === 400 || status === 404 || status === 422) return new IncumbentError('refused', what, status);
      return new IncumbentError('unavailable', what, status, err.retryAfterS);
    }
    if (err instanceof ConnectionError) {
      return new IncumbentError('unavailable', clean(`the incumbent could not be reached: ${err.message}`), 0);
    }
    return new IncumbentError('unavailable', clean(`the incumbent failed: ${causeOf(err)}`), 0);
  }
}

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

interface Completion {
  choices?: { message?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: Usage | null;
}

interface CompletionChunk {
  choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
  usage?: Usage | null;
}

function parseCompletion(text: string): Completion {
  const r = parseJson(text) as Completion & { error?: unknown };
  if (r.error) throw new ConnectionError(`the incumbent answered an error: ${errorMessage(text)}`);
  if (!Array.isArray(r.choices)) throw new ConnectionError("the incumbent's answer has no choices");
  return r;
}

function parseChunk(data: string): CompletionChunk {
  const r = parseJson(data) as CompletionChunk & { error?: unknown };
  // Providers report a failure mid-stream as an event with an error.
  if (r.error) throw new ConnectionError(`the incumbent's stream broke off: ${errorMessage(data)}`);
  return r;
}

function parseJson(text: string): unknown {
  try {
    const v: unknown = JSON.parse(text);
    if (v && typeof v === 'object') return v;
  } catch {
    // below
  }
  // Its text is the model's words about the conversation: never in an error (logs, histories).
  throw new ConnectionError(`the incumbent's answer is not OpenAI's format (${text.length} characters)`);
}

/** An error body's message: OpenAI's `{error: {message}}` (or a list of them, as some providers send), or the text. */
function errorMessage(text: string): string {
  try {
    const v = JSON.parse(text) as unknown;
    const e = (Array.isArray(v) ? v[0] : v) as { error?: { message?: unknown } | string; message?: unknown } | null;
    const m = typeof e?.error === 'string' ? e.error : (e?.error?.message ?? e?.message);
    if (typeof m === 'string' && m) return m;
  } catch {
    // not JSON: the text itself
  }
  return text.trim() ? `(${text.length} characters, not OpenAI's error format)` : '(no message)';
}

async function readAtMost(body: Dispatcher.ResponseData['body'], max: number): Promise<string> {
  let text = '';
  body.setEncoding('utf8');
  for await (const piece of body as AsyncIterable<string>) {
    text += piece;
    if (text.length >= max) {
      body.destroy();
      break;
    }
  }
  return text.slice(0, max);
}

function causeOf(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause as { message?: string; code?: string } | undefined;
  return cause?.message ?? (err as Error & { code?: string }).code ?? err.message;
}

/** What the provider may answer differently a moment later: no answer, 408, 409, 429, 5xx. */
function retryable(err: unknown): boolean {
  if (err instanceof ConnectionError) return true;
  if (!(err instanceof StatusError)) return false;
  return err.status === 408 || err.status === 409 || err.status === 429 || err.status >= 500;
}

function retryAfterS(headers: Dispatcher.ResponseData['headers']): number | undefined {
  const raw = headers['retry-after'];
  const v = Array.isArray(raw) ? raw[0] : raw;
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
    void hit?.client.close().catch(() => undefined); // its calls in flight finish first
    return client;
  }
}
