import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import { RE2JS } from 're2js';

/**
 * JSON schemas that come from requests (or from a model's config) and are run against a model's answers.
 *
 * `pattern` and `patternProperties` are compiled with RE2JS, a linear-time engine, instead of JavaScript's
 * backtracking one: a schema like `{"pattern": "^(a+)+$"}` would otherwise let one app's request, or one model
 * answer, hold the API's event loop for minutes. RE2 has no look-around and no back-references; a schema that uses
 * them is refused with the engine's message.
 */
const linearTimeRegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string) => {
    const re = RE2JS.compile(pattern);
    // ajv keys compiled patterns by their toString(): without one, every pattern would share the first's key.
    return { test: (s: string) => re.test(s), toString: () => `re2js:${flags}:${pattern}` };
  },
  { code: 're2js' },
);

// Compiled schemas are not registered by their `$id` (one app's schema cannot take an id another's needs), and
// the compiled-schema cache is bounded (evicted schemas are removed from ajv's own cache).
const ajv = new Ajv2020({
  strict: false,
  allErrors: false,
  validateSchema: true,
  addUsedSchema: false,
  code: { regExp: linearTimeRegExp },
});
const validators = new Map<string, { validate: ValidateFunction; schema: object }>();
const MAX_COMPILED = 500;

export class InvalidSchemaError extends Error {}

/**
 * A JSON schema compiled once (by its text). An invalid one throws an InvalidSchemaError with ajv's (or RE2's)
 * message.
 */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  const hit = validators.get(key);
  if (hit) return hit.validate;
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (err) {
    throw new InvalidSchemaError(`not a valid JSON schema: ${(err as Error).message}`);
  }
  if (validators.size >= MAX_COMPILED) {
    const [oldest, entry] = validators.entries().next().value!;
    validators.delete(oldest);
    ajv.removeSchema(entry.schema);
  }
  validators.set(key, { validate, schema });
  return validate;
}

/** Whether `content` is JSON and, when a validator is given, valid against it. */
export function matchesSchema(content: string, validate: ValidateFunction | null): boolean {
  try {
    const value = JSON.parse(content) as unknown;
    return validate ? validate(value) : true;
  } catch {
    return false;
  }
}
