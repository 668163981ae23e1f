import { routesToCanary } from './routing';

// The chat API's decisions, apart from its I/O: which schema an answer must match, which version answers a subject,
// when another version answers instead, and which served conversations an erasure reaches.

export type ServingAlias = 'production' | 'canary';

/** A JSON schema, or `json` for any JSON. */
export type RequestedFormat = Record<string, unknown> | 'json';

export interface AnswerFormat {
  /** What the model server is asked for: a JSON schema, any JSON, or nothing (free text). */
  format: RequestedFormat | undefined;
  /** The schema answers are validated against; null: they are checked for being JSON only. */
  schema: Record<string, unknown> | null;
  /**
   * Whose schema it is. The request's, when it does not compile, is a bad request; the model's own (stored before
   * schemas were checked on `models put`) is the operator's to fix, not a reason to refuse every call.
   */
  owner: 'request' | 'model';
  /** Answers are checked, and the check reported, whenever a format applies. */
  checked: boolean;
}

/** The request's `format` when it has one, else the model's output schema, else none. */
export function answerFormat(
  requested: RequestedFormat | undefined,
  modelSchema: Record<string, unknown> | null,
): AnswerFormat {
  if (requested === undefined) {
    return { format: modelSchema ?? undefined, schema: modelSchema, owner: 'model', checked: modelSchema !== null };
  }
  return { format: requested, schema: requested === 'json' ? null : requested, owner: 'request', checked: true };
}

export interface Routed<V> {
  /** The version asked first. */
  first: V;
  /** The alias it answers as. */
  alias: ServingAlias;
  production: V;
  /** Who answers, in order, when the one before fails. */
  fallbacks: V[];
}

/**
 * Which version answers a subject: the canary for the subjects its share covers (sticky, by a hash of the subject),
 * production for everyone else; a call without a subject goes to production. Production is the incumbent (the
 * app's hosted model) until a local version is promoted, and after that the fallback of every local answer. With
 * the breaker open (the local versions keep failing) the incumbent answers alone. Null when nothing can answer.
 */
export function routeSubject<V extends { percent: number | null }>(
  model: string,
  subject: string | null,
  aliases: Partial<Record<ServingAlias, V>>,
  incumbent: V | null = null,
  localAllowed: () => boolean = () => true,
): Routed<V> | null {
  const production = aliases.production ?? incumbent;
  if (!production) return null;
  const { canary } = aliases;
  const toCanary = canary !== undefined && subject !== null && routesToCanary(model, subject, canary.percent ?? 0);
  const chain = toCanary ? [canary, production] : [production];
  if (incumbent && production !== incumbent) chain.push(incumbent);
  if (incumbent && chain[0] !== incumbent && !localAllowed()) {
    return { first: incumbent, alias: 'production', production, fallbacks: [] };
  }
  return { first: chain[0]!, alias: toCanary ? 'canary' : 'production', production, fallbacks: chain.slice(1) };
}

/** The alias the caller is told answered: production's whenever another answered in the canary's place. */
export function answeredAs<V>(routed: Routed<V>, answeredBy: V): ServingAlias {
  return answeredBy === routed.first ? routed.alias : 'production';
}

/**
 * How long after an erasure took effect (by the database's clock) a served conversation of its subject is still
 * taken for one served before it: the API's clock may differ from the database's, and an erasure takes effect a
 * moment before it commits. Erring this way loses a minute of a returning subject's conversations for training,
 * never keeps an erased one.
 */
export const ERASURE_MARGIN_MS = 60_000;

/** A conversation served at `servedAt` to a subject erased at `erasedAt` (ms) is not recorded. */
export function servedBeforeErasure(servedAt: number, erasedAt: number): boolean {
  return servedAt <= erasedAt + ERASURE_MARGIN_MS;
}
