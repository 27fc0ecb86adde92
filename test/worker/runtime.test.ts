import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON_HEADER } from '../../src/broker/contract.js';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { resultQueueOf, submitTasks } from '../../src/patterns/work-queue.js';
import { ErrorCode, TaskError } from '../../src/protocol/errors.js';
import type { TaskResult, WorkerInfo } from '../../src/protocol/result.js';
import type { TaskHandler } from '../../src/worker/handlers/types.js';
import {
  backoffDelay,
  installSignalHandlers,
  startWorker,
  type Worker,
  type WorkerOptions,
} from '../../src/worker/runtime.js';
import { RecordingBroker, deferred, memoryBroker, takeMessages, uniqueQueue } from './helpers.js';

const hostInfo: WorkerInfo = { host: 'test-host', pid: 4242, id: 'test-host:4242:abcd' };
const quickRetry = { baseMs: 5, maxMs: 5, jitter: 0 };

const open: { brokers: MemoryBroker[]; workers: Worker[] } = { brokers: [], workers: [] };

function setup(): { broker: MemoryBroker; queue: string } {
  const broker = memoryBroker();
  open.brokers.push(broker);
  return { broker, queue: uniqueQueue('tasks') };
}

async function worker(
  options: Omit<WorkerOptions, 'hostInfo'> & Partial<Pick<WorkerOptions, 'hostInfo'>>,
) {
  const w = await startWorker({ hostInfo, ...options });
  open.workers.push(w);
  return w;
}

afterEach(async () => {
  for (const w of open.workers.splice(0)) await w.stop({ graceMs: 0 });
  for (const b of open.brokers.splice(0)) await b.close();
});

/** A handler that takes 5 ms per task and records the payloads it started and its most calls at once. */
function overlapping() {
  let running = 0;
  const state = {
    started: [] as unknown[],
    peak: 0,
    handler: async (payload: unknown) => {
      state.started.push(payload);
      running++;
      state.peak = Math.max(state.peak, running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return payload;
    },
  };
  return state;
}

function results(taken: { envelope: { payload: unknown } }[]): TaskResult[] {
  return taken.map((t) => t.envelope.payload as TaskResult);
}

describe('worker runtime', () => {
  it('gives each running task a GPU of its own as ctx.gpu and records it on the result', async () => {
    const { broker, queue } = setup();
    const gpus = [
      { index: 1, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-1' },
      { index: 3, name: 'NVIDIA A100-SXM4-40GB' },
    ];
    const busy = new Set<number>();
    const clashes: number[] = [];
    const seen: (number | undefined)[] = [];
    const handler: TaskHandler = async (payload, ctx) => {
      const index = ctx.gpu!.index;
      seen.push(index);
      if (busy.has(index)) clashes.push(index);
      busy.add(index);
      await new Promise((r) => setTimeout(r, 5));
      busy.delete(index);
      return { payload, index };
    };
    await submitTasks(
      broker,
      queue,
      Array.from({ length: 12 }, (_, n) => ({ payload: { n } })),
    );
    // No concurrency given: one slot per GPU.
    await worker({ broker, queue, handler, gpus });
    const taken = results(await takeMessages(broker, resultQueueOf(queue), 12));
    expect(clashes).toEqual([]);
    expect(new Set(seen)).toEqual(new Set([1, 3]));
    for (const r of taken) {
      const value = r.value as { index: number };
      expect(r.worker.gpu).toEqual(gpus.find((g) => g.index === value.index));
      expect(r.worker).toMatchObject(hostInfo);
    }
  });

  it('shares each GPU among concurrency / GPUs tasks, and refuses a concurrency that is not a multiple', async () => {
    const { broker, queue } = setup();
    const gpus = [{ index: 0 }, { index: 1 }];
    await expect(
      startWorker({ broker, queue, hostInfo, handler: async () => null, gpus, concurrency: 3 }),
    ).rejects.toThrow('concurrency (3) must be a multiple of the number of GPUs (2)');
    const running: number[] = [];
    const gate = deferred();
    const handler: TaskHandler = async (_payload, ctx) => {
      running.push(ctx.gpu!.index);
      await gate.promise;
      return null;
    };
    await submitTasks(
      broker,
      queue,
      Array.from({ length: 8 }, (_, n) => ({ payload: { n } })),
    );
    await worker({ broker, queue, handler, gpus, concurrency: 4 });
    await vi.waitFor(() => expect(running).toHaveLength(4));
    // Four slots, two on each GPU; the other tasks wait for one to free.
    expect([...running].sort()).toEqual([0, 0, 1, 1]);
    gate.resolve();
    await takeMessages(broker, resultQueueOf(queue), 8);
    expect(running).toHaveLength(8);
  });

  it('publishes the result and has it confirmed before it acks the task', async () => {
    const { broker: inner, queue } = setup();
    const broker = new RecordingBroker(inner);
    const [taskId] = await submitTasks(broker, queue, [
      { payload: { n: 4 }, key: 'k-4', task: 'square', headers: { batch: 'b1' } },
    ]);
    const completed = vi.fn();
    const w = await worker({ broker, queue, handler: async (p) => (p as { n: number }).n ** 2 });
    w.on('task:completed', completed);
    await vi.waitFor(() => expect(completed).toHaveBeenCalledTimes(1));

    const published = broker.log.indexOf(`publish:${resultQueueOf(queue)}:1`);
    const acked = broker.log.indexOf(`ack:${taskId}`);
    expect(published).toBeGreaterThanOrEqual(0);
    expect(acked).toBeGreaterThan(published);
    expect(await inner.stats(queue)).toMatchObject({ ready: 0, inFlight: 0, delayed: 0 });

    const [res] = await takeMessages(inner, resultQueueOf(queue), 1);
    expect(res!.envelope).toMatchObject({
      type: 'result',
      correlationId: taskId,
      key: 'k-4',
      task: 'square',
    });
    expect(res!.envelope.headers).toEqual({ batch: 'b1' });
    const result = res!.envelope.payload as TaskResult;
    expect(result).toMatchObject({
      taskId,
      key: 'k-4',
      task: 'square',
      ok: true,
      value: 16,
      attempt: 1,
      worker: hostInfo,
    });
    expect(result.finishedAt).toBeGreaterThanOrEqual(result.startedAt);
    expect(result.durationMs).toBe(result.finishedAt - result.startedAt);
    expect(w.stats()).toMatchObject({ done: 1, failed: 0, deadLettered: 0, inFlight: 0 });
  });

  it('retries a failing task with backoff, then dead-letters it with the reason and a failed result', async () => {
    const { broker, queue } = setup();
    const [taskId] = await submitTasks(broker, queue, [{ payload: 'x', key: 'k-x' }]);
    const handler = vi.fn<TaskHandler>(async () => {
      throw new Error('CUDA out of memory');
    });
    const failed = vi.fn();
    const dead = deferred<{ reason: string }>();
    const w = await worker({ broker, queue, handler, maxAttempts: 3, backoff: quickRetry });
    w.on('task:failed', failed);
    w.on('task:dead', (e) => dead.resolve(e));
    const { reason } = await dead.promise;

    expect(handler).toHaveBeenCalledTimes(3);
    expect(failed.mock.calls.map(([e]) => (e as { willRetry: boolean }).willRetry)).toEqual([
      true,
      true,
      false,
    ]);
    expect(reason).toBe('HANDLER_FAILED: CUDA out of memory');
    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.id).toBe(taskId);
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toBe('HANDLER_FAILED: CUDA out of memory');
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result).toMatchObject({
      taskId,
      key: 'k-x',
      ok: false,
      attempt: 3,
      error: { code: 'HANDLER_FAILED', message: 'CUDA out of memory' },
    });
    expect(result).not.toHaveProperty('value');
    expect(w.stats()).toMatchObject({ done: 0, failed: 3, retried: 2, deadLettered: 1 });
  });

  it('completes a task that succeeds on a later attempt with one result', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: null }]);
    const w = await worker({
      broker,
      queue,
      backoff: quickRetry,
      handler: async (_p, ctx) => {
        if (ctx.attempt < 2) throw new Error('flaky');
        return 'ok';
      },
    });
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result).toMatchObject({ ok: true, value: 'ok', attempt: 2 });
    expect(w.stats()).toMatchObject({ done: 1, failed: 1, retried: 1, deadLettered: 0 });
  });

  it('dead-letters a task at once when the handler throws a non-retryable TaskError', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: {} }]);
    const handler = vi.fn<TaskHandler>(async () => {
      throw new TaskError(ErrorCode.HandlerFailed, 'HTTP 400: bad prompt', { retry: false });
    });
    await worker({ broker, queue, handler, maxAttempts: 5 });
    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toBe(
      'HANDLER_FAILED: HTTP 400: bad prompt',
    );
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it('dead-letters a garbage body with MALFORMED_JSON and keeps serving the next task', async () => {
    const { broker, queue } = setup();
    await broker.declareQueue(queue);
    await broker.publish(queue, [{ id: 'garbage-1', body: 'not json{' }]);
    const [goodId] = await submitTasks(broker, queue, [{ payload: { n: 1 } }]);
    const deadEvents = vi.fn();
    const w = await worker({ broker, queue, handler: async () => 'fine' });
    w.on('task:dead', deadEvents);

    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.id).toBe('garbage-1');
    expect(deadMsg!.body).toBe('not json{');
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toMatch(
      new RegExp(`^MALFORMED_JSON: queue "${queue}": body is not valid JSON`),
    );
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result).toMatchObject({ taskId: goodId, ok: true, value: 'fine' });
    expect(w.stats()).toMatchObject({ done: 1, deadLettered: 1 });
  });

  it('dead-letters an envelope of a newer version with UNSUPPORTED_VERSION', async () => {
    const { broker, queue } = setup();
    await broker.declareQueue(queue);
    await broker.publish(queue, [
      { body: JSON.stringify({ qtune: 2, id: 'x', type: 'task', payload: 1 }) },
    ]);
    const handler = vi.fn<TaskHandler>(async () => null);
    await worker({ broker, queue, handler });
    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toMatch(/^UNSUPPORTED_VERSION: /);
    expect(handler).not.toHaveBeenCalled();
  });

  it('accepts a bare JSON payload as a task and answers on the default result queue', async () => {
    const { broker, queue } = setup();
    await broker.declareQueue(queue);
    const [id] = await broker.publish(queue, [{ body: '{"prompt":"hi"}' }]);
    const seen = vi.fn();
    await worker({
      broker,
      queue,
      handler: async (payload) => {
        seen(payload);
        return 'answer';
      },
    });
    const [res] = await takeMessages(broker, resultQueueOf(queue), 1);
    expect(seen).toHaveBeenCalledWith({ prompt: 'hi' });
    expect(res!.envelope.correlationId).toBe(id);
    expect(res!.envelope.payload).toMatchObject({ taskId: id, ok: true, value: 'answer' });
  });

  it('aborts a task past timeoutMs and fails it with TIMEOUT', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: 1 }]);
    const sawAbort = vi.fn();
    await worker({
      broker,
      queue,
      timeoutMs: 50,
      maxAttempts: 1,
      handler: (_p, ctx) =>
        new Promise((_resolve, reject) => {
          ctx.signal.addEventListener('abort', () => {
            sawAbort();
            reject(new Error('aborted by signal'));
          });
        }),
    });
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result!.ok).toBe(false);
    expect(result!.error?.code).toBe(ErrorCode.Timeout);
    expect(result!.error?.message).toMatch(/ran past its time limit of 50 ms/);
    expect(sawAbort).toHaveBeenCalledTimes(1);
    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toMatch(/^TIMEOUT: /);
  });

  it('fails a timed-out handler that ignores its signal once abortGraceMs has passed', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: 1 }]);
    const never = deferred<unknown>();
    await worker({
      broker,
      queue,
      timeoutMs: 20,
      abortGraceMs: 20,
      maxAttempts: 1,
      handler: () => never.promise,
    });
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result!.error?.code).toBe(ErrorCode.Timeout);
    never.resolve(null);
  });

  it('gives a handler that first reads ctx.signal after its timeout an aborted signal', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: 1 }]);
    const seen: { aborted: boolean; reason: unknown }[] = [];
    await worker({
      broker,
      queue,
      timeoutMs: 20,
      abortGraceMs: 2_000,
      maxAttempts: 1,
      handler: async (_p, ctx) => {
        await new Promise((resolve) => setTimeout(resolve, 100));
        seen.push({ aborted: ctx.signal.aborted, reason: ctx.signal.reason });
        throw new Error('stopped after seeing the signal');
      },
    });
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result!.error?.code).toBe(ErrorCode.Timeout);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.aborted).toBe(true);
    expect(String((seen[0]!.reason as Error).message)).toMatch(/time limit of 20 ms/);
  });

  it('dead-letters a task whose deadline passed with DEADLINE_EXCEEDED, without running it', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: 1, deadline: Date.now() - 1_000 }]);
    const handler = vi.fn<TaskHandler>(async () => null);
    await worker({ broker, queue, handler });
    const [deadMsg] = await takeMessages(broker, `${queue}.dead`, 1);
    expect(deadMsg!.headers[DEAD_LETTER_REASON_HEADER]).toMatch(/^DEADLINE_EXCEEDED: /);
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result!.error?.code).toBe(ErrorCode.DeadlineExceeded);
    expect(handler).not.toHaveBeenCalled();
  });

  it('runs at most `concurrency` tasks at once', async () => {
    const { broker, queue } = setup();
    await submitTasks(
      broker,
      queue,
      Array.from({ length: 6 }, (_, i) => ({ payload: i })),
    );
    const overlap = overlapping();
    await worker({ broker, queue, concurrency: 2, prefetch: 6, handler: overlap.handler });
    await takeMessages(broker, resultQueueOf(queue), 6);
    expect(overlap.peak).toBe(2);
  });

  it("starts the next task while the last one's result is still being stored", async () => {
    const { broker: inner, queue } = setup();
    const broker = new RecordingBroker(inner);
    await submitTasks(
      broker,
      queue,
      Array.from({ length: 3 }, (_, i) => ({ payload: i })),
    );
    const openSettles = broker.holdSettles();
    const overlap = overlapping();
    const w = await worker({
      broker,
      queue,
      concurrency: 1,
      prefetch: 3,
      handler: overlap.handler,
    });
    // One slot: the handlers ran one after the other, none waiting for a result to be stored.
    await vi.waitFor(() => expect(overlap.started).toEqual([0, 1, 2]));
    expect(overlap.peak).toBe(1);
    expect(broker.log.filter((e) => e.startsWith('ack:'))).toHaveLength(0);
    expect(w.stats().inFlight).toBe(3);
    openSettles();
    const taken = await takeMessages(inner, resultQueueOf(queue), 3);
    expect(results(taken).map((r) => r.value)).toEqual([0, 1, 2]);
    await vi.waitFor(() => expect(broker.log.filter((e) => e.startsWith('ack:'))).toHaveLength(3));
  });

  it('hands in every result with its ack, the result first', async () => {
    const { broker: inner, queue } = setup();
    const broker = new RecordingBroker(inner);
    await submitTasks(
      broker,
      queue,
      Array.from({ length: 5 }, (_, i) => ({ payload: i })),
    );
    const gate = deferred();
    const w = await worker({
      broker,
      queue,
      concurrency: 5,
      handler: async (p) => {
        await gate.promise;
        return p;
      },
    });
    await vi.waitFor(() => expect(w.stats().inFlight).toBe(5));
    gate.resolve();
    await takeMessages(inner, resultQueueOf(queue), 5);
    const results = broker.log.filter((e) => e.startsWith(`publish:${resultQueueOf(queue)}:`));
    expect(results).toHaveLength(5);
    const acks = broker.log.filter((e) => e.startsWith('ack:'));
    expect(acks).toHaveLength(5);
    for (const ack of acks) {
      expect(broker.log[broker.log.indexOf(ack) - 1]).toBe(`publish:${resultQueueOf(queue)}:1`);
    }
  });

  it('keeps extending the lease of a task that runs longer than the lease', async () => {
    const { broker, queue } = setup();
    await broker.declareQueue(queue, { leaseMs: 150 });
    await submitTasks(broker, queue, [{ payload: 1 }]);
    const handler = vi.fn<TaskHandler>(async () => {
      await new Promise((r) => setTimeout(r, 600));
      return 'long';
    });
    await worker({ broker, queue, handler, concurrency: 2 });
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result).toMatchObject({ ok: true, value: 'long', attempt: 1 });
    expect(handler).toHaveBeenCalledTimes(1);
  });

  it('reports progress and lets the handler extend its lease', async () => {
    const { broker, queue } = setup();
    const [taskId] = await submitTasks(broker, queue, [{ payload: 1 }]);
    const progress = vi.fn();
    const w = await worker({
      broker,
      queue,
      handler: async (_p, ctx) => {
        ctx.progress({ epoch: 1, loss: 0.5 });
        await ctx.heartbeat(10_000);
        return null;
      },
    });
    w.on('task:progress', progress);
    await takeMessages(broker, resultQueueOf(queue), 1);
    expect(progress).toHaveBeenCalledWith(
      expect.objectContaining({ taskId, info: { epoch: 1, loss: 0.5 } }),
    );
  });

  it('gives a context that survives spreading and destructuring', async () => {
    const { broker, queue } = setup();
    const [taskId] = await submitTasks(broker, queue, [{ payload: 1, key: 'k-1' }]);
    const progress = vi.fn();
    const seen: Record<string, unknown> = {};
    const w = await worker({
      broker,
      queue,
      handler: async (_p, ctx) => {
        const copy = { ...ctx };
        const { signal, log, heartbeat, progress: report } = ctx;
        seen.keys = Object.keys(copy).sort();
        seen.signal = copy.signal instanceof AbortSignal && signal === copy.signal;
        seen.log = typeof copy.log.info === 'function' && log === copy.log;
        report({ step: 1 });
        copy.progress({ step: 2 });
        await heartbeat(10_000);
        await copy.heartbeat();
        return { taskId: copy.taskId, key: copy.key, attempt: copy.attempt };
      },
    });
    w.on('task:progress', progress);
    const [result] = results(await takeMessages(broker, resultQueueOf(queue), 1));
    expect(result).toMatchObject({ ok: true, value: { taskId, key: 'k-1', attempt: 1 } });
    expect(seen).toEqual({
      keys: ['attempt', 'headers', 'heartbeat', 'key', 'log', 'progress', 'signal', 'taskId'],
      signal: true,
      log: true,
    });
    expect(progress.mock.calls.map(([e]) => (e as { info: unknown }).info)).toEqual([
      { step: 1 },
      { step: 2 },
    ]);
  });

  it('on stop, finishes running tasks and releases unstarted ones, losing nothing', async () => {
    const { broker: inner, queue } = setup();
    const broker = new RecordingBroker(inner);
    const ids = await submitTasks(
      broker,
      queue,
      Array.from({ length: 6 }, (_, i) => ({ payload: i })),
    );
    const gate = deferred();
    const started: unknown[] = [];
    const w = await worker({
      broker,
      queue,
      concurrency: 2,
      prefetch: 4,
      handler: async (p) => {
        started.push(p);
        await gate.promise;
        return p;
      },
    });
    await vi.waitFor(() => expect(w.stats()).toMatchObject({ inFlight: 2, waiting: 2 }));
    const stopped = w.stop({ graceMs: 10_000 });
    await vi.waitFor(() => expect(w.stats().waiting).toBe(0));
    gate.resolve();
    await stopped;

    expect(started).toHaveLength(2);
    expect(broker.log.filter((e) => e.startsWith('release:'))).toHaveLength(2);
    expect(await inner.stats(queue)).toMatchObject({ ready: 4, inFlight: 0, delayed: 0 });
    const res = results(await takeMessages(inner, resultQueueOf(queue), 2));
    expect(res.every((r) => r.ok)).toBe(true);
    const remaining = await takeMessages(inner, queue, 4);
    // Every task is either answered or back in the queue.
    expect([...res.map((r) => r.taskId), ...remaining.map((m) => m.id)].sort()).toEqual(
      [...ids].sort(),
    );
  });

  it('on stop, aborts tasks still running after the grace period and nacks them', async () => {
    const { broker, queue } = setup();
    const [id] = await submitTasks(broker, queue, [{ payload: 1 }]);
    const signals: AbortSignal[] = [];
    const never = deferred<unknown>();
    const w = await worker({
      broker,
      queue,
      handler: (_p, ctx) => {
        signals.push(ctx.signal);
        return never.promise;
      },
    });
    await vi.waitFor(() => expect(w.stats().inFlight).toBe(1));
    await w.stop({ graceMs: 20 });
    expect(signals[0]!.aborted).toBe(true);
    const stats = await broker.stats(queue);
    expect(stats.inFlight).toBe(0);
    expect(stats.ready + stats.delayed).toBe(1);
    const [back] = await takeMessages(broker, queue, 1);
    expect(back!.id).toBe(id);
    never.resolve(null);
  });

  it('installs signal handlers: the first signal stops gracefully, a second forces exit 130', async () => {
    const { broker, queue } = setup();
    await submitTasks(broker, queue, [{ payload: 1 }]);
    const gate = deferred();
    const w = await worker({ broker, queue, handler: async () => gate.promise });
    await vi.waitFor(() => expect(w.stats().inFlight).toBe(1));
    const onExit = vi.fn();
    const forceExit = vi.fn();
    const onSignal = vi.fn();
    const uninstall = installSignalHandlers(w, {
      graceMs: 10_000,
      onExit,
      forceExit,
      onSignal,
      signals: ['SIGUSR2'],
    });
    try {
      process.emit('SIGUSR2', 'SIGUSR2');
      expect(onSignal).toHaveBeenCalledWith('SIGUSR2');
      expect(w.stats().stopping).toBe(true);
      process.emit('SIGUSR2', 'SIGUSR2');
      expect(forceExit).toHaveBeenCalledWith(130);
      expect(onExit).not.toHaveBeenCalled();
      gate.resolve();
      await vi.waitFor(() => expect(onExit).toHaveBeenCalledWith(0));
    } finally {
      uninstall();
    }
    expect(process.listenerCount('SIGUSR2')).toBe(0);
  });
});

describe('backoffDelay', () => {
  it('doubles from baseMs up to maxMs', () => {
    const opts = { baseMs: 100, maxMs: 1_000, jitter: 0 };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, opts))).toEqual([
      100, 200, 400, 800, 1000, 1000,
    ]);
  });

  it('takes at most the jitter fraction away', () => {
    const opts = { baseMs: 1_000, jitter: 0.25 };
    expect(backoffDelay(1, opts, () => 0)).toBe(1_000);
    expect(backoffDelay(1, opts, () => 0.999999)).toBe(750);
  });
});
