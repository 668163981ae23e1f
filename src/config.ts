import path from 'node:path';
import { z } from 'zod';
import { DEFAULT_LIMITS, type FairUseLimits } from './api/fair-use';

/** This checkout (the trainer's sources and the venv setup made are found relative to it). */
export const REPO_ROOT = path.resolve(import.meta.dirname, '..');

/**
 * The whole environment, parsed once. Empty strings count as unset (a blank line in an env file must not
 * silently become "the empty password"). Every bad key is reported at once, by name, with what was expected.
 */
const blankAsUnset = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const opt = <T extends z.ZodType>(schema: T) => z.preprocess(blankAsUnset, schema.optional());
const withDefault = <T extends z.ZodType>(schema: T, value: z.input<T>) =>
  z.preprocess(blankAsUnset, schema.default(value as never));

const port = z.coerce.number().int().min(1).max(65535);
const hostPort = z.string().regex(/^[A-Za-z0-9.[\]:-]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7233');
const httpUrl = z.url({ protocol: /^https?$/, error: 'expected an http(s) URL, e.g. http://127.0.0.1:11434' });

/** An Ollama address: a URL, or Ollama's own host:port form. */
const ollamaHostUrl = z.preprocess((v) => {
  const b = blankAsUnset(v);
  return typeof b === 'string' && !/^[a-z]+:\/\//i.test(b) ? `http://${b}` : b;
}, httpUrl.optional());

export const envSchema = z
  .object({
    TUNELOOP_HOME: withDefault(z.string(), '.tuneloop'),
    DATABASE_URL: opt(
      z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL, e.g. postgres://user:pass@host:5432/tuneloop'),
    ),
    DATABASE_POOL_MAX: withDefault(z.coerce.number().int().min(1).max(200), 10),
    TEMPORAL_ADDRESS: opt(hostPort),
    TEMPORAL_NAMESPACE: withDefault(
      z.string().regex(/^[A-Za-z0-9._-]{1,255}$/, 'expected a namespace name'),
      'default',
    ),
    TEMPORAL_UI_PORT: withDefault(port, 8233),
    TEMPORAL_PORT: withDefault(port, 7233),
    TUNELOOP_TASK_QUEUE: withDefault(z.string().min(1), 'tuneloop'),
    TUNELOOP_GPU_TASK_QUEUE: withDefault(z.string().min(1), 'tuneloop-gpu'),
    /** Seconds a training GPU host may be silent (it heartbeats every 10 s) before its attempt is retried. */
    TUNELOOP_GPU_HEARTBEAT_TIMEOUT_S: withDefault(z.coerce.number().int().min(20).max(3600), 120),
    TUNELOOP_STORE: opt(z.string().regex(/^(file|s3):\/\/.+/, 'expected file://<folder> or s3://<bucket>[/prefix]')),
    S3_ENDPOINT: opt(httpUrl),
    S3_ACCESS_KEY: opt(z.string()),
    S3_SECRET_KEY: opt(z.string()),
    S3_REGION: withDefault(z.string(), 'us-east-1'),
    /**
     * An Ollama to use instead of the one `tuneloop up` starts. Ollama's own form (host:port) is accepted too.
     */
    OLLAMA_HOST: ollamaHostUrl,
    /** The private port of the Ollama that `tuneloop up` starts when OLLAMA_HOST is not set. */
    TUNELOOP_OLLAMA_PORT: withDefault(port, 11535),
    /**
     * The Ollama that answers canary traffic, reading the same models as OLLAMA_HOST's: Ollama keeps one runner
     * per weights file, so a canary adapter on production's base served by production's Ollama reloads the runner
     * at every switch between them. Unset: the embedded default runs a second server; with OLLAMA_HOST set, the
     * canary shares it.
     */
    OLLAMA_CANARY_HOST: ollamaHostUrl,
    /** The private port of the canary's Ollama that `tuneloop up` starts. */
    TUNELOOP_OLLAMA_CANARY_PORT: withDefault(port, 11536),
    TUNELOOP_API_PORT: withDefault(port, 8080),
    TUNELOOP_API_HOST: withDefault(z.string(), '127.0.0.1'),
    TUNELOOP_BODY_LIMIT: withDefault(
      z.string().regex(/^\d+(b|kb|mb)$/i, 'expected a size such as 1mb or 512kb'),
      '1mb',
    ),
    TUNELOOP_EMBEDDED_PG_PORT: withDefault(port, 54329),
    // Fair use of the inference endpoints (src/api/fair-use.ts), per API process.
    TUNELOOP_LIMIT_KEY_RPS: withDefault(z.coerce.number().positive().max(1_000_000), DEFAULT_LIMITS.keyRps),
    TUNELOOP_LIMIT_KEY_BURST: withDefault(z.coerce.number().int().min(1).max(1_000_000), DEFAULT_LIMITS.keyBurst),
    TUNELOOP_LIMIT_KEY_CONCURRENCY: withDefault(
      z.coerce.number().int().min(1).max(100_000),
      DEFAULT_LIMITS.keyConcurrency,
    ),
    TUNELOOP_LIMIT_MODEL_CONCURRENCY: withDefault(
      z.coerce.number().int().min(1).max(100_000),
      DEFAULT_LIMITS.modelConcurrency,
    ),
    TUNELOOP_LIMIT_MODEL_QUEUE: withDefault(z.coerce.number().int().min(0).max(1_000_000), DEFAULT_LIMITS.modelQueue),
    TUNELOOP_LIMIT_MODEL_WAIT_MS: withDefault(z.coerce.number().int().min(0).max(600_000), DEFAULT_LIMITS.modelWaitMs),
    /** The trainer's Python (a venv with gpu-worker/requirements.lock); default: the one scripts/setup.sh made. */
    TUNELOOP_PYTHON: opt(z.string()),
    /** Local scratch on the GPU host: datasets, checkpoints, adapters of the runs it trains. */
    TUNELOOP_GPU_WORK_DIR: opt(z.string()),
    /** Where relative `baseModel` paths of model definitions are looked up (the demo's tiny base lives here). */
    TUNELOOP_MODELS_DIR: opt(z.string()),
    /** CPU threads for the trainer's math (OMP_NUM_THREADS); default: torch's choice, all cores. */
    TUNELOOP_TRAINER_THREADS: opt(z.coerce.number().int().min(1).max(1024)),
    LOG_LEVEL: withDefault(z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), 'info'),
  })
  .superRefine(
    (env, ctx) => {
      if (env.TUNELOOP_STORE?.startsWith('s3://')) {
        for (const key of ['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY'] as const) {
          if (!env[key])
            ctx.addIssue({ code: 'custom', path: [key], message: `required when TUNELOOP_STORE is s3://` });
        }
      }
    },
    // zod skips refinements once another key is bad; run anyway so every problem is reported in one pass.
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  );

export type Env = z.output<typeof envSchema>;

export interface Config {
  home: string;
  /** Absent: the embedded PostgreSQL under `home` is used. */
  databaseUrl: string | null;
  databasePoolMax: number;
  embeddedPgPort: number;
  /** Absent: the embedded Temporal dev server is started by `tuneloop up`. */
  temporalAddress: string | null;
  temporalNamespace: string;
  temporalPort: number;
  temporalUiPort: number;
  taskQueue: string;
  gpuTaskQueue: string;
  gpuHeartbeatTimeoutS: number;
  store: string;
  s3: { endpoint: string; accessKey: string; secretKey: string; region: string } | null;
  /** OLLAMA_HOST; null: the embedded one on ollamaPort. */
  ollamaHost: string | null;
  ollamaPort: number;
  /** OLLAMA_CANARY_HOST; null: OLLAMA_HOST's when that is set, else the embedded one on ollamaCanaryPort. */
  ollamaCanaryHost: string | null;
  ollamaCanaryPort: number;
  trainer: {
    python: string;
    /** PYTHONPATH for `python -m tuneloop_trainer` (the package's sources in this checkout). */
    pythonPath: string;
    workDir: string;
    modelsDir: string;
    /** OMP_NUM_THREADS for the trainer; null leaves torch's default. */
    threads: number | null;
  };
  api: { port: number; host: string; bodyLimit: string; limits: FairUseLimits };
  logLevel: Env['LOG_LEVEL'];
}

export class ConfigError extends Error {
  constructor(readonly problems: { variable: string; message: string }[]) {
    super(
      'Invalid configuration:\n' +
        problems.map((p) => `  ${p.variable}: ${p.message}`).join('\n') +
        '\nSee the configuration table in README.md.',
    );
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): Readonly<Config> {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    throw new ConfigError(
      parsed.error.issues.map((i) => ({
        variable: String(i.path[0] ?? '(environment)'),
        // zod 4 leaves `input` off issues (so values, secrets included, never reach the message); look at the
        // variable itself to tell "unset" from "not a number".
        message:
          i.code === 'invalid_type' && blankAsUnset(env[String(i.path[0])]) === undefined ? 'is required' : i.message,
      })),
    );
  }
  const e = parsed.data;
  const home = path.resolve(cwd, e.TUNELOOP_HOME);
  const config: Config = {
    home,
    databaseUrl: e.DATABASE_URL ?? null,
    databasePoolMax: e.DATABASE_POOL_MAX,
    embeddedPgPort: e.TUNELOOP_EMBEDDED_PG_PORT,
    temporalAddress: e.TEMPORAL_ADDRESS ?? null,
    temporalNamespace: e.TEMPORAL_NAMESPACE,
    temporalPort: e.TEMPORAL_PORT,
    temporalUiPort: e.TEMPORAL_UI_PORT,
    taskQueue: e.TUNELOOP_TASK_QUEUE,
    gpuTaskQueue: e.TUNELOOP_GPU_TASK_QUEUE,
    gpuHeartbeatTimeoutS: e.TUNELOOP_GPU_HEARTBEAT_TIMEOUT_S,
    store: e.TUNELOOP_STORE ?? `file://${path.join(home, 'store')}`,
    s3:
      e.S3_ENDPOINT && e.S3_ACCESS_KEY && e.S3_SECRET_KEY
        ? { endpoint: e.S3_ENDPOINT, accessKey: e.S3_ACCESS_KEY, secretKey: e.S3_SECRET_KEY, region: e.S3_REGION }
        : null,
    ollamaHost: e.OLLAMA_HOST ?? null,
    ollamaPort: e.TUNELOOP_OLLAMA_PORT,
    ollamaCanaryHost: e.OLLAMA_CANARY_HOST ?? null,
    ollamaCanaryPort: e.TUNELOOP_OLLAMA_CANARY_PORT,
    trainer: {
      python: e.TUNELOOP_PYTHON ?? path.join(REPO_ROOT, '.tools/py/bin/python'),
      pythonPath: path.join(REPO_ROOT, 'gpu-worker/src'),
      workDir: path.resolve(cwd, e.TUNELOOP_GPU_WORK_DIR ?? path.join(home, 'gpu-work')),
      modelsDir: path.resolve(cwd, e.TUNELOOP_MODELS_DIR ?? path.join(home, 'models')),
      threads: e.TUNELOOP_TRAINER_THREADS ?? null,
    },
    api: {
      port: e.TUNELOOP_API_PORT,
      host: e.TUNELOOP_API_HOST,
      bodyLimit: e.TUNELOOP_BODY_LIMIT,
      limits: {
        keyRps: e.TUNELOOP_LIMIT_KEY_RPS,
        keyBurst: e.TUNELOOP_LIMIT_KEY_BURST,
        keyConcurrency: e.TUNELOOP_LIMIT_KEY_CONCURRENCY,
        modelConcurrency: e.TUNELOOP_LIMIT_MODEL_CONCURRENCY,
        modelQueue: e.TUNELOOP_LIMIT_MODEL_QUEUE,
        modelWaitMs: e.TUNELOOP_LIMIT_MODEL_WAIT_MS,
      },
    },
    logLevel: e.LOG_LEVEL,
  };
  return Object.freeze(config);
}

/** The database URL with its password masked, for logs and status output. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable url)';
  }
}
