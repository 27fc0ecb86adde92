import { afterEach, describe, expect, it } from 'vitest';
import type { Broker, Delivery, OutgoingMessage } from '../../src/broker/contract.js';
import { MemoryBroker, MemoryBus } from '../../src/broker/memory/index.js';
import {
  replyAddressOf,
  replyChannelsOf,
  type ReplyChannel,
  type ReplyChannels,
  type ReplyMessage,
} from '../../src/broker/reply-channel.js';
import { Requester, serveRequests } from '../../src/patterns/request-reply.js';
import { uniqueQueue } from '../worker/helpers.js';

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/**
 * A memory broker with the reply-channel extension: each channel consumes a temporary queue of
 * its own and publishes requests naming it, which is enough to see who uses the extension.
 */
class ChannelBroker extends MemoryBroker implements ReplyChannels {
  override readonly capabilities = Object.freeze({
    durable: false,
    multiProcess: false,
    listQueues: true,
    topics: true,
    purge: true,
    pause: true,
    replyChannel: true,
  });
  readonly published: string[] = [];

  async openReplyChannel(onReply: (reply: ReplyMessage) => void): Promise<ReplyChannel> {
    const replyTo = uniqueQueue('channel');
    await this.declareQueue(replyTo, { temporary: true, durable: false });
    const consumer = await this.consume(replyTo, async (d) => {
      onReply({ id: d.id, body: d.body });
      await d.ack();
    });
    return {
      replyTo,
      publish: async (queue: string, messages: readonly OutgoingMessage[]) => {
        this.published.push(queue);
        await this.publish(queue, messages);
      },
      close: async () => {
        await consumer.cancel();
        await this.deleteQueue(replyTo);
      },
    };
  }
}

function open<B extends Broker>(broker: B): B {
  cleanup.push(() => broker.close());
  return broker;
}

describe('reply-channel extension', () => {
  it('a broker that does not declare it has none, and its requesters use a reply queue', async () => {
    const broker = open(new MemoryBroker(new MemoryBus()));
    expect(replyChannelsOf(broker)).toBeUndefined();
    const requester = await Requester.create(broker, { timeoutMs: 5_000 });
    cleanup.push(() => requester.close());
    expect(requester.replyQueue).toMatch(/^qtune\.reply\./);
    const queue = uniqueQueue('rpc');
    const server = await serveRequests(broker, queue, async (n: number) => n * 2);
    cleanup.push(() => server.cancel());
    expect(await requester.request(queue, 21)).toBe(42);
  });

  it('a requester sends through the channel of a broker that declares it, and falls back when asked', async () => {
    const broker = open(new ChannelBroker(new MemoryBus()));
    expect(replyChannelsOf(broker)).toBe(broker);
    const queue = uniqueQueue('rpc');
    const server = await serveRequests(broker, queue, async (n: number) => n + 1);
    cleanup.push(() => server.cancel());

    const direct = await Requester.create(broker, { timeoutMs: 5_000 });
    cleanup.push(() => direct.close());
    expect(direct.replyQueue).toMatch(/^channel-/);
    expect(await direct.request(queue, 1)).toBe(2);
    expect(broker.published).toEqual([queue]);

    const queued = await Requester.create(broker, { timeoutMs: 5_000, directReply: false });
    cleanup.push(() => queued.close());
    expect(queued.replyQueue).toMatch(/^qtune\.reply\./);
    expect(await queued.request(queue, 10)).toBe(11);
    expect(broker.published).toEqual([queue]);
  });

  it('a wrapper that forwards the capability but not the method counts as without', () => {
    const inner = new ChannelBroker(new MemoryBus());
    cleanup.push(() => inner.close());
    const wrapper = { capabilities: inner.capabilities } as unknown as Broker;
    expect(replyChannelsOf(wrapper)).toBeUndefined();
  });

  it("a reply goes to the delivery's rewritten address first, else to the envelope's", () => {
    const plain = {} as Delivery;
    const rewritten = { replyTo: 'amq.rabbitmq.reply-to.abc' } as unknown as Delivery;
    expect(replyAddressOf(plain, 'q.results')).toBe('q.results');
    expect(replyAddressOf(plain, undefined)).toBeUndefined();
    expect(replyAddressOf(rewritten, 'amq.rabbitmq.reply-to')).toBe('amq.rabbitmq.reply-to.abc');
  });
});
