import { z } from 'zod';
import { compilePattern, MAX_PATTERN } from '../llm/json-schema';

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
  'shadow',
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
    /** After a 3 % warmup: cosine or linear decay to zero, or constant (short runs that must learn in few steps). */
    lrScheduler: z.enum(['cosine', 'linear', 'constant']).default('cosine'),
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
    /** The held-out loss every N steps too (the run page's validation curve); 0: at the end only. */
    evalEverySteps: z.number().int().min(0).default(50),
    seed: z.number().int().min(0).default(0),
  })
  .strict()
  .refine((t) => t.effectiveBatchSize % t.microBatchSize === 0, {
    message: 'effectiveBatchSize must be a multiple of microBatchSize',
    path: ['effectiveBatchSize'],
  });
export type TrainingConfig = z.output<typeof trainingConfigSchema>;

/** An Ollama model name (`name` or `name:tag`, with an optional namespace): never a URL, nothing is fetched. */
export const ollamaModelName = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,79}(\/[a-z0-9][a-z0-9._-]{0,79})?(:[A-Za-z0-9][A-Za-z0-9._-]{0,79})?$/,
    'expected an Ollama model name such as qwen2.5:7b (a name Ollama already has; nothing is downloaded)',
  );

/** The LLM judge of the evaluate stage: a model already in Ollama compares candidate and production answers. */
export const judgeConfigSchema = z
  .object({
    model: ollamaModelName,
    /** Pairs judged at most (each in both orders). */
    maxPairs: z.number().int().min(1).max(1000).default(64),
    /** What "better" means for this app, added to the judge's instructions. */
    criteria: z.string().min(1).max(2000).optional(),
  })
  .strict();

/** How the register stage puts a version into Ollama. */
export const servingConfigSchema = z
  .object({
    /** A Go template for Ollama; absent: the base's chat template family (chatml, llama3), recognised exactly. */
    template: z.string().min(1).max(20_000).optional(),
    /** Stop strings that go with `template`. */
    stop: z.array(z.string().min(1).max(100)).max(16).optional(),
    /** Import the adapter onto the base where Ollama can (auto), or always the merged weights. */
    merge: z.enum(['auto', 'always', 'never']).default('auto'),
    /** Validation prompts whose greedy answers must agree between Ollama and the trainer. */
    parityPrompts: z.number().int().min(1).max(64).default(4),
    parityMaxTokens: z.number().int().min(1).max(512).default(24),
    /** How far (in logits) a float16 near-tie may be from the best token; see gpu-worker parity.py. */
    logitTolerance: z.number().min(0).max(10).default(0.05),
  })
  .strict()
  .refine((s) => !s.stop || s.template, { message: 'stop goes with template', path: ['stop'] });

/** How long a stage holds before it judges what it has seen (a durable timer): a second to a week, an hour by default. */
const holdSeconds = () =>
  z
    .number()
    .int()
    .min(1)
    .max(7 * 24 * 3600)
    .default(3600);

/** The canary stage: the candidate's share of subjects grows in steps while it is compared with production. */
export const canaryConfigSchema = z
  .object({
    /** Percent of subjects per step, increasing, ending at 100 (then promote). */
    steps: z.array(z.number().int().min(1).max(100)).min(1).max(20).default([5, 25, 50, 100]),
    /** How long each step (but the last) holds before it is judged. */
    holdSeconds: holdSeconds(),
    /** Calls the canary must have answered in a step's window for the step to be judged on them. */
    minCalls: z.number().int().min(0).max(1_000_000).default(20),
    /** Feedback on the canary's answers needed before its thumbs-down rate is judged. */
    minFeedback: z.number().int().min(1).max(1_000_000).default(10),
    /** Holds extended while traffic is short, before `insufficientTraffic` decides. */
    maxExtensions: z.number().int().min(0).max(100).default(3),
    insufficientTraffic: z.enum(['rollback', 'proceed']).default('rollback'),
    /** An operator approves (POST /v1/runs/:id/approve) before the canary goes to 100 %. */
    requireApproval: z.boolean().default(false),
    approvalTimeoutHours: z
      .number()
      .positive()
      .max(24 * 30)
      .default(72),
    /** How much worse than production the canary may be before it is rolled back. */
    margins: z
      .object({
        /** Absolute difference of error rates (0.02: two percentage points). */
        errorRate: z.number().min(0).max(1).default(0.02),
        /** p95 latency may be at most this multiple of production's. */
        p95LatencyRatio: z.number().min(1).max(100).default(1.5),
        thumbsDownRate: z.number().min(0).max(1).default(0.05),
        schemaValidity: z.number().min(0).max(1).default(0.02),
      })
      .strict()
      .default({ errorRate: 0.02, p95LatencyRatio: 1.5, thumbsDownRate: 0.05, schemaValidity: 0.02 }),
  })
  .strict()
  .refine((c) => c.steps.every((p, i) => i === 0 || p > c.steps[i - 1]!) && c.steps.at(-1) === 100, {
    message: 'steps must increase and end at 100',
    path: ['steps'],
  });
export type CanaryConfig = z.output<typeof canaryConfigSchema>;

/**
 * The app's hosted model (Groq, Gemini's OpenAI-compatible endpoint, OpenAI, Together, vLLM, a remote Ollama...):
 * production until a local version wins, the fallback after. Only the name of the environment variable that holds
 * its key is configured: the key itself is read from the API process's environment at call time and never stored,
 * logged or sent anywhere but to `baseUrl`.
 */
export const incumbentConfigSchema = z
  .object({
    /** The OpenAI-compatible base URL, up to and including its version: https://api.groq.com/openai/v1. */
    baseUrl: z
      .url({ protocol: /^https?$/, error: 'expected an http(s) URL' })
      .max(500)
      .refine((u) => !new URL(u).username && !new URL(u).password, {
        message: 'must not carry credentials: name the key with apiKeyEnv',
      }),
    /** The model's name there: llama-3.3-70b-versatile, gemini-2.5-flash, gpt-4.1-mini. */
    model: z.string().min(1).max(200),
    /** The environment variable holding the key (absent: the endpoint needs none, e.g. a local vLLM). */
    apiKeyEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]{0,99}$/, 'expected an environment variable name: upper-case letters, digits, _')
      .optional(),
    // Named so the error says why rather than "unrecognized key" (and never repeats the value).
    apiKey: z
      .never({ error: 'the key itself is never stored: put it in an environment variable and name that in apiKeyEnv' })
      .optional(),
    /** The whole call's budget, retries included (the first byte, for a streamed answer). */
    timeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    /** Tries after the first on a connection error, 408, 429, 5xx, within timeoutMs. */
    maxRetries: z.number().int().min(0).max(5).default(2),
    /** USD per million tokens, for the migration report's bill and savings. */
    prices: z
      .object({ inputPerMTok: z.number().min(0).max(10_000), outputPerMTok: z.number().min(0).max(10_000) })
      .strict()
      .optional(),
  })
  .strict();
export type IncumbentConfig = z.output<typeof incumbentConfigSchema>;

/**
 * The shadow stage: a share of production's live calls is also answered by the candidate in the background (never
 * shown, never slowing the caller), and the pairs are judged before any user sees the candidate.
 */
export const shadowConfigSchema = z
  .object({
    /** Share of production's calls with a subject that the candidate answers too. */
    share: z.number().gt(0).max(1).default(0.25),
    /** Candidate calls in flight at once per API process; a call beyond is dropped (and counted). */
    maxInFlight: z.number().int().min(1).max(1024).default(4),
    holdSeconds: holdSeconds(),
    /** Pairs (answered or failed) the verdict needs. */
    minPairs: z.number().int().min(1).max(100_000).default(30),
    maxExtensions: z.number().int().min(0).max(100).default(3),
    insufficientTraffic: z.enum(['rollback', 'proceed']).default('rollback'),
    /** With a judge: the 95 % lower bound of the candidate's win-or-tie rate must reach this. */
    minWinOrTie: z.number().min(0).max(1).default(0.5),
    /** The candidate's share of failed answers may be at most this. */
    maxErrorRate: z.number().min(0).max(1).default(0.05),
    /** The candidate's p95 latency may be at most this multiple of production's on the same calls. */
    maxLatencyRatio: z.number().min(1).max(100).default(2),
    /** Pairs judged in a shadow at most (each is two judge calls: the judge's speed bounds the stage). */
    maxJudged: z.number().int().min(1).max(10_000).default(200),
  })
  .strict()
  .refine((c) => c.maxJudged >= c.minPairs, {
    message: 'with a judge the verdict needs minPairs judged pairs: maxJudged must be at least minPairs',
    path: ['maxJudged'],
  });
export type ShadowConfig = z.output<typeof shadowConfigSchema>;

/** When a local version fails often enough, the model's traffic goes to the incumbent for a while. */
export const fallbackConfigSchema = z
  .object({
    /** A local answer (its first byte, streamed) that takes longer is abandoned for the incumbent's. */
    localTimeoutMs: z.number().int().min(100).max(600_000).default(30_000),
    /** Consecutive local failures that open the breaker. */
    breakerFailures: z.number().int().min(1).max(1000).default(5),
    /** How long an open breaker sends everything to the incumbent before one call probes the local version. */
    breakerCooldownMs: z.number().int().min(100).max(3_600_000).default(30_000),
  })
  .strict();
export type FallbackConfig = z.output<typeof fallbackConfigSchema>;

/** A house style: a pattern over the whole answer (JavaScript syntax; run in linear time by RE2JS). */
export const styleConfigSchema = z
  .object({
    /** What the style is called in reports: "three labelled lines". */
    name: z.string().min(1).max(80),
    pattern: z
      .string()
      .min(1)
      .max(MAX_PATTERN)
      .superRefine((p, ctx) => {
        try {
          compilePattern(p);
        } catch (err) {
          ctx.addIssue({ code: 'custom', message: `not a pattern tuneloop can run: ${(err as Error).message}` });
        }
      }),
  })
  .strict();

/** How much evaluate generates: greedy answers of both sides to this many validation prompts. */
export const evaluationConfigSchema = z
  .object({
    prompts: z.number().int().min(1).max(512).default(64),
    maxNewTokens: z.number().int().min(8).max(4096).default(128),
    /** Sequences per forward pass, for the held-out loss and for generation (GPU memory; bigger is faster on CPU). */
    batchSize: z.number().int().min(1).max(256).default(4),
  })
  .strict();

/** A teacher or a judge: a model in Ollama, or the app's hosted incumbent. */
export const providerSchema = z.discriminatedUnion('provider', [
  z.object({ provider: z.literal('ollama'), model: ollamaModelName }).strict(),
  z.object({ provider: z.literal('incumbent') }).strict(),
]);

const slotName = z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, 'lower-case letters, digits and _');

/**
 * One kind of synthetic conversation: `prompt` asks the teacher for a user's message, its `{slot}`s filled from
 * `slots` (every combination in turn: category x difficulty x context; character x topic; subject x level x type),
 * and the teacher then answers that message as the app's assistant would (the model's system prompt, and its
 * output schema as structured output when it has one).
 */
export const synthesisSpecSchema = z
  .object({
    name: slug,
    prompt: z.string().min(10).max(4000),
    slots: z.record(slotName, z.array(z.string().min(1).max(500)).min(1).max(200)).default({}),
    /** Conversations to have from this spec (resumed up to it; never more). */
    count: z.number().int().min(1).max(100_000),
    temperature: z.number().min(0).max(2).default(0.8),
  })
  .strict()
  .superRefine((spec, ctx) => {
    const used = [...spec.prompt.matchAll(/\{([a-z][a-z0-9_]*)\}/g)].map((m) => m[1]!);
    for (const name of used) {
      if (!(name in spec.slots)) ctx.addIssue({ code: 'custom', path: ['prompt'], message: `{${name}} has no slot` });
    }
    for (const name of Object.keys(spec.slots)) {
      if (!used.includes(name)) ctx.addIssue({ code: 'custom', path: ['slots', name], message: 'not used in prompt' });
    }
  });
export type SynthesisSpec = z.output<typeof synthesisSpecSchema>;

/** The synthesize stage: a teacher writes conversations from specs; they train, never validate. */
export const synthesizeConfigSchema = z
  .object({
    teacher: providerSchema,
    specs: z.array(synthesisSpecSchema).min(1).max(50),
    /** Teacher calls in flight at once. */
    concurrency: z.number().int().min(1).max(32).default(2),
    /** Tokens of a message or an answer, at most. */
    maxTokens: z.number().int().min(16).max(8192).default(512),
  })
  .strict()
  .superRefine((c, ctx) => {
    const names = c.specs.map((s) => s.name);
    names.forEach((n, i) => {
      if (names.indexOf(n) !== i) ctx.addIssue({ code: 'custom', path: ['specs', i, 'name'], message: 'used twice' });
    });
  });
export type SynthesizeConfig = z.output<typeof synthesizeConfigSchema>;

/** The rubric our users' plans share: a row is good when its answer does these. */
export const DEFAULT_RUBRIC =
  'The answer responds to what the user asked rather than something generic; it uses the knowledge of the ' +
  "app's domain correctly; it is kind and helpful; its length suits the question.";

/**
 * The score stage: a judge rates each row (real and synthetic) in [0, 1] against a rubric; a row that people rated
 * takes their score instead; rows under the threshold, too short, too long or in the wrong language are left out.
 */
export const scoreConfigSchema = z
  .object({
    /** Who judges: a model in Ollama, or the app's hosted incumbent. No judge: only people's scores filter. */
    judge: providerSchema.optional(),
    rubric: z.string().min(10).max(4000).default(DEFAULT_RUBRIC),
    /** Rows scoring under this are left out (when the judge may filter: calibration). */
    threshold: z.number().min(0).max(1).default(0.7),
    /** Characters of the row's text (every turn). */
    minChars: z.number().int().min(0).default(2),
    maxChars: z.number().int().min(1).max(10_000_000).default(200_000),
    /** The language the model speaks, as ISO 639-3 (eng, fra, deu, spa…): rows detected as another are left out. */
    language: z
      .string()
      .regex(/^[a-z]{3}$/, 'an ISO 639-3 code such as eng, fra, deu')
      .optional(),
    calibration: z
      .object({
        /** Rows with both a human signal and a judge score needed before the judge's agreement counts. */
        minRows: z.number().int().min(1).max(100_000).default(20),
        /** The least Cohen's kappa at which the judge may filter. */
        minKappa: z.number().min(-1).max(1).default(0.4),
        /** With fewer rows than minRows: filter on the judge anyway, or keep every row. */
        whenUncalibrated: z.enum(['filter', 'keep']).default('filter'),
      })
      .strict()
      .default({ minRows: 20, minKappa: 0.4, whenUncalibrated: 'filter' }),
    /** Judge calls in flight at once. */
    concurrency: z.number().int().min(1).max(32).default(2),
    /** Tokens of a judgement, at most: the score comes first, so a reason cut short still leaves a score. */
    maxTokens: z.number().int().min(8).max(1024).default(96),
    /** One judge call's budget. */
    timeoutMs: z.number().int().min(1_000).max(600_000).default(120_000),
  })
  .strict();
export type ScoreConfig = z.output<typeof scoreConfigSchema>;

/** Which rows export leaves out as copies of rows it kept (src/dataset/near-dup.ts). */
export const dedupConfigSchema = z
  .object({
    /** Near duplicates too (MinHash LSH over three-word shingles, verified on the signatures); false: exact only. */
    near: z.boolean().default(true),
    /** The Jaccard similarity of two rows' shingle sets at and above which the later one is a near duplicate. */
    threshold: z.number().min(0.5).max(1).default(0.8),
  })
  .strict();

export const pipelineConfigSchema = z
  .object({
    /** Share of interactions (by a hash of their id) that go to the validation split. */
    validationShare: z.number().min(0).max(0.5).default(0.1),
    /** A run with fewer exportable rows than this ends as `insufficient_data` instead of training. */
    minExamples: z.number().int().min(1).default(1),
    /**
     * Duplicates left out of the dataset, exact (normalised text) and near: within the dataset, and so between
     * its splits (no validation row has a near copy in train).
     */
    dedup: dedupConfigSchema.default(() => dedupConfigSchema.parse({})),
    /** The synthesize stage; absent: it is skipped. */
    synthesize: synthesizeConfigSchema.optional(),
    /** The score stage; absent: it is skipped and every row goes to export unscored. */
    score: scoreConfigSchema.optional(),
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
    judge: judgeConfigSchema.optional(),
    /**
     * The app's house style, when it has one: evaluate reports how often each side's answers follow it, and the
     * gate holds the candidate to the baseline's rate (thresholds.maxStyleDrop).
     */
    style: styleConfigSchema.optional(),
    evaluation: evaluationConfigSchema.default(() => evaluationConfigSchema.parse({})),
    serving: servingConfigSchema.default(() => servingConfigSchema.parse({})),
    canary: canaryConfigSchema.default(() => canaryConfigSchema.parse({})),
    /** The hosted model the app used before tuneloop: production until a local version is promoted. */
    incumbent: incumbentConfigSchema.optional(),
    fallback: fallbackConfigSchema.default(() => fallbackConfigSchema.parse({})),
    shadow: shadowConfigSchema.default(() => shadowConfigSchema.parse({})),
    /** The gates a candidate passes before it is registered (evaluate stage). */
    thresholds: z
      .object({
        /** Held-out loss may exceed production's by at most this much. */
        maxLossRegression: z.number().min(0).default(0),
        /** With a judge: the 95 % lower bound of the candidate's win rate must reach this. */
        minWinRateLowerBound: z.number().min(0).max(1).default(0.5),
        /** With an output schema: the JSON validity rate may drop by at most this much. */
        maxSchemaValidityDrop: z.number().min(0).max(1).default(0),
        /** With a style: the rate of answers in the style may drop by at most this much. */
        maxStyleDrop: z.number().min(0).max(1).default(0),
      })
      .strict()
      .default({ maxLossRegression: 0, minWinRateLowerBound: 0.5, maxSchemaValidityDrop: 0, maxStyleDrop: 0 }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.synthesize?.teacher.provider === 'incumbent' && !c.incumbent) {
      ctx.addIssue({
        code: 'custom',
        path: ['synthesize', 'teacher'],
        message: 'the incumbent teaches only where the model has one: set incumbent, or teach with an Ollama model',
      });
    }
    if (c.score?.judge?.provider === 'incumbent' && !c.incumbent) {
      ctx.addIssue({
        code: 'custom',
        path: ['score', 'judge'],
        message: 'the incumbent judges only where the model has one: set incumbent, or judge with an Ollama model',
      });
    }
    // A canary that passes is promoted; without promote it would stay at its last share for good.
    if (c.stages.canary !== false && c.stages.promote === false) {
      ctx.addIssue({
        code: 'custom',
        path: ['stages', 'promote'],
        message: 'a canary that passes is promoted: switch canary off too, or keep promote',
      });
    }
  });
export type PipelineConfig = z.output<typeof pipelineConfigSchema>;

export const TASK_FORMATS = ['chat', 'completion', 'instruction', 'json'] as const;

/** What an operator writes to define a model (`tuneloop models put FILE`). */
export const modelDefinitionSchema = z
  .object({
    id: slug,
    app: slug,
    /**
     * A local model directory on the GPU host (absolute, or relative to TUNELOOP_MODELS_DIR). Never a URL: no
     * model is ever fetched on behalf of a definition.
     */
    baseModel: z
      .string()
      .min(1)
      .max(500)
      .refine((v) => !/^[a-z][a-z0-9+.-]*:\/\//i.test(v), {
        message: 'expected a local model directory, not a URL: tuneloop never downloads models',
      })
      .refine((v) => !v.split(/[\\/]/).includes('..'), { message: 'must not contain ".." path segments' }),
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
