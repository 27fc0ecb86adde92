/**
 * Prometheus metrics of the gateway (prom-client), served at `GET /metrics` by
 * routes/metrics.ts: requests by route and status with their latency, ingest payloads by
 * outcome, auth failures, refusals (rate limit, backpressure, broker away), leases held; and,
 * read on each scrape, the broker's queues and the store's jobs and experiments. Names and
 * labels are listed in docs/metrics.md; no label carries a task id, a token or a URL path
 * with its parameters filled in.
 */

import type { FastifyInstance, FastifyRequest } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Broker, QueueStats } from '../broker/contract.js';
import { GatewayErrorCode, HttpError } from './errors.js';
import type { PullHub } from './pull.js';

/** One job's items, for `qtune_job_items`. */
export interface JobGauge {
  job: string;
  done: number;
  failed: number;
  /** Items without a stored result yet. */
  pending: number;
}

/** One experiment's trials, for `qtune_experiment_trials` and `qtune_experiment_best_value`. */
export interface ExperimentGauge {
  experiment: string;
  /** Trials by state (pending, running, complete, pruned, failed). */
  trials: Record<string, number>;
  /** The best objective value so far, when a trial has completed. */
  best?: number;
}

/** What the gateway reads from the store on each scrape (`qtune serve` gives it). */
export interface MetricsSources {
  jobs?(): Promise<JobGauge[]>;
  experiments?(): Promise<ExperimentGauge[]>;
}

/** Why a request was refused, as the `reason` label of `qtune_gateway_refusals_total`. */
const REFUSALS: Partial<Record<string, string>> = {
  [GatewayErrorCode.RateLimited]: 'rate_limited',
  [GatewayErrorCode.Overloaded]: 'backpressure',
  [GatewayErrorCode.BrokerUnavailable]: 'broker_unavailable',
};
const AUTH_FAILURES: Partial<Record<string, string>> = {
  [GatewayErrorCode.Unauthorized]: 'unauthenticated',
  [GatewayErrorCode.Forbidden]: 'forbidden',
};

/** Latency buckets, in seconds: from a status read to a long poll. */
const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
];

/** Queues read in parallel per scrape. */
const STATS_IN_PARALLEL = 32;

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'route' | 'method' | 'status'>;
  readonly #latency: Histogram<'route' | 'method'>;
  readonly #payloads: Counter<'outcome'>;
  readonly #authFailures: Counter<'reason'>;
  readonly #refusals: Counter<'reason'>;
  readonly #scrape = new ScrapeCache();

  constructor(options: { broker: Broker; hub: PullHub; sources?: MetricsSources }) {
    const registers = [this.registry];
    this.#requests = new Counter({
      name: 'qtune_gateway_requests_total',
      help: 'HTTP requests answered, by route template, method and status code',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'qtune_gateway_request_duration_seconds',
      help: 'Time from a request arriving to its answer being sent, by route template and method',
      labelNames: ['route', 'method'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#payloads = new Counter({
      name: 'qtune_gateway_ingest_payloads_total',
      help: 'Payloads POSTed to /v1/queues/:queue/tasks, by outcome: accepted (stored), refused (not stored), replayed (an Idempotency-Key answered from before)',
      labelNames: ['outcome'],
      registers,
    });
    this.#authFailures = new Counter({
      name: 'qtune_gateway_auth_failures_total',
      help: 'Requests refused by auth: unauthenticated (401: no or bad token) or forbidden (403: role or owner)',
      labelNames: ['reason'],
      registers,
    });
    this.#refusals = new Counter({
      name: 'qtune_gateway_refusals_total',
      help: 'Requests refused to protect the service: rate_limited (429), backpressure (503: too many publishes waiting for the broker), broker_unavailable (503)',
      labelNames: ['reason'],
      registers,
    });
    for (const outcome of ['accepted', 'refused', 'replayed'])
      this.#payloads.labels(outcome).inc(0);
    for (const reason of Object.values(AUTH_FAILURES)) this.#authFailures.labels(reason!).inc(0);
    for (const reason of Object.values(REFUSALS)) this.#refusals.labels(reason!).inc(0);

    const hub = options.hub;
    new Gauge({
      name: 'qtune_gateway_leases_held',
      help: 'Deliveries leased to gateway workers and not yet settled',
      registers,
      collect() {
        this.set(hub.leaseCount);
      },
    });
    registerBrokerGauges(this.registry, options.broker, hub, this.#scrape);
    registerStoreGauges(this.registry, options.sources ?? {}, this.#scrape);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Counts answers and refusals of every route of `app` (call before registering routes). */
  observe(app: FastifyInstance): void {
    const refused = new WeakMap<FastifyRequest, string>();
    app.addHook('onError', async (req, _reply, error) => {
      if (error instanceof HttpError) refused.set(req, error.code);
    });
    app.addHook('onResponse', async (req, reply) => {
      // The route's template (`/v1/queues/:queue/tasks`), never the filled-in path.
      const route = req.routeOptions.url ?? 'unmatched';
      this.#requests.labels(route, req.method, String(reply.statusCode)).inc();
      this.#latency.labels(route, req.method).observe(reply.elapsedTime / 1000);
      const code = refused.get(req);
      if (code === undefined) return;
      const auth = AUTH_FAILURES[code];
      if (auth !== undefined) this.#authFailures.labels(auth).inc();
      const refusal = REFUSALS[code];
      if (refusal !== undefined) this.#refusals.labels(refusal).inc();
    });
  }

  /**
   * The metrics in Prometheus' text format: the broker and the store are read once per call,
   * however many gauges show what they answered.
   */
  async scrape(): Promise<string> {
    try {
      return await this.registry.metrics();
    } finally {
      this.#scrape.clear();
    }
  }

  /** Counts ingested payloads by outcome. */
  payloads(outcome: 'accepted' | 'refused' | 'replayed', n: number): void {
    if (n > 0) this.#payloads.labels(outcome).inc(n);
  }
}

/** What one scrape read, shared by the gauges that show it. */
class ScrapeCache {
  readonly #reads = new Map<string, Promise<unknown>>();

  once<T>(what: string, read: () => Promise<T>): Promise<T> {
    let p = this.#reads.get(what) as Promise<T> | undefined;
    if (!p) {
      p = read();
      this.#reads.set(what, p);
    }
    return p;
  }

  clear(): void {
    this.#reads.clear();
  }
}

/** Gauges of every queue the broker lists, read on scrape. */
function registerBrokerGauges(
  registry: Registry,
  broker: Broker,
  hub: PullHub,
  scrape: ScrapeCache,
): void {
  const registers = [registry];
  /** One read of every queue per scrape, shared by the gauges below. */
  const read = (): Promise<QueueStats[]> => scrape.once('queues', () => allQueueStats(broker, hub));
  new Gauge({
    name: 'qtune_queue_messages',
    help: 'Messages of a queue by state: ready, in_flight (leased), delayed (waiting for a retry or a delayed publish), dead_lettered',
    labelNames: ['queue', 'state'],
    registers,
    async collect() {
      this.reset();
      for (const s of await read()) {
        this.set({ queue: s.queue, state: 'ready' }, s.ready);
        this.set({ queue: s.queue, state: 'in_flight' }, s.inFlight);
        this.set({ queue: s.queue, state: 'delayed' }, s.delayed);
        this.set({ queue: s.queue, state: 'dead_lettered' }, s.deadLettered);
      }
    },
  });
  new Gauge({
    name: 'qtune_queue_consumers',
    help: 'Live consumers of a queue, across processes (gateway workers count through the gateway)',
    labelNames: ['queue'],
    registers,
    async collect() {
      this.reset();
      for (const s of await read()) this.set({ queue: s.queue }, s.consumers);
    },
  });
  new Gauge({
    name: 'qtune_queue_paused',
    help: '1 while a queue is paused (qtune queue pause), else 0',
    labelNames: ['queue'],
    registers,
    async collect() {
      this.reset();
      for (const s of await read()) this.set({ queue: s.queue }, s.paused ? 1 : 0);
    },
  });
}

/** Statistics of every queue the broker lists (none where it cannot list them). */
async function allQueueStats(broker: Broker, hub: PullHub): Promise<QueueStats[]> {
  if (!broker.capabilities.listQueues) return [];
  const names = await broker.listQueues();
  const stats: QueueStats[] = [];
  for (let i = 0; i < names.length; i += STATS_IN_PARALLEL) {
    const batch = await Promise.all(
      names.slice(i, i + STATS_IN_PARALLEL).map((q) =>
        broker.stats(q).then(
          (s) => hub.adjustStats(s),
          () => undefined, // deleted since it was listed
        ),
      ),
    );
    for (const s of batch) if (s) stats.push(s);
  }
  return stats;
}

/** Gauges of the store's jobs and experiments, read on scrape. */
function registerStoreGauges(
  registry: Registry,
  sources: MetricsSources,
  scrape: ScrapeCache,
): void {
  const registers = [registry];
  const jobs = sources.jobs?.bind(sources);
  if (jobs) {
    new Gauge({
      name: 'qtune_job_items',
      help: "A job's items by state: done (result ok), failed (result failed), pending (no result yet)",
      labelNames: ['job', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const j of await jobs()) {
          this.set({ job: j.job, state: 'done' }, j.done);
          this.set({ job: j.job, state: 'failed' }, j.failed);
          this.set({ job: j.job, state: 'pending' }, j.pending);
        }
      },
    });
  }
  const experiments = sources.experiments?.bind(sources);
  if (experiments) {
    const read = (): Promise<ExperimentGauge[]> => scrape.once('experiments', experiments);
    new Gauge({
      name: 'qtune_experiment_trials',
      help: "An experiment's trials by state: pending, running, complete, pruned, failed",
      labelNames: ['experiment', 'state'],
      registers,
      async collect() {
        this.reset();
        for (const e of await read()) {
          for (const [state, n] of Object.entries(e.trials)) {
            this.set({ experiment: e.experiment, state }, n);
          }
        }
      },
    });
    new Gauge({
      name: 'qtune_experiment_best_value',
      help: "The best objective value of an experiment's completed trials (absent before the first)",
      labelNames: ['experiment'],
      registers,
      async collect() {
        this.reset();
        for (const e of await read()) {
          if (e.best !== undefined) this.set({ experiment: e.experiment }, e.best);
        }
      },
    });
  }
}
