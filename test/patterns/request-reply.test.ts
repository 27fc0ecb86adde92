import { afterEach, describe, expect, it } from 'vitest';
import type { Consumer } from '../../src/broker/contract.js';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { RemoteError, Requester, serveRequests } from '../../src/patterns/request-reply.js';
import { ErrorCode, QtuneError, TaskError } from '../../src/protocol/errors.js';
import { memoryBroker, uniqueQueue } from '../worker/helpers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function setup() {
  const broker: MemoryBroker = memoryBroker();
  cleanup.push(() => broker.close());
  const requester = await Requester.create(broker, { timeoutMs: 2_000 });
  cleanup.push(() => requester.close());
  return { broker, requester, queue: uniqueQueue('rpc') };
}

function track(consumer: Consumer): Consumer {
  cleanup.push(() => consumer.cancel());
  return consumer;
}

describe('request/reply', () => {
  it('answers a request through the reply queue, matched by correlation id', async () => {
    const { broker, requester, queue } = await setup();
    track(
      await serveRequests(
        broker,
        queue,
        async (payload: { a: number; b: number }) => payload.a + payload.b,
      ),
    );
    const answers = await Promise.all([
      requester.request<number>(queue, { a: 1, b: 2 }),
      requester.request<number>(queue, { a: 10, b: 20 }),
      requester.request<number>(queue, { a: 100, b: 200 }),
    ]);
    expect(answers).toEqual([3, 30, 300]);
    expect(requester.pending).toBe(0);
  });

  it('rejects with the remote message and code when the handler throws', async () => {
    const { broker, requester, queue } = await setup();
    track(
      await serveRequests(broker, queue, () => {
        throw new TaskError(ErrorCode.UnknownTask, 'no model named "gpt-9"');
      }),
    );
    const error = await requester.request(queue, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteError);
    expect((error as RemoteError).message).toBe('no model named "gpt-9"');
    expect((error as RemoteError).code).toBe(ErrorCode.UnknownTask);
    expect((error as RemoteError).queue).toBe(queue);
  });

  it('rejects with REPLY_TIMEOUT when nobody answers in time, and forgets the call', async () => {
    const { requester, queue } = await setup();
    const error = await requester
      .request(queue, 'ping', { timeoutMs: 30 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(QtuneError);
    expect((error as QtuneError).code).toBe(ErrorCode.ReplyTimeout);
    expect((error as QtuneError).message).toContain(`queue "${queue}"`);
    expect((error as QtuneError).message).toContain('30 ms');
    expect(requester.pending).toBe(0);
  });

  it('rejects calls still waiting when the requester closes, and deletes its reply queue', async () => {
    const { broker, requester, queue } = await setup();
    const call = requester.request(queue, 'ping');
    await Promise.resolve();
    await requester.close();
    await expect(call).rejects.toThrow(/closed before request/);
    expect(await broker.listQueues()).not.toContain(requester.replyQueue);
    await expect(requester.request(queue, 'again')).rejects.toThrow(/is closed/);
  });

  it('drops a request whose requester already gave up instead of answering it', async () => {
    const { broker, requester, queue } = await setup();
    let handled = 0;
    await expect(requester.request(queue, 1, { timeoutMs: 20 })).rejects.toThrow(/no reply/);
    track(
      await serveRequests(broker, queue, () => {
        handled++;
        return 'late';
      }),
    );
    await expect(requester.request(queue, 2)).resolves.toBe('late');
    expect(handled).toBe(1);
    expect(await broker.stats(queue)).toMatchObject({ ready: 0, inFlight: 0 });
  });

  it('rejects with the abort reason, and leaves no unhandled rejection, when aborted while publishing', async () => {
    const { broker, requester, queue } = await setup();
    await broker.declareQueue(queue);
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    const publish = broker.publish.bind(broker);
    broker.publish = async (...args: Parameters<typeof broker.publish>) => {
      await new Promise((r) => setTimeout(r, 50));
      return publish(...args);
    };
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('worker stopping')), 10);
    await expect(requester.request(queue, { n: 1 }, { signal: controller.signal })).rejects.toThrow(
      'worker stopping',
    );
    await new Promise((r) => setTimeout(r, 50));
    process.off('unhandledRejection', onUnhandled);
    expect(unhandled).toEqual([]);
  });
});
