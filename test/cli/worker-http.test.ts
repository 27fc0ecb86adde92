import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { QueueStats } from '../../src/broker/contract.js';
import type { WorkerReport } from '../../src/worker/control.js';
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

/** A model server answering every request with `status` (and the request body on a 200). */
async function modelServer(status: number): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (text += chunk));
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? text : JSON.stringify({ error: 'model crashed' }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1/completions`, server };
}

interface StatusJson {
  queues: QueueStats[];
  workers: WorkerReport[];
}

async function statusJson(brokerUrl: string): Promise<StatusJson> {
  const res = await runCli(['status', '--json', '--broker', brokerUrl]);
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout) as StatusJson;
}

let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];
const servers: Server[] = [];
beforeAll(() => assertBuilt());
afterEach(async () => {
  killAll(children);
  children.length = 0;
  await Promise.all(
    servers.splice(0).map((s) => {
      s.closeAllConnections();
      return new Promise((resolve) => s.close(resolve));
    }),
  );
  env?.cleanup();
  env = undefined;
});

describe('qtune worker --http', () => {
  it('refuses an endpoint URL with another scheme than http(s) before consuming anything', async () => {
    env = tempBroker();
    await publishPayloads(env.dir, env.url, 'prompts', [{ id: 'a' }, { id: 'b' }, { id: 'c' }]);
    for (const bad of ['ftp://models.local/v1', 'localhost:8000/v1/completions']) {
      const res = await runCli(
        ['worker', 'prompts', '--broker', env.url, '--http', `http://127.0.0.1:9/ok,${bad}`],
        { timeoutMs: 20_000 },
      );
      expect(res.code, res.stderr).toBe(2);
      expect(res.stderr).toContain(`--http: endpoint "${bad}" has scheme`);
      expect(res.stderr).toContain('expected http:// or https://');
    }
    const { queues } = await statusJson(env.url);
    const prompts = queues.find((q) => q.queue === 'prompts');
    expect(prompts).toMatchObject({ ready: 3, inFlight: 0, deadLettered: 0 });
  });

  it('refuses the --breaker-* flags without --http', async () => {
    env = tempBroker();
    const res = await runCli([
      'worker',
      'prompts',
      '--broker',
      env.url,
      '--exec',
      'cat',
      '--breaker-failures',
      '3',
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain('--breaker-failures: only with --http');
  });

  it("takes a failing endpoint out of rotation and shows each endpoint's circuit in qtune status", async () => {
    env = tempBroker();
    const broken = await modelServer(500);
    const healthy = await modelServer(200);
    servers.push(broken.server, healthy.server);
    const worker = startCli([
      'worker',
      'prompts',
      '--broker',
      env.url,
      '--http',
      `${broken.url},${healthy.url}`,
      '--breaker-failures',
      '2',
      '--breaker-cooldown',
      '10m',
    ]);
    children.push(worker);
    const items = Array.from({ length: 12 }, (_, i) => ({ id: `t${i}` }));
    await publishPayloads(env.dir, env.url, 'prompts', items);
    const results: Awaited<ReturnType<typeof readResults>> = [];
    await waitFor(
      async () => {
        results.push(...(await readResults('prompts', env!.url)));
        return results.length >= items.length;
      },
      30_000,
      'every result',
    );
    // Every task was served: the broken endpoint's requests failed over to the healthy one.
    expect(results.every((r) => r.ok)).toBe(true);

    const { workers } = await waitFor(
      async () => {
        const s = await statusJson(env!.url);
        return s.workers.length === 1 ? s : undefined;
      },
      20_000,
      'the worker to answer status',
    );
    const endpoints = workers[0]!.endpoints!;
    expect(endpoints.map((e) => [e.url, e.state])).toEqual([
      [broken.url, 'open'],
      [healthy.url, 'up'],
    ]);
    expect(endpoints[0]).toMatchObject({
      failed: 2,
      succeeded: 0,
      opened: 1,
      reason: '2 consecutive failures',
    });
    expect(endpoints[0]!.retryInMs).toBeGreaterThan(0);
    expect(endpoints[1]!.succeeded).toBe(items.length);

    const text = await runCli(['status', '--broker', env.url]);
    expect(text.code, text.stderr).toBe(0);
    const rows = text.stdout.split('\n');
    expect(rows.some((l) => /^endpoint\s+state\s+ok\s+failed/.test(l))).toBe(true);
    expect(rows.find((l) => l.startsWith(broken.url))).toMatch(/\sopen \d+\.\ds\s+0\s+2\s/);
    expect(rows.find((l) => l.startsWith(healthy.url))).toMatch(/\sup\s+12\s+0\s/);
  });
});
