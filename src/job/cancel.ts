import type { Broker } from '../broker/contract.js';
import { NotFoundError } from '../protocol/errors.js';
import type { Store } from '../store/contract.js';
import type { JobRecord } from '../store/jobs.js';
import { getJobOrThrow } from './status.js';

/** What cancelling a job did. */
export interface CancelJobResult {
  job: string;
  queue: string;
  /** Tasks taken off the job's queue before any worker started them (ready or delayed). */
  removed: number;
  /** Tasks leased to workers when the queue was purged; they run to their end. */
  inFlight: number;
}

/**
 * Cancels the job's waiting tasks: its queue is purged, so the tasks no worker has taken yet
 * never run, while the ones leased to workers finish and their results are stored as usual.
 * The items stay in the job (they show as remaining in `job status`); the dead letters stay
 * for `job retry-failed`. A queue shared with other work loses that work's waiting tasks too.
 */
export async function cancelJobTasks(
  broker: Broker,
  job: Pick<JobRecord, 'name' | 'queue'>,
): Promise<CancelJobResult> {
  let removed: number;
  try {
    removed = await broker.purgeQueue(job.queue);
  } catch (err) {
    // A job whose queue was deleted has nothing waiting.
    if (!(err instanceof NotFoundError)) throw err;
    return { job: job.name, queue: job.queue, removed: 0, inFlight: 0 };
  }
  const { inFlight } = await broker.stats(job.queue);
  return { job: job.name, queue: job.queue, removed, inFlight };
}

/** {@link cancelJobTasks} for the job named `name`; NotFoundError when there is none. */
export async function cancelJob(
  broker: Broker,
  store: Store,
  name: string,
): Promise<CancelJobResult> {
  return cancelJobTasks(broker, await getJobOrThrow(store, name));
}

/**
 * Resolves once no task of `queue` is leased to a worker any more (polled every `pollMs`,
 * default 250), or when `signal` aborts; `onWait` hears the count while it waits.
 */
export async function waitForInFlight(
  broker: Broker,
  queue: string,
  options: { signal?: AbortSignal; pollMs?: number; onWait?: (inFlight: number) => void } = {},
): Promise<void> {
  for (;;) {
    if (options.signal?.aborted) return;
    const { inFlight } = await broker.stats(queue);
    if (inFlight === 0) return;
    options.onWait?.(inFlight);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, options.pollMs ?? 250);
      function done(): void {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', done);
        resolve();
      }
      options.signal?.addEventListener('abort', done, { once: true });
    });
  }
}
