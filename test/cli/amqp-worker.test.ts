import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TaskResult } from '../../src/protocol/result.js';
import { startRabbit, type RabbitNode } from '../support/rabbitmq.mjs';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  readResults,
  runCli,
  startCli,
  startedMarks,
  tempBroker,
  waitFor,
} from './helpers.js';

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

describe('qtune worker on RabbitMQ under faults', () => {
  it(
    'completes on another worker the tasks of a worker killed with SIGKILL mid-task',
    { timeout: 90_000 },
    async () => {
      env = tempBroker();
      const q = 'amqp-killed';
      const a = worker(q, '--concurrency', '2', '--prefetch', '2');
      const file = join(env.dir, 'tasks.jsonl');
      writeFileSync(
        file,
        Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: i, ms: 1500 })).join('\n') + '\n',
      );
      const pub = await runCli([
        'publish',
        q,
        '--file',
        file,
        '--key-field',
        'id',
        '--broker',
        node!.url,
      ]);
      expect(pub.code, pub.stderr).toBe(0);
      await waitFor(
        () => startedMarks(env.marks).some((m) => m.pid === a.pid),
        30_000,
        'A to start a task',
      );
      a.kill('SIGKILL');
      await exited(a);
      const killed = startedMarks(env.marks)
        .filter((m) => m.pid === a.pid)
        .map((m) => m.taskId);
      expect(killed.length).toBeGreaterThan(0);

      const b = worker(q, '--concurrency', '6');
      const results: TaskResult<{ id: number; pid: number }>[] = [];
      await waitFor(
        async () => {
          results.push(...(await readResults<{ id: number; pid: number }>(q, node!.url)));
          return new Set(results.map((r) => r.key)).size === 6;
        },
        60_000,
        'all six results',
      );
      expect(results.every((r) => r.ok)).toBe(true);
      for (const taskId of killed) {
        const r = results.find((x) => x.taskId === taskId);
        expect(r, `result of killed task ${taskId}`).toBeDefined();
        expect(r!.worker.pid).toBe(b.pid);
        expect(r!.attempt).toBeGreaterThanOrEqual(2);
      }
      const dlq = await runCli(['dlq', q, '--json', '--broker', node!.url]);
      expect(dlq.stdout.trim()).toBe('');
    },
  );
});
