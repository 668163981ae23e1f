import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { BlobNotFoundError, type BlobStore } from '../storage/blob-store';

/**
 * Directories of files with a `manifest.json` (sizes and sha256 of every other file): the trainer's checkpoints
 * and adapters. The rule is the one the trainer writes by, on both sides of the store: files first, the manifest
 * last; a directory without a complete manifest does not exist; every byte read back is checked against it.
 */

export const MANIFEST = 'manifest.json';

const manifestSchema = z
  .object({
    files: z.record(
      z.string().regex(/^[A-Za-z0-9._-]+$/, 'a plain file name'),
      z.object({ size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).loose(),
    ),
  })
  .loose();
export type Manifest = z.output<typeof manifestSchema>;

export class CorruptArtifact extends Error {
  override readonly name = 'CorruptArtifact';
}

export function parseManifest(text: string, where: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CorruptArtifact(`${where}: manifest is not JSON`);
  }
  const r = manifestSchema.safeParse(raw);
  if (!r.success) throw new CorruptArtifact(`${where}: manifest is malformed (${r.error.issues[0]?.message})`);
  if (MANIFEST in r.data.files) throw new CorruptArtifact(`${where}: manifest lists itself`);
  return r.data;
}

export const manifestBytes = (m: Manifest) => Object.values(m.files).reduce((n, f) => n + f.size, 0);

async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { sha256: hash.digest('hex'), size };
}

/** Checks a local directory against its manifest; returns the manifest. */
export async function verifyLocalDir(dir: string): Promise<Manifest> {
  const text = await readFile(path.join(dir, MANIFEST), 'utf8').catch(() => {
    throw new CorruptArtifact(`${dir}: no ${MANIFEST} (an incomplete write)`);
  });
  const m = parseManifest(text, dir);
  for (const [name, want] of Object.entries(m.files)) {
    const got = await sha256File(path.join(dir, name)).catch(() => null);
    if (!got) throw new CorruptArtifact(`${dir}/${name}: missing`);
    if (got.size !== want.size)
      throw new CorruptArtifact(`${dir}/${name}: ${got.size} bytes, manifest says ${want.size}`);
    if (got.sha256 !== want.sha256) throw new CorruptArtifact(`${dir}/${name}: sha256 does not match the manifest`);
  }
  return m;
}

/** Writes a manifest for a directory that has none (an exported adapter), listing every regular file in it. */
export async function writeManifestFor(dir: string, extra: Record<string, unknown> = {}): Promise<Manifest> {
  const files: Manifest['files'] = {};
  for (const name of (await readdir(dir)).sort()) {
    if (name === MANIFEST) continue;
    if (!(await stat(path.join(dir, name))).isFile()) continue;
    files[name] = await sha256File(path.join(dir, name));
  }
  const m: Manifest = { ...extra, files };
  await writeFile(path.join(dir, MANIFEST), JSON.stringify(m, null, 2));
  return m;
}

/**
 * Uploads a verified local directory under `prefix` (ending in `/`): every file, then the manifest. A reader of
 * the store never sees a manifest whose files are not all there.
 */
export async function uploadDir(
  store: BlobStore,
  dir: string,
  prefix: string,
  signal?: AbortSignal,
): Promise<{ manifest: Manifest; manifestSha256: string; bytes: number }> {
  const manifest = await verifyLocalDir(dir);
  for (const [name, want] of Object.entries(manifest.files)) {
    const existing = await store.stat(prefix + name);
    if (existing?.sha256 === want.sha256 && existing.size === want.size) continue; // a retry: already there
    const info = await store.put(prefix + name, createReadStream(path.join(dir, name)), { signal });
    if (info.sha256 !== want.sha256) throw new CorruptArtifact(`${dir}/${name} changed while it was uploaded`);
  }
  const text = await readFile(path.join(dir, MANIFEST));
  const info = await store.put(prefix + MANIFEST, text, { contentType: 'application/json', signal });
  return { manifest, manifestSha256: info.sha256, bytes: manifestBytes(manifest) };
}

/** Reads and checks the manifest under `prefix`; null when there is none (incomplete or absent). */
export async function readStoreManifest(store: BlobStore, prefix: string): Promise<Manifest | null> {
  if (!(await store.stat(prefix + MANIFEST))) return null;
  const chunks: Buffer[] = [];
  for await (const c of (await store.get(prefix + MANIFEST)) as AsyncIterable<Buffer>) chunks.push(c);
  return parseManifest(Buffer.concat(chunks).toString('utf8'), prefix);
}

/**
 * Downloads the directory under `prefix` into `dest`, checking every file's size and sha256 as it streams. It
 * lands in a sibling temporary folder renamed into place at the end, so `dest` is complete or absent.
 */
export async function downloadDir(store: BlobStore, prefix: string, dest: string): Promise<Manifest> {
  const manifest = await readStoreManifest(store, prefix);
  if (!manifest) throw new CorruptArtifact(`${prefix}: no ${MANIFEST} in the store`);
  const tmp = `${dest}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  try {
    for (const [name, want] of Object.entries(manifest.files)) {
      const got = await downloadFile(store, prefix + name, path.join(tmp, name)).catch((err: unknown) => {
        if (err instanceof BlobNotFoundError)
          throw new CorruptArtifact(`${prefix}${name}: listed but not in the store`);
        throw err;
      });
      if (got.size !== want.size || got.sha256 !== want.sha256) {
        throw new CorruptArtifact(`${prefix}${name}: the stored bytes do not match the manifest`);
      }
    }
    await writeFile(path.join(tmp, MANIFEST), JSON.stringify(manifest, null, 2));
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
    return manifest;
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Streams one object to a local file, returning what was written. */
export async function downloadFile(store: BlobStore, key: string, file: string) {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  await mkdir(path.dirname(file), { recursive: true });
  await pipeline(await store.get(key), meter, createWriteStream(file));
  return { sha256: hash.digest('hex'), size };
}

/** Downloads an object to `file` unless a file with the expected checksum is there already (a retry). */
export async function ensureLocalCopy(store: BlobStore, key: string, file: string, sha256: string): Promise<void> {
  const have = await sha256File(file).catch(() => null);
  if (have?.sha256 === sha256) return;
  const tmp = `${file}.tmp-${process.pid}`;
  const got = await downloadFile(store, key, tmp);
  if (got.sha256 !== sha256) {
    await rm(tmp, { force: true });
    throw new CorruptArtifact(`${key}: the stored bytes do not match the recorded sha256`);
  }
  await rename(tmp, file);
}
