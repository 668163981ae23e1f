/**
 * Whether a version's adapter fits a run on `base`: it does when it was trained on that base. An adapter only loads
 * onto the base it was trained on, so when a model's base changes the next run starts over from the new base and is
 * compared with it, not with production. A version with no recorded base (none since 2026-12-03) is taken to fit,
 * as every version did before bases were recorded.
 */
export function adapterFitsBase(version: { base_model: string | null }, base: string): boolean {
  return version.base_model === null || version.base_model === base;
}
