import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { toError } from '../../protocol/errors.js';
import type { Headers } from '../../protocol/envelope.js';
import type { Consumer, Delivery, DeliveryHandler } from '../contract.js';
import { ackEach } from '../contract.js';
import { topicMatches } from '../topic.js';
import { decodeHeaders, TOPIC_HEADER } from './message.js';
import { patternSubjects } from './names.js';

/**
 * A topic subscription over core NATS subjects: at-most-once, as NATS core pub/sub is (a
 * message published while the subscriber is disconnected is not delivered to it). Settling a
 * delivery is a no-op: nothing is leased.
 */
export class TopicSubscription {
  readonly tag: string;
  readonly #subs: Subscription[];
  readonly #handler: DeliveryHandler;
  readonly #pattern: string;
  readonly #exact: boolean;
  readonly #report: (error: Error) => void;
  readonly #onClosed: () => void;
  #running = 0;
  readonly #idleWaiters: (() => void)[] = [];
  #cancelling: Promise<void> | undefined;
  #cancelled = false;

  constructor(options: {
    tag: string;
    nc: NatsConnection;
    pattern: string;
    handler: DeliveryHandler;
    reportError: (error: Error) => void;
    onClosed: () => void;
  }) {
    this.tag = options.tag;
    this.#handler = options.handler;
    this.#pattern = options.pattern;
    this.#report = options.reportError;
    this.#onClosed = options.onClosed;
    const { subjects, exact } = patternSubjects(options.pattern);
    this.#exact = exact;
    this.#subs = subjects.map((subject) =>
      options.nc.subscribe(subject, { callback: (_err, msg) => this.#onMsg(msg) }),
    );
  }

  toConsumer(): Consumer {
    return { tag: this.tag, cancel: () => this.cancel(), ackAll: ackEach };
  }

  cancel(): Promise<void> {
    this.#cancelling ??= this.#cancel();
    return this.#cancelling;
  }

  async #cancel(): Promise<void> {
    this.#cancelled = true;
    for (const sub of this.#subs) if (!sub.isClosed()) sub.unsubscribe();
    if (this.#running > 0) await new Promise<void>((wake) => this.#idleWaiters.push(wake));
    this.#onClosed();
  }

  #onMsg(msg: Msg): void {
    if (this.#cancelled) return;
    const decoded = decodeHeaders(msg.headers);
    const topic = decoded.headers[TOPIC_HEADER];
    if (!this.#exact && (typeof topic !== 'string' || !topicMatches(this.#pattern, topic))) {
      return;
    }
    const delivery = new TopicDelivery(
      decoded.id ?? `nats-topic-${msg.sid}`,
      typeof topic === 'string' ? topic : msg.subject,
      Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength),
      decoded.headers,
    );
    let returned: unknown;
    try {
      returned = this.#handler(delivery);
    } catch (err) {
      this.#report(toError(err));
      return;
    }
    if (returned instanceof Promise) {
      this.#running++;
      returned
        .catch((err: unknown) => this.#report(toError(err)))
        .finally(() => {
          if (--this.#running > 0) return;
          for (const wake of this.#idleWaiters.splice(0)) wake();
        });
    }
  }
}

/** A topic message: nothing to settle, nothing leased. */
class TopicDelivery implements Delivery {
  readonly priority = 0;
  readonly deliveryCount = 1;
  readonly leaseExpiresAt = Number.POSITIVE_INFINITY;

  constructor(
    readonly id: string,
    readonly queue: string,
    readonly body: Buffer,
    readonly headers: Headers,
  ) {}

  async ack(): Promise<void> {}
  async ackWithPublish(): Promise<void> {
    throw new Error('ackWithPublish is not available on a topic delivery');
  }
  async nack(): Promise<void> {}
  async release(): Promise<void> {}
  async deadLetter(): Promise<void> {}
  async extendLease(): Promise<void> {}
}
