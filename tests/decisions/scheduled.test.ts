import { Client, WorkflowFailedError } from '@temporalio/client';
import {
  ApplicationFailure,
  CancelledFailure,
  ChildWorkflowFailure,
  defaultPayloadConverter,
} from '@temporalio/common';
import { temporal } from '@temporalio/proto';
import { Worker, type WorkflowBundle } from '@temporalio/worker';
import { describe, expect, it } from 'vitest';
import { FailureType } from '../../src/domain/failures';
import { bundleWorkflows } from '../../src/temporal/worker';
import {
  abortSignal,
  MODEL_SEARCH_ATTRIBUTE,
  pipelineWorkflowId,
  SCHEDULED_RUN_WORKFLOW_TYPE,
  scheduleId,
  VOLUME_RUN_WORKFLOW_TYPE,
  volumeScheduleId,
  WORKFLOW_TYPE,
  type PipelineInput,
  type PipelineResult,
  type ScheduledRunInput,
  type ScheduledRunResult,
  type VolumeRunInput,
  type VolumeTrigger,
} from '../../src/workflows/messages';
import type { ScheduledRun, VolumeRun } from '../../src/workflows/scheduled';
import {
  fakeActivities,
  recordedOutcome,
  useDecisionEnv,
  until,
  type AllActivities,
  type Calls,
} from '../helpers/decisions';
import { ALL_STAGES } from '../helpers/stages';

/**
 * ScheduledRun's decisions (what a model's nightly Temporal Schedule starts), on Temporal's time-skipping test server
 * with fake activities: the pipeline child it starts (id, task queue, input, who asked), the skip while one of the
 * model's runs is going, how each way the pipeline ends reaches the scheduled run, that the pipeline outlives a
 * terminated scheduled run, and that it waits days for a long pipeline. The Schedule itself (overlap, trigger, pause, backfill) is
 * tested on the real dev server in tests/workflows/schedule.test.ts.
 */

const testEnv = useDecisionEnv();

// The helper's bundle is private to it; this file's worker bundles the same workflows once.
let bundle: Promise<WorkflowBundle> | null = null;

const SHORT = { stages: { canary: false } };
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** A fresh model per test: pipeline:<model> and scheduled:<model> never meet another test's. */
const newModel = () => `m-${Math.random().toString(36).slice(2, 10)}`;

type Fakes = ReturnType<typeof fakeActivities>;

const newTaskQueue = () => `scheduled-${Math.random().toString(36).slice(2)}`;

/** Runs `fn` with a worker for the workflows and `activities` (CPU and GPU on one task queue, as the helper does). */
async function withWorker<T>(
  activities: Partial<Fakes>,
  fn: (taskQueue: string) => Promise<T>,
  taskQueue = newTaskQueue(),
): Promise<T> {
  bundle ??= bundleWorkflows();
  const worker = await Worker.create({
    connection: testEnv().nativeConnection,
    taskQueue,
    workflowBundle: await bundle,
    activities,
    defaultHeartbeatThrottleInterval: '20 ms',
    maxHeartbeatThrottleInterval: '20 ms',
  });
  return worker.runUntil(fn(taskQueue));
}

/** Starts a ScheduledRun as the model's schedule would (schedule-client.ts's action), on `taskQueue`. */
function startScheduled(taskQueue: string, model: string, extra: Partial<ScheduledRunInput> = {}) {
  const input: ScheduledRunInput = {
    model,
    schedule: scheduleId(model),
    gpuTaskQueue: taskQueue,
    gpuHeartbeatTimeoutS: 120,
    ...extra,
  };
  return testEnv().client.workflow.start<typeof ScheduledRun>(SCHEDULED_RUN_WORKFLOW_TYPE, {
    taskQueue,
    workflowId: `scheduled:${model}`,
    args: [input],
  });
}

/** Starts VolumeRun as the model's volume schedule would. */
function startVolume(taskQueue: string, model: string, volume: VolumeTrigger) {
  const input: VolumeRunInput = { model, schedule: volumeScheduleId(model), gpuTaskQueue: taskQueue, volume };
  return testEnv().client.workflow.start<typeof VolumeRun>(VOLUME_RUN_WORKFLOW_TYPE, {
    taskQueue,
    workflowId: `volume:${model}`,
    args: [input],
  });
}

/** The result or the failure a workflow ended with, time skipping while it is awaited. */
async function outcome<T>(result: Promise<T>): Promise<{ result: T | null; error: Error | null }> {
  try {
    return { result: await result, error: null };
  } catch (err) {
    return { result: null, error: err as Error };
  }
}

/** A client whose result() does not skip time: a going run stays where it is while the test waits on another. */
const frozenClient = () =>
  new Client({ connection: testEnv().connection, namespace: testEnv().namespace ?? 'default' });

/** `promise`, or a failure naming what did not happen, when it is not done in 15 s (as with no time skipping). */
async function soon<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} within 15 s`)), 15_000);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The model's newest pipeline run (the child ScheduledRun started, or one started beside it). */
const pipelineOf = (model: string) => testEnv().client.workflow.getHandle(pipelineWorkflowId(model));

/** The input a pipeline run was started with and its TuneloopModel on start, as its history has them. */
async function startedWith(model: string, runId: string): Promise<{ input: PipelineInput; modelAttribute: unknown }> {
  const history = await testEnv().client.workflow.getHandle(pipelineWorkflowId(model), runId).fetchHistory();
  const started = history.events![0]!.workflowExecutionStartedEventAttributes!;
  const attribute = started.searchAttributes?.indexedFields?.[MODEL_SEARCH_ATTRIBUTE.name];
  return {
    input: defaultPayloadConverter.fromPayload(started.input!.payloads![0]!),
    modelAttribute: attribute ? defaultPayloadConverter.fromPayload(attribute) : null,
  };
}

const startRuns = (calls: Calls) =>
  calls
    .filter((c) => c.name === 'startRun')
    .map((c) => c.input as Parameters<AllActivities['startRun']>[0] & { workflowId: string; runId: string });

/**
 * A pipeline that goes on for hours: it holds its canary at 5 % for an hour on a durable timer. Runs are held there,
 * not in a fake activity that blocks, while a test stops them: after a run is terminated (sometimes cancelled) with
 * an activity in flight, the test server's clock no longer skips, and every later timer of the file waits in real
 * time (a bug of the time-skipping test server, seen with 1.38.0; a pending timer does not set it off).
 */
const HOLDS = { stages: ALL_STAGES, canary: { steps: [5, 100], holdSeconds: 3600, minCalls: 0 } };

/** Waits until the model's pipeline, begun (startRun seen), is holding its canary at 5 %. */
async function heldInCanary(model: string, calls: Calls): Promise<void> {
  await expect.poll(() => startRuns(calls).length, { timeout: 10_000, interval: 25 }).toBe(1);
  await until(pipelineOf(model), (s) => s.canary?.percent === 5);
}

describe('ScheduledRun starts the model’s pipeline', () => {
  it('as a child under pipeline:<model> on its own task queue, asked by the schedule, and answers with that run', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];

    // Act
    const { result, child, started, scheduled } = await withWorker(fakeActivities(SHORT, calls), async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model);
      const result = await handle.result();
      const child = await testEnv().client.workflow.getHandle(pipelineWorkflowId(model), result.runId!).describe();
      const started = await startedWith(model, result.runId!);
      return { result, child, started, scheduled: { taskQueue, workflowId: handle.workflowId } };
    });

    // Assert: the pipeline ran to its end under the model's one id and the scheduled run answers with it
    expect(result).toEqual({ runId: expect.any(String), status: 'succeeded', reason: null });
    expect(startRuns(calls)).toEqual([
      expect.objectContaining({
        runId: result.runId,
        workflowId: `pipeline:${model}`,
        model,
        trigger: 'schedule',
        requestedBy: `schedule:nightly/${model}`,
        requestId: expect.stringMatching(UUID),
      }),
    ]);
    expect(recordedOutcome(calls)?.status).toBe('succeeded');
    // …started as a child of the scheduled run, on its task queue, where operators look for it
    expect(child).toMatchObject({
      type: WORKFLOW_TYPE,
      workflowId: `pipeline:${model}`,
      taskQueue: scheduled.taskQueue,
      parentExecution: { workflowId: scheduled.workflowId },
    });
    expect(await child.staticSummary()).toBe(`${model} · schedule · nightly/${model}`);
    // …found by its model from the start (the pipeline sets it too, but only once its first task has run)
    expect(started.modelAttribute).toBe(model);
    // …with the schedule's GPU settings passed on
    expect(started.input).toStrictEqual({
      model,
      trigger: 'schedule',
      requestedBy: `schedule:nightly/${model}`,
      requestId: startRuns(calls)[0]!.requestId,
      gpuTaskQueue: scheduled.taskQueue,
      gpuHeartbeatTimeoutS: 120,
    });
  });

  it('leaves the GPU settings out when the schedule has none, so the pipeline’s own defaults apply', async () => {
    // Arrange: too little data, so the run ends before any GPU stage (the default GPU queue has no worker here)
    const model = newModel();
    const calls: Calls = [];

    // Act
    const { result, started } = await withWorker(fakeActivities({ minExamples: 100 }, calls), async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model, {
        gpuTaskQueue: undefined,
        gpuHeartbeatTimeoutS: undefined,
      });
      const result = await handle.result();
      return { result, started: await startedWith(model, result.runId!) };
    });

    // Assert
    expect(started.input).toStrictEqual({
      model,
      trigger: 'schedule',
      requestedBy: `schedule:nightly/${model}`,
      requestId: expect.stringMatching(UUID),
    });
    expect(result.status).toBe('insufficient_data');
  });

  it('starts a new pipeline each night once the last one has ended, each with its own request id', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];

    // Act: two nights in a row, the first run over before the second starts
    const [first, second] = await withWorker(fakeActivities(SHORT, calls), async (taskQueue) => {
      const first = await (await startScheduled(taskQueue, model)).result();
      const second = await (await startScheduled(taskQueue, model)).result();
      return [first, second];
    });

    // Assert: an ended run of the model does not make the next night skip
    expect([first.status, second.status]).toEqual(['succeeded', 'succeeded']);
    expect(second.runId).not.toBe(first.runId);
    const [a, b] = startRuns(calls);
    expect([a?.runId, b?.runId]).toEqual([first.runId, second.runId]);
    expect(a?.requestId).not.toBe(b?.requestId);
  });

  it('leaves its pipeline running if it is terminated: deleting a schedule does not stop a run', async () => {
    // Arrange
    const model = newModel();

    // Act
    const history = await withWorker(fakeActivities(SHORT), async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model);
      await handle.result();
      return handle.fetchHistory();
    });

    // Assert: the child was started to be abandoned. Asked of the start, not seen by terminating the parent: the
    // time-skipping test server applies no parent close policy (temporalio/sdk-java#1079), so a pipeline there runs
    // on whatever the policy says.
    const starts = history.events!.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes);
    expect(starts.map((e) => e.startChildWorkflowExecutionInitiatedEventAttributes!.parentClosePolicy)).toEqual([
      temporal.api.enums.v1.ParentClosePolicy.PARENT_CLOSE_POLICY_ABANDON,
    ]);
  });
});

describe('ScheduledRun while one of the model’s runs is going', () => {
  it('is skipped with the reason, completing rather than failing, and leaves the going run alone', async () => {
    // Arrange: a run someone asked for, holding its canary
    const model = newModel();
    const calls: Calls = [];

    const { skipped, scheduled, going } = await withWorker(fakeActivities(HOLDS, calls), async (taskQueue) => {
      const going = await testEnv().client.workflow.start(WORKFLOW_TYPE, {
        taskQueue,
        workflowId: pipelineWorkflowId(model),
        args: [
          { model, trigger: 'api', requestedBy: 'ops', requestId: null, gpuTaskQueue: taskQueue } as PipelineInput,
        ],
      });
      await heldInCanary(model, calls);

      // Act: awaited without skipping time, so the going run is surely still going
      const handle = await startScheduled(taskQueue, model);
      const skipped = await soon(
        frozenClient().workflow.result<typeof ScheduledRun>(handle.workflowId, handle.firstExecutionRunId),
        'the scheduled run did not end',
      );
      const scheduled = await handle.describe();
      return { skipped, scheduled, going: { runId: going.firstExecutionRunId, result: await going.result() } };
    });

    // Assert: skipped, saying why; no second run was begun; the going run ended as it would have
    expect(skipped).toEqual<ScheduledRunResult>({
      runId: null,
      status: 'skipped',
      reason: `a run of ${model} was going already`,
    });
    expect(scheduled.status.name).toBe('COMPLETED');
    expect(startRuns(calls).map((r) => [r.runId, r.trigger])).toEqual([[going.runId, 'api']]);
    expect((going.result as PipelineResult).status).toBe('succeeded');
    expect(recordedOutcome(calls)?.status).toBe('succeeded');
  });

  it('is not skipped when it is cancelled before its pipeline starts: it ends cancelled and starts none', async () => {
    // Arrange: the cancellation is in the scheduled run's history before any worker has seen it
    const model = newModel();
    const calls: Calls = [];
    const taskQueue = newTaskQueue();
    const handle = await startScheduled(taskQueue, model);
    await handle.cancel();

    // Act: a worker picks it up
    const { result, error } = await withWorker(fakeActivities(SHORT, calls), () => outcome(handle.result()), taskQueue);

    // Assert: a failure to start other than "already going" is not a skip
    expect(result).toBeNull();
    expect(error).toBeInstanceOf(WorkflowFailedError);
    expect((error as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect(startRuns(calls)).toEqual([]);
  });
});

describe('how the pipeline’s end reaches ScheduledRun', () => {
  it.each([
    ['insufficient_data', (f: Fakes) => f, { minExamples: 100 }],
    [
      'rejected',
      (f: Fakes) => ({ ...f, decideGate: async () => ({ passed: false, checks: [], reasons: ['worse'] }) }),
      SHORT,
    ],
  ] as const)(
    'a pipeline that ends %s: the scheduled run completes with that status',
    async (status, alter, config) => {
      // Arrange
      const model = newModel();
      const calls: Calls = [];

      // Act
      const result = await withWorker(alter(fakeActivities(config, calls)), async (taskQueue) =>
        (await startScheduled(taskQueue, model)).result(),
      );

      // Assert
      expect(result).toEqual({ runId: startRuns(calls)[0]!.runId, status, reason: null });
      expect(recordedOutcome(calls)?.status).toBe(status);
    },
  );

  it('an operator’s abort of the pipeline: the scheduled run completes as aborted', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(HOLDS, calls);

    // Act
    const result = await withWorker(fakes, async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model);
      await heldInCanary(model, calls);
      await pipelineOf(model).signal(abortSignal, { reason: 'not tonight', by: 'ops' });
      return handle.result();
    });

    // Assert
    expect(result).toEqual({ runId: startRuns(calls)[0]!.runId, status: 'aborted', reason: null });
    expect(recordedOutcome(calls)).toEqual({ status: 'aborted', error: 'not tonight' });
  });

  it('a pipeline that fails: the scheduled run fails with the pipeline’s failure, which the pipeline recorded', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(SHORT, calls);
    fakes.collect = async () => {
      throw ApplicationFailure.create({ type: FailureType.CONFIG_INVALID, message: 'bad config', nonRetryable: true });
    };

    // Act
    const { result, error } = await withWorker(fakes, async (taskQueue) =>
      outcome((await startScheduled(taskQueue, model)).result()),
    );

    // Assert
    expect(result).toBeNull();
    expect(error).toBeInstanceOf(WorkflowFailedError);
    const child = (error as WorkflowFailedError).cause;
    expect(child).toBeInstanceOf(ChildWorkflowFailure);
    expect((child as ChildWorkflowFailure).execution).toEqual({
      workflowId: pipelineWorkflowId(model),
      runId: startRuns(calls)[0]!.runId,
    });
    expect(child?.cause).toMatchObject({
      type: 'PIPELINE_FAILED',
      message: expect.stringMatching(/^pipeline failed: /),
    });
    expect(recordedOutcome(calls)?.status).toBe('failed');
  });

  it('cancelling the scheduled run cancels its pipeline, which records it; the scheduled run ends cancelled', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(HOLDS, calls);

    // Act
    const { error, pipeline } = await withWorker(fakes, async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model);
      await heldInCanary(model, calls);
      await handle.cancel();
      const { error } = await outcome(handle.result());
      return { error, pipeline: await pipelineOf(model).describe() };
    });

    // Assert: the pipeline was cancelled and recorded so before the scheduled run ended
    expect((error as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    expect(pipeline.status.name).toBe('CANCELLED');
    expect(recordedOutcome(calls)).toEqual({ status: 'cancelled', error: 'workflow cancelled' });
  });

  it('a pipeline cancelled on its own: the scheduled run fails with the child’s cancellation (it is not cancelled)', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(HOLDS, calls);

    // Act: someone cancels the pipeline itself, not the scheduled run
    const { error, scheduled } = await withWorker(fakes, async (taskQueue) => {
      const handle = await startScheduled(taskQueue, model);
      await heldInCanary(model, calls);
      await pipelineOf(model).cancel();
      const { error } = await outcome(handle.result());
      return { error, scheduled: await handle.describe() };
    });

    // Assert
    expect(scheduled.status.name).toBe('FAILED');
    const child = (error as WorkflowFailedError).cause;
    expect(child).toBeInstanceOf(ChildWorkflowFailure);
    expect(child?.cause).toBeInstanceOf(CancelledFailure);
    expect(recordedOutcome(calls)).toEqual({ status: 'cancelled', error: 'workflow cancelled' });
  });
});

describe('ScheduledRun and time', () => {
  it('waits as long as its pipeline takes — days of canary holds — with no timeout of its own', async () => {
    // Arrange: a canary held two days at each of 5, 25 and 50 %
    const model = newModel();
    const calls: Calls = [];
    const canary = { steps: [5, 25, 50, 100], holdSeconds: 2 * 24 * 3600, minCalls: 0 };
    const fakes = fakeActivities({ stages: ALL_STAGES, canary }, calls);
    const before = await testEnv().currentTimeMs();

    // Act
    const result = await withWorker(fakes, async (taskQueue) => (await startScheduled(taskQueue, model)).result());

    // Assert
    expect(result).toEqual({ runId: startRuns(calls)[0]!.runId, status: 'succeeded', reason: null });
    expect((await testEnv().currentTimeMs()) - before).toBeGreaterThanOrEqual(6 * 24 * 3600_000);
  });
});

describe('VolumeRun, what a volume schedule starts', () => {
  const VOLUME = { minExamples: 500, minIntervalMinutes: 360 };

  it('asks whether enough new examples arrived and, when not, is skipped with the reason and starts nothing', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(SHORT, calls);
    const asked: unknown[] = [];
    fakes.volumeDue = async (input) => {
      asked.push(input);
      return { due: false, newExamples: 12, reason: "12 new consented examples since the last run's data" };
    };

    // Act
    const result = await withWorker(fakes, async (taskQueue) => (await startVolume(taskQueue, model, VOLUME)).result());

    // Assert
    expect(asked).toEqual([{ model, ...VOLUME }]);
    expect(result).toEqual({
      runId: null,
      status: 'skipped',
      reason: "12 new consented examples since the last run's data",
    });
    expect(startRuns(calls)).toEqual([]);
  });

  it('starts the pipeline when the check says it is due, asked by the volume schedule, and says why', async () => {
    // Arrange
    const model = newModel();
    const calls: Calls = [];
    const fakes = fakeActivities(SHORT, calls);
    fakes.volumeDue = async () => ({ due: true, newExamples: 640, reason: '640 new consented examples' });

    // Act
    const { result, started } = await withWorker(fakes, async (taskQueue) => {
      const handle = await startVolume(taskQueue, model, VOLUME);
      const result = await handle.result();
      return { result, started: await startedWith(model, result.runId!) };
    });

    // Assert
    expect(result).toEqual({
      runId: startRuns(calls)[0]!.runId,
      status: 'succeeded',
      reason: '640 new consented examples',
    });
    expect(started.input).toMatchObject({ trigger: 'schedule', requestedBy: `schedule:volume/${model}` });
  });

  it('is never what a nightly run does: ScheduledRun runs whatever the volume', async () => {
    const calls: Calls = [];
    const fakes = fakeActivities(SHORT, calls);
    fakes.volumeDue = async () => {
      throw new Error('a nightly run must not ask');
    };

    const result = await withWorker(fakes, async (taskQueue) => (await startScheduled(taskQueue, newModel())).result());

    expect(result.status).toBe('succeeded');
  });
});
