import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Channel, ChannelModel, ConsumeMessage, Options } from 'amqplib';
import {
  BrokerError,
  ErrorCode,
  InputError,
  NotFoundError,
  QtuneError,
} from '../../protocol/errors.js';
import type { Headers } from '../../protocol/envelope.js';
import { assertName, MAX_BROKER_QUEUE_NAME_BYTES } from '../../protocol/names.js';
import { redact } from '../../protocol/redact.js';
import { parseNetworkUrl } from '../../protocol/target-url.js';
import { BrokerEventSource } from '../events.js';
import type {
  Broker,
  BrokerCapabilities,
  ConsumeOptions,
  Consumer,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../contract.js';
import type { ReplyChannel, ReplyChannels, ReplyMessage } from '../reply-channel.js';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
} from '../contract.js';
import {
  DEFAULT_PREFETCH,
  DEFAULT_SUBSCRIBE_PREFETCH,
  checkMessage,
  checkPrefetch,
  checkTopicPattern,
  queueMismatch,
} from '../checks.js';

/** basic.qos prefetch-count is a 16-bit field. */
const AMQP_MAX_PREFETCH = 65535;
import { AmqpConsumer } from './consumer.js';
import type { ConsumerHost } from './consumer.js';
import type { Backoff } from './link.js';
import { DEFAULT_BACKOFF, Link } from './link.js';
import { Management } from './management.js';
import type { Outgoing } from './publisher.js';
import { Publisher } from './publisher.js';
import { DirectReplyChannel, isDirectReplyAddress } from './direct-reply.js';
import { publishOptions, toBuffer } from './properties.js';

/** The durable topic exchange behind publishTopic and subscribe. */
export const TOPIC_EXCHANGE = 'qtune.topic';
/** Deliveries a message had before its latest republish (nack, release, lease hand-back). */
export const DELIVERED_HEADER = 'x-qtune-delivered';
/** Epoch ms before which a delayed message must not be handed to a handler. */
export const NOT_BEFORE_HEADER = 'x-qtune-not-before';
/** The error of the latest nack. */
export const LAST_ERROR_HEADER = 'x-qtune-last-error';

/**
 * Delay buckets in ms: a delayed message waits in the bucket queue `<queue>.delayed.<ms>` of the
 * largest bucket not above its delay, whose message TTL dead-letters it back to `<queue>`; what
 * is left of its delay is waited out in a smaller bucket when it arrives.
 */
export const DELAY_BUCKETS_MS = [
  100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
  2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000,
] as const;
/** A delayed message arriving this early (ms) or less is delivered at once. */
const EARLY_TOLERANCE_MS = 20;
const DELAY_QUEUE = /\.delayed\.\d+$/;
/** Headers RabbitMQ adds on dead-lettering and redelivery; not copied on a republish. */
const BROKER_HEADERS = [
  'x-death',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-first-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
  'x-last-death-exchange',
  'x-delivery-count',
];

/** Options of {@link AmqpBroker.open}. */
export interface AmqpBrokerOptions {
  /** `amqp://user:pass@host:port/vhost` or `amqps://...`. */
  url: string;
  /**
   * Base URL of the management HTTP API, used for in-flight counts and listing queues (default:
   * the `management` query parameter of the URL, a port or a URL, else `http://HOST:15672`).
   */
  managementUrl?: string;
  /** Most unconfirmed published messages per publishing channel; publish waits beyond (default: 1000). */
  publishWindow?: number;
  /**
   * Confirm channels publishing for this handle (default: 2). The messages of one `publish` call
   * keep their order; calls in flight at the same time may interleave.
   */
  publishChannels?: number;
  /** Reconnect backoff (default: 100 ms doubling to 2 s, ±30 % jitter). */
  backoff?: Backoff;
  /** AMQP heartbeat in seconds (default: 30). */
  heartbeatSeconds?: number;
}

/** Queue options of {@link AmqpBroker.declareQueue}: the contract's, plus RabbitMQ's own. */
export interface AmqpQueueOptions extends QueueOptions {
  /**
   * RabbitMQ queue type: replicated `quorum` queues, or `classic` ones (needed for priorities on
   * RabbitMQ 3.x) (default: 'quorum', or 'classic' when `priorities` is given or `durable` is
   * false).
   */
  type?: 'quorum' | 'classic';
}

interface Policy {
  type: 'quorum' | 'classic';
  durable: boolean;
  maxDeliveries: number;
  deadLetterQueue: string;
  priorities: number;
  leaseMs: number;
  messageTtlMs: number | undefined;
  temporary: boolean;
}

interface AmqpFailure {
  code?: unknown;
}

type HandleState = 'open' | 'closing' | 'closed';

/**
 * A broker handle on RabbitMQ (AMQP 0-9-1): one connection for publishing (confirms, bounded
 * window) and one for consuming, both recovering by themselves. See docs/brokers/amqp.md.
 */
export class AmqpBroker extends BrokerEventSource implements Broker, ReplyChannels {
  readonly kind = 'amqp';
  readonly capabilities: BrokerCapabilities;
  readonly #pubLink: Link;
  readonly #subLink: Link;
  readonly #publisher: Publisher;
  readonly #management: Management | undefined;
  readonly #policies = new Map<string, Policy>();
  readonly #temporary = new Map<string, Policy>();
  readonly #delayQueues = new Set<string>();
  readonly #knownQueues = new Set<string>();
  readonly #consumers = new Set<AmqpConsumer>();
  readonly #replyChannels = new Set<DirectReplyChannel>();
  readonly #host: ConsumerHost;
  #opsPool: Channel[] = [];
  #state: HandleState = 'open';
  #closing: Promise<void> | undefined;
  #down = new Set<Link>();

  private constructor(
    pubLink: Link,
    subLink: Link,
    publisher: Publisher,
    management: Management | undefined,
  ) {
    super();
    this.#pubLink = pubLink;
    this.#subLink = subLink;
    this.#publisher = publisher;
    this.#management = management;
    this.capabilities = Object.freeze({
      durable: true,
      multiProcess: true,
      listQueues: management !== undefined,
      topics: true,
      purge: true,
      // RabbitMQ has no verb that holds a queue's deliveries from every consumer and resumes them.
      pause: false,
      replyChannel: true,
    });
    this.#host = this.#makeHost();
    pubLink.onUp((conn) => this.#pubUp(conn));
    subLink.onUp((conn) => this.#subUp(conn));
    for (const link of [pubLink, subLink]) {
      link.onDown(() => this.#linkDown(link));
      link.onUp(async () => this.#linkUp(link));
    }
  }

  /** Connects to RabbitMQ (the publishing and the consuming connection). */
  static async open(options: AmqpBrokerOptions | string): Promise<AmqpBroker> {
    const opts = typeof options === 'string' ? { url: options } : options;
    const { amqpUrl, managementUrl, user, password, vhost, tls } = parseAmqpUrl(opts.url);
    const socketOptions: Record<string, unknown> = {
      heartbeat: opts.heartbeatSeconds ?? 30,
      ...(tls ? tlsOptions() : {}),
    };
    const connectOptions = { ...socketOptions };
    const backoff = opts.backoff ?? DEFAULT_BACKOFF;
    const pubLink = new Link(
      amqpUrl,
      { ...connectOptions, clientProperties: { connection_name: 'qtune publish' } },
      backoff,
    );
    const subLink = new Link(
      amqpUrl,
      { ...connectOptions, clientProperties: { connection_name: 'qtune consume' } },
      backoff,
    );
    const publisher = new Publisher(pubLink, opts.publishWindow ?? 1000, opts.publishChannels ?? 2);
    let management: Management | undefined = new Management(
      opts.managementUrl ?? managementUrl,
      user,
      password,
      vhost,
    );
    if (!(await management.probe())) management = undefined;
    const broker = new AmqpBroker(pubLink, subLink, publisher, management);
    try {
      await pubLink.open();
      await subLink.open();
    } catch (err) {
      await Promise.allSettled([pubLink.close(), subLink.close()]);
      throw new BrokerError(
        ErrorCode.BrokerUnavailable,
        `cannot connect to RabbitMQ at ${redact(opts.url)}: ${redact((err as Error).message)}`,
        { cause: err },
      );
    }
    return broker;
  }

  async declareQueue(name: string, options: AmqpQueueOptions = {}): Promise<void> {
    this.#assertUsable(`declareQueue "${name}"`);
    assertQueueName(name);
    const policy = resolvePolicy(name, options);
    const known = this.#policies.get(name);
    // qtune's own properties (lease, deliveries) live in the client: compared here, per handle.
    const mismatch = known && queueMismatch(name, known, options);
    if (mismatch) throw mismatch;
    if (!known) this.#policies.set(name, policy);
    if (policy.temporary) {
      // Exclusive to the consuming connection: gone when this handle closes or dies.
      this.#temporary.set(name, policy);
      const conn = await this.#subLink.connection();
      try {
        await declareTemporary(conn, name, policy);
      } catch (err) {
        if (!known) {
          this.#policies.delete(name);
          this.#temporary.delete(name);
        }
        // 405 RESOURCE_LOCKED, 406 PRECONDITION_FAILED: the queue exists with other properties.
        const code = ((err as Error).cause as AmqpFailure | undefined)?.code;
        if (code === 405 || code === 406) {
          throw new QtuneError(
            ErrorCode.QueueMismatch,
            `queue "${name}" exists with other properties; declared as temporary (${(err as Error).message})`,
            { cause: err },
          );
        }
        throw err;
      }
      this.#knownQueues.add(name);
      return;
    }
    if (await this.#exists(name)) {
      this.#knownQueues.add(name);
      return;
    }
    await this.#assertQueue(name, queueArguments(policy), policy.durable);
    if (!(await this.#exists(policy.deadLetterQueue))) {
      await this.#assertQueue(policy.deadLetterQueue, { 'x-queue-type': 'quorum' }, true);
    }
    this.#knownQueues.add(name);
  }

  async deleteQueue(name: string): Promise<void> {
    this.#assertUsable(`deleteQueue "${name}"`);
    assertQueueName(name);
    // A temporary queue is exclusive to the consuming connection: only that one may delete it.
    const remove = (ch: Channel) => ch.deleteQueue(name);
    await (this.#temporary.has(name) ? this.#ownerOp(remove) : this.#op(remove));
    await Promise.all(
      DELAY_BUCKETS_MS.map((ms) =>
        this.#op((ch) => ch.deleteQueue(delayQueueName(name, ms))).catch(() => undefined),
      ),
    );
    for (const ms of DELAY_BUCKETS_MS) this.#delayQueues.delete(delayQueueName(name, ms));
    this.#policies.delete(name);
    this.#temporary.delete(name);
    this.#knownQueues.delete(name);
  }

  /** Purges the queue and its delay buckets (the delayed messages) natively. */
  async purgeQueue(name: string): Promise<number> {
    this.#assertUsable(`purgeQueue "${name}"`);
    assertQueueName(name);
    if ((await this.#check(name)) === undefined) throw new NotFoundError('queue', name);
    const purge = async (queue: string): Promise<number> => {
      try {
        return (await this.#op((ch) => ch.purgeQueue(queue))).messageCount;
      } catch (err) {
        if ((err as AmqpFailure).code === 404) return 0;
        throw asBrokerError(err, `purge queue "${queue}"`);
      }
    };
    const counts = await Promise.all([
      purge(name),
      ...DELAY_BUCKETS_MS.map((ms) => purge(delayQueueName(name, ms))),
    ]);
    return counts.reduce((a, b) => a + b, 0);
  }

  async pauseQueue(name: string): Promise<void> {
    this.#assertUsable(`pauseQueue "${name}"`);
    throw pauseUnavailable(`pauseQueue "${name}"`);
  }

  async resumeQueue(name: string): Promise<void> {
    this.#assertUsable(`resumeQueue "${name}"`);
    throw pauseUnavailable(`resumeQueue "${name}"`);
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    this.#assertUsable(`publish to queue "${queue}"`);
    assertQueueName(queue, { replyAddress: true });
    const target = `queue "${queue}"`;
    for (const m of messages) checkMessage(target, m);
    const ids: string[] = [];
    const out: Outgoing[] = [];
    const priorities = this.#policies.get(queue)?.priorities ?? QUEUE_DEFAULTS.priorities;
    for (const m of messages) {
      const id = m.id ?? randomUUID();
      ids.push(id);
      const options = publishOptions(m, id, priorities);
      const delayMs = m.delayMs ?? 0;
      if (delayMs > 0) {
        options.headers = { ...options.headers, [NOT_BEFORE_HEADER]: Date.now() + delayMs };
        out.push(await this.#delayed(queue, delayMs, toBuffer(m.body), options));
      } else {
        out.push({
          exchange: '',
          routingKey: queue,
          content: toBuffer(m.body),
          options,
          target,
        });
      }
    }
    await this.#publisher.publish(out);
    return ids;
  }

  async consume(
    queue: string,
    handler: DeliveryHandler,
    options: ConsumeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`consume from queue "${queue}"`);
    assertQueueName(queue);
    const prefetch = checkPrefetch(
      `queue "${queue}"`,
      options.prefetch ?? DEFAULT_PREFETCH,
      AMQP_MAX_PREFETCH,
    );
    return this.#startConsumer(queue, undefined, handler, prefetch, options.tag);
  }

  async publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#assertUsable(`publish to topic "${topic}"`);
    if (typeof topic !== 'string' || topic.length === 0) {
      throw new InputError(`topic must be a non-empty string, got ${JSON.stringify(topic)}`);
    }
    for (const m of messages) checkMessage(`topic "${topic}"`, m);
    const out: Outgoing[] = messages.map((m) => {
      const options = publishOptions(m, m.id ?? randomUUID(), QUEUE_DEFAULTS.priorities);
      options.headers = { ...options.headers, 'x-qtune-topic': topic };
      options.mandatory = false;
      return {
        exchange: TOPIC_EXCHANGE,
        routingKey: topic,
        content: toBuffer(m.body),
        options,
        target: `topic "${topic}"`,
      };
    });
    await this.#publisher.publish(out);
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
      AMQP_MAX_PREFETCH,
    );
    return this.#startConsumer('', pattern, handler, prefetch, undefined);
  }

  async stats(queue: string): Promise<QueueStats> {
    this.#assertUsable(`stats of queue "${queue}"`);
    assertQueueName(queue);
    const main = await this.#check(queue);
    if (main === undefined) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        `queue "${queue}" does not exist in RabbitMQ; declare it first`,
      );
    }
    const policy = this.#policies.get(queue);
    const dead = await this.#check(policy?.deadLetterQueue ?? deadLetterQueueOf(queue));
    // Bucket queues answer exactly and at once; the management API lags by seconds.
    const buckets = await Promise.all(
      DELAY_BUCKETS_MS.map((ms) => this.#check(delayQueueName(queue, ms))),
    );
    const delayed = buckets.reduce<number>((n, c) => n + (c?.messageCount ?? 0), 0);
    // This handle knows its own deliveries exactly. When every consumer of the queue is one of
    // ours, that is the whole in-flight count; otherwise the management API tells (seconds late).
    let local = 0;
    let localConsumers = 0;
    for (const c of this.#consumers) {
      if (c.queue !== queue) continue;
      local += c.held.size;
      localConsumers++;
    }
    let inFlight = local;
    if (this.#management && localConsumers < main.consumerCount) {
      inFlight = (await this.#management.queue(queue))?.unacknowledged ?? local;
    }
    return {
      queue,
      ready: main.messageCount,
      delayed,
      inFlight,
      deadLettered: dead?.messageCount ?? 0,
      consumers: main.consumerCount,
      paused: false,
    };
  }

  async listQueues(): Promise<string[]> {
    this.#assertUsable('listQueues');
    if (!this.#management) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        'listing queues needs the RabbitMQ management API (rabbitmq_management), which did not answer',
      );
    }
    const queues = await this.#management.queues();
    return queues
      .map((q) => q.name)
      .filter((n) => !DELAY_QUEUE.test(n) && !n.startsWith('amq.gen-'))
      .sort();
  }

  /**
   * Cancels this handle's consumers, waits for handler calls in progress (their settles land),
   * then closes both connections: RabbitMQ requeues deliveries still unsettled and deletes the
   * temporary queues. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /**
   * Request/reply without a reply queue, over RabbitMQ's direct reply-to (see
   * DirectReplyChannel): requests go out on a channel of the publishing connection that also
   * receives their replies.
   */
  async openReplyChannel(onReply: (reply: ReplyMessage) => void): Promise<ReplyChannel> {
    this.#assertUsable('open a reply channel');
    const channel = await DirectReplyChannel.open(this.#pubLink, onReply, () =>
      this.#replyChannels.delete(channel),
    );
    this.#replyChannels.add(channel);
    return channel;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    const consumers = [...this.#consumers];
    await Promise.all(consumers.map((c) => c.cancel()));
    await Promise.all(consumers.map((c) => c.closeChannel()));
    await Promise.all([...this.#replyChannels].map((c) => c.close()));
    this.#state = 'closed';
    this.#publisher.failAll(closedError('publish'));
    await Promise.allSettled([this.#subLink.close(), this.#pubLink.close()]);
    this.emitStatus('closed');
  }

  async #startConsumer(
    queue: string,
    pattern: string | undefined,
    handler: DeliveryHandler,
    prefetch: number,
    tag: string | undefined,
  ): Promise<Consumer> {
    const consumer: AmqpConsumer = new AmqpConsumer({
      tag: tag ?? `amqp-${randomUUID()}`,
      host: this.#host,
      handler,
      prefetch,
      queue,
      ...(pattern !== undefined ? { pattern, topicExchange: TOPIC_EXCHANGE } : {}),
      onClosed: () => this.#consumers.delete(consumer),
    });
    const conn = await this.#subLink.connection();
    try {
      await consumer.start(conn);
    } catch (err) {
      throw asBrokerError(
        err,
        `consume from ${pattern !== undefined ? `topic pattern "${pattern}"` : `queue "${queue}"`}`,
      );
    }
    this.#consumers.add(consumer);
    return consumer.toConsumer();
  }

  async #pubUp(conn: ChannelModel): Promise<void> {
    this.#opsPool = [];
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    await ch.assertExchange(TOPIC_EXCHANGE, 'topic', { durable: true });
    await ch.close();
  }

  async #subUp(conn: ChannelModel): Promise<void> {
    for (const [name, policy] of this.#temporary) await declareTemporary(conn, name, policy);
    for (const c of this.#consumers) if (!c.cancelled) await c.start(conn);
  }

  #linkDown(link: Link): void {
    if (this.#state === 'closed') return;
    if (link === this.#pubLink) this.#opsPool = [];
    const wasUp = this.#down.size === 0;
    this.#down.add(link);
    if (wasUp) this.emitStatus('reconnecting');
  }

  #linkUp(link: Link): void {
    if (!this.#down.delete(link)) return;
    if (this.#down.size === 0 && this.#state !== 'closed') this.emitStatus('connected');
  }

  #makeHost(): ConsumerHost {
    return {
      policy: (queue) => {
        const p = this.#policies.get(queue);
        return {
          leaseMs: p?.leaseMs ?? QUEUE_DEFAULTS.leaseMs,
          maxDeliveries: p?.maxDeliveries ?? QUEUE_DEFAULTS.maxDeliveries,
        };
      },
      decode: (msg) => decodeMessage(msg),
      remainingDelay: (msg) => {
        const nb = Number(msg.properties.headers?.[NOT_BEFORE_HEADER] ?? 0);
        const remaining = nb - Date.now();
        return remaining > EARLY_TOLERANCE_MS ? remaining : 0;
      },
      requeueCopy: async (queue, msg, delivered, options = {}) => {
        const props = copyProperties(msg);
        const headers: Record<string, unknown> = {
          ...props.headers,
          [DELIVERED_HEADER]: delivered,
        };
        if (options.error !== undefined) headers[LAST_ERROR_HEADER] = options.error;
        const delayMs = options.delayMs ?? 0;
        if (delayMs > 0) {
          headers[NOT_BEFORE_HEADER] = Date.now() + delayMs;
          props.headers = headers;
          await this.#publisher.publish([await this.#delayed(queue, delayMs, msg.content, props)]);
        } else {
          delete headers[NOT_BEFORE_HEADER];
          props.headers = headers;
          await this.#publisher.publish([
            {
              exchange: '',
              routingKey: queue,
              content: msg.content,
              options: { ...props, mandatory: true },
              target: `queue "${queue}"`,
            },
          ]);
        }
      },
      deadLetterCopy: async (queue, msg, reason, count) => {
        const dlq = this.#policies.get(queue)?.deadLetterQueue ?? deadLetterQueueOf(queue);
        if (!this.#knownQueues.has(dlq)) {
          if (!(await this.#exists(dlq))) {
            await this.#assertQueue(dlq, { 'x-queue-type': 'quorum' }, true);
          }
          this.#knownQueues.add(dlq);
        }
        const props = copyProperties(msg);
        const headers: Record<string, unknown> = { ...props.headers };
        delete headers[DELIVERED_HEADER];
        delete headers[NOT_BEFORE_HEADER];
        headers[DEAD_LETTER_REASON_HEADER] = reason;
        headers[DEAD_LETTER_QUEUE_HEADER] = queue;
        headers[DEAD_LETTER_DELIVERIES_HEADER] = count;
        props.headers = headers;
        await this.#publisher.publish([
          {
            exchange: '',
            routingKey: dlq,
            content: msg.content,
            options: { ...props, mandatory: true },
            target: `queue "${dlq}"`,
          },
        ]);
      },
      publish: (queue, messages) => this.publish(queue, messages),
      reportError: (error) => this.emitError(error),
    };
  }

  /** The outgoing message for `queue` delayed by `delayMs`, its bucket queue declared. */
  async #delayed(
    queue: string,
    delayMs: number,
    content: Buffer,
    options: Options.Publish,
  ): Promise<Outgoing> {
    const bucket = delayBucket(delayMs);
    const name = delayQueueName(queue, bucket);
    if (!this.#delayQueues.has(name)) {
      if (!this.#knownQueues.has(queue)) {
        if (!(await this.#exists(queue))) {
          throw new BrokerError(
            ErrorCode.BrokerState,
            `message for queue "${queue}" is unroutable: queue "${queue}" does not exist; declare it first`,
          );
        }
        this.#knownQueues.add(queue);
      }
      if (!(await this.#exists(name))) {
        await this.#assertQueue(
          name,
          {
            'x-queue-type': 'classic',
            'x-message-ttl': bucket,
            'x-dead-letter-exchange': '',
            'x-dead-letter-routing-key': queue,
          },
          true,
        );
      }
      this.#delayQueues.add(name);
    }
    return {
      exchange: '',
      routingKey: name,
      content,
      options: { ...options, mandatory: true },
      target: `queue "${queue}"`,
    };
  }

  /** Runs `fn` on a pooled channel of the publishing connection; a failed channel is dropped. */
  async #op<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    const conn = await this.#pubLink.connection();
    let ch = this.#opsPool.pop();
    if (ch === undefined) {
      ch = await conn.createChannel();
      ch.on('error', () => undefined);
    }
    const result = await fn(ch);
    if (this.#pubLink.current() === conn) this.#opsPool.push(ch);
    return result;
  }

  /**
   * Runs `fn` on a fresh channel of the consuming connection, which owns this handle's temporary
   * queues: RabbitMQ refuses any other connection a passive declare or a delete of an exclusive
   * queue (405 RESOURCE_LOCKED).
   */
  async #ownerOp<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    const conn = await this.#subLink.connection();
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => undefined);
    }
  }

  /** checkQueue, or undefined when the queue does not exist. */
  async #check(name: string): Promise<{ messageCount: number; consumerCount: number } | undefined> {
    try {
      if (this.#temporary.has(name)) return await this.#ownerOp((ch) => ch.checkQueue(name));
      return await this.#op((ch) => ch.checkQueue(name));
    } catch (err) {
      if ((err as AmqpFailure).code === 404) return undefined;
      throw asBrokerError(err, `check queue "${name}"`);
    }
  }

  async #exists(name: string): Promise<boolean> {
    return (await this.#check(name)) !== undefined;
  }

  async #assertQueue(name: string, args: Record<string, unknown>, durable: boolean): Promise<void> {
    try {
      await this.#op((ch) => ch.assertQueue(name, { durable, arguments: args }));
    } catch (err) {
      // 406: declared meanwhile (by another client) with other arguments; its policy stays.
      if ((err as AmqpFailure).code === 406) return;
      throw asBrokerError(err, `declare queue "${name}"`);
    }
  }

  #assertUsable(what: string): void {
    if (this.#state === 'closed') throw closedError(what);
  }

  #assertOpen(what: string): void {
    if (this.#state !== 'open') throw closedError(what);
  }
}

async function declareTemporary(conn: ChannelModel, name: string, policy: Policy): Promise<void> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  try {
    await ch.assertQueue(name, {
      exclusive: true,
      durable: false,
      arguments: {
        ...(policy.priorities > 1
          ? { 'x-max-priority': Math.min(255, policy.priorities - 1) }
          : {}),
      },
    });
  } catch (err) {
    throw asBrokerError(err, `declare temporary queue "${name}"`);
  }
  await ch.close().catch(() => undefined);
}

function resolvePolicy(name: string, o: AmqpQueueOptions): Policy {
  if (o.deadLetterQueue !== undefined) {
    assertName('dead-letter queue', o.deadLetterQueue, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
  }
  const temporary = o.temporary ?? false;
  const durable = temporary ? false : (o.durable ?? QUEUE_DEFAULTS.durable);
  if (o.type !== undefined && o.type !== 'quorum' && o.type !== 'classic') {
    throw new InputError(
      `queue "${name}": type must be "quorum" or "classic", got ${JSON.stringify(o.type)}`,
    );
  }
  if (o.type === 'quorum' && !durable) {
    throw new InputError(`queue "${name}": a quorum queue is always durable, got durable: false`);
  }
  // Priorities asked for explicitly choose a classic queue: quorum queues have none in 3.x.
  const type =
    o.type ?? (!durable || (o.priorities !== undefined && o.priorities > 1) ? 'classic' : 'quorum');
  const priorities = o.priorities ?? QUEUE_DEFAULTS.priorities;
  if (!Number.isInteger(priorities) || priorities < 1 || priorities > 256) {
    throw new InputError(
      `queue "${name}": priorities must be an integer 1..256, got ${String(priorities)}`,
    );
  }
  const maxDeliveries = o.maxDeliveries ?? QUEUE_DEFAULTS.maxDeliveries;
  if (!Number.isInteger(maxDeliveries) || maxDeliveries < 1) {
    throw new InputError(
      `queue "${name}": maxDeliveries must be a positive integer, got ${String(maxDeliveries)}`,
    );
  }
  const leaseMs = o.leaseMs ?? QUEUE_DEFAULTS.leaseMs;
  if (!Number.isFinite(leaseMs) || leaseMs <= 0) {
    throw new InputError(`queue "${name}": leaseMs must be a number > 0, got ${String(leaseMs)}`);
  }
  if (o.messageTtlMs !== undefined && !(Number.isInteger(o.messageTtlMs) && o.messageTtlMs > 0)) {
    throw new InputError(
      `queue "${name}": messageTtlMs must be a positive integer, got ${String(o.messageTtlMs)}`,
    );
  }
  return {
    type,
    durable,
    maxDeliveries,
    deadLetterQueue: deadLetterQueueOf(name, o),
    priorities,
    leaseMs,
    messageTtlMs: o.messageTtlMs,
    temporary,
  };
}

function queueArguments(p: Policy): Record<string, unknown> {
  const args: Record<string, unknown> = {
    'x-queue-type': p.type,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': p.deadLetterQueue,
  };
  if (p.messageTtlMs !== undefined) args['x-message-ttl'] = p.messageTtlMs;
  if (p.type === 'quorum') {
    // RabbitMQ's own safety net for messages whose consumers keep dying while holding them.
    args['x-delivery-limit'] = p.maxDeliveries;
    args['x-dead-letter-strategy'] = 'at-least-once';
    args['x-overflow'] = 'reject-publish';
  } else if (p.priorities > 1) {
    args['x-max-priority'] = Math.min(255, p.priorities - 1);
  }
  return args;
}

/** The bucket (ms) a delay of `delayMs` waits in first. */
export function delayBucket(delayMs: number): number {
  let bucket: number = DELAY_BUCKETS_MS[0];
  for (const b of DELAY_BUCKETS_MS) if (b <= delayMs) bucket = b;
  return bucket;
}

function delayQueueName(queue: string, bucket: number): string {
  return `${queue}.delayed.${bucket}`;
}

function copyProperties(msg: ConsumeMessage): Options.Publish {
  const p = msg.properties;
  const headers: Record<string, unknown> = { ...(p.headers ?? {}) };
  for (const h of BROKER_HEADERS) delete headers[h];
  const out: Options.Publish = { persistent: true, headers };
  if (p.messageId !== undefined) out.messageId = String(p.messageId);
  if (p.correlationId !== undefined) out.correlationId = String(p.correlationId);
  if (p.replyTo !== undefined) out.replyTo = String(p.replyTo);
  if (p.type !== undefined) out.type = String(p.type);
  if (p.contentType !== undefined) out.contentType = String(p.contentType);
  if (typeof p.timestamp === 'number') out.timestamp = p.timestamp;
  if (typeof p.priority === 'number') out.priority = p.priority;
  return out;
}

/** Id, handler-visible headers, priority and delivery count of a received message. */
function decodeMessage(msg: ConsumeMessage): {
  id: string;
  headers: Headers;
  priority: number;
  count: number;
} {
  const raw = msg.properties.headers ?? {};
  const headers: Headers = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === DELIVERED_HEADER || k === NOT_BEFORE_HEADER) continue;
    if (v === null || typeof v === 'string' || typeof v === 'boolean') headers[k] = v;
    else if (typeof v === 'number') headers[k] = v;
    else if (typeof v === 'bigint') headers[k] = Number(v);
  }
  synthesizeDeadReason(raw, headers);
  const delivered = trustedCount(raw[DELIVERED_HEADER]);
  const returns =
    raw['x-delivery-count'] !== undefined
      ? trustedCount(raw['x-delivery-count'])
      : msg.fields.redelivered
        ? 1
        : 0;
  return {
    id:
      msg.properties.messageId !== undefined
        ? String(msg.properties.messageId)
        : `amqp-${msg.fields.deliveryTag}`,
    headers,
    priority: typeof msg.properties.priority === 'number' ? msg.properties.priority : 0,
    count: delivered + returns + 1,
  };
}

/** Dead-lettered by RabbitMQ itself (TTL, delivery limit): give it qtune's reason headers. */
function synthesizeDeadReason(raw: Record<string, unknown>, headers: Headers): void {
  if (headers[DEAD_LETTER_REASON_HEADER] !== undefined) return;
  const deaths = raw['x-death'];
  if (!Array.isArray(deaths) || deaths.length === 0) return;
  const first = deaths[0] as { reason?: unknown; queue?: unknown; count?: unknown };
  const queue = typeof first.queue === 'string' ? first.queue : '';
  if (DELAY_QUEUE.test(queue)) return;
  const reason = String(first.reason ?? '');
  if (reason === 'expired') {
    headers[DEAD_LETTER_REASON_HEADER] =
      `${ErrorCode.Expired}: older than the message TTL of queue "${queue}"`;
  } else if (reason === 'delivery_limit') {
    const last = raw[LAST_ERROR_HEADER];
    headers[DEAD_LETTER_REASON_HEADER] =
      typeof last === 'string'
        ? last
        : `${ErrorCode.MaxDeliveries}: delivery limit of queue "${queue}" reached`;
  } else {
    headers[DEAD_LETTER_REASON_HEADER] =
      `${ErrorCode.BrokerState}: dead-lettered by RabbitMQ (${reason})`;
  }
  headers[DEAD_LETTER_QUEUE_HEADER] = queue;
  const delivered = trustedCount(raw[DELIVERED_HEADER]);
  const returns = trustedCount(raw['x-delivery-count']);
  headers[DEAD_LETTER_DELIVERIES_HEADER] = delivered + returns;
}

/** Most deliveries a count header may claim; beyond it the header is not believed. */
const MAX_TRUSTED_COUNT = 1_000_000;

/**
 * A delivery count from a header any publisher can set: an integer 0..MAX_TRUSTED_COUNT (a
 * number, bigint or digit string), else 0. A negative count would let a poison message dodge
 * `maxDeliveries`; a huge one would dead-letter a task on its first delivery.
 */
export function trustedCount(value: unknown): number {
  const n =
    typeof value === 'bigint'
      ? Number(value)
      : typeof value === 'string' && /^\d+$/.test(value)
        ? Number(value)
        : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= MAX_TRUSTED_COUNT ? n : 0;
}

interface ParsedAmqpUrl {
  amqpUrl: string;
  managementUrl: string;
  user: string;
  password: string;
  vhost: string;
  tls: boolean;
}

/** Splits an AMQP URL into what amqplib and the management API need. */
export function parseAmqpUrl(url: string): ParsedAmqpUrl {
  const u = parseNetworkUrl(url, {
    what: 'broker URL',
    schemes: ['amqp', 'amqps'],
    expected: 'amqp:// or amqps://',
  });
  const tls = u.protocol === 'amqps:';
  const management = u.searchParams.get('management');
  u.searchParams.delete('management');
  const user = decodeURIComponent(u.username || 'guest');
  const password = decodeURIComponent(u.password || 'guest');
  const path = u.pathname.replace(/^\//, '');
  const vhost = path === '' ? '/' : decodeURIComponent(path);
  let managementUrl: string;
  if (management === null || management === '') {
    managementUrl = `${tls ? 'https' : 'http'}://${u.hostname}:${tls ? 15671 : 15672}`;
  } else if (/^\d+$/.test(management)) {
    managementUrl = `${tls ? 'https' : 'http'}://${u.hostname}:${management}`;
  } else {
    managementUrl = management;
  }
  return { amqpUrl: u.toString(), managementUrl, user, password, vhost, tls };
}

function tlsOptions(): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const read = (env: string) => {
    const file = process.env[env];
    if (file === undefined || file === '') return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new InputError(`${env}: cannot read "${file}": ${(err as Error).message}`, {
        cause: err,
      });
    }
  };
  const ca = read('QTUNE_AMQP_CA');
  const cert = read('QTUNE_AMQP_CERT');
  const key = read('QTUNE_AMQP_KEY');
  if (ca) out.ca = [ca];
  if (cert) out.cert = cert;
  if (key) out.key = key;
  return out;
}

function pauseUnavailable(what: string): BrokerError {
  return new BrokerError(
    ErrorCode.BrokerState,
    `${what}: RabbitMQ cannot pause a queue for every consumer (it has no such verb); stop the workers of the queue instead`,
  );
}

function closedError(what: string): BrokerError {
  return new BrokerError(ErrorCode.BrokerState, `${what}: the AMQP broker handle is closed`);
}

function asBrokerError(err: unknown, what: string): BrokerError {
  if (err instanceof BrokerError || err instanceof InputError) return err as BrokerError;
  const code = (err as AmqpFailure).code;
  // 404 NOT_FOUND, 405 RESOURCE_LOCKED (another connection's exclusive queue), 403
  // ACCESS_REFUSED: the broker answered, about this queue; it is not unavailable.
  return new BrokerError(
    code === 404 || code === 405 || code === 403
      ? ErrorCode.BrokerState
      : ErrorCode.BrokerUnavailable,
    `${what}: ${(err as Error)?.message ?? String(err)}`,
    { cause: err },
  );
}

/**
 * qtune's name check (src/protocol/names.ts), so that every name, and every name derived from
 * it (`NAME.dead`, `NAME.delayed.<ms>`), fits AMQP's 255 bytes. Publishing also takes the
 * reply address of a direct reply-to requester (`amq.rabbitmq.reply-to.…`).
 */
function assertQueueName(name: string, rules: { replyAddress?: boolean } = {}): void {
  if (rules.replyAddress === true && isDirectReplyAddress(name)) {
    assertName('reply address', name, { allowAmq: true, maxBytes: 255 });
  } else {
    assertName('queue', name, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
  }
}
