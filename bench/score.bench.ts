/**
 * Near-duplicate removal, tuneloop's (src/dataset/near-dup.ts) against datasketch's MinHash LSH (PyPI, pinned in
 * scripts/versions.sh), on the same rows in the same run:
 *
 *   npm run bench:score -- [--rows 100000,1000000] [--threshold 0.8] [--perm 128] [--sides tuneloop,datasketch]
 *                          [--judge-rows 24] [--concurrency 1,2,4] [--parts near-dup,judge]
 *
 * Near-duplicate removal:
 *
 * - The rows: distinct chat-like texts with paraphrases of earlier rows planted among them (a tenth of the rows;
 *   some words replaced, a pair swapped, case and spacing changed: bench/lib/dup-corpus.ts), each labelled with the
 *   exact Jaccard similarity of its shingles to its source. Written to a file once; each side reads it.
 * - Each side streams the file in a process of its own, one core, the same shingles (three-word runs of the
 *   normalised text), 128 hash functions, the same threshold: a row is dropped when it is a near duplicate of a
 *   row kept before.
 * - Figures: rows per second of CPU, peak resident memory, and against the labels: recall of planted paraphrases
 *   at and above the threshold (and at 0.85 and 0.9), paraphrases below 0.7 dropped, distinct rows dropped, and
 *   precision (dropped rows that are paraphrases at or above the threshold).
 *
 *
 * Judge throughput (bench/lib/judge-run.ts): the score stage's judge against the same requests sent straight to
 * Ollama, at each concurrency, on SmolLM2-135M-Instruct and the demo sample's conversations: rows per second,
 * latency, valid ratings.
 *
 * Prints a table a part and writes bench/results/score.json.
 */
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parseArgs } from 'node:util';
import { NODE_FLAGS } from '../bin/node-flags.js';
import { REPO_ROOT } from '../src/config';
import { pinnedVersion } from '../tests/helpers/versions';
import { createLogger } from '../src/log';
import { dupCorpus } from './lib/dup-corpus';
import { judgeThroughput } from './lib/judge-run';
import { runBench, writeResults } from './lib/results';

const run = promisify(execFile);
const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: '100000,1000000' },
    threshold: { type: 'string', default: '0.8' },
    perm: { type: 'string', default: '128' },
    sides: { type: 'string', default: 'tuneloop,datasketch' },
    'judge-rows': { type: 'string', default: '24' },
    concurrency: { type: 'string', default: '1,2,4' },
    parts: { type: 'string', default: 'near-dup,judge' },
  },
});
const SIZES = values.rows.split(',').map(Number);
const THRESHOLD = Number(values.threshold);
const PERM = Number(values.perm);
const PARTS = values.parts.split(',');

interface Label {
  of: number;
  jaccard: number;
}

/** The corpus to a file, one text a line; the labels of its planted paraphrases by row. */
async function writeCorpus(file: string, rows: number): Promise<Map<number, Label>> {
  const labels = new Map<number, Label>();
  const out = createWriteStream(file);
  let i = 0;
  for (const r of dupCorpus({ seed: 42, rows, planted: 0.1, editsPer100: [0, 15], shingleWords: 3 })) {
    if (r.of !== undefined) labels.set(i, { of: r.of, jaccard: r.jaccard! });
    if (!out.write(`${r.text}\n`)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    i++;
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  return labels;
}

interface RunFigures {
  rows: number;
  cpuS: number;
  wallS: number;
  peakRssMb: number;
  bands: number;
  rowsPerBand: number;
}

function score(flags: Uint8Array, labels: Map<number, Label>) {
  // Paraphrases of a distinct row (a source that is itself a paraphrase may have been dropped).
  const scored = [...labels].filter(([, l]) => !labels.has(l.of));
  const recallAt = (j: number) => {
    const near = scored.filter(([, l]) => l.jaccard >= j);
    return near.filter(([i]) => flags[i]).length / near.length;
  };
  let dropped = 0;
  let droppedDistinct = 0;
  let droppedTrue = 0;
  for (let i = 0; i < flags.length; i++) {
    if (!flags[i]) continue;
    dropped++;
    const l = labels.get(i);
    if (!l) droppedDistinct++;
    else if (l.jaccard >= THRESHOLD) droppedTrue++;
  }
  const far = scored.filter(([, l]) => l.jaccard < 0.7);
  return {
    recall: recallAt(THRESHOLD),
    recall085: recallAt(0.85),
    recall090: recallAt(0.9),
    farDropped: far.filter(([i]) => flags[i]).length / far.length,
    droppedDistinct,
    precision: droppedTrue / dropped,
    dropped,
  };
}

async function main() {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tuneloop-bench-score-'));
  try {
    const rows = [];
    for (const n of PARTS.includes('near-dup') ? SIZES : []) {
      const texts = path.join(dir, `texts-${n}.txt`);
      const labels = await writeCorpus(texts, n);
      const sides = [
        {
          name: 'tuneloop',
          cmd: process.execPath,
          args: [...NODE_FLAGS, '--import', 'tsx', path.join(REPO_ROOT, 'bench/lib/near-dup-run.ts')],
        },
        {
          name: 'datasketch',
          cmd: path.join(REPO_ROOT, '.tools/py-datasketch/bin/python'),
          args: [path.join(REPO_ROOT, 'bench/lib/datasketch_dedup.py')],
        },
      ].filter((s) => values.sides.split(',').includes(s.name));
      for (const side of sides) {
        const flagsFile = path.join(dir, `flags-${side.name}-${n}`);
        const { stdout } = await run(side.cmd, [...side.args, texts, flagsFile, String(THRESHOLD), String(PERM)], {
          maxBuffer: 1 << 20,
        });
        const figures = JSON.parse(stdout.trim().split('\n').at(-1)!) as RunFigures;
        const flags = new Uint8Array(await readFile(flagsFile));
        if (flags.length !== n) throw new Error(`${side.name} flagged ${flags.length} rows of ${n}`);
        const s = score(flags, labels);
        rows.push({
          side: side.name,
          rows: n,
          bands: `${figures.bands}x${figures.rowsPerBand}`,
          rowsPerCpuS: Math.round(n / figures.cpuS),
          wallS: +figures.wallS.toFixed(1),
          peakRssMb: Math.round(figures.peakRssMb),
          recall: +s.recall.toFixed(3),
          recall085: +s.recall085.toFixed(3),
          recall090: +s.recall090.toFixed(3),
          below07Dropped: +s.farDropped.toFixed(4),
          distinctDropped: s.droppedDistinct,
          precision: +s.precision.toFixed(3),
          dropped: s.dropped,
        });
        console.error(JSON.stringify(rows.at(-1)));
      }
      await rm(texts, { force: true });
    }
    if (rows.length) console.table(rows);
    const judge = PARTS.includes('judge')
      ? await judgeThroughput({
          rows: Number(values['judge-rows']),
          concurrency: values.concurrency.split(',').map(Number),
          log: createLogger('warn'),
          onResult: (f) => console.error(JSON.stringify(f)),
        })
      : [];
    if (judge.length) console.table(judge);
    await writeResults('score', {
      bench: 'score',
      at: new Date().toISOString(),
      machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      settings: { threshold: THRESHOLD, numPerm: PERM, datasketch: pinnedVersion('DATASKETCH_VERSION') },
      rows,
      judge,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

runBench(main);
