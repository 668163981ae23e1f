import { describe, expect, it } from 'vitest';
import { modelDefinitionSchema, parsePipelineConfig, pipelineConfigSchema, slug } from '../../src/domain/model-config';

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
        stages: {},
        thresholds: { maxLossRegression: 0, minWinRateLowerBound: 0.5 },
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
      stages: { train: false },
      thresholds: { maxLossRegression: 0.05, minWinRateLowerBound: 0.5 },
    });
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
