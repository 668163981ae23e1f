import { createHash } from 'node:crypto';
import type { ChatMessage } from '../domain/conversation';
import type { ExportCounts, SourceCounts } from './manifest';
import { NearDuplicates, normaliseText } from './near-dup';
import { serializeRow, splitOf } from './rows';

/** A redacted row as export reads it (anonymize's line): the training row and where it came from. */
export interface ExportCandidate {
  id: string;
  source: string;
  corrected: boolean;
  messages: ChatMessage[];
}

/** A row export keeps: its bytes, its split, its line in that split (1-based) and its sha256 (the lineage key). */
export interface ExportedRow {
  text: string;
  split: 'train' | 'validation';
  line: number;
  rowSha256: string;
}

/** How export finds duplicates: the model config's `dedup`. */
export interface DedupOptions {
  near: boolean;
  threshold: number;
}

/**
 * Export's decisions over the anonymized rows, in order: a row whose subject no longer consents is left out; a row
 * whose normalised text (case, width and white space aside) was exported already is a duplicate; a row that is a
 * near duplicate of one exported before (near-dup.ts) is left out too, whichever split either falls in, so that no
 * validation row has a near copy in train; any other row goes to its split (by its interaction id; a synthetic row
 * to train). Keeps the
 * counts the manifest reports, per source too. Memory: 16 bytes of each kept row's text digest in a set, and the
 * near-duplicate index (about 160 bytes a kept row at a million).
 */
export class ExportRows {
  readonly counts: ExportCounts;
  readonly sources: SourceCounts = {};
  private readonly seen = new Set<string>();
  private readonly lines = { train: 0, validation: 0 };
  private readonly near: NearDuplicates | null;

  constructor(
    private readonly validationShare: number,
    anonymized: Pick<ExportCounts, 'considered' | 'negativeFeedback' | 'invalid'>,
    dedup: DedupOptions = { near: true, threshold: 0.8 },
  ) {
    this.counts = {
      considered: anonymized.considered,
      exported: 0,
      duplicatesDropped: 0,
      nearDuplicatesDropped: 0,
      negativeFeedback: anonymized.negativeFeedback,
      invalid: anonymized.invalid,
      corrected: 0,
      withdrawnDuringRun: 0,
    };
    this.near = dedup.near ? new NearDuplicates({ threshold: dedup.threshold }) : null;
  }

  /** Rows decided so far, whichever way. */
  get decided(): number {
    const c = this.counts;
    return c.exported + c.duplicatesDropped + (c.nearDuplicatesDropped ?? 0) + c.withdrawnDuringRun;
  }

  /** Decides one row; null when it is left out. `consents`: its subject still consents to training. */
  add(row: ExportCandidate, consents: boolean): ExportedRow | null {
    if (!consents) {
      this.counts.withdrawnDuringRun++;
      return null;
    }
    const source = (this.sources[row.source] ??= { train: 0, validation: 0, duplicates: 0, nearDuplicates: 0 });
    // The system prompt leads every row alike: it is left out of both comparisons (with a long prompt, unrelated rows
    // would look alike). Exact: the whole conversation. Near: the example a row teaches, its last question and answer
    // (a later turn of the same conversation repeats the earlier ones as its history, and is still another example).
    const turns = row.messages.filter((m) => m.role !== 'system');
    const plain = turns.map((m) => `${m.role}: ${m.content}`).join('\n');
    const lastUser = turns.findLast((m) => m.role === 'user');
    const example = `${lastUser?.content ?? ''}\n${turns.at(-1)?.content ?? ''}`;
    const dedupKey = createHash('sha256').update(normaliseText(plain)).digest().toString('latin1', 0, 16);
    if (this.seen.has(dedupKey)) {
      this.counts.duplicatesDropped++;
      source.duplicates!++;
      return null;
    }
    if (this.near && this.near.check(example) >= 0) {
      this.counts.nearDuplicatesDropped!++;
      source.nearDuplicates!++;
      return null;
    }
    this.seen.add(dedupKey);
    const text = serializeRow({ messages: row.messages });
    // Evaluation stays on real data: a synthetic row only ever trains.
    const split = row.source === 'synthetic' ? 'train' : splitOf(row.id, this.validationShare);
    const line = ++this.lines[split];
    this.counts.exported++;
    if (row.corrected) this.counts.corrected++;
    source[split]++;
    return { text, split, line, rowSha256: createHash('sha256').update(text).digest('hex') };
  }
}
