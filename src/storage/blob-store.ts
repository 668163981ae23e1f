import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';

/** What a store knows about one object; `sha256` and `size` are the ones recorded when it was put. */
export interface BlobInfo {
  key: string;
  size: number;
  /** Lower-case hex. */
  sha256: string;
  contentType: string | null;
  modifiedAt: Date;
}

export interface PutOptions {
  /** Recorded with the object; `application/octet-stream` when absent. */
  contentType?: string;
  /** Aborts the upload (an activity passes `cancellationSignal()`); nothing is left behind. */
  signal?: AbortSignal;
}

export type BlobBody = Readable | Uint8Array | string;

/**
 * Where pipeline stages keep their objects. Keys are `/`-separated relative paths (see `assertValidKey`); the
 * same key set is valid on every backend so that moving between a folder and a bucket never breaks a run.
 */
export interface BlobStore {
  /** `file:///abs/folder` or `s3://bucket/prefix`; never holds credentials, so it is safe to log. */
  readonly url: string;
  /**
   * Streams `body` into the object, computing sha256 and size on the way, and replaces any previous object in
   * one step: readers see the old object or the new one, never a mix. If `body` fails, nothing changes.
   */
  put(key: string, body: BlobBody, opts?: PutOptions): Promise<BlobInfo>;
  /** Throws `BlobNotFoundError` when absent. The stream keeps reading the version it opened. */
  get(key: string): Promise<Readable>;
  stat(key: string): Promise<BlobInfo | null>;
  /** Every object whose key starts with `prefix` (a plain string prefix, as in S3), in UTF-8 byte order. */
  list(prefix: string): AsyncIterable<BlobInfo>;
  /** Deleting a missing key is not an error. */
  delete(key: string): Promise<void>;
  /** Returns how many objects were deleted. An empty prefix is refused: it would empty the whole store. */
  deletePrefix(prefix: string): Promise<number>;
  /** Readiness: throws unless the store can be written (folder) or reached (bucket). */
  ping(): Promise<void>;
}

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';
export const MAX_KEY_BYTES = 1024;
/** Longest segment most filesystems accept (NAME_MAX); enforced everywhere so keys stay portable. */
export const MAX_SEGMENT_BYTES = 255;

export class BlobKeyError extends Error {
  override readonly name = 'BlobKeyError';
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`Invalid blob key ${describeKey(key)}: ${reason}`);
  }
}

export class BlobNotFoundError extends Error {
  override readonly name = 'BlobNotFoundError';
  constructor(
    readonly key: string,
    storeUrl?: string,
  ) {
    super(`Blob not found: ${describeKey(key)}${storeUrl ? ` in ${storeUrl}` : ''}`);
  }
}

function describeKey(key: unknown): string {
  if (typeof key !== 'string') return String(key);
  // JSON quoting makes control characters visible; long keys are cut so one bad key cannot flood a log line.
  const shown = key.length > 200 ? `${key.slice(0, 200)}…` : key;
  return JSON.stringify(shown);
}

// C0 and C1 control characters, DEL, and lone surrogates (which have no UTF-8 form, so S3 and file names would
// each mangle them differently).
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const FORBIDDEN_CHAR = /[\u0000-\u001f\u007f-\u009f\\]|\p{Cs}/u;

function keyProblem(key: unknown, allowPartialLastSegment: boolean): string | null {
  if (typeof key !== 'string') return 'must be a string';
  if (key.length === 0) return 'must not be empty';
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) return `must be at most ${MAX_KEY_BYTES} bytes of UTF-8`;
  const bad = FORBIDDEN_CHAR.exec(key);
  if (bad) return bad[0] === '\\' ? 'must not contain a backslash' : 'must not contain control characters';
  if (key.startsWith('/')) return 'must be relative (no leading "/")';
  const segments = key.split('/');
  for (const [i, segment] of segments.entries()) {
    const last = i === segments.length - 1;
    if (segment === '') return last ? 'must not end with "/"' : 'must not contain empty segments ("//")';
    if (Buffer.byteLength(segment, 'utf8') > MAX_SEGMENT_BYTES) {
      return `segments must be at most ${MAX_SEGMENT_BYTES} bytes`;
    }
    if ((segment === '.' || segment === '..') && !(last && allowPartialLastSegment)) {
      return 'must not contain "." or ".." segments';
    }
  }
  return null;
}

/** Throws `BlobKeyError` unless `key` is a non-empty relative `/`-path without `.`/`..`/empty segments. */
export function assertValidKey(key: string): void {
  const problem = keyProblem(key, false);
  if (problem) throw new BlobKeyError(key, problem);
}

export function isValidKey(key: string): boolean {
  return keyProblem(key, false) === null;
}

/**
 * A list prefix is a key, a key followed by `/`, or the empty string. Its last segment may be partial (`runs/r1`
 * matches `runs/r1/a` and `runs/r10/a`), so `.` and `..` are tolerated there as the start of a longer name.
 */
export function assertValidPrefix(prefix: string): void {
  if (prefix === '') return;
  const body = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = body === '' ? 'must not be "/"' : keyProblem(body, !prefix.endsWith('/'));
  if (problem) throw new BlobKeyError(prefix, problem.replace(/^must/, 'prefix must'));
}

/** S3 lists in UTF-8 byte order; JavaScript's `<` compares UTF-16 units, which disagrees above U+FFFF. */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export function toReadable(body: BlobBody): Readable {
  if (body instanceof Readable) return body;
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  // An array, because Readable.from iterates a lone Uint8Array byte by byte.
  return Readable.from([bytes], { objectMode: false });
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A pipeline sink that writes into an open file. A FileHandle's own write stream pins the handle until the stream
 * closes it, so it cannot be used when the handle must stay open afterwards (fsync, fstat, reading it back).
 */
export function writeInto(fh: FileHandle): (chunks: AsyncIterable<Buffer>) => Promise<void> {
  return async (chunks) => {
    for await (const chunk of chunks) {
      let done = 0;
      while (done < chunk.length) done += (await fh.write(chunk, done)).bytesWritten;
    }
  };
}

/** A pass-through that hashes and counts what flows through it, so a put never needs a second read. */
export class DigestStream extends Transform {
  readonly #hash = createHash('sha256');
  #size = 0;
  #sha256: string | null = null;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.length;
    callback(null, chunk);
  }

  /** Valid once the stream has ended. */
  result(): { sha256: string; size: number } {
    this.#sha256 ??= this.#hash.digest('hex');
    return { sha256: this.#sha256, size: this.#size };
  }
}
