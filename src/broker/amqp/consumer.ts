import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import { toError } from '../../protocol/errors.js';
import type { Headers } from '../../protocol/envelope.js';
import { Ticker } from '../ticker.js';
import { AckBatcher } from './acks.js';
import { isDirectReplyAddress } from './direct-reply.js';
import type { Consumer, DeliveryHandler, OutgoingMessage } from '../contract.js';
import type { ReplyChannelDelivery } from '../reply-channel.js';
import { ackEach } from '../contract.js';

/** What a consumer needs from its broker handle. */
export interface ConsumerHost {
  /** Lease, max deliveries and dead-letter queue of `queue` as this handle knows them. */
  policy(queue: string): { leaseMs: number; maxDeliveries: number };
  /** Decodes a message: id, headers for the handler, priority and the delivery count. */
  decode(msg: ConsumeMessage): { id: string; headers: Headers; priority: number; count: number };
  /** Milliseconds the message must still wait (its delayed-retry time not reached), or 0. */
  remainingDelay(msg: ConsumeMessage): number;
  /** Publishes a copy of `msg` back to `queue` with the given delivery count (confirmed). */
  requeueCopy(
    queue: string,
    msg: ConsumeMessage,
    delivered: number,
    options?: { delayMs?: number; error?: string },
  ): Promise<void>;
  /** Publishes a copy of `msg` to the dead-letter queue of `queue` (confirmed). */
  deadLetterCopy(queue: string, msg: ConsumeMessage, reason: string, count: number): Promise<void>;
  publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]>;
  reportError(error: Error): void;
}

type State = 'held' | 'settled' | 'lost';

/**
 * A quorum queue applies acks asynchronously: closing a channel right after acking can return
 * the acked messages. Channels are closed only this long after their last settle.
 */
const SETTLE_GRACE_MS = 250;

/**
 * The consumer of one queue (or one topic subscription) on its own channel of the consuming
 * connection. It resubscribes after a reconnect and emulates leases: a delivery neither settled
 * nor extended within the lease is handed back (a copy goes back to the queue, the original is
 * acked) and later settles of it are no-ops.
 */
export class AmqpConsumer {
  readonly tag: string;
  readonly #host: ConsumerHost;
  readonly #handler: DeliveryHandler;
  readonly #prefetch: number;
  readonly #pattern: string | undefined;
  readonly #onClosed: () => void;
  #queue: string;
  #channel: Channel | undefined;
  #acks: AckBatcher | undefined;
  #serverTag: string | undefined;
  #cancelled = false;
  #cancelling: Promise<void> | undefined;
  /** Handler calls (and the nacks of failed ones) not finished yet; cancel() waits for them. */
  #running = 0;
  readonly #idleWaiters: (() => void)[] = [];
  readonly #handlerDone = (): void => {
    if (--this.#running > 0) return;
    for (const wake of this.#idleWaiters.splice(0)) wake();
    this.#maybeClose();
  };
  readonly held = new Set<AmqpDelivery>();
  /** Held deliveries whose lease is running (see watchLease). */
  readonly #leases = new Set<AmqpDelivery>();
  readonly #leaseTicker = new Ticker(() => this.#expireLeases());
  #lastSettleAt = 0;
  #closingChannel: Promise<void> | undefined;

  constructor(options: {
    tag: string;
    host: ConsumerHost;
    handler: DeliveryHandler;
    prefetch: number;
    queue: string;
    /** Topic pattern: the consumer declares a server-named exclusive queue bound to it. */
    pattern?: string;
    topicExchange?: string;
    onClosed: () => void;
  }) {
    this.tag = options.tag;
    this.#host = options.host;
    this.#handler = options.handler;
    this.#prefetch = options.prefetch;
    this.#queue = options.queue;
    this.#pattern = options.pattern;
    this.#topicExchange = options.topicExchange ?? '';
    this.#onClosed = options.onClosed;
  }

  readonly #topicExchange: string;

  get queue(): string {
    return this.#queue;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Subscribes on a new channel of `conn` (first start and after every reconnect). */
  async start(conn: ChannelModel): Promise<void> {
    if (this.#cancelled) return;
    const channel = await conn.createChannel();
    channel.on('error', () => undefined);
    channel.on('close', () => this.#channelClosed(channel));
    await channel.prefetch(this.#prefetch);
    if (this.#pattern !== undefined) {
      const q = await channel.assertQueue('', {
        exclusive: true,
        autoDelete: true,
        durable: false,
      });
      await channel.bindQueue(q.queue, this.#topicExchange, this.#pattern);
      this.#queue = q.queue;
    }
    this.#channel = channel;
    this.#acks = new AckBatcher(channel);
    const ok = await channel.consume(this.#queue, (msg) => this.#onMessage(channel, msg), {
      noAck: false,
    });
    this.#serverTag = ok.consumerTag;
  }

  toConsumer(): Consumer {
    return { tag: this.tag, cancel: () => this.cancel(), ackAll: ackEach };
  }

  /** Stops new deliveries and waits for the handler calls in progress. */
  cancel(): Promise<void> {
    this.#cancelling ??= this.#cancel();
    return this.#cancelling;
  }

  /** Acks `msg` if `channel` is still the live one (coalesced with the acks of this turn). */
  ackOn(channel: Channel, msg: ConsumeMessage): void {
    if (this.#channel === channel) this.#acks?.ack(msg);
  }

  /** Puts `msg` back in its queue if `channel` is still the live one. */
  requeueOn(channel: Channel, msg: ConsumeMessage): void {
    if (this.#channel === channel) this.#acks?.nack(msg, true);
  }

  /** Called by a delivery once settled or handed back. */
  settled(d: AmqpDelivery): void {
    this.#lastSettleAt = Date.now();
    this.held.delete(d);
    this.#maybeClose();
  }

  async #cancel(): Promise<void> {
    this.#cancelled = true;
    const channel = this.#channel;
    if (channel && this.#serverTag !== undefined) {
      await channel.cancel(this.#serverTag).catch(() => undefined);
    }
    if (this.#running > 0) await new Promise<void>((wake) => this.#idleWaiters.push(wake));
    this.#maybeClose();
  }

  /** A cancelled consumer keeps its channel while it holds leases, then closes it. */
  #maybeClose(): void {
    if (!this.#cancelled || this.held.size > 0 || this.#running > 0) return;
    void this.closeChannel();
  }

  /** Closes the channel once its last settles had time to land (unsettled ones are requeued). */
  closeChannel(): Promise<void> {
    this.#closingChannel ??= (async () => {
      const wait = this.#lastSettleAt + SETTLE_GRACE_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const channel = this.#channel;
      this.#acks?.flush();
      this.#dropChannel();
      for (const d of [...this.held]) d.lose();
      if (channel) await channel.close().catch(() => undefined);
      this.#onClosed();
    })();
    return this.#closingChannel;
  }

  #channelClosed(channel: Channel): void {
    if (this.#channel !== channel) return;
    this.#dropChannel();
    // RabbitMQ requeues what the channel held; our leases on it are gone.
    for (const d of [...this.held]) d.lose();
    if (this.#cancelled) this.#onClosed();
  }

  #dropChannel(): void {
    this.#channel = undefined;
    this.#acks?.close();
    this.#acks = undefined;
  }

  #onMessage(channel: Channel, msg: ConsumeMessage | null): void {
    if (msg === null) {
      // Cancelled by the server (queue deleted): resubscribed after a reconnect if it is back.
      this.#host.reportError(new Error(`consumer of queue "${this.#queue}" cancelled by RabbitMQ`));
      return;
    }
    if (this.#channel === channel) this.#acks?.track(msg);
    const remaining = this.#host.remainingDelay(msg);
    const { id, headers, priority, count } = this.#host.decode(msg);
    if (remaining > 0) {
      // A delayed retry that reached its queue early (bucketed delay): wait out the rest.
      this.#handOver(channel, msg, () =>
        this.#host.requeueCopy(this.#queue, msg, count - 1, { delayMs: remaining }),
      );
      return;
    }
    const policy = this.#host.policy(this.#queue);
    if (count > policy.maxDeliveries) {
      // Redelivered by RabbitMQ (consumers died holding it) past the limit.
      const reason =
        typeof headers['x-qtune-last-error'] === 'string'
          ? headers['x-qtune-last-error']
          : 'MAX_DELIVERIES';
      this.#handOver(channel, msg, () =>
        this.#host.deadLetterCopy(this.#queue, msg, reason, count - 1),
      );
      return;
    }
    const delivery = new AmqpDelivery(this, this.#host, channel, msg, {
      id,
      queue: this.#queue,
      headers,
      priority,
      deliveryCount: count,
      leaseMs: policy.leaseMs,
      maxDeliveries: policy.maxDeliveries,
    });
    this.held.add(delivery);
    // A handler that returns at once (the worker's) costs no promise here; cancel() waits for
    // the ones that return a promise.
    let returned: unknown;
    try {
      returned = this.#handler(delivery);
    } catch (err) {
      this.#running++;
      void this.#handlerFailed(delivery, err).then(this.#handlerDone);
      return;
    }
    if (returned instanceof Promise) {
      this.#running++;
      returned.then(this.#handlerDone, (err: unknown) => {
        void this.#handlerFailed(delivery, err).then(this.#handlerDone);
      });
    }
  }

  /** A handler threw: the error is reported and the delivery goes back to its queue. */
  #handlerFailed(delivery: AmqpDelivery, err: unknown): Promise<void> {
    const error = toError(err);
    this.#host.reportError(error);
    return delivery.nack({ error: error.message }).catch(() => undefined);
  }

  /**
   * Watches the lease of a held delivery until it is settled, lost or expired. One timer per
   * consumer checks every lease, ticking at a tenth of the shortest lease armed (between 5 ms
   * and 1 s), so a lease is handed back at most that late; a timer per delivery would cost each
   * task a timer set and cleared, and garbage that outlives it.
   */
  watchLease(d: AmqpDelivery, ms: number): void {
    this.#leases.add(d);
    // The connection keeps the process alive while deliveries are held; the ticker need not.
    this.#leaseTicker.atLeastEvery(Math.min(Math.max(Math.floor(ms / 10), 5), 1000));
  }

  /** Stops watching a delivery's lease (settled, lost or expired). */
  unwatchLease(d: AmqpDelivery): void {
    this.#leases.delete(d);
  }

  /** Hands back expired leases; the timer stops at the first tick that finds none held. */
  #expireLeases(): void {
    if (this.#leases.size === 0) {
      this.#leaseTicker.stop();
      return;
    }
    const now = Date.now();
    for (const d of this.#leases) if (d.leaseExpiresAt <= now) d.expire();
  }

  /** Republishes through `publish`, then acks the original (nack-requeue if that failed). */
  #handOver(channel: Channel, msg: ConsumeMessage, publish: () => Promise<void>): void {
    publish().then(
      () => this.ackOn(channel, msg),
      (err: unknown) => {
        this.#host.reportError(toError(err));
        this.requeueOn(channel, msg);
      },
    );
  }
}

interface DeliveryInit {
  id: string;
  queue: string;
  headers: Headers;
  priority: number;
  deliveryCount: number;
  leaseMs: number;
  maxDeliveries: number;
}

/**
 * One delivery holding an emulated lease. `replyTo` is set on a request from a direct reply-to
 * requester (see ReplyChannelDelivery).
 */
export class AmqpDelivery implements ReplyChannelDelivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority: number;
  readonly deliveryCount: number;
  readonly replyTo?: string;
  readonly #consumer: AmqpConsumer;
  readonly #host: ConsumerHost;
  readonly #channel: Channel;
  readonly #msg: ConsumeMessage;
  readonly #leaseMs: number;
  readonly #maxDeliveries: number;
  #state: State = 'held';
  #expiresAt = 0;

  constructor(
    consumer: AmqpConsumer,
    host: ConsumerHost,
    channel: Channel,
    msg: ConsumeMessage,
    init: DeliveryInit,
  ) {
    this.#consumer = consumer;
    this.#host = host;
    this.#channel = channel;
    this.#msg = msg;
    this.id = init.id;
    this.queue = init.queue;
    this.body = msg.content;
    this.headers = init.headers;
    this.priority = init.priority;
    this.deliveryCount = init.deliveryCount;
    // A request from a direct reply-to requester: RabbitMQ put the real reply address here.
    if (isDirectReplyAddress(msg.properties.replyTo)) this.replyTo = msg.properties.replyTo;
    this.#leaseMs = init.leaseMs;
    this.#maxDeliveries = init.maxDeliveries;
    this.#arm(init.leaseMs);
  }

  get leaseExpiresAt(): number {
    return this.#expiresAt;
  }

  async ack(): Promise<void> {
    this.#ack();
  }

  async ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    await this.#host.publish(queue, messages);
    this.#ack();
  }

  #ack(): void {
    if (!this.#take()) return;
    this.#consumer.ackOn(this.#channel, this.#msg);
    this.#consumer.settled(this);
  }

  async nack(options: { delayMs?: number; error?: string } = {}): Promise<void> {
    if (!this.#take()) return;
    if (this.deliveryCount >= this.#maxDeliveries) {
      const last = options.error ?? this.#lastError();
      await this.#handOver(() =>
        this.#host.deadLetterCopy(
          this.queue,
          this.#msg,
          last ?? 'MAX_DELIVERIES',
          this.deliveryCount,
        ),
      );
      return;
    }
    await this.#handOver(() =>
      this.#host.requeueCopy(this.queue, this.#msg, this.deliveryCount, options),
    );
  }

  async release(): Promise<void> {
    if (!this.#take()) return;
    await this.#handOver(() =>
      this.#host.requeueCopy(this.queue, this.#msg, this.deliveryCount - 1),
    );
  }

  async deadLetter(reason: string): Promise<void> {
    if (!this.#take()) return;
    await this.#handOver(() =>
      this.#host.deadLetterCopy(this.queue, this.#msg, reason, this.deliveryCount),
    );
  }

  async extendLease(ms?: number): Promise<void> {
    if (this.#state !== 'held') return;
    this.#arm(ms ?? this.#leaseMs);
  }

  /** The channel holding it closed: RabbitMQ requeues it; settles become no-ops. */
  lose(): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.#consumer.unwatchLease(this);
  }

  #arm(ms: number): void {
    this.#expiresAt = Date.now() + ms;
    this.#consumer.watchLease(this, ms);
  }

  /** Its lease ran out (called by the consumer's lease timer): hands the message back. */
  expire(): void {
    if (this.#state !== 'held') return;
    this.#state = 'lost';
    this.#consumer.unwatchLease(this);
    const last = this.#lastError();
    const handBack =
      this.deliveryCount >= this.#maxDeliveries
        ? () =>
            this.#host.deadLetterCopy(
              this.queue,
              this.#msg,
              last ?? 'MAX_DELIVERIES',
              this.deliveryCount,
            )
        : () => this.#host.requeueCopy(this.queue, this.#msg, this.deliveryCount);
    void this.#handOver(handBack).catch((err: unknown) => this.#host.reportError(toError(err)));
  }

  #lastError(): string | undefined {
    const v = this.headers['x-qtune-last-error'];
    return typeof v === 'string' ? v : undefined;
  }

  /** Moves from held to settled; false (a no-op settle) when already settled or lost. */
  #take(): boolean {
    if (this.#state !== 'held') return false;
    this.#state = 'settled';
    this.#consumer.unwatchLease(this);
    return true;
  }

  async #handOver(publish: () => Promise<void>): Promise<void> {
    try {
      await publish();
    } catch (err) {
      this.#consumer.requeueOn(this.#channel, this.#msg);
      this.#consumer.settled(this);
      throw err;
    }
    this.#consumer.ackOn(this.#channel, this.#msg);
    this.#consumer.settled(this);
  }
}
