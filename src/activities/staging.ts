import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { ActivityDeps } from './deps';

// Local staging for stages that stream datasets: rows go to local files, never into memory, then to the store.

/** Runs fn with a fresh folder under deps.tmpDir and removes it afterwards, whatever happens. */
export async function withWorkDir<T>(deps: ActivityDeps, name: string, fn: (dir: string) => Promise<T>): Promise<T> {
  await mkdir(deps.tmpDir, { recursive: true });
  const dir = await mkdtemp(path.join(deps.tmpDir, `${name}-`));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A line-oriented local file writer that respects backpressure. */
export function lineWriter(file: string) {
  const stream: WriteStream = createWriteStream(file);
  let lines = 0;
  return {
    file,
    get lines() {
      return lines;
    },
    async write(line: string): Promise<void> {
      lines++;
      if (!stream.write(line + '\n')) await once(stream, 'drain');
    },
    async close(): Promise<void> {
      if (stream.closed) return;
      await new Promise<void>((resolve, reject) => stream.end((err?: Error | null) => (err ? reject(err) : resolve())));
    },
    read: () => createReadStream(file),
  };
}
export type LineWriter = ReturnType<typeof lineWriter>;

/** The lines of a stream (UTF-8), one at a time; a final line without a newline counts. */
export function linesOf(stream: Readable): AsyncIterable<string> {
  return createInterface({ input: stream, crlfDelay: Infinity });
}
