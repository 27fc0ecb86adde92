import type { ExperimentSpec } from '../scheduler/spec.js';
import { loadExperiment } from '../scheduler/stored.js';
import type { ExperimentRecord, ExperimentStore } from '../store/experiments.js';
import { trialRow, type TrialRow } from './trials.js';

/** An intermediate report of a trial, in the order they came. */
export interface ExportedReport {
  step: number;
  value: number;
  at: number;
}

/** The whole of an experiment, as `qtune experiment export` prints it. */
export interface ExportedExperiment {
  experiment: string;
  status: ExperimentRecord['status'];
  spec: ExperimentSpec;
  createdAt: number;
  /** Every trial, in number order, with its intermediate reports. */
  trials: (TrialRow & { reports: ExportedReport[] })[];
}

/**
 * Experiment `name` whole: its spec, its trials and each trial's intermediate reports;
 * `NotFoundError` for an unknown one.
 */
export async function exportExperiment(
  store: ExperimentStore,
  name: string,
): Promise<ExportedExperiment> {
  const { record, spec } = await loadExperiment(store, name);
  const trials: ExportedExperiment['trials'] = [];
  for (const t of await store.listTrials(name)) {
    trials.push({ ...trialRow(t), reports: await store.reports(name, t.number) });
  }
  return { experiment: name, status: record.status, spec, createdAt: record.createdAt, trials };
}
