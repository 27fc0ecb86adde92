import type { ExperimentSpec } from '../scheduler/spec.js';
import { findExperiment, parseStoredSpec } from '../scheduler/stored.js';
import type {
  ExperimentRecord,
  ExperimentStore,
  TrialCounts,
  TrialRecord,
} from '../store/experiments.js';
import { bestTrial } from './best.js';

/** What the store knows of an experiment at a glance: its record and its trial counts. */
export interface ExperimentOverview {
  record: ExperimentRecord;
  counts: TrialCounts;
}

/** The record and trial counts of experiment `name`; `NotFoundError` for an unknown one. */
export async function experimentOverview(
  store: ExperimentStore,
  name: string,
): Promise<ExperimentOverview> {
  const record = await findExperiment(store, name);
  return { record, counts: await store.counts(name) };
}

/** What `GET /v1/experiments/:name` answers: the stored record with its trial counts. */
export type ExperimentRecordWithCounts = ExperimentRecord & { trials: TrialCounts };

/** The gateway's view of an {@link ExperimentOverview}. */
export function recordWithCounts(overview: ExperimentOverview): ExperimentRecordWithCounts {
  return { ...overview.record, trials: overview.counts };
}

/** Progress of an experiment, as `qtune experiment status` prints it. */
export interface ExperimentProgress {
  name: string;
  status: ExperimentRecord['status'];
  objective: ExperimentSpec['objective'];
  maxTrials: number;
  /** Trials complete, pruned or failed. */
  finished: number;
  /** Trials running or waiting to be published. */
  running: number;
  complete: number;
  pruned: number;
  failed: number;
  /** Trials finished per minute from the first trial's creation to the last finish (1 decimal). */
  trialsPerMinute: number;
  /** The best complete trial in the objective's direction, once one has completed. */
  best?: { number: number; value: number; params: TrialRecord['params'] };
  createdAt: number;
  updatedAt: number;
}

/** Trials finished per minute over the experiment's finished trials. */
export function trialsPerMinute(trials: readonly TrialRecord[]): number {
  const done = trials.filter((t) => t.finishedAt !== undefined);
  if (done.length === 0) return 0;
  const first = Math.min(...trials.map((t) => t.createdAt));
  const last = Math.max(...done.map((t) => t.finishedAt!));
  return last > first ? (done.length * 60_000) / (last - first) : 0;
}

/** The progress of an experiment from its overview, spec and trials. */
export function progressOf(
  overview: ExperimentOverview,
  spec: ExperimentSpec,
  trials: readonly TrialRecord[],
): ExperimentProgress {
  const { record: exp, counts } = overview;
  const best = bestTrial(trials, spec.objective);
  return {
    name: exp.name,
    status: exp.status,
    objective: spec.objective,
    maxTrials: spec.maxTrials,
    finished: counts.complete + counts.pruned + counts.failed,
    running: counts.running + counts.pending,
    complete: counts.complete,
    pruned: counts.pruned,
    failed: counts.failed,
    trialsPerMinute: Math.round(trialsPerMinute(trials) * 10) / 10,
    ...(best && { best: { number: best.number, value: best.value!, params: best.params } }),
    createdAt: exp.createdAt,
    updatedAt: exp.updatedAt,
  };
}

/**
 * The progress of experiment `name` (its trials, counts and best so far); `NotFoundError`
 * for an unknown one, `InputError` for a stored spec this version cannot read.
 */
export async function experimentProgress(
  store: ExperimentStore,
  name: string,
): Promise<ExperimentProgress> {
  const overview = await experimentOverview(store, name);
  const spec = parseStoredSpec(overview.record);
  return progressOf(overview, spec, await store.listTrials(name));
}
