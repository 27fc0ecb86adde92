/**
 * The web dashboard: its static page (`/`, `/dashboard/*`, public: the page holds no data and
 * no token) and the JSON endpoints it reads (`/v1/dashboard/*`, any role, `viewer` included),
 * plus its two actions (retry a job's failed items: producer; stop an experiment: admin).
 *
 * Queue rates come from a sampler that, from the first dashboard request on, reads every
 * queue's statistics every `sampleMs` into a bounded ring buffer (one hour at the default
 * period). The Broker contract has no publish or ack counters, so what it gives is the net
 * change per second of ready + delayed + in flight, and of dead letters, between samples. Big
 * data stays on the server: plots get at most {@link MAX_POINTS} points, tables a page at a time.
 */

import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { Broker, QueueStats } from '../../broker/contract.js';
import { paramImportance } from '../../automl/importance.js';
import { retryFailed } from '../../job/retry.js';
import { jobStatus, type JobStatus } from '../../job/status.js';
import { NotFoundError } from '../../protocol/errors.js';
import type { Store } from '../../store/contract.js';
import type { TrialRecord } from '../../store/experiments.js';
import { gatherWorkerReports } from '../../worker/control.js';
import { Role } from '../auth.js';
import { GatewayErrorCode, HttpError } from '../errors.js';

export interface DashboardOptions {
  broker: Broker;
  /** Opens the store (undefined when there is none yet): jobs and experiments. Default: none. */
  store?: () => Promise<Store | undefined>;
  /** Period of the queue-statistics sampler in ms (default: 2000). */
  sampleMs?: number;
  /** Samples kept per queue (default: 1800, one hour at 2 s). */
  samples?: number;
}

/** Most points a plot series gets; longer series are downsampled on the server. */
export const MAX_POINTS = 500;
/** Most rows a table page holds. */
const MAX_PAGE = 200;
/** Learning curves sent for an experiment: the best trials' and the latest trials'. */
const CURVES = 20;
/** Names of the temporary reply queues of `gatherWorkerReports`. */
const STATUS_REPLY_PREFIX = 'qtune.status.';
/** Buckets of a job's rate-over-time series. */
const RATE_BUCKETS = 30;
/** How long the overview waits for worker status replies (ms). */
const WORKERS_WAIT_MS = 300;

const READ = { config: { roles: [Role.Viewer, Role.Producer, Role.Worker] } } as const;
const ASSETS = fileURLToPath(new URL('../../dashboard/', import.meta.url));
const UPLOT = join(createRequire(import.meta.url).resolve('uplot'), '..');
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

interface Sample {
  at: number;
  /** ready + delayed + in flight. */
  open: number;
  deadLettered: number;
}

/** Per-queue ring buffers of statistics samples. */
class QueueSampler {
  readonly #series = new Map<string, Sample[]>();
  readonly #last = new Map<string, QueueStats>();
  /** Sums over every queue, one per sample. */
  readonly #totals: Sample[] = [];
  readonly #max: number;
  constructor(max: number) {
    this.#max = max;
  }

  /** Keeps `stats` as the latest; `record` also appends them to the ring buffers. */
  add(stats: readonly QueueStats[], at: number, record: boolean): void {
    const seen = new Set<string>();
    for (const s of stats) {
      seen.add(s.queue);
      this.#last.set(s.queue, s);
      if (!record) continue;
      let ring = this.#series.get(s.queue);
      if (!ring) this.#series.set(s.queue, (ring = []));
      ring.push({ at, open: s.ready + s.delayed + s.inFlight, deadLettered: s.deadLettered });
      if (ring.length > this.#max) ring.splice(0, ring.length - this.#max);
    }
    for (const q of [...this.#last.keys()]) if (!seen.has(q)) this.#last.delete(q);
    if (!record) return;
    this.#totals.push({
      at,
      open: stats.reduce((n, q) => n + q.ready + q.delayed + q.inFlight, 0),
      deadLettered: stats.reduce((n, q) => n + q.deadLettered, 0),
    });
    if (this.#totals.length > this.#max) this.#totals.splice(0, this.#totals.length - this.#max);
    for (const q of [...this.#series.keys()]) if (!seen.has(q)) this.#series.delete(q);
  }

  latest(): QueueStats[] {
    return [...this.#last.values()];
  }

  /** Net change per second of open and dead-lettered messages over the last two samples. */
  rates(queue: string): { growth: number; deadPerS: number } {
    const ring = this.#series.get(queue) ?? [];
    const a = ring.at(-2);
    const b = ring.at(-1);
    if (!a || !b || b.at <= a.at) return { growth: 0, deadPerS: 0 };
    const dt = (b.at - a.at) / 1000;
    return { growth: (b.open - a.open) / dt, deadPerS: (b.deadLettered - a.deadLettered) / dt };
  }

  totals(): Sample[] {
    return this.#totals;
  }

  series(queue: string): Sample[] {
    return this.#series.get(queue) ?? [];
  }
}

/** Every `step`-th element (and the last), so that at most `max` remain. */
export function downsample<T>(rows: readonly T[], max = MAX_POINTS): T[] {
  if (rows.length <= max) return [...rows];
  const step = rows.length / max;
  const out: T[] = [];
  for (let i = 0; i < max - 1; i++) out.push(rows[Math.floor(i * step)]!);
  out.push(rows.at(-1)!);
  return out;
}

export function intQuery(
  raw: unknown,
  name: string,
  dflt: number,
  min: number,
  max: number,
): number {
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new HttpError(
      400,
      GatewayErrorCode.BadInput,
      `query "${name}" must be an integer ${min}..${max}, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

export function notFound(what: string, name: string): HttpError {
  return new HttpError(404, GatewayErrorCode.NotFound, `no ${what} named "${name}"`);
}

/** The objective's direction of an experiment spec (default: minimize). */
export function direction(spec: unknown): 'minimize' | 'maximize' {
  const d = (spec as { objective?: { direction?: unknown } } | null)?.objective?.direction;
  return d === 'maximize' ? 'maximize' : 'minimize';
}

/** Finished trials with a value in number order, with the best value so far after each. */
export function history(
  trials: readonly TrialRecord[],
  dir: 'minimize' | 'maximize',
): { number: number; value: number; best: number; status: string }[] {
  const out: { number: number; value: number; best: number; status: string }[] = [];
  let best: number | undefined;
  for (const t of trials) {
    if (t.value === undefined || t.status !== 'complete') continue;
    if (best === undefined || (dir === 'minimize' ? t.value < best : t.value > best))
      best = t.value;
    out.push({ number: t.number, value: t.value, best, status: t.status });
  }
  return out;
}

/** The fastify plugin; register it on the gateway app after its auth hooks. */
export const dashboardRoutes: FastifyPluginAsync<DashboardOptions> = async (api, options) => {
  const { broker } = options;
  const sampleMs = options.sampleMs ?? 2_000;
  const sampler = new QueueSampler(options.samples ?? 1_800);

  /** Reads every queue's statistics; `record`: into the ring buffers too (the timer's samples). */
  const sample = async (record: boolean): Promise<void> => {
    if (!broker.capabilities.listQueues) return;
    const names = await broker.listQueues();
    const stats = await Promise.all(names.map((n) => broker.stats(n).catch(() => undefined)));
    sampler.add(
      stats.filter((s): s is QueueStats => s !== undefined),
      Date.now(),
      record,
    );
  };
  // The sampler starts with the first dashboard request: a gateway nobody watches reads nothing.
  let sampling: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;
  const startSampling = (): void => {
    if (sampling || closed) return;
    sampling = sample(true).catch(() => undefined);
    timer = setInterval(() => {
      sampling = sampling!.then(() => sample(true)).catch(() => undefined);
    }, sampleMs);
    timer.unref();
  };
  api.addHook('onClose', async () => {
    closed = true;
    clearInterval(timer);
    await sampling;
  });

  const store = async (): Promise<Store | undefined> => options.store?.();

  /**
   * Job statuses without per-worker aggregates, kept for at least a second and for three times
   * as long as they took to compute, so that polling pages do not read a big job's rows
   * back to back.
   */
  const statuses = new Map<string, { at: number; ttl: number; value: Promise<JobStatus> }>();
  const cachedStatus = (s: Store, name: string): Promise<JobStatus> => {
    const now = Date.now();
    const hit = statuses.get(name);
    if (hit && now - hit.at < hit.ttl) return hit.value;
    const value = jobStatus(broker, s, name, now, { workers: false });
    const entry = { at: now, ttl: 1_000, value };
    statuses.set(name, entry);
    value.then(
      () => (entry.ttl = Math.max(1_000, 3 * (Date.now() - now))),
      () => statuses.delete(name),
    );
    return value;
  };
  const needStore = async (what: string, name: string): Promise<Store> => {
    const s = await store();
    if (!s) throw notFound(what, name);
    return s;
  };
  const job = async (name: string) => {
    const s = await needStore('job', name);
    const j = await s.jobs.getJob(name);
    if (!j) throw notFound('job', name);
    return { s, j };
  };
  const experiment = async (name: string) => {
    const s = await needStore('experiment', name);
    const e = await s.experiments.getExperiment(name);
    if (!e) throw notFound('experiment', name);
    return { s, e };
  };

  // --- static page ---------------------------------------------------------------------------

  const sendFile = async (reply: FastifyReply, dir: string, file: string): Promise<unknown> => {
    const path = normalize(join(dir, file));
    if (!path.startsWith(dir)) throw new HttpError(404, GatewayErrorCode.NotFound, 'no such file');
    let body: Buffer;
    try {
      body = await readFile(path);
    } catch {
      throw new HttpError(404, GatewayErrorCode.NotFound, `no dashboard file "${file}"`);
    }
    return reply
      .type(TYPES[extname(path)] ?? 'application/octet-stream')
      .header('cache-control', 'no-cache')
      .send(body);
  };
  const PUBLIC = { config: { public: true, rateLimit: false } } as const;
  api.get('/', PUBLIC, async (_req, reply) => sendFile(reply, ASSETS, 'index.html'));
  api.get('/dashboard/uplot/:file', PUBLIC, async (req, reply) => {
    const file = (req.params as { file: string }).file;
    if (file !== 'uPlot.esm.js' && file !== 'uPlot.min.css') {
      throw new HttpError(404, GatewayErrorCode.NotFound, `no dashboard file "${file}"`);
    }
    return sendFile(reply, UPLOT, file);
  });
  api.get('/dashboard/:file', PUBLIC, async (req, reply) =>
    sendFile(reply, ASSETS, (req.params as { file: string }).file),
  );

  // --- overview ------------------------------------------------------------------------------

  api.get('/v1/dashboard/overview', READ, async () => {
    startSampling();
    // Fresh statistics at each poll, so an event shows within one poll.
    await sample(false).catch(() => undefined);
    // Reply queues of status requests (this page's own among them) live for half a second.
    const queues = sampler
      .latest()
      .filter((q) => !q.queue.startsWith(STATUS_REPLY_PREFIX))
      .map((q) => ({ ...q, ...sampler.rates(q.queue) }));
    queues.sort((a, b) => (a.queue < b.queue ? -1 : a.queue > b.queue ? 1 : 0));
    const workers = await gatherWorkerReports(broker, WORKERS_WAIT_MS).catch(() => []);
    const s = await store();
    const jobs = s
      ? await Promise.all(
          (await s.jobs.listJobs()).map((j) => cachedStatus(s, j.name).catch(() => undefined)),
        )
      : [];
    const experiments = s
      ? await Promise.all(
          (await s.experiments.listExperiments()).map(async (e) => {
            const counts = await s.experiments.counts(e.name);
            const dir = direction(e.spec);
            const best = (await s.experiments.listTrials(e.name, ['complete'])).reduce<
              number | undefined
            >(
              (b, t) =>
                t.value === undefined
                  ? b
                  : b === undefined || (dir === 'minimize' ? t.value < b : t.value > b)
                    ? t.value
                    : b,
              undefined,
            );
            return {
              name: e.name,
              status: e.status,
              direction: dir,
              counts,
              best: best ?? null,
              updatedAt: e.updatedAt,
            };
          }),
        )
      : [];
    return {
      at: Date.now(),
      sampleMs,
      totals: downsample(sampler.totals()),
      queues,
      workers,
      jobs: jobs.filter((j) => j !== undefined),
      experiments,
    };
  });

  api.get<{ Params: { queue: string } }>(
    '/v1/dashboard/queues/:queue/series',
    READ,
    async (req) => {
      startSampling();
      const rows = downsample(sampler.series(req.params.queue));
      return { queue: req.params.queue, sampleMs, points: rows };
    },
  );

  // --- jobs ----------------------------------------------------------------------------------

  api.get<{ Params: { name: string } }>('/v1/dashboard/jobs/:name', READ, async (req) => {
    const { s, j } = await job(req.params.name);
    const status = await cachedStatus(s, j.name);
    // Finished items per second over the job's life (RATE_BUCKETS buckets, from the store's
    // index on finish time).
    const now = Date.now();
    const buckets = RATE_BUCKETS;
    const width = Math.max(1_000, Math.ceil((now - j.createdAt) / buckets / 1000) * 1000);
    const start = now - width * buckets;
    const bounds = Array.from({ length: buckets + 1 }, (_, i) => start + i * width);
    const since = await Promise.all(bounds.map((t) => s.results.countFinishedSince(j.table, t)));
    const rate = bounds.slice(1).map((t, i) => ({
      at: t,
      perS: (since[i]! - since[i + 1]!) / (width / 1000),
    }));
    const firstNonZero = rate.findIndex((r) => r.perS > 0);
    return {
      ...status,
      rateSeries: firstNonZero < 0 ? [] : rate.slice(Math.max(0, firstNonZero - 1)),
    };
  });

  api.get<{
    Params: { name: string };
    Querystring: { after?: string; limit?: string; ok?: string };
  }>('/v1/dashboard/jobs/:name/results', READ, async (req) => {
    const { s, j } = await job(req.params.name);
    const limit = intQuery(req.query.limit, 'limit', 20, 1, MAX_PAGE);
    const ok = req.query.ok === 'true' ? true : req.query.ok === 'false' ? false : undefined;
    const rows = await s.results.listResults(j.table, {
      limit: limit + 1,
      ...(req.query.after !== undefined && req.query.after !== '' && { afterId: req.query.after }),
      ...(ok !== undefined && { ok }),
    });
    const more = rows.length > limit;
    return { rows: rows.slice(0, limit), next: more ? rows[limit - 1]!.id : null };
  });

  api.get<{ Params: { name: string; id: string } }>(
    '/v1/dashboard/jobs/:name/items/:id',
    READ,
    async (req) => {
      const { s, j } = await job(req.params.name);
      const id = req.params.id;
      const [item] = await s.jobs.getJobItems(j.name, [id]);
      const [result] = await s.results.getResults(j.table, [id]);
      if (!item && !result) {
        throw new HttpError(404, GatewayErrorCode.NotFound, `job "${j.name}" has no item "${id}"`);
      }
      return { id, item: item ?? null, result: result ?? null };
    },
  );

  api.post<{ Params: { name: string } }>(
    '/v1/dashboard/jobs/:name/retry',
    { config: { roles: [Role.Producer] } },
    async (req) => {
      const { s, j } = await job(req.params.name);
      try {
        return { job: j.name, ...(await retryFailed(broker, s, j.name)) };
      } catch (err) {
        if (err instanceof NotFoundError) throw notFound('job', j.name);
        throw err;
      }
    },
  );

  api.get<{ Params: { name: string } }>('/v1/dashboard/jobs/:name/workers', READ, async (req) => {
    const { s, j } = await job(req.params.name);
    const status = await jobStatus(broker, s, j.name);
    return { workers: status.workers, ...(status.cost && { cost: status.cost }) };
  });

  // --- experiments ---------------------------------------------------------------------------

  api.get<{ Params: { name: string } }>('/v1/dashboard/experiments/:name', READ, async (req) => {
    const { s, e } = await experiment(req.params.name);
    const dir = direction(e.spec);
    const [counts, trials] = await Promise.all([
      s.experiments.counts(e.name),
      s.experiments.listTrials(e.name),
    ]);
    const hist = history(trials, dir);
    const complete = trials
      .filter((t) => t.status === 'complete' && t.value !== undefined)
      .map((t) => ({ number: t.number, params: t.params, value: t.value! }));
    const ranked = [...hist].sort((a, b) =>
      dir === 'minimize' ? a.value - b.value : b.value - a.value,
    );
    const chosen = new Set<number>([
      ...ranked.slice(0, CURVES / 2).map((t) => t.number),
      ...trials.slice(-CURVES / 2).map((t) => t.number),
    ]);
    const curves = await Promise.all(
      [...chosen]
        .sort((a, b) => a - b)
        .map(async (n) => ({
          number: n,
          status: trials.find((t) => t.number === n)?.status ?? 'unknown',
          points: downsample(await s.experiments.reports(e.name, n), 100).map((r) => [
            r.step,
            r.value,
          ]),
        })),
    );
    return {
      name: e.name,
      status: e.status,
      direction: dir,
      spec: e.spec,
      createdAt: e.createdAt,
      updatedAt: e.updatedAt,
      counts,
      best: ranked[0] ?? null,
      history: downsample(hist),
      curves,
      importance: paramImportance(complete),
      // Params against the objective for a parallel-coordinates plot: at most MAX_POINTS trials.
      parallel: downsample(complete).map((t) => ({
        number: t.number,
        params: t.params,
        value: t.value,
      })),
    };
  });

  api.get<{
    Params: { name: string };
    Querystring: {
      offset?: string;
      limit?: string;
      sort?: string;
      order?: string;
      status?: string;
    };
  }>('/v1/dashboard/experiments/:name/trials', READ, async (req) => {
    const { s, e } = await experiment(req.params.name);
    const offset = intQuery(req.query.offset, 'offset', 0, 0, Number.MAX_SAFE_INTEGER);
    const limit = intQuery(req.query.limit, 'limit', 20, 1, MAX_PAGE);
    const sort = req.query.sort ?? 'number';
    if (sort !== 'number' && sort !== 'value') {
      throw new HttpError(
        400,
        GatewayErrorCode.BadInput,
        `query "sort" must be number or value, got "${sort}"`,
      );
    }
    const desc = req.query.order === 'desc';
    let trials = await s.experiments.listTrials(e.name);
    if (req.query.status) trials = trials.filter((t) => t.status === req.query.status);
    if (sort === 'value') {
      // Trials without a value go last either way.
      trials.sort((a, b) => {
        if (a.value === undefined) return b.value === undefined ? a.number - b.number : 1;
        if (b.value === undefined) return -1;
        return desc ? b.value - a.value : a.value - b.value;
      });
    } else if (desc) trials.reverse();
    return { total: trials.length, offset, trials: trials.slice(offset, offset + limit) };
  });

  api.post<{ Params: { name: string } }>(
    '/v1/dashboard/experiments/:name/stop',
    { config: { roles: [Role.Admin] } },
    async (req) => {
      const { s, e } = await experiment(req.params.name);
      if (e.status === 'done' || e.status === 'stopped') {
        throw new HttpError(
          409,
          GatewayErrorCode.BrokerState,
          `experiment "${e.name}" is already ${e.status}`,
        );
      }
      // As `qtune experiment stop`: the scheduler sees the status and winds down.
      await s.experiments.setExperimentStatus(e.name, 'stopping');
      return { experiment: e.name, status: 'stopping' };
    },
  );
};
