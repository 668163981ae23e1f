import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { TrainProgress } from '../activities/train';

/** Where a run's training stands, from its train activity's newest heartbeat (what the Temporal UI shows too). */
export interface TrainingProgress {
  step: number;
  totalSteps: number | null;
  loss: number | null;
  tokensPerS: number | null;
  etaS: number | null;
  /** The attempt training (a crashed GPU host's retry resumes from the newest checkpoint). */
  attempt: number;
  checkpointStep: number | null;
  lastHeartbeatAt: string | null;
}

/** The run's training progress while its train activity is pending; null when it is not training. */
export async function trainingProgress(temporal: Client, workflowId: string, runId: string) {
  const d = await temporal.workflow.getHandle(workflowId, runId).describe();
  const train = d.raw.pendingActivities?.find((a) => a.activityType?.name === 'train');
  const payload = train?.heartbeatDetails?.payloads?.[0];
  if (!train || !payload) return null;
  const p = defaultPayloadConverter.fromPayload<TrainProgress>(payload);
  const at = train.lastHeartbeatTime?.seconds;
  return {
    step: p.step,
    totalSteps: p.totalSteps,
    loss: p.loss,
    tokensPerS: p.tokensPerS,
    etaS: p.etaS,
    attempt: train.attempt ?? p.attempt,
    checkpointStep: p.checkpointStep,
    lastHeartbeatAt: at != null ? new Date(Number(at) * 1000).toISOString() : null,
  } satisfies TrainingProgress;
}
