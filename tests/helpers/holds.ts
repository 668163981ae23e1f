/** Whether a value (a workflow history, a row) holds the bytes anywhere: in its strings or in raw bytes (payloads). */
export function holds(value: unknown, bytes: Buffer): boolean {
  if (typeof value === 'string') return Buffer.from(value, 'utf8').includes(bytes);
  if (value instanceof Uint8Array) return Buffer.from(value).includes(bytes);
  if (Array.isArray(value)) return value.some((v) => holds(v, bytes));
  if (value && typeof value === 'object') return Object.values(value).some((v) => holds(v, bytes));
  return false;
}
