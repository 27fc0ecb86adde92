import type { Broker } from '../broker/contract.js';
import { resultQueueOf } from '../patterns/work-queue.js';
import { closestName } from '../protocol/closest-name.js';
import { NotFoundError } from '../protocol/errors.js';
import type { Store } from '../store/contract.js';
import type { JobRecord } from '../store/jobs.js';
import type { WorkerAggregate } from '../store/results.js';

/** Window over which the current throughput is measured (ms). */
export const RATE_WINDOW_MS = 60_000;

/** One worker process's share of a job. */
export interface JobWorkerStatus {
  workerId: string;
  host: string;
  pid: number;
  gpu?: string;
  done: number;
  failed: number;
  /** Items per second from its first start to its last finish. */
  rate: number;
  pricePerHour?: number;
}

export interface JobStatus {
  name: string;
  queue: string;
  table: string;
  createdAt: number;
  /** Items submitted. */
  items: number;
  /** Items whose result row is successful. */
  done: number;
  /** Items whose result row is a failure (after their retries). */
  failed: number;
  /** Items without a result row yet. */
  remaining: number;
  /** Items stored but not yet published (a submit still running, or one that crashed). */
  unpublished: number;
  /** Tasks waiting in the queue (ready or delayed). */
  queued: number;
  /** Tasks leased to workers now. */
  inFlight: number;
  /** Tasks in the queue's dead-letter queue. */
  deadLettered: number;
  /** Results published by workers that the sink has not stored yet. */
  resultsWaiting: number;
  /** Items finished per second over the last minute. */
  rate: number;
  /** Seconds until every item has a row at the current rate; null when nothing moves. */
  etaSeconds: number | null;
  workers: JobWorkerStatus[];
  /**
   * When workers declared a price per hour: what their time on this job cost (each priced
   * worker from its first start to its last finish) and that per 1,000 items they finished,
   * in the unit of the declared prices.
   */
  cost?: { total: number; perThousand: number | null };
}

function workerStatus(w: WorkerAggregate): JobWorkerStatus {
  const spanS = Math.max(0.001, (w.lastFinishedAt - w.firstStartedAt) / 1000);
  const s: JobWorkerStatus = {
    workerId: w.workerId,
    host: w.host,
    pid: w.pid,
    done: w.ok,
    failed: w.failed,
    rate: (w.ok + w.failed) / spanS,
  };
  if (w.gpu !== undefined) s.gpu = w.gpu;
  if (w.pricePerHour !== undefined) s.pricePerHour = w.pricePerHour;
  return s;
}

/** The cost of the priced workers' time, total and per 1,000 items they finished. */
export function costOf(workers: readonly WorkerAggregate[]): JobStatus['cost'] | undefined {
  const priced = workers.filter((w) => w.pricePerHour !== undefined);
  if (priced.length === 0) return undefined;
  let total = 0;
  let items = 0;
  for (const w of priced) {
    total += (w.pricePerHour! * Math.max(0, w.lastFinishedAt - w.firstStartedAt)) / 3_600_000;
    items += w.ok + w.failed;
  }
  return { total, perThousand: items > 0 ? (total / items) * 1000 : null };
}

/** Looks a job up, or throws NotFoundError naming it with the closest existing job's name. */
export async function getJobOrThrow(store: Store, name: string): Promise<JobRecord> {
  const job = await store.jobs.getJob(name);
  if (!job) {
    const names = (await store.jobs.listJobs()).map((j) => j.name);
    throw new NotFoundError('job', name, closestName(name, names));
  }
  return job;
}

/**
 * Progress of a job from the store (items, result rows) and the broker (queue statistics).
 * `options.workers: false` leaves out the per-worker aggregates (`workers` empty, no `cost`),
 * which read every result row (default: true).
 */
export async function jobStatus(
  broker: Broker,
  store: Store,
  name: string,
  now = Date.now(),
  options: { workers?: boolean } = {},
): Promise<JobStatus> {
  const job = await getJobOrThrow(store, name);
  const [items, counts, recent, workers, queue, results] = await Promise.all([
    store.jobs.jobItemCounts(name),
    store.results.resultCounts(job.table),
    store.results.countFinishedSince(job.table, now - RATE_WINDOW_MS),
    options.workers === false ? [] : store.results.workerStats(job.table),
    broker.stats(job.queue),
    broker.stats(resultQueueOf(job.queue)),
  ]);
  const windowS = Math.max(1, Math.min(RATE_WINDOW_MS, now - job.createdAt) / 1000);
  const rate = recent / windowS;
  const remaining = Math.max(0, items.total - counts.total);
  const status: JobStatus = {
    name: job.name,
    queue: job.queue,
    table: job.table,
    createdAt: job.createdAt,
    items: items.total,
    done: counts.ok,
    failed: counts.failed,
    remaining,
    unpublished: items.new,
    queued: queue.ready + queue.delayed,
    inFlight: queue.inFlight,
    deadLettered: queue.deadLettered,
    resultsWaiting: results.ready + results.inFlight,
    rate,
    etaSeconds: remaining === 0 ? 0 : rate > 0 ? remaining / rate : null,
    workers: workers.map(workerStatus),
  };
  const cost = costOf(workers);
  if (cost) status.cost = cost;
  return status;
}
