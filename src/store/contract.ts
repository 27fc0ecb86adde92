/**
 * The Store contract: everything qtune keeps outside the broker — experiments and their
 * trials, batch jobs and their items, and result tables — as three parts, each its own
 * contract (`experiments.ts`, `jobs.ts`, `results.ts`). Implementations sit side by side
 * (`sqlite/`, `postgres/`) and pass one conformance suite (`test/store/conformance/suite.ts`); `open.ts`
 * picks one by URL.
 */

import type { ExperimentStore } from './experiments.js';
import type { JobStore } from './jobs.js';
import type { ResultStore } from './results.js';

export interface Store {
  /** Implementation name: `sqlite` or `postgres`. */
  readonly kind: string;
  /** Where it is, with any password hidden: a file path or a `postgres://` URL. */
  readonly location: string;
  /** Experiments, their trials, and the history the scheduler replays after a crash. */
  readonly experiments: ExperimentStore;
  /** Batch jobs and their items. */
  readonly jobs: JobStore;
  /** Result tables: what the sink writes and `job export` reads. */
  readonly results: ResultStore;
  /** Closes the handle (its file or connections); later calls throw `STORE_STATE`. */
  close(): Promise<void>;
}

/** Default location of the SQLite store, relative to the working directory. */
export const DEFAULT_STORE_PATH = '.qtune/store.db';
