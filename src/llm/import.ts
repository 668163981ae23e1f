import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { OllamaClient } from './ollama';

/**
 * Imports a model into Ollama by the plan the trainer's `ollama-stage` wrote (gpu-worker ollama_stage.py): every file
 * uploaded as a blob (Ollama checks each digest), then one create. Blobs are uploaded right before the create:
 * Ollama deletes blobs no model references when it restarts.
 */

const fileEntry = z.object({
  path: z.string().min(1),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().min(0),
});
const planSchema = z.object({
  format: z.literal('tuneloop-ollama-import'),
  version: z.literal(1),
  method: z.enum(['base', 'adapter', 'merged']),
  reason: z.string(),
  family: z.string().nullable(),
  files: z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), fileEntry),
  adapters: z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), fileEntry).nullable(),
  template: z.string().min(1),
  parameters: z.object({ stop: z.array(z.string()), repeat_penalty: z.number() }).loose(),
});
export type ImportPlan = z.output<typeof planSchema> & { dir: string };

export async function readImportPlan(file: string): Promise<ImportPlan> {
  const plan = planSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  return { ...plan, dir: path.dirname(file) };
}

export async function importModel(
  ollama: OllamaClient,
  plan: ImportPlan,
  tag: string,
  opts: {
    signal?: AbortSignal;
    onFile?: (name: string, how: 'present' | 'uploaded') => void;
    /** Extra model parameters (e.g. num_ctx) merged over the plan's. */
    parameters?: Record<string, unknown>;
    /** Runs the create (the only step that writes a manifest) under the caller's lock. */
    lockCreate?: (create: () => Promise<void>) => Promise<void>;
  } = {},
): Promise<{ bytes: number; uploaded: number }> {
  const digests = async (group: Record<string, z.output<typeof fileEntry>>) => {
    const out: Record<string, string> = {};
    for (const [name, entry] of Object.entries(group)) {
      const digest = `sha256:${entry.sha256}`;
      const file = path.isAbsolute(entry.path) ? entry.path : path.join(plan.dir, entry.path);
      const how = await ollama.pushBlob(digest, file, opts.signal);
      opts.onFile?.(name, how);
      if (how === 'uploaded') uploaded++;
      bytes += entry.size;
      out[name] = digest;
    }
    return out;
  };
  let bytes = 0;
  let uploaded = 0;
  const files = await digests(plan.files);
  const adapters = plan.adapters ? await digests(plan.adapters) : undefined;
  const create = () =>
    ollama.create(
      {
        model: tag,
        files,
        ...(adapters ? { adapters } : {}),
        template: plan.template,
        parameters: { ...plan.parameters, ...opts.parameters },
      },
      opts.signal,
    );
  await (opts.lockCreate ? opts.lockCreate(create) : create());
  return { bytes, uploaded };
}
