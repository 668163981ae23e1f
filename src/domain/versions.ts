// How model versions are named: in the registry, in the store and in Ollama.

/**
 * A version name that sorts by date and says which run made it: `r20261123-5c4d3e2f1a0b`, the run id's last 12 hex
 * digits. Temporal's run ids are UUIDv7: their first digits are a timestamp, shared by runs started within a
 * minute of each other, so the name takes the random end.
 */
export function versionName(runId: string, startedAt: Date): string {
  const d = startedAt.toISOString().slice(0, 10).replaceAll('-', '');
  return `r${d}-${runId
    .replace(/[^a-z0-9]/gi, '')
    .slice(-12)
    .toLowerCase()}`;
}

/** The Ollama tag of a version: `<model>:<version>`. Tags are never reused for other weights. */
export const versionTag = (model: string, version: string) => `${model}:${version}`;
