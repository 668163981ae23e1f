/**
 * PII engine accuracy and speed: ours side by side with the npm libraries we evaluated, on the labeled set in
 * tests/pii/eval-set.jsonl (all rows, the dev split and the test split), in one process.
 *
 *   npm run bench:pii -- [--mb 20] [--lib-seconds 20] [--errors]
 *
 * Metrics, per type and overall:
 * - entity recall: a gold entity counts as found when one predicted entity of the same type covers at least 50%
 *   of its characters;
 * - character precision: the share of predicted characters that fall inside a gold entity of any type (so a
 *   phone number called an NHS number is still a correct redaction, but a heart rate called a phone is not);
 *   per type over that type's predictions, overall over all predictions;
 * - throughput: MB of text (UTF-16 code units / 1e6) a second on one core (JavaScript runs on one thread), with
 *   the corpus repeated to at least `--mb` MB for ours, timed in five chunks; `MB/s` is the median chunk, `mean`
 *   the whole run, `CPU` the whole run by process CPU time. Ours is timed before any library is loaded. Slower
 *   libraries stop after `--lib-seconds` and report what they did in that time.
 *
 * Library types are mapped to ours (see each system's `mapping`); types with no counterpart become OTHER, which
 * counts in overall precision and in no type's recall. Bars (recall ≥ 0.98 on the pattern and checksum types,
 * ≥ 0.85 on PERSON, overall character precision ≥ 0.90) are reported, never enforced: the process exits 0.
 * `--errors` prints ours' misses and false positives on the dev split only; the test split is never printed, so
 * it stays untouched by tuning.
 *
 * Prints tables and writes bench/results/pii.json.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { detect, PII_ENGINE_VERSION, PII_TYPES, type PiiType } from '../src/pii';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '20' },
    'lib-seconds': { type: 'string', default: '20' },
    errors: { type: 'boolean', default: false },
    only: { type: 'string' },
  },
});
const TARGET_MB = Number(values.mb);
const LIB_SECONDS = Number(values['lib-seconds']);

type Split = 'dev' | 'test';
interface Row {
  id: string;
  domain: string;
  split: Split;
  text: string;
  entities: { type: PiiType; start: number; end: number; value: string }[];
}
type PredType = PiiType | 'OTHER';
interface Pred {
  type: PredType;
  start: number;
  end: number;
}
interface System {
  name: string;
  version: string;
  mapping: string;
  detect(text: string): Pred[] | Promise<Pred[]>;
}

const PATTERN_TYPES: PiiType[] = [
  'EMAIL',
  'PHONE',
  'CREDIT_CARD',
  'IBAN',
  'NHS_NUMBER',
  'SSN',
  'IP_ADDRESS',
  'POSTCODE',
  'SOCIAL_HANDLE',
  'URL',
  'DATE_OF_BIRTH',
  'ADDRESS',
];
const RECALL_BAR = (t: PiiType) => (t === 'PERSON' ? 0.85 : 0.98);
const PRECISION_BAR = 0.9;

const root = path.resolve(import.meta.dirname, '..');
const rows: Row[] = readFileSync(path.join(root, 'tests/pii/eval-set.jsonl'), 'utf8')
  .split('\n')
  .filter((l) => l.trim())
  .map((l) => JSON.parse(l) as Row);

function pkgVersion(name: string): string {
  try {
    return (
      JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }
    ).version;
  } catch {
    return 'not installed';
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Libraries that only return redacted text: each type is replaced by one private-use character, and the spans are
// recovered by aligning the output with the input (literal runs must match; each marker covers a non-empty run).

const MARK = 0xe000;

function alignMarkers(input: string, output: string, types: PredType[]): Pred[] {
  const parts: (string | number)[] = [];
  let lit = '';
  for (const ch of output) {
    const c = ch.codePointAt(0)!;
    if (c >= MARK && c < MARK + types.length) {
      if (lit) parts.push(lit);
      lit = '';
      parts.push(c - MARK);
    } else lit += ch;
  }
  if (lit) parts.push(lit);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp('^' + parts.map((p) => (typeof p === 'string' ? esc(p) : '([\\s\\S]+?)')).join('') + '$', 'd');
  const m = re.exec(input);
  if (!m?.indices) return [];
  const preds: Pred[] = [];
  let g = 1;
  for (const p of parts) {
    if (typeof p !== 'number') continue;
    const span = m.indices[g++];
    if (span) preds.push({ type: types[p]!, start: span[0], end: span[1] });
  }
  return preds;
}

const OURS: System = {
  name: 'tuneloop',
  version: PII_ENGINE_VERSION,
  mapping: 'native types',
  detect: (t) => detect(t),
};

async function loadSystems(): Promise<System[]> {
  const systems: System[] = [OURS];

  try {
    // The library ignores per-redactor `replaceWith` (only globalReplaceWith is used), so its own pipeline is
    // rebuilt from its exported parts, in its own order (regex built-ins, then names), with one marker per type.
    const { SyncRedactor } = await import('redact-pii');
    const require = createRequire(import.meta.url);
    const patterns = require('redact-pii/lib/built-ins/simple-regexp-patterns') as Record<string, RegExp>;
    const { NameRedactor } = require('redact-pii/lib/built-ins/NameRedactor') as {
      NameRedactor: new (replaceWith: string) => { redact(t: string): string };
    };
    const builtIns: Record<string, PredType> = {
      creditCardNumber: 'CREDIT_CARD',
      streetAddress: 'ADDRESS',
      zipcode: 'POSTCODE',
      phoneNumber: 'PHONE',
      ipAddress: 'IP_ADDRESS',
      usSocialSecurityNumber: 'SSN',
      emailAddress: 'EMAIL',
      url: 'URL',
      names: 'PERSON',
      username: 'OTHER',
      password: 'OTHER',
      credentials: 'OTHER',
      digits: 'OTHER',
    };
    const order = Object.keys(patterns).filter((k) => patterns[k] instanceof RegExp);
    const types: PredType[] = [...order.map((k) => builtIns[k] ?? 'OTHER'), 'PERSON'];
    const redactor = new SyncRedactor({
      builtInRedactors: Object.fromEntries([...Object.keys(builtIns)].map((n) => [n, { enabled: false }])),
      customRedactors: {
        before: [
          ...order.map((k, i) => ({ regexpPattern: patterns[k]!, replaceWith: String.fromCharCode(MARK + i) })),
          new NameRedactor(String.fromCharCode(MARK + order.length)),
        ],
      },
    });
    systems.push({
      name: 'redact-pii',
      version: pkgVersion('redact-pii'),
      mapping:
        'creditCardNumber→CREDIT_CARD, streetAddress→ADDRESS, zipcode→POSTCODE, phoneNumber→PHONE, ipAddress→IP_ADDRESS, usSocialSecurityNumber→SSN, emailAddress→EMAIL, url→URL, names→PERSON; username/password/credentials/digits→OTHER. Spans recovered by aligning the redacted text.',
      detect: (t) => alignMarkers(t, redactor.redact(t), types),
    });
  } catch (err) {
    console.warn('redact-pii not available:', (err as Error).message);
  }

  try {
    const { OpenRedaction } = await import('@openredaction/openredaction');
    const map = (t: string): PredType => {
      if (t === 'EMAIL') return 'EMAIL';
      if (t === 'NAME') return 'PERSON';
      if (t.startsWith('PHONE')) return 'PHONE';
      if (t === 'POSTCODE_UK' || t === 'ZIP_CODE_US') return 'POSTCODE';
      if (t === 'ADDRESS_STREET' || t === 'ADDRESS_PO_BOX') return 'ADDRESS';
      if (t === 'CREDIT_CARD') return 'CREDIT_CARD';
      if (t === 'IBAN' || t === 'UK_BANK_ACCOUNT_IBAN') return 'IBAN';
      if (t === 'NHS_NUMBER') return 'NHS_NUMBER';
      if (t === 'SSN') return 'SSN';
      if (t === 'IPV4' || t === 'IPV6') return 'IP_ADDRESS';
      if (t === 'DATE_OF_BIRTH') return 'DATE_OF_BIRTH';
      if (t === 'LINKEDIN_PROFILE' || t === 'URL_WITH_AUTH') return 'URL';
      if (t === 'SOCIAL_MEDIA_HANDLE' || t.endsWith('_USERNAME')) return 'SOCIAL_HANDLE';
      return 'OTHER';
    };
    const mapping =
      'NAME→PERSON, PHONE_*→PHONE, POSTCODE_UK/ZIP_CODE_US→POSTCODE, ADDRESS_STREET/ADDRESS_PO_BOX→ADDRESS, IBAN/UK_BANK_ACCOUNT_IBAN→IBAN, IPV4/IPV6→IP_ADDRESS, LINKEDIN_PROFILE/URL_WITH_AUTH→URL, SOCIAL_MEDIA_HANDLE/*_USERNAME→SOCIAL_HANDLE, same-named EMAIL/CREDIT_CARD/NHS_NUMBER/SSN/DATE_OF_BIRTH; every other pattern→OTHER';
    const restrictedPatterns = [
      'EMAIL',
      'NAME',
      'DATE_OF_BIRTH',
      'CREDIT_CARD',
      'IBAN',
      'SSN',
      'NHS_NUMBER',
      'PHONE_UK_MOBILE',
      'PHONE_UK',
      'PHONE_US',
      'PHONE_INTERNATIONAL',
      'POSTCODE_UK',
      'ZIP_CODE_US',
      'ADDRESS_STREET',
      'ADDRESS_PO_BOX',
      'IPV4',
      'IPV6',
      'LINKEDIN_PROFILE',
      'SOCIAL_MEDIA_HANDLE',
    ];
    for (const [label, opts] of [
      ['openredaction (default)', {}],
      ['openredaction (our types only)', { patterns: restrictedPatterns }],
    ] as const) {
      const shield = new OpenRedaction(opts);
      systems.push({
        name: label,
        version: pkgVersion('@openredaction/openredaction'),
        mapping: label.includes('only') ? `${mapping}; patterns limited to ${restrictedPatterns.join(', ')}` : mapping,
        detect: async (t) => {
          const r = await shield.detect(t);
          return r.detections.map((d) => ({ type: map(d.type), start: d.position[0], end: d.position[1] }));
        },
      });
    }
  } catch (err) {
    console.warn('@openredaction/openredaction not available:', (err as Error).message);
  }

  try {
    const { redact } = await import('@arcjet/redact');
    const entities = ['email', 'phone-number', 'credit-card-number', 'ip-address'] as const;
    const types: PredType[] = ['EMAIL', 'PHONE', 'CREDIT_CARD', 'IP_ADDRESS'];
    systems.push({
      name: '@arcjet/redact',
      version: pkgVersion('@arcjet/redact'),
      mapping:
        'email→EMAIL, phone-number→PHONE, credit-card-number→CREDIT_CARD, ip-address→IP_ADDRESS (it has no other types). Spans recovered by aligning the redacted text.',
      detect: async (t) => {
        const [out] = await redact(t, {
          entities,
          replace: (e) => String.fromCharCode(MARK + entities.indexOf(e as (typeof entities)[number])),
        });
        return alignMarkers(t, out, types);
      },
    });
  } catch (err) {
    console.warn('@arcjet/redact not available:', (err as Error).message);
  }
  return values.only ? systems.filter((s) => s.name.startsWith(values.only!)) : systems;
}

// ---------------------------------------------------------------------------------------------------------------
// Scoring

interface TypeScore {
  gold: number;
  found: number;
  predChars: number;
  predCharsInGold: number;
}
interface Score {
  perType: Record<string, TypeScore>;
  predChars: number;
  predCharsInGold: number;
}

function emptyScore(): Score {
  const perType: Record<string, TypeScore> = {};
  for (const t of [...PII_TYPES, 'OTHER']) perType[t] = { gold: 0, found: 0, predChars: 0, predCharsInGold: 0 };
  return { perType, predChars: 0, predCharsInGold: 0 };
}

interface Miss {
  id: string;
  kind: 'missed' | 'false positive' | 'wrong type';
  type: string;
  value: string;
}

function scoreRow(score: Score, row: Row, preds: Pred[], misses?: Miss[]): void {
  const inGold = new Uint8Array(row.text.length);
  for (const g of row.entities) inGold.fill(1, g.start, g.end);
  for (const g of row.entities) {
    const ts = score.perType[g.type]!;
    ts.gold++;
    const len = g.end - g.start;
    const hit = preds.some(
      (p) => p.type === g.type && Math.min(p.end, g.end) - Math.max(p.start, g.start) >= Math.ceil(len * 0.5),
    );
    if (hit) ts.found++;
    else if (misses) {
      const other = preds.find((p) => Math.min(p.end, g.end) - Math.max(p.start, g.start) > 0);
      misses.push({
        id: row.id,
        kind: other ? 'wrong type' : 'missed',
        type: other ? `${g.type} (got ${other.type} "${row.text.slice(other.start, other.end)}")` : g.type,
        value: g.value,
      });
    }
  }
  for (const p of preds) {
    const ts = score.perType[p.type]!;
    let inside = 0;
    for (let i = p.start; i < p.end; i++) inside += inGold[i]!;
    ts.predChars += p.end - p.start;
    ts.predCharsInGold += inside;
    score.predChars += p.end - p.start;
    score.predCharsInGold += inside;
    if (misses && inside < (p.end - p.start) * 0.5)
      misses.push({ id: row.id, kind: 'false positive', type: p.type, value: row.text.slice(p.start, p.end) });
  }
}

const ratio = (a: number, b: number) => (b === 0 ? null : Math.round((a / b) * 1000) / 1000);

/** Each system's predictions for every row, computed once and scored per split. */
async function predictAll(sys: System): Promise<Pred[][]> {
  const out: Pred[][] = [];
  for (const row of rows) out.push(await sys.detect(row.text));
  return out;
}

function evaluate(preds: Pred[][], split: Split | 'all', misses?: Miss[]): Score {
  const score = emptyScore();
  rows.forEach((row, i) => {
    if (split !== 'all' && row.split !== split) return;
    scoreRow(score, row, preds[i]!, misses);
  });
  return score;
}

interface Throughput {
  /** Median over the chunks, wall clock: robust to another process taking the core for a moment. */
  mbPerS: number;
  /** Over the whole run, wall clock. */
  mbPerSMean: number;
  /** Over the whole run, process CPU time (user + system, so GC threads count too). */
  mbPerCpuS: number;
  mb: number;
  s: number;
}

/**
 * MB of text a second: the corpus repeated to TARGET_MB (or until `limitSeconds`), timed in five chunks after a
 * warm-up over the whole corpus.
 */
async function throughput(sys: System, limitSeconds: number): Promise<Throughput> {
  const texts = rows.map((r) => r.text);
  const corpusChars = texts.reduce((n, t) => n + t.length, 0);
  const passes = Math.ceil((TARGET_MB * 1e6) / corpusChars);
  const isAsync = sys.detect(texts[0]!) instanceof Promise;
  const warmUntil = performance.now() + Math.min(3000, limitSeconds * 100);
  do for (const t of texts) await sys.detect(t);
  while (performance.now() < warmUntil);
  const chunks = 5;
  const perChunk = Math.max(1, Math.ceil(passes / chunks));
  const rates: number[] = [];
  let chars = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let c = 0; c < chunks; c++) {
    const c0 = performance.now();
    let cc = 0;
    for (let p = 0; p < perChunk; p++) {
      for (const t of texts) {
        if (isAsync) await sys.detect(t);
        else void sys.detect(t);
        cc += t.length;
      }
      if ((performance.now() - t0) / 1000 > limitSeconds) break;
    }
    chars += cc;
    rates.push(cc / 1e6 / ((performance.now() - c0) / 1000));
    if ((performance.now() - t0) / 1000 > limitSeconds) break;
  }
  const s = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const round = (x: number) => Math.round(x * 100) / 100;
  const median = [...rates].sort((x, y) => x - y)[Math.floor(rates.length / 2)]!;
  return {
    mbPerS: round(median),
    mbPerSMean: round(chars / 1e6 / s),
    mbPerCpuS: round(chars / 1e6 / cpuS),
    mb: round(chars / 1e6),
    s: round(s),
  };
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * How fast this machine is right now: a plain hash over every character of the corpus, timed like the systems.
 * On a shared machine the MB/s figures move with it; the ratio to this probe is steadier.
 */
function machineProbe(): number {
  const texts = rows.map((r) => r.text);
  const chars = texts.reduce((n, t) => n + t.length, 0);
  let h = 0;
  const run = () => {
    for (const t of texts) for (let i = 0; i < t.length; i++) h = (Math.imul(h, 31) + t.charCodeAt(i)) | 0;
  };
  for (let i = 0; i < 20; i++) run();
  const t0 = performance.now();
  for (let i = 0; i < 100; i++) run();
  const rate = (chars * 100) / 1e6 / ((performance.now() - t0) / 1000);
  return h === 42 ? rate + 1e-9 : Math.round(rate);
}

async function main() {
  const probeBefore = machineProbe();
  // Ours is timed before any library is imported, so their module graphs and heaps do not weigh on it.
  const ours = await throughput(OURS, Infinity);
  const probeAfter = machineProbe();
  const systems = await loadSystems();
  const splits = ['all', 'dev', 'test'] as const;
  const results: Record<string, unknown>[] = [];
  const recallTable: Record<string, Record<string, number | string | null>> = {};
  const precisionTable: Record<string, Record<string, number | string | null>> = {};
  const summary: Record<string, Record<string, number | string | null>> = {};
  const bars: Record<string, { result: string; failing: string }> = {};

  for (const sys of systems) {
    const perSplit: Record<string, Score> = {};
    // Speed first, in the state a fresh process gives every system; accuracy after.
    const speed = sys === OURS ? ours : await throughput(sys, LIB_SECONDS);
    const preds = await predictAll(sys);
    for (const split of splits) perSplit[split] = evaluate(preds, split);
    for (const split of splits) {
      const sc = perSplit[split]!;
      const key = `${sys.name} [${split}]`;
      recallTable[key] = {};
      precisionTable[key] = {};
      for (const t of PII_TYPES) {
        const ts = sc.perType[t]!;
        recallTable[key][t] = ratio(ts.found, ts.gold);
        precisionTable[key][t] = ratio(ts.predCharsInGold, ts.predChars);
      }
      precisionTable[key].OTHER = ratio(sc.perType.OTHER!.predCharsInGold, sc.perType.OTHER!.predChars);
      const overallP = ratio(sc.predCharsInGold, sc.predChars);
      const failing = [
        ...PII_TYPES.filter((t) => {
          const r = recallTable[key]![t];
          return typeof r === 'number' && r < RECALL_BAR(t);
        }).map((t) => `${t} recall ${recallTable[key]![t]}`),
        ...(overallP !== null && overallP < PRECISION_BAR ? [`char precision ${overallP}`] : []),
      ];
      bars[key] = { result: failing.length === 0 ? 'PASS' : 'FAIL', failing: failing.join('; ') };
      summary[key] = {
        'char precision': overallP,
        'PERSON recall': recallTable[key].PERSON ?? null,
        'pattern-type recall (min)': Math.min(...PATTERN_TYPES.map((t) => (recallTable[key]![t] as number) ?? 1)),
        'MB/s': speed.mbPerS,
        'MB/s (mean)': speed.mbPerSMean,
        'MB/s (CPU)': speed.mbPerCpuS,
        bars: bars[key].result,
      };
      results.push({
        system: sys.name,
        version: sys.version,
        split,
        typeMapping: sys.mapping,
        recall: recallTable[key],
        charPrecision: precisionTable[key],
        overallCharPrecision: overallP,
        gold: Object.fromEntries(PII_TYPES.map((t) => [t, sc.perType[t]!.gold])),
        throughput: speed,
        bars: bars[key],
      });
    }
  }

  console.log(
    `\nPII engine ${PII_ENGINE_VERSION} vs libraries — ${rows.length} rows (${os.cpus()[0]?.model}, Node ${process.version})`,
  );
  console.log(
    `Machine probe (a plain hash over every character, MB/s): ${probeBefore} before and ${probeAfter} after timing ` +
      `ours; ours runs at 1/${Math.round(((probeBefore + probeAfter) / 2 / ours.mbPerS) * 10) / 10} of that speed.`,
  );
  console.log('\nSummary');
  console.table(summary);
  console.log('\nEntity recall by type (found ≥ 50% of a gold entity with the same type)');
  console.table(recallTable);
  console.log('\nCharacter precision by type (share of predicted characters inside any gold entity)');
  console.table(precisionTable);
  console.log('\nBars (recall ≥ 0.98 pattern/checksum types, ≥ 0.85 PERSON; char precision ≥ 0.90):');
  for (const [k, v] of Object.entries(bars)) console.log(`  ${v.result}  ${k}${v.failing ? ` — ${v.failing}` : ''}`);
  for (const sys of systems) console.log(`\n  ${sys.name} ${sys.version}: ${sys.mapping}`);

  if (values.errors) {
    const misses: Miss[] = [];
    evaluate(await predictAll(systems[0]!), 'dev', misses);
    console.log(`\nOurs on dev: ${misses.length} errors`);
    for (const m of misses)
      console.log(`  ${m.id}  ${m.kind.padEnd(15)} ${m.type.padEnd(14)} ${JSON.stringify(m.value)}`);
  }

  const out = path.join(root, 'bench/results/pii.json');
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(
    out,
    JSON.stringify(
      {
        engineVersion: PII_ENGINE_VERSION,
        date: new Date().toISOString(),
        machine: {
          cpu: os.cpus()[0]?.model,
          cores: os.cpus().length,
          node: process.version,
          probeMbPerS: { before: probeBefore, after: probeAfter },
        },
        evalSet: { rows: rows.length, dev: rows.filter((r) => r.split === 'dev').length },
        rule: 'entity recall: a predicted entity of the same type covers >= 50% of the gold entity; char precision: share of predicted characters inside any gold entity',
        results,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${path.relative(root, out)}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
