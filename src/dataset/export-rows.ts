import { createHash } from 'node:crypto';
import type { ChatMessage } from '../domain/conversation';
import type { ExportCounts, SourceCounts } from './manifest';
import { LeakGuard } from './leak-guard';
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
 * near duplicate of one exported before (near-dup.ts) is left out too, whichever split either falls in; any other
 * row goes to its split ({@link splitFor}: by its interaction id; a synthetic row to train). Keeps the counts the
 * manifest reports, per source too.
 *
 * No train row is a near copy of a validation row (leak-guard.ts, on exact similarity): the caller hands every
 * validation row over before the first train row (a validation row after it is refused), and a train row within the
 * threshold of a validation row is left out as a near duplicate. Memory: 16 bytes of each kept row's text digest in
 * a set, the near-duplicate index (about 160 bytes a kept row at a million) and the guard's (about 400 bytes a
 * validation row).
 */
export class ExportRows {
  readonly counts: ExportCounts;
  readonly sources: SourceCounts = {};
  private readonly seen = new Set<string>();
  private readonly lines = { train: 0, validation: 0 };
  private readonly near: NearDuplicates | null;
  private readonly guard: LeakGuard | null;
  private trainStarted = false;

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
    this.guard = dedup.near && validationShare > 0 ? new LeakGuard(dedup.threshold) : null;
  }

  /** The split a row goes to if it is kept. Evaluation stays on real data: a synthetic row only ever trains. */
  splitFor(row: Pick<ExportCandidate, 'id' | 'source'>): 'train' | 'validation' {
    return row.source === 'synthetic' ? 'train' : splitOf(row.id, this.validationShare);
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
    const split = this.splitFor(row);
    if (split === 'train') this.trainStarted = true;
    else if (this.trainStarted)
      throw new Error('ExportRows: every validation row must come before the first train row');
    const dedupKey = createHash('sha256').update(normaliseText(plain)).digest().toString('latin1', 0, 16);
    if (this.seen.has(dedupKey)) {
      this.counts.duplicatesDropped++;
      source.duplicates!++;
      return null;
    }
    // A train row near a validation row first (asking the guard keeps nothing), then near any row kept before.
    if ((split === 'train' && this.guard?.leaks(example)) || (this.near && this.near.check(example) >= 0)) {
      this.counts.nearDuplicatesDropped!++;
      source.nearDuplicates!++;
      return null;
    }
    this.seen.add(dedupKey);
    if (split === 'validation') this.guard?.add(example);
    const text = serializeRow({ messages: row.messages });
    const line = ++this.lines[split];
    this.counts.exported++;
    if (row.corrected) this.counts.corrected++;
    source[split]++;
    return { text, split, line, rowSha256: createHash('sha256').update(text).digest('hex') };
  }
}
