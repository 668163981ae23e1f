// Calls to a model (a judge, a teacher) a few at a time.

/**
 * Runs `fn` over `items`, `concurrency` at a time. The first failure aborts `stop` (so the calls in flight end) and
 * no new item starts; it is thrown once every worker has stopped.
 */
export async function pool<T>(
  items: readonly T[],
  concurrency: number,
  stop: AbortController,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  let failure: unknown = null;
  const worker = async () => {
    while (failure === null && next < items.length) {
      try {
        await fn(items[next++]!);
      } catch (err) {
        failure ??= err;
        stop.abort(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (failure !== null) throw failure;
}
