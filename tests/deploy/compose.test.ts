import { spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SEARCH_ATTRIBUTES } from '../../src/embedded/temporal-dev-server';

/**
 * docker-compose.yml is checked without a Docker engine: `config` interpolates, merges and validates the file the
 * way `up` would, and these tests read the model it resolves. Works with the compose plugin (`docker compose`), a
 * standalone v2 `docker-compose`, or Debian's compose v1 (`docker-compose` 1.29, whose `config` prints only YAML;
 * that YAML is read with PyYAML, a dependency of compose v1 itself, since the project has no YAML parser).
 */

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const composeFile = path.join(root, 'docker-compose.yml');

/** Dummy values for every secret the file requires (`${VAR:?message}`). */
const secrets = {
  TUNELOOP_DB_PASSWORD: 'tuneloop-db-secret',
  TEMPORAL_DB_PASSWORD: 'temporal-db-secret',
  MINIO_ROOT_USER: 'minio-root',
  MINIO_ROOT_PASSWORD: 'minio-root-secret',
  S3_ACCESS_KEY: 'tuneloop-app',
  S3_SECRET_KEY: 'tuneloop-app-secret',
};
type Secret = keyof typeof secrets;

const tuneloopServices = ['api', 'worker', 'gpu-worker'] as const;

interface ComposeCli {
  label: string;
  argv: [string, ...string[]];
  /** `config --format json` exists (compose v2); otherwise `config` prints YAML (compose v1). */
  json: boolean;
}

type PortSpec = string | { host_ip?: string; published?: string | number; target: number };
type VolumeSpec = string | { type: string; source?: string; target: string; read_only?: boolean };
interface Device {
  driver?: string;
  capabilities?: string[];
  count?: string | number;
}
interface Service {
  image?: string;
  build?: { context: string; target?: string };
  entrypoint?: string[] | string | null;
  command?: string[] | string | null;
  environment?: Record<string, string | null>;
  ports?: PortSpec[];
  volumes?: VolumeSpec[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: string[] | string; disable?: boolean };
  deploy?: { resources?: { reservations?: { devices?: Device[] } } };
}
interface ComposeModel {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function childEnv(vars: Record<string, string>): NodeJS.ProcessEnv {
  // Nothing from the caller's environment but PATH and HOME, so a secret exported in the developer's shell can
  // neither satisfy nor mask what is being tested.
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? os.tmpdir(), ...vars };
}

function exec(argv: readonly string[], env: NodeJS.ProcessEnv, input?: string): SpawnSyncReturns<string> {
  const [command = '', ...args] = argv;
  return spawnSync(command, args, { cwd: root, env, input, encoding: 'utf8', timeout: 60_000 });
}

function findCompose(): ComposeCli | undefined {
  const env = childEnv({});
  const plugin = exec(['docker', 'compose', 'version', '--short'], env);
  if (plugin.status === 0) {
    return { label: `docker compose ${plugin.stdout.trim()}`, argv: ['docker', 'compose'], json: true };
  }
  const standalone = exec(['docker-compose', 'version', '--short'], env);
  if (standalone.status === 0) {
    const version = standalone.stdout.trim().replace(/^v/, '');
    return { label: `docker-compose ${version}`, argv: ['docker-compose'], json: !version.startsWith('1.') };
  }
  return undefined;
}

let cli: ComposeCli;
let tmp: string;
let model: ComposeModel;

/** `config` for docker-compose.yml with the given variables; a .env beside the file is ignored (empty env file). */
function composeConfig(vars: Record<string, string>): SpawnSyncReturns<string> {
  const emptyEnvFile = path.join(tmp, 'empty.env');
  const format = cli.json ? ['--format', 'json'] : [];
  return exec([...cli.argv, '--env-file', emptyEnvFile, '-f', composeFile, 'config', ...format], childEnv(vars));
}

function parseConfig(stdout: string): ComposeModel {
  if (cli.json) return JSON.parse(stdout) as ComposeModel;
  const toJson = 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)';
  const converted = exec(['python3', '-c', toJson], childEnv({}), stdout);
  if (converted.status !== 0) {
    throw new Error(`cannot read ${cli.label}'s YAML output (python3 with PyYAML is needed): ${converted.stderr}`);
  }
  return JSON.parse(converted.stdout) as ComposeModel;
}

function service(name: string): Service {
  const found = model.services[name];
  if (!found) throw new Error(`docker-compose.yml has no service ${name}`);
  return found;
}

const asList = (value: string[] | string | null | undefined): string[] =>
  value == null ? [] : Array.isArray(value) ? value : [value];

/** The tag (or digest) of an image reference; a registry port (`host:5000/name`) is not a tag. */
function imageTag(image: string): string | undefined {
  const at = image.indexOf('@');
  if (at !== -1) return image.slice(at + 1);
  const name = image.slice(image.lastIndexOf('/') + 1);
  const colon = name.lastIndexOf(':');
  return colon === -1 ? undefined : name.slice(colon + 1);
}

/** Ports as `{ hostIp, published, target }`: v2 gives objects, v1 strings like `127.0.0.1:8080:8080/tcp`. */
function publishedPorts(svc: Service): { hostIp: string; published: string; target: string }[] {
  return (svc.ports ?? []).map((port) => {
    if (typeof port !== 'string') {
      return { hostIp: port.host_ip ?? '', published: String(port.published ?? ''), target: String(port.target) };
    }
    const parts = port.replace(/\/(tcp|udp)$/, '').split(':');
    const target = parts.pop() ?? '';
    const published = parts.pop() ?? '';
    return { hostIp: parts.join(':'), published, target };
  });
}

/** Volume mounts as `{ source, target }`: v2 gives objects, v1 strings like `minio-data:/data:rw`. */
function mounts(svc: Service): { source: string; target: string; readOnly: boolean }[] {
  return (svc.volumes ?? []).map((volume) => {
    if (typeof volume !== 'string')
      return { source: volume.source ?? '', target: volume.target, readOnly: volume.read_only === true };
    const [source = '', target = '', mode = ''] = volume.split(':');
    return { source, target, readOnly: mode.split(',').includes('ro') };
  });
}

function healthcheck(name: string): string {
  const check = service(name).healthcheck;
  return check && !check.disable ? asList(check.test).join(' ') : '';
}

beforeAll(() => {
  const found = findCompose();
  if (!found) {
    throw new Error(
      'No docker compose implementation found (tried `docker compose` and `docker-compose`): ' +
        'run `bash scripts/setup.sh --compose` to install one.',
    );
  }
  cli = found;
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tuneloop-compose-'));
  writeFileSync(path.join(tmp, 'empty.env'), '');

  const result = composeConfig(secrets);
  if (result.status !== 0) {
    throw new Error(`${cli.label} config rejected docker-compose.yml:\n${result.stderr}${result.error?.message ?? ''}`);
  }
  model = parseConfig(result.stdout);
});

afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

describe('docker-compose.yml', () => {
  it('declares every part of the deployment as a service', () => {
    expect(Object.keys(model.services)).toEqual(
      expect.arrayContaining([
        'temporal-db',
        'temporal-schema',
        'temporal',
        'temporal-admin',
        'temporal-ui',
        'tuneloop-db',
        'minio',
        'minio-setup',
        'ollama',
        'ollama-canary',
        'api',
        'worker',
        'gpu-worker',
      ]),
    );
  });

  it('pins every image to an explicit tag other than latest', () => {
    const unpinned = Object.entries(model.services)
      .map(([name, svc]) => ({ name, image: svc.image ?? '(none)', tag: svc.image ? imageTag(svc.image) : undefined }))
      .filter(({ tag }) => tag === undefined || tag === 'latest');

    expect(unpinned).toEqual([]);
  });

  it('reserves NVIDIA GPUs for the GPU worker and for both Ollamas', () => {
    for (const name of ['gpu-worker', 'ollama', 'ollama-canary']) {
      const devices = service(name).deploy?.resources?.reservations?.devices ?? [];

      expect(devices, name).toContainEqual(expect.objectContaining({ driver: 'nvidia', capabilities: ['gpu'] }));
    }
  });

  it('gives the API and both workers the environment the app reads', () => {
    for (const name of tuneloopServices) {
      expect(service(name).environment, name).toMatchObject({
        DATABASE_URL: `postgres://tuneloop:${secrets.TUNELOOP_DB_PASSWORD}@tuneloop-db:5432/tuneloop`,
        TEMPORAL_ADDRESS: 'temporal:7233',
        TEMPORAL_NAMESPACE: 'default',
        TUNELOOP_STORE: 's3://tuneloop',
        S3_ENDPOINT: 'http://minio:9000',
        S3_ACCESS_KEY: secrets.S3_ACCESS_KEY,
        S3_SECRET_KEY: secrets.S3_SECRET_KEY,
        S3_REGION: 'us-east-1',
        OLLAMA_HOST: 'http://ollama:11434',
        OLLAMA_CANARY_HOST: 'http://ollama-canary:11434',
        TUNELOOP_API_PORT: '8080',
        TUNELOOP_API_HOST: '0.0.0.0',
        LOG_LEVEL: 'info',
      });
    }
  });

  it('runs `node bin/tuneloop api`, `... worker` and `... worker --gpu`', () => {
    const argv = (name: string) => [...asList(service(name).entrypoint), ...asList(service(name).command)];

    expect(argv('api')).toEqual(['node', 'bin/tuneloop', 'api']);
    expect(argv('worker')).toEqual(['node', 'bin/tuneloop', 'worker']);
    expect(argv('gpu-worker')).toEqual(['node', 'bin/tuneloop', 'worker', '--gpu']);
  });

  it('builds tuneloop from stages the Dockerfile declares, run as a non-root user', () => {
    const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    const stages = [...dockerfile.matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]);
    const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gim)].map((m) => m[1]);

    for (const name of tuneloopServices) {
      expect(stages, name).toContain(service(name).build?.target);
    }
    expect(users.at(-1)).not.toMatch(/^(root|0)$/);
    expect(dockerfile).toMatch(/^ENTRYPOINT \["node", "bin\/tuneloop"\]$/m);
  });

  it('starts each service only after what it needs is healthy or set up', () => {
    const conditions = (name: string) =>
      Object.fromEntries(
        Object.entries(service(name).depends_on ?? {}).map(([dep, { condition }]) => [dep, condition]),
      );

    expect(conditions('temporal-schema')).toMatchObject({ 'temporal-db': 'service_healthy' });
    expect(conditions('temporal')).toMatchObject({ 'temporal-schema': 'service_completed_successfully' });
    expect(conditions('temporal-admin')).toMatchObject({ temporal: 'service_healthy' });
    expect(conditions('minio-setup')).toMatchObject({ minio: 'service_healthy' });
    for (const name of tuneloopServices) {
      expect(conditions(name), name).toMatchObject({
        'tuneloop-db': 'service_healthy',
        'temporal-admin': 'service_completed_successfully',
        'minio-setup': 'service_completed_successfully',
      });
    }
  });

  it('health-checks both databases, MinIO, Temporal and the API', () => {
    expect(healthcheck('tuneloop-db')).toContain('pg_isready');
    expect(healthcheck('temporal-db')).toContain('pg_isready');
    expect(healthcheck('minio')).toMatch(/mc ready/);
    expect(healthcheck('temporal')).toMatch(/temporal operator cluster health|tctl cluster health/);
    expect(healthcheck('api')).toContain('127.0.0.1:8080/readyz');
  });

  it('publishes only the API, the Temporal UI and the MinIO console, on 127.0.0.1 by default', () => {
    const published = Object.entries(model.services).flatMap(([name, svc]) =>
      publishedPorts(svc).map((port) => ({ name, ...port })),
    );

    expect(published).toEqual(
      expect.arrayContaining([
        { name: 'api', hostIp: '127.0.0.1', published: '8080', target: '8080' },
        { name: 'temporal-ui', hostIp: '127.0.0.1', published: '8233', target: '8080' },
      ]),
    );
    expect(published.filter((p) => !['api', 'temporal-ui', 'minio'].includes(p.name))).toEqual([]);
    expect(published.filter((p) => p.hostIp !== '127.0.0.1')).toEqual([]);
  });

  it("keeps tuneloop's and Temporal's databases, MinIO and Ollama's models on separate named volumes", () => {
    const volumeAt = (name: string, target: string) => mounts(service(name)).find((m) => m.target === target)?.source;
    const volumes = {
      tuneloopDb: volumeAt('tuneloop-db', '/var/lib/postgresql/data'),
      temporalDb: volumeAt('temporal-db', '/var/lib/postgresql/data'),
      minio: volumeAt('minio', '/data'),
      ollama: volumeAt('ollama', '/root/.ollama'),
    };

    for (const [part, volume] of Object.entries(volumes)) {
      expect(Object.keys(model.volumes ?? {}), part).toContain(volume);
    }
    expect(new Set(Object.values(volumes)).size).toBe(4);
  });

  it('gives the canary’s Ollama the same models, read-only, and never lets it prune them', () => {
    const canary = service('ollama-canary');
    const models = mounts(canary).find((m) => m.target === '/models');

    expect(models).toMatchObject({
      source: mounts(service('ollama')).find((m) => m.target === '/root/.ollama')?.source,
    });
    expect(models?.readOnly).toBe(true);
    expect(canary.environment).toMatchObject({ OLLAMA_MODELS: '/models/models', OLLAMA_NOPRUNE: '1' });
  });

  it('registers every search attribute the workflows set (the dev server’s) and creates the tuneloop bucket', () => {
    const script = (name: string) => {
      const file = asList(service(name).entrypoint).find((arg) => arg.startsWith('/deploy/'));
      if (!file) throw new Error(`${name} does not run a script from deploy/`);
      expect(mounts(service(name)).map((m) => m.target)).toContain(path.posix.dirname(file));
      return readFileSync(path.join(root, file), 'utf8');
    };
    const register = script('temporal-admin');
    const minioSetup = script('minio-setup');

    expect(register).toContain('temporal operator search-attribute create');
    const registered = /for attribute in ([A-Za-z ]+); do/.exec(register)?.[1]?.split(' ');
    expect(registered?.sort()).toEqual(Object.keys(SEARCH_ATTRIBUTES).sort());
    expect(register).toContain('--type Keyword');
    expect(service('temporal-admin').environment).toMatchObject({ TEMPORAL_NAMESPACE: 'default' });
    expect(minioSetup).toContain('mc mb --ignore-existing "store/$bucket"');
    expect(service('minio-setup').environment).toMatchObject({ BUCKET: 'tuneloop' });
  });

  it.each(Object.keys(secrets) as Secret[])('refuses to render without %s and names it', (missing) => {
    const vars: Record<string, string> = { ...secrets };
    delete vars[missing];

    const result = composeConfig(vars);

    expect(result.status).not.toBe(0);
    expect(result.stderr).toContain(missing);
  });
});
