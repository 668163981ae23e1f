import { describe, expect, it } from 'vitest';
import {
  modelDefinitionSchema,
  parsePipelineConfig,
  pipelineConfigSchema,
  slug,
  trainingConfigSchema,
} from '../../src/domain/model-config';

/** The training defaults the issue names: r 16, alpha 32, dropout 0.05, lr 2e-4, 3 epochs, batch 16, length 2048. */
const SERVING_DEFAULTS = { merge: 'auto', parityPrompts: 4, parityMaxTokens: 24, logitTolerance: 0.05 };
const SHADOW_DEFAULTS = {
  share: 0.25,
  maxInFlight: 4,
  holdSeconds: 3600,
  minPairs: 30,
  maxExtensions: 3,
  insufficientTraffic: 'rollback',
  minWinOrTie: 0.5,
  maxErrorRate: 0.05,
  maxLatencyRatio: 2,
  maxJudged: 200,
};
const FALLBACK_DEFAULTS = { localTimeoutMs: 30_000, breakerFailures: 5, breakerCooldownMs: 30_000 };
const CANARY_DEFAULTS = {
  steps: [5, 25, 50, 100],
  holdSeconds: 3600,
  minCalls: 20,
  minFeedback: 10,
  maxExtensions: 3,
  insufficientTraffic: 'rollback',
  requireApproval: false,
  approvalTimeoutHours: 72,
  margins: { errorRate: 0.02, p95LatencyRatio: 1.5, thumbsDownRate: 0.05, schemaValidity: 0.02 },
};
const TRAINING_DEFAULTS = {
  method: 'lora',
  startFrom: 'production',
  replayFraction: 0.2,
  lora: { r: 16, alpha: 32, dropout: 0.05 },
  learningRate: 2e-4,
  lrScheduler: 'cosine',
  epochs: 3,
  effectiveBatchSize: 16,
  microBatchSize: 4,
  maxLength: 2048,
  checkpointEverySteps: 50,
  checkpointEveryMinutes: 10,
  evalEverySteps: 50,
  seed: 0,
};

const minimal = { id: 'support-bot', app: 'acme', baseModel: 'qwen2.5:0.5b', taskFormat: 'chat' };

/** The issue paths of a failed parse, joined with dots. */
function issuePaths(raw: unknown): string[] {
  const r = modelDefinitionSchema.safeParse(raw);
  if (r.success) throw new Error('expected the definition to be rejected');
  return r.error.issues.map((i) => i.path.join('.'));
}

describe('modelDefinitionSchema', () => {
  it('fills in the pipeline defaults for a minimal definition', () => {
    // Act
    const model = modelDefinitionSchema.parse(minimal);

    // Assert
    expect(model).toEqual({
      ...minimal,
      config: {
        validationShare: 0.1,
        minExamples: 1,
        dedup: { near: true, threshold: 0.8 },
        stages: {},
        training: TRAINING_DEFAULTS,
        evaluation: { prompts: 64, maxNewTokens: 128, batchSize: 4 },
        serving: SERVING_DEFAULTS,
        canary: CANARY_DEFAULTS,
        fallback: FALLBACK_DEFAULTS,
        shadow: SHADOW_DEFAULTS,
        thresholds: { maxLossRegression: 0, minWinRateLowerBound: 0.5, maxSchemaValidityDrop: 0, maxStyleDrop: 0 },
      },
    });
  });

  it('fills in defaults inside a partly given config', () => {
    // Act
    const model = modelDefinitionSchema.parse({
      ...minimal,
      config: { minExamples: 20, stages: { train: false }, thresholds: { maxLossRegression: 0.05 } },
    });

    // Assert
    expect(model.config).toEqual({
      validationShare: 0.1,
      minExamples: 20,
      dedup: { near: true, threshold: 0.8 },
      stages: { train: false },
      training: TRAINING_DEFAULTS,
      evaluation: { prompts: 64, maxNewTokens: 128, batchSize: 4 },
      serving: SERVING_DEFAULTS,
      canary: CANARY_DEFAULTS,
      fallback: FALLBACK_DEFAULTS,
      shadow: SHADOW_DEFAULTS,
      thresholds: { maxLossRegression: 0.05, minWinRateLowerBound: 0.5, maxSchemaValidityDrop: 0, maxStyleDrop: 0 },
    });
  });

  it('keeps given training fields and fills the rest', () => {
    // Act
    const training = trainingConfigSchema.parse({ method: 'qlora', lora: { r: 64 }, epochs: 1 });

    // Assert
    expect(training).toEqual({
      ...TRAINING_DEFAULTS,
      method: 'qlora',
      lora: { r: 64, alpha: 32, dropout: 0.05 },
      epochs: 1,
    });
  });

  it.each([
    [{ steps: [50, 25, 100] }, 'steps'],
    [{ steps: [5, 25] }, 'steps'],
    [{ holdSeconds: 0 }, 'holdSeconds'],
    [{ margins: { errorRate: 2 } }, 'margins.errorRate'],
    [{ margins: { p95LatencyRatio: 0.5 } }, 'margins.p95LatencyRatio'],
  ])('rejects the bad canary config %j, naming %s', (canary, field) => {
    // Act
    const r = pipelineConfigSchema.safeParse({ canary });

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe(`canary.${field}`);
  });

  it.each([
    ['a URL', 'https://huggingface.co/meta-llama/Llama-3-8B', 'not a URL'],
    ['a path that climbs out', '../../etc', '".."'],
  ])('refuses %s as a base model', (_what, baseModel, message) => {
    // Act
    const r = modelDefinitionSchema.safeParse({ ...minimal, baseModel });

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe('baseModel');
    expect(r.error!.issues[0]!.message).toContain(message);
  });

  it.each([
    [{ judge: { model: 'http://evil.example/model' } }, 'judge.model'],
    [{ judge: { model: 'qwen2.5:7b', maxPairs: 0 } }, 'judge.maxPairs'],
    [{ serving: { stop: ['<|x|>'] } }, 'serving.stop'],
    [{ serving: { merge: 'sometimes' } }, 'serving.merge'],
    [{ incumbent: { baseUrl: 'ftp://x/v1', model: 'm' } }, 'incumbent.baseUrl'],
    [{ incumbent: { baseUrl: 'https://user:sk-123@api.example.com/v1', model: 'm' } }, 'incumbent.baseUrl'],
    [{ incumbent: { baseUrl: 'https://api.groq.com/openai/v1', model: 'm', apiKey: 'sk-123' } }, 'incumbent.apiKey'],
    [
      { incumbent: { baseUrl: 'https://api.groq.com/openai/v1', model: 'm', apiKeyEnv: 'sk-123' } },
      'incumbent.apiKeyEnv',
    ],
    [{ incumbent: { baseUrl: 'https://api.groq.com/openai/v1', model: '' } }, 'incumbent.model'],
    [{ fallback: { breakerFailures: 0 } }, 'fallback.breakerFailures'],
    [{ shadow: { minPairs: 50, maxJudged: 10 } }, 'shadow.maxJudged'],
    [{ shadow: { share: 0 } }, 'shadow.share'],
    [{ dedup: { threshold: 0.3 } }, 'dedup.threshold'],
    [{ dedup: { near: 'yes' } }, 'dedup.near'],
    [{ dedup: { minhash: 64 } }, 'dedup'],
  ])('rejects the bad serving config %j, naming %s', (config, field) => {
    // Act
    const r = pipelineConfigSchema.safeParse(config);

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe(field);
  });

  it.each([
    [{ method: 'full' }, 'method'],
    [{ lora: { r: 0 } }, 'lora.r'],
    [{ lora: { dropout: 1 } }, 'lora.dropout'],
    [{ learningRate: 0 }, 'learningRate'],
    [{ lrScheduler: 'step' }, 'lrScheduler'],
    [{ effectiveBatchSize: 10, microBatchSize: 4 }, 'effectiveBatchSize'],
    [{ maxLength: 8 }, 'maxLength'],
    [{ replayFraction: 1.5 }, 'replayFraction'],
    [{ epochs: 2.5 }, 'epochs'],
    [{ lr: 1e-4 }, ''],
  ])('rejects the bad training config %j, naming %s', (training, field) => {
    // Act
    const r = trainingConfigSchema.safeParse(training);

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe(field);
  });

  it('does not share default objects between parses', () => {
    // Act
    const first = modelDefinitionSchema.parse(minimal);
    first.config.stages.train = false;
    const second = modelDefinitionSchema.parse(minimal);

    // Assert
    expect(second.config.stages).toEqual({});
  });

  it.each([
    ['the top level', { ...minimal, owner: 'me' }, ''],
    ['config', { ...minimal, config: { validationshare: 0.2 } }, 'config'],
    ['config.stages', { ...minimal, config: { stages: { trian: false } } }, 'config.stages'],
    ['config.thresholds', { ...minimal, config: { thresholds: { minWinRate: 0.6 } } }, 'config.thresholds'],
  ])('rejects an unknown key at %s', (_where, raw, path) => {
    // Act
    const r = modelDefinitionSchema.safeParse(raw);

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues).toEqual([expect.objectContaining({ code: 'unrecognized_keys' })]);
    expect(r.error!.issues[0]!.path.join('.')).toBe(path);
  });

  it.each(['collect', 'anonymize', 'export'])('refuses to switch off the %s stage, saying why', (stage) => {
    // Act
    const r = modelDefinitionSchema.safeParse({ ...minimal, config: { stages: { [stage]: false } } });

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.path.join('.')).toBe(`config.stages.${stage}`);
    expect(r.error!.issues[0]!.message).toBe(`${stage} runs in every pipeline and cannot be switched off`);
  });

  it.each([
    ['id', { id: undefined }],
    ['app', { app: undefined }],
    ['baseModel', { baseModel: '' }],
    ['taskFormat', { taskFormat: 'audio' }],
  ])('rejects a missing or bad %s by its path', (field, change) => {
    // Act
    const paths = issuePaths({ ...minimal, ...change });

    // Assert
    expect(paths).toEqual([field]);
  });

  it('rejects a validation share above 0.5 and accepts 0.5', () => {
    // Act
    const tooLarge = issuePaths({ ...minimal, config: { validationShare: 0.51 } });
    const half = modelDefinitionSchema.safeParse({ ...minimal, config: { validationShare: 0.5 } });

    // Assert
    expect(tooLarge).toEqual(['config.validationShare']);
    expect(half.success).toBe(true);
  });

  it('rejects a negative validation share and a minExamples below 1', () => {
    // Act
    const paths = issuePaths({ ...minimal, config: { validationShare: -0.1, minExamples: 0 } });

    // Assert
    expect(paths.sort()).toEqual(['config.minExamples', 'config.validationShare']);
  });
});

describe('style and evaluation', () => {
  it('takes a house style whose pattern the linear-time engine runs, and refuses one it cannot', () => {
    const ok = pipelineConfigSchema.safeParse({ style: { name: 'three lines', pattern: '^Plan: .+$' } });
    const backref = pipelineConfigSchema.safeParse({ style: { name: 'x', pattern: '(a)\\1' } });
    const unnamed = pipelineConfigSchema.safeParse({ style: { pattern: '^a$' } });

    expect(ok.success).toBe(true);
    expect(backref.success).toBe(false);
    expect(backref.error?.issues[0]).toMatchObject({ path: ['style', 'pattern'] });
    expect(unnamed.error?.issues[0]?.path).toEqual(['style', 'name']);
  });

  it('defaults evaluate to 64 prompts of at most 128 new tokens in batches of 4, and bounds them', () => {
    expect(pipelineConfigSchema.parse({}).evaluation).toEqual({ prompts: 64, maxNewTokens: 128, batchSize: 4 });
    expect(pipelineConfigSchema.safeParse({ evaluation: { prompts: 0 } }).success).toBe(false);
    expect(pipelineConfigSchema.safeParse({ evaluation: { maxNewTokens: 5000 } }).success).toBe(false);
    expect(pipelineConfigSchema.safeParse({ evaluation: { batchSize: 0 } }).success).toBe(false);
  });
});

describe('slug', () => {
  it.each(['a', 'acme', 'support-bot', '0day', 'a1-b2-c3', `a${'b'.repeat(62)}`])('accepts %s', (value) => {
    // Act
    const r = slug.safeParse(value);

    // Assert
    expect(r.success).toBe(true);
  });

  it.each([
    ['empty', ''],
    ['upper case', 'Support'],
    ['a space', 'bad model'],
    ['punctuation', 'bad!'],
    ['an underscore', 'snake_case'],
    ['a leading dash', '-bot'],
    ['64 characters', `a${'b'.repeat(63)}`],
  ])('rejects %s with the slug rule in the message', (_label, value) => {
    // Act
    const r = slug.safeParse(value);

    // Assert
    expect(r.success).toBe(false);
    expect(r.error!.issues[0]!.message).toMatch(/lower-case slug/);
  });
});

describe('parsePipelineConfig', () => {
  it('treats a missing config as all defaults', () => {
    // Act
    const fromNull = parsePipelineConfig(null);
    const fromUndefined = parsePipelineConfig(undefined);

    // Assert
    expect(fromNull).toEqual(pipelineConfigSchema.parse({}));
    expect(fromUndefined).toEqual(fromNull);
  });

  it('throws on an unknown stage so stored config drift is caught', () => {
    // Act / Assert
    expect(() => parsePipelineConfig({ stages: { deploy: true } })).toThrow(/deploy/);
  });
});
