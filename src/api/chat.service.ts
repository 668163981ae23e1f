import { performance } from 'node:perf_hooks';
import type { ValidateFunction } from 'ajv/dist/2020.js';
import type { ServingVersion } from '../db/queries/registry';
import type { Breaker, Breakers } from '../domain/breaker';
import {
  answerFormat,
  answeredAs,
  routeSubject,
  type RequestedFormat,
  type Routed,
  type ServingAlias,
} from '../domain/chat';
import { withSystemPrompt, type ChatMessage } from '../domain/conversation';
import { inShadowShare } from '../domain/shadow';
import type { IncumbentConfig } from '../domain/model-config';
import { Deadline } from '../llm/deadline';
import { IncumbentError, type IncumbentClient, type IncumbentClients } from '../llm/incumbent';
import { compileSchema, InvalidSchemaError, matchesSchema } from '../llm/json-schema';
import { OllamaError, type ChatChunk, type ChatOptions, type OllamaClient } from '../llm/ollama';
import type { Logger } from '../log';
import type { Principal } from './auth';
import { HttpError } from './errors';
import type { FairUse } from './fair-use';
import type { ShadowRunner } from './shadow';
import { newInteractionId, type ServingCache, type ServingRecorder } from './serving';

export interface ChatServiceDeps {
  /** Production's Ollama. */
  ollama: OllamaClient;
  /** The canary's (the same client when one server serves both). */
  canaryOllama: OllamaClient;
  cache: ServingCache;
  recorder: ServingRecorder;
  log: Logger;
  /** The models' hosted incumbents (made from their configs and the environment's keys). */
  incumbents: IncumbentClients;
  breakers: Breakers;
  fairUse: FairUse;
  /** Where the shadow stage's candidate answers production's calls in the background; no shadowing without. */
  shadow?: ShadowRunner;
}

/**
 * Runs `fn` within the caller's fair share (fair-use.ts): the key's rate and calls in flight, then a place among
 * the model's calls in flight. A call over its share is a 429 with Retry-After before anything is asked of a model.
 */
export async function withinFairUse<T>(
  deps: ChatServiceDeps,
  call: Pick<ChatCall, 'principal' | 'model' | 'signal'>,
  fn: () => Promise<T>,
): Promise<T> {
  const releaseKey = deps.fairUse.admitKey(call.principal.keyId);
  try {
    const releaseModel = await deps.fairUse.admitModel(call.model, call.signal);
    try {
      return await fn();
    } finally {
      releaseModel();
    }
  } finally {
    releaseKey();
  }
}

/** Who can answer a call: a local version (its Ollama tag) or, with `incumbent` set, the app's hosted model. */
export interface Answerer extends Omit<ServingVersion, 'versionId'> {
  versionId: string | null;
  incumbent?: IncumbentClient;
}

/** The name the incumbent answers under, where a local version gives its version. */
export const INCUMBENT_VERSION = 'incumbent';

/** A validated call of POST /v1/chat. */
export interface ChatCall {
  principal: Principal;
  model: string;
  /**
   * The app's pseudonymous user: routing is sticky per subject, and the call is recorded under it. A call without
   * one (null) is answered by production and counted, but its conversation is never recorded: no consent can
   * apply to it.
   */
  subject: string | null;
  messages: ChatMessage[];
  format?: RequestedFormat;
  options?: ChatOptions;
  metadata?: Record<string, unknown>;
  /** Aborted when the caller goes away: the generation in Ollama ends too. */
  signal: AbortSignal;
  /** performance.now() when the request arrived: latencies count from here. */
  startedAt: number;
}

export interface ChatAnswer {
  id: string;
  model: string;
  version: string;
  alias: ServingAlias;
  message: ChatMessage;
  doneReason: string | null;
  usage: { promptTokens: number | null; completionTokens: number | null };
  schemaValid?: boolean | null;
  latencyMs: number;
}

/** What a streamed answer sends, in order: `meta`, `content` (any number), then `done` or `error`. */
export type ChatEvent =
  | { event: 'meta'; id: string; model: string; version: string; alias: ServingAlias }
  | { event: 'content'; content: string }
  | {
      event: 'done';
      doneReason: string | null;
      usage: { promptTokens: number | null; completionTokens: number | null };
      schemaValid?: boolean | null;
      latencyMs: number;
    }
  | { event: 'error'; code: string; message: string };

interface Answer {
  content: string;
  doneReason: string | null;
  promptTokens: number | null;
  completionTokens: number | null;
  schemaValid: boolean | null;
}

type Record_ = (by: Answerer | null, answer: Answer | null, err: string | null, fellBack: boolean) => void;

/** A call made ready to answer: access checked, the version chosen, the request to the model server built. */
interface Prepared {
  id: string;
  routed: Routed<Answerer>;
  breaker: Breaker;
  localTimeoutMs: number;
  request: {
    messages: ChatMessage[];
    format: RequestedFormat | undefined;
    options: ChatOptions | undefined;
  };
  validate: ValidateFunction | null;
  checkJson: boolean;
  record: Record_;
  /** Hands a production answer to the shadow's candidate, when this call is in the shadow's share. */
  shadow: (answeredBy: Answerer, content: string) => void;
}

/**
 * POST /v1/chat: the app's model answers. The subject is routed to production or, by a hash of its id and the
 * canary's share, to the canary; the answer names the version that gave it. A canary that fails hands the request
 * to production (and the failure counts against the canary). With a JSON-schema `format` an answer that does not
 * validate is asked for once more. Every call is recorded: the conversation as an interaction of the version that
 * answered (the next run's data, if the subject consents) and the call itself for the canary comparison.
 *
 * Returns null when the caller went away.
 */
export async function answerChat(deps: ChatServiceDeps, call: ChatCall): Promise<ChatAnswer | null> {
  const p = await prepare(deps, call);
  const got = await withFallback(deps.log, call, p, (v) => ask(deps, p, v, call.signal));
  if (!got) return null;
  const { version: answeredBy, value: answer, error } = got;
  p.record(answeredBy, answer, error, answeredBy !== p.routed.first);
  p.shadow(answeredBy, answer.content);
  return {
    id: p.id,
    model: call.model,
    version: answeredBy.version,
    alias: answeredAs(p.routed, answeredBy),
    message: { role: 'assistant', content: answer.content },
    doneReason: answer.doneReason,
    usage: { promptTokens: answer.promptTokens, completionTokens: answer.completionTokens },
    ...(p.checkJson ? { schemaValid: answer.schemaValid } : {}),
    latencyMs: Math.round((performance.now() - call.startedAt) * 100) / 100,
  };
}

/**
 * The same answer as events (`send` writes them as server-sent events): `meta` (id, version, alias) with the first
 * token, `content` chunks, then `done` ({doneReason, usage, schemaValid?, latencyMs}) or `error`. The canary's failure
 * before its first token is handed to production like a plain call; after the first token the stream ends with an
 * `error` event. Nothing is sent when the caller went away.
 */
export async function streamChat(deps: ChatServiceDeps, call: ChatCall, send: (e: ChatEvent) => void): Promise<void> {
  const p = await prepare(deps, call);
  const t0 = performance.now();
  const open = async (v: Answerer) => {
    // The HTTP answer and the first chunk: errors surface here. A local version has `localTimeoutMs` to its first
    // chunk; the incumbent has its own budget (incumbent.ts).
    const first = async (it: AsyncGenerator<ChatChunk>) => ({ it, head: await it.next() });
    if (v.incumbent) return first(v.incumbent.chatStream({ model: v.tag, ...p.request }, call.signal));
    const ollama = serverOf(deps, v, p.routed.production);
    return withinLocalTimeout(call.signal, p.localTimeoutMs, (signal) =>
      first(ollama.chatStream({ model: v.tag, ...p.request }, signal)),
    );
  };
  const got = await withFallback(deps.log, call, p, open);
  if (!got) return; // the caller went away
  const { version, value: opened, error } = got;
  const fellBack = version !== p.routed.first;
  send({ event: 'meta', id: p.id, model: call.model, version: version.version, alias: answeredAs(p.routed, version) });
  let content = '';
  let last: { doneReason?: string | null; promptTokens?: number | null; completionTokens?: number | null } = {};
  try {
    for (let chunk = opened.head; !chunk.done; chunk = await opened.it.next()) {
      const c = chunk.value;
      if (c.content) {
        content += c.content;
        send({ event: 'content', content: c.content });
      }
      if (c.done) last = c;
    }
  } catch (err) {
    if (call.signal.aborted) return;
    const message = describe(err);
    deps.log.error({ model: call.model, version: version.version, err: message }, 'stream broke off');
    send({ event: 'error', code: 'model_unavailable', message: 'the answer broke off; retry' });
    p.record(null, null, error ?? message, fellBack);
    return;
  }
  const schemaValid = p.checkJson ? matchesSchema(content, p.validate) : null;
  const usage = { promptTokens: last.promptTokens ?? null, completionTokens: last.completionTokens ?? null };
  p.record(version, { content, doneReason: last.doneReason ?? null, ...usage, schemaValid }, error, fellBack);
  p.shadow(version, content);
  send({
    event: 'done',
    doneReason: last.doneReason ?? null,
    usage,
    ...(p.checkJson ? { schemaValid } : {}),
    latencyMs: Math.round((performance.now() - t0) * 100) / 100,
  });
}

async function prepare(deps: ChatServiceDeps, call: ChatCall): Promise<Prepared> {
  const info = await deps.cache.get(call.model);
  const model = info.model;
  if (!model) throw new HttpError(404, 'model_not_found', `model ${call.model} does not exist`, 'body.model');
  if (call.principal.appId && model.appId !== call.principal.appId) {
    throw new HttpError(403, 'forbidden', `model ${call.model} is not accessible with this key`, 'body.model');
  }
  const incumbent = incumbentOf(deps, call.model, model.incumbent, info.aliases.production !== undefined);
  const { breakerFailures, breakerCooldownMs, localTimeoutMs } = model.fallback;
  const breaker = deps.breakers.for(call.model, breakerFailures, breakerCooldownMs);
  const routed = routeSubject<Answerer>(call.model, call.subject, info.aliases, incumbent, () =>
    breaker.allowLocal(Date.now()),
  );
  if (!routed) throw new HttpError(503, 'no_version_serving', `model ${call.model} has no production version yet`);
  const answer = answerFormat(call.format, model.outputSchema);
  const validate = answer.schema
    ? validatorFor(answer.schema, answer.owner === 'model' ? call.model : null, deps.log)
    : null;
  const id = newInteractionId();
  const record: Record_ = (answeredBy, a, err, fellBack) =>
    deps.recorder.record({
      interactionId: id,
      appId: model.appId,
      model: call.model,
      subject: call.subject,
      // Without a subject the conversation is not kept: only the call is counted.
      messages:
        a && answeredBy && call.subject !== null ? [...call.messages, { role: 'assistant', content: a.content }] : null,
      answeredBy: answeredBy?.versionId ?? null,
      latencyMs: performance.now() - call.startedAt,
      metadata: { ...call.metadata, servedBy: answeredBy?.version ?? null, alias: routed.alias },
      call: {
        versionId: routed.first.versionId,
        alias: routed.alias,
        ok: err === null,
        fellBack,
        error: err,
        latencyMs: performance.now() - call.startedAt,
        schemaValid: a && answer.checked ? a.schemaValid : null,
        answeredBy: answeredBy ? (answeredBy.incumbent ? 'incumbent' : 'local') : null,
        promptTokens: a?.promptTokens ?? null,
        completionTokens: a?.completionTokens ?? null,
      },
    });
  const request = {
    messages: withSystemPrompt(call.messages, model.systemPrompt),
    format: answer.format,
    options: call.options,
  };
  const candidate = info.aliases.shadow;
  const shadow = (answeredBy: Answerer, content: string) => {
    // Production's own answers to calls with a subject (their conversation is recorded: the pair hangs off it).
    if (!deps.shadow || !candidate || call.subject === null) return;
    if (answeredBy !== routed.first || routed.alias !== 'production') return;
    if (!inShadowShare(id, model.shadow.share)) return;
    deps.shadow.offer({
      model: call.model,
      versionId: candidate.versionId,
      tag: candidate.tag,
      interactionId: id,
      request,
      messages: call.messages,
      productionAnswer: content,
      productionLatencyMs: performance.now() - call.startedAt,
      maxInFlight: model.shadow.maxInFlight,
      timeoutMs: localTimeoutMs,
    });
  };
  return {
    id,
    routed,
    breaker,
    localTimeoutMs,
    request,
    validate,
    checkJson: answer.checked,
    record,
    shadow,
  };
}

/**
 * The model's incumbent as an answerer, or null without one. An incumbent whose key is missing from this process's
 * environment is left out (and logged once) while a local version serves; with nothing local it is a 502 that
 * says what to fix, without the key's value, which the process does not have anyway.
 */
function incumbentOf(
  deps: ChatServiceDeps,
  model: string,
  config: IncumbentConfig | null,
  hasLocal: boolean,
): Answerer | null {
  if (!config) return null;
  try {
    const client = deps.incumbents.get(model, config);
    return { versionId: null, version: INCUMBENT_VERSION, tag: client.model, percent: null, incumbent: client };
  } catch (err) {
    if (!(err instanceof IncumbentError)) throw err;
    once(`${model}\u0000incumbent\u0000${err.message}`, () =>
      deps.log.error({ model, err: err.message }, 'the incumbent cannot be called'),
    );
    if (hasLocal) return null;
    throw new HttpError(502, 'incumbent_unavailable', `model ${model}'s hosted model cannot be called: ${err.message}`);
  }
}

const warned = new Set<string>();

/** Says something once per process for `key` (a model and a reason), not once per call. */
function once(key: string, say: () => void) {
  if (warned.has(key)) return;
  warned.add(key);
  say();
}

/**
 * The answer's schema compiled. A request's schema that does not compile is a 400 naming `body.format`. A model's
 * own (`model` names it) is the operator's to fix: answers are then checked for being JSON only, and the log says
 * why.
 */
function validatorFor(schema: Record<string, unknown>, model: string | null, log: Logger): ValidateFunction | null {
  try {
    return compileSchema(schema);
  } catch (err) {
    if (!(err instanceof InvalidSchemaError)) throw err;
    if (model === null) throw new HttpError(400, 'invalid_request', `body.format: ${err.message}`, 'body.format');
    once(`${model}\u0000${err.message}`, () =>
      log.warn(
        { model, err: err.message },
        "the model's outputSchema does not compile: answers are checked as JSON only",
      ),
    );
    return null;
  }
}

/**
 * Which Ollama answers for a version: production's, or the canary's for the canary. Ollama keeps one runner per
 * weights file and reloads it whenever a request asks for another adapter on the same base, so a canary adapter
 * served beside production by one server would reload it at every switch between them (a measured 25 → 300 ms
 * p50 for the tiny model, seconds for an 8B one).
 */
function serverOf(deps: ChatServiceDeps, v: Answerer, production: Answerer): OllamaClient {
  return v === production ? deps.ollama : deps.canaryOllama;
}

/** One answer from one version or the incumbent; with a format, one more try when the first does not validate. */
async function ask(deps: ChatServiceDeps, p: Prepared, v: Answerer, caller: AbortSignal): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    const r = v.incumbent
      ? await v.incumbent.chat({ model: v.tag, ...p.request }, caller)
      : await withinLocalTimeout(caller, p.localTimeoutMs, (signal) =>
          serverOf(deps, v, p.routed.production).chat({ model: v.tag, ...p.request }, signal),
        );
    const valid = p.checkJson ? matchesSchema(r.content, p.validate) : null;
    if (valid === false && attempt === 0) continue;
    return {
      content: r.content,
      doneReason: r.doneReason,
      promptTokens: r.promptTokens,
      completionTokens: r.completionTokens,
      schemaValid: valid,
    };
  }
}

/**
 * `fn` (a local version's answer, or a stream's first chunk) within the model's `localTimeoutMs`: its signal ends at
 * the deadline or when the caller goes away; a deadline that passed is a LocalTimeout. The signal stays the
 * caller's after `fn` returns (a stream goes on past its first chunk).
 */
async function withinLocalTimeout<T>(caller: AbortSignal, ms: number, fn: (signal: AbortSignal) => Promise<T>) {
  const deadline = new Deadline(caller, ms);
  try {
    return await fn(deadline.signal);
  } catch (err) {
    throw deadline.expired ? new LocalTimeout(ms) : err;
  } finally {
    deadline.end();
  }
}

class LocalTimeout extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/**
 * Asks the version routed to; when it fails, the next of `routed.fallbacks` (production for a canary, the incumbent
 * for a local version), and so on. Local failures count towards the model's breaker. Returns what answered, the
 * first error if there was one, and null when the caller went away. A failure with nobody left to ask is recorded
 * and answered 502 (504 for a timeout, 503 with Retry-After when the incumbent is rate-limited); a request the
 * model server refuses as malformed is a 400.
 */
async function withFallback<T>(
  log: Logger,
  call: ChatCall,
  p: Prepared,
  attempt: (v: Answerer) => Promise<T>,
): Promise<{ version: Answerer; value: T; error: string | null } | null> {
  const chain = [p.routed.first, ...p.routed.fallbacks];
  let firstError: string | null = null;
  for (let i = 0; ; i++) {
    const v = chain[i]!;
    try {
      const value = await attempt(v);
      if (!v.incumbent) p.breaker.succeeded();
      return { version: v, value, error: firstError };
    } catch (err) {
      if (call.signal.aborted) return null;
      refusedRequest(err);
      const message = describe(err);
      firstError ??= message;
      if (!v.incumbent) p.breaker.failed(Date.now());
      const next = chain[i + 1];
      if (!next) {
        p.record(null, null, firstError, i > 0);
        throw unavailable(log, call.model, v, err);
      }
      log.warn({ model: call.model, version: v.version, next: next.version, err: message }, 'fell back');
    }
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Ollama refusing the request itself (HTTP 400: a `format` it cannot turn into a grammar, say) is the caller's
 * problem, answered 400 with Ollama's reason; it says nothing about the version, so it is not held against it.
 */
function refusedRequest(err: unknown) {
  if (err instanceof OllamaError && err.status === 400) {
    const reason = err.message.replace(/^.*?HTTP 400: /, '');
    throw new HttpError(400, 'invalid_request', `the model server refused the request: ${reason}`, 'body');
  }
  if (err instanceof IncumbentError && err.kind === 'refused') {
    throw new HttpError(400, 'invalid_request', `the hosted model refused the request: ${err.message}`, 'body');
  }
}

/**
 * The caller's error when nothing could answer, without the model server's address or internals (the details go to
 * the log): 504 for a timeout, 503 with Retry-After for a rate-limited incumbent, 502 otherwise.
 */
function unavailable(log: Logger, model: string, v: Answerer, err: unknown): HttpError {
  log.error({ model, version: v.version, err: describe(err) }, 'the model server did not answer');
  const who = v.incumbent ? `the hosted model of ${model}` : `version ${v.version} of ${model}`;
  if (err instanceof LocalTimeout || (err instanceof IncumbentError && err.kind === 'timeout')) {
    return new HttpError(504, 'model_timeout', `${who} did not answer in time; retry shortly`);
  }
  if (err instanceof IncumbentError && err.kind === 'rate_limited') {
    const wait = Math.min(60, Math.max(1, err.retryAfterS ?? 5));
    return new HttpError(503, 'model_rate_limited', `${who} is rate-limited; retry in ${wait} s`, undefined, wait);
  }
  return new HttpError(502, 'model_unavailable', `${who} could not answer; retry shortly`);
}
