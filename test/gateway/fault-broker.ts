import { BrokerEventSource } from '../../src/broker/events.js';
import type {
  Broker,
  BrokerStatus,
  ConsumeOptions,
  Consumer,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../../src/broker/contract.js';

/**
 * A fault injector in front of a real broker: every call goes through to it, except that
 * publishes can be held back (as a broker that stops confirming would) and connection status
 * events can be sent (as a broker that lost its connection would).
 */
export class FaultBroker extends BrokerEventSource implements Broker {
  readonly #inner: Broker;
  #gate: Promise<void> | undefined;
  #open: (() => void) | undefined;
  #publishesLeft = Infinity;
  #publishError: Error | undefined;

  constructor(inner: Broker) {
    super();
    this.#inner = inner;
  }

  get kind(): string {
    return this.#inner.kind;
  }

  get capabilities() {
    return this.#inner.capabilities;
  }

  /** Holds every publish from now on until the returned function is called. */
  holdPublishes(): () => void {
    this.#gate = new Promise<void>((resolve) => (this.#open = resolve));
    return () => {
      this.#open?.();
      this.#gate = undefined;
    };
  }

  /** Lets `n` more publishes through; every later one rejects with `error` (a full disk...). */
  failPublishesAfter(n: number, error: Error): void {
    this.#publishesLeft = n;
    this.#publishError = error;
  }

  /** Reports a connection status to the broker's listeners. */
  setStatus(status: BrokerStatus): void {
    this.emitStatus(status);
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
    if (this.#gate) await this.#gate;
    if (this.#publishesLeft <= 0) throw this.#publishError!;
    this.#publishesLeft--;
    return this.#inner.publish(queue, messages);
  }
  consume(queue: string, handler: DeliveryHandler, options?: ConsumeOptions): Promise<Consumer> {
    return this.#inner.consume(queue, handler, options);
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
  close(): Promise<void> {
    return this.#inner.close();
  }
}
