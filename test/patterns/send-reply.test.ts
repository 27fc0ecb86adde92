import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { RemoteError, Requester, serveRequests } from '../../src/patterns/request-reply.js';
import { ErrorCode } from '../../src/protocol/errors.js';
import { memoryBroker, uniqueQueue } from '../worker/helpers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe('request/reply: the reply side', () => {
  it('answers with an error reply naming why when the handler returns a value that is not JSON', async () => {
    const broker: MemoryBroker = memoryBroker();
    cleanup.push(() => broker.close());
    const requester = await Requester.create(broker, { timeoutMs: 2_000 });
    cleanup.push(() => requester.close());
    const queue = uniqueQueue('rpc');
    const consumer = await serveRequests(broker, queue, () => ({ n: 1n }));
    cleanup.push(() => consumer.cancel());
    const err = await requester.request(queue, null).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect((err as RemoteError).code).toBe(ErrorCode.HandlerFailed);
    expect((err as Error).message).toMatch(/^reply is not JSON: /);
    expect(await broker.stats(queue)).toMatchObject({ ready: 0, inFlight: 0, deadLettered: 0 });
  });
});
