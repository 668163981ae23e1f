import { createHash } from 'node:crypto';
import type { ChatMessage } from '../domain/conversation';
import type { ExportCounts, SourceCounts } from './manifest';
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

/**
 * Export's decisions over the anonymized rows, in order: a row whose subject no longer consents is left out, a row
 * whose bytes were exported already is a duplicate, any other row goes to its split (by its interaction id). Keeps
 * the counts the manifest reports. Memory is the dedup set: 16 bytes of each kept row's sha256.
 */
export class ExportRows {
  readonly counts: ExportCounts;
  readonly sources: SourceCounts = {};
  private readonly seen = new Set<string>();
  private readonly lines = { train: 0, validation: 0 };

  constructor(
    private readonly validationShare: number,
    anonymized: Pick<ExportCounts, 'considered' | 'negativeFeedback' | 'invalid'>,
  ) {
    this.counts = {
      considered: anonymized.considered,
      exported: 0,
      duplicatesDropped: 0,
      negativeFeedback: anonymized.negativeFeedback,
      invalid: anonymized.invalid,
      corrected: 0,
      withdrawnDuringRun: 0,
    };
  }

  /** Rows decided so far, whichever way. */
  get decided(): number {
    return this.counts.exported + this.counts.duplicatesDropped + this.counts.withdrawnDuringRun;
  }

  /** Decides one row; null when it is left out. `consents`: its subject still consents to training. */
  add(row: ExportCandidate, consents: boolean): ExportedRow | null {
    if (!consents) {
      this.counts.withdrawnDuringRun++;
      return null;
    }
    const text = serializeRow({ messages: row.messages });
    const digest = createHash('sha256').update(text).digest();
    const dedupKey = digest.toString('latin1', 0, 16);
    if (this.seen.has(dedupKey)) {
      this.counts.duplicatesDropped++;
      return null;
    }
    this.seen.add(dedupKey);
    const split = splitOf(row.id, this.validationShare);
    const line = ++this.lines[split];
    this.counts.exported++;
    if (row.corrected) this.counts.corrected++;
    (this.sources[row.source] ??= { train: 0, validation: 0 })[split]++;
    return { text, split, line, rowSha256: digest.toString('hex') };
  }
}
