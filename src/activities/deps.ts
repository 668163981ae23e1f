import { Context } from '@temporalio/activity';
import type { Db } from '../db/pool';
import type { OllamaClient } from '../llm/ollama';
import type { Logger } from '../log';
import type { BlobStore } from '../storage/blob-store';

export interface ActivityDeps {
  db: Db;
  store: BlobStore;
  log: Logger;
  /** The Ollama that serves the models (register, judge, promote). */
  ollama: OllamaClient;
  /** The Ollama that answers canary traffic (on the same models); `ollama` when absent. */
  canaryOllama?: OllamaClient;
  /** Folder for temporary files (datasets are staged on local disk, never held in memory). */
  tmpDir: string;
}

/**
 * Heartbeats when running inside an activity (a no-op when called directly), and throws once the activity
 * has been cancelled, so long loops stop at their next heartbeat.
 */
export function heartbeat(details?: unknown): void {
  let ctx: Context;
  try {
    ctx = Context.current();
  } catch {
    return; // not in an activity context
  }
  ctx.heartbeat(details);
  if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason;
}

/** The running activity's cancellation signal; undefined when called directly (tests, scripts). */
export function cancellationSignal(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined;
  }
}

export function activityLog(deps: ActivityDeps, bindings: Record<string, unknown>) {
  try {
    const info = Context.current().info;
    return deps.log.child({
      workflowId: info.workflowExecution?.workflowId,
      activityId: info.activityId,
      attempt: info.attempt,
      ...bindings,
    });
  } catch {
    return deps.log.child(bindings);
  }
}
