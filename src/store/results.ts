/**
 * The result-table part of the store contract: what the sink writes. A result table is a real
 * SQL table named by the user (`qtune sink QUEUE --table T`), one row per task outcome, keyed
 * by a deterministic id so that a redelivered or re-run result updates its row.
 */

import { InputError } from '../protocol/errors.js';

/** One task outcome as the sink stores it. Times are Unix epoch milliseconds. */
export interface ResultRow {
  /** Deterministic row id: the task's idempotency key, or a hash of the key fields. */
  id: string;
  /** Id of the task that produced this outcome (changes when the item is re-run). */
  taskId: string;
  /** The task's idempotency key, when it had one. */
  key?: string;
  ok: boolean;
  /** The handler's result (JSON data), when `ok`. */
  value?: unknown;
  errorCode?: string;
  errorMessage?: string;
  /** Worker that produced it: host name, pid and per-process worker id. */
  host: string;
  pid: number;
  workerId: string;
  /** GPU models and memory, e.g. `NVIDIA H100 80GB HBM3 (81559 MiB)`, `; `-joined. */
  gpu?: string;
  /** What the worker declared its machine costs per hour (`qtune worker --price-per-hour`). */
  pricePerHour?: number;
  attempt: number;
  durationMs: number;
  startedAt: number;
  finishedAt: number;
}

/** A row as read back: with when it was last written and how many times. */
export interface StoredResultRow extends ResultRow {
  /** When the row was last inserted or updated. */
  storedAt: number;
  /** 1 when written once; each upsert of the same id that replaces the row adds one (a failure kept out by a success adds nothing). */
  writes: number;
}

/** Outcomes of one worker process in a result table. */
export interface WorkerAggregate {
  workerId: string;
  host: string;
  pid: number;
  gpu?: string;
  pricePerHour?: number;
  ok: number;
  failed: number;
  /** Earliest `startedAt` and latest `finishedAt` of its rows. */
  firstStartedAt: number;
  lastFinishedAt: number;
  /** Sum of its rows' `durationMs`. */
  busyMs: number;
}

export interface ResultCounts {
  total: number;
  ok: number;
  failed: number;
}

export interface ListResultsOptions {
  /** Only rows whose id sorts after this one (paging). */
  afterId?: string;
  /** At most this many rows (default: 1000). */
  limit?: number;
  /** Only successful (true) or failed (false) rows. */
  ok?: boolean;
}

export interface ResultStore {
  /**
   * Whether writes run synchronously on the calling thread (SQLite) rather than leave it for a
   * server (PostgreSQL). A caller that must keep serving while it writes, like the sink, then
   * writes from a worker thread over a handle of its own, opened there with
   * `openStore(store.location)`.
   */
  readonly writesBlock: boolean;
  /**
   * Creates result table `table` when missing (see {@link checkTableName}); re-creating keeps
   * its rows.
   */
  ensureResultTable(table: string): Promise<void>;
  /** Whether result table `table` exists. */
  hasResultTable(table: string): Promise<boolean>;
  /**
   * Writes rows in one transaction: a new id inserts a row, a known id replaces the row's fields
   * and adds one to its `writes` — except that a failed row (`ok` false) never replaces a
   * successful one (a late failure of a duplicate run must not undo a success). Within one call,
   * a later row with the same id wins, by the same rule. Durable when the promise resolves.
   * Returns how many ids were new (`inserted`) and how many were already stored (`updated`,
   * whether replaced or kept).
   */
  upsertResults(
    table: string,
    rows: readonly ResultRow[],
    now?: number,
  ): Promise<{ inserted: number; updated: number }>;
  /**
   * Writes chunks of rows in one transaction, each chunk as {@link upsertResults} writes a
   * batch; a chunk source that throws part way leaves nothing written. An id repeated in two
   * chunks is upserted twice, by the same rule, and counts as updated the second time. The sink
   * writes a batch this way, decoding it lazily (a generator): where writes block (see
   * {@link writesBlock}) the chunks are taken one at a time, so only one chunk's rows are alive
   * at once and they die young.
   */
  upsertResultChunks(
    table: string,
    chunks: Iterable<readonly ResultRow[]>,
    now?: number,
  ): Promise<{ inserted: number; updated: number }>;
  /** Rows with these ids, in no particular order; missing ids are left out. */
  getResults(table: string, ids: readonly string[]): Promise<StoredResultRow[]>;
  /** Rows ordered by id. */
  listResults(table: string, options?: ListResultsOptions): Promise<StoredResultRow[]>;
  resultCounts(table: string): Promise<ResultCounts>;
  /** How many rows have `finishedAt >= since`. */
  countFinishedSince(table: string, since: number): Promise<number>;
  /** One aggregate per worker id, ordered by host then worker id. */
  workerStats(table: string): Promise<WorkerAggregate[]>;
}

/** Largest table name length accepted (PostgreSQL's identifier limit). */
export const MAX_TABLE_NAME = 63;

/**
 * Checks a result table name: a letter or `_`, then letters, digits or `_`, at most 63
 * characters, not starting with `qtune_` (reserved for qtune's own tables). Throws InputError
 * naming the problem.
 */
export function checkTableName(table: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) {
    throw new InputError(
      `table name "${table}": use a letter or "_" first, then letters, digits or "_"`,
    );
  }
  if (table.length > MAX_TABLE_NAME) {
    throw new InputError(
      `table name "${table}": ${table.length} characters, at most ${MAX_TABLE_NAME}`,
    );
  }
  if (table.toLowerCase().startsWith('qtune_')) {
    throw new InputError(`table name "${table}": the prefix "qtune_" is reserved`);
  }
  return table;
}

/**
 * The row each id of a batch ends with, in id order: the last one, except that a failed row
 * never replaces a successful one (as between batches). A batch upserts each id once, and taken
 * in id order its rows reach the id index page by page (SQLite) and lock rows in one order, so
 * that two sinks writing overlapping batches never deadlock (PostgreSQL).
 */
export function lastOfEachIdSorted(rows: readonly ResultRow[]): ResultRow[] {
  const byId = new Map<string, ResultRow>();
  for (const r of rows) {
    if (!r.ok && byId.get(r.id)?.ok) continue;
    byId.set(r.id, r);
  }
  return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
