import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlobStore } from './blob-store';
import { FileBlobStore } from './file-store';
import { S3BlobStore } from './s3-store';

export * from './blob-store';
export { FileBlobStore } from './file-store';
export { S3BlobStore, type S3BlobStoreOptions } from './s3-store';

/** The S3 connection as `src/config.ts` holds it. */
export interface S3ConnectionOptions {
  /** `http://host:port` or `https://host[:port]`. */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  region?: string;
  /** Local folder for staging stream puts; the OS temp folder when absent. */
  spoolDir?: string;
  partSize?: number;
}

/**
 * Opens the store named by `url`:
 *   file:///abs/folder       a folder (percent-encoded, as `pathToFileURL` writes it)
 *   file://relative/folder   a folder relative to the working directory (not a URL host, whatever RFC 8089 says)
 *   s3://bucket[/prefix]     a bucket, through `s3`'s endpoint and credentials
 */
export function createBlobStore(url: string, s3?: S3ConnectionOptions | null): BlobStore {
  if (url.startsWith('file://')) {
    const rest = url.slice('file://'.length);
    if (rest === '') throw new Error('Invalid store URL "file://": name a folder, e.g. file:///var/lib/tuneloop');
    return new FileBlobStore(rest.startsWith('/') ? fileURLToPath(url) : path.resolve(decodeURIComponent(rest)));
  }
  if (url.startsWith('s3://')) {
    const [bucket = '', ...prefix] = url.slice('s3://'.length).split('/');
    if (!s3) throw new Error(`Store ${url} needs S3 credentials: set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY`);
    let endpoint: URL;
    try {
      endpoint = new URL(s3.endpoint);
    } catch {
      throw new Error(`Invalid S3 endpoint ${JSON.stringify(s3.endpoint)}: expected http(s)://host[:port]`);
    }
    if (endpoint.protocol !== 'http:' && endpoint.protocol !== 'https:') {
      throw new Error(`Invalid S3 endpoint ${JSON.stringify(s3.endpoint)}: expected http(s)://host[:port]`);
    }
    const useSSL = endpoint.protocol === 'https:';
    return new S3BlobStore({
      bucket,
      prefix: prefix.join('/'),
      // URL keeps IPv6 hosts bracketed; the client wants the bare address.
      endPoint: endpoint.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: endpoint.port ? Number(endpoint.port) : useSSL ? 443 : 80,
      useSSL,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      region: s3.region,
      spoolDir: s3.spoolDir,
      partSize: s3.partSize,
    });
  }
  throw new Error(`Invalid store URL ${JSON.stringify(url)}: expected file://<folder> or s3://<bucket>[/prefix]`);
}
