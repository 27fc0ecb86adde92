/**
 * Rows of qtune's tables as the database drivers return them once JSON columns are decoded,
 * and their mapping to the contract's records: one mapping for every implementation.
 */

import type {
  ExperimentRecord,
  ExperimentStatus,
  HistoryEntry,
  TrialRecord,
  TrialStatus,
} from './experiments.js';
import type { JobItem, JobRecord } from './jobs.js';
import type { StoredResultRow, WorkerAggregate } from './results.js';

export interface TrialRow {
  experiment: string;
  number: number;
  params: TrialRecord['params'];
  status: TrialStatus;
  task_id: string;
  value: number | null;
  step: number | null;
  metrics: Record<string, unknown> | null;
  error: string | null;
  attempt: number | null;
  worker: TrialRecord['worker'] | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
}

export function toTrial(row: TrialRow): TrialRecord {
  const t: TrialRecord = {
    experiment: row.experiment,
    number: row.number,
    params: row.params,
    status: row.status,
    taskId: row.task_id,
    createdAt: row.created_at,
  };
  if (row.value !== null) t.value = row.value;
  if (row.step !== null) t.step = row.step;
  if (row.metrics !== null) t.metrics = row.metrics;
  if (row.error !== null) t.error = row.error;
  if (row.attempt !== null) t.attempt = row.attempt;
  if (row.worker !== null) t.worker = row.worker;
  if (row.started_at !== null) t.startedAt = row.started_at;
  if (row.finished_at !== null) t.finishedAt = row.finished_at;
  return t;
}

export interface ExperimentRow {
  name: string;
  spec: unknown;
  status: ExperimentStatus;
  created_at: number;
  updated_at: number;
}

export function toExperiment(row: ExperimentRow): ExperimentRecord {
  return {
    name: row.name,
    spec: row.spec,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export interface HistoryRow {
  seq: number;
  kind: 'report' | 'finish';
  number: number;
  step: number | null;
  value: number | null;
  status: string | null;
}

/** A history row as the entry the scheduler replays. */
export function historyEntryOf(h: HistoryRow): HistoryEntry {
  if (h.kind === 'report') {
    return { seq: h.seq, kind: 'report', number: h.number, step: h.step!, value: h.value! };
  }
  const e: HistoryEntry = {
    seq: h.seq,
    kind: 'finish',
    number: h.number,
    status: h.status as 'complete' | 'pruned' | 'failed',
  };
  if (h.value !== null) e.value = h.value;
  if (h.step !== null) e.step = h.step;
  return e;
}

export interface JobRow {
  name: string;
  queue: string;
  table_name: string;
  key_fields: string[];
  created_at: number;
  updated_at: number;
}

export interface ItemRow {
  id: string;
  seq: number;
  item: Record<string, unknown>;
  payload: unknown;
  state: JobItem['state'];
  task_id: string | null;
}

export function toJob(row: JobRow): JobRecord {
  return {
    name: row.name,
    queue: row.queue,
    table: row.table_name,
    keyFields: row.key_fields,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function toItem(row: ItemRow): JobItem {
  const item: JobItem = {
    id: row.id,
    seq: row.seq,
    item: row.item,
    payload: row.payload,
    state: row.state,
  };
  if (row.task_id !== null) item.taskId = row.task_id;
  return item;
}

export interface ResultTableRow {
  id: string;
  task_id: string;
  key: string | null;
  ok: boolean;
  value: unknown;
  error_code: string | null;
  error_message: string | null;
  host: string;
  pid: number;
  worker_id: string;
  gpu: string | null;
  price_per_hour: number | null;
  attempt: number;
  duration_ms: number;
  started_at: number;
  finished_at: number;
  stored_at: number;
  writes: number;
}

export function toStored(r: ResultTableRow): StoredResultRow {
  const row: StoredResultRow = {
    id: r.id,
    taskId: r.task_id,
    ok: r.ok,
    host: r.host,
    pid: r.pid,
    workerId: r.worker_id,
    attempt: r.attempt,
    durationMs: r.duration_ms,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    storedAt: r.stored_at,
    writes: r.writes,
  };
  if (r.key !== null) row.key = r.key;
  if (r.value !== null) row.value = r.value;
  if (r.error_code !== null) row.errorCode = r.error_code;
  if (r.error_message !== null) row.errorMessage = r.error_message;
  if (r.gpu !== null) row.gpu = r.gpu;
  if (r.price_per_hour !== null) row.pricePerHour = r.price_per_hour;
  return row;
}

/** A per-worker aggregate row of a result table. */
export interface WorkerRow {
  worker_id: string;
  host: string;
  pid: number;
  gpu: string | null;
  price_per_hour: number | null;
  ok: number;
  failed: number;
  first_started_at: number;
  last_finished_at: number;
  busy_ms: number;
}

export function toWorkerAggregate(w: WorkerRow): WorkerAggregate {
  const a: WorkerAggregate = {
    workerId: w.worker_id,
    host: w.host,
    pid: w.pid,
    ok: w.ok,
    failed: w.failed,
    firstStartedAt: w.first_started_at,
    lastFinishedAt: w.last_finished_at,
    busyMs: w.busy_ms,
  };
  if (w.gpu !== null) a.gpu = w.gpu;
  if (w.price_per_hour !== null) a.pricePerHour = w.price_per_hour;
  return a;
}
