import type { Store } from './contract.js';
import type { ExperimentStore } from './experiments.js';
import type { JobStore } from './jobs.js';
import type { ResultStore } from './results.js';

/** The three parts an implementation provides, each over its own connection or pool. */
export interface StoreParts {
  experiments: Omit<ExperimentStore, 'close'>;
  jobs: JobStore;
  results: ResultStore;
}

/**
 * A Store made of its three parts: implementations (`sqlite/`, `postgres/`) extend it with
 * their parts and their own `close`.
 */
export abstract class CompositeStore implements Store {
  abstract readonly kind: string;
  abstract readonly location: string;
  readonly #p: StoreParts;

  protected constructor(parts: StoreParts) {
    this.#p = parts;
  }

  abstract close(): Promise<void>;

  // Experiments
  createExperiment: Store['createExperiment'] = (...a) =>
    this.#p.experiments.createExperiment(...a);
  getExperiment: Store['getExperiment'] = (...a) => this.#p.experiments.getExperiment(...a);
  experimentStatus: Store['experimentStatus'] = (...a) =>
    this.#p.experiments.experimentStatus(...a);
  listExperiments: Store['listExperiments'] = () => this.#p.experiments.listExperiments();
  setExperimentStatus: Store['setExperimentStatus'] = (...a) =>
    this.#p.experiments.setExperimentStatus(...a);
  deleteExperiment: Store['deleteExperiment'] = (...a) =>
    this.#p.experiments.deleteExperiment(...a);
  addTrial: Store['addTrial'] = (...a) => this.#p.experiments.addTrial(...a);
  markRunning: Store['markRunning'] = (...a) => this.#p.experiments.markRunning(...a);
  recordReport: Store['recordReport'] = (...a) => this.#p.experiments.recordReport(...a);
  finishTrial: Store['finishTrial'] = (...a) => this.#p.experiments.finishTrial(...a);
  getTrial: Store['getTrial'] = (...a) => this.#p.experiments.getTrial(...a);
  listTrials: Store['listTrials'] = (...a) => this.#p.experiments.listTrials(...a);
  history: Store['history'] = (...a) => this.#p.experiments.history(...a);
  reports: Store['reports'] = (...a) => this.#p.experiments.reports(...a);
  counts: Store['counts'] = (...a) => this.#p.experiments.counts(...a);

  // Jobs
  upsertJob: Store['upsertJob'] = (...a) => this.#p.jobs.upsertJob(...a);
  getJob: Store['getJob'] = (...a) => this.#p.jobs.getJob(...a);
  listJobs: Store['listJobs'] = () => this.#p.jobs.listJobs();
  addJobItems: Store['addJobItems'] = (...a) => this.#p.jobs.addJobItems(...a);
  unpublishedItems: Store['unpublishedItems'] = (...a) => this.#p.jobs.unpublishedItems(...a);
  markItemsQueued: Store['markItemsQueued'] = (...a) => this.#p.jobs.markItemsQueued(...a);
  getJobItems: Store['getJobItems'] = (...a) => this.#p.jobs.getJobItems(...a);
  listJobItems: Store['listJobItems'] = (...a) => this.#p.jobs.listJobItems(...a);
  jobItemCounts: Store['jobItemCounts'] = (...a) => this.#p.jobs.jobItemCounts(...a);

  // Result tables
  ensureResultTable: Store['ensureResultTable'] = (...a) => this.#p.results.ensureResultTable(...a);
  hasResultTable: Store['hasResultTable'] = (...a) => this.#p.results.hasResultTable(...a);
  upsertResults: Store['upsertResults'] = (...a) => this.#p.results.upsertResults(...a);
  getResults: Store['getResults'] = (...a) => this.#p.results.getResults(...a);
  listResults: Store['listResults'] = (...a) => this.#p.results.listResults(...a);
  resultCounts: Store['resultCounts'] = (...a) => this.#p.results.resultCounts(...a);
  countFinishedSince: Store['countFinishedSince'] = (...a) =>
    this.#p.results.countFinishedSince(...a);
  workerStats: Store['workerStats'] = (...a) => this.#p.results.workerStats(...a);
}
