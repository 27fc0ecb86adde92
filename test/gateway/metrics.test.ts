import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { assertBuilt, killAll, runCli, startCli, tempBroker } from '../cli/helpers.js';
import { waitFor } from '../support/wait.js';
import { documentedMetrics, scrapeSamples, valueOf } from '../support/prometheus.js';
import { parseExperimentSpec } from '../../src/scheduler/spec.js';
import { SqliteStore } from '../../src/store/sqlite/index.js';
import { TOKENS, call, startGateway, startServe } from './helpers.js';

type Env = ReturnType<typeof tempBroker>;
let env: Env | undefined;
const children: ReturnType<typeof startCli>[] = [];

beforeAll(() => assertBuilt());
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
  env = undefined;
});

/** `qtune serve` on a free port over the temp dir's broker and store; resolves its URL. */
async function serve(e: Env, store: string): Promise<string> {
  const { url, child } = await startServe(['--broker', e.url, '--store', store]);
  children.push(child);
  return url;
}

const scrape = (url: string, token: string) => scrapeSamples(`${url}/metrics`, token);

describe('GET /metrics of qtune serve', () => {
  it('counts a real run: payloads, requests, auth failures, queues and jobs match what happened', async () => {
    env = tempBroker();
    const store = join(env.dir, 'store.db');
    const url = await serve(env, store);

    // A job of 12 items submitted through the CLI, so the store knows it.
    const items = join(env.dir, 'items.jsonl');
    writeFileSync(
      items,
      Array.from({ length: 12 }, (_, i) => JSON.stringify({ id: `j${i}` })).join('\n'),
    );
    const submit = await runCli([
      'job',
      'submit',
      'batch',
      '--input',
      items,
      '--key',
      'id',
      '--broker',
      env.url,
      '--store',
      store,
    ]);
    expect(submit.code, submit.stderr).toBe(0);

    // 30 tasks, then 5 with an Idempotency-Key sent twice (the second is a replay).
    const post = (
      payloads: unknown[],
      headers: Record<string, string> = {},
      token: string = TOKENS.producer,
    ) => call(url, 'POST', '/v1/queues/work/tasks', { token, json: payloads, headers });
    expect((await post(Array.from({ length: 30 }, (_, i) => ({ i })))).status).toBe(200);
    const five = Array.from({ length: 5 }, (_, i) => ({ again: i }));
    expect((await post(five, { 'idempotency-key': 'k1' })).status).toBe(200);
    expect((await post(five, { 'idempotency-key': 'k1' })).status).toBe(200);
    // Refusals: three bad tokens, one worker token where a producer is needed.
    for (let i = 0; i < 3; i++)
      expect((await post([{}], {}, 'not-a-real-token-000000')).status).toBe(401);
    expect((await post([{}], {}, TOKENS.worker)).status).toBe(403);

    // A gateway worker does the 35 tasks.
    const handler = join(env.dir, 'echo.mjs');
    writeFileSync(handler, 'export default async (p) => p;\n');
    const worker = startCli(
      ['worker', 'work', '--gateway', url, '--token', TOKENS.worker, '--module', handler],
      { QTUNE_BROKER: '' },
    );
    children.push(worker);
    await waitFor(
      async () => {
        const s = await scrape(url, TOKENS.admin);
        const ready = (queue: string) =>
          s.find(
            (x) =>
              x.name === 'qtune_queue_messages' &&
              x.labels.queue === queue &&
              x.labels.state === 'ready',
          )?.value;
        return ready('work.results') === 35 && ready('work') === 0;
      },
      40_000,
      `35 results (worker stderr: ${worker.stderrText()})`,
    );
    await waitFor(
      async () => valueOf(await scrape(url, TOKENS.admin), 'qtune_gateway_leases_held') === 0,
      20_000,
      'no lease held',
    );

    const s = await scrape(url, TOKENS.admin);
    const payloads = (outcome: string) =>
      valueOf(s, 'qtune_gateway_ingest_payloads_total', { outcome });
    expect(payloads('accepted')).toBe(35);
    expect(payloads('replayed')).toBe(5);
    expect(payloads('refused')).toBe(0);
    const tasksRoute = { route: '/v1/queues/:queue/tasks', method: 'POST' };
    expect(valueOf(s, 'qtune_gateway_requests_total', { ...tasksRoute, status: '200' })).toBe(3);
    expect(valueOf(s, 'qtune_gateway_requests_total', { ...tasksRoute, status: '401' })).toBe(3);
    expect(valueOf(s, 'qtune_gateway_requests_total', { ...tasksRoute, status: '403' })).toBe(1);
    expect(valueOf(s, 'qtune_gateway_request_duration_seconds_count', tasksRoute)).toBe(7);
    expect(valueOf(s, 'qtune_gateway_auth_failures_total', { reason: 'unauthenticated' })).toBe(3);
    expect(valueOf(s, 'qtune_gateway_auth_failures_total', { reason: 'forbidden' })).toBe(1);
    expect(valueOf(s, 'qtune_gateway_refusals_total', { reason: 'backpressure' })).toBe(0);
    // The worker's polls and settles went through the lease routes.
    expect(
      s.filter(
        (x) =>
          x.name === 'qtune_gateway_requests_total' && x.labels.route?.startsWith('/v1/leases'),
      ).length,
    ).toBeGreaterThan(0);
    // Labels carry route templates, never a filled-in path or a token.
    for (const x of s) {
      for (const v of Object.values(x.labels)) {
        expect(v).not.toContain(TOKENS.producer);
        expect(v).not.toMatch(/^\/v1\/queues\/work\//u);
      }
    }

    // Broker state read on scrape agrees with `qtune status`; the job's items are pending.
    const status = await runCli(['status', '--json', '--broker', env.url]);
    const queues = (
      JSON.parse(status.stdout) as { queues: { queue: string; ready: number; inFlight: number }[] }
    ).queues;
    for (const q of queues) {
      expect(valueOf(s, 'qtune_queue_messages', { queue: q.queue, state: 'ready' }), q.queue).toBe(
        q.ready,
      );
    }
    expect(valueOf(s, 'qtune_queue_messages', { queue: 'batch', state: 'ready' })).toBe(12);
    expect(valueOf(s, 'qtune_job_items', { job: 'batch', state: 'pending' })).toBe(12);
    expect(valueOf(s, 'qtune_job_items', { job: 'batch', state: 'done' })).toBe(0);
  });

  it("reads experiments from the store: trials by state, and the best value in the objective's direction", async () => {
    env = tempBroker();
    const path = join(env.dir, 'store.db');
    const store = new SqliteStore({ path });
    const spec = parseExperimentSpec({
      name: 'acc-search',
      objective: { metric: 'acc', direction: 'maximize' },
      space: { lr: { type: 'float', low: 0, high: 1 } },
      sampler: { name: 'random', seed: 1 },
      maxTrials: 4,
    });
    await store.experiments.createExperiment('acc-search', spec, 1);
    const values = [0.7, 0.9, 0.8];
    for (let n = 0; n < 4; n++) {
      await store.experiments.addTrial({
        experiment: 'acc-search',
        number: n,
        params: { lr: n / 10 },
        taskId: `t${n}`,
        createdAt: n,
      });
    }
    await store.experiments.markRunning('acc-search', [0, 1, 2, 3]);
    await store.experiments.finishTrial('acc-search', 0, {
      status: 'complete',
      value: values[0]!,
      finishedAt: 10,
    });
    await store.experiments.finishTrial('acc-search', 1, {
      status: 'complete',
      value: values[1]!,
      finishedAt: 11,
    });
    await store.experiments.finishTrial('acc-search', 2, {
      status: 'pruned',
      value: values[2]!,
      finishedAt: 12,
    });
    await store.close();

    const url = await serve(env, path);
    const s = await scrape(url, TOKENS.admin);
    const trials = (state: string) =>
      valueOf(s, 'qtune_experiment_trials', { experiment: 'acc-search', state });
    expect([trials('complete'), trials('pruned'), trials('running'), trials('failed')]).toEqual([
      2, 1, 1, 0,
    ]);
    // Maximized: 0.9, not the pruned trial's 0.8 nor the smallest.
    expect(valueOf(s, 'qtune_experiment_best_value', { experiment: 'acc-search' })).toBe(0.9);
  });

  it('needs a token of some role, and answers 401 without one', async () => {
    env = tempBroker();
    const url = await serve(env, join(env.dir, 'store.db'));
    expect((await fetch(`${url}/metrics`)).status).toBe(401);
    for (const token of Object.values(TOKENS))
      expect((await scrape(url, token)).length).toBeGreaterThan(0);
  });

  it('exports exactly the metrics docs/metrics.md lists, with their types and labels', async () => {
    const gw = await startGateway({
      metrics: {
        jobs: async () => [{ job: 'j', done: 1, failed: 2, pending: 3 }],
        experiments: async () => [
          { experiment: 'e', trials: { complete: 4, running: 1 }, best: 0.25 },
        ],
      },
    });
    try {
      const res = await call(gw.url, 'PUT', '/v1/queues/q', { token: TOKENS.admin, json: {} });
      expect(res.status).toBe(204);
      const samples = await scrape(gw.url, TOKENS.admin);
      const ours = new Set(
        samples
          .map((x) => x.name.replace(/_(bucket|sum|count)$/u, ''))
          .filter((n) => n.startsWith('qtune_')),
      );
      const rows = documentedMetrics('Gateway (`qtune serve`: `GET /metrics`)');
      expect([...ours].sort()).toEqual([...rows.keys()].sort());
      expect(valueOf(samples, 'qtune_job_items', { job: 'j', state: 'failed' })).toBe(2);
      expect(
        valueOf(samples, 'qtune_experiment_trials', { experiment: 'e', state: 'complete' }),
      ).toBe(4);
      expect(valueOf(samples, 'qtune_experiment_best_value', { experiment: 'e' })).toBe(0.25);
      expect(valueOf(samples, 'qtune_queue_paused', { queue: 'q' })).toBe(0);
      const types = new Map(
        [
          ...(
            await gw.app.inject({
              url: '/metrics',
              headers: { authorization: `Bearer ${TOKENS.admin}` },
            })
          ).body.matchAll(/^# TYPE (qtune_\w+) (\w+)$/gmu),
        ].map((m) => [m[1]!, m[2]!]),
      );
      expect(Object.fromEntries(types)).toEqual(Object.fromEntries(rows));
    } finally {
      await gw.close();
    }
  });
});

describe('docs/monitoring', () => {
  it('has a Prometheus config and a Grafana dashboard that parse and name only metrics qtune exports', () => {
    const exported = new Set([
      ...documentedMetrics('Worker (`qtune worker --metrics-port N`)').keys(),
      ...documentedMetrics('Gateway (`qtune serve`: `GET /metrics`)').keys(),
    ]);
    const dir = join(import.meta.dirname, '../../docs/monitoring');
    const prometheus = parseYaml(readFileSync(join(dir, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: {
        job_name: string;
        metrics_path: string;
        static_configs: { targets: string[] }[];
      }[];
    };
    expect(prometheus.scrape_configs.map((c) => c.job_name)).toEqual([
      'qtune-gateway',
      'qtune-worker',
    ]);
    for (const c of prometheus.scrape_configs) {
      expect(c.metrics_path).toBe('/metrics');
      expect(c.static_configs[0]!.targets.length).toBeGreaterThan(0);
    }
    const grafana = JSON.parse(readFileSync(join(dir, 'grafana-dashboard.json'), 'utf8')) as {
      panels: { title: string; targets: { expr: string }[] }[];
      templating: { list: { query: string }[] };
    };
    const exprs = [
      ...grafana.panels.flatMap((p) => p.targets.map((t) => t.expr)),
      ...grafana.templating.list.map((v) => v.query),
    ];
    expect(grafana.panels.length).toBeGreaterThan(10);
    const named = new Set(
      exprs.flatMap((e) =>
        [...e.matchAll(/\bqtune_\w+/gu)].map((m) => m[0].replace(/_(bucket|sum|count)$/u, '')),
      ),
    );
    expect([...named].filter((n) => !exported.has(n))).toEqual([]);
    // Every metric qtune exports is on some panel.
    expect([...exported].filter((n) => !named.has(n) && !n.endsWith('_info'))).toEqual([]);
  });
});
