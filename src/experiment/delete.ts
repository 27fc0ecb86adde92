import type { Broker } from '../broker/contract.js';
import { deadLetterQueueOf } from '../broker/contract.js';
import { ErrorCode, InputError, QtuneError } from '../protocol/errors.js';
import { experimentQueues } from '../protocol/trial.js';
import { findExperiment } from '../scheduler/stored.js';
import type { ExperimentRecord, ExperimentStatus, ExperimentStore } from '../store/experiments.js';

/** Queues of experiment `name` on the broker: its four queues and their dead-letter queues. */
export function experimentQueueNames(name: string): string[] {
  const q = experimentQueues(name);
  // The trials queue's dead-letter queue is `q.dead`; the others get the default `<queue>.dead`.
  return [
    q.trials,
    q.results,
    q.reports,
    q.dead,
    deadLetterQueueOf(q.results),
    deadLetterQueueOf(q.reports),
    deadLetterQueueOf(q.dead),
  ];
}

export interface DeleteExperimentOptions {
  /**
   * Delete a `running` or `stopping` experiment too, for one whose scheduler is gone (crashed
   * or paused) (default: false).
   */
  force?: boolean;
}

export interface DeletedExperiment {
  experiment: string;
  /** Its status when it was deleted. */
  status: ExperimentStatus;
  /** Trials deleted with it. */
  trials: number;
  /** Broker queues deleted (none when no broker was given). */
  queues: string[];
}

/** Throws `InputError` when `exp` is `running` or `stopping` and `force` is not set. */
export function assertDeletable(
  exp: ExperimentRecord,
  options: DeleteExperimentOptions = {},
): void {
  if ((exp.status === 'running' || exp.status === 'stopping') && options.force !== true) {
    throw new InputError(
      `experiment "${exp.name}" is ${exp.status}: stop it first (\`qtune experiment stop ${exp.name} --wait\`), or pass --force if its scheduler no longer runs`,
    );
  }
}

/**
 * Deletes an experiment: first its queues on `broker` (tasks, results, reports, dead trials
 * and their dead-letter queues), then its record, trials, reports and history in the store,
 * so a failure part way leaves it in the store to delete again. Refuses a `running` or
 * `stopping` experiment unless `force`; throws `NotFoundError` for an unknown name.
 */
export async function deleteExperiment(
  store: ExperimentStore,
  broker: Broker | undefined,
  name: string,
  options: DeleteExperimentOptions = {},
): Promise<DeletedExperiment> {
  const exp = await findExperiment(store, name);
  assertDeletable(exp, options);
  const trials = (await store.counts(name)).total;
  const queues = broker === undefined ? [] : experimentQueueNames(name);
  for (const queue of queues) {
    await broker!.deleteQueue(queue).catch((err: unknown) => {
      // A queue that was never created (or is already gone) is what deleting it wants.
      if (!(err instanceof QtuneError && err.code === ErrorCode.NotFound)) throw err;
    });
  }
  await store.deleteExperiment(name);
  return { experiment: name, status: exp.status, trials, queues };
}
