import type { Broker } from '../broker/contract.js';
import { requeueDeadLetters } from '../patterns/dead-letters.js';
import { submitTasks } from '../patterns/work-queue.js';
import type { Store } from '../store/contract.js';
import { getJobOrThrow } from './status.js';

export interface RetryFailedResult {
  /** Dead letters of the job's queue put back (the same tasks, attempts counted afresh). */
  requeued: number;
  /** Items with a failed row and no dead letter, published again as new tasks. */
  republished: number;
}

/**
 * Runs a job's failed items again: its dead letters go back to the queue, and every item whose
 * result row is a failure but that had no dead letter (for example, one whose dead letter was
 * already removed) is published again with the same idempotency key. When the new result
 * arrives, the sink replaces the failed row.
 */
export async function retryFailed(
  broker: Broker,
  store: Store,
  name: string,
): Promise<RetryFailedResult> {
  const job = await getJobOrThrow(store, name);
  const { requeued, keys } = await requeueDeadLetters(broker, job.queue);
  const requeuedKeys = new Set(keys);
  let republished = 0;
  let afterId: string | undefined;
  for (;;) {
    const rows = await store.results.listResults(job.table, {
      ok: false,
      limit: 1000,
      ...(afterId !== undefined && { afterId }),
    });
    if (rows.length === 0) break;
    afterId = rows.at(-1)!.id;
    const ids = rows.map((r) => r.id).filter((id) => !requeuedKeys.has(id));
    const items = await store.jobs.getJobItems(name, ids);
    if (items.length === 0) continue;
    const taskIds = await submitTasks(
      broker,
      job.queue,
      items.map((it) => ({ payload: it.payload, key: it.id })),
    );
    await store.jobs.markItemsQueued(
      name,
      items.map((it, i) => ({ id: it.id, taskId: taskIds[i]! })),
    );
    republished += items.length;
  }
  return { requeued, republished };
}
