/** Every stage that trains, serves and promotes switched on (synthesize and score keep their defaults). */
export const ALL_STAGES = { train: true, evaluate: true, register: true, canary: true, promote: true } as const;
