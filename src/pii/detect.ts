import type { Candidate } from './candidate';
import type { PersonOptions } from './person';
import { scanCandidates } from './scanner';
import type { PiiEntity } from './types';

/** Every candidate from every recognizer, overlaps included. */
export function findCandidates(text: string, opts: PersonOptions = {}): Candidate[] {
  return text.length === 0 ? [] : scanCandidates(text, opts.knownNames);
}

/**
 * Overlaps go to the higher priority, then the longer span, then the earlier start. Blockers (type null) take
 * their span and are then dropped. Occupancy is tracked per character, so resolution stays linear in the text
 * even with many candidates.
 */
export function resolve(text: string, candidates: Candidate[]): PiiEntity[] {
  if (candidates.length === 0) return [];
  if (candidates.length === 1) {
    const c = candidates[0]!;
    return c.type && c.end > c.start ? [{ type: c.type, start: c.start, end: c.end }] : [];
  }
  const sorted = [...candidates].sort(
    (a, b) => b.priority - a.priority || b.end - b.start - (a.end - a.start) || a.start - b.start,
  );
  const kept: PiiEntity[] = [];
  if (sorted.length <= 16) {
    // Few candidates (the usual case): compare spans directly.
    const taken: Candidate[] = [];
    for (const c of sorted) {
      if (c.end <= c.start || taken.some((t) => t.start < c.end && c.start < t.end)) continue;
      taken.push(c);
      if (c.type) kept.push({ type: c.type, start: c.start, end: c.end });
    }
    return kept.sort((a, b) => a.start - b.start);
  }
  // Many candidates (long texts): per-character occupancy keeps this linear.
  const occupied = new Uint8Array(text.length);
  for (const c of sorted) {
    if (c.end <= c.start) continue;
    let free = true;
    for (let i = c.start; i < c.end; i++) {
      if (occupied[i]) {
        free = false;
        break;
      }
    }
    if (!free) continue;
    occupied.fill(1, c.start, c.end);
    if (c.type) kept.push({ type: c.type, start: c.start, end: c.end });
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** All PII in `text`: sorted, non-overlapping spans in UTF-16 indices, `end` exclusive. */
export function detect(text: string, opts: PersonOptions = {}): PiiEntity[] {
  return resolve(text, findCandidates(text, opts));
}
