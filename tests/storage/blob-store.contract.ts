import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlobKeyError, BlobNotFoundError, type BlobInfo, type BlobStore } from '../../src/storage';

export interface ContractStore {
  store: BlobStore;
  cleanup(): Promise<void>;
  /** Whatever a backend could leak outside the objects it lists (temp files, spool files, open uploads). */
  leftovers(): Promise<string[]>;
}

const MiB = 1024 * 1024;

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Emits `data` in `chunkSize` pieces, pausing `delayMs` before each: an upload from a slow producer. */
function slowStream(data: Buffer, chunkSize: number, delayMs = 0): Readable {
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < data.length; offset += chunkSize) {
        if (delayMs > 0) await sleep(delayMs);
        yield data.subarray(offset, offset + chunkSize);
      }
    })(),
    { objectMode: false },
  );
}

/** Emits `bytesBeforeFailure` bytes, then fails the way a dropped upstream connection does. */
function failingStream(bytesBeforeFailure: number): Readable {
  return Readable.from(
    (async function* () {
      for (let sent = 0; sent < bytesBeforeFailure; sent += 64 * 1024) {
        yield randomBytes(64 * 1024);
        await sleep(1);
      }
      throw new Error('upstream connection reset');
    })(),
    { objectMode: false },
  );
}

async function collect(iterable: AsyncIterable<BlobInfo>): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const info of iterable) out.push(info);
  return out;
}

const keysOf = async (store: BlobStore, prefix: string) => (await collect(store.list(prefix))).map((i) => i.key);

/**
 * The behaviour every BlobStore promises, run against each backend by its own test file. `makeStore` is called
 * for every test and must return an empty store.
 */
export function runBlobStoreContract(name: string, makeStore: () => Promise<ContractStore>): void {
  describe(`${name}: BlobStore contract`, () => {
    let ctx: ContractStore;
    let store: BlobStore;

    beforeEach(async () => {
      ctx = await makeStore();
      store = ctx.store;
    });
    afterEach(async () => {
      await ctx.cleanup();
    });

    it('round-trips a 5 MB streamed object, recording the sha256 and size computed while streaming', async () => {
      const data = randomBytes(5 * MiB + 123);

      const info = await store.put('datasets/run-1/train.jsonl', slowStream(data, 64 * 1024), {
        contentType: 'application/x-ndjson',
      });

      expect(info).toMatchObject({
        key: 'datasets/run-1/train.jsonl',
        size: data.length,
        sha256: sha256(data),
        contentType: 'application/x-ndjson',
      });
      expect(info.modifiedAt).toBeInstanceOf(Date);
      const back = await readAll(await store.get('datasets/run-1/train.jsonl'));
      expect(back.length).toBe(data.length);
      expect(sha256(back)).toBe(sha256(data));
      expect(await store.stat('datasets/run-1/train.jsonl')).toMatchObject({
        key: 'datasets/run-1/train.jsonl',
        size: data.length,
        sha256: sha256(data),
        contentType: 'application/x-ndjson',
      });
    });

    it('accepts Buffer and string bodies and defaults the content type', async () => {
      const text = 'héllo wörld\n';

      const fromString = await store.put('a/text.txt', text);
      const fromBuffer = await store.put('a/empty.bin', Buffer.alloc(0));

      expect(fromString).toMatchObject({ size: Buffer.byteLength(text), sha256: sha256(Buffer.from(text)) });
      expect(fromString.contentType).toBe('application/octet-stream');
      expect(fromBuffer).toMatchObject({ size: 0, sha256: sha256(Buffer.alloc(0)) });
      expect((await readAll(await store.get('a/text.txt'))).toString('utf8')).toBe(text);
      expect((await readAll(await store.get('a/empty.bin'))).length).toBe(0);
      expect(await store.stat('a/empty.bin')).toMatchObject({ size: 0, sha256: sha256(Buffer.alloc(0)) });
    });

    it('answers null for stat of a missing key and BlobNotFoundError for get', async () => {
      await store.put('present/x', 'x');

      expect(await store.stat('missing/x')).toBeNull();
      expect(await store.stat('present')).toBeNull();
      const err = await store.get('missing/x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobNotFoundError);
      expect((err as BlobNotFoundError).key).toBe('missing/x');
      await expect(store.get('present')).rejects.toBeInstanceOf(BlobNotFoundError);
    });

    it('lists exactly the keys under a prefix, recursively, in UTF-8 byte order', async () => {
      // '-' < '.' < '/' < '0' in bytes, and U+FF21 sorts before U+1F600 in UTF-8 but after it in UTF-16.
      const keys = [
        'runs/r1/b/c.bin',
        'runs/r1/a.jsonl',
        'runs/r1-x',
        'runs/r1.b',
        'runs/r10/z',
        'runs/r1/\u{1F600}',
        'runs/r1/\uFF21',
        'runs/r2/a',
        'other/x',
      ];
      for (const key of keys) await store.put(key, `content of ${key}`);

      const underR1 = await collect(store.list('runs/r1/'));

      expect(underR1.map((i) => i.key)).toEqual([
        'runs/r1/a.jsonl',
        'runs/r1/b/c.bin',
        'runs/r1/\uFF21',
        'runs/r1/\u{1F600}',
      ]);
      for (const info of underR1) {
        const body = Buffer.from(`content of ${info.key}`);
        expect(info).toMatchObject({ size: body.length, sha256: sha256(body) });
      }
      expect(await keysOf(store, 'runs/r1')).toEqual([
        'runs/r1-x',
        'runs/r1.b',
        'runs/r1/a.jsonl',
        'runs/r1/b/c.bin',
        'runs/r1/\uFF21',
        'runs/r1/\u{1F600}',
        'runs/r10/z',
      ]);
      expect(await keysOf(store, 'runs/r1/b/c.bin')).toEqual(['runs/r1/b/c.bin']);
      expect(await keysOf(store, 'nothing/')).toEqual([]);
      expect(await keysOf(store, '')).toEqual([...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
    });

    it('never lists or stats a put that is still in progress', async () => {
      await store.put('jobs/done', 'done');
      const source = new PassThrough();
      const pending = store.put('jobs/in-progress', source);
      source.write(randomBytes(2 * MiB));
      await sleep(100);

      expect(await keysOf(store, '')).toEqual(['jobs/done']);
      expect(await store.stat('jobs/in-progress')).toBeNull();

      source.end(randomBytes(1 * MiB));
      const info = await pending;
      expect(info.size).toBe(3 * MiB);
      expect(await keysOf(store, '')).toEqual(['jobs/done', 'jobs/in-progress']);
      expect(await ctx.leftovers()).toEqual([]);
    });

    it('deletes an object, and deleting a missing key is not an error', async () => {
      await store.put('tmp/a', 'a');
      await store.put('tmp/b', 'b');

      await store.delete('tmp/a');
      await store.delete('tmp/a');
      await store.delete('never/existed');

      expect(await store.stat('tmp/a')).toBeNull();
      await expect(store.get('tmp/a')).rejects.toBeInstanceOf(BlobNotFoundError);
      expect(await keysOf(store, '')).toEqual(['tmp/b']);
    });

    it('deletes every key under a prefix and only those, returning the count', async () => {
      for (const key of ['ckpt/run-1/step-1/a', 'ckpt/run-1/step-2/a', 'ckpt/run-1/step-2/b', 'ckpt/run-10/a']) {
        await store.put(key, key);
      }

      expect(await store.deletePrefix('ckpt/run-1/')).toBe(3);
      expect(await keysOf(store, '')).toEqual(['ckpt/run-10/a']);
      expect(await store.deletePrefix('ckpt/run-1/')).toBe(0);
      await expect(store.deletePrefix('')).rejects.toBeInstanceOf(BlobKeyError);
      expect(await keysOf(store, '')).toEqual(['ckpt/run-10/a']);
    });

    it('replaces content and sha256 when a key is put again', async () => {
      const first = randomBytes(300 * 1024);
      const second = randomBytes(100 * 1024);
      await store.put('models/adapter.bin', first);

      const info = await store.put('models/adapter.bin', slowStream(second, 16 * 1024));

      expect(info).toMatchObject({ size: second.length, sha256: sha256(second) });
      expect(await store.stat('models/adapter.bin')).toMatchObject({ size: second.length, sha256: sha256(second) });
      expect(sha256(await readAll(await store.get('models/adapter.bin')))).toBe(sha256(second));
      expect(await keysOf(store, '')).toEqual(['models/adapter.bin']);
    });

    it('gives a concurrent reader the whole old or the whole new object while a slow put overwrites it', async () => {
      const oldData = randomBytes(2 * MiB);
      const newData = randomBytes(6 * MiB + 7);
      const versions = new Map([
        [sha256(oldData), oldData.length],
        [sha256(newData), newData.length],
      ]);
      await store.put('shared/object', oldData);

      let putDone = false;
      // ~100 chunks with a pause before each: the put stays in flight for a second or so.
      const put = store.put('shared/object', slowStream(newData, 64 * 1024, 8)).finally(() => (putDone = true));
      const seen: string[] = [];
      const reader = async () => {
        let extraRounds = 3; // keep reading a little past the commit, where a torn read would show
        while (!putDone || extraRounds-- > 0) {
          const body = await readAll(await store.get('shared/object'));
          const digest = sha256(body);
          expect(versions.get(digest), `read of ${body.length} bytes matches neither version`).toBe(body.length);
          const info = await store.stat('shared/object');
          expect(info && versions.get(info.sha256), 'stat pairs a sha256 with the wrong size').toBe(info?.size);
          seen.push(digest);
        }
      };
      await Promise.all([put, reader(), reader()]);

      expect(seen.length).toBeGreaterThan(5);
      expect(seen[0]).toBe(sha256(oldData));
      expect(seen.at(-1)).toBe(sha256(newData));
      expect(await ctx.leftovers()).toEqual([]);
    }, 60_000);

    it('leaves the old object and no garbage when the source fails mid-put', async () => {
      const original = randomBytes(256 * 1024);
      await store.put('data/a', original);

      await expect(store.put('data/a', failingStream(3 * MiB))).rejects.toThrow('upstream connection reset');
      await expect(store.put('data/new', failingStream(1 * MiB))).rejects.toThrow('upstream connection reset');

      expect(sha256(await readAll(await store.get('data/a')))).toBe(sha256(original));
      expect(await store.stat('data/a')).toMatchObject({ size: original.length, sha256: sha256(original) });
      expect(await store.stat('data/new')).toBeNull();
      expect(await keysOf(store, '')).toEqual(['data/a']);
      expect(await ctx.leftovers()).toEqual([]);
    });

    it('stops and leaves nothing behind when the put is aborted', async () => {
      const controller = new AbortController();
      const source = new PassThrough();
      const pending = store.put('data/aborted', source, { signal: controller.signal });
      source.write(randomBytes(MiB));
      await sleep(50);

      controller.abort();

      await expect(pending).rejects.toThrow(/abort/i);
      expect(await store.stat('data/aborted')).toBeNull();
      expect(await ctx.leftovers()).toEqual([]);
    });

    it('rejects malformed keys with a BlobKeyError naming the key, before touching the backend', async () => {
      const bad = [
        '',
        '/abs/key',
        'trailing/',
        'a//b',
        '../escape',
        'a/../b',
        'a/./b',
        '.',
        'a\\b',
        'nul\u0000byte',
        'new\nline',
        'del\u007f',
        'lone\uD800surrogate',
        'x'.repeat(1025),
        'é'.repeat(513), // 1026 bytes in UTF-8, though only 513 characters
        `${'s'.repeat(256)}/x`,
      ];
      for (const key of bad) {
        for (const attempt of [
          () => store.put(key, 'x'),
          () => store.get(key),
          () => store.stat(key),
          () => store.delete(key),
        ]) {
          const err = await attempt().catch((e: unknown) => e);
          expect(err, `key ${JSON.stringify(key)}`).toBeInstanceOf(BlobKeyError);
          expect((err as BlobKeyError).key).toBe(key);
          expect((err as BlobKeyError).message).toContain(JSON.stringify(key.slice(0, 200)).slice(0, -1));
        }
      }
      await expect(store.deletePrefix('../')).rejects.toBeInstanceOf(BlobKeyError);
      await expect(collect(store.list('/abs'))).rejects.toBeInstanceOf(BlobKeyError);
      expect(await keysOf(store, '')).toEqual([]);
    });

    it('accepts keys up to 1024 bytes with dots, spaces and non-ASCII names', async () => {
      const longest = ['0'.repeat(255), '1'.repeat(255), '2'.repeat(255), '3'.repeat(254), 'z'].join('/');
      const odd = ['.hidden/..dots../file.tar.gz', 'with space/ünïcödé/名前', 'a-b_c~d+e=f@g'];

      for (const key of [longest, ...odd]) await store.put(key, key);

      expect(Buffer.byteLength(longest)).toBe(1024);
      for (const key of [longest, ...odd]) {
        expect((await readAll(await store.get(key))).toString('utf8')).toBe(key);
      }
      expect(new Set(await keysOf(store, ''))).toEqual(new Set([longest, ...odd]));
    });

    it('passes its readiness check', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
