import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AmqpBroker } from '../../src/broker/amqp/index.js';
import { consumeResults } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { startRabbit, type RabbitNode } from '../support/rabbitmq.mjs';
import { workerCrashSuite } from '../worker/crash-suite.js';
import {
  FIXTURES,
  assertBuilt,
  killAll,
  publishPayloads,
  runCli,
  startCli,
  tempBroker,
} from './helpers.js';
import { waitFor } from '../support/wait.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');
let node: RabbitNode | undefined;
let env: ReturnType<typeof tempBroker>;
const children: ReturnType<typeof startCli>[] = [];

beforeAll(async () => {
  assertBuilt();
  node = await startRabbit();
}, 120_000);
afterAll(async () => {
  await node?.stop();
}, 120_000);
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
});

function worker(queue: string, ...extra: string[]) {
  const c = startCli(['worker', queue, '--broker', node!.url, '--module', SLEEPY, ...extra], {
    MARK_DIR: env.marks,
  });
  children.push(c);
  return c;
}

/** Publishes `n` tasks `{ id, ms }` to `queue`, keyed by id. */
function publishTasks(queue: string, n: number, ms: number): Promise<void> {
  const tasks = Array.from({ length: n }, (_, i) => ({ id: i, ms }));
  return publishPayloads(env.dir, node!.url, queue, tasks);
}

describe('qtune bench on RabbitMQ', () => {
  it('reads every result back and leaves no queue behind', { timeout: 90_000 }, async () => {
    const res = await runCli(
      ['bench', '--broker', node!.url, '--tasks', '500', '--workers', '1', '--json'],
      { timeoutMs: 80_000 },
    );
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout.trim().split('\n').pop()!) as { received: number };
    expect(out.received).toBe(500);
    const queues = (await node!.ctl(['list_queues', 'name', '--quiet', '--no-table-headers']))
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.startsWith('bench.'));
    expect(queues).toEqual([]);
  });
});

describe('qtune worker on RabbitMQ under faults', () => {
  it(
    'three qtune worker processes resume by themselves after a broker restart in the middle of 10,000 tasks, and every result arrives',
    { timeout: 300_000 },
    async () => {
      env = tempBroker();
      const q = 'amqp-restart';
      const total = 10_000;
      const workers = [1, 2, 3].map(() => worker(q, '--concurrency', '10'));
      // The test reads the results itself, over a handle that must recover as well.
      const reader = await AmqpBroker.open(node!.url);
      try {
        const results = new Map<string, TaskResult<{ id: number; pid: number }>>();
        let deliveries = 0;
        await reader.declareQueue(q);
        await consumeResults(
          reader,
          q,
          (r) => {
            deliveries++;
            results.set(r.key!, r as TaskResult<{ id: number; pid: number }>);
          },
          { prefetch: 500 },
        );
        await publishTasks(q, total, 20);

        await waitFor(() => results.size >= total / 4, 120_000, 'a quarter of the results');
        await node!.stopNode();
        await node!.start();
        const back = Date.now();
        await waitFor(() => results.size === total, 180_000, `all ${total} results`);

        const missing = Array.from({ length: total }, (_, i) => String(i)).filter(
          (k) => !results.has(k),
        );
        expect(missing).toEqual([]);
        expect([...results.values()].every((r) => r.ok)).toBe(true);
        // Each worker process went back to work by itself: none stopped consuming silently.
        const after = [...results.values()].filter((r) => r.startedAt >= back);
        for (const w of workers) {
          expect(w.exitCode, `worker ${w.pid} still running`).toBeNull();
          expect(
            after.filter((r) => r.worker.pid === w.pid).length,
            `tasks started by worker ${w.pid} after the restart`,
          ).toBeGreaterThan(0);
        }
        const firstStart = Math.min(...after.map((r) => r.startedAt));
        console.log(
          `amqp worker restart test: ${total} published, ${results.size} distinct results, ` +
            `${deliveries} result deliveries, first task started ${firstStart - back} ms after the node was back; ` +
            `tasks started after it per worker: ${workers.map((w) => after.filter((r) => r.worker.pid === w.pid).length).join(', ')}`,
        );
      } finally {
        await reader.close();
      }
    },
  );
});

workerCrashSuite('RabbitMQ', async () => ({
  brokerUrl: node!.url,
  workerArgs: ['--broker', node!.url],
}));
