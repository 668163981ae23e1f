import { detect } from './detect';
import type { PiiEntity, PiiType } from './types';
import { digitsOf } from './validators';

export interface Redaction {
  /** The input with each entity replaced by its placeholder. */
  text: string;
  /** Entities found, in offsets (UTF-16) of the input string. */
  entities: PiiEntity[];
}

export interface Redactor {
  redact(text: string): Redaction;
}

/** Case, accents, spacing and separators do not make a new value: "Zoë" is "zoe", "+44 7700 900123" is "07700900123". */
export function normalizeValue(type: PiiType, value: string): string {
  const folded = value.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase();
  switch (type) {
    case 'PHONE': {
      let d = digitsOf(value);
      const intl = /^\s*(?:\+|00)/.test(value);
      if (intl && d.startsWith('00')) d = d.slice(2);
      // A UK number written internationally is the same line as its national form: +44 (0)7700… = 07700…
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
      return folded
        .replace(/^https?:\/\//, '')
        .replace(/^www\./, '')
        .replace(/\/+$/, '');
    case 'PERSON':
      return folded
        .replace(/['’]s$/, '')
        .replace(/[\s.]+/g, ' ')
        .trim();
    default:
      return folded.replace(/[\s,]+/g, ' ').trim();
  }
}

/**
 * A redactor for one interaction. The same value gets the same placeholder in every call (`<PERSON_1>` in turn 1
 * and in turn 5), numbered per type by first appearance; placeholders carry nothing of the value (no hash), so
 * they cannot be reversed. A first name alone and the full name it belongs to share a placeholder when that is
 * unambiguous ("Sarah Jones", later "Sarah"). Names found in earlier turns are looked for in later ones, so
 * "my daughter Grace" makes a later "Grace said" a name too.
 */
export function createRedactor(): Redactor {
  const placeholders = new Map<string, string>();
  const counters = new Map<PiiType, number>();
  const knownNames = new Set<string>();
  // PERSON linking: a word → the placeholders of the multi-word names that start or end with it.
  const personParts = new Map<string, Set<string>>();

  const fresh = (type: PiiType): string => {
    const n = (counters.get(type) ?? 0) + 1;
    counters.set(type, n);
    return `<${type}_${n}>`;
  };

  const personPlaceholder = (norm: string): string => {
    const exact = placeholders.get(`PERSON\u0000${norm}`);
    if (exact) return exact;
    const words = norm.split(' ');
    let p: string | undefined;
    if (words.length === 1) {
      // "Sarah" after "Sarah Jones", "Jones" after "Sarah Jones": the one person it can be.
      const owners = personParts.get(norm);
      if (owners?.size === 1) p = [...owners][0];
    } else {
      // "Sarah Jones" after "Sarah": the same person, if no other full name owns "Sarah".
      const first = placeholders.get(`PERSON\u0000${words[0]}`);
      const owners = personParts.get(words[0]!);
      if (first && (!owners || (owners.size === 1 && owners.has(first)))) p = first;
    }
    p ??= fresh('PERSON');
    placeholders.set(`PERSON\u0000${norm}`, p);
    if (words.length > 1) {
      for (const w of [words[0]!, words[words.length - 1]!]) {
        let owners = personParts.get(w);
        if (!owners) personParts.set(w, (owners = new Set()));
        owners.add(p);
      }
    }
    return p;
  };

  const placeholderFor = (type: PiiType, value: string): string => {
    const norm = normalizeValue(type, value);
    if (type === 'PERSON') return personPlaceholder(norm);
    const key = `${type}\u0000${norm}`;
    let p = placeholders.get(key);
    if (!p) placeholders.set(key, (p = fresh(type)));
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
        if (e.type === 'PERSON') for (const w of value.toLowerCase().split(/[\s.]+/)) if (w) knownNames.add(w);
      }
      out += text.slice(pos);
      return { text: out, entities };
    },
  };
}
