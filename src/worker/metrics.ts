/**
 * Prometheus metrics of one worker process (prom-client), served by {@link serveMetrics} on
 * `qtune worker --metrics-port`. Names and labels are listed in docs/metrics.md; labels stay
 * low-cardinality (queue, outcome, endpoint, GPU), never a task id or key.
 */

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { InputError } from '../protocol/errors.js';
import { redact } from '../protocol/redact.js';
import type { TaskGpu, WorkerInfo } from '../protocol/result.js';
import { BreakerState } from './handlers/circuit-breaker.js';
import type { EndpointState } from './handlers/http-pool.js';
import type { Worker } from './runtime.js';

/** How a task's attempt ended, as the `outcome` label of `qtune_worker_tasks_total`. */
export const TaskOutcome = {
  /** Result published and task acked. */
  Completed: 'completed',
  /** Failed and handed back for a later attempt. */
  Retried: 'retried',
  /** Dead-lettered: failed for good, or a message that could not be decoded. */
  DeadLettered: 'dead_lettered',
} as const;
export type TaskOutcome = (typeof TaskOutcome)[keyof typeof TaskOutcome];

/** Handler duration buckets, in seconds: from a no-op task to a long training run. */
const DURATION_BUCKETS = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
];
/** Publish→start buckets, in seconds: from a hot queue to a backlog of hours. */
const WAIT_BUCKETS = [
  0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14_400, 86_400,
];

/** A registry of its own, for one process's metrics. */
export function newRegistry(): Registry {
  return new Registry();
}

export interface WorkerMetricsOptions {
  /** Where the metrics are registered (default: a new registry). */
  registry?: Registry;
  /** Host and worker id, as labels of `qtune_worker_info`; its GPUs when `gpus` is not given. */
  host: WorkerInfo;
  /** The worker's GPU slots (`--gpus`), as `qtune_worker_gpu_info`. */
  gpus?: readonly TaskGpu[];
  /** The HTTP endpoints' state, read on each scrape (workers with `--http`). */
  endpoints?: () => readonly EndpointState[];
  /** Also register prom-client's process and Node.js metrics (`process_*`, `nodejs_*`; default: true). */
  processMetrics?: boolean;
  /** qtune's version, as a label of `qtune_worker_info`. */
  version?: string;
}

/**
 * Registers the worker's metrics and keeps them from its events: tasks by outcome, handler
 * duration and publish→start latency histograms; in flight, the HTTP endpoints' state and the
 * GPUs are read on scrape. Returns the registry.
 */
export function instrumentWorker(worker: Worker, options: WorkerMetricsOptions): Registry {
  const registry = options.registry ?? new Registry();
  const queue = worker.queue;
  const registers = [registry];

  new Gauge({
    name: 'qtune_worker_info',
    help: 'Always 1; the labels say which worker this is',
    labelNames: ['queue', 'host', 'worker_id', 'version'],
    registers,
  }).set(
    {
      queue,
      host: options.host.host,
      worker_id: options.host.id,
      version: options.version ?? '',
    },
    1,
  );
  const gpuInfo = new Gauge({
    name: 'qtune_worker_gpu_info',
    help: "Always 1 per GPU slot of the worker (--gpus), or per GPU of the worker's machine",
    labelNames: ['index', 'name', 'uuid'],
    registers,
  });
  const gpus: TaskGpu[] =
    options.gpus !== undefined
      ? [...options.gpus]
      : (options.host.gpus ?? []).map((g, index) => ({ index, name: g.name }));
  for (const gpu of gpus) {
    gpuInfo.set({ index: String(gpu.index), name: gpu.name ?? '', uuid: gpu.uuid ?? '' }, 1);
  }

  const tasks = new Counter({
    name: 'qtune_worker_tasks_total',
    help: 'Task attempts finished by this worker, by outcome (completed, retried, dead_lettered)',
    labelNames: ['queue', 'outcome'],
    registers,
  });
  const completed = tasks.labels(queue, TaskOutcome.Completed);
  const retried = tasks.labels(queue, TaskOutcome.Retried);
  const dead = tasks.labels(queue, TaskOutcome.DeadLettered);
  // Each outcome is exported from the start (a rate() then sees its first increase), counting
  // what the worker did before it was instrumented.
  const before = worker.stats();
  completed.inc(before.done);
  retried.inc(before.retried);
  dead.inc(before.deadLettered);

  const duration = new Histogram({
    name: 'qtune_worker_task_duration_seconds',
    help: 'Time the handler ran for one task attempt, whatever its outcome',
    labelNames: ['queue'],
    buckets: DURATION_BUCKETS,
    registers,
  }).labels(queue);
  const wait = new Histogram({
    name: 'qtune_worker_task_wait_seconds',
    help: 'Time from publishing a task to a handler starting it (publish→start latency)',
    labelNames: ['queue'],
    buckets: WAIT_BUCKETS,
    registers,
  }).labels(queue);

  new Gauge({
    name: 'qtune_worker_tasks_in_flight',
    help: 'Tasks this worker holds: running, or waiting for a slot',
    labelNames: ['queue'],
    registers,
    collect() {
      this.set({ queue }, worker.stats().inFlight);
    },
  });

  const endpoints = options.endpoints;
  if (endpoints !== undefined) {
    const states = Object.values(BreakerState);
    new Gauge({
      name: 'qtune_worker_endpoint_state',
      help: 'An HTTP endpoint\'s circuit-breaker state: 1 for its current state ("up", "open" while cooling down, "half-open" while probed), 0 for the others',
      labelNames: ['endpoint', 'state'],
      registers,
      collect() {
        for (const e of endpoints()) {
          const endpoint = redact(e.url);
          for (const state of states) this.set({ endpoint, state }, e.state === state ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'qtune_worker_endpoint_outstanding',
      help: 'Requests sent to an HTTP endpoint and not yet answered',
      labelNames: ['endpoint'],
      registers,
      collect() {
        for (const e of endpoints()) this.set({ endpoint: redact(e.url) }, e.outstanding);
      },
    });
  }

  worker.on('task:started', (e) => {
    if (e.createdAt !== undefined) wait.observe(Math.max(0, Date.now() - e.createdAt) / 1000);
  });
  worker.on('task:completed', (e) => {
    duration.observe(e.result.durationMs / 1000);
    completed.inc();
  });
  worker.on('task:failed', (e) => {
    if (e.durationMs !== undefined) duration.observe(e.durationMs / 1000);
    if (e.willRetry) retried.inc();
  });
  worker.on('task:dead', () => dead.inc());

  if (options.processMetrics !== false) collectDefaultMetrics({ register: registry });
  return registry;
}

export interface MetricsServerOptions {
  /** TCP port; 0 picks a free one (see the returned address). */
  port: number;
  /** Interface to bind (default: 127.0.0.1, this machine only). */
  host?: string;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** `http://HOST:PORT/metrics`. */
  readonly url: string;
  close(): Promise<void>;
}

/**
 * Serves `registry` at `GET /metrics` (Prometheus text format) over plain HTTP; every other
 * path answers 404. Rejects with an InputError naming the address when it cannot listen.
 */
export async function serveMetrics(
  registry: Registry,
  options: MetricsServerOptions,
): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('only GET /metrics is served here\n');
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`metrics could not be collected: ${String(err)}\n`);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        new InputError(
          `metrics endpoint: cannot listen on ${host}:${options.port}: ${err.code ?? err.message}`,
          { cause: err },
        ),
      ),
    );
    server.listen(options.port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shown}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
