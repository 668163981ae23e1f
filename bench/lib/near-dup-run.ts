/**
 * tuneloop's near-duplicate removal over a file of texts (one a line), in a process of its own so that its peak
 * resident memory is its own: bench/score.bench.ts's subject.
 *
 *   node --import tsx bench/lib/near-dup-run.ts TEXTS FLAGS_OUT THRESHOLD NUM_PERM
 *
 * Writes one byte a row to FLAGS_OUT (1: near duplicate) and prints one JSON line of figures.
 */
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { NearDuplicates } from '../../src/dataset/near-dup';

const [texts, out, threshold, numPerm] = process.argv.slice(2);
const nd = new NearDuplicates({ threshold: Number(threshold), numPerm: Number(numPerm) });
let flags = new Uint8Array(1 << 16);
let n = 0;
const cpu0 = process.cpuUsage();
const wall0 = performance.now();
for await (const line of createInterface({ input: createReadStream(texts!, 'utf8'), crlfDelay: Infinity })) {
  if (n === flags.length) {
    const grown = new Uint8Array(flags.length * 2);
    grown.set(flags);
    flags = grown;
  }
  flags[n++] = nd.check(line) >= 0 ? 1 : 0;
}
const cpu = process.cpuUsage(cpu0);
const wall = (performance.now() - wall0) / 1000;
await writeFile(out!, flags.subarray(0, n));
console.log(
  JSON.stringify({
    rows: n,
    cpuS: (cpu.user + cpu.system) / 1e6,
    wallS: wall,
    peakRssMb: process.resourceUsage().maxRSS / 1024,
    bands: nd.bands,
    rowsPerBand: nd.rows,
    verified: nd.verified,
    rejected: nd.rejected,
    tableMb: nd.bytes / 2 ** 20,
  }),
);
