import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface MinioServer {
  /** `http://127.0.0.1:<port>`, the shape `S3_ENDPOINT` takes. */
  endpoint: string;
  accessKey: string;
  secretKey: string;
  stop(): Promise<void>;
}

const repoRoot = path.resolve(import.meta.dirname, '..', '..');
export const MINIO_BINARY = path.join(repoRoot, '.tools', 'bin', 'minio');

const READY_TIMEOUT_MS = 60_000;
const OUTPUT_LIMIT = 64 * 1024;

/**
 * Starts a real MinIO server on free loopback ports with random root credentials and a fresh data folder, and
 * resolves once it answers its liveness probe. Tests must not silently pass without it, so a missing binary is an
 * error that says how to build it.
 */
export async function startMinio(): Promise<MinioServer> {
  if (!existsSync(MINIO_BINARY)) {
    throw new Error(
      `MinIO server binary not found at ${MINIO_BINARY}. Build it with: bash scripts/setup.sh --minio ` +
        '(the first build from the Go module proxy takes several minutes).',
    );
  }
  // Another process may take a free port between our probe and MinIO's bind; a fresh pair fixes that.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce();
    } catch (err) {
      if (!(err instanceof PortTakenError) || attempt >= 3) throw err;
    }
  }
}

class PortTakenError extends Error {}

async function startOnce(): Promise<MinioServer> {
  const [port, consolePort] = await freePorts(2);
  const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'tuneloop-minio-'));
  const accessKey = `test${randomBytes(6).toString('hex')}`;
  const secretKey = randomBytes(18).toString('base64url');
  // Inherited MINIO_* settings (volumes, KMS, …) from a developer's shell would change what we start.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MINIO_')));
  const child = spawn(
    MINIO_BINARY,
    ['server', dataDir, '--address', `127.0.0.1:${port}`, '--console-address', `127.0.0.1:${consolePort}`],
    {
      env: { ...env, MINIO_ROOT_USER: accessKey, MINIO_ROOT_PASSWORD: secretKey, MINIO_UPDATE: 'off' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  // Set from event handlers; an object so that TypeScript does not narrow them to their initial null.
  const state: { exit: { code: number | null; signal: NodeJS.Signals | null } | null; spawnError: Error | null } = {
    exit: null,
    spawnError: null,
  };
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      state.exit = { code, signal };
      resolve();
    });
  });
  child.once('error', (err) => (state.spawnError = err));

  const stop = async () => {
    if (!state.exit && !state.spawnError) {
      child.kill('SIGTERM');
      const done = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    }
    await fs.rm(dataDir, { recursive: true, force: true });
  };

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (state.spawnError) {
      await fs.rm(dataDir, { recursive: true, force: true });
      throw new Error(`Could not run MinIO at ${MINIO_BINARY}: ${state.spawnError.message}`);
    }
    const exitedEarly = state.exit;
    if (exitedEarly) {
      await fs.rm(dataDir, { recursive: true, force: true });
      const how = exitedEarly.signal ? `signal ${exitedEarly.signal}` : `code ${exitedEarly.code}`;
      const ErrorType = /address already in use/i.test(output) ? PortTakenError : Error;
      throw new ErrorType(`MinIO exited with ${how} before it was ready. Its output:\n${output.trim()}`);
    }
    if (await isLive(endpoint)) return { endpoint, accessKey, secretKey, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`MinIO did not answer ${endpoint}/minio/health/live within 60 s. Its output:\n${output.trim()}`);
    }
    await sleep(200);
  }
}

async function isLive(endpoint: string): Promise<boolean> {
  try {
    const res = await fetch(`${endpoint}/minio/health/live`, { signal: AbortSignal.timeout(2_000) });
    await res.body?.cancel();
    return res.ok;
  } catch {
    return false;
  }
}

/** Holds all listeners open together so the ports differ from each other. */
async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const server = net.createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}
