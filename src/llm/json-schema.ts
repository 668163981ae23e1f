import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import { RE2JS } from 're2js';

/**
 * JSON schemas that come from requests (or from a model's config) and are run against a model's answers.
 *
 * `pattern` and `patternProperties` are compiled with RE2JS, a linear-time engine, instead of JavaScript's
 * backtracking one: a schema like `{"pattern": "^(a+)+$"}` would otherwise let one app's request, or one model
 * answer, hold the API's event loop for minutes. Patterns are written in JavaScript's syntax (as JSON Schema says)
 * and translated, so that they mean what they mean in JavaScript: `\s` and `.` keep JavaScript's (Unicode)
 * definitions, `\u00e9`, `\u{1F600}`, `(?<name>…)` and long Unicode property names (`\p{Letter}`,
 * `\p{Script=Greek}`) are accepted. What RE2 cannot do is refused with its message: look-around,
 * back-references, repeat counts over 1000, patterns over MAX_PATTERN characters.
 */

/** JavaScript's `\s`: WhiteSpace and LineTerminator (ECMA-262), as the body of a character class. */
const JS_SPACE =
  '\\t\\n\\x0B\\f\\r \\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}\\x{FEFF}';
/** JavaScript's `.` without the s flag: anything but a line terminator. */
const JS_DOT = '[^\\n\\r\\x{2028}\\x{2029}]';
/** Long General_Category names JavaScript accepts and RE2 does not (RE2 takes the short ones and script names). */
const CATEGORY: Record<string, string> = {
  Letter: 'L',
  Cased_Letter: 'L', // RE2 has no LC; L is wider by Lm and Lo
  Uppercase_Letter: 'Lu',
  Lowercase_Letter: 'Ll',
  Titlecase_Letter: 'Lt',
  Modifier_Letter: 'Lm',
  Other_Letter: 'Lo',
  Mark: 'M',
  Nonspacing_Mark: 'Mn',
  Spacing_Mark: 'Mc',
  Enclosing_Mark: 'Me',
  Number: 'N',
  Decimal_Number: 'Nd',
  digit: 'Nd',
  Letter_Number: 'Nl',
  Other_Number: 'No',
  Punctuation: 'P',
  punct: 'P',
  Connector_Punctuation: 'Pc',
  Dash_Punctuation: 'Pd',
  Open_Punctuation: 'Ps',
  Close_Punctuation: 'Pe',
  Initial_Punctuation: 'Pi',
  Final_Punctuation: 'Pf',
  Other_Punctuation: 'Po',
  Symbol: 'S',
  Math_Symbol: 'Sm',
  Currency_Symbol: 'Sc',
  Modifier_Symbol: 'Sk',
  Other_Symbol: 'So',
  Separator: 'Z',
  Space_Separator: 'Zs',
  Line_Separator: 'Zl',
  Paragraph_Separator: 'Zp',
  Other: 'C',
  Control: 'Cc',
  cntrl: 'Cc',
  Format: 'Cf',
  Surrogate: 'Cs',
  Private_Use: 'Co',
  Unassigned: 'Cn',
};
export const MAX_PATTERN = 1_000;

/**
 * A JavaScript (`u`) pattern rewritten for RE2 with JavaScript's meaning. Throws with the reason when it cannot
 * be (RE2's own refusals come from compiling the result).
 */
export function toRe2(pattern: string): string {
  if (pattern.length > MAX_PATTERN) throw new Error(`a pattern is longer than ${MAX_PATTERN} characters`);
  // RE2JS's own translation: \u and \u{} escapes, \cX, named groups.
  const p = RE2JS.translateRegExp(pattern);
  let out = '';
  let inClass = false;
  for (let i = 0; i < p.length; i++) {
    const c = p[i]!;
    if (c === '\\') {
      const next = p[i + 1] ?? '';
      if (next === 's') out += inClass ? JS_SPACE : `[${JS_SPACE}]`;
      else if (next === 'S' && !inClass) out += `[^${JS_SPACE}]`;
      else if ((next === 'p' || next === 'P') && p[i + 2] === '{') {
        const end = p.indexOf('}', i + 3);
        if (end < 0) throw new Error(`unterminated \\${next}{ in a pattern`);
        let name = p.slice(i + 3, end);
        const eq = name.indexOf('=');
        if (eq >= 0) {
          const key = name.slice(0, eq);
          if (!['Script', 'sc', 'General_Category', 'gc'].includes(key))
            throw new Error(`\\${next}{${name}}: the property ${key} is not supported`);
          name = name.slice(eq + 1);
        }
        out += `\\${next}{${CATEGORY[name] ?? name}}`;
        i = end;
        continue;
      } else out += c + next;
      i++;
      continue;
    }
    if (inClass) {
      if (c === ']') inClass = false;
      out += c;
    } else if (c === '[') {
      // (JavaScript's empty classes `[]` and `[^]` were rewritten as ranges by translateRegExp)
      inClass = true;
      out += c;
    } else out += c === '.' ? JS_DOT : c;
  }
  return out;
}

/**
 * A pattern written as in JavaScript, run by RE2JS (linear time whatever the input): what the style check of
 * evaluate and a model's answer schemas use. Throws with the reason for a pattern RE2 cannot run.
 */
export function compilePattern(pattern: string): { test(s: string): boolean } {
  const re = RE2JS.compile(toRe2(pattern));
  return { test: (s: string) => re.test(s) };
}

const linearTimeRegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string) => {
    const re = compilePattern(pattern);
    // ajv keys compiled patterns by their toString(): without one, every pattern would share the first's key.
    return { test: re.test, toString: () => `re2js:${flags}:${pattern}` };
  },
  { code: 're2js' },
);

// Compiled schemas are not registered by their `$id` (one app's schema cannot take an id another's needs). ajv
// keeps what it compiled (schemas and each pattern's compiled form) for as long as the instance lives, so the
// instance is replaced, with the cache, once it has compiled MAX_COMPILED schemas: memory stays bounded whatever
// the requests send.
const newAjv = () =>
  new Ajv2020({
    strict: false,
    allErrors: false,
    validateSchema: true,
    addUsedSchema: false,
    code: { regExp: linearTimeRegExp },
  });
let ajv = newAjv();
let compiled = 0;
/** Compiled schemas by their text, and the reason for those that did not compile. */
const validators = new Map<string, ValidateFunction | string>();
const MAX_COMPILED = 500;

export class InvalidSchemaError extends Error {}

/**
 * A JSON schema compiled once (by its text). An invalid one throws an InvalidSchemaError with ajv's (or RE2's)
 * message.
 */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  const key = JSON.stringify(schema);
  const hit = validators.get(key);
  if (typeof hit === 'string') throw new InvalidSchemaError(hit);
  if (hit) return hit;
  if (compiled >= MAX_COMPILED) {
    ajv = newAjv();
    compiled = 0;
    validators.clear();
  }
  compiled++; // failures count too: ajv keeps a schema it could not compile
  try {
    const validate = ajv.compile(schema);
    validators.set(key, validate);
    return validate;
  } catch (err) {
    const message = `not a valid JSON schema: ${(err as Error).message}`;
    validators.set(key, message);
    throw new InvalidSchemaError(message);
  }
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
