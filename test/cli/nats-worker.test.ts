import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NatsBroker } from '../../src/broker/nats/index.js';
import { consumeResults } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { natsAvailable, startNats, type NatsServer } from '../support/nats.mjs';
import { workerCrashSuite } from '../worker/crash-suite.js';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  publishPayloads,
  readResults,
  runCli,
  startCli,
  tempBroker,
} from './helpers.js';
import { TOKENS, call, startServe } from '../gateway/helpers.js';
import { waitFor } from '../support/wait.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');
const available = natsAvailable();
let server: NatsServer | undefined;
let env: ReturnType<typeof tempBroker> | undefined;
const children: ReturnType<typeof startCli>[] = [];

beforeAll(async () => {
  assertBuilt();
  if (available) server = await startNats();
}, 60_000);
afterAll(async () => {
  await server?.stop();
}, 60_000);
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
  env = undefined;
});

describe.skipIf(!available)('qtune worker on NATS JetStream under faults', () => {
  it(
    'three qtune worker processes resume by themselves after a nats-server restart in the middle of 4,000 tasks, and every result arrives',
    { timeout: 240_000 },
    async () => {
      env = tempBroker();
      const url = server!.url;
      const q = 'nats-restart';
      const total = 4_000;
      const workers = [1, 2, 3].map(() => {
        const c = startCli(
          [
            'worker',
            q,
            '--broker',
            url,
            '--module',
            SLEEPY,
            '--concurrency',
            '10',
            '--lease',
            '5s',
          ],
          { MARK_DIR: env!.marks },
        );
        children.push(c);
        return c;
      });
      // The test reads the results itself, over a handle that must recover as well.
      const reader = await NatsBroker.open(url);
      const statuses: string[] = [];
      reader.on('status', (s) => statuses.push(s));
      try {
        const results = new Map<string, TaskResult<{ id: number; pid: number }>>();
        await reader.declareQueue(q, { leaseMs: 5_000 });
        await consumeResults(
          reader,
          q,
          (r) => void results.set(r.key!, r as TaskResult<{ id: number; pid: number }>),
          { prefetch: 500 },
        );
        const tasks = Array.from({ length: total }, (_, i) => ({ id: i, ms: 20 }));
        await publishPayloads(env.dir, url, q, tasks);

        await waitFor(() => results.size >= total / 4, 120_000, 'a quarter of the results');
        await server!.restart();
        const back = Date.now();
        await waitFor(() => results.size === total, 120_000, `all ${total} results`);

        const missing = tasks.map((t) => String(t.id)).filter((k) => !results.has(k));
        expect(missing).toEqual([]);
        expect([...results.values()].every((r) => r.ok)).toBe(true);
        expect(statuses).toContain('reconnecting');
        expect(statuses.at(-1)).toBe('connected');
        // Each worker process went back to work by itself, within 10 s of the server's return.
        const after = [...results.values()].filter((r) => r.startedAt >= back);
        const firstAfter = (pid: number | undefined) =>
          Math.min(...after.filter((r) => r.worker.pid === pid).map((r) => r.startedAt)) - back;
        console.log(
          `nats worker restart test: ${total} published, ${results.size} distinct results; ` +
            `per worker, tasks started after the server was back and the first one's delay (ms): ` +
            workers
              .map(
                (w) => `${after.filter((r) => r.worker.pid === w.pid).length}/${firstAfter(w.pid)}`,
              )
              .join(', '),
        );
        for (const w of workers) {
          expect(w.exitCode, `worker ${w.pid} still running`).toBeNull();
          const mine = after.filter((r) => r.worker.pid === w.pid);
          expect(mine.length, `tasks started by worker ${w.pid} after the restart`).toBeGreaterThan(
            0,
          );
          expect(Math.min(...mine.map((r) => r.startedAt)) - back).toBeLessThan(10_000);
        }
      } finally {
        await reader.close();
      }
    },
  );
});

describe.skipIf(!available)('NATS', () => {
  workerCrashSuite('NATS JetStream', async () => ({
    brokerUrl: server!.url,
    workerArgs: ['--broker', server!.url, '--lease', '2s'],
  }));
});

describe.skipIf(!available)(
  'the CLI and the gateway on NATS JetStream (--broker nats://...)',
  () => {
    it('publishes, works, reads results and shows the queue in status', async () => {
      env = tempBroker();
      const url = server!.url;
      const q = `nats-cli-${Date.now().toString(36)}`;
      const file = join(env.dir, 'items.jsonl');
      writeFileSync(
        file,
        Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: i, ms: 1 })).join('\n') + '\n',
      );
      const pub = await runCli([
        'publish',
        q,
        '--file',
        file,
        '--key-field',
        'id',
        '--json',
        '--broker',
        url,
      ]);
      expect(pub.code, pub.stderr).toBe(0);
      expect(JSON.parse(pub.stdout)).toEqual({ queue: q, published: 20 });
      const status = await runCli(['status', '--json', '--wait', '0', '--broker', url]);
      expect(status.code, status.stderr).toBe(0);
      const row = (JSON.parse(status.stdout).queues as { queue: string; ready: number }[]).find(
        (x) => x.queue === q,
      );
      expect(row?.ready).toBe(20);
      const w = startCli(['worker', q, '--broker', url, '--module', SLEEPY], {
        MARK_DIR: env.marks,
      });
      children.push(w);
      const results: TaskResult[] = [];
      await waitFor(
        async () => {
          results.push(...(await readResults(q, url)));
          return new Set(results.map((r) => r.key)).size === 20;
        },
        30_000,
        'twenty results',
      );
      expect(results.every((r) => r.ok && r.worker.pid === w.pid)).toBe(true);
      w.kill('SIGTERM');
      expect((await exited(w)).code, w.stderrText()).toBe(0);
    });

    it('runs an AutoML experiment to the end with `qtune experiment run`', async () => {
      env = tempBroker();
      const spec = join(env.dir, 'spec.json');
      writeFileSync(
        spec,
        JSON.stringify({
          name: `nats-exp-${Date.now().toString(36)}`,
          objective: { metric: 'loss' },
          space: { x: { type: 'float', low: 0, high: 1 } },
          sampler: { name: 'tpe', seed: 3 },
          maxTrials: 8,
          concurrency: 2,
          runner: { module: join(FIXTURES, 'trials/sleepy.mjs') },
        }),
      );
      const store = join(env.dir, 'experiments.db');
      const run = await runCli(
        ['experiment', 'run', spec, '--workers', '2', '--json', '--broker', server!.url],
        { timeoutMs: 120_000, env: { QTUNE_STORE: store } },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(JSON.parse(run.stdout.trim().split('\n').at(-1)!)).toMatchObject({
        status: 'done',
        counts: { total: 8, running: 0, pending: 0 },
      });
    });

    it('serves publish and lease through `qtune serve --broker nats://...`', async () => {
      const { url, child } = await startServe(['--broker', server!.url]);
      children.push(child);
      const q = `nats-gw-${Date.now().toString(36)}`;
      const pub = await call(url, 'POST', `/v1/queues/${q}/tasks`, {
        token: TOKENS.producer,
        json: [{ n: 1 }, { n: 2 }],
      });
      expect(pub.status, pub.text).toBe(200);
      const ids = (pub.json as { ids: string[] }).ids;
      const res = await call(url, 'POST', `/v1/queues/${q}/leases`, {
        token: TOKENS.worker,
        json: { max: 2, waitMs: 5_000 },
      });
      expect(res.status, res.text).toBe(200);
      const leases = (res.json as { leases: { leaseId: string; messageId: string }[] }).leases;
      expect(leases.map((l) => l.messageId).sort()).toEqual([...ids].sort());
      for (const l of leases) {
        const ack = await call(url, 'POST', `/v1/leases/${l.leaseId}/ack`, {
          token: TOKENS.worker,
        });
        expect(ack.status, ack.text).toBe(204);
      }
      const stats = await call(url, 'GET', `/v1/queues/${q}`, { token: TOKENS.producer });
      expect(stats.json).toMatchObject({ ready: 0, inFlight: 0 });
      child.kill('SIGTERM');
      expect((await exited(child)).code, child.stderrText()).toBe(0);
    });
  },
);
