import { afterEach, describe, expect, it, vi } from 'vitest';
import { DEAD_LETTER_REASON_HEADER } from '../../src/broker/contract.js';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import {
  consumeResults,
  publishResult,
  resultQueueOf,
  submitTasks,
} from '../../src/patterns/work-queue.js';
import { encode } from '../../src/protocol/codec.js';
import { createEnvelope } from '../../src/protocol/envelope.js';
import type { TaskResult } from '../../src/protocol/result.js';
import { memoryBroker, takeMessages, uniqueQueue } from '../worker/helpers.js';

const brokers: MemoryBroker[] = [];
function broker(): MemoryBroker {
  const b = memoryBroker();
  brokers.push(b);
  return b;
}
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});

function sampleResult(taskId: string, ok = true): TaskResult {
  return {
    taskId,
    key: `key-${taskId}`,
    ok,
    ...(ok
      ? { value: { score: 0.9 } }
      : { error: { code: 'HANDLER_FAILED' as const, message: 'boom' } }),
    worker: { host: 'h', pid: 1, id: 'h:1:0000' },
    startedAt: 1,
    finishedAt: 3,
    durationMs: 2,
    attempt: 1,
  };
}

describe('work queue', () => {
  it('names the result queue after the task queue', () => {
    expect(resultQueueOf('trials')).toBe('trials.results');
  });

  it('submits task envelopes replying to the result queue, in batches, returning their ids', async () => {
    const b = broker();
    const queue = uniqueQueue();
    const publish = vi.spyOn(b, 'publish');
    const ids = await submitTasks<unknown>(
      b,
      queue,
      [
        { payload: { a: 1 }, key: 'k1', task: 'fit', priority: 5, headers: { run: 'r1' } },
        { payload: 2 },
        { payload: 3, deadline: 4_102_444_800_000 },
      ],
      { batchSize: 2 },
    );
    expect(ids).toHaveLength(3);
    expect(publish.mock.calls.map(([q, msgs]) => [q, msgs.length])).toEqual([
      [queue, 2],
      [queue, 1],
    ]);
    expect(publish.mock.calls[0]![1][0]!.priority).toBe(5);
    const taken = await takeMessages(b, queue, 3);
    expect(taken.map((t) => t.id)).toEqual(ids);
    expect(taken[0]!.envelope).toMatchObject({
      qtune: 1,
      id: ids[0],
      type: 'task',
      task: 'fit',
      key: 'k1',
      payload: { a: 1 },
      replyTo: resultQueueOf(queue),
      headers: { run: 'r1' },
    });
    expect(taken[2]!.envelope.deadline).toBe(4_102_444_800_000);
    expect(await b.listQueues()).toContain(resultQueueOf(queue));
  });

  it('keeps several batches in flight with inFlight, returning every id in item order', async () => {
    const b = broker();
    const queue = uniqueQueue();
    const publish = b.publish.bind(b);
    let running = 0;
    let most = 0;
    vi.spyOn(b, 'publish').mockImplementation(async (q, msgs) => {
      most = Math.max(most, ++running);
      await new Promise((r) => setTimeout(r, 5));
      running--;
      return publish(q, msgs);
    });
    const items = Array.from({ length: 10 }, (_, i) => ({ payload: i }));
    const ids = await submitTasks(b, queue, items, { batchSize: 2, inFlight: 3 });
    expect(most).toBe(3);
    const taken = await takeMessages(b, queue, 10);
    expect(new Set(taken.map((t) => t.id))).toEqual(new Set(ids));
    const byId = new Map(taken.map((t) => [t.id, t.envelope.payload]));
    expect(ids.map((id) => byId.get(id))).toEqual(items.map((i) => i.payload));
  });

  it('rejects with the first failed batch once the batches in flight have settled', async () => {
    const b = broker();
    const queue = uniqueQueue();
    const publish = b.publish.bind(b);
    const settled: number[] = [];
    let call = 0;
    vi.spyOn(b, 'publish').mockImplementation(async (q, msgs) => {
      const n = call++;
      // The second batch fails at once, while the first and third are still in flight.
      if (n === 1) throw new Error('disk is full');
      await new Promise((r) => setTimeout(r, 20));
      settled.push(n);
      return publish(q, msgs);
    });
    const unhandled = vi.fn();
    process.on('unhandledRejection', unhandled);
    try {
      await expect(
        submitTasks(b, queue, [{ payload: 1 }, { payload: 2 }, { payload: 3 }], {
          batchSize: 1,
          inFlight: 3,
        }),
      ).rejects.toThrow('disk is full');
      expect(settled.sort()).toEqual([0, 2]);
      await new Promise((r) => setTimeout(r, 10));
      expect(unhandled).not.toHaveBeenCalled();
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('consumes results, acking each after the handler returns', async () => {
    const b = broker();
    const queue = uniqueQueue();
    await b.declareQueue(resultQueueOf(queue));
    await publishResult(b, resultQueueOf(queue), [sampleResult('t1'), sampleResult('t2', false)], {
      batch: 'x',
    });
    const seen: TaskResult[] = [];
    const consumer = await consumeResults(b, queue, async (result, envelope) => {
      expect(envelope).toMatchObject({
        type: 'result',
        correlationId: result.taskId,
        key: result.key,
      });
      expect(envelope.headers).toEqual({ batch: 'x' });
      seen.push(result);
    });
    await vi.waitFor(() => expect(seen).toHaveLength(2));
    await consumer.cancel();
    expect(seen.map((r) => [r.taskId, r.ok])).toEqual([
      ['t1', true],
      ['t2', false],
    ]);
    expect(await b.stats(resultQueueOf(queue))).toMatchObject({ ready: 0, inFlight: 0 });
  });

  it('gives a result back when the handler throws, so it is delivered again', async () => {
    const b = broker();
    const queue = uniqueQueue();
    await b.declareQueue(resultQueueOf(queue));
    await publishResult(b, resultQueueOf(queue), sampleResult('t1'));
    const attempts: number[] = [];
    const consumer = await consumeResults(b, queue, async () => {
      attempts.push(attempts.length + 1);
      if (attempts.length === 1) throw new Error('store is down');
    });
    await vi.waitFor(() => expect(attempts).toEqual([1, 2]));
    await consumer.cancel();
    expect(await b.stats(resultQueueOf(queue))).toMatchObject({
      ready: 0,
      inFlight: 0,
      delayed: 0,
    });
  });

  it('dead-letters a message on the result queue that is not a valid result', async () => {
    const b = broker();
    const queue = uniqueQueue();
    const resultQueue = resultQueueOf(queue);
    await b.declareQueue(resultQueue);
    const notAResult = createEnvelope({ type: 'result', payload: { taskId: 7 } });
    await b.publish(resultQueue, [{ body: encode(notAResult) }, { body: '{{{' }]);
    const invalid = vi.fn();
    const handler = vi.fn();
    const consumer = await consumeResults(b, queue, handler, { onInvalid: invalid });
    const dead = await takeMessages(b, `${resultQueue}.dead`, 2);
    await consumer.cancel();
    expect(handler).not.toHaveBeenCalled();
    expect(invalid).toHaveBeenCalledTimes(2);
    const reasons = dead.map((d) => d.headers[DEAD_LETTER_REASON_HEADER]);
    expect(reasons[0]).toMatch(/^INVALID_ENVELOPE: .*"payload\.taskId"/);
    expect(reasons[1]).toMatch(/^MALFORMED_JSON: /);
  });
});
