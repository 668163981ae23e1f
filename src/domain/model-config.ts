import { z } from 'zod';

/** Every stage of the loop, in order. The pipeline workflow walks this list. */
export const STAGES = [
  'collect',
  'anonymize',
  'synthesize',
  'score',
  'export',
  'train',
  'evaluate',
  'register',
  'canary',
  'promote',
] as const;
export type StageName = (typeof STAGES)[number];

/**
 * Stages every run has. collect and export are the spine; anonymize is how nothing personal leaves PostgreSQL,
 * so no model config can switch it off.
 */
export const REQUIRED_STAGES = ['collect', 'anonymize', 'export'] as const;
type RequiredStage = (typeof REQUIRED_STAGES)[number];
const isRequired = (s: StageName): s is RequiredStage => (REQUIRED_STAGES as readonly string[]).includes(s);

/** Stages a model may switch off. */
export type OptionalStage = Exclude<StageName, RequiredStage>;
export const OPTIONAL_STAGES = STAGES.filter((s): s is OptionalStage => !isRequired(s));

export const slug = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a lower-case slug: letters, digits and dashes, at most 63 characters');

export const trainingConfigSchema = z
  .object({
    /** LoRA on a bf16 base, or QLoRA on a 4-bit NF4 base (needs CUDA on the GPU host). */
    method: z.enum(['lora', 'qlora']).default('lora'),
    /** Incremental training starts from the production adapter; `base` starts over from the base weights. */
    startFrom: z.enum(['production', 'base']).default('production'),
    /** Rows from the previous production dataset mixed in, as a share of this run's train rows. */
    replayFraction: z.number().min(0).max(1).default(0.2),
    lora: z
      .object({
        r: z.number().int().min(1).max(1024).default(16),
        alpha: z.number().positive().max(4096).default(32),
        dropout: z.number().min(0).lt(1).default(0.05),
      })
      .strict()
      .default({ r: 16, alpha: 32, dropout: 0.05 }),
    learningRate: z.number().positive().max(1).default(2e-4),
    epochs: z.number().int().min(1).max(100).default(3),
    effectiveBatchSize: z.number().int().min(1).max(4096).default(16),
    microBatchSize: z.number().int().min(1).max(1024).default(4),
    maxLength: z.number().int().min(16).max(131_072).default(2048),
    /** A cap on optimizer steps (tests and smoke runs); absent: epochs decide. */
    maxSteps: z.number().int().min(1).optional(),
    checkpointEverySteps: z.number().int().min(1).default(50),
    checkpointEveryMinutes: z
      .number()
      .positive()
      .max(24 * 60)
      .default(10),
    seed: z.number().int().min(0).default(0),
  })
  .strict()
  .refine((t) => t.effectiveBatchSize % t.microBatchSize === 0, {
    message: 'effectiveBatchSize must be a multiple of microBatchSize',
    path: ['effectiveBatchSize'],
  });
export type TrainingConfig = z.output<typeof trainingConfigSchema>;

export const pipelineConfigSchema = z
  .object({
    /** Share of interactions (by a hash of their id) that go to the validation split. */
    validationShare: z.number().min(0).max(0.5).default(0.1),
    /** A run with fewer exportable rows than this ends as `insufficient_data` instead of training. */
    minExamples: z.number().int().min(1).default(1),
    stages: z
      .object({
        ...(Object.fromEntries(OPTIONAL_STAGES.map((s) => [s, z.boolean().optional()])) as Record<
          OptionalStage,
          z.ZodOptional<z.ZodBoolean>
        >),
        // Named so the error says why rather than "unrecognized key".
        ...(Object.fromEntries(
          REQUIRED_STAGES.map((s) => [
            s,
            z.never({ error: `${s} runs in every pipeline and cannot be switched off` }).optional(),
          ]),
        ) as Record<RequiredStage, z.ZodOptional<z.ZodNever>>),
      })
      .strict()
      .default({}),
    /** How the train stage fine-tunes (the trainer validates the same fields again; see gpu-worker/config.py). */
    training: trainingConfigSchema.default(() => trainingConfigSchema.parse({})),
    thresholds: z
      .object({
        maxLossRegression: z.number().min(0).default(0),
        minWinRateLowerBound: z.number().min(0).max(1).default(0.5),
      })
      .strict()
      .default({ maxLossRegression: 0, minWinRateLowerBound: 0.5 }),
  })
  .strict();
export type PipelineConfig = z.output<typeof pipelineConfigSchema>;

export const TASK_FORMATS = ['chat', 'completion', 'instruction', 'json'] as const;

/** What an operator writes to define a model (`tuneloop models put FILE`). */
export const modelDefinitionSchema = z
  .object({
    id: slug,
    app: slug,
    baseModel: z.string().min(1).max(500),
    taskFormat: z.enum(TASK_FORMATS),
    systemPrompt: z.string().max(20_000).optional(),
    outputSchema: z.record(z.string(), z.unknown()).optional(),
    // A factory, not a value: zod copies a default only shallowly, so a shared value would share `stages`.
    config: pipelineConfigSchema.default(() => pipelineConfigSchema.parse({})),
  })
  .strict();
export type ModelDefinition = z.output<typeof modelDefinitionSchema>;

export function parsePipelineConfig(raw: unknown): PipelineConfig {
  return pipelineConfigSchema.parse(raw ?? {});
}
