import type { ExperimentSpec } from '../scheduler/spec.js';
import type { ExperimentStore, TrialRecord } from '../store/experiments.js';
import { experimentTrials } from './trials.js';

/** The best complete trial in the objective's direction; undefined when none has completed. */
export function bestTrial(
  trials: readonly TrialRecord[],
  objective: Pick<ExperimentSpec['objective'], 'direction'>,
): TrialRecord | undefined {
  const sign = objective.direction === 'maximize' ? -1 : 1;
  let best: TrialRecord | undefined;
  for (const t of trials) {
    if (t.status !== 'complete' || t.value === undefined) continue;
    if (!best || sign * t.value < sign * best.value!) best = t;
  }
  return best;
}

/** An experiment's spec and its best complete trial (undefined when none has completed). */
export interface ExperimentBest {
  spec: ExperimentSpec;
  best: TrialRecord | undefined;
}

/** The best trial of experiment `name`; `NotFoundError` for an unknown one. */
export async function experimentBest(
  store: ExperimentStore,
  name: string,
): Promise<ExperimentBest> {
  const { spec, trials } = await experimentTrials(store, name);
  return { spec, best: bestTrial(trials, spec.objective) };
}
