/**
 * Builds tests/pii/eval-set.jsonl from the hand-labeled source tests/pii/eval-set.src.txt.
 *
 *   scripts/run.sh node --import tsx tests/pii/build-eval-set.ts           # (re)write the jsonl
 *   scripts/run.sh node --import tsx tests/pii/build-eval-set.ts --check   # exit 1 if the jsonl is stale
 *
 * Source format (see tests/pii/README.md):
 *   - a line `=== <id> <domain> <split>` starts a text, e.g. `=== wb-001 wellbeing dev`;
 *   - the lines after it, up to the next header, are the text (joined with "\n"; blank lines at either
 *     end are dropped);
 *   - lines starting with `%%` are comments, anywhere;
 *   - entities are written inline as `[[TYPE:value]]`; the type is everything before the first colon, so
 *     values may contain colons (URLs, IPv6).
 *
 * Offsets are JavaScript string indices (UTF-16 code units), end exclusive.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { PII_TYPES, type PiiType } from '../../src/pii/types';

/** The labels are the engine's types: its placeholder names (`<PERSON_1>`), one list. */
export const ENTITY_TYPES = PII_TYPES;
export type EntityType = PiiType;

export const DOMAINS = ['wellbeing', 'fitness', 'tutoring', 'scripture', 'challenge'] as const;
export type Domain = (typeof DOMAINS)[number];

/** The id prefix used by each domain (`wb-001`, `fi-001`, ...). */
export const DOMAIN_PREFIX: Record<Domain, string> = {
  wellbeing: 'wb',
  fitness: 'fi',
  tutoring: 'tu',
  scripture: 'sc',
  challenge: 'ch',
};

export const SPLITS = ['dev', 'test'] as const;
export type Split = (typeof SPLITS)[number];

export interface Entity {
  type: EntityType;
  start: number;
  end: number;
  value: string;
}

export interface EvalItem {
  id: string;
  domain: Domain;
  split: Split;
  text: string;
  entities: Entity[];
}

const here = path.dirname(fileURLToPath(import.meta.url));
export const SOURCE_PATH = path.join(here, 'eval-set.src.txt');
export const JSONL_PATH = path.join(here, 'eval-set.jsonl');

const HEADER = /^=== ([a-z]{2}-\d{3}) (\S+) (\S+)$/;
const MARKUP = /\[\[([A-Z_]+):(.*?)\]\]/g;

function isOneOf<T extends string>(values: readonly T[], value: string): value is T {
  return (values as readonly string[]).includes(value);
}

/** Turns one marked-up text into plain text plus entity offsets. `where` names the text in errors. */
export function parseMarkup(marked: string, where: string): { text: string; entities: Entity[] } {
  let text = '';
  const entities: Entity[] = [];
  let last = 0;
  for (const m of marked.matchAll(MARKUP)) {
    const [whole, type = '', value = ''] = m;
    if (!isOneOf(ENTITY_TYPES, type)) throw new Error(`${where}: unknown entity type ${type}`);
    if (value === '' || value !== value.trim()) throw new Error(`${where}: empty or padded value in ${whole}`);
    if (value.includes('[[')) throw new Error(`${where}: nested markup in ${whole}`);
    text += marked.slice(last, m.index);
    const start = text.length;
    text += value;
    entities.push({ type, start, end: text.length, value });
    last = m.index + whole.length;
  }
  text += marked.slice(last);
  if (text.includes('[[') || text.includes(']]')) throw new Error(`${where}: unbalanced [[ ]] markup`);
  return { text, entities };
}

/** Parses the whole source file into eval items, in source order. Throws on any malformed input. */
export function parseSource(source: string): EvalItem[] {
  if (source.includes('\r')) throw new Error('source must use \\n line endings');
  const items: EvalItem[] = [];
  const seen = new Set<string>();
  let current: { id: string; domain: Domain; split: Split; line: number; body: string[] } | null = null;

  const flush = () => {
    if (!current) return;
    const lines = [...current.body];
    while (lines.length > 0 && lines[0]!.trim() === '') lines.shift();
    while (lines.length > 0 && lines[lines.length - 1]!.trim() === '') lines.pop();
    const where = `${current.id} (line ${current.line})`;
    if (lines.length === 0) throw new Error(`${where}: empty text`);
    const { text, entities } = parseMarkup(lines.join('\n'), where);
    items.push({ id: current.id, domain: current.domain, split: current.split, text, entities });
  };

  source.split('\n').forEach((line, index) => {
    if (line.startsWith('%%')) return;
    if (line.startsWith('===')) {
      const m = HEADER.exec(line);
      if (!m) throw new Error(`line ${index + 1}: malformed header ${JSON.stringify(line)}`);
      const [, id = '', domain = '', split = ''] = m;
      if (!isOneOf(DOMAINS, domain)) throw new Error(`line ${index + 1}: unknown domain ${domain}`);
      if (!isOneOf(SPLITS, split)) throw new Error(`line ${index + 1}: unknown split ${split}`);
      if (!id.startsWith(`${DOMAIN_PREFIX[domain]}-`)) throw new Error(`line ${index + 1}: id ${id} vs ${domain}`);
      if (seen.has(id)) throw new Error(`line ${index + 1}: duplicate id ${id}`);
      seen.add(id);
      flush();
      current = { id, domain, split, line: index + 1, body: [] };
      return;
    }
    if (!current) {
      if (line.trim() !== '') throw new Error(`line ${index + 1}: text before the first === header`);
      return;
    }
    current.body.push(line);
  });
  flush();
  return items;
}

/** One JSON object per line, keys in a fixed order, trailing newline. */
export function toJsonl(items: readonly EvalItem[]): string {
  return items
    .map((item) =>
      JSON.stringify({
        id: item.id,
        domain: item.domain,
        split: item.split,
        text: item.text,
        entities: item.entities.map((e) => ({ type: e.type, start: e.start, end: e.end, value: e.value })),
      }),
    )
    .map((line) => `${line}\n`)
    .join('');
}

/** The jsonl the committed source should produce. */
export function buildJsonl(sourcePath: string = SOURCE_PATH): string {
  return toJsonl(parseSource(readFileSync(sourcePath, 'utf8')));
}

function main(argv: readonly string[]): number {
  const jsonl = buildJsonl();
  const count = jsonl.split('\n').length - 1;
  if (argv.includes('--check')) {
    const current = readFileSync(JSONL_PATH, 'utf8');
    if (current !== jsonl) {
      process.stderr.write(`${path.relative(process.cwd(), JSONL_PATH)} is stale; rebuild it\n`);
      return 1;
    }
    process.stdout.write(`${path.relative(process.cwd(), JSONL_PATH)} is up to date (${count} texts)\n`);
    return 0;
  }
  writeFileSync(JSONL_PATH, jsonl);
  process.stdout.write(`wrote ${path.relative(process.cwd(), JSONL_PATH)} (${count} texts)\n`);
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.slice(2));
}
