import { detect } from './detect';
import type { PiiEntity, PiiType } from './types';
import { digitsOf } from './validators';

export interface Redaction {
  /** The input with each entity replaced by its placeholder. */
  text: string;
  /** Entities found, in offsets of the input string. */
  entities: PiiEntity[];
}

export interface Redactor {
  redact(text: string): Redaction;
}

/** The value that decides "same entity": case, spacing, accents and separators do not make a new placeholder. */
export function normalizeValue(type: PiiType, value: string): string {
  const folded = value
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase();
  switch (type) {
    case 'PHONE': {
      let d = digitsOf(value);
      const intl = /^\s*(?:\+|00)/.test(value);
      if (intl && d.startsWith('0044')) d = d.slice(2);
      if (intl && d.startsWith('44')) d = '0' + d.slice(2).replace(/^0/, '');
      else if (d.length === 11 && d.startsWith('1')) d = d.slice(1);
      return d;
    }
    case 'CREDIT_CARD':
    case 'NHS_NUMBER':
    case 'SSN':
      return digitsOf(value);
    case 'IBAN':
    case 'POSTCODE':
      return folded.replace(/[\s-]/g, '');
    case 'URL':
      return folded.replace(/^https?:\/\//, '').replace(/^www\./, '').replace(/\/+$/, '');
    case 'PERSON':
      return folded.replace(/['’]s$/, '').replace(/[\s.]+/g, ' ').trim();
    default:
      return folded.replace(/[\s,]+/g, ' ').trim();
  }
}

/**
 * A redactor for one interaction: the same value gets the same placeholder in every call (`<PERSON_1>` in turn 1
 * and turn 5), numbered per type by first appearance. Placeholders carry no trace of the value. Names found in
 * earlier turns are also looked for in later ones, so "my daughter Grace" makes a later "Grace said" a name.
 */
export function createRedactor(): Redactor {
  const placeholders = new Map<string, string>();
  const counters = new Map<PiiType, number>();
  const knownNames = new Set<string>();

  const placeholderFor = (type: PiiType, value: string): string => {
    const key = `${type}\u0000${normalizeValue(type, value)}`;
    let p = placeholders.get(key);
    if (!p) {
      const n = (counters.get(type) ?? 0) + 1;
      counters.set(type, n);
      p = `<${type}_${n}>`;
      placeholders.set(key, p);
    }
    return p;
  };

  return {
    redact(text: string): Redaction {
      const entities = detect(text, { knownNames });
      let out = '';
      let pos = 0;
      for (const e of entities) {
        const value = text.slice(e.start, e.end);
        out += text.slice(pos, e.start) + placeholderFor(e.type, value);
        pos = e.end;
        if (e.type === 'PERSON') for (const w of value.toLowerCase().split(/\s+/)) knownNames.add(w);
      }
      out += text.slice(pos);
      return { text: out, entities };
    },
  };
}
