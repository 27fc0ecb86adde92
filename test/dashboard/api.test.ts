/**
 * The dashboard's HTTP side without a browser: the viewer role, the static files, paging and
 * downsampling, over a real gateway, embedded broker and SQLite store.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseTokenList } from '../../src/gateway/auth.js';
import { downsample } from '../../src/gateway/routes/dashboard.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { TOKENS, TOKENS_ENV, call, startGateway, type TestGateway } from '../gateway/helpers.js';

const VIEWER = 'viewer-secret-0123456789abcdef';
const open: { close(): Promise<void> }[] = [];

afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function gateway(): Promise<{ g: TestGateway; store: SqliteStore }> {
  const opened: { store?: SqliteStore } = {};
  const g = await startGateway({
    auth: { tokens: parseTokenList(`${TOKENS_ENV},vera:viewer:${VIEWER}`) },
    dashboard: { store: async () => opened.store },
  });
  open.push(g);
  const store = new SqliteStore({ path: join(g.dir, 'store.db') });
  opened.store = store;
  open.push(store);
  return { g, store };
}

describe('dashboard endpoints', () => {
  it('lets a viewer token read statistics and the dashboard but change nothing', async () => {
    const { g } = await gateway();
    await g.broker.declareQueue('q');
    expect((await call(g.url, 'GET', '/v1/token', { token: VIEWER })).json).toEqual({
      name: 'vera',
      role: 'viewer',
      broker: { purge: true, pause: true },
    });
    expect((await call(g.url, 'GET', '/v1/queues', { token: VIEWER })).status).toBe(200);
    const overview = await call(g.url, 'GET', '/v1/dashboard/overview', { token: VIEWER });
    expect(overview.status).toBe(200);
    expect((overview.json as { queues: { queue: string }[] }).queues.map((q) => q.queue)).toContain(
      'q',
    );
    const ingest = await call(g.url, 'POST', '/v1/queues/q/tasks', { token: VIEWER, json: [{}] });
    expect(ingest.status).toBe(403);
    const retry = await call(g.url, 'POST', '/v1/dashboard/jobs/j/retry', { token: VIEWER });
    expect(retry.status).toBe(403);
    const stop = await call(g.url, 'POST', '/v1/dashboard/experiments/e/stop', {
      token: TOKENS.producer,
    });
    expect(stop.status).toBe(403);
    expect((await call(g.url, 'GET', '/v1/dashboard/overview')).status).toBe(401);
  });

  it('serves the page and uPlot without a token, and nothing outside its folders', async () => {
    const { g } = await gateway();
    const page = await call(g.url, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.text).not.toMatch(/https?:\/\//);
    const app = await call(g.url, 'GET', '/dashboard/app.js');
    expect(app.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await call(g.url, 'GET', '/dashboard/uplot/uPlot.esm.js')).status).toBe(200);
    expect((await call(g.url, 'GET', '/dashboard/uplot/package.json')).status).toBe(404);
    expect((await call(g.url, 'GET', '/dashboard/..%2Fgateway%2Fgateway.ts')).status).toBe(404);
  });

  it('pages trials sorted by value and answers 404 for unknown jobs and experiments', async () => {
    const { g, store } = await gateway();
    await store.experiments.createExperiment('e', { objective: { direction: 'maximize' } });
    const values = [0.3, 0.9, 0.1, 0.5, 0.7];
    for (const [n, value] of values.entries()) {
      await store.experiments.addTrial({
        experiment: 'e',
        number: n,
        params: { x: n },
        taskId: `t${n}`,
        createdAt: n,
      });
      await store.experiments.markRunning('e', [n]);
      await store.experiments.finishTrial('e', n, {
        status: 'complete',
        value,
        finishedAt: 10 + n,
      });
    }
    const page = await call(
      g.url,
      'GET',
      '/v1/dashboard/experiments/e/trials?sort=value&order=desc&limit=2&offset=1',
      {
        token: TOKENS.admin,
      },
    );
    const body = page.json as { total: number; trials: { value: number }[] };
    expect(body.total).toBe(5);
    expect(body.trials.map((t) => t.value)).toEqual([0.7, 0.5]);
    const exp = (await call(g.url, 'GET', '/v1/dashboard/experiments/e', { token: TOKENS.admin }))
      .json as { best: { value: number }; history: { best: number }[] };
    expect(exp.best.value).toBe(0.9);
    expect(exp.history.map((h) => h.best)).toEqual([0.3, 0.9, 0.9, 0.9, 0.9]);
    expect(
      (await call(g.url, 'GET', '/v1/dashboard/jobs/nope', { token: TOKENS.admin })).status,
    ).toBe(404);
    expect(
      (await call(g.url, 'GET', '/v1/dashboard/experiments/nope', { token: TOKENS.admin })).status,
    ).toBe(404);
    expect(
      (
        await call(g.url, 'GET', '/v1/dashboard/experiments/e/trials?limit=5000', {
          token: TOKENS.admin,
        })
      ).status,
    ).toBe(400);
  });
});

describe('downsample', () => {
  it('keeps at most max points, the first and the last included, in order', () => {
    const rows = Array.from({ length: 10_001 }, (_, i) => i);
    const out = downsample(rows, 500);
    expect(out).toHaveLength(500);
    expect(out[0]).toBe(0);
    expect(out.at(-1)).toBe(10_000);
    expect(out.every((v, i) => i === 0 || v > out[i - 1]!)).toBe(true);
    expect(downsample([1, 2, 3], 500)).toEqual([1, 2, 3]);
  });
});
