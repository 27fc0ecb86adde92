/**
 * One worker-crash suite, run unchanged against every way a `qtune worker` reaches a broker
 * (the embedded broker file, RabbitMQ, the HTTP gateway): real `qtune worker` processes from
 * the built CLI, killed or stopped mid-task, with the sleepy handler (test/fixtures/handlers).
 *
 * - kill -9 mid-task: the killed worker's tasks go to another worker and every task is
 *   completed exactly once; nothing is dead-lettered.
 * - poison: a payload that is not JSON, an envelope of a future version and a handler that
 *   always fails are dead-lettered with their reason, while the worker keeps serving; a requeue
 *   brings them back and they return to the dead-letter queue.
 * - SIGTERM: the tasks in flight are finished and their results published, no new task starts,
 *   the rest are handed back to the queue, and the worker exits 0; another worker does the rest,
 *   so no task is lost or done twice.
 *
 * Tasks in flight wait on a gate file, so "mid-task" is a state the test sees (a started mark
 * per task), not a race against a sleep.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import type { Broker } from '../../src/broker/contract.js';
import { openBroker } from '../../src/broker/open.js';
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
} from '../cli/helpers.js';

const SLEEPY = join(FIXTURES, 'handlers/sleepy.mjs');
const WAIT_MS = 45_000;

/** Where a test's files live: marks of started tasks, the gate, publish files. */
export interface CrashDir {
  readonly dir: string;
  readonly marks: string;
}

/** One way for a worker to reach a broker. */
export interface CrashTarget {
  /** The broker the test publishes to and reads results and dead letters from (`--broker`). */
  readonly brokerUrl: string;
  /** What connects a `qtune worker` to it, after the queue name (`--broker URL`, `--gateway URL ...`). */
  readonly workerArgs: readonly string[];
  /** Extra environment of a worker process. */
  readonly workerEnv?: NodeJS.ProcessEnv;
  /** Submits tasks keyed by their `id` field (default: `qtune publish --key-field id`). */
  submit?(queue: string, payloads: readonly unknown[]): Promise<void>;
  /** Consumers of `queue` as the workers' side counts them (default: the broker's stats). */
  consumers?(queue: string): Promise<number>;
  /** Stops what the target started for this test. */
  close?(): Promise<void>;
}

type Worker = ReturnType<typeof startCli>;
type Result = TaskResult<{ id: number; pid: number }>;

/**
 * Registers the worker-crash tests under `name`; `start` builds the target of one test in
 * `dir` (a fresh temporary folder).
 */
export function workerCrashSuite(
  name: string,
  start: (dir: CrashDir) => Promise<CrashTarget>,
): void {
  describe(`qtune worker crashes on ${name}`, () => {
    let dir: CrashDir | undefined;
    let target: CrashTarget | undefined;
    let broker: Broker | undefined;
    const children: Worker[] = [];

    beforeAll(() => assertBuilt());
    afterEach(async () => {
      killAll(children);
      await Promise.all(children.splice(0).map((c) => exited(c)));
      await broker?.close();
      await target?.close?.();
      if (dir) rmSync(dir.dir, { recursive: true, force: true });
      broker = target = dir = undefined;
    });

    /** A fresh target, a handle on its broker, and a queue name of its own. */
    async function setUp(label: string): Promise<{ t: CrashTarget; b: Broker; q: string }> {
      const root = mkdtempSync(join(tmpdir(), 'qtune-crash-'));
      const marks = join(root, 'marks');
      mkdirSync(marks);
      dir = { dir: root, marks };
      target = await start(dir);
      broker = await openBroker(target.brokerUrl);
      return { t: target, b: broker, q: `crash-${label}-${Date.now().toString(36)}` };
    }

    function worker(t: CrashTarget, queue: string, ...extra: string[]): Worker {
      const c = startCli(['worker', queue, ...t.workerArgs, '--module', SLEEPY, ...extra], {
        MARK_DIR: dir!.marks,
        ...t.workerEnv,
      });
      children.push(c);
      return c;
    }

    async function consumers(t: CrashTarget, b: Broker, queue: string): Promise<number> {
      if (t.consumers) return t.consumers(queue);
      // The queue does not exist until the worker has declared it.
      return b.stats(queue).then(
        (s) => s.consumers,
        () => 0,
      );
    }

    function submit(t: CrashTarget, queue: string, payloads: readonly unknown[]): Promise<void> {
      return t.submit
        ? t.submit(queue, payloads)
        : publishPayloads(dir!.dir, t.brokerUrl, queue, payloads);
    }

    const startedBy = (w: Worker): string[] =>
      startedMarks(dir!.marks)
        .filter((m) => m.pid === w.pid)
        .map((m) => m.taskId);

    /** Reads results into `into` until there is one for each of `keys`. */
    async function collect(t: CrashTarget, queue: string, into: Result[], keys: number) {
      await waitFor(
        async () => {
          into.push(...(await readResults<{ id: number; pid: number }>(queue, t.brokerUrl)));
          return new Set(into.map((r) => r.key)).size === keys;
        },
        WAIT_MS,
        `results of all ${keys} tasks`,
      );
    }

    /** Stops `w` with SIGTERM (exit 0), then reads what it published last into `into`. */
    async function stopAndDrain(t: CrashTarget, queue: string, w: Worker, into: Result[]) {
      w.kill('SIGTERM');
      expect((await exited(w)).code, w.stderrText()).toBe(0);
      into.push(...(await readResults<{ id: number; pid: number }>(queue, t.brokerUrl)));
    }

    async function deadLetters(t: CrashTarget, queue: string) {
      const res = await runCli(['dlq', queue, '--json', '--broker', t.brokerUrl]);
      expect(res.code, res.stderr).toBe(0);
      return res.stdout
        .split('\n')
        .filter((l) => l)
        .map((l) => JSON.parse(l) as { reason: string; body: string });
    }

    it(
      'redelivers the tasks of a worker killed with SIGKILL mid-task and completes each exactly once',
      { timeout: 120_000 },
      async () => {
        const { t, b, q } = await setUp('killed');
        const gate = join(dir!.dir, 'gate');
        const a = worker(t, q, '--concurrency', '2', '--prefetch', '2');
        await waitFor(async () => (await consumers(t, b, q)) >= 1, WAIT_MS, 'worker A to consume');
        await submit(
          t,
          q,
          Array.from({ length: 6 }, (_, i) => ({ id: i, gate })),
        );
        await waitFor(() => startedBy(a).length === 2, WAIT_MS, 'A to start two tasks');
        a.kill('SIGKILL');
        await exited(a);
        const killed = startedBy(a);
        expect(killed).toHaveLength(2);

        writeFileSync(gate, '');
        const w = worker(t, q, '--concurrency', '6');
        const results: Result[] = [];
        await collect(t, q, results, 6);
        expect(results.every((r) => r.ok)).toBe(true);
        expect(new Set(results.map((r) => r.key))).toEqual(new Set(['0', '1', '2', '3', '4', '5']));
        for (const taskId of killed) {
          const r = results.find((x) => x.taskId === taskId);
          expect(r, `result of killed task ${taskId}`).toBeDefined();
          expect(r!.worker.pid).toBe(w.pid);
          expect(r!.attempt).toBeGreaterThanOrEqual(2);
        }
        // Once the second worker is gone, nothing more can come: each task has one result.
        await stopAndDrain(t, q, w, results);
        expect(results.map((r) => r.key).sort()).toEqual(['0', '1', '2', '3', '4', '5']);
        expect(await b.stats(q)).toMatchObject({ ready: 0, inFlight: 0, deadLettered: 0 });
        expect(await deadLetters(t, q)).toEqual([]);
      },
    );

    it(
      'dead-letters poison messages with their reason while the worker keeps serving',
      { timeout: 120_000 },
      async () => {
        const { t, b, q } = await setUp('poison');
        const w = worker(t, q, '--max-attempts', '2', '--backoff', '50ms');
        await waitFor(
          async () => (await consumers(t, b, q)) >= 1,
          WAIT_MS,
          'the worker to consume',
        );
        await b.publish(q, [{ body: 'not json{' }]);
        await b.publish(q, [{ body: JSON.stringify({ qtune: 99, id: 'future', type: 'task' }) }]);
        await submit(t, q, [
          { id: 'boom', fail: true },
          { id: 'good', ms: 10 },
        ]);

        const results: TaskResult[] = [];
        await waitFor(
          async () => {
            results.push(...(await readResults(q, t.brokerUrl)));
            return results.some((r) => r.key === 'good') && results.some((r) => r.key === 'boom');
          },
          WAIT_MS,
          'results of good and boom',
        );
        expect(results.find((r) => r.key === 'good')!.ok).toBe(true);
        const boom = results.find((r) => r.key === 'boom')!;
        expect(boom.ok).toBe(false);
        expect(boom.error?.code).toBe('HANDLER_FAILED');
        expect(boom.error?.message).toContain('asked to fail: boom');
        expect(boom.attempt).toBe(2);

        const dead = await deadLetters(t, q);
        expect(dead).toHaveLength(3);
        expect(dead.find((d) => d.body === 'not json{')?.reason).toMatch(/^MALFORMED_JSON/);
        expect(dead.find((d) => d.body.includes('"qtune":99'))?.reason).toMatch(
          /^UNSUPPORTED_VERSION/,
        );
        expect(dead.find((d) => d.body.includes('boom'))?.reason).toMatch(
          /HANDLER_FAILED.*asked to fail: boom/,
        );
        expect(w.exitCode).toBeNull();

        // requeue puts them back; the poison comes back to the dead-letter queue, nothing is lost.
        const rq = await runCli(['dlq', q, '--requeue', '--json', '--broker', t.brokerUrl]);
        expect(JSON.parse(rq.stdout)).toEqual({ queue: q, requeued: 3 });
        await waitFor(
          async () => (await deadLetters(t, q)).length === 3,
          WAIT_MS,
          'poison back in the dead-letter queue',
        );
        expect(w.exitCode).toBeNull();
      },
    );

    it(
      'on SIGTERM finishes the tasks in flight, hands the rest back and exits 0; no task is lost or done twice',
      { timeout: 120_000 },
      async () => {
        const { t, b, q } = await setUp('drain');
        const gate = join(dir!.dir, 'gate');
        const a = worker(t, q, '--concurrency', '2', '--prefetch', '6', '--grace', '10s');
        await waitFor(async () => (await consumers(t, b, q)) >= 1, WAIT_MS, 'worker A to consume');
        await submit(
          t,
          q,
          Array.from({ length: 10 }, (_, i) => ({ id: i, gate })),
        );
        await waitFor(() => startedBy(a).length === 2, WAIT_MS, 'A to start two tasks');
        a.kill('SIGTERM');
        await waitFor(
          () => a.stderrText().includes('stopping: finishing tasks in flight'),
          WAIT_MS,
          'A to begin stopping',
        );
        // The two tasks in flight may finish now; no other may start.
        writeFileSync(gate, '');
        expect((await exited(a)).code, a.stderrText()).toBe(0);
        const startedByA = startedBy(a);
        expect(startedByA).toHaveLength(2);
        const first = await readResults<{ id: number; pid: number }>(q, t.brokerUrl);
        // Every task A started was finished and its result published before it exited.
        expect(first.map((r) => r.taskId).sort()).toEqual([...startedByA].sort());
        expect(first.every((r) => r.ok)).toBe(true);
        // The rest are back in the queue, none held by the worker that left.
        await waitFor(
          async () => {
            const s = await b.stats(q);
            return s.ready === 8 && s.inFlight === 0;
          },
          WAIT_MS,
          'the eight other tasks ready again',
        );

        const w = worker(t, q, '--concurrency', '5');
        const all = [...first];
        await collect(t, q, all, 10);
        await stopAndDrain(t, q, w, all);
        expect(all.every((r) => r.ok)).toBe(true);
        expect(all.map((r) => Number(r.key)).sort((x, y) => x - y)).toEqual([
          0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ]);
        expect(startedBy(w).filter((id) => startedByA.includes(id))).toEqual([]);
        expect(await b.stats(q)).toMatchObject({ ready: 0, inFlight: 0, deadLettered: 0 });
      },
    );
  });
}
