import { createAnonymizeActivities } from './anonymize';
import { createCollectActivities } from './collect';
import type { ActivityDeps } from './deps';
import { createErasureActivities } from './erasure';
import { createExportActivities } from './export';
import { createRunActivities } from './run';
import { createJudgeActivities } from './judge';
import { createGateActivities } from './gate';
import { createCanaryActivities } from './canary';
import { createPromoteActivities } from './promote';
import { createScoreActivities } from './score';
import { createShadowActivities } from './shadow';
import { createSynthesizeActivities } from './synthesize';

export type { ActivityDeps } from './deps';

/**
 * Every activity the CPU worker registers. One file per stage; stages that are not built yet have no
 * activity and the pipeline reports them as skipped, never pretended.
 */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createRunActivities(deps),
    ...createCollectActivities(deps),
    ...createAnonymizeActivities(deps),
    ...createSynthesizeActivities(deps),
    ...createScoreActivities(deps),
    ...createExportActivities(deps),
    ...createErasureActivities(deps),
    ...createJudgeActivities(deps),
    ...createGateActivities(deps),
    ...createShadowActivities(deps),
    ...createCanaryActivities(deps),
    ...createPromoteActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
