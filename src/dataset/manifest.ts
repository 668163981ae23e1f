// What a stored dataset says about itself: its manifest.json, written last, and the copy the database keeps.

export interface SplitSummary {
  key: string;
  count: number;
  bytes: number;
  sha256: string;
}

/** How many rows export considered, kept and left out, and why. */
export interface ExportCounts {
  considered: number;
  exported: number;
  /** Rows whose normalised text (case, width and white space aside) was exported already. */
  duplicatesDropped: number;
  /** Rows a near duplicate of one exported before (absent from datasets exported before this was done). */
  nearDuplicatesDropped?: number;
  negativeFeedback: number;
  invalid: number;
  corrected: number;
  /** Rows whose subject withdrew consent or was erased between anonymize and export. */
  withdrawnDuringRun: number;
}

/** Rows per source (api, import, served…): kept per split, and duplicates left out (absent before they were counted). */
export type SourceCounts = Record<
  string,
  { train: number; validation: number; duplicates?: number; nearDuplicates?: number }
>;

export interface DatasetManifest {
  format: 'tuneloop.dataset/v1';
  rowFormat: 'chat-messages';
  datasetId: string;
  model: string;
  runId: string | null;
  watermark: { fromSeqExclusive: number; toSeqInclusive: number };
  configHash: string;
  splits: { train: SplitSummary; validation: SplitSummary };
  counts: ExportCounts;
  sources: SourceCounts;
  anonymization: { engineVersion: string; entities: Record<string, number> };
  /** Appended by each erasure that rewrote this dataset. */
  erasures?: { id: string; at: string; rowsRemoved: number }[];
}
