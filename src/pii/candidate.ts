import type { PiiType } from './types';

/**
 * A possible entity before overlaps are resolved. `type: null` is a blocker: a span that looks like PII but is
 * known not to be (a scripture reference, a general URL); it wins its span and is dropped from the output, so a
 * weaker recognizer cannot claim part of it.
 */
export interface Candidate {
  type: PiiType | null;
  start: number;
  end: number;
  priority: number;
}

/** Higher wins an overlap; equal priorities prefer the longer span. */
export const PRIORITY = {
  EMAIL: 100,
  URL: 95,
  IBAN: 90,
  CREDIT_CARD: 85,
  SSN: 80,
  NHS_NUMBER: 78,
  IP_ADDRESS: 75,
  PHONE: 70,
  DATE_OF_BIRTH: 65,
  POSTCODE: 60,
  ADDRESS: 55,
  SOCIAL_HANDLE: 50,
  BLOCKER: 45,
  PERSON: 40,
} as const;
