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
import type { TaskObserver, TaskOutcome, Worker } from './runtime.js';

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
  /** The worker's queue, the `queue` label. */
  queue: string;
  /** Host and worker id, as labels of `qtune_worker_info`; its GPUs when `gpus` is not given. */
  host: WorkerInfo;
  /** The worker's GPU slots (`--gpus`), as `qtune_worker_gpu_info`. */
  gpus?: readonly TaskGpu[];
  /** The HTTP endpoints' state, read on each scrape (workers with `--http`). */
  endpoints?: () => readonly EndpointState[];
  /**
   * Also register prom-client's process and Node.js metrics (`process_*`, `nodejs_*`; default:
   * false). They watch every garbage collection, which costs a worker of no-op tasks a few
   * percent of its throughput (bench/metrics-overhead.mjs); tasks that run for seconds do not
   * notice.
   */
  processMetrics?: boolean;
  /** qtune's version, as a label of `qtune_worker_info`. */
  version?: string;
}

/**
 * The worker's metrics: give it to {@link startWorker} as `observer` (it counts each attempt as
 * it starts and ends, with no event object on the hot path), then {@link attach} the started
 * worker for what is read on scrape (tasks in flight). Tasks by outcome, handler duration and
 * publish→start latency histograms, the HTTP endpoints' state, the GPU slots.
 */
export class WorkerMetrics implements TaskObserver {
  readonly registry: Registry;
  readonly #completed: { inc(n?: number): void };
  readonly #retried: { inc(n?: number): void };
  readonly #dead: { inc(n?: number): void };
  readonly #duration: { observe(v: number): void };
  readonly #wait: { observe(v: number): void };
  #inFlight: () => number = () => 0;

  constructor(options: WorkerMetricsOptions) {
    const registry = (this.registry = options.registry ?? new Registry());
    const queue = options.queue;
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
    this.#completed = tasks.labels(queue, 'completed');
    this.#retried = tasks.labels(queue, 'retried');
    this.#dead = tasks.labels(queue, 'dead_lettered');
    // Each outcome is exported from the start, at 0, so a rate() sees its first increase.
    for (const child of [this.#completed, this.#retried, this.#dead]) child.inc(0);

    this.#duration = new Histogram({
      name: 'qtune_worker_task_duration_seconds',
      help: 'Time the handler ran for one task attempt (ms resolution), completed or failed',
      labelNames: ['queue'],
      buckets: DURATION_BUCKETS,
      registers,
    }).labels(queue);
    this.#wait = new Histogram({
      name: 'qtune_worker_task_wait_seconds',
      help: 'Time from publishing a task to a handler starting it (publish→start latency)',
      labelNames: ['queue'],
      buckets: WAIT_BUCKETS,
      registers,
    }).labels(queue);

    const inFlight = () => this.#inFlight();
    new Gauge({
      name: 'qtune_worker_tasks_in_flight',
      help: 'Tasks this worker holds: running, or waiting for a slot',
      labelNames: ['queue'],
      registers,
      collect() {
        this.set({ queue }, inFlight());
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
    if (options.processMetrics === true) collectDefaultMetrics({ register: registry });
  }

  /** Reads tasks in flight from `worker` on each scrape. */
  attach(worker: Worker): void {
    this.#inFlight = () => worker.stats().inFlight;
  }

  taskStarted(createdAt: number | undefined): void {
    if (createdAt !== undefined) this.#wait.observe(Math.max(0, Date.now() - createdAt) / 1000);
  }

  taskFinished(outcome: TaskOutcome, durationMs: number | undefined): void {
    if (durationMs !== undefined) this.#duration.observe(durationMs / 1000);
    if (outcome === 'completed') this.#completed.inc();
    else if (outcome === 'retried') this.#retried.inc();
    else this.#dead.inc();
  }
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
