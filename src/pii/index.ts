/**
 * The PII engine: finds personal data in free text and replaces it with typed, numbered placeholders before any
 * text leaves PostgreSQL. Pure functions, no I/O. Bump PII_ENGINE_VERSION whenever what is detected changes, so
 * datasets record which engine redacted them.
 */
export const PII_ENGINE_VERSION = '1.0.0';

export { PII_TYPES, type PiiEntity, type PiiType } from './types';
export { detect } from './detect';
export { createRedactor, normalizeValue, type Redaction, type Redactor } from './redactor';
export { isCreditCard, isIbanValid, isIpv4, isIpv6, isLuhnValid, isNhsNumberValid, isSsnValid } from './validators';
