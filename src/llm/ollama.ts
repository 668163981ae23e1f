import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { ChatMessage } from '../domain/conversation';

/**
 * The Ollama HTTP API, as tuneloop uses it: chat (plain, structured, streamed), model import from local files
 * (blobs, then create), copy and delete of tags.
 *
 * Our own thin client rather than the `ollama` npm package: that package cannot upload blobs or send `files` to
 * create (so it cannot import a local model), and it cancels requests only all at once per client, where the API
 * must abort exactly the generation whose caller went away. Every call here takes an AbortSignal.
 */

export interface ChatOptions {
  temperature?: number;
  top_k?: number;
  top_p?: number;
  seed?: number;
  num_predict?: number;
  repeat_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  stop?: string[];
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  /** A JSON schema (structured output) or 'json'. */
  format?: Record<string, unknown> | 'json';
  options?: ChatOptions;
  keepAlive?: string | number;
}

export interface ChatResult {
  content: string;
  /** false when Ollama cut the answer short on its own (it stops a piece repeated 30 times, answering 200). */
  done: boolean;
  doneReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  /** Ollama's own timings, nanoseconds. */
  totalDurationNs: number | null;
}

export interface ChatChunk {
  content: string;
  done: boolean;
  doneReason?: string | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
}

/** An answer from Ollama that was not a success. `status` 0: no answer at all (refused, reset, timed out). */
export class OllamaError extends Error {
  override readonly name = 'OllamaError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
  get unavailable() {
    return this.status === 0 || this.status === 502 || this.status === 503;
  }
  get notFound() {
    return this.status === 404;
  }
}

export interface OllamaClientOptions {
  /** Per-call timeout unless the call says otherwise. */
  timeoutMs?: number;
}

export class OllamaClient {
  readonly host: string;
  private readonly timeoutMs: number;
  /**
   * Chat goes through a pool of kept-alive connections with undici's request API: a quarter of a millisecond less
   * per call than fetch, which matters on the API's path. Everything else uses fetch.
   */
  private readonly pool: Pool;

  constructor(host: string, opts: OllamaClientOptions = {}) {
    this.host = host.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    this.pool = new Pool(this.host, { connections: 128, pipelining: 1, keepAliveTimeout: 30_000 });
  }

  /** Closes the kept-alive connections. */
  async close(): Promise<void> {
    await this.pool.close();
  }

  async version(signal?: AbortSignal): Promise<string> {
    const r = await this.request<{ version: string }>('GET', '/api/version', undefined, signal);
    return r.version;
  }

  /** Tags Ollama knows (`name:tag`). */
  async list(signal?: AbortSignal): Promise<{ name: string; digest: string; size: number }[]> {
    const r = await this.request<{ models: { name: string; digest: string; size: number }[] }>(
      'GET',
      '/api/tags',
      undefined,
      signal,
    );
    return r.models;
  }

  /** The model's details, or null when the tag does not exist. */
  async show(model: string, signal?: AbortSignal): Promise<Record<string, unknown> | null> {
    try {
      return await this.request<Record<string, unknown>>('POST', '/api/show', { model }, signal);
    } catch (err) {
      if (err instanceof OllamaError && err.notFound) return null;
      throw err;
    }
  }

  async hasBlob(digest: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.fetch('HEAD', `/api/blobs/${digest}`, undefined, signal);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await errorOf(res, `HEAD blob ${digest}`);
  }

  /** Uploads a local file as the blob `sha256:<hex>` (Ollama checks the digest) unless it is there already. */
  async pushBlob(digest: string, file: string, signal?: AbortSignal): Promise<'present' | 'uploaded'> {
    if (await this.hasBlob(digest, signal)) return 'present';
    const size = (await stat(file)).size;
    const body = Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>;
    // No overall time limit: a merged 8B model is 16 GB. The caller's signal (the activity's cancellation) ends it.
    const res = await this.fetch(
      'POST',
      `/api/blobs/${digest}`,
      body,
      signal,
      { 'content-length': String(size), 'content-type': 'application/octet-stream' },
      0,
    );
    if (res.status !== 200 && res.status !== 201) throw await errorOf(res, `upload of blob ${digest}`);
    await res.body?.cancel();
    return 'uploaded';
  }

  /**
   * Creates (or replaces) a tag from uploaded blobs: `files` are the model's (safetensors, config, tokenizer),
   * `adapters` a LoRA adapter's. Not streamed, so an error is an HTTP error rather than a line in a 200 answer.
   */
  async create(
    req: {
      model: string;
      files: Record<string, string>;
      adapters?: Record<string, string>;
      template?: string;
      system?: string;
      parameters?: Record<string, unknown>;
    },
    signal?: AbortSignal,
  ): Promise<void> {
    const r = await this.request<{ status?: string; error?: string }>(
      'POST',
      '/api/create',
      { ...req, stream: false },
      signal,
      10 * 60_000,
    );
    if (r.status !== 'success') throw new OllamaError(500, `create ${req.model}: ${r.error ?? JSON.stringify(r)}`);
  }

  /**
   * Loads a model into memory without generating, for the server's keep-alive unless `keepAlive` says otherwise
   * (0 unloads it instead). A model load may take a while (seconds for billions of parameters), hence its own
   * time limit.
   */
  async load(
    model: string,
    opts: { keepAlive?: string | number; signal?: AbortSignal; timeoutMs?: number } = {},
  ): Promise<void> {
    const body = { model, stream: false, ...(opts.keepAlive !== undefined ? { keep_alive: opts.keepAlive } : {}) };
    await this.request('POST', '/api/generate', body, opts.signal, opts.timeoutMs ?? this.timeoutMs);
  }

  /** The models loaded in memory now, by name. */
  async loaded(signal?: AbortSignal): Promise<string[]> {
    const r = await this.request<{ models?: { name: string }[] }>('GET', '/api/ps', undefined, signal);
    return (r.models ?? []).map((m) => m.name);
  }

  async copy(source: string, destination: string, signal?: AbortSignal): Promise<void> {
    await this.request('POST', '/api/copy', { source, destination }, signal);
  }

  /** Deletes a tag; false when there was none. */
  async delete(model: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.request('DELETE', '/api/delete', { model }, signal);
      return true;
    } catch (err) {
      if (err instanceof OllamaError && err.notFound) return false;
      throw err;
    }
  }

  async chat(req: ChatRequest, signal?: AbortSignal): Promise<ChatResult> {
    const res = await this.post('/api/chat', chatBody(req, false), signal, this.timeoutMs);
    const text = await res.body.text();
    if (res.statusCode >= 400) throw errorOfText(res.statusCode, text, `chat with ${req.model}`);
    const r = JSON.parse(text) as RawChat;
    return {
      content: r.message?.content ?? '',
      done: r.done === true,
      doneReason: r.done_reason ?? null,
      promptTokens: r.prompt_eval_count ?? null,
      completionTokens: r.eval_count ?? null,
      totalDurationNs: r.total_duration ?? null,
    };
  }

  /**
   * A streamed chat: the response's status is checked before the first chunk is yielded (so a missing model is an
   * OllamaError thrown by the first next()), then one chunk per line. Aborting the signal ends the generation.
   */
  async *chatStream(req: ChatRequest, signal?: AbortSignal): AsyncGenerator<ChatChunk> {
    // A model load may hold the first byte back; after it, each chunk must come within the same time.
    const res = await this.post('/api/chat', chatBody(req, true), signal, this.timeoutMs);
    if (res.statusCode >= 400) throw errorOfText(res.statusCode, await res.body.text(), `chat with ${req.model}`);
    let buffer = '';
    res.body.setEncoding('utf8');
    try {
      for await (const piece of res.body as AsyncIterable<string>) {
        buffer += piece;
        let nl: number;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          const r = JSON.parse(line) as RawChat & { error?: string };
          if (r.error) throw new OllamaError(500, `chat with ${req.model}: ${r.error}`);
          yield {
            content: r.message?.content ?? '',
            done: r.done === true,
            doneReason: r.done_reason ?? null,
            promptTokens: r.prompt_eval_count ?? null,
            completionTokens: r.eval_count ?? null,
          };
        }
      }
    } finally {
      res.body.destroy();
    }
  }

  private async post(pathname: string, body: unknown, signal: AbortSignal | undefined, timeoutMs: number) {
    try {
      return await this.pool.request({
        path: pathname,
        method: 'POST',
        headers: JSON_HEADERS,
        body: JSON.stringify(body),
        signal,
        // Headers may wait for a model to load; a stream's body may then take as long as the answer does.
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new OllamaError(0, `Ollama at ${this.host} did not answer POST ${pathname}: ${cause}`);
    }
  }

  private async request<T>(
    method: string,
    pathname: string,
    body: unknown,
    signal?: AbortSignal,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    const res = await this.fetch(
      method,
      pathname,
      body === undefined ? undefined : JSON.stringify(body),
      signal,
      JSON_HEADERS,
      timeoutMs,
    );
    if (!res.ok) throw await errorOf(res, `${method} ${pathname}`);
    const text = await res.text();
    return (text ? JSON.parse(text) : {}) as T;
  }

  private async fetch(
    method: string,
    pathname: string,
    body: RequestInit['body'] | undefined,
    signal: AbortSignal | undefined,
    headers: Record<string, string> = JSON_HEADERS,
    timeoutMs = this.timeoutMs,
  ): Promise<Response> {
    const signals = [signal, timeoutMs > 0 ? AbortSignal.timeout(timeoutMs) : undefined].filter(
      (s): s is AbortSignal => s !== undefined,
    );
    try {
      return await fetch(`${this.host}${pathname}`, {
        method,
        body,
        headers,
        signal: signals.length ? AbortSignal.any(signals) : undefined,
        ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
      } as RequestInit);
    } catch (err) {
      if (signal?.aborted) throw signal.reason ?? err;
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new OllamaError(0, `Ollama at ${this.host} did not answer ${method} ${pathname}: ${cause}`);
    }
  }
}

const JSON_HEADERS = { 'content-type': 'application/json' };

interface RawChat {
  message?: { role: string; content: string };
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  eval_count?: number;
  total_duration?: number;
}

function chatBody(req: ChatRequest, stream: boolean) {
  return {
    model: req.model,
    messages: req.messages,
    stream,
    ...(req.format !== undefined ? { format: req.format } : {}),
    ...(req.options ? { options: req.options } : {}),
    ...(req.keepAlive !== undefined ? { keep_alive: req.keepAlive } : {}),
  };
}

async function errorOf(res: Response, what: string): Promise<OllamaError> {
  return errorOfText(res.status, await res.text().catch(() => ''), what);
}

function errorOfText(status: number, text: string, what: string): OllamaError {
  let message = text;
  try {
    message = (JSON.parse(text) as { error?: string }).error ?? text;
  } catch {
    // not JSON
  }
  return new OllamaError(status, `${what}: HTTP ${status}${message ? `: ${message}` : ''}`);
}

/** Greedy decoding as the trainer does it (no sampling, no repetition penalty): for parity checks and judges. */
export const GREEDY: ChatOptions = { temperature: 0, top_k: 1, seed: 0, repeat_penalty: 1 };
