import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { BlobKeyError, createBlobStore, FileBlobStore, type BlobInfo } from '../../src/storage';
import { runBlobStoreContract } from './blob-store.contract';

const MiB = 1024 * 1024;
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

async function tempRoot(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'tuneloop-file-store-'));
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

runBlobStoreContract('FileBlobStore', async () => {
  const root = await tempRoot();
  return {
    store: new FileBlobStore(root),
    cleanup: () => fs.rm(root, { recursive: true, force: true }),
    leftovers: () => filesUnder(path.join(root, 'tmp')),
  };
});

describe('FileBlobStore', () => {
  async function withStore(test: (store: FileBlobStore, root: string) => Promise<void>): Promise<void> {
    const root = await tempRoot();
    try {
      await test(new FileBlobStore(root), root);
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  }

  it('keeps the bytes as plain files under objects/ so other tools can read them in place', () =>
    withStore(async (store, root) => {
      await store.put('runs/r1/train.jsonl', '{"a":1}\n');

      expect(store.pathOf('runs/r1/train.jsonl')).toBe(path.join(root, 'objects', 'runs', 'r1', 'train.jsonl'));
      expect(await fs.readFile(store.pathOf('runs/r1/train.jsonl'), 'utf8')).toBe('{"a":1}\n');
      expect(await filesUnder(path.join(root, 'tmp'))).toEqual([]);
    }));

  it('re-hashes and repairs the sidecar when the data changed without it (a crash between the two renames)', () =>
    withStore(async (store) => {
      await store.put('ckpt/model.bin', 'old bytes', { contentType: 'application/x-old' });
      const file = store.pathOf('ckpt/model.bin');
      await fs.writeFile(`${file}.crash`, 'new bytes, longer');
      await fs.rename(`${file}.crash`, file);

      const repaired = await store.stat('ckpt/model.bin');
      const again = await store.stat('ckpt/model.bin');

      expect(repaired).toMatchObject({ size: 17, sha256: sha256('new bytes, longer'), contentType: null });
      expect(again).toEqual(repaired);
      expect((await collectKeys(store)).map((i) => i.sha256)).toEqual([sha256('new bytes, longer')]);
    }));

  it('sweeps temp files that a crashed process left behind, and never lists them', () =>
    withStore(async (store, root) => {
      await store.put('kept', 'kept');
      const tmp = path.join(root, 'tmp');
      await fs.writeFile(path.join(tmp, 'dead.data'), 'half an object');
      const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
      await fs.utimes(path.join(tmp, 'dead.data'), twoDaysAgo, twoDaysAgo);
      await fs.writeFile(path.join(tmp, 'live.data'), 'a put in progress elsewhere');

      expect((await collectKeys(store)).map((i) => i.key)).toEqual(['kept']);
      await store.ping();

      expect(await filesUnder(tmp)).toEqual(['live.data']);
    }));

  it('refuses a key that would need a file and a folder of the same name, keeping both objects intact', () =>
    withStore(async (store, root) => {
      await store.put('a/b', 'inside a');
      await store.put('x', 'plain x');

      const folderClash = await store.put('a', 'would replace a folder').catch((e: unknown) => e);
      const fileClash = await store.put('x/y', 'would need x as a folder').catch((e: unknown) => e);

      expect(folderClash).toBeInstanceOf(BlobKeyError);
      expect((folderClash as BlobKeyError).key).toBe('a');
      expect(fileClash).toBeInstanceOf(BlobKeyError);
      expect((await collectKeys(store)).map((i) => i.key)).toEqual(['a/b', 'x']);
      expect(await filesUnder(path.join(root, 'tmp'))).toEqual([]);
    }));

  it('removes folders that a delete leaves empty', () =>
    withStore(async (store, root) => {
      await store.put('deep/er/x', 'x');
      await store.put('deep/y', 'y');

      await store.delete('deep/er/x');
      expect(await fs.readdir(path.join(root, 'objects', 'deep'))).toEqual(['y']);
      await store.deletePrefix('deep/');

      expect(await fs.readdir(path.join(root, 'objects'))).toEqual([]);
    }));

  it('fails its readiness check when the folder cannot be created', () =>
    withStore(async (_store, root) => {
      await fs.writeFile(path.join(root, 'a-file'), '');

      await expect(new FileBlobStore(path.join(root, 'a-file', 'store')).ping()).rejects.toThrow(/ENOTDIR/);
    }));

  it('streams a large put without holding it in memory', { timeout: 60_000 }, () =>
    withStore(async (store) => {
      const chunk = randomBytes(MiB);
      let sent = 0;
      const total = 256;
      const source = new Readable({
        read() {
          this.push(sent++ < total ? chunk : null);
        },
      });
      const before = process.memoryUsage().rss;

      const info = await store.put('big/blob', source);

      expect(info.size).toBe(total * MiB);
      expect(process.memoryUsage().rss - before).toBeLessThan(128 * MiB);
    }),
  );
});

async function collectKeys(store: FileBlobStore): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const info of store.list('')) out.push(info);
  return out;
}

describe('createBlobStore with file URLs', () => {
  it('opens file:///absolute/path as that folder and reports the URL back', () => {
    const store = createBlobStore('file:///var/lib/tuneloop%20store');

    expect(store).toBeInstanceOf(FileBlobStore);
    expect((store as FileBlobStore).root).toBe('/var/lib/tuneloop store');
    expect(store.url).toBe('file:///var/lib/tuneloop%20store');
  });

  it('opens file://relative/path relative to the working directory', () => {
    const store = createBlobStore('file://.tuneloop/blobs') as FileBlobStore;

    expect(store.root).toBe(path.resolve('.tuneloop/blobs'));
    expect(store.url).toBe(pathToFileURL(path.resolve('.tuneloop/blobs')).href);
  });

  it('rejects URLs it cannot open with a message naming the accepted forms', () => {
    expect(() => createBlobStore('file://')).toThrow(/name a folder/);
    expect(() => createBlobStore('/var/lib/tuneloop')).toThrow(/file:\/\/<folder> or s3:\/\/<bucket>/);
    expect(() => createBlobStore('gs://bucket')).toThrow(/expected file:\/\//);
  });
});
