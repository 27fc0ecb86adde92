import { randomUUID } from 'node:crypto';
import { vi } from 'vitest';
import type {
  Broker,
  BrokerCapabilities,
  BrokerEvents,
  ConsumeOptions,
  Consumer,
  Delivery,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../../src/broker/contract.js';
import { MemoryBroker, MemoryBus } from '../../src/broker/memory/index.js';
import { decode } from '../../src/protocol/codec.js';
import type { Envelope } from '../../src/protocol/envelope.js';
import type { TaskContext } from '../../src/worker/handlers/types.js';
import { silentLogger } from '../../src/worker/logger.js';

/** A fresh memory broker on its own bus. */
export function memoryBroker(): MemoryBroker {
  return new MemoryBroker(new MemoryBus());
}

/** A queue name no other test uses. */
export function uniqueQueue(prefix = 'q'): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A message read off a queue by {@link takeMessages}. */
export interface Taken {
  id: string;
  headers: Delivery['headers'];
  body: string;
  envelope: Envelope;
}

/**
 * Consumes exactly `count` messages from `queue` (acking them) and returns them decoded; fails
 * when they do not all arrive within `timeoutMs`.
 */
export async function takeMessages(
  broker: Broker,
  queue: string,
  count: number,
  timeoutMs = 5_000,
): Promise<Taken[]> {
  await broker.declareQueue(queue);
  const taken: Taken[] = [];
  const consumer = await broker.consume(
    queue,
    async (d) => {
      if (taken.length >= count) {
        await d.release();
        return;
      }
      const body = d.body.toString('utf8');
      let envelope: Envelope;
      try {
        envelope = decode(d.body);
      } catch {
        envelope = { qtune: 1, id: d.id, type: 'task', payload: body };
      }
      taken.push({ id: d.id, headers: d.headers, body, envelope });
      await d.ack();
    },
    // Never take (and ack) more than asked for.
    { prefetch: Math.max(1, count) },
  );
  try {
    await vi.waitFor(
      () => {
        if (taken.length < count)
          throw new Error(`${taken.length} of ${count} messages on "${queue}"`);
      },
      { timeout: timeoutMs, interval: 10 },
    );
  } finally {
    await consumer.cancel();
  }
  return taken;
}

/** A TaskContext for calling a handler directly. */
export function fakeContext(overrides: Partial<TaskContext> = {}): TaskContext {
  return {
    taskId: 'task-1',
    attempt: 1,
    headers: {},
    signal: new AbortController().signal,
    progress: () => {},
    heartbeat: async () => {},
    log: silentLogger,
    ...overrides,
  };
}

/** A resolvable promise. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/**
 * Wraps a broker and records, in order, every publish once confirmed (`publish:<queue>:<n>`)
 * and every settle of a consumed delivery (`ack:<id>`, `nack:<id>`, `release:<id>`,
 * `dead:<id>`).
 */
export class RecordingBroker implements Broker {
  readonly log: string[] = [];
  readonly #inner: Broker;
  #settleGate: Promise<void> | undefined;

  /** Holds every ackWithPublish (result and ack) from now on until the returned function runs. */
  holdSettles(): () => void {
    let open!: () => void;
    this.#settleGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.#settleGate = undefined;
      open();
    };
  }

  constructor(inner: Broker) {
    this.#inner = inner;
  }

  get kind(): string {
    return this.#inner.kind;
  }

  get capabilities(): BrokerCapabilities {
    return this.#inner.capabilities;
  }

  declareQueue(name: string, options?: QueueOptions): Promise<void> {
    return this.#inner.declareQueue(name, options);
  }

  deleteQueue(name: string): Promise<void> {
    return this.#inner.deleteQueue(name);
  }

  purgeQueue(name: string): Promise<number> {
    return this.#inner.purgeQueue(name);
  }

  pauseQueue(name: string): Promise<void> {
    return this.#inner.pauseQueue(name);
  }

  resumeQueue(name: string): Promise<void> {
    return this.#inner.resumeQueue(name);
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    const ids = await this.#inner.publish(queue, messages);
    this.log.push(`publish:${queue}:${messages.length}`);
    return ids;
  }

  consume(queue: string, handler: DeliveryHandler, options?: ConsumeOptions): Promise<Consumer> {
    return this.#inner.consume(queue, (d) => handler(this.#wrap(d)), options);
  }

  publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    return this.#inner.publishTopic(topic, messages);
  }

  subscribe(
    pattern: string,
    handler: DeliveryHandler,
    options?: SubscribeOptions,
  ): Promise<Consumer> {
    return this.#inner.subscribe(pattern, handler, options);
  }

  stats(queue: string): Promise<QueueStats> {
    return this.#inner.stats(queue);
  }

  listQueues(): Promise<string[]> {
    return this.#inner.listQueues();
  }

  on<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.#inner.on(event, listener);
    return this;
  }

  off<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.#inner.off(event, listener);
    return this;
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #wrap(d: Delivery): Delivery {
    const log = this.log;
    const gate = () => this.#settleGate;
    return {
      id: d.id,
      queue: d.queue,
      body: d.body,
      headers: d.headers,
      priority: d.priority,
      deliveryCount: d.deliveryCount,
      get leaseExpiresAt() {
        return d.leaseExpiresAt;
      },
      async ack() {
        await d.ack();
        log.push(`ack:${d.id}`);
      },
      async ackWithPublish(queue, messages) {
        await gate();
        // The broker makes the publish durable before (or atomically with) the ack.
        await d.ackWithPublish(queue, messages);
        log.push(`publish:${queue}:${messages.length}`, `ack:${d.id}`);
      },
      async nack(options) {
        await d.nack(options);
        log.push(`nack:${d.id}`);
      },
      async release() {
        await d.release();
        log.push(`release:${d.id}`);
      },
      async deadLetter(reason) {
        await d.deadLetter(reason);
        log.push(`dead:${d.id}`);
      },
      extendLease(ms) {
        return d.extendLease(ms);
      },
    };
  }
}
