import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  assertBuilt,
  killAll,
  publishPayloads,
  readResults,
  runCli,
  startCli,
  tempBroker,
} from './helpers.js';
import { waitFor } from '../support/wait.js';
import { scrapeSamples, valueOf } from '../support/prometheus.js';

let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];
const servers: Server[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  killAll(children);
  children.length = 0;
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  env?.cleanup();
  env = undefined;
});

/** The metrics URL a worker logged (JSON logs on stderr). */
async function metricsUrl(worker: ReturnType<typeof startCli>): Promise<string> {
  return waitFor(
    () => /"url":"(http:\/\/[^"]+\/metrics)"/u.exec(worker.stderrText())?.[1],
    20_000,
    `the worker's metrics URL (stderr: ${worker.stderrText()})`,
  );
}

const scrape = (url: string) => scrapeSamples(url);

describe('qtune worker --metrics-port', () => {
  it('counts tasks by outcome, times them and serves it on loopback, matching the run', async () => {
    env = tempBroker();
    const handler = join(env.dir, 'handler.mjs');
    // Every 10th task fails on every attempt: retried once, then dead-lettered.
    writeFileSync(
      handler,
      'export default async (p) => { if (p.n % 10 === 0) throw new Error("bad item"); return p.n; };\n',
    );
    const worker = startCli([
      'worker',
      'work',
      '--broker',
      env.url,
      '--module',
      handler,
      '--concurrency',
      '4',
      '--max-attempts',
      '2',
      '--backoff',
      '10ms',
      '--metrics-port',
      '0',
      '--log-format',
      'json',
    ]);
    children.push(worker);
    const url = await metricsUrl(worker);
    expect(new URL(url).hostname).toBe('127.0.0.1');

    const items = Array.from({ length: 60 }, (_, n) => ({ id: `i${n}`, n }));
    await publishPayloads(env.dir, env.url, 'work', items);
    const results: Awaited<ReturnType<typeof readResults>> = [];
    await waitFor(
      async () => {
        results.push(...(await readResults('work', env!.url)));
        return results.length >= items.length;
      },
      40_000,
      `${items.length} results (worker stderr: ${worker.stderrText()})`,
    );
    const ok = results.filter((r) => r.ok).length;
    const failed = results.filter((r) => !r.ok).length;
    expect([ok, failed]).toEqual([54, 6]);

    const samples = await scrape(url);
    const tasks = (outcome: string) =>
      valueOf(samples, 'qtune_worker_tasks_total', { queue: 'work', outcome });
    expect(tasks('completed')).toBe(ok);
    expect(tasks('retried')).toBe(failed);
    expect(tasks('dead_lettered')).toBe(failed);
    // Every attempt ran its handler once and was started once.
    const attempts = ok + 2 * failed;
    expect(valueOf(samples, 'qtune_worker_task_duration_seconds_count')).toBe(attempts);
    expect(valueOf(samples, 'qtune_worker_task_wait_seconds_count')).toBe(attempts);
    expect(valueOf(samples, 'qtune_worker_task_wait_seconds_bucket', { le: '+Inf' })).toBe(
      attempts,
    );
    expect(valueOf(samples, 'qtune_worker_tasks_in_flight', { queue: 'work' })).toBe(0);
    const info = samples.find((s) => s.name === 'qtune_worker_info')!;
    expect(info.labels).toMatchObject({ queue: 'work', version: expect.any(String) });
    expect(info.labels.worker_id).toMatch(/^.+:\d+:/u);
    // Process metrics only with --metrics-process; no task id or key is ever a label.
    expect(samples.some((s) => s.name === 'process_cpu_seconds_total')).toBe(false);
    for (const s of samples) {
      expect(Object.keys(s.labels)).not.toContain('task_id');
      expect(Object.values(s.labels).some((v) => /^i\d+$/u.test(v))).toBe(false);
    }

    const other = await fetch(url.replace('/metrics', '/'));
    expect(other.status).toBe(404);
  });

  it("exports the process's CPU, memory and GC metrics with --metrics-process", async () => {
    env = tempBroker();
    const worker = startCli([
      'worker',
      'work',
      '--broker',
      env.url,
      '--exec',
      'cat',
      '--metrics-port',
      '0',
      '--metrics-process',
      '--log-format',
      'json',
    ]);
    children.push(worker);
    const samples = await scrape(await metricsUrl(worker));
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
    ]) {
      expect(
        samples.some((s) => s.name === name),
        name,
      ).toBe(true);
    }
    expect(
      valueOf(samples, 'qtune_worker_tasks_total', { queue: 'work', outcome: 'completed' }),
    ).toBe(0);
  });

  it("exports each HTTP endpoint's breaker state", async () => {
    env = tempBroker();
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('1'));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const live = `http://127.0.0.1:${(server.address() as AddressInfo).port}/run`;
    const worker = startCli([
      'worker',
      'calls',
      '--broker',
      env.url,
      '--http',
      live,
      '--metrics-port',
      '0',
      '--log-format',
      'json',
    ]);
    children.push(worker);
    const url = await metricsUrl(worker);
    const samples = await scrape(url);
    expect(valueOf(samples, 'qtune_worker_endpoint_state', { endpoint: live, state: 'up' })).toBe(
      1,
    );
    expect(valueOf(samples, 'qtune_worker_endpoint_state', { endpoint: live, state: 'open' })).toBe(
      0,
    );
    expect(valueOf(samples, 'qtune_worker_endpoint_outstanding', { endpoint: live })).toBe(0);
  });

  it('exits 2 naming the address when the metrics port is taken, before taking any task', async () => {
    env = tempBroker();
    const holder = createServer();
    servers.push(holder);
    await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
    const port = (holder.address() as AddressInfo).port;
    await publishPayloads(env.dir, env.url, 'work', [{ id: 'a' }]);
    const res = await runCli(
      ['worker', 'work', '--broker', env.url, '--exec', 'cat', '--metrics-port', String(port)],
      { timeoutMs: 20_000 },
    );
    expect(res.code, res.stderr).toBe(2);
    expect(res.stderr).toContain(
      `metrics endpoint: cannot listen on 127.0.0.1:${port}: EADDRINUSE`,
    );
    const status = await runCli(['status', '--json', '--broker', env.url]);
    const queues = (JSON.parse(status.stdout) as { queues: { queue: string; ready: number }[] })
      .queues;
    expect(queues.find((q) => q.queue === 'work')?.ready).toBe(1);
  });

  it('refuses a metrics port out of range with exit 2', async () => {
    const res = await runCli(['worker', 'work', '--exec', 'cat', '--metrics-port', '99999']);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('"99999" is not a TCP port (0 to 65535)');
  });
});
