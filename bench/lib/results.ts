import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { REPO_ROOT } from '../../src/config';

/** Writes a bench's results to bench/results/<name>.json and says so. */
export async function writeResults(name: string, out: unknown): Promise<void> {
  await mkdir(path.join(REPO_ROOT, 'bench/results'), { recursive: true });
  await writeFile(path.join(REPO_ROOT, `bench/results/${name}.json`), JSON.stringify(out, null, 2));
  console.log(`wrote bench/results/${name}.json`);
}

/** Runs a bench's main: a failure is printed and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
