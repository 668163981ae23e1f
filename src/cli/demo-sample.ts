import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import type { ChatMessage } from '../domain/conversation';
import type { Db } from '../db/pool';
import { insertInteractions, setConsent } from '../db/queries/interactions';
import { modelDefinitionSchema, type ModelDefinition } from '../domain/model-config';
import { REPO_ROOT } from '../config';

/**
 * The bundled sample (samples/demo, written by its make-sample.ts): FitCoach's model definition, a day of its
 * traffic with the users' consent, and questions no conversation of the sample asks. The demo seeds it; the
 * real-model test trains on it too, so the demo's claim is what the test checks.
 */
export const SAMPLE_DIR = path.join(REPO_ROOT, 'samples/demo');

const sampleLine = z
  .object({
    id: z.string(),
    subject: z.string(),
    messages: z.array(z.object({ role: z.enum(['system', 'user', 'assistant']), content: z.string() }).strict()),
    metadata: z.record(z.string(), z.unknown()).optional(),
  })
  .strict();
const consentFile = z.object({ policyVersion: z.string(), subjects: z.record(z.string(), z.boolean()) }).strict();

const readJson = (name: string): unknown => JSON.parse(readFileSync(path.join(SAMPLE_DIR, name), 'utf8'));

/** samples/demo/model.json, validated. */
export function readSampleDefinition(): ModelDefinition {
  return modelDefinitionSchema.parse(readJson('model.json'));
}

/** Questions in the sample's domain that none of its conversations asks (held out from training). */
export function readHeldOutQuestions(): string[] {
  return z.array(z.string().min(1)).min(1).parse(readJson('held-out-questions.json'));
}

/** The sample's conversations, validated. */
export function readSampleInteractions(): z.output<typeof sampleLine>[] {
  return readFileSync(path.join(SAMPLE_DIR, 'interactions.jsonl'), 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => sampleLine.parse(JSON.parse(l)));
}

/**
 * Stores the sample for `model` in one transaction: each user's consent as the sample records it, then every
 * conversation, its id prefixed with `idPrefix` (a new prefix is a new day of traffic).
 */
export async function seedSample(
  db: Db,
  model: { id: string; app: string },
  idPrefix: string,
): Promise<{ stored: number; users: number; declined: number }> {
  const consent = consentFile.parse(readJson('consent.json'));
  const sample = readSampleInteractions();
  const stored = await db.transaction().execute(async (trx) => {
    for (const [subject, training] of Object.entries(consent.subjects)) {
      await setConsent(trx, { appId: model.app, subject, training, policyVersion: consent.policyVersion });
    }
    return insertInteractions(
      trx,
      sample.map((s) => ({
        appId: model.app,
        model: model.id,
        subject: s.subject,
        id: `${idPrefix}${s.id}`,
        messages: s.messages as ChatMessage[],
        metadata: s.metadata,
        source: 'demo',
      })),
    );
  });
  const users = Object.keys(consent.subjects).length;
  return { stored: stored.length, users, declined: Object.values(consent.subjects).filter((v) => !v).length };
}
