import { randomUUID } from 'node:crypto';
import { BrokerEventSource } from '../events.js';
import { BrokerError, ErrorCode, InputError, NotFoundError } from '../../protocol/errors.js';
import { assertName, MAX_BROKER_QUEUE_NAME_BYTES } from '../../protocol/names.js';
import type {
  Broker,
  BrokerCapabilities,
  BrokerStatus,
  ConsumeOptions,
  Consumer,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../contract.js';
import {
  DEFAULT_PREFETCH,
  DEFAULT_SUBSCRIBE_PREFETCH,
  checkMessage,
  checkPrefetch,
  checkTopicPattern,
  queueMismatch,
  temporaryOfAnother,
} from '../checks.js';
import type { BusCore, Connection, QueueCore } from './memory-bus.js';
import { ConsumerCore, MemoryBus, busCore, closedError } from './memory-bus.js';

/** qtune's name rules (src/protocol/names.ts) for every queue name a broker takes. */
const BROKER_NAMES = { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES };

type HandleState = 'open' | 'closing' | 'closed';

/**
 * A broker handle onto a {@link MemoryBus}: the full Broker contract in process memory, for tests
 * and single-process runs. Several handles on one bus share its queues like several clients of
 * one broker; nothing survives the process.
 */
export class MemoryBroker extends BrokerEventSource implements Broker {
  readonly kind = 'memory';
  readonly capabilities: BrokerCapabilities = Object.freeze({
    durable: false,
    multiProcess: false,
    listQueues: true,
    topics: true,
    purge: true,
    pause: true,
  });
  readonly #core: BusCore;
  readonly #consumers = new Set<ConsumerCore>();
  readonly #temporary = new Set<string>();
  readonly #connection: Connection;
  #state: HandleState = 'open';
  #closed: Promise<void> | undefined;

  /** Opens a handle on `bus` (default: a fresh private bus). */
  constructor(bus: MemoryBus = new MemoryBus()) {
    super();
    this.#core = busCore(bus);
    const isOpen = () => this.#state !== 'closed';
    this.#connection = {
      get isOpen() {
        return isOpen();
      },
      reportError: (error) => this.#emitError(error),
      publish: (queue, messages) => this.publish(queue, messages),
    };
  }

  async declareQueue(name: string, options: QueueOptions = {}): Promise<void> {
    this.#assertUsable(`declareQueue "${name}"`);
    assertName('queue', name, BROKER_NAMES);
    if (options.deadLetterQueue !== undefined) {
      assertName('dead-letter queue', options.deadLetterQueue, BROKER_NAMES);
    }
    const existing = this.#core.queues.get(name);
    if (existing !== undefined) {
      const mismatch =
        queueMismatch(name, existing.options, options) ??
        (options.temporary === true && existing.owner !== this.#connection
          ? temporaryOfAnother(name)
          : undefined);
      if (mismatch) throw mismatch;
    }
    const queue = this.#core.declare(name, options, this.#connection);
    if (queue.owner === this.#connection) this.#temporary.add(name);
  }

  async deleteQueue(name: string): Promise<void> {
    this.#assertUsable(`deleteQueue "${name}"`);
    this.#core.delete(name);
    this.#temporary.delete(name);
  }

  async purgeQueue(name: string): Promise<number> {
    this.#assertUsable(`purgeQueue "${name}"`);
    return this.#existing(name).purge();
  }

  async pauseQueue(name: string): Promise<void> {
    this.#assertUsable(`pauseQueue "${name}"`);
    this.#existing(name).setPaused(true);
  }

  async resumeQueue(name: string): Promise<void> {
    this.#assertUsable(`resumeQueue "${name}"`);
    this.#existing(name).setPaused(false);
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    this.#assertUsable(`publish to queue "${queue}"`);
    assertName('queue', queue, BROKER_NAMES);
    const target = this.#queue(queue);
    for (const m of messages) checkMessage(`queue "${queue}"`, m);
    return target.publish(messages);
  }

  async consume(
    queue: string,
    handler: DeliveryHandler,
    options: ConsumeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`consume from queue "${queue}"`);
    const target = this.#queue(queue);
    const prefetch = checkPrefetch(`queue "${queue}"`, options.prefetch ?? DEFAULT_PREFETCH);
    return this.#startConsumer(target, handler, prefetch, options.tag);
  }

  async publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#assertUsable(`publish to topic "${topic}"`);
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new InputError(`topic must be a non-empty string, got ${JSON.stringify(topic)}`);
    }
    for (const m of messages) checkMessage(`topic "${topic}"`, m);
    this.#core.publishTopic(topic, messages);
  }

  async subscribe(
    pattern: string,
    handler: DeliveryHandler,
    options: SubscribeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`subscribe to "${pattern}"`);
    checkTopicPattern(pattern);
    const prefetch = checkPrefetch(
      `subscription "${pattern}"`,
      options.prefetch ?? DEFAULT_SUBSCRIBE_PREFETCH,
    );
    const name = `sub.${pattern}.${randomUUID()}`;
    const queue = this.#core.declare(name, { durable: false, temporary: true }, this.#connection);
    this.#temporary.add(name);
    this.#core.bind(name, pattern);
    return this.#startConsumer(queue, handler, prefetch, undefined, () => {
      this.#core.delete(name);
      this.#temporary.delete(name);
    });
  }

  async stats(queue: string): Promise<QueueStats> {
    this.#assertUsable(`stats of queue "${queue}"`);
    return this.#queue(queue).stats();
  }

  async listQueues(): Promise<string[]> {
    this.#assertUsable('listQueues');
    return [...this.#core.queues.keys()].sort();
  }

  /**
   * Cancels this handle's consumers (handing back deliveries not yet started and waiting for
   * handler calls in progress, whose settles still work), deletes its temporary queues, then
   * closes. Deliveries left unsettled keep their leases until they expire. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= this.#close();
    return this.#closed;
  }

  /**
   * Simulates the death of this handle's process: consumers stop at once without settling
   * anything (their leases expire and are redelivered), temporary queues are deleted, and every
   * later call, settles included, fails.
   */
  crash(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#closed ??= Promise.resolve();
    for (const consumer of this.#consumers) consumer.drop();
    this.#consumers.clear();
    this.#deleteTemporaryQueues();
    this.#emitStatus('closed');
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    await Promise.all([...this.#consumers].map((c) => c.cancel()));
    this.#consumers.clear();
    this.#deleteTemporaryQueues();
    this.#state = 'closed';
    this.#emitStatus('closed');
  }

  #startConsumer(
    queue: QueueCore,
    handler: DeliveryHandler,
    prefetch: number,
    tag: string | undefined,
    onCancelled?: () => void,
  ): Consumer {
    const consumer = new ConsumerCore({
      tag: tag ?? `memory-${randomUUID()}`,
      queue,
      connection: this.#connection,
      handler,
      prefetch,
      onCancelled: () => {
        this.#consumers.delete(consumer);
        onCancelled?.();
      },
    });
    this.#consumers.add(consumer);
    queue.addConsumer(consumer);
    return consumer.toConsumer();
  }

  #deleteTemporaryQueues(): void {
    for (const name of this.#temporary) {
      const queue = this.#core.queues.get(name);
      if (queue?.owner === this.#connection) this.#core.delete(name);
    }
    this.#temporary.clear();
  }

  #queue(name: string): QueueCore {
    const queue = this.#core.queues.get(name);
    if (queue === undefined) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        `queue "${name}" does not exist in the memory broker; declare it first`,
      );
    }
    return queue;
  }

  #existing(name: string): QueueCore {
    const queue = this.#core.queues.get(name);
    if (queue === undefined) throw new NotFoundError('queue', name);
    return queue;
  }

  /** Allowed until closed: handler calls still running during close may publish and settle. */
  #assertUsable(what: string): void {
    if (this.#state === 'closed') throw closedError(what);
  }

  /** Starting new consumers is refused as soon as close begins. */
  #assertOpen(what: string): void {
    if (this.#state !== 'open') throw closedError(what);
  }

  #emitStatus(status: BrokerStatus): void {
    this.emitStatus(status);
  }

  #emitError(error: Error): void {
    // An 'error' event nobody listens to would throw; a memory broker has nowhere else to say it.
    this.emitError(error);
  }
}
