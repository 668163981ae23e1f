/** The kinds of personal data the engine finds. The names are part of the placeholder format (`<PERSON_1>`). */
export const PII_TYPES = [
  'PERSON',
  'EMAIL',
  'PHONE',
  'ADDRESS',
  'POSTCODE',
  'CREDIT_CARD',
  'IBAN',
  'NHS_NUMBER',
  'SSN',
  'IP_ADDRESS',
  'URL',
  'SOCIAL_HANDLE',
  'DATE_OF_BIRTH',
] as const;

export type PiiType = (typeof PII_TYPES)[number];

/** A span of `text` in JS string (UTF-16) indices, `end` exclusive. */
export interface PiiEntity {
  type: PiiType;
  start: number;
  end: number;
}
