/**
 * The experiment store contract: experiments, their trials, and the ordered history of
 * reports and finishes the scheduler replays into its sampler and pruner after a crash.
 * Every call is durable when its promise resolves. Implementations: `sqlite/`, `postgres/`.
 */

/** Lifecycle of an experiment. */
export const ExperimentStatus = {
  Running: 'running',
  /** `experiment stop` asked for it; the scheduler winds down. */
  Stopping: 'stopping',
  Stopped: 'stopped',
  Done: 'done',
} as const;
export type ExperimentStatus = (typeof ExperimentStatus)[keyof typeof ExperimentStatus];

/** Lifecycle of a trial: `pending` (created, task not yet confirmed published) → `running` → a final state. */
export const TrialStatus = {
  Pending: 'pending',
  Running: 'running',
  Complete: 'complete',
  Pruned: 'pruned',
  Failed: 'failed',
} as const;
export type TrialStatus = (typeof TrialStatus)[keyof typeof TrialStatus];

export const FINAL_STATUSES: readonly TrialStatus[] = ['complete', 'pruned', 'failed'];

export interface ExperimentRecord {
  name: string;
  /** The validated spec, as JSON data. */
  spec: unknown;
  status: ExperimentStatus;
  createdAt: number;
  updatedAt: number;
}

export interface TrialRecord {
  experiment: string;
  number: number;
  params: Record<string, number | string | boolean>;
  status: TrialStatus;
  /** Task id of the trial's task (stable across redeliveries). */
  taskId: string;
  /** Objective value as reported (not negated): final for complete, last report for pruned. */
  value?: number;
  /** Step of the last report. */
  step?: number;
  /** Other metrics of the final result. */
  metrics?: Record<string, unknown>;
  /** Why a failed trial failed (`CODE: message`). */
  error?: string;
  /** Attempt that produced the final result. */
  attempt?: number;
  /** Host (and GPU, when known) of the worker that produced the final result. */
  worker?: { host: string; pid: number; gpus?: { name: string; memoryMiB: number }[] };
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
}

/** What finishing a trial records. */
export interface TrialFinish {
  status: 'complete' | 'pruned' | 'failed';
  value?: number;
  step?: number;
  metrics?: Record<string, unknown>;
  error?: string;
  attempt?: number;
  worker?: TrialRecord['worker'];
  startedAt?: number;
  finishedAt: number;
}

/** A trial as `addTrial` stores it. */
export interface NewTrial {
  experiment: string;
  number: number;
  params: TrialRecord['params'];
  taskId: string;
  createdAt: number;
}

/** An intermediate report as `recordReport` stores it, with the decision sent back. */
export interface NewReport {
  number: number;
  step: number;
  value: number;
  metrics?: Record<string, unknown>;
  decision: string;
  at: number;
}

/** One entry of an experiment's history, in the order it happened. */
export type HistoryEntry =
  | { seq: number; kind: 'report'; number: number; step: number; value: number }
  | {
      seq: number;
      kind: 'finish';
      number: number;
      status: 'complete' | 'pruned' | 'failed';
      value?: number;
      step?: number;
    };

/** Trial counts of an experiment by status. */
export type TrialCounts = Record<TrialStatus, number> & { total: number };

export interface ExperimentStore {
  /** Creates an experiment; throws InputError when the name is taken. */
  createExperiment(name: string, spec: unknown, now?: number): Promise<ExperimentRecord>;
  getExperiment(name: string): Promise<ExperimentRecord | undefined>;
  /** The experiment's status alone, without reading its spec; undefined when it does not exist. */
  experimentStatus(name: string): Promise<ExperimentStatus | undefined>;
  listExperiments(): Promise<ExperimentRecord[]>;
  setExperimentStatus(name: string, status: ExperimentStatus): Promise<void>;
  /**
   * Deletes an experiment with its trials, reports and history, in one transaction; false
   * (and nothing changes) when it does not exist.
   */
  deleteExperiment(name: string): Promise<boolean>;
  /** Adds trial `number` in status `pending`; false (and nothing changes) when it exists. */
  addTrial(trial: NewTrial): Promise<boolean>;
  /** Moves `pending` trials to `running` once their tasks are confirmed published. */
  markRunning(experiment: string, numbers: readonly number[]): Promise<void>;
  /**
   * Records a report unless trial `number` already reported `step`; returns the decision
   * stored with the first report of that step when it is a duplicate, undefined when new.
   */
  recordReport(
    experiment: string,
    report: NewReport,
  ): Promise<{ duplicate: boolean; decision: string }>;
  /**
   * Finishes a trial that is not final yet and appends it to the history; false (and
   * nothing changes) when it was already final, so a redelivered result counts once.
   */
  finishTrial(experiment: string, number: number, finish: TrialFinish): Promise<boolean>;
  getTrial(experiment: string, number: number): Promise<TrialRecord | undefined>;
  /** Trials by number, optionally only those in `statuses`. */
  listTrials(experiment: string, statuses?: readonly TrialStatus[]): Promise<TrialRecord[]>;
  /** Reports and finishes in the order they were recorded. */
  history(experiment: string): Promise<HistoryEntry[]>;
  /** Intermediate values of a trial by step. */
  reports(
    experiment: string,
    number: number,
  ): Promise<{ step: number; value: number; at: number }[]>;
  counts(experiment: string): Promise<TrialCounts>;
}
