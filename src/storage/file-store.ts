import { createHash, randomUUID } from 'node:crypto';
import type { BigIntStats, Dirent } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import {
  assertValidKey,
  assertValidPrefix,
  BlobKeyError,
  BlobNotFoundError,
  compareKeys,
  DEFAULT_CONTENT_TYPE,
  DigestStream,
  isValidKey,
  toReadable,
  writeInto,
  type BlobBody,
  type BlobInfo,
  type BlobStore,
  type PutOptions,
} from './blob-store';

/**
 * The sidecar of one object. It names the exact file it describes by `(ino, size, mtimeNs)`: a rename keeps all
 * three, and a new version is always a different inode (it is created while the old one is still in place).
 */
interface Sidecar {
  v: 1;
  key: string;
  sha256: string;
  size: number;
  contentType: string | null;
  ino: string;
  mtimeNs: string;
}

type Fingerprint = Pick<Sidecar, 'ino' | 'size' | 'mtimeNs'>;

const fingerprintOf = (st: BigIntStats): Fingerprint => ({
  ino: st.ino.toString(),
  size: Number(st.size),
  mtimeNs: st.mtimeNs.toString(),
});

const sameFile = (a: Fingerprint, b: Fingerprint) => a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs;

/** Between a put's two renames a reader can meet new data and the old sidecar; these waits outlast that gap. */
const SIDECAR_RETRY_MS = [1, 2, 4, 8, 16, 32, 64];
/** A mismatch on a file renamed longer ago than this is left over from a crash or a copy, not a put in flight. */
const IN_FLIGHT_WINDOW_MS = 5_000;
/** Temp files this old belong to a process that died mid-put. */
const STALE_TEMP_MS = 24 * 60 * 60 * 1000;

const errCode = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

/**
 * A BlobStore in a local folder, laid out as
 *
 *   <root>/objects/<key>              the bytes, exactly as put (other tools may read them in place)
 *   <root>/meta/<hh>/<sha256(key)>.json  the sidecar: sha256, size, content type, and which file it describes
 *   <root>/tmp/                       puts in progress (same filesystem, so the final rename is atomic)
 *
 * A put streams into tmp/ while hashing, fsyncs, writes the sidecar into tmp/, then renames the data into place
 * (the commit: readers hold either the old inode or the new one, never a mix) and renames the sidecar after it.
 * Two renames cannot be one atomic step, so the sidecar carries the fingerprint of the file it describes and
 * `stat` checks it against the data file: in the microseconds between the renames it waits, and after a crash
 * (or a copy of the folder, which changes inodes) it re-hashes once and rewrites the sidecar. A stat therefore
 * never pairs a file with another version's sha256, and no reader ever needs a lock.
 *
 * Sidecars live in a separate hashed tree, not next to the data, so no key is reserved and only the data tree
 * can have file/folder clashes: like MinIO's own filesystem mode, this store cannot hold both `a` and `a/b`.
 */
export class FileBlobStore implements BlobStore {
  readonly url: string;
  readonly root: string;
  readonly #objectsDir: string;
  readonly #metaDir: string;
  readonly #tmpDir: string;
  #swept = false;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.url = pathToFileURL(this.root).href;
    this.#objectsDir = path.join(this.root, 'objects');
    this.#metaDir = path.join(this.root, 'meta');
    this.#tmpDir = path.join(this.root, 'tmp');
  }

  /** Where the bytes of `key` live, for tools that read files in place (never write there directly). */
  pathOf(key: string): string {
    assertValidKey(key);
    return path.join(this.#objectsDir, ...key.split('/'));
  }

  async put(key: string, body: BlobBody, opts: PutOptions = {}): Promise<BlobInfo> {
    assertValidKey(key);
    const source = toReadable(body);
    const contentType = opts.contentType ?? DEFAULT_CONTENT_TYPE;
    const id = randomUUID();
    const tmpData = path.join(this.#tmpDir, `${id}.data`);
    const tmpMeta = path.join(this.#tmpDir, `${id}.meta`);
    try {
      await fs.mkdir(this.#tmpDir, { recursive: true });
      const digest = new DigestStream();
      const fh = await fs.open(tmpData, 'wx');
      let written: BigIntStats;
      try {
        await pipeline(source, digest, writeInto(fh), { signal: opts.signal });
        await fh.sync();
        written = await fh.stat({ bigint: true });
      } finally {
        await fh.close();
      }
      const { sha256, size } = digest.result();
      if (Number(written.size) !== size) throw new Error(`put ${key}: wrote ${written.size} bytes, hashed ${size}`);
      const sidecar: Sidecar = { v: 1, key, sha256, contentType, ...fingerprintOf(written), size };
      await writeFileDurably(tmpMeta, JSON.stringify(sidecar));

      const dataPath = this.pathOf(key);
      await this.#renameIntoPlace(key, tmpData, dataPath);
      const metaPath = this.#sidecarPath(key);
      await fs.mkdir(path.dirname(metaPath), { recursive: true });
      await fs.rename(tmpMeta, metaPath);
      await Promise.all([fsyncDir(path.dirname(dataPath)), fsyncDir(path.dirname(metaPath))]);
      return { key, size, sha256, contentType, modifiedAt: new Date(Number(written.mtimeMs)) };
    } catch (err) {
      source.destroy();
      await Promise.all([removeQuietly(tmpData), removeQuietly(tmpMeta)]);
      throw err;
    }
  }

  async get(key: string): Promise<Readable> {
    const dataPath = this.pathOf(key);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(dataPath, 'r');
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFoundError(key, this.url);
      throw err;
    }
    // Opening a folder succeeds on Linux: `a` is not an object just because `a/b` is.
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new BlobNotFoundError(key, this.url);
    }
    return fh.createReadStream();
  }

  async stat(key: string): Promise<BlobInfo | null> {
    return this.#statKey(key, this.pathOf(key));
  }

  async *list(prefix: string): AsyncIterable<BlobInfo> {
    assertValidPrefix(prefix);
    for await (const { key, file } of this.#walk(prefix)) {
      const info = await this.#statKey(key, file);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    const dataPath = this.pathOf(key);
    await this.#deleteFile(key, dataPath);
  }

  async deletePrefix(prefix: string): Promise<number> {
    assertValidPrefix(prefix);
    if (prefix === '') throw new BlobKeyError(prefix, 'deletePrefix needs a non-empty prefix');
    let deleted = 0;
    for await (const { key, file } of this.#walk(prefix)) {
      if (await this.#deleteFile(key, file)) deleted++;
    }
    return deleted;
  }

  async ping(): Promise<void> {
    await Promise.all([this.#objectsDir, this.#metaDir, this.#tmpDir].map((d) => fs.mkdir(d, { recursive: true })));
    const probe = path.join(this.#tmpDir, `${randomUUID()}.ping`);
    try {
      await writeFileDurably(probe, 'ok');
    } finally {
      await removeQuietly(probe);
    }
    if (!this.#swept) {
      this.#swept = true;
      await this.#sweepStaleTemps();
    }
  }

  #sidecarPath(key: string): string {
    const h = createHash('sha256').update(key, 'utf8').digest('hex');
    return path.join(this.#metaDir, h.slice(0, 2), `${h}.json`);
  }

  async #renameIntoPlace(key: string, from: string, to: string): Promise<void> {
    // A concurrent delete prunes empty folders, possibly the one just made for us; a few retries outlast it.
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.mkdir(path.dirname(to), { recursive: true });
        await fs.rename(from, to);
        return;
      } catch (err) {
        const code = errCode(err);
        if (code === 'ENOENT' && attempt < 5) continue;
        if (code === 'EISDIR' || code === 'ENOTDIR' || code === 'EEXIST' || code === 'ENOTEMPTY') {
          throw new BlobKeyError(
            key,
            'clashes with another key in the folder store, which cannot hold both "a" and "a/b"; ' +
              'choose keys where no key is a folder of another',
          );
        }
        throw err;
      }
    }
  }

  async #statKey(key: string, dataPath: string): Promise<BlobInfo | null> {
    for (let attempt = 0; ; attempt++) {
      const st = await lstatOrNull(dataPath);
      if (!st?.isFile()) return null;
      const sidecar = await this.#readSidecar(key);
      if (sidecar && sameFile(sidecar, fingerprintOf(st))) return infoOf(sidecar, st);
      const delay = SIDECAR_RETRY_MS[attempt];
      const inFlight = Date.now() - Number(st.ctimeMs) < IN_FLIGHT_WINDOW_MS;
      if (!inFlight || delay === undefined) break;
      await sleep(delay);
    }
    return this.#rehash(key, dataPath);
  }

  async #readSidecar(key: string): Promise<Sidecar | null> {
    try {
      const parsed = JSON.parse(await fs.readFile(this.#sidecarPath(key), 'utf8')) as Partial<Sidecar>;
      return parsed.v === 1 && parsed.key === key && typeof parsed.sha256 === 'string' ? (parsed as Sidecar) : null;
    } catch {
      // Missing or unreadable: the caller re-hashes, which is always correct.
      return null;
    }
  }

  /** Recomputes a sidecar from the data itself; used only after a crash or when the folder was copied. */
  async #rehash(key: string, dataPath: string): Promise<BlobInfo | null> {
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(dataPath, 'r');
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
    let st: BigIntStats;
    const hash = createHash('sha256');
    try {
      st = await fh.stat({ bigint: true });
      if (!st.isFile()) return null;
      const buf = Buffer.allocUnsafe(1024 * 1024);
      let pos = 0;
      let bytesRead: number;
      while ((bytesRead = (await fh.read(buf, 0, buf.length, pos)).bytesRead) > 0) {
        hash.update(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally {
      await fh.close();
    }
    const sidecar: Sidecar = { v: 1, key, sha256: hash.digest('hex'), contentType: null, ...fingerprintOf(st) };
    // The hash describes the inode we opened; record it only if that inode is still the one in place.
    const now = await lstatOrNull(dataPath);
    if (now && sameFile(fingerprintOf(now), sidecar)) {
      const tmp = path.join(this.#tmpDir, `${randomUUID()}.meta`);
      const metaPath = this.#sidecarPath(key);
      try {
        await fs.mkdir(this.#tmpDir, { recursive: true });
        await fs.mkdir(path.dirname(metaPath), { recursive: true });
        await writeFileDurably(tmp, JSON.stringify(sidecar));
        await fs.rename(tmp, metaPath);
      } catch {
        // A read-only folder still answers correctly; it just re-hashes next time.
        await removeQuietly(tmp);
      }
    }
    return infoOf(sidecar, st);
  }

  /** Keys under `prefix` with their files, in UTF-8 byte order of the key. */
  async *#walk(prefix: string): AsyncGenerator<{ key: string; file: string }> {
    const start = prefix.slice(0, prefix.lastIndexOf('/') + 1);
    yield* this.#walkDir(start, prefix);
  }

  async *#walkDir(rel: string, prefix: string): AsyncGenerator<{ key: string; file: string }> {
    const dir = path.join(this.#objectsDir, ...rel.split('/').filter(Boolean));
    let entries: Dirent[];
    try {
      entries = await fs.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
    // A folder sorts as `name/`: every key below it shares that prefix, so sorting siblings this way and
    // descending in order yields keys in global byte order (`a-b` < `a/x` < `a0`).
    const children = entries
      .filter((e) => e.isFile() || e.isDirectory())
      .map((e) => ({ rel: rel + e.name + (e.isDirectory() ? '/' : ''), name: e.name, isDir: e.isDirectory() }))
      .sort((a, b) => compareKeys(a.rel, b.rel));
    for (const child of children) {
      if (child.isDir) {
        if (child.rel.startsWith(prefix) || prefix.startsWith(child.rel)) yield* this.#walkDir(child.rel, prefix);
      } else if (child.rel.startsWith(prefix) && isValidKey(child.rel)) {
        yield { key: child.rel, file: path.join(dir, child.name) };
      }
    }
  }

  /** Returns whether an object was there. */
  async #deleteFile(key: string, dataPath: string): Promise<boolean> {
    let existed = true;
    try {
      await fs.unlink(dataPath);
    } catch (err) {
      const code = errCode(err);
      // EISDIR (Linux) / EPERM (macOS): a folder holding other keys, not an object.
      if (!isMissing(err) && code !== 'EISDIR' && code !== 'EPERM') throw err;
      existed = false;
    }
    await removeQuietly(this.#sidecarPath(key));
    await this.#pruneEmptyDirs(path.dirname(dataPath));
    return existed;
  }

  async #pruneEmptyDirs(from: string): Promise<void> {
    for (let dir = from; dir.startsWith(this.#objectsDir + path.sep); dir = path.dirname(dir)) {
      try {
        await fs.rmdir(dir);
      } catch {
        return; // not empty (or already gone): everything above is in use too
      }
    }
  }

  async #sweepStaleTemps(): Promise<void> {
    const names = await fs.readdir(this.#tmpDir).catch(() => [] as string[]);
    const cutoff = Date.now() - STALE_TEMP_MS;
    for (const name of names) {
      const file = path.join(this.#tmpDir, name);
      const st = await fs.lstat(file).catch(() => null);
      if (st?.isFile() && st.mtimeMs < cutoff) await removeQuietly(file);
    }
  }
}

function infoOf(sidecar: Sidecar, st: BigIntStats): BlobInfo {
  return {
    key: sidecar.key,
    size: sidecar.size,
    sha256: sidecar.sha256,
    contentType: sidecar.contentType,
    modifiedAt: new Date(Number(st.mtimeMs)),
  };
}

function isMissing(err: unknown): boolean {
  const code = errCode(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function lstatOrNull(file: string): Promise<BigIntStats | null> {
  try {
    return await fs.lstat(file, { bigint: true });
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

async function writeFileDurably(file: string, data: string): Promise<void> {
  const fh = await fs.open(file, 'wx');
  try {
    await fh.writeFile(data, 'utf8');
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes renames into `dir` survive a power cut; a rename is atomic but not durable until its folder is synced. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    // Some filesystems refuse fsync on a folder; atomicity does not depend on it.
    if (errCode(err) !== 'EINVAL' && errCode(err) !== 'EISDIR') throw err;
  } finally {
    await fh.close();
  }
}

async function removeQuietly(file: string): Promise<void> {
  await fs.rm(file, { force: true }).catch(() => undefined);
}
