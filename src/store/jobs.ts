/**
 * The batch-job part of the store contract: a job's definition and its items, so that
 * re-submitting the same items publishes nothing twice and `job export` can join each item
 * with its result row.
 */

import { InputError } from '../protocol/errors.js';

/** A batch job: items of a dataset, one task each on queue `queue`, results in table `table`. */
export interface JobRecord {
  name: string;
  /** Task queue (default: the job's name). */
  queue: string;
  /** Result table the sink fills (default: the job's name). */
  table: string;
  /** Item fields whose values make an item's id; empty: the whole item. */
  keyFields: string[];
  createdAt: number;
  updatedAt: number;
}

export interface NewJob {
  name: string;
  queue: string;
  table: string;
  keyFields: readonly string[];
}

/** Item states: `new` (stored, its task not yet confirmed published), `queued` (published). */
export type JobItemState = 'new' | 'queued';

/** One item of a job. */
export interface JobItem {
  /** Deterministic id: a hash of the key fields' values (the task's idempotency key). */
  id: string;
  /** Position in submission order, from 1. */
  seq: number;
  /** The input item as read from the file. */
  item: Record<string, unknown>;
  /** The task payload (the item, or the item filled into a template). */
  payload: unknown;
  state: JobItemState;
  /** Id of the last task published for it. */
  taskId?: string;
}

export interface NewJobItem {
  id: string;
  item: Record<string, unknown>;
  payload: unknown;
}

export interface JobItemCounts {
  total: number;
  new: number;
  queued: number;
}

export interface JobStore {
  /**
   * Creates job `job.name`, or returns the stored one when it exists with the same queue,
   * table and key fields; throws InputError naming the difference otherwise.
   */
  upsertJob(job: NewJob, now?: number): Promise<JobRecord>;
  getJob(name: string): Promise<JobRecord | undefined>;
  listJobs(): Promise<JobRecord[]>;
  /**
   * Adds the items whose id the job does not have yet, in state `new` and in the given order,
   * in one transaction; items with a known id change nothing. Returns how many were added.
   */
  addJobItems(job: string, items: readonly NewJobItem[]): Promise<number>;
  /** Items in state `new`, in submission order, at most `limit`. */
  unpublishedItems(job: string, limit: number): Promise<JobItem[]>;
  /** Moves items to `queued`, recording the id of the task published for each. */
  markItemsQueued(job: string, published: readonly { id: string; taskId: string }[]): Promise<void>;
  /** Items with these ids, in submission order; unknown ids are left out. */
  getJobItems(job: string, ids: readonly string[]): Promise<JobItem[]>;
  /** Items in submission order with `seq > afterSeq` (default 0), at most `limit` (default 1000). */
  listJobItems(job: string, options?: { afterSeq?: number; limit?: number }): Promise<JobItem[]>;
  jobItemCounts(job: string): Promise<JobItemCounts>;
}

/** Names the first difference between a stored job and a new definition, if any. */
export function jobDifference(stored: JobRecord, job: NewJob): string | undefined {
  if (stored.queue !== job.queue) return `queue "${stored.queue}", not "${job.queue}"`;
  if (stored.table !== job.table) return `table "${stored.table}", not "${job.table}"`;
  const a = JSON.stringify(stored.keyFields);
  const b = JSON.stringify(job.keyFields);
  if (a !== b) return `key fields ${a}, not ${b}`;
  return undefined;
}

/** Throws the InputError `upsertJob` gives for a job redefined differently. */
export function jobConflict(stored: JobRecord, job: NewJob): never {
  throw new InputError(
    `job "${job.name}" exists with ${jobDifference(stored, job)} (choose another name, or keep its definition)`,
  );
}
