/**
 * The experiment page's extra endpoints without a browser (timeline, slice, contour, a trial's
 * detail, compare, the list, resume) over a real gateway, embedded broker and SQLite store, on
 * experiments run by a real scheduler with in-process trial workers.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTokenList } from '../../src/gateway/auth.js';
import { Requester } from '../../src/patterns/request-reply.js';
import { experimentQueues } from '../../src/protocol/trial.js';
import { Scheduler } from '../../src/scheduler/scheduler.js';
import { parseExperimentSpec, type ExperimentSpecInput } from '../../src/scheduler/spec.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { trialHandler } from '../../src/worker/trial/trial-handler.js';
import { waitFor } from '../support/wait.js';
import {
  TOKENS,
  TOKENS_ENV,
  call,
  errorMessageOf,
  startGateway,
  type TestGateway,
} from '../gateway/helpers.js';

const VIEWER = 'viewer-secret-0123456789abcdef';
const cleanups: (() => Promise<unknown>)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function gateway(): Promise<{ g: TestGateway; store: SqliteStore }> {
  const opened: { store?: SqliteStore } = {};
  const g = await startGateway({
    auth: { tokens: parseTokenList(`${TOKENS_ENV},vera:viewer:${VIEWER}`) },
    dashboard: { store: async () => opened.store },
  });
  const store = new SqliteStore({ path: join(g.dir, 'store.db') });
  opened.store = store;
  // Closed after the gateway (which pauses the schedulers it hosts), store last.
  cleanups.push(
    () => store.close(),
    () => g.close(),
  );
  return { g, store };
}

function spec(name: string, overrides: Partial<ExperimentSpecInput> = {}) {
  return parseExperimentSpec({
    name,
    objective: { metric: 'loss', direction: 'minimize' },
    space: {
      x: { type: 'float', low: 0, high: 1 },
      lr: { type: 'float', low: 1e-4, high: 1, log: true },
      k: { type: 'categorical', choices: ['a', 'b', 'c'] },
    },
    sampler: { name: 'random', seed: 3 },
    maxTrials: 12,
    concurrency: 3,
    maxRetries: 0,
    ...overrides,
  });
}

/** A trial worker in this process: three reports, then loss = (x - 0.3)², k "c" fails. */
async function trialWorker(g: TestGateway, experiment: string): Promise<Worker> {
  const requester = await Requester.create(g.broker);
  const w = await startWorker({
    broker: g.broker,
    queue: experimentQueues(experiment).trials,
    handler: trialHandler(
      async (t) => {
        const x = t.params.x as number;
        if (t.params.k === 'c') throw new Error(`no k "c" (trial ${t.number})`);
        for (let step = 1; step <= 3; step++) {
          if (await t.report(step, { loss: (x - 0.3) ** 2 + 1 / step })) break;
        }
        return { loss: (x - 0.3) ** 2 };
      },
      { requester, reportTimeoutMs: 5_000 },
    ),
    concurrency: 3,
    maxAttempts: 1,
  });
  cleanups.push(
    () => requester.close(),
    () => w.stop({ graceMs: 0 }),
  );
  return w;
}

/** A scheduler in this process for a new experiment `name` of `maxTrials` trials. */
function startScheduler(g: TestGateway, store: SqliteStore, name: string, maxTrials: number) {
  return Scheduler.start({
    broker: g.broker,
    store,
    spec: spec(name, { maxTrials }),
    publishEvents: false,
  });
}

/** Runs experiment `name` to its end with a scheduler and a worker in this process. */
async function runToEnd(g: TestGateway, store: SqliteStore, name: string, maxTrials = 12) {
  await trialWorker(g, name);
  return (await startScheduler(g, store, name, maxTrials)).done;
}

const get = (g: TestGateway, path: string, token: string = VIEWER) =>
  call(g.url, 'GET', path, { token });

describe('experiment page endpoints', () => {
  it('answers the timeline, slice, contour and a trial’s detail as the store has them, to a viewer', async () => {
    const { g, store } = await gateway();
    const summary = await runToEnd(g, store, 'e1');
    expect(summary.status).toBe('done');
    const trials = await store.experiments.listTrials('e1');
    const complete = trials.filter((t) => t.status === 'complete');
    const failed = trials.filter((t) => t.status === 'failed');
    expect(complete.length).toBeGreaterThan(2);
    expect(failed.length).toBeGreaterThan(0);

    const tl = await get(g, '/v1/dashboard/experiments/e1/timeline');
    expect(tl.status).toBe(200);
    const timeline = tl.json as {
      total: number;
      merged: boolean;
      rows: { worker: string | null; bars: { number: number; status: string }[] }[];
    };
    expect(timeline.merged).toBe(false);
    expect(timeline.total).toBe(trials.length);
    const bars = timeline.rows.flatMap((r) => r.bars.map((b) => [b.number, b.status, r.worker]));
    expect(bars.sort((a, b) => (a[0] as number) - (b[0] as number))).toEqual(
      trials.map((t) => [
        t.number,
        t.status,
        t.worker ? `${t.worker.host} pid ${t.worker.pid}` : null,
      ]),
    );

    const slice = (await get(g, '/v1/dashboard/experiments/e1/slice?param=lr')).json as {
      params: string[];
      axis: { kind: string; log: boolean };
      total: number;
      points: { number: number; x: number; value: number }[];
    };
    expect(slice.params).toEqual(['k', 'lr', 'x']);
    expect(slice.axis).toMatchObject({ kind: 'number', log: true });
    expect(slice.total).toBe(complete.length);
    expect(slice.points.map((p) => [p.number, p.x, p.value])).toEqual(
      complete.map((t) => [t.number, t.params.lr, t.value]),
    );
    const cat = (await get(g, '/v1/dashboard/experiments/e1/slice?param=k')).json as {
      axis: { kind: string; categories: string[] };
    };
    expect(cat.axis.kind).toBe('category');
    // Failed trials (k = "c") have no value: only the categories of complete trials show.
    expect(cat.axis.categories).toEqual(
      ['a', 'b'].filter((k) => complete.some((t) => t.params.k === k)),
    );

    const contour = (await get(g, '/v1/dashboard/experiments/e1/contour?x=x&y=k&bins=4')).json as {
      z: (number | null)[][];
      n: number[][];
      total: number;
      xEdges: number[];
    };
    expect(contour.total).toBe(complete.length);
    expect(contour.xEdges).toHaveLength(5);
    expect(contour.n.flat().reduce((s, v) => s + v, 0)).toBe(complete.length);

    const best = complete.reduce((a, b) => (b.value! < a.value! ? b : a));
    const detail = (await get(g, `/v1/dashboard/experiments/e1/trials/${best.number}`)).json as {
      trial: { params: unknown; value: number; worker: { host: string } };
      reports: { step: number; value: number }[];
      reportCount: number;
      logs: null;
      logsNote: string;
    };
    expect(detail.trial.params).toEqual(best.params);
    expect(detail.trial.value).toBe(best.value);
    expect(detail.trial.worker.host).toBe(best.worker!.host);
    const reports = await store.experiments.reports('e1', best.number);
    expect(detail.reportCount).toBe(reports.length);
    expect(detail.reports.map((r) => [r.step, r.value])).toEqual(
      reports.map((r) => [r.step, r.value]),
    );
    expect(detail.logs).toBeNull();
    expect(detail.logsNote).toContain('no trial logs');
    const bad = failed[0]!;
    const failedDetail = (await get(g, `/v1/dashboard/experiments/e1/trials/${bad.number}`))
      .json as { trial: { error: string } };
    expect(failedDetail.trial.error).toContain('no k "c"');
  });

  it('compares the best-so-far curves of chosen experiments and lists them all', async () => {
    const { g, store } = await gateway();
    await runToEnd(g, store, 'c1', 6);
    await runToEnd(g, store, 'c2', 9);
    const r = await get(g, '/v1/dashboard/compare?names=c1,c2');
    expect(r.status).toBe(200);
    const body = r.json as {
      experiments: { name: string; best: number; complete: number; points: [number, number][] }[];
    };
    expect(body.experiments.map((e) => e.name)).toEqual(['c1', 'c2']);
    for (const e of body.experiments) {
      const complete = (await store.experiments.listTrials(e.name, ['complete'])).sort(
        (a, b) => a.number - b.number,
      );
      expect(e.complete).toBe(complete.length);
      let best = Infinity;
      expect(e.points).toEqual(complete.map((t) => [t.number, (best = Math.min(best, t.value!))]));
      expect(e.best).toBe(best);
    }
    const list = (await get(g, '/v1/dashboard/experiments')).json as {
      experiments: { name: string; trials: number; hosted: boolean }[];
    };
    expect(list.experiments.map((e) => [e.name, e.trials, e.hosted])).toEqual([
      ['c1', 6, false],
      ['c2', 9, false],
    ]);
  });

  it('refuses bad queries with 400 naming them, unknown and hostile names with 404, and no token with 401', async () => {
    const { g, store } = await gateway();
    await runToEnd(g, store, 'b1', 3);
    const cases: [string, number, string][] = [
      ['/v1/dashboard/experiments/b1/slice', 400, 'query "param" is required'],
      ['/v1/dashboard/experiments/b1/slice?param=nope', 400, 'has no param "nope"'],
      ['/v1/dashboard/experiments/b1/contour?x=x&y=x', 400, 'two params'],
      ['/v1/dashboard/experiments/b1/contour?x=x&y=k&bins=500', 400, 'query "bins"'],
      ['/v1/dashboard/experiments/b1/timeline?last=0', 400, 'query "last"'],
      ['/v1/dashboard/experiments/b1/timeline?from=9&to=3', 400, 'before "from"'],
      ['/v1/dashboard/experiments/b1/timeline?from=yesterday', 400, 'query "from"'],
      ['/v1/dashboard/experiments/b1/trials/abc', 400, 'path parameter "number"'],
      ['/v1/dashboard/experiments/b1/trials/-1', 400, 'path parameter "number"'],
      ['/v1/dashboard/experiments/b1/trials/99', 404, 'has no trial 99'],
      ['/v1/dashboard/compare', 400, 'query "names" is required'],
      ['/v1/dashboard/compare?names=a,b,c,d,e,f,g,h,i', 400, 'at most 8'],
      ['/v1/dashboard/compare?names=b1,nope', 404, 'no experiment named "nope"'],
      [
        '/v1/dashboard/experiments/%3Cscript%3Ealert(1)%3C%2Fscript%3E/timeline',
        404,
        'no experiment named "<script>alert(1)</script>"',
      ],
      ['/v1/dashboard/experiments/..%2F..%2Fetc%2Fpasswd/slice?param=x', 404, 'no experiment'],
      ["/v1/dashboard/experiments/x'%20OR%201=1--/trials/0", 404, 'no experiment'],
    ];
    for (const [path, status, message] of cases) {
      const r = await get(g, path);
      expect(r.status, path).toBe(status);
      expect(r.headers.get('content-type'), path).toMatch(/^application\/json/);
      expect(errorMessageOf(r), path).toContain(message);
    }
    for (const path of [
      '/v1/dashboard/experiments',
      '/v1/dashboard/experiments/b1/timeline',
      '/v1/dashboard/compare?names=b1',
    ]) {
      expect((await call(g.url, 'GET', path)).status, path).toBe(401);
    }
  });

  it('resumes an interrupted experiment in the gateway for an admin only: its trials go on to the end', async () => {
    const { g, store } = await gateway();
    // Interrupted: a scheduler that published its first trials and was paused, no worker yet.
    const first = await startScheduler(g, store, 'r1', 9);
    expect((await first.pause()).status).toBe('paused');
    const before = await store.experiments.counts('r1');
    expect(before.total).toBe(3);

    for (const token of [VIEWER, TOKENS.producer]) {
      const refused = await call(g.url, 'POST', '/v1/dashboard/experiments/r1/resume', { token });
      expect(refused.status).toBe(403);
    }
    const ok = await call(g.url, 'POST', '/v1/dashboard/experiments/r1/resume', {
      token: TOKENS.admin,
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.json).toMatchObject({
      experiment: 'r1',
      status: 'running',
      scheduler: 'gateway',
      queue: experimentQueues('r1').trials,
    });
    // Twice is refused: its scheduler is attached now.
    const again = await call(g.url, 'POST', '/v1/dashboard/experiments/r1/resume', {
      token: TOKENS.admin,
    });
    expect(again.status).toBe(409);
    const listed = (await get(g, '/v1/dashboard/experiments')).json as {
      experiments: { name: string; hosted: boolean }[];
    };
    expect(listed.experiments.find((e) => e.name === 'r1')?.hosted).toBe(true);

    await trialWorker(g, 'r1');
    await waitFor(
      async () => (await store.experiments.experimentStatus('r1')) === 'done',
      30_000,
      'the resumed experiment to finish',
    );
    const after = await store.experiments.counts('r1');
    expect(after.total).toBe(9);
    expect(after.complete + after.failed + after.pruned).toBe(9);
    const done = await call(g.url, 'POST', '/v1/dashboard/experiments/r1/resume', {
      token: TOKENS.admin,
    });
    expect(done.status).toBe(409);
    expect(errorMessageOf(done)).toContain('is done');
    const unknown = await call(g.url, 'POST', '/v1/dashboard/experiments/nope/resume', {
      token: TOKENS.admin,
    });
    expect(unknown.status).toBe(404);
  });

  it('refuses to resume an experiment whose scheduler runs elsewhere, and pauses its own when the gateway closes', async () => {
    const { g, store } = await gateway();
    const elsewhere = await startScheduler(g, store, 'live', 50);
    cleanups.push(() => elsewhere.pause());
    const r = await call(g.url, 'POST', '/v1/dashboard/experiments/live/resume', {
      token: TOKENS.admin,
    });
    expect(r.status).toBe(409);
    expect(errorMessageOf(r)).toContain('already has a scheduler attached');
    expect((await get(g, '/v1/dashboard/experiments/live/scheduler')).json).toEqual({
      name: 'live',
      status: 'running',
      hosted: false,
      attached: 1,
    });

    // Stopped while no scheduler ran: resumable; the gateway's scheduler takes it.
    const stopped = await startScheduler(g, store, 'halted', 50);
    await stopped.pause();
    await store.experiments.setExperimentStatus('halted', 'stopped');
    const ok = await call(g.url, 'POST', '/v1/dashboard/experiments/halted/resume', {
      token: TOKENS.admin,
    });
    expect(ok.status, ok.text).toBe(200);
    expect(await store.experiments.experimentStatus('halted')).toBe('running');
    expect((await g.broker.stats(experimentQueues('halted').reports)).consumers).toBe(1);
    expect((await get(g, '/v1/dashboard/experiments/halted/scheduler')).json).toEqual({
      name: 'halted',
      status: 'running',
      hosted: true,
      attached: 1,
    });
    // Closing the gateway pauses it: still running in the store, resumable, nothing consumed.
    await elsewhere.pause();
    await g.close();
    expect(await store.experiments.experimentStatus('halted')).toBe('running');
  });
});
