import type { Broker } from '../broker/contract.js';
import { ErrorCode, QtuneError } from '../protocol/errors.js';
import { experimentQueues } from '../protocol/trial.js';
import type { ExperimentRecord } from '../store/experiments.js';

/**
 * Schedulers attached to experiment `name` now, in any process: the consumers of its reports
 * queue, which only a scheduler consumes (its workers consume the trials queue). 0 when the
 * queue does not exist yet.
 */
export async function attachedSchedulers(broker: Broker, name: string): Promise<number> {
  try {
    return (await broker.stats(experimentQueues(name).reports)).consumers;
  } catch (err) {
    if (
      err instanceof QtuneError &&
      (err.code === ErrorCode.BrokerState || err.code === ErrorCode.NotFound)
    ) {
      return 0;
    }
    throw err;
  }
}

/**
 * Why experiment `record` cannot be resumed by a new scheduler now, or undefined when it can:
 * it is done (its trials are all spent), or a scheduler is attached to it (resuming would run
 * two). An experiment `running` with no scheduler attached (one crashed or was interrupted),
 * `stopping` with none (it was asked to stop while none ran) or `stopped` can be resumed.
 */
export async function resumeRefusal(
  broker: Broker,
  record: ExperimentRecord,
): Promise<string | undefined> {
  if (record.status === 'done') {
    return `experiment "${record.name}" is done: its trials are spent (run a new experiment to go on)`;
  }
  return schedulerAttached(broker, record.name);
}

/**
 * Why experiment `name` cannot get another scheduler now (one is attached to it in some
 * process), or undefined when none is attached.
 */
export async function schedulerAttached(broker: Broker, name: string): Promise<string | undefined> {
  const attached = await attachedSchedulers(broker, name);
  if (attached > 0) {
    return `experiment "${name}" already has a scheduler attached (${attached} consumer${attached === 1 ? '' : 's'} of ${experimentQueues(name).reports})`;
  }
  return undefined;
}
