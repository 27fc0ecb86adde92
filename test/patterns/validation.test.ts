import { afterEach, describe, expect, it } from 'vitest';
import type { MemoryBroker } from '../../src/broker/memory/index.js';
import { Requester } from '../../src/patterns/request-reply.js';
import { publishEvent } from '../../src/patterns/pubsub.js';
import { createTaskEnvelope, submitTasks } from '../../src/patterns/work-queue.js';
import { decode, encode } from '../../src/protocol/codec.js';
import { ENVELOPE_LIMITS } from '../../src/protocol/envelope.js';
import { DecodeError, ErrorCode, InputError } from '../../src/protocol/errors.js';
import { memoryBroker, uniqueQueue } from '../worker/helpers.js';

const brokers: MemoryBroker[] = [];
function broker(): MemoryBroker {
  const b = memoryBroker();
  brokers.push(b);
  return b;
}
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.close();
});

describe('publishing validates envelopes as workers read them', () => {
  it('refuses a task whose key a worker would dead-letter, naming the task and the field, and publishes nothing', async () => {
    const b = broker();
    const queue = uniqueQueue('keys');
    const items = [{ payload: 1 }, { payload: 2 }, { payload: 3, key: 'k'.repeat(2000) }];
    const err = await submitTasks(b, queue, items).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toBe(
      'task 3: invalid envelope at "key": Too big: expected string to have <=1024 characters (got 2000)',
    );
    expect(await b.listQueues()).not.toContain(queue);
    // The worker's decode says the same of the same envelope.
    const env = createTaskEnvelope(items[2]!, `${queue}.results`);
    expect(() => decode(encode(env))).toThrow(DecodeError);
    expect(() => decode(encode(env))).toThrow(/invalid envelope at "key"/);
  });

  it('takes keys up to the limit the worker takes', async () => {
    const b = broker();
    const queue = uniqueQueue('keys');
    const key = 'k'.repeat(ENVELOPE_LIMITS.keyLength);
    const [id] = await submitTasks(b, queue, [{ payload: 1, key }]);
    expect(id).toBeDefined();
    expect((await b.stats(queue)).ready).toBe(1);
  });

  it('refuses a queue name too long for its derived queues, and a task name with a control character', async () => {
    const b = broker();
    await expect(submitTasks(b, 'q'.repeat(255), [{ payload: 1 }])).rejects.toThrow(
      /queue name "q+\.\.\." is 255 bytes long; the limit is 200/,
    );
    await expect(
      submitTasks(b, uniqueQueue('t'), [{ payload: 1, task: 'x\u001b[2J' }], {
        label: (i) => `line ${i + 7}`,
      }),
    ).rejects.toThrow(/^line 7: invalid envelope at "task": task name "x\\x1b\[2J" contains/);
    await expect(
      submitTasks(b, uniqueQueue('t'), [{ payload: 1 }], { replyTo: 'r\u0000' }),
    ).rejects.toMatchObject({ code: ErrorCode.BadInput });
  });

  it('refuses an invalid request or event before it is sent', async () => {
    const b = broker();
    const requester = await Requester.create(b);
    try {
      await expect(requester.request(uniqueQueue('rpc'), 1, { task: 'a\u0000' })).rejects.toThrow(
        /invalid envelope at "task"/,
      );
    } finally {
      await requester.close();
    }
    await expect(publishEvent(b, 'news', 1, { key: 'k'.repeat(1025) })).rejects.toThrow(
      /event on topic "news": invalid envelope at "key"/,
    );
  });
});

describe('deep JSON', () => {
  it('refuses a task payload nested 10,000 deep with the depth limit, instead of overflowing the stack', async () => {
    const b = broker();
    let payload: unknown = [];
    for (let i = 1; i < 10_000; i++) payload = [payload];
    const queue = uniqueQueue('deep');
    await expect(submitTasks(b, queue, [{ payload: 1 }, { payload }])).rejects.toThrow(
      /^task 2: invalid envelope at "payload": JSON nests deeper than 127 levels .* MAX_JSON_DEPTH = 128/,
    );
    expect(await b.listQueues()).not.toContain(queue);
  });
});
