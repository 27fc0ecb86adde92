import type { ExperimentSpec } from '../scheduler/spec.js';
import { loadExperiment } from '../scheduler/stored.js';
import type { ExperimentStore, TrialRecord } from '../store/experiments.js';

/** One trial as `qtune experiment trials --json` and `export` print it: plain JSON data. */
export interface TrialRow {
  number: number;
  status: TrialRecord['status'];
  value: number | null;
  step: number | null;
  params: TrialRecord['params'];
  metrics?: Record<string, unknown>;
  error?: string;
  attempt: number | null;
  host: string | null;
  /** Name of the worker's first GPU. */
  gpu: string | null;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** From start to finish; null until both are known. */
  durationMs: number | null;
}

/** A trial record as a {@link TrialRow}: absent fields become null. */
export function trialRow(t: TrialRecord): TrialRow {
  return {
    number: t.number,
    status: t.status,
    value: t.value ?? null,
    step: t.step ?? null,
    params: t.params,
    ...(t.metrics && { metrics: t.metrics }),
    ...(t.error !== undefined && { error: t.error }),
    attempt: t.attempt ?? null,
    host: t.worker?.host ?? null,
    gpu: t.worker?.gpus?.[0]?.name ?? null,
    createdAt: t.createdAt,
    startedAt: t.startedAt ?? null,
    finishedAt: t.finishedAt ?? null,
    durationMs:
      t.startedAt !== undefined && t.finishedAt !== undefined ? t.finishedAt - t.startedAt : null,
  };
}

/** An experiment's spec and every one of its trials, in trial number order. */
export interface ExperimentTrials {
  spec: ExperimentSpec;
  trials: TrialRecord[];
}

/** The trials of experiment `name`; `NotFoundError` (with the closest name) for an unknown one. */
export async function experimentTrials(
  store: ExperimentStore,
  name: string,
): Promise<ExperimentTrials> {
  const { spec } = await loadExperiment(store, name);
  return { spec, trials: await store.listTrials(name) };
}
