/** Every stage that trains, serves and promotes switched on (synthesize and score keep their defaults). */
export const ALL_STAGES = { train: true, evaluate: true, register: true, canary: true, promote: true } as const;

/** Training that takes the tiny model somewhere in seconds (the serving-loop tests' runs). */
export const TINY_TRAINING = {
  maxSteps: 12,
  epochs: 3,
  effectiveBatchSize: 4,
  microBatchSize: 2,
  maxLength: 256,
  learningRate: 3e-3,
  checkpointEverySteps: 50,
} as const;

/** Consent of the subjects coachingRows() writes (u0..u4). */
export const COACHING_CONSENT = { u0: true, u1: true, u2: true, u3: true, u4: true } as const;
