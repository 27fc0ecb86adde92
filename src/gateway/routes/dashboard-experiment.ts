/**
 * The experiment page's extras (see ./dashboard.ts for the page and its other endpoints): a
 * timeline of trials per worker, slice and contour plots of chosen params, a trial's detail,
 * best-so-far curves of several experiments to compare, the list of experiments to choose from
 * (any role), and resume (admin).
 *
 * Everything is computed here from the stored trials (read once a second at most per
 * experiment, however many plots ask) and sent at a size that does not grow with the
 * experiment: at most {@link MAX_POINTS} points a plot, a timeline of at most 500 bars or of
 * merged spans, a trial's reports downsampled.
 *
 * Resume: the gateway hosts the experiment's scheduler in its own process, as
 * `qtune experiment resume NAME --workers 0` would: it publishes trials to the experiment's
 * queue for workers attached with `qtune worker --experiment SPEC`, and runs until the
 * experiment is done or stopped. Closing the gateway pauses it (the experiment stays
 * resumable). It is refused while a scheduler is attached anywhere, so two never run one.
 */
import type { FastifyPluginAsync } from 'fastify';
import { contourOf, sliceOf, type ParamHint } from '../../experiment/landscape.js';
import { attachedSchedulers, resumeRefusal } from '../../experiment/resume.js';
import { timelineOf } from '../../experiment/timeline.js';
import { InputError, NotFoundError, toError } from '../../protocol/errors.js';
import { experimentQueues } from '../../protocol/trial.js';
import { Scheduler } from '../../scheduler/scheduler.js';
import type { Store } from '../../store/contract.js';
import type { ExperimentRecord, TrialRecord } from '../../store/experiments.js';
import { Role } from '../auth.js';
import { GatewayErrorCode, HttpError } from '../errors.js';
import {
  direction,
  downsample,
  history,
  intQuery,
  MAX_POINTS,
  notFound,
  type DashboardOptions,
} from './dashboard.js';

const READ = { config: { roles: [Role.Viewer, Role.Producer, Role.Worker] } } as const;
/** Most experiments one compare plot takes. */
export const MAX_COMPARE = 8;
/** How long the trials of an experiment read for these plots are reused, in ms. */
const TRIALS_TTL_MS = 1_000;
/** Most cells along a number axis of a contour. */
const MAX_BINS = 50;
/** What the trial detail says of logs: the store keeps none. */
const NO_LOGS =
  "qtune stores no trial logs: a trial's output goes to its worker's stderr (qtune worker --log-level)";

function badInput(message: string): HttpError {
  return new HttpError(400, GatewayErrorCode.BadInput, message);
}

/** The space entries of a stored spec, as hints for plot axes (none when it has no space). */
function hintsOf(spec: unknown): Record<string, ParamHint> {
  const space = (spec as { space?: unknown } | null)?.space;
  if (!space || typeof space !== 'object' || Array.isArray(space)) return {};
  return space as Record<string, ParamHint>;
}

/** The params an experiment has: its space's, else those its trials carry. */
function paramsOf(spec: unknown, trials: readonly TrialRecord[]): string[] {
  const names = new Set(Object.keys(hintsOf(spec)));
  if (names.size === 0) for (const t of trials) for (const k of Object.keys(t.params)) names.add(k);
  return [...names].sort();
}

function paramQuery(raw: unknown, name: string, exp: string, params: readonly string[]): string {
  if (typeof raw !== 'string' || raw === '') {
    throw badInput(
      `query "${name}" is required: one of the params of "${exp}" (${params.join(', ')})`,
    );
  }
  if (!params.includes(raw)) {
    throw badInput(
      `query "${name}": experiment "${exp}" has no param ${JSON.stringify(raw.slice(0, 100))} (params: ${params.join(', ')})`,
    );
  }
  return raw;
}

function timeQuery(raw: unknown, name: string): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw badInput(`query "${name}" must be a time in ms since 1970, got ${JSON.stringify(raw)}`);
  }
  return n;
}

/** The fastify plugin; register it next to {@link dashboardRoutes}, with the same options. */
export const dashboardExperimentRoutes: FastifyPluginAsync<DashboardOptions> = async (
  api,
  options,
) => {
  const { broker } = options;
  const store = async (): Promise<Store | undefined> => options.store?.();

  const experiment = async (name: string): Promise<{ s: Store; e: ExperimentRecord }> => {
    const s = await store();
    const e = s && (await s.experiments.getExperiment(name));
    if (!s || !e) throw notFound('experiment', name);
    return { s, e };
  };

  /** Trials per experiment, read at most once a second however many plots ask. */
  const cache = new Map<string, { at: number; value: Promise<TrialRecord[]> }>();
  const trialsOf = (s: Store, name: string): Promise<TrialRecord[]> => {
    const now = Date.now();
    for (const [k, v] of cache) if (now - v.at >= TRIALS_TTL_MS) cache.delete(k);
    const hit = cache.get(name);
    if (hit) return hit.value;
    const value = s.experiments.listTrials(name);
    cache.set(name, { at: now, value });
    value.catch(() => cache.delete(name));
    return value;
  };

  /** An experiment with its trials, params and direction, for a plot of its landscape. */
  const landscape = async (name: string) => {
    const { s, e } = await experiment(name);
    const trials = await trialsOf(s, e.name);
    return { e, trials, params: paramsOf(e.spec, trials), dir: direction(e.spec) };
  };

  /** Schedulers this gateway hosts, by experiment; each leaves the map when it ends. */
  const hosted = new Map<string, Scheduler>();
  let closing = false;
  api.addHook('onClose', async () => {
    closing = true;
    // Paused, not stopped: the experiment stays `running`, to be resumed again.
    await Promise.all([...hosted.values()].map((sch) => sch.pause().catch(() => undefined)));
  });

  // --- the list and compare -----------------------------------------------------------------

  api.get('/v1/dashboard/experiments', READ, async () => {
    const s = await store();
    if (!s) return { experiments: [] };
    const list = await s.experiments.listExperiments();
    return {
      experiments: await Promise.all(
        list.map(async (e) => ({
          name: e.name,
          status: e.status,
          direction: direction(e.spec),
          trials: (await s.experiments.counts(e.name)).total,
          hosted: hosted.has(e.name),
          updatedAt: e.updatedAt,
        })),
      ),
    };
  });

  api.get<{ Querystring: { names?: string } }>('/v1/dashboard/compare', READ, async (req) => {
    const raw = req.query.names;
    if (typeof raw !== 'string' || raw.trim() === '') {
      throw badInput('query "names" is required: experiment names separated by commas');
    }
    const names = [...new Set(raw.split(',').map((n) => n.trim()))].filter((n) => n !== '');
    if (names.length > MAX_COMPARE) {
      throw badInput(`query "names": at most ${MAX_COMPARE} experiments, got ${names.length}`);
    }
    const tooLong = names.find((n) => n.length > 200);
    if (tooLong !== undefined) {
      throw badInput(`query "names": a name is at most 200 characters, got ${tooLong.length}`);
    }
    const experiments = await Promise.all(
      names.map(async (name) => {
        const { s, e } = await experiment(name);
        const dir = direction(e.spec);
        const hist = history(await trialsOf(s, e.name), dir);
        return {
          name: e.name,
          status: e.status,
          direction: dir,
          complete: hist.length,
          best: hist.at(-1)?.best ?? null,
          // Best so far by trial number: at most MAX_POINTS points, the last one kept.
          points: downsample(hist).map((p) => [p.number, p.best]),
        };
      }),
    );
    return { experiments };
  });

  // --- timeline, slice, contour -----------------------------------------------------------

  api.get<{
    Params: { name: string };
    Querystring: { last?: string; from?: string; to?: string };
  }>('/v1/dashboard/experiments/:name/timeline', READ, async (req) => {
    const { s, e } = await experiment(req.params.name);
    const last = req.query.last
      ? intQuery(req.query.last, 'last', 0, 1, Number.MAX_SAFE_INTEGER)
      : undefined;
    const from = timeQuery(req.query.from, 'from');
    const to = timeQuery(req.query.to, 'to');
    if (from !== undefined && to !== undefined && to < from) {
      throw badInput(`query "to" (${to}) is before "from" (${from})`);
    }
    const timeline = timelineOf(await trialsOf(s, e.name), {
      ...(last !== undefined && { last }),
      ...(from !== undefined && { from }),
      ...(to !== undefined && { to }),
    });
    return { name: e.name, ...timeline };
  });

  api.get<{ Params: { name: string }; Querystring: { param?: string } }>(
    '/v1/dashboard/experiments/:name/slice',
    READ,
    async (req) => {
      const { e, trials, params, dir } = await landscape(req.params.name);
      const param = paramQuery(req.query.param, 'param', e.name, params);
      return {
        name: e.name,
        direction: dir,
        params,
        ...sliceOf(trials, param, {
          hint: hintsOf(e.spec)[param],
          direction: dir,
          max: MAX_POINTS,
        }),
      };
    },
  );

  api.get<{ Params: { name: string }; Querystring: { x?: string; y?: string; bins?: string } }>(
    '/v1/dashboard/experiments/:name/contour',
    READ,
    async (req) => {
      const { e, trials, params, dir } = await landscape(req.params.name);
      const x = paramQuery(req.query.x, 'x', e.name, params);
      const y = paramQuery(req.query.y, 'y', e.name, params);
      if (x === y) throw badInput(`queries "x" and "y" must name two params, got "${x}" twice`);
      const bins = intQuery(req.query.bins, 'bins', 20, 2, MAX_BINS);
      return {
        name: e.name,
        direction: dir,
        params,
        ...contourOf(trials, x, y, {
          hints: hintsOf(e.spec),
          direction: dir,
          bins,
          max: MAX_POINTS,
        }),
      };
    },
  );

  // --- a trial's detail ---------------------------------------------------------------------

  api.get<{ Params: { name: string; number: string } }>(
    '/v1/dashboard/experiments/:name/trials/:number',
    READ,
    async (req) => {
      const { s, e } = await experiment(req.params.name);
      const number = Number(req.params.number);
      if (!/^\d+$/.test(req.params.number) || !Number.isSafeInteger(number)) {
        throw badInput(
          `path parameter "number" must be a trial number (an integer ≥ 0), got ${JSON.stringify(req.params.number.slice(0, 100))}`,
        );
      }
      const trial = await s.experiments.getTrial(e.name, number);
      if (!trial) {
        throw new HttpError(
          404,
          GatewayErrorCode.NotFound,
          `experiment "${e.name}" has no trial ${number}`,
        );
      }
      const reports = await s.experiments.reports(e.name, number);
      return {
        name: e.name,
        direction: direction(e.spec),
        trial,
        durationMs:
          trial.startedAt !== undefined && trial.finishedAt !== undefined
            ? trial.finishedAt - trial.startedAt
            : null,
        reportCount: reports.length,
        reports: downsample(reports),
        logs: null,
        logsNote: NO_LOGS,
      };
    },
  );

  // --- scheduler and resume -----------------------------------------------------------------

  api.get<{ Params: { name: string } }>(
    '/v1/dashboard/experiments/:name/scheduler',
    READ,
    async (req) => {
      const { e } = await experiment(req.params.name);
      return {
        name: e.name,
        status: e.status,
        hosted: hosted.has(e.name),
        attached: await attachedSchedulers(broker, e.name),
      };
    },
  );

  api.post<{ Params: { name: string } }>(
    '/v1/dashboard/experiments/:name/resume',
    { config: { roles: [Role.Admin] } },
    async (req) => {
      const { s, e } = await experiment(req.params.name);
      if (closing) {
        throw new HttpError(503, GatewayErrorCode.BrokerState, 'the gateway is closing');
      }
      if (hosted.has(e.name)) {
        throw new HttpError(
          409,
          GatewayErrorCode.BrokerState,
          `experiment "${e.name}" already runs in this gateway's scheduler`,
        );
      }
      const refusal = await resumeRefusal(broker, e);
      if (refusal) throw new HttpError(409, GatewayErrorCode.BrokerState, refusal);
      let scheduler: Scheduler;
      try {
        scheduler = await Scheduler.start({ broker, store: s, resume: e.name });
      } catch (err) {
        if (err instanceof NotFoundError) throw notFound('experiment', e.name);
        if (err instanceof InputError) {
          throw new HttpError(409, GatewayErrorCode.BrokerState, err.message);
        }
        throw err;
      }
      hosted.set(e.name, scheduler);
      scheduler.on('error', (err) =>
        req.log.error({ err: err.message, experiment: e.name }, 'hosted scheduler error'),
      );
      const forget = (): void => {
        if (hosted.get(e.name) === scheduler) hosted.delete(e.name);
      };
      scheduler.done.then(forget, (err: unknown) => {
        forget();
        api.log.error({ err: toError(err).message, experiment: e.name }, 'hosted scheduler failed');
      });
      return {
        experiment: e.name,
        status: 'running',
        scheduler: 'gateway',
        queue: experimentQueues(e.name).trials,
        workers: `qtune worker --experiment SPEC (queue ${experimentQueues(e.name).trials})`,
      };
    },
  );
};
