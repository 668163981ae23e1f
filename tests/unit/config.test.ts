import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS } from '../../src/api/fair-use';
import { ConfigError, loadConfig, redactUrl, REPO_ROOT } from '../../src/config';
import { canaryOllamaUrl, ollamaUrl } from '../../src/embedded/stack';

const cwd = '/srv/app';

/** Runs loadConfig expecting it to fail and returns the ConfigError. */
function configErrorFor(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env, cwd);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected loadConfig to reject ${JSON.stringify(Object.keys(env))}`);
}

describe('loadConfig', () => {
  it('fills every default from an empty environment', () => {
    // Act
    const config = loadConfig({}, cwd);

    // Assert
    expect(config).toEqual({
      home: path.resolve(cwd, '.tuneloop'),
      databaseUrl: null,
      databasePoolMax: 10,
      embeddedPgPort: 54329,
      temporalAddress: null,
      temporalNamespace: 'default',
      temporalPort: 7233,
      temporalUiPort: 8233,
      taskQueue: 'tuneloop',
      gpuTaskQueue: 'tuneloop-gpu',
      gpuHeartbeatTimeoutS: 120,
      store: `file://${path.resolve(cwd, '.tuneloop', 'store')}`,
      s3: null,
      ollamaHost: null,
      ollamaPort: 11535,
      ollamaCanaryHost: null,
      ollamaCanaryPort: 11536,
      trainer: {
        python: path.join(REPO_ROOT, '.tools/py/bin/python'),
        pythonPath: path.join(REPO_ROOT, 'gpu-worker/src'),
        workDir: path.resolve(cwd, '.tuneloop', 'gpu-work'),
        modelsDir: path.resolve(cwd, '.tuneloop', 'models'),
        threads: null,
      },
      api: { port: 8080, host: '127.0.0.1', bodyLimit: '1mb', limits: DEFAULT_LIMITS },
      logLevel: 'info',
    });
  });

  it('treats empty and blank strings as unset rather than as values', () => {
    // Arrange
    const env = {
      DATABASE_URL: '',
      TEMPORAL_ADDRESS: '  ',
      TUNELOOP_API_PORT: '',
      TUNELOOP_STORE: '',
      LOG_LEVEL: ' ',
      S3_SECRET_KEY: '',
    };

    // Act
    const config = loadConfig(env, cwd);

    // Assert
    expect(config).toEqual(loadConfig({}, cwd));
  });

  it('parses given values into the typed config', () => {
    // Arrange
    const env = {
      TUNELOOP_HOME: '/var/lib/tuneloop',
      DATABASE_URL: 'postgresql://u:p@db:5432/tuneloop',
      TEMPORAL_ADDRESS: 'temporal:7233',
      TUNELOOP_API_PORT: '9090',
      TUNELOOP_STORE: 's3://bucket/prefix',
      S3_ENDPOINT: 'http://minio:9000',
      S3_ACCESS_KEY: 'ak',
      S3_SECRET_KEY: 'sk',
      LOG_LEVEL: 'debug',
    };

    // Act
    const config = loadConfig(env, cwd);

    // Assert
    expect(config).toMatchObject({
      home: '/var/lib/tuneloop',
      databaseUrl: 'postgresql://u:p@db:5432/tuneloop',
      temporalAddress: 'temporal:7233',
      api: { port: 9090 },
      store: 's3://bucket/prefix',
      s3: { endpoint: 'http://minio:9000', accessKey: 'ak', secretKey: 'sk', region: 'us-east-1' },
      logLevel: 'debug',
    });
  });

  it.each([
    ['DATABASE_URL', 'mysql://db/tuneloop', /postgres:\/\//],
    ['TEMPORAL_ADDRESS', 'temporal.internal', /host:port/],
    ['TUNELOOP_API_PORT', '70000', /65535/],
    ['TUNELOOP_API_PORT', 'abc', /number/],
    ['TUNELOOP_STORE', 'ftp://x', /file:\/\/.*s3:\/\//],
    ['LOG_LEVEL', 'loud', /silent/],
  ])('reports %s=%s by name with what was expected', (variable, value, expected) => {
    // Act
    const err = configErrorFor({ [variable]: value });

    // Assert
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]!.variable).toBe(variable);
    expect(err.problems[0]!.message).toMatch(expected);
    expect(err.problems[0]!.message).not.toBe('is required');
    expect(err.message).toContain(`${variable}: `);
  });

  it.each([
    [{}, 'http://127.0.0.1:11535', 'http://127.0.0.1:11536'],
    [{ TUNELOOP_OLLAMA_CANARY_PORT: '12000' }, 'http://127.0.0.1:11535', 'http://127.0.0.1:12000'],
    [{ OLLAMA_HOST: 'gpu-box:11434' }, 'http://gpu-box:11434', 'http://gpu-box:11434'],
    [
      { OLLAMA_HOST: 'gpu-box:11434', OLLAMA_CANARY_HOST: 'gpu-box:11435' },
      'http://gpu-box:11434',
      'http://gpu-box:11435',
    ],
  ])('finds production’s and the canary’s Ollama from %j', (env, production, canary) => {
    // Act
    const config = loadConfig(env, cwd);

    // Assert
    expect([ollamaUrl(config), canaryOllamaUrl(config)]).toEqual([production, canary]);
  });

  it('reports every bad variable at once', () => {
    // Arrange
    const env = { DATABASE_URL: 'mysql://db', TUNELOOP_API_PORT: 'abc', LOG_LEVEL: 'loud' };

    // Act
    const err = configErrorFor(env);

    // Assert
    expect(err.problems.map((p) => p.variable).sort()).toEqual(['DATABASE_URL', 'LOG_LEVEL', 'TUNELOOP_API_PORT']);
    for (const variable of Object.keys(env)) expect(err.message).toContain(variable);
  });

  it('names each S3 variable an s3:// store is missing', () => {
    // Act
    const err = configErrorFor({ TUNELOOP_STORE: 's3://bucket', S3_ACCESS_KEY: 'ak' });

    // Assert
    expect(err.problems).toEqual([
      { variable: 'S3_ENDPOINT', message: expect.stringContaining('s3://') },
      { variable: 'S3_SECRET_KEY', message: expect.stringContaining('s3://') },
    ]);
  });

  it('names all three S3 variables when an s3:// store has none of them', () => {
    // Act
    const err = configErrorFor({ TUNELOOP_STORE: 's3://bucket', S3_ENDPOINT: '', S3_SECRET_KEY: ' ' });

    // Assert
    expect(err.problems.map((p) => p.variable)).toEqual(['S3_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY']);
  });

  it('reports missing S3 variables in the same pass as other bad variables', () => {
    // Act
    const err = configErrorFor({ TUNELOOP_STORE: 's3://bucket', LOG_LEVEL: 'loud', S3_ENDPOINT: 'http://minio:9000' });

    // Assert
    expect(err.problems.map((p) => p.variable).sort()).toEqual(['LOG_LEVEL', 'S3_ACCESS_KEY', 'S3_SECRET_KEY']);
  });

  it('returns a frozen object', () => {
    // Act
    const config = loadConfig({}, cwd);

    // Assert
    expect(Object.isFrozen(config)).toBe(true);
    expect(() => {
      (config as { logLevel: string }).logLevel = 'trace';
    }).toThrow(TypeError);
  });

  it('never puts a secret value into the error message', () => {
    // Arrange: secrets in valid and in invalid variables, next to problems that make loading fail.
    const env = {
      TUNELOOP_STORE: 's3://bucket',
      S3_SECRET_KEY: 'sk-verysecret-123',
      S3_ENDPOINT: 'ftp://leakyuser:endpointsecret@minio:9000',
      DATABASE_URL: 'mysql://root:dbsecretpw@db/tuneloop',
      TEMPORAL_ADDRESS: 'user:tmprlsecret@temporal',
      TUNELOOP_API_PORT: 'portsecret',
    };

    // Act
    const err = configErrorFor(env);

    // Assert
    expect(err.problems.map((p) => p.variable).sort()).toEqual([
      'DATABASE_URL',
      'S3_ACCESS_KEY',
      'S3_ENDPOINT',
      'TEMPORAL_ADDRESS',
      'TUNELOOP_API_PORT',
    ]);
    for (const secret of ['sk-verysecret-123', 'endpointsecret', 'dbsecretpw', 'tmprlsecret', 'portsecret']) {
      expect(err.message).not.toContain(secret);
      expect(JSON.stringify(err.problems)).not.toContain(secret);
    }
  });
});

describe('redactUrl', () => {
  it('masks the password and keeps the rest of the URL', () => {
    // Act
    const redacted = redactUrl('postgres://tuneloop:s3cr3t@db.internal:5432/tuneloop?sslmode=require');

    // Assert
    expect(redacted).not.toContain('s3cr3t');
    expect(redacted).toBe('postgres://tuneloop:***@db.internal:5432/tuneloop?sslmode=require');
  });

  it('leaves a URL without a password unchanged', () => {
    // Act
    const redacted = redactUrl('postgres://tuneloop@db.internal:5432/tuneloop');

    // Assert
    expect(redacted).toBe('postgres://tuneloop@db.internal:5432/tuneloop');
  });

  it('returns a placeholder rather than the input for an unparseable URL', () => {
    // Act
    const redacted = redactUrl('not a url with hunter2');

    // Assert
    expect(redacted).toBe('(unparseable url)');
  });
});
