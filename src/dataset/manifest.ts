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
  duplicatesDropped: number;
  negativeFeedback: number;
  invalid: number;
  corrected: number;
  /** Rows whose subject withdrew consent or was erased between anonymize and export. */
  withdrawnDuringRun: number;
}

/** Rows per source (api, import, served…) and split. */
export type SourceCounts = Record<string, { train: number; validation: number }>;

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
