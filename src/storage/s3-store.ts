import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Client, type BucketItem, type BucketItemStat } from 'minio';
import {
  assertValidKey,
  assertValidPrefix,
  BlobKeyError,
  BlobNotFoundError,
  DEFAULT_CONTENT_TYPE,
  DigestStream,
  isValidKey,
  MAX_KEY_BYTES,
  sha256Hex,
  type BlobBody,
  type BlobInfo,
  type BlobStore,
  type PutOptions,
  writeInto,
} from './blob-store';

export interface S3BlobStoreOptions {
  bucket: string;
  /** Objects live under `<prefix>/` in the bucket; keys passed to the store never include it. */
  prefix?: string;
  endPoint: string;
  port?: number;
  useSSL?: boolean;
  accessKey: string;
  secretKey: string;
  region?: string;
  /** Where stream puts are staged while they are hashed; the OS temp folder when absent. */
  spoolDir?: string;
  /** Objects above this size go up as a multipart upload in parts of this size (S3's minimum is 5 MiB). */
  partSize?: number;
}

/** Stored as `x-amz-meta-sha256`; S3's ETag is an MD5 (or not even that, for multipart) and cannot stand in. */
const SHA256_HEADER = 'x-amz-meta-sha256';
const SHA256_META = 'sha256';
const DEFAULT_PART_SIZE = 16 * 1024 * 1024;
const MIN_PART_SIZE = 5 * 1024 * 1024;
const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
const MAX_PARTS = 10_000;
/** HEAD requests kept in flight while listing, to fetch each object's sha256 without a round trip per key. */
const LIST_STAT_CONCURRENCY = 8;
const DELETE_BATCH = 1000;

/** Random access to the bytes of one put, whether they sit in memory or in the spool file. */
interface PartSource {
  read(offset: number, length: number): Promise<Buffer>;
}

/**
 * A BlobStore in an S3 bucket (MinIO or any S3), through the `minio` client.
 *
 * Atomicity is the server's: a PUT or a multipart completion replaces the object in one step and a GET streams
 * one version. The sha256 has to travel as metadata in the request that creates the object, yet it is known only
 * once the stream has ended, so a stream put is first spooled to a local temp file while it is hashed and then
 * uploaded with its sha256. The alternatives were worse: uploading under a temp key and server-side copying with
 * new metadata doubles the server's write, needs multipart copy above 5 GiB, and leaves temp objects in the bucket
 * when a worker dies; the spool file is unlinked as soon as it is opened, so nothing outlives the process.
 *
 * Multipart uploads are driven here rather than by `putObject`, which resumes any incomplete upload it finds for
 * the same object name: two workers writing one key would then share an upload id. Ours are private to one put
 * and aborted when it fails.
 */
export class S3BlobStore implements BlobStore {
  readonly url: string;
  readonly bucket: string;
  readonly #base: string;
  readonly #client: Client;
  readonly #region: string;
  readonly #spoolDir: string;
  readonly #partSize: number;

  constructor(opts: S3BlobStoreOptions) {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(opts.bucket)) {
      throw new Error(`Invalid S3 bucket name ${JSON.stringify(opts.bucket)}: 3-63 of a-z, 0-9, '.', '-'`);
    }
    const prefix = (opts.prefix ?? '').replace(/^\/+|\/+$/g, '');
    if (prefix) assertValidKey(prefix);
    this.bucket = opts.bucket;
    this.#base = prefix ? `${prefix}/` : '';
    this.url = `s3://${opts.bucket}${prefix ? `/${prefix}` : ''}`;
    this.#region = opts.region ?? 'us-east-1';
    this.#spoolDir = opts.spoolDir ?? os.tmpdir();
    this.#partSize = Math.min(MAX_PART_SIZE, Math.max(MIN_PART_SIZE, opts.partSize ?? DEFAULT_PART_SIZE));
    this.#client = new Client({
      endPoint: opts.endPoint,
      port: opts.port,
      useSSL: opts.useSSL ?? false,
      accessKey: opts.accessKey,
      secretKey: opts.secretKey,
      region: this.#region,
      // The same part size as ours, so putObject never takes its own multipart path for a single-PUT body.
      partSize: this.#partSize,
    });
  }

  async put(key: string, body: BlobBody, opts: PutOptions = {}): Promise<BlobInfo> {
    this.#objectName(key);
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    if (!(body instanceof Readable)) {
      // Already in memory: hashing it costs nothing and there is no reason to spool it.
      const buf =
        typeof body === 'string'
          ? Buffer.from(body, 'utf8')
          : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
      opts.signal?.throwIfAborted();
      return this.#upload(key, bufferSource(buf), buf.length, sha256Hex(buf), contentType, opts.signal);
    }

    const spool = path.join(this.#spoolDir, `tuneloop-put-${randomUUID()}`);
    let fh: fs.FileHandle | undefined;
    try {
      await fs.mkdir(this.#spoolDir, { recursive: true });
      fh = await fs.open(spool, 'wx+', 0o600);
      // An unlinked file lives as long as its descriptor, so even a killed worker leaves no spool behind.
      await fs.unlink(spool).catch(() => undefined);
      const digest = new DigestStream();
      await pipeline(body, digest, writeInto(fh), { signal: opts.signal });
      const { sha256, size } = digest.result();
      return await this.#upload(key, fileSource(fh), size, sha256, contentType, opts.signal);
    } catch (err) {
      body.destroy();
      throw err;
    } finally {
      await fh?.close();
      await fs.rm(spool, { force: true }).catch(() => undefined);
    }
  }

  async get(key: string): Promise<Readable> {
    const name = this.#objectName(key);
    try {
      return await this.#client.getObject(this.bucket, name);
    } catch (err) {
      if (isNotFound(err)) throw new BlobNotFoundError(key, this.url);
      throw err;
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    this.#objectName(key);
    return this.#stat(key);
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    assertValidPrefix(prefix);
    // Listing does not return user metadata, so each sha256 costs a HEAD; a window of them keeps order and speed.
    const window: Promise<BlobInfo | null>[] = [];
    for await (const name of this.#listNames(prefix)) {
      const pending = this.#stat(name.slice(this.#base.length));
      // Marks the rejection handled while it waits its turn; it is still thrown when awaited below.
      pending.catch(() => undefined);
      window.push(pending);
      if (window.length >= LIST_STAT_CONCURRENCY) {
        const info = await window.shift();
        if (info) yield info;
      }
    }
    for (const pending of window) {
      const info = await pending;
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    const name = this.#objectName(key);
    // S3 answers 204 for a missing key, which is exactly the idempotence we promise.
    await this.#client.removeObject(this.bucket, name);
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertValidPrefix(prefix);
    if (prefix === '') throw new BlobKeyError(prefix, 'deletePrefix needs a non-empty prefix');
    let deleted = 0;
    let batch: string[] = [];
    const flush = async () => {
      const failures = (await this.#client.removeObjects(this.bucket, batch)) as unknown[];
      const failed = failures.filter(Boolean) as { Key?: string; Code?: string; Message?: string }[];
      if (failed.length > 0) {
        const first = failed[0];
        throw new Error(
          `deletePrefix ${JSON.stringify(prefix)} in ${this.url}: ${failed.length} object(s) not deleted, ` +
            `e.g. ${first?.Key ?? '?'}: ${first?.Code ?? ''} ${first?.Message ?? ''}`.trim(),
        );
      }
      deleted += batch.length;
      batch = [];
    };
    for await (const name of this.#listNames(prefix)) {
      batch.push(name);
      if (batch.length >= DELETE_BATCH) await flush();
    }
    if (batch.length > 0) await flush();
    return deleted;
  }

  async ping(): Promise<void> {
    if (!(await this.#client.bucketExists(this.bucket))) {
      throw new Error(`S3 bucket ${this.bucket} does not exist (store ${this.url})`);
    }
  }

  /** Creates the bucket when it is missing; for `tuneloop up` and tests, since production buckets are provisioned. */
  async ensureBucket(): Promise<void> {
    if (await this.#client.bucketExists(this.bucket)) return;
    try {
      await this.#client.makeBucket(this.bucket, this.#region);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'BucketAlreadyOwnedByYou' && code !== 'BucketAlreadyExists') throw err;
    }
  }

  /** S3's 1024-byte limit covers the whole name, so the store prefix eats into what a key may use. */
  #objectName(key: string): string {
    assertValidKey(key);
    const name = this.#base + key;
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > MAX_KEY_BYTES) {
      throw new BlobKeyError(
        key,
        `is ${bytes} bytes with the store prefix "${this.#base}"; S3 allows ${MAX_KEY_BYTES}`,
      );
    }
    return name;
  }

  async *#listNames(prefix: string): AsyncGenerator<string> {
    const items = this.#client.listObjectsV2(this.bucket, this.#base + prefix, true) as AsyncIterable<BucketItem>;
    for await (const item of items) {
      // Objects written by other tools may have names our keys cannot express; they are not ours to list.
      if (item.name && isValidKey(item.name.slice(this.#base.length))) yield item.name;
    }
  }

  async #stat(key: string): Promise<BlobInfo | null> {
    const name = this.#base + key;
    let st: BucketItemStat;
    try {
      st = await this.#client.statObject(this.bucket, name);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const meta = st.metaData as Record<string, unknown>;
    const contentType = typeof meta['content-type'] === 'string' ? meta['content-type'] : null;
    const recorded = meta[SHA256_META];
    if (typeof recorded === 'string' && /^[0-9a-f]{64}$/.test(recorded)) {
      return { key, size: st.size, sha256: recorded, contentType, modifiedAt: st.lastModified };
    }
    return this.#hashForeignObject(key, name, contentType, st);
  }

  /**
   * An object put by another tool carries no sha256; reading it is slow but the only honest answer. Size comes
   * from the same read, so the pair always describes one version.
   */
  async #hashForeignObject(key: string, name: string, contentType: string | null, st: BucketItemStat) {
    let stream: Readable;
    try {
      stream = await this.#client.getObject(this.bucket, name);
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of stream) {
      hash.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    return { key, size, sha256: hash.digest('hex'), contentType, modifiedAt: st.lastModified };
  }

  async #upload(
    key: string,
    source: PartSource,
    size: number,
    sha256: string,
    contentType: string,
    signal: AbortSignal | undefined,
  ): Promise<BlobInfo> {
    const name = this.#base + key;
    const headers = { 'Content-Type': contentType, [SHA256_HEADER]: sha256 };
    const partSize = Math.max(this.#partSize, Math.ceil(size / MAX_PARTS));
    let etag: string;
    if (size <= partSize) {
      const buf = await source.read(0, size);
      signal?.throwIfAborted();
      ({ etag } = await this.#client.putObject(this.bucket, name, buf, size, headers));
    } else {
      etag = await this.#multipartUpload(name, source, size, partSize, headers, signal);
    }
    return { key, size, sha256, contentType, modifiedAt: await this.#modifiedAt(name, etag) };
  }

  async #multipartUpload(
    name: string,
    source: PartSource,
    size: number,
    partSize: number,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const uploadId = await this.#client.initiateNewMultipartUpload(this.bucket, name, { ...headers });
    try {
      const parts: { part: number; etag: string }[] = [];
      // One part in memory at a time: a checkpoint of many GiB costs `partSize` of RAM, not its size.
      for (let part = 1, offset = 0; offset < size; part++, offset += partSize) {
        signal?.throwIfAborted();
        const chunk = await source.read(offset, Math.min(partSize, size - offset));
        const { etag } = await this.#client.uploadPart(
          {
            bucketName: this.bucket,
            objectName: name,
            uploadID: uploadId,
            partNumber: part,
            // Over HTTPS the client sends no payload hash; the MD5 lets the server reject a corrupted part.
            headers: { 'Content-MD5': createHash('md5').update(chunk).digest('base64') },
          },
          chunk,
        );
        parts.push({ part, etag });
      }
      signal?.throwIfAborted();
      const { etag } = await this.#client.completeMultipartUpload(this.bucket, name, uploadId, parts);
      return etag;
    } catch (err) {
      // Parts of an abandoned upload are invisible but billed until aborted.
      await this.#client.abortMultipartUpload(this.bucket, name, uploadId).catch(() => undefined);
      throw err;
    }
  }

  /** The server's timestamp for the version we wrote, or now if another put has already replaced it. */
  async #modifiedAt(name: string, etag: string): Promise<Date> {
    try {
      const st = await this.#client.statObject(this.bucket, name);
      return st.etag === etag ? st.lastModified : new Date();
    } catch {
      return new Date();
    }
  }
}

function isNotFound(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'NoSuchKey' || code === 'NotFound';
}

function bufferSource(buf: Buffer): PartSource {
  return { read: async (offset, length) => buf.subarray(offset, offset + length) };
}

function fileSource(fh: fs.FileHandle): PartSource {
  return {
    async read(offset, length) {
      const buf = Buffer.allocUnsafe(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await fh.read(buf, filled, length - filled, offset + filled);
        if (bytesRead === 0) {
          throw new Error(`spool file ended at ${offset + filled} bytes, expected ${offset + length}`);
        }
        filled += bytesRead;
      }
      return buf;
    },
  };
}
