import { createHash } from 'node:crypto';

/**
 * Canary routing. A subject falls in one of 100 buckets by a hash of (model, subject), so it stays with the same
 * version for as long as the canary's share does not change, and a share of p % is exactly the buckets below p:
 * raising the share only ever moves subjects from production to the canary, never back and forth.
 */
export function bucketOf(model: string, subject: string): number {
  const digest = createHash('sha256').update(`${model}\u0000${subject}`).digest();
  return digest.readUInt32BE(0) % 100;
}

export function routesToCanary(model: string, subject: string, canaryPercent: number): boolean {
  return canaryPercent > 0 && bucketOf(model, subject) < canaryPercent;
}
