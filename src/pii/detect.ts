import { findAddresses, findPostcodes } from './address';
import type { Candidate } from './candidate';
import {
  findCards,
  findDatesOfBirth,
  findEmailsAndHandles,
  findIbans,
  findIps,
  findNhsAndSsn,
  findPhones,
  findUrls,
} from './patterns';
import { findPersons, type PersonOptions } from './person';
import { findScriptureRefs } from './scripture';
import type { PiiEntity } from './types';

const HAS_DIGIT = /\d/;

/** Every candidate from every recognizer, overlaps included. Recognizers whose trigger is absent are skipped. */
export function findCandidates(text: string, opts: PersonOptions = {}): Candidate[] {
  const out: Candidate[] = [];
  if (text.length === 0) return out;
  const hasAt = text.includes('@');
  const hasDot = text.includes('.');
  const hasDigit = HAS_DIGIT.test(text);
  if (hasAt) findEmailsAndHandles(text, out);
  if (hasDot) findUrls(text, out);
  if (hasDigit) {
    findCards(text, out);
    findIbans(text, out);
    findNhsAndSsn(text, out);
    findIps(text, out);
    findPhones(text, out);
    findDatesOfBirth(text, out);
    findAddresses(text, out);
    findPostcodes(text, out);
    findScriptureRefs(text, out);
  } else if (text.includes(':')) {
    findIps(text, out); // IPv6 like "::ffff" can be all letters
  }
  findPersons(text, out, opts);
  return out;
}

/**
 * Overlaps go to the higher priority, then the longer span, then the earlier start. Blockers (type null) take
 * their span and are then dropped. Occupancy is tracked per character, so resolution stays linear in the text
 * even with many candidates.
 */
export function resolve(text: string, candidates: Candidate[]): PiiEntity[] {
  if (candidates.length === 0) return [];
  const sorted = [...candidates].sort(
    (a, b) => b.priority - a.priority || b.end - b.start - (a.end - a.start) || a.start - b.start,
  );
  const taken = new Uint8Array(text.length);
  const kept: PiiEntity[] = [];
  for (const c of sorted) {
    if (c.end <= c.start) continue;
    let free = true;
    for (let i = c.start; i < c.end; i++) {
      if (taken[i]) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    taken.fill(1, c.start, c.end);
    if (c.type) kept.push({ type: c.type, start: c.start, end: c.end });
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** All PII in `text`: sorted, non-overlapping spans in UTF-16 indices, `end` exclusive. */
export function detect(text: string, opts: PersonOptions = {}): PiiEntity[] {
  return resolve(text, findCandidates(text, opts));
}
