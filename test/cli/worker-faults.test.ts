import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../src/broker/embedded/index.js';
import type { TaskResult } from '../../src/protocol/result.js';
import {
  FIXTURES,
  assertBuilt,
  exited,
  killAll,
  publishPayloads,
  readResults,
  runCli,
  startCli,
  startedMarks,
  tempBroker,
} from './helpers.js';
import { waitFor } from '../support/wait.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');

type Env = ReturnType<typeof tempBroker>;
let env: Env;
const children: ReturnType<typeof startCli>[] = [];

beforeAll(() => assertBuilt());
afterEach(() => {
  killAll(children);
  children.length = 0;
  env?.cleanup();
});

function worker(queue: string, ...extra: string[]) {
  const c = startCli(
    ['worker', queue, '--broker', env.url, '--module', SLEEPY, '--lease', '1s', ...extra],
    { MARK_DIR: env.marks },
  );
  children.push(c);
  return c;
}

async function consumers(queue: string): Promise<number> {
  const res = await runCli(['status', '--json', '--wait', '0', '--broker', env.url]);
  if (res.code === 4) return 0; // the worker has not created the broker file yet
  const status = JSON.parse(res.stdout) as { queues: { queue: string; consumers: number }[] };
  return status.queues.find((q) => q.queue === queue)?.consumers ?? 0;
}

function publish(queue: string, payloads: unknown[]): Promise<void> {
  return publishPayloads(env.dir, env.url, queue, payloads);
}

describe('qtune worker under faults', () => {
  it('redelivers and completes the tasks of a worker killed with SIGKILL mid-task', async () => {
    env = tempBroker();
    const q = 'killed';
    const a = worker(q, '--concurrency', '2', '--prefetch', '2');
    await waitFor(async () => (await consumers(q)) >= 1, 20_000, 'worker A');
    await publish(
      q,
      Array.from({ length: 6 }, (_, i) => ({ id: i, ms: 1500 })),
    );
    await waitFor(
      () => startedMarks(env.marks).some((m) => m.pid === a.pid),
      20_000,
      'A to start a task',
    );
    a.kill('SIGKILL');
    await exited(a);
    const killedTasks = startedMarks(env.marks)
      .filter((m) => m.pid === a.pid)
      .map((m) => m.taskId);
    expect(killedTasks.length).toBeGreaterThan(0);

    const b = worker(q, '--concurrency', '6');
    const results: TaskResult<{ id: number; pid: number }>[] = [];
    await waitFor(
      async () => {
        results.push(...(await readResults<{ id: number; pid: number }>(q, env.url)));
        return new Set(results.map((r) => r.key)).size === 6;
      },
      30_000,
      'all six results',
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(new Set(results.map((r) => r.key))).toEqual(new Set(['0', '1', '2', '3', '4', '5']));
    for (const taskId of killedTasks) {
      const r = results.find((x) => x.taskId === taskId)!;
      expect(r, `result of killed task ${taskId}`).toBeDefined();
      expect(r.worker.pid).toBe(b.pid);
      expect(r.attempt).toBeGreaterThanOrEqual(2);
    }
    const dlq = await runCli(['dlq', q, '--json', '--broker', env.url]);
    expect(dlq.stdout.trim()).toBe('');
  });

  it('dead-letters a poison payload with its reason while the worker keeps serving', async () => {
    env = tempBroker();
    const q = 'poison';
    const w = worker(q, '--max-attempts', '2', '--backoff', '50ms');
    await waitFor(async () => (await consumers(q)) >= 1, 20_000, 'worker');
    const broker = await EmbeddedBroker.open({ path: env.url });
    try {
      await broker.publish(q, [{ body: 'not json{' }]);
      await broker.publish(q, [
        { body: JSON.stringify({ qtune: 99, id: 'future', type: 'task' }) },
      ]);
    } finally {
      await broker.close();
    }
    await publish(q, [
      { id: 'boom', fail: true },
      { id: 'good', ms: 10 },
    ]);

    const results: TaskResult[] = [];
    await waitFor(
      async () => {
        results.push(...(await readResults<{ id: number; pid: number }>(q, env.url)));
        return results.some((r) => r.key === 'good') && results.some((r) => r.key === 'boom');
      },
      30_000,
      'results of good and boom',
    );
    expect(results.find((r) => r.key === 'good')!.ok).toBe(true);
    const boom = results.find((r) => r.key === 'boom')!;
    expect(boom.ok).toBe(false);
    expect(boom.error?.code).toBe('HANDLER_FAILED');
    expect(boom.error?.message).toContain('asked to fail: boom');
    expect(boom.attempt).toBe(2);

    const dlq = await runCli(['dlq', q, '--json', '--broker', env.url]);
    const dead = dlq.stdout
      .split('\n')
      .filter((l) => l)
      .map((l) => JSON.parse(l) as { reason: string; body: string });
    expect(dead).toHaveLength(3);
    expect(dead.find((d) => d.body === 'not json{')?.reason).toMatch(/^MALFORMED_JSON/);
    expect(dead.find((d) => d.body.includes('"qtune":99'))?.reason).toMatch(/^UNSUPPORTED_VERSION/);
    expect(dead.find((d) => d.body.includes('boom'))?.reason).toMatch(
      /HANDLER_FAILED.*asked to fail: boom/,
    );
    expect(w.exitCode).toBeNull();

    // requeue puts them back; the poison comes back to the dead-letter queue, nothing is lost.
    const rq = await runCli(['dlq', q, '--requeue', '--json', '--broker', env.url]);
    expect(JSON.parse(rq.stdout)).toEqual({ queue: q, requeued: 3 });
    await waitFor(
      async () => {
        const again = await runCli(['dlq', q, '--json', '--broker', env.url]);
        return again.stdout.split('\n').filter((l) => l).length === 3;
      },
      30_000,
      'poison back in the dead-letter queue',
    );
  });

  it('on SIGTERM finishes tasks in flight, hands the rest back and exits 0', async () => {
    env = tempBroker();
    const q = 'drain';
    const a = worker(q, '--concurrency', '2', '--prefetch', '6', '--grace', '10s');
    await waitFor(async () => (await consumers(q)) >= 1, 20_000, 'worker A');
    await publish(
      q,
      Array.from({ length: 10 }, (_, i) => ({ id: i, ms: 800 })),
    );
    await waitFor(
      () => startedMarks(env.marks).filter((m) => m.pid === a.pid).length >= 2,
      20_000,
      'two tasks started',
    );
    a.kill('SIGTERM');
    const exit = await exited(a);
    expect(exit.code, a.stderrText()).toBe(0);
    const startedByA = startedMarks(env.marks)
      .filter((m) => m.pid === a.pid)
      .map((m) => m.taskId);
    const first = await readResults<{ id: number; pid: number }>(q, env.url);
    // Every task A started was finished and its result published before it exited.
    for (const id of startedByA) expect(first.find((r) => r.taskId === id)?.ok).toBe(true);

    worker(q, '--concurrency', '5');
    const all = [...first];
    await waitFor(
      async () => {
        all.push(...(await readResults<{ id: number; pid: number }>(q, env.url)));
        return new Set(all.map((r) => r.key)).size === 10;
      },
      30_000,
      'all ten results',
    );
    expect(new Set(all.map((r) => r.key)).size).toBe(10);
    expect(all.every((r) => r.ok)).toBe(true);
  });
});
