import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  buildJsonl,
  DOMAINS,
  ENTITY_TYPES,
  JSONL_PATH,
  parseMarkup,
  parseSource,
  SOURCE_PATH,
  SPLITS,
  type EntityType,
  type EvalItem,
} from '../pii/build-eval-set';

// The checkers below are deliberately written here, independently of src/pii: the set measures the engine.

/** Luhn check over the digits of `value` (spaces and dashes ignored). */
function luhnValid(value: string): boolean {
  const digits = value.replace(/[ -]/g, '');
  if (!/^\d+$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = Number(digits[digits.length - 1 - i]);
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** ISO 13616 mod-97 check (spaces ignored). */
function ibanValid(value: string): boolean {
  const iban = value.replace(/ /g, '');
  if (!/^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/.test(iban)) return false;
  const rearranged = iban.slice(4) + iban.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const n = /\d/.test(ch) ? ch : String(ch.charCodeAt(0) - 55);
    for (const digit of n) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}

/** NHS number mod-11 check: weights 10..2 over the first nine digits; 10 as a check digit is never valid. */
function nhsValid(value: string): boolean {
  const digits = value.replace(/[ -]/g, '');
  if (!/^\d{10}$/.test(digits)) return false;
  let sum = 0;
  for (let i = 0; i < 9; i++) sum += Number(digits[i]) * (10 - i);
  const check = (11 - (sum % 11)) % 11;
  return check !== 10 && check === Number(digits[9]);
}

/** SSN structure: area not 000, 666 or 9xx; group not 00; serial not 0000. */
function ssnValid(value: string): boolean {
  const m = /^(\d{3})-?(\d{2})-?(\d{4})$/.exec(value);
  if (!m) return false;
  const [, area = '', group = '', serial = ''] = m;
  return area !== '000' && area !== '666' && !area.startsWith('9') && group !== '00' && serial !== '0000';
}

const POSTCODE_SHAPES = [
  /^[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}$/, // UK
  /^\d{5}(-\d{4})?$/, // US ZIP / ZIP+4, German and French 5-digit
  /^\d{4} [A-Z]{2}$/, // Dutch
  /^(?:[AC-FHKNPRTV-Y]\d{2}|D6W) [0-9AC-FHKNPRTV-Y]{4}$/, // Irish Eircode
];

const TITLES = /^(?:Dr|Mr|Mrs|Ms|Miss|Mx|Prof|Coach|Pastor|Rev|Revd|Father|Fr|Sister|Sir|Dame)\.?\s/i;

const items: EvalItem[] = readFileSync(JSONL_PATH, 'utf8')
  .split('\n')
  .filter((line) => line !== '')
  .map((line) => JSON.parse(line) as EvalItem);
const entities = items.flatMap((item) => item.entities.map((entity) => ({ item, entity })));

function ofType(type: EntityType) {
  return entities.filter(({ entity }) => entity.type === type);
}

/** The text with every labeled span blanked out (same length), so scans only see unlabeled text. */
function unlabeled(item: EvalItem): string {
  let text = item.text;
  for (const e of item.entities) text = text.slice(0, e.start) + '\u2591'.repeat(e.end - e.start) + text.slice(e.end);
  return text;
}

describe('PII eval set: file integrity', () => {
  it('the committed jsonl is exactly what the source builds to', () => {
    expect(readFileSync(JSONL_PATH, 'utf8')).toBe(buildJsonl(SOURCE_PATH));
  });

  it('every line has exactly the contract fields', () => {
    for (const item of items) {
      expect(Object.keys(item)).toEqual(['id', 'domain', 'split', 'text', 'entities']);
      for (const e of item.entities) expect(Object.keys(e)).toEqual(['type', 'start', 'end', 'value']);
    }
  });

  it('ids are unique and domains, splits and types come from the lists', () => {
    expect(new Set(items.map((i) => i.id)).size).toBe(items.length);
    for (const item of items) {
      expect(DOMAINS).toContain(item.domain);
      expect(SPLITS).toContain(item.split);
      for (const e of item.entities) expect(ENTITY_TYPES).toContain(e.type);
    }
  });

  it('every slice equals its value; entities are sorted, non-empty and non-overlapping', () => {
    for (const item of items) {
      let previousEnd = 0;
      for (const e of item.entities) {
        expect(Number.isInteger(e.start) && Number.isInteger(e.end), item.id).toBe(true);
        expect(e.start, `${item.id} ${e.value}`).toBeGreaterThanOrEqual(previousEnd);
        expect(e.end, `${item.id} ${e.value}`).toBeGreaterThan(e.start);
        expect(e.end, `${item.id} ${e.value}`).toBeLessThanOrEqual(item.text.length);
        expect(item.text.slice(e.start, e.end), item.id).toBe(e.value);
        expect(e.value.trim(), item.id).toBe(e.value);
        previousEnd = e.end;
      }
    }
  });

  it('texts are non-empty, NFC-normalised and contain no leftover markup', () => {
    for (const item of items) {
      expect(item.text.trim().length, item.id).toBeGreaterThan(0);
      expect(item.text.normalize('NFC'), item.id).toBe(item.text);
      expect(item.text, item.id).not.toMatch(/\[\[|\]\]/);
    }
  });

  it('offsets are UTF-16 code units (emoji and accents before an entity)', () => {
    const { text, entities: found } = parseMarkup('🏃‍♀️ Zoë here: [[PERSON:Siobhán]] 💙 [[EMAIL:a@b.ie]]', 'inline');
    expect(found).toEqual([
      { type: 'PERSON', start: 16, end: 23, value: 'Siobhán' },
      { type: 'EMAIL', start: 27, end: 33, value: 'a@b.ie' },
    ]);
    for (const e of found) expect(text.slice(e.start, e.end)).toBe(e.value);
  });

  it('the parser rejects malformed source', () => {
    expect(() => parseSource('=== wb-001 wellbeing dev\nhi [[NAME:Sam]]\n')).toThrow(/unknown entity type/);
    expect(() => parseSource('=== wb-001 wellbeing dev\nhi [[PERSON:Sam]\n')).toThrow(/unbalanced/);
    expect(() => parseSource('=== wb-001 fitness dev\nhi\n')).toThrow(/id wb-001 vs fitness/);
    expect(() => parseSource('=== wb-001 wellbeing dev\nhi\n=== wb-001 wellbeing test\nyo\n')).toThrow(/duplicate/);
    expect(() => parseSource('=== wb-001 wellbeing dev\n\n')).toThrow(/empty text/);
  });
});

describe('PII eval set: size and balance', () => {
  it('has at least 360 texts and at least 60 per domain', () => {
    expect(items.length).toBeGreaterThanOrEqual(360);
    for (const domain of DOMAINS) {
      expect(items.filter((i) => i.domain === domain).length, domain).toBeGreaterThanOrEqual(60);
    }
  });

  it('at least 30% of texts are negatives (no entities)', () => {
    const negatives = items.filter((i) => i.entities.length === 0).length;
    expect(negatives / items.length).toBeGreaterThanOrEqual(0.3);
  });

  it('every type has at least 20 labeled instances', () => {
    for (const type of ENTITY_TYPES) expect(ofType(type).length, type).toBeGreaterThanOrEqual(20);
  });

  it('splits alternate dev/test within each domain, in source order', () => {
    for (const domain of DOMAINS) {
      const splits = items.filter((i) => i.domain === domain).map((i) => i.split);
      splits.forEach((split, index) => expect(split, `${domain} #${index + 1}`).toBe(index % 2 === 0 ? 'dev' : 'test'));
    }
  });

  it('both splits hold every domain, negatives and every type in similar proportion', () => {
    for (const type of ENTITY_TYPES) {
      const all = ofType(type);
      const dev = all.filter(({ item }) => item.split === 'dev').length;
      expect(Math.min(dev, all.length - dev) / all.length, type).toBeGreaterThanOrEqual(0.35);
    }
    for (const split of SPLITS) {
      const inSplit = items.filter((i) => i.split === split);
      for (const domain of DOMAINS) expect(inSplit.some((i) => i.domain === domain)).toBe(true);
      const negatives = inSplit.filter((i) => i.entities.length === 0).length;
      expect(negatives / inSplit.length, split).toBeGreaterThanOrEqual(0.3);
    }
  });
});

describe('PII eval set: labeled values are well formed', () => {
  it('every CREDIT_CARD is 13-19 digits and passes Luhn', () => {
    for (const { item, entity } of ofType('CREDIT_CARD')) {
      expect(entity.value, item.id).toMatch(/^\d(?:[ -]?\d){12,18}$/);
      expect(luhnValid(entity.value), `${item.id} ${entity.value}`).toBe(true);
    }
  });

  it('every IBAN passes mod-97', () => {
    for (const { item, entity } of ofType('IBAN')) {
      expect(ibanValid(entity.value), `${item.id} ${entity.value}`).toBe(true);
    }
  });

  it('every NHS_NUMBER passes mod-11', () => {
    for (const { item, entity } of ofType('NHS_NUMBER')) {
      expect(entity.value, item.id).toMatch(/^\d{3}[ -]?\d{3}[ -]?\d{4}$/);
      expect(nhsValid(entity.value), `${item.id} ${entity.value}`).toBe(true);
    }
  });

  it('every SSN has a valid area, group and serial, and some are unformatted', () => {
    for (const { item, entity } of ofType('SSN'))
      expect(ssnValid(entity.value), `${item.id} ${entity.value}`).toBe(true);
    expect(ofType('SSN').some(({ entity }) => /^\d{9}$/.test(entity.value))).toBe(true);
  });

  it('every IP_ADDRESS parses, and both IPv4 and IPv6 (full and compressed) occur', () => {
    for (const { item, entity } of ofType('IP_ADDRESS'))
      expect(isIP(entity.value), `${item.id} ${entity.value}`).not.toBe(0);
    const values = ofType('IP_ADDRESS').map(({ entity }) => entity.value);
    expect(values.some((v) => isIP(v) === 4)).toBe(true);
    expect(values.some((v) => isIP(v) === 6 && v.includes('::'))).toBe(true);
    expect(values.some((v) => isIP(v) === 6 && v.split(':').length === 8)).toBe(true);
  });

  it('every EMAIL, PHONE, POSTCODE, SOCIAL_HANDLE and URL has the expected shape', () => {
    for (const { item, entity } of ofType('EMAIL'))
      expect(entity.value, item.id).toMatch(/^[\w.+-]+@[\w-]+(\.[\w-]+)+$/);
    for (const { item, entity } of ofType('PHONE')) {
      expect(entity.value, item.id).toMatch(/^[+(\d][\d ().-]+\d$/);
      expect(entity.value.replace(/\D/g, '').length, `${item.id} ${entity.value}`).toBeGreaterThanOrEqual(10);
    }
    for (const { item, entity } of ofType('POSTCODE')) {
      expect(
        POSTCODE_SHAPES.some((re) => re.test(entity.value)),
        `${item.id} ${entity.value}`,
      ).toBe(true);
    }
    for (const { item, entity } of ofType('SOCIAL_HANDLE')) expect(entity.value, item.id).toMatch(/^@[\w.]*\w$/);
    for (const { item, entity } of ofType('URL')) {
      expect(entity.value, item.id).toMatch(/^(https?:\/\/)?[\w.-]+\.[a-z]{2,}(\/\S*)?$/);
      expect(entity.value, item.id).not.toMatch(/[.,;:!?)]$/);
    }
  });

  it('PERSON spans exclude titles and possessive s; ADDRESS spans exclude the postcode', () => {
    for (const { item, entity } of ofType('PERSON')) {
      expect(entity.value, item.id).not.toMatch(TITLES);
      expect(entity.value, item.id).not.toMatch(/['’]s$/);
      expect(entity.value, item.id).not.toMatch(/\d/);
    }
    for (const { item, entity } of ofType('ADDRESS')) {
      expect(entity.value, item.id).toMatch(/\d/);
      const lastToken = entity.value.split(/[ ,]+/).slice(-2).join(' ');
      expect(
        POSTCODE_SHAPES.some((re) => re.test(lastToken) || re.test(entity.value.split(' ').at(-1) ?? '')),
        item.id,
      ).toBe(false);
    }
  });

  it('every DATE_OF_BIRTH contains a day or year number', () => {
    for (const { item, entity } of ofType('DATE_OF_BIRTH')) expect(entity.value, item.id).toMatch(/\d/);
  });
});

describe('PII eval set: nothing checkable is left unlabeled', () => {
  // These scans only look at text outside labeled spans. They keep the negatives honest: an order number that
  // happens to pass Luhn, or a forgotten email, would silently turn a true positive into a "negative".
  it('no unlabeled Luhn-valid 13-19 digit number', () => {
    for (const item of items) {
      for (const m of unlabeled(item).matchAll(/(?<!\d[ -]?)\d(?:[ -]?\d){12,18}(?![ -]?\d)/g)) {
        expect(luhnValid(m[0]), `${item.id}: ${m[0]}`).toBe(false);
      }
    }
  });

  it('no unlabeled mod-97-valid IBAN', () => {
    for (const item of items) {
      for (const m of unlabeled(item).matchAll(/\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b/g)) {
        expect(ibanValid(m[0]), `${item.id}: ${m[0]}`).toBe(false);
      }
    }
  });

  it('no unlabeled mod-11-valid NHS-shaped number', () => {
    for (const item of items) {
      for (const m of unlabeled(item).matchAll(/(?<!\d[ -]?)\d{3}[ -]?\d{3}[ -]?\d{4}(?![ -]?\d)/g)) {
        expect(nhsValid(m[0]), `${item.id}: ${m[0]}`).toBe(false);
      }
    }
  });

  it('no unlabeled valid SSN in 123-45-6789 form', () => {
    for (const item of items) {
      for (const m of unlabeled(item).matchAll(/(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])/g)) {
        expect(ssnValid(m[0]), `${item.id}: ${m[0]}`).toBe(false);
      }
    }
  });

  it('no unlabeled IPv4 or IPv6 address', () => {
    for (const item of items) {
      const text = unlabeled(item);
      for (const m of text.matchAll(/(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?!\.?\d)/g)) {
        expect(isIP(m[0]), `${item.id}: ${m[0]}`).toBe(0);
      }
      for (const m of text.matchAll(/[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}/gi)) {
        if (!/[0-9a-f]/i.test(m[0])) continue; // a bare "::" in prose
        expect(isIP(m[0]), `${item.id}: ${m[0]}`).toBe(0);
      }
    }
  });

  it('no unlabeled email address or @handle', () => {
    for (const item of items) {
      const text = unlabeled(item);
      expect(text, item.id).not.toMatch(/[\w.+-]+@[\w-]+\.\w/);
      expect(text, item.id).not.toMatch(/(?<![\w.])@\w/);
    }
  });
});
