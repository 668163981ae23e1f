import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, type IncompleteUploadedBucketItem } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlobKeyError, createBlobStore, S3BlobStore, type BlobInfo } from '../../src/storage';
import { startMinio, type MinioServer } from '../helpers/minio';
import { runBlobStoreContract } from './blob-store.contract';

const MiB = 1024 * 1024;
const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

let minio: MinioServer;
let admin: Client;

beforeAll(async () => {
  minio = await startMinio();
  const { hostname, port } = new URL(minio.endpoint);
  admin = new Client({
    endPoint: hostname,
    port: Number(port),
    useSSL: false,
    accessKey: minio.accessKey,
    secretKey: minio.secretKey,
  });
}, 90_000);

afterAll(async () => {
  await minio?.stop();
});

const connection = (spoolDir?: string) => ({
  endpoint: minio.endpoint,
  accessKey: minio.accessKey,
  secretKey: minio.secretKey,
  region: 'us-east-1',
  spoolDir,
  // S3's smallest part, so the contract's multi-megabyte objects also exercise the multipart path.
  partSize: 5 * MiB,
});

const newBucket = () => `tuneloop-test-${randomBytes(6).toString('hex')}`;

async function incompleteUploads(bucket: string): Promise<string[]> {
  const uploads: string[] = [];
  for await (const u of admin.listIncompleteUploads(bucket, '', true) as AsyncIterable<IncompleteUploadedBucketItem>) {
    uploads.push(`upload of ${u.key}`);
  }
  return uploads;
}

// A bucket per test, with no prefix, so that even the contract's 1024-byte key fits S3's limit on the whole name.
runBlobStoreContract('S3BlobStore (MinIO)', async () => {
  const bucket = newBucket();
  const spoolDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tuneloop-s3-spool-'));
  const store = createBlobStore(`s3://${bucket}`, connection(spoolDir)) as S3BlobStore;
  await store.ensureBucket();
  return {
    store,
    cleanup: () => fs.rm(spoolDir, { recursive: true, force: true }),
    leftovers: async () => [...(await fs.readdir(spoolDir)), ...(await incompleteUploads(bucket))],
  };
});

describe('S3BlobStore', () => {
  it('records the sha256 as x-amz-meta-sha256 on the object itself', async () => {
    const store = createBlobStore(`s3://${newBucket()}`, connection()) as S3BlobStore;
    await store.ensureBucket();
    const data = randomBytes(12 * MiB); // three parts

    const info = await store.put('ckpt/adapter.safetensors', data, { contentType: 'application/octet-stream' });

    const raw = await admin.statObject(store.bucket, 'ckpt/adapter.safetensors');
    expect(raw.metaData.sha256).toBe(sha256(data));
    expect(raw.size).toBe(data.length);
    expect(info.sha256).toBe(sha256(data));
    expect(Math.abs(info.modifiedAt.getTime() - raw.lastModified.getTime())).toBeLessThan(1000);
  });

  it('keeps objects under its URL prefix, apart from a sibling prefix that shares the same start', async () => {
    const bucket = newBucket();
    const a = createBlobStore(`s3://${bucket}/team/a`, connection()) as S3BlobStore;
    const ab = createBlobStore(`s3://${bucket}/team/ab/`, connection());
    await a.ensureBucket();

    await a.put('k', 'in a');
    await ab.put('k', 'in ab');

    expect(a.url).toBe(`s3://${bucket}/team/a`);
    expect(ab.url).toBe(`s3://${bucket}/team/ab`);
    expect((await collect(a.list(''))).map((i) => i.key)).toEqual(['k']);
    expect((await collect(ab.list(''))).map((i) => i.sha256)).toEqual([sha256('in ab')]);
    expect((await admin.statObject(bucket, 'team/a/k')).size).toBe(4);
    expect(await a.deletePrefix('k')).toBe(1);
    expect(await ab.stat('k')).not.toBeNull();
  });

  it('counts the store prefix against S3s 1024-byte limit on object names', async () => {
    const store = createBlobStore(`s3://${newBucket()}/some/prefix`, connection());
    const key = ['a'.repeat(255), 'b'.repeat(255), 'c'.repeat(255), 'd'.repeat(250)].join('/');

    await expect(store.put(key, 'x')).rejects.toBeInstanceOf(BlobKeyError);
    await expect(store.stat(key)).rejects.toThrow(/with the store prefix "some\/prefix\/"/);
  });

  it('hashes an object that another tool wrote without a sha256', async () => {
    const store = createBlobStore(`s3://${newBucket()}`, connection()) as S3BlobStore;
    await store.ensureBucket();
    await admin.putObject(store.bucket, 'imported/data.csv', 'a,b\n1,2\n', undefined, { 'Content-Type': 'text/csv' });

    expect(await store.stat('imported/data.csv')).toMatchObject({
      size: 8,
      sha256: sha256('a,b\n1,2\n'),
      contentType: 'text/csv',
    });
  });

  it('reports a missing bucket on ping and never puts credentials in its URL', async () => {
    const store = createBlobStore('s3://no-such-bucket-here/p', connection());

    await expect(store.ping()).rejects.toThrow(/no-such-bucket-here does not exist/);
    expect(store.url).toBe('s3://no-such-bucket-here/p');
    expect(store.url).not.toContain(minio.secretKey);
    expect(store.url).not.toContain(minio.accessKey);
  });

  it('fails ping when the endpoint does not answer', async () => {
    const store = createBlobStore('s3://bucket', { ...connection(), endpoint: 'http://127.0.0.1:1' });

    await expect(store.ping()).rejects.toThrow();
  });
});

describe('createBlobStore with s3 URLs', () => {
  it('needs credentials and a usable endpoint', () => {
    expect(() => createBlobStore('s3://bucket')).toThrow(/S3_ENDPOINT/);
    expect(() => createBlobStore('s3://bucket', { endpoint: 'not a url', accessKey: 'a', secretKey: 'b' })).toThrow(
      /Invalid S3 endpoint/,
    );
    expect(() => createBlobStore('s3://bucket', { endpoint: 'ftp://host', accessKey: 'a', secretKey: 'b' })).toThrow(
      /Invalid S3 endpoint/,
    );
    expect(() =>
      createBlobStore('s3://Bad_Bucket', { endpoint: 'http://h:9000', accessKey: 'a', secretKey: 'b' }),
    ).toThrow(/Invalid S3 bucket name/);
  });

  it('builds a credential-free URL from bucket and prefix', () => {
    const store = createBlobStore('s3://models/prod/', {
      endpoint: 'https://s3.example.com',
      accessKey: 'AKIA',
      secretKey: 'secret',
    });

    expect(store).toBeInstanceOf(S3BlobStore);
    expect(store.url).toBe('s3://models/prod');
  });
});

async function collect(iterable: AsyncIterable<BlobInfo>): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const info of iterable) out.push(info);
  return out;
}
