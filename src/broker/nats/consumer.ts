import { randomUUID } from 'node:crypto';
import type { Msg, NatsConnection } from '@nats-io/transport-node';
import { ErrorCode, toError } from '../../protocol/errors.js';
import type { Headers } from '../../protocol/envelope.js';
import { Ticker } from '../ticker.js';
import type { Consumer, Delivery, DeliveryHandler, OutgoingMessage } from '../contract.js';
import { ackEach } from '../contract.js';
import type { AckInfo, CopyInfo, Decoded } from './message.js';
import { decodeHeaders, LAST_ERROR, parseAckSubject } from './message.js';
import { DELAY_CONSUMER, MAIN_CONSUMER, streamOf } from './names.js';
import type { StoredPolicy } from './names.js';
import { Pull } from './pull.js';

/** A received message: its NATS parts and what qtune reads from them. */
export interface Received {
  msg: Msg;
  info: AckInfo;
  decoded: Decoded;
  id: string;
}

/** What a consumer needs from its broker handle. */
export interface ConsumerHost {
  connection(): NatsConnection;
  /** Publishes a copy of `r` to `queue`'s ready or delayed subject (confirmed). */
  copy(
    queue: string,
    where: 'ready' | 'delayed',
    r: Received,
    headers: Headers,
    info: CopyInfo,
  ): Promise<void>;
  /** Publishes a copy of `r` to the dead-letter queue of `queue` with `reason` (confirmed). */
  deadLetter(queue: string, r: Received, reason: string, deliveries: number): Promise<void>;
  publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]>;
  /** Creates (again) the presence consumer that counts this consumer as live. */
  addPresence(queue: string, id: string): Promise<void>;
  removePresence(queue: string, id: string): Promise<void>;
  reportError(error: Error): void;
}

/** Due delayed messages moved per pull of the delay consumer. */
const MOVER_BATCH = 64;
/** A delayed message arriving this early (ms) or less is moved at once. */
const EARLY_TOLERANCE_MS = 20;

type State = 'held' | 'settled' | 'lost';

/**
 * One qtune consumer of a queue. It pulls from the queue's durable consumer no more than its
 * prefetch, watches the leases of what it holds (JetStream's AckWait; `extendLease` sends
 * progress acks), dead-letters what arrives past `maxDeliveries` or older than the TTL, and
 * moves the queue's due delayed messages back to it. A presence consumer (a push consumer on a
 * subject that carries nothing, removed by the server 5 s after the connection dies) makes it
 * count in `stats().consumers` of every process.
 */
export class NatsConsumer {
  readonly tag: string;
  readonly queue: string;
  readonly held = new Set<NatsDelivery>();
  readonly #host: ConsumerHost;
  readonly #handler: DeliveryHandler;
  readonly #prefetch: number;
  readonly #policy: StoredPolicy;
  readonly #onClosed: () => void;
  /** Name of the presence consumer (a consumer tag is free-form; this is a valid NATS name). */
  readonly #presence = randomUUID().replace(/-/g, '');
  #pull: Pull | undefined;
  #mover: Pull | undefined;
  #moving = 0;
  #cancelled = false;
  #cancelling: Promise<void> | undefined;
  #running = 0;
  readonly #idleWaiters: (() => void)[] = [];
  readonly #leases = new Set<NatsDelivery>();
  readonly #leaseTicker = new Ticker(() => this.#tickLeases());
  readonly #handlerDone = (): void => {
    if (--this.#running > 0) return;
    for (const wake of this.#idleWaiters.splice(0)) wake();
  };

  constructor(options: {
    tag: string;
    queue: string;
    host: ConsumerHost;
    handler: DeliveryHandler;
    prefetch: number;
    policy: StoredPolicy;
    onClosed: () => void;
  }) {
    this.tag = options.tag;
    this.queue = options.queue;
    this.#host = options.host;
    this.#handler = options.handler;
    this.#prefetch = options.prefetch;
    this.#policy = options.policy;
    this.#onClosed = options.onClosed;
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  get policy(): StoredPolicy {
    return this.#policy;
  }

  async start(): Promise<void> {
    const nc = this.#host.connection();
    const stream = streamOf(this.queue);
    this.#pull = new Pull({
      nc,
      stream,
      consumer: MAIN_CONSUMER,
      wanted: () => this.#prefetch - this.held.size,
      threshold: Math.floor(this.#prefetch / 4),
      onDelivery: (msg) => this.#onMessage(msg),
    });
    this.#mover = new Pull({
      nc,
      stream,
      consumer: DELAY_CONSUMER,
      wanted: () => MOVER_BATCH - this.#moving,
      threshold: MOVER_BATCH / 4,
      onDelivery: (msg) => this.#onDelayed(msg),
    });
    try {
      await this.#host.addPresence(this.queue, this.#presence);
    } catch (err) {
      this.#pull.stop();
      this.#mover.stop();
      throw err;
    }
    this.#pull.top();
    this.#mover.top();
  }

  /** After a reconnect: the server forgot the pull requests; presence is created again. */
  resume(): void {
    if (this.#cancelled) return;
    this.#pull?.reset();
    this.#mover?.reset();
    this.#host
      .addPresence(this.queue, this.#presence)
      .catch((err: unknown) => this.#host.reportError(toError(err)));
  }

  toConsumer(): Consumer {
    return { tag: this.tag, cancel: () => this.cancel(), ackAll: ackEach };
  }

  cancel(): Promise<void> {
    this.#cancelling ??= this.#cancel();
    return this.#cancelling;
  }

  /** Gives back (a counted delivery, as a dropped connection would) what is still held. */
  giveBackHeld(): void {
    for (const d of [...this.held]) d.giveBack();
  }

  /** Called by a delivery once settled or lost: its slot frees. */
  settled(d: NatsDelivery): void {
    this.held.delete(d);
    this.#leases.delete(d);
    if (!this.#cancelled) this.#pull?.top();
  }

  async #cancel(): Promise<void> {
    this.#cancelled = true;
    this.#pull?.stop();
    this.#mover?.stop();
    await this.#host
      .removePresence(this.queue, this.#presence)
      .catch((err: unknown) => this.#host.reportError(toError(err)));
    if (this.#running > 0) await new Promise<void>((wake) => this.#idleWaiters.push(wake));
    this.#onClosed();
  }

  #receive(msg: Msg): Received | undefined {
    const info = parseAckSubject(msg.reply);
    if (info === undefined) {
      this.#host.reportError(new Error(`queue "${this.queue}": delivery without an ack subject`));
      return undefined;
    }
    const decoded = decodeHeaders(msg.headers);
    return { msg, info, decoded, id: decoded.id ?? `nats-${info.streamSeq}` };
  }

  #onMessage(msg: Msg): void {
    const r = this.#receive(msg);
    if (r === undefined) return;
    const count = r.decoded.delivered + r.info.deliveryCount;
    const policy = this.#policy;
    const publishedAt = r.decoded.publishedAt ?? r.info.timestampMs;
    if (policy.messageTtlMs !== undefined && Date.now() - publishedAt > policy.messageTtlMs) {
      const reason = `${ErrorCode.Expired}: older than the message TTL of ${policy.messageTtlMs} ms of queue "${this.queue}"`;
      this.#handOver(r, () => this.#host.deadLetter(this.queue, r, reason, count - 1));
      return;
    }
    if (count > policy.maxDeliveries) {
      // Delivered again after its holders died (or their leases ran out) past the limit.
      const last = r.decoded.headers[LAST_ERROR];
      const reason =
        typeof last === 'string'
          ? last
          : `${ErrorCode.MaxDeliveries}: delivery limit of ${policy.maxDeliveries} of queue "${this.queue}" reached`;
      this.#handOver(r, () => this.#host.deadLetter(this.queue, r, reason, count - 1));
      return;
    }
    const delivery = new NatsDelivery(this, this.#host, r, count, policy.leaseMs);
    this.held.add(delivery);
    this.#watchLease(delivery);
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

  /** A delayed message: moved back to the queue when due, else held back for what is left. */
  #onDelayed(msg: Msg): void {
    const r = this.#receive(msg);
    if (r === undefined) return;
    const remaining = (r.decoded.notBefore ?? 0) - Date.now();
    if (remaining > EARLY_TOLERANCE_MS) {
      msg.respond(`-NAK ${JSON.stringify({ delay: remaining * 1_000_000 })}`);
      return;
    }
    this.#moving++;
    this.#host
      .copy(this.queue, 'ready', r, r.decoded.headers, {
        delivered: r.decoded.delivered,
        ...(r.decoded.publishedAt !== undefined && { publishedAt: r.decoded.publishedAt }),
      })
      .then(
        () => msg.respond('+ACK'),
        (err: unknown) => {
          this.#host.reportError(toError(err));
          msg.respond('-NAK');
        },
      )
      .finally(() => {
        this.#moving--;
        if (!this.#cancelled) this.#mover?.top();
      });
  }

  /** A handler threw: the error is reported and the delivery goes back to its queue. */
  #handlerFailed(delivery: NatsDelivery, err: unknown): Promise<void> {
    const error = toError(err);
    this.#host.reportError(error);
    return delivery.nack({ error: error.message }).catch(() => undefined);
  }

  /** Publishes through `publish`, then acks the message (gives it back if that failed). */
  #handOver(r: Received, publish: () => Promise<void>): void {
    publish().then(
      () => r.msg.respond('+ACK'),
      (err: unknown) => {
        this.#host.reportError(toError(err));
        r.msg.respond('-NAK');
      },
    );
  }

  #watchLease(d: NatsDelivery): void {
    this.#leases.add(d);
    const ms = this.#policy.leaseMs;
    this.#leaseTicker.atLeastEvery(Math.min(Math.max(Math.floor(ms / 10), 5), 1000));
  }

  /**
   * Lease bookkeeping, one timer for all held deliveries: a delivery whose lease is extended
   * beyond the server's AckWait sends a progress ack once half of the AckWait is left; one whose
   * lease ends is lost (JetStream delivers it again), and its late settles are no-ops.
   */
  #tickLeases(): void {
    if (this.#leases.size === 0) {
      this.#leaseTicker.stop();
      return;
    }
    const now = Date.now();
    for (const d of this.#leases) d.tick(now);
  }
}

/** Margin (ms) before JetStream's AckWait ends at which a lease counts as lost here. */
function leaseMargin(leaseMs: number): number {
  return Math.min(50, Math.floor(leaseMs / 10));
}

/** One delivery holding a lease: JetStream's AckWait, extended by progress acks. */
export class NatsDelivery implements Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority = 0;
  readonly deliveryCount: number;
  readonly #consumer: NatsConsumer;
  readonly #host: ConsumerHost;
  readonly #r: Received;
  readonly #leaseMs: number;
  #state: State = 'held';
  /** When the lease ends as asked (extendLease). */
  #until: number;
  /** When JetStream's AckWait ends unless a progress ack extends it. */
  #serverUntil: number;

  constructor(
    consumer: NatsConsumer,
    host: ConsumerHost,
    r: Received,
    deliveryCount: number,
    leaseMs: number,
  ) {
    this.#consumer = consumer;
    this.#host = host;
    this.#r = r;
    this.id = r.id;
    this.queue = consumer.queue;
    this.body = Buffer.from(r.msg.data.buffer, r.msg.data.byteOffset, r.msg.data.byteLength);
    this.headers = r.decoded.headers;
    this.deliveryCount = deliveryCount;
    this.#leaseMs = leaseMs;
    this.#until = this.#serverUntil = Date.now() + leaseMs - leaseMargin(leaseMs);
  }

  get leaseExpiresAt(): number {
    return this.#until;
  }

  async ack(): Promise<void> {
    if (!this.#take()) return;
    this.#r.msg.respond('+ACK');
    this.#consumer.settled(this);
  }

  async ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    await this.#host.publish(queue, messages);
    await this.ack();
  }

  async nack(options: { delayMs?: number; error?: string } = {}): Promise<void> {
    if (!this.#take()) return;
    const policy = this.#consumer.policy;
    if (this.deliveryCount >= policy.maxDeliveries) {
      const last = options.error ?? this.#lastError();
      const reason =
        last ??
        `${ErrorCode.MaxDeliveries}: delivery limit of ${policy.maxDeliveries} of queue "${this.queue}" reached`;
      await this.#handOver(() =>
        this.#host.deadLetter(this.queue, this.#r, reason, this.deliveryCount),
      );
      return;
    }
    const delayMs = options.delayMs ?? 0;
    if (delayMs > 0) {
      const headers: Headers = { ...this.headers };
      if (options.error !== undefined) headers[LAST_ERROR] = options.error;
      await this.#handOver(() =>
        this.#host.copy(this.queue, 'delayed', this.#r, headers, {
          delivered: this.deliveryCount,
          notBefore: Date.now() + delayMs,
          publishedAt: this.#r.decoded.publishedAt ?? this.#r.info.timestampMs,
        }),
      );
      return;
    }
    // Redelivered at once, in place, by JetStream (which counts the delivery).
    this.#r.msg.respond('-NAK');
    this.#consumer.settled(this);
  }

  async release(): Promise<void> {
    if (!this.#take()) return;
    // A copy that carries the deliveries before this one: JetStream would count a NAK.
    await this.#handOver(() =>
      this.#host.copy(this.queue, 'ready', this.#r, this.headers, {
        delivered: this.deliveryCount - 1,
        publishedAt: this.#r.decoded.publishedAt ?? this.#r.info.timestampMs,
      }),
    );
  }

  async deadLetter(reason: string): Promise<void> {
    if (!this.#take()) return;
    await this.#handOver(() =>
      this.#host.deadLetter(this.queue, this.#r, reason, this.deliveryCount),
    );
  }

  async extendLease(ms?: number): Promise<void> {
    if (this.#state !== 'held') return;
    const now = Date.now();
    this.#until = now + (ms ?? this.#leaseMs);
    this.#touch(now);
  }

  /** Lease bookkeeping at `now` (see NatsConsumer#tickLeases). */
  tick(now: number): void {
    if (this.#state !== 'held') return;
    if (now >= this.#serverUntil) {
      this.#state = 'lost';
      this.#consumer.settled(this);
    } else if (this.#until > this.#serverUntil && this.#serverUntil - now < this.#leaseMs / 2) {
      this.#touch(now);
    }
  }

  /** Gives the message back at once (counted as a delivery, as when a connection drops). */
  giveBack(): void {
    if (!this.#take()) return;
    this.#r.msg.respond('-NAK');
    this.#consumer.settled(this);
  }

  #touch(now: number): void {
    this.#r.msg.respond('+WPI');
    this.#serverUntil = now + this.#leaseMs - leaseMargin(this.#leaseMs);
  }

  #lastError(): string | undefined {
    const v = this.headers[LAST_ERROR];
    return typeof v === 'string' ? v : undefined;
  }

  /** Moves from held to settled; false (a no-op settle) when already settled or lost. */
  #take(): boolean {
    if (this.#state !== 'held') return false;
    this.#state = 'settled';
    return true;
  }

  async #handOver(publish: () => Promise<void>): Promise<void> {
    try {
      await publish();
    } catch (err) {
      this.#r.msg.respond('-NAK');
      this.#consumer.settled(this);
      throw err;
    }
    this.#r.msg.respond('+ACK');
    this.#consumer.settled(this);
  }
}
