import { afterEach, describe, expect, it, vi } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import {
  BATCH_HEADER,
  BATCH_TOTAL_HEADER,
  batchResultQueueOf,
  collectBatch,
  runPipeline,
  ventilate,
} from '../../src/patterns/pipeline.js';
import { publishResult } from '../../src/patterns/work-queue.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { startWorker, type Worker } from '../../src/worker/runtime.js';
import { memoryBroker, takeMessages, uniqueQueue } from '../worker/helpers.js';

const hostInfo = { host: 'h', pid: 1, id: 'h:1:0000' };
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function setup(): { broker: MemoryBroker; queue: string } {
  const broker = memoryBroker();
  cleanup.push(() => broker.close());
  return { broker, queue: uniqueQueue('pipe') };
}

async function squareWorker(broker: MemoryBroker, queue: string): Promise<Worker> {
  const w = await startWorker({
    broker,
    queue,
    hostInfo,
    concurrency: 3,
    maxAttempts: 1,
    handler: async (p) => {
      const n = p as number;
      if (n < 0) throw new Error(`negative: ${n}`);
      return n * n;
    },
  });
  cleanup.push(() => w.stop({ graceMs: 0 }));
  return w;
}

describe('pipeline', () => {
  it('tags each task with the batch id and the batch size', async () => {
    const { broker, queue } = setup();
    const sent = await ventilate(broker, queue, [
      { payload: 1, headers: { mine: 'x' } },
      { payload: 2 },
    ]);
    expect(sent.count).toBe(2);
    expect(sent.resultQueue).toBe(batchResultQueueOf(queue, sent.batchId));
    const tasks = await takeMessages(broker, queue, 2);
    expect(tasks.map((t) => t.id)).toEqual(sent.taskIds);
    expect(tasks[0]!.envelope.headers).toEqual({
      mine: 'x',
      [BATCH_HEADER]: sent.batchId,
      [BATCH_TOTAL_HEADER]: 2,
    });
    expect(tasks[1]!.envelope.replyTo).toBe(sent.resultQueue);
  });

  it('runs ventilator → workers → sink until every task has a result', async () => {
    const { broker, queue } = setup();
    await squareWorker(broker, queue);
    const seen: TaskResult[] = [];
    const summary = await runPipeline(
      broker,
      queue,
      [1, 2, 3, -4, 5].map((n) => ({ payload: n })),
      { onResult: (r) => void seen.push(r), timeoutMs: 10_000 },
    );
    expect(summary).toMatchObject({ total: 5, done: 4, failed: 1, duplicates: 0 });
    expect(
      seen
        .filter((r) => r.ok)
        .map((r) => r.value)
        .sort(),
    ).toEqual([1, 25, 4, 9].sort());
    expect(seen.find((r) => !r.ok)?.error?.message).toBe('negative: -4');
    expect(await broker.listQueues()).not.toContain(batchResultQueueOf(queue, summary.batchId));
  });

  it('counts a task once when its result arrives twice, reading the total from the results', async () => {
    const { broker, queue } = setup();
    const sent = await ventilate(broker, queue, [{ payload: 2 }, { payload: 3 }]);
    // Pretend a worker crashed after publishing the first result and the task ran again.
    const [first] = await takeMessages(broker, queue, 1);
    const duplicate: TaskResult = {
      taskId: first!.id,
      ok: true,
      value: 4,
      worker: hostInfo,
      startedAt: 1,
      finishedAt: 2,
      durationMs: 1,
      attempt: 1,
    };
    const headers = { [BATCH_HEADER]: sent.batchId, [BATCH_TOTAL_HEADER]: 2 };
    await publishResult(
      broker,
      sent.resultQueue,
      [duplicate, { ...duplicate, attempt: 2 }],
      headers,
    );
    await broker.publish(queue, [{ id: first!.id, body: first!.body }]);

    const onResult = vi.fn();
    const collecting = collectBatch(broker, queue, sent.batchId, { onResult, timeoutMs: 10_000 });
    await squareWorker(broker, queue);
    const summary = await collecting;
    expect(summary).toMatchObject({ batchId: sent.batchId, total: 2, done: 2, failed: 0 });
    expect(summary.duplicates).toBeGreaterThanOrEqual(2);
    expect(onResult).toHaveBeenCalledTimes(2);
  });

  it('resolves at once for an empty batch and rejects on timeout with what it saw', async () => {
    const { broker, queue } = setup();
    await expect(runPipeline(broker, queue, [])).resolves.toMatchObject({
      total: 0,
      done: 0,
      failed: 0,
    });
    const sent = await ventilate(broker, queue, [{ payload: 1 }]);
    await expect(collectBatch(broker, queue, sent.batchId, { timeoutMs: 30 })).rejects.toThrow(
      /0 of \? results after 30 ms/,
    );
  });
});
