import { ErrorCode, QtuneError } from '../protocol/errors.js';
import type { Headers } from '../protocol/envelope.js';

/** Policy of a queue, fixed when it is first declared. */
export interface QueueOptions {
  /** Survive a broker restart (default: true). Non-durable queues may live in memory only. */
  durable?: boolean;
  /** Deliveries before a message is dead-lettered with its last error (default: 5). */
  maxDeliveries?: number;
  /** Queue receiving dead letters (default: `<name>.dead`). Declared on demand. */
  deadLetterQueue?: string;
  /** Number of priority levels, 0 (lowest) to n-1 (default: 10). */
  priorities?: number;
  /** Lease (visibility timeout) in ms granted to a consumer per delivery (default: 30000). */
  leaseMs?: number;
  /** A message older than this many ms is dead-lettered with reason EXPIRED (default: none). */
  messageTtlMs?: number;
  /**
   * Deleted when the broker handle that declared it closes or dies (default: false). Used for
   * reply queues and subscriptions.
   */
  temporary?: boolean;
}

/** A message to publish. The body is opaque bytes to the broker (qtune puts JSON envelopes). */
export interface OutgoingMessage {
  body: Buffer | string;
  /** Stable message id (default: a fresh UUID). */
  id?: string;
  /** 0 (default) to `priorities - 1`; higher is delivered first. Clamped to the queue's range. */
  priority?: number;
  /** Deliver no earlier than this many ms from now (default: 0). */
  delayMs?: number;
  headers?: Headers;
}

/** One delivery of a message to a consumer, holding a lease until settled. */
export interface Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority: number;
  /** 1 on the first delivery, incremented on every redelivery. */
  readonly deliveryCount: number;
  /** Epoch ms when the lease ends unless extended. */
  readonly leaseExpiresAt: number;
  /** Removes the message for good. */
  ack(): Promise<void>;
  /**
   * Publishes `messages` to `queue`, then acks this delivery: the messages are durable before
   * the ack takes effect, and where the broker can (embedded, memory) both happen in one atomic
   * step. This is how a worker hands in a task's result. If the lease was lost meanwhile, the
   * messages are still published and the ack is a no-op.
   */
  ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void>;
  /**
   * Gives the message back for another delivery after `delayMs` (default: 0), recording
   * `error` as its last error. Past `maxDeliveries` it is dead-lettered instead.
   */
  nack(options?: { delayMs?: number; error?: string }): Promise<void>;
  /** Hands back a message this consumer never started; does not count as a delivery. */
  release(): Promise<void>;
  /** Moves the message to the dead-letter queue with `reason`. */
  deadLetter(reason: string): Promise<void>;
  /** Extends the lease to `ms` from now (default: the queue's leaseMs). */
  extendLease(ms?: number): Promise<void>;
}

export interface ConsumeOptions {
  /** Most unsettled deliveries this consumer holds at once (default: 10). */
  prefetch?: number;
  /** Free-form tag shown in statistics (default: a fresh id). */
  tag?: string;
}

/** Called for each delivery; a throw is logged and the delivery nacked. */
export type DeliveryHandler = (delivery: Delivery) => void | Promise<void>;

export interface Consumer {
  readonly tag: string;
  /**
   * Stops new deliveries, releases the ones not yet handed to the handler, and waits for the
   * handler calls in progress to return.
   */
  cancel(): Promise<void>;
  /**
   * Acks deliveries this consumer handed out, as `ack()` on each would, and resolves once all
   * of them are acked; deliveries already settled are skipped. Where the broker can, one write
   * serves them all (the embedded broker: one operation in one transaction, instead of one per
   * delivery). Also works after `cancel()`, for deliveries still held.
   */
  ackAll(deliveries: readonly Delivery[]): Promise<void>;
}

/** `Consumer.ackAll` for brokers with nothing better to do than `ack()` on each delivery. */
export async function ackEach(deliveries: readonly Delivery[]): Promise<void> {
  await Promise.all(deliveries.map((d) => d.ack()));
}

/**
 * `Consumer.ackAll` for a broker that acks its own deliveries together: those `own` accepts go
 * to `ackOwn` in one call (which skips any already settled), the rest are acked one by one.
 */
export function ackTogether<D extends Delivery>(
  deliveries: readonly Delivery[],
  own: (d: Delivery) => d is D,
  ackOwn: (deliveries: D[]) => Promise<void>,
): Promise<void> {
  const mine: D[] = [];
  const others: Promise<void>[] = [];
  for (const d of deliveries) {
    if (own(d)) mine.push(d);
    else others.push(d.ack());
  }
  const acked = ackOwn(mine);
  return others.length === 0 ? acked : Promise.all([acked, ...others]).then(() => undefined);
}

export interface SubscribeOptions {
  /** Prefetch of the subscription's queue (default: 100). */
  prefetch?: number;
}

export interface QueueStats {
  queue: string;
  /** Deliverable now. */
  ready: number;
  /** Waiting for a delayed retry or a delayed publish. */
  delayed: number;
  /** Leased to a consumer and not yet settled. */
  inFlight: number;
  /** Messages in this queue's dead-letter queue. */
  deadLettered: number;
  /** Live consumers across all processes. */
  consumers: number;
  /**
   * Paused with {@link Broker.pauseQueue}: consumers get no new deliveries from it until
   * {@link Broker.resumeQueue}. Always false where `capabilities.pause` is false.
   */
  paused: boolean;
}

/** What an implementation can do; the conformance suite skips what is missing, saying why. */
export interface BrokerCapabilities {
  /** Messages survive a restart of the broker and of every client process. */
  durable: boolean;
  /** Several OS processes can share queues through this broker. */
  multiProcess: boolean;
  /** Can list every queue (for `qtune status`). */
  listQueues: boolean;
  /** Has topic publish/subscribe (`publishTopic`, `subscribe`); the HTTP gateway client has not. */
  topics: boolean;
  /** Can purge a queue ({@link Broker.purgeQueue}); otherwise it rejects, saying why. */
  purge: boolean;
  /**
   * Can pause and resume a queue ({@link Broker.pauseQueue}); otherwise they reject, saying why
   * (RabbitMQ has no verb that stops a queue's deliveries to every consumer while keeping them).
   */
  pause: boolean;
  /**
   * Implements the reply-channel extension (src/broker/reply-channel.ts): replies come straight
   * back to the requester without a reply queue (default: false).
   */
  replyChannel?: boolean;
  /**
   * Honours {@link OutgoingMessage.priority}: higher priorities are delivered first (default:
   * true). Where false, priorities are accepted and ignored, and `Delivery.priority` is 0.
   */
  priorities?: boolean;
  /**
   * Holds back a message published with `delayMs` or nacked with a delay, and counts it as
   * `delayed` (default: true). Where false, a delay is refused with a BrokerError.
   */
  delay?: boolean;
  /**
   * A delivery not settled within its lease goes to another consumer, and `extendLease` keeps
   * it (default: true). Where false, a delivery stays with its consumer until settled or until
   * its connection ends; `extendLease` is a no-op.
   */
  leases?: boolean;
  /**
   * Dead-letters after `maxDeliveries`, on `deadLetter(reason)` and past `messageTtlMs`, into
   * the dead-letter queue, with the reason headers (default: true).
   */
  deadLetters?: boolean;
  /** `release()` does not count as a delivery (default: true). */
  releaseUncounted?: boolean;
}

/** Capabilities that hold unless a broker says otherwise (the optional flags above). */
export type OptionalCapability =
  'priorities' | 'delay' | 'leases' | 'deadLetters' | 'releaseUncounted';

/** Whether `broker` has the optional capability `name` (true unless it declares false). */
export function hasCapability(
  broker: { capabilities: BrokerCapabilities },
  name: OptionalCapability,
): boolean {
  return broker.capabilities[name] !== false;
}

export type BrokerStatus = 'connected' | 'reconnecting' | 'closed';

/** Typed events of a broker handle. */
export interface BrokerEvents {
  status: (status: BrokerStatus) => void;
  error: (error: Error) => void;
}

/**
 * The narrow waist of qtune: queue semantics every transport implements. A handle is one
 * connection; several handles (in one or many processes) may share the same queues.
 */
export interface Broker {
  /** Implementation name (`memory`, `embedded`, `amqp`, ...). */
  readonly kind: string;
  readonly capabilities: BrokerCapabilities;
  /** Creates the queue if missing; re-declaring keeps the existing policy. */
  declareQueue(name: string, options?: QueueOptions): Promise<void>;
  /** Deletes the queue and its messages. */
  deleteQueue(name: string): Promise<void>;
  /**
   * Removes the queue's ready and delayed messages and resolves with how many it removed.
   * Messages in flight stay leased and finish as their consumers settle them; the dead-letter
   * queue is left alone. Rejects with a NotFoundError when the queue does not exist, and with a
   * BrokerError where `capabilities.purge` is false.
   */
  purgeQueue(name: string): Promise<number>;
  /**
   * Pauses the queue for every consumer of every process: no new deliveries from it until
   * {@link resumeQueue}; deliveries in flight finish, publishes are still accepted, and
   * `stats` shows it paused. Idempotent. Rejects with a NotFoundError when the queue does not
   * exist, and with a BrokerError where `capabilities.pause` is false.
   */
  pauseQueue(name: string): Promise<void>;
  /** Lets consumers take from a paused queue again. Idempotent; rejects as {@link pauseQueue}. */
  resumeQueue(name: string): Promise<void>;
  /**
   * Publishes messages in order; resolves with their ids once the broker has made them durable
   * (committed or confirmed). Waits, rather than buffers without bound, under backpressure.
   */
  publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]>;
  /** Starts delivering messages of `queue` to `handler`. */
  consume(queue: string, handler: DeliveryHandler, options?: ConsumeOptions): Promise<Consumer>;
  /** Publishes to every subscription whose pattern matches `topic` (AMQP topic rules). */
  publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void>;
  /** Subscribes to topics matching `pattern`: words split by `.`, `*` one word, `#` zero or more. */
  subscribe(
    pattern: string,
    handler: DeliveryHandler,
    options?: SubscribeOptions,
  ): Promise<Consumer>;
  /** Statistics of one queue. */
  stats(queue: string): Promise<QueueStats>;
  /** Names of all queues, where `capabilities.listQueues`. */
  listQueues(): Promise<string[]>;
  on<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this;
  off<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this;
  /** Stops consumers, waits for handler calls in progress, then closes. Idempotent. */
  close(): Promise<void>;
}

/**
 * Declares `name` with `options` if it does not exist, and keeps an existing queue as it is even
 * when its properties differ (where `declareQueue` refuses with QUEUE_MISMATCH). For options
 * that only matter to whoever creates the queue, such as a worker's `--lease`. Resolves with the
 * mismatch when the queue was kept with other properties, so the caller can say so.
 */
export async function declareQueueOrKeep(
  broker: Broker,
  name: string,
  options: QueueOptions,
): Promise<QtuneError | undefined> {
  try {
    await broker.declareQueue(name, options);
    return undefined;
  } catch (err) {
    if (!(err instanceof QtuneError) || err.code !== ErrorCode.QueueMismatch) throw err;
    await broker.declareQueue(name);
    return err;
  }
}

/** Defaults applied when a QueueOptions field is missing. */
export const QUEUE_DEFAULTS = {
  durable: true,
  maxDeliveries: 5,
  priorities: 10,
  leaseMs: 30_000,
} as const;

/** The dead-letter queue name of `queue` unless its options name another. */
export function deadLetterQueueOf(queue: string, options?: QueueOptions): string {
  return options?.deadLetterQueue ?? `${queue}.dead`;
}

/** Header set on a dead-lettered message: why it was dead-lettered. */
export const DEAD_LETTER_REASON_HEADER = 'x-qtune-dead-reason';
/** Header set on a dead-lettered message: the queue it came from. */
export const DEAD_LETTER_QUEUE_HEADER = 'x-qtune-dead-queue';
/** Header set on a dead-lettered message: deliveries it had. */
export const DEAD_LETTER_DELIVERIES_HEADER = 'x-qtune-deliveries';
