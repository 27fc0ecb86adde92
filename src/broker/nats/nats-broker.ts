import { randomUUID } from 'node:crypto';
import type { MsgHdrs, NatsConnection, Subscription } from '@nats-io/transport-node';
import { connect, createInbox, nanos, nuid } from '@nats-io/transport-node';
import type { JetStreamClient, JetStreamManager, StreamInfo } from '@nats-io/jetstream';
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
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
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
} from '../contract.js';
import {
  DEFAULT_PREFETCH,
  checkMessage,
  checkPrefetch,
  checkTopicPattern,
  queueMismatch,
  temporaryOfAnother,
} from '../checks.js';
import type { ReplyChannel, ReplyChannels, ReplyMessage } from '../reply-channel.js';
import { NatsConsumer } from './consumer.js';
import type { ConsumerHost, Received } from './consumer.js';
import type { CopyInfo } from './message.js';
import { encodeHeaders, TOPIC_HEADER } from './message.js';
import type { StoredPolicy } from './names.js';
import {
  DELAY_CONSUMER,
  MAIN_CONSUMER,
  REPLY_PREFIX,
  STREAM_PREFIX,
  delayedSubjectOf,
  describe,
  parseDescription,
  presenceSubjectOf,
  streamOf,
  subjectOf,
  topicSubject,
} from './names.js';
import { NatsReplyChannel } from './reply.js';
import { TopicSubscription } from './topics.js';

/** JetStream publishes in flight at once per `publish` call. */
const PUBLISH_WINDOW = 512;
/** How long one JetStream publish waits for its ack before it is tried again (same id). */
const PUBLISH_TIMEOUT_MS = 5_000;
/** How long a publish keeps trying through a reconnect before it fails. */
const PUBLISH_GIVE_UP_MS = 30_000;
/** A presence consumer outlives a dead connection by this long (nats-server's minimum is 5 s). */
const PRESENCE_THRESHOLD_MS = 5_000;
/** AckWait of the consumer that moves due delayed messages. */
const MOVER_ACK_WAIT_MS = 30_000;
/** Consumers of a queue's stream that are not live qtune consumers: the main and the mover. */
const FIXED_CONSUMERS = 2;

/** Options of {@link NatsBroker.open}. */
export interface NatsBrokerOptions {
  /** `nats://[user:pass@]host:port` (default port 4222). */
  url: string;
  /** Wait between reconnect attempts in ms (default: 250). */
  reconnectWaitMs?: number;
}

type HandleState = 'open' | 'closing' | 'closed';

/**
 * A broker handle on NATS JetStream (nats-server 2.9+): one connection; one work-queue stream
 * per queue with a durable explicit-ack pull consumer whose AckWait is the lease. See
 * docs/brokers/nats.md.
 */
export class NatsBroker extends BrokerEventSource implements Broker, ReplyChannels {
  readonly kind = 'nats';
  readonly capabilities: BrokerCapabilities = Object.freeze({
    durable: true,
    multiProcess: true,
    listQueues: true,
    topics: true,
    purge: true,
    // JetStream 2.9 cannot hold a consumer's deliveries (consumer pause is 2.11).
    pause: false,
    replyChannel: true,
    // A stream delivers in stream order; there is no priority (priority groups are 2.11 and
    // are not message priorities either).
    priorities: false,
  });
  /** Id of this handle, recorded as the owner of its temporary queues. */
  readonly #id = randomUUID();
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly #policies = new Map<string, StoredPolicy>();
  readonly #temporary = new Set<string>();
  readonly #consumers = new Set<NatsConsumer>();
  readonly #subscriptions = new Set<TopicSubscription>();
  readonly #replyChannels = new Set<NatsReplyChannel>();
  readonly #presence = new Map<string, { queue: string; inbox: string; sub: Subscription }>();
  readonly #host: ConsumerHost;
  #state: HandleState = 'open';
  #closing: Promise<void> | undefined;
  /** Settles at the next reconnect: publishes waiting for an ack from before it try again. */
  #reconnected = reconnectSignal();

  private constructor(nc: NatsConnection, jsm: JetStreamManager) {
    super();
    this.#nc = nc;
    this.#jsm = jsm;
    this.#js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS });
    this.#host = this.#makeHost();
    void this.#watchStatus();
  }

  /** Connects to NATS and checks that JetStream is enabled. */
  static async open(options: NatsBrokerOptions | string): Promise<NatsBroker> {
    const opts = typeof options === 'string' ? { url: options } : options;
    const { servers, user, pass } = parseNatsUrl(opts.url);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        ...(user !== undefined && { user, pass: pass ?? '' }),
        name: 'qtune',
        maxReconnectAttempts: -1,
        reconnectTimeWait: opts.reconnectWaitMs ?? 250,
        pingInterval: 10_000,
      });
    } catch (err) {
      throw new BrokerError(
        ErrorCode.BrokerUnavailable,
        `cannot connect to NATS at ${redact(opts.url)}: ${redact((err as Error).message)}`,
        { cause: err },
      );
    }
    let jsm: JetStreamManager;
    try {
      jsm = await jetstreamManager(nc);
    } catch (err) {
      await nc.close().catch(() => undefined);
      throw new BrokerError(
        ErrorCode.BrokerState,
        `NATS at ${redact(opts.url)} has no JetStream (start nats-server with -js): ${(err as Error).message}`,
        { cause: err },
      );
    }
    return new NatsBroker(nc, jsm);
  }

  async declareQueue(name: string, options: QueueOptions = {}): Promise<void> {
    this.#assertUsable(`declareQueue "${name}"`);
    assertQueueName(name);
    const policy = resolvePolicy(name, options);
    if (policy.temporary) policy.owner = this.#id;
    const existing = this.#policies.get(name) ?? (await this.#loadPolicy(name));
    if (existing !== undefined) {
      this.#agree(name, existing, options);
      return;
    }
    try {
      await this.#jsm.streams.add({
        name: streamOf(name),
        subjects: [subjectOf(name), `${subjectOf(name)}.>`],
        retention: RetentionPolicy.Workqueue,
        storage: policy.durable ? StorageType.File : StorageType.Memory,
        description: describe(name, policy),
        num_replicas: 1,
      });
    } catch (err) {
      // Created meanwhile by another client: its policy holds.
      const now = await this.#loadPolicy(name).catch(() => undefined);
      if (now === undefined) throw asBrokerError(err, `declare queue "${name}"`);
      this.#agree(name, now, options);
      return;
    }
    await this.#addConsumers(name, policy);
    this.#policies.set(name, policy);
    if (policy.temporary) this.#temporary.add(name);
  }

  async deleteQueue(name: string): Promise<void> {
    this.#assertUsable(`deleteQueue "${name}"`);
    assertQueueName(name);
    try {
      await this.#jsm.streams.delete(streamOf(name));
    } catch (err) {
      if (!isNotFound(err)) throw asBrokerError(err, `delete queue "${name}"`);
    }
    this.#policies.delete(name);
    this.#temporary.delete(name);
  }

  /**
   * Removes the ready and delayed messages: the delayed subject is purged at once; ready
   * messages are the ones past what the queue's consumer has delivered, deleted one by one
   * unless nothing is in flight (then the subject is purged at once).
   */
  async purgeQueue(name: string): Promise<number> {
    this.#assertUsable(`purgeQueue "${name}"`);
    assertQueueName(name);
    const stream = streamOf(name);
    const info = await this.#streamInfo(name);
    if (info === undefined) throw new NotFoundError('queue', name);
    try {
      const delayed = await this.#jsm.streams.purge(stream, { filter: delayedSubjectOf(name) });
      const consumer = await this.#jsm.consumers.info(stream, MAIN_CONSUMER);
      if (consumer.num_ack_pending === 0) {
        const ready = await this.#jsm.streams.purge(stream, { filter: subjectOf(name) });
        return delayed.purged + ready.purged;
      }
      let removed = 0;
      const last = (await this.#jsm.streams.info(stream)).state.last_seq;
      for (let seq = consumer.delivered.stream_seq + 1; seq <= last; seq++) {
        try {
          if (await this.#jsm.streams.deleteMessage(stream, seq, false)) removed++;
        } catch (err) {
          if (!isNotFound(err) && !(err instanceof JetStreamApiError)) throw err;
        }
      }
      return delayed.purged + removed;
    } catch (err) {
      throw asBrokerError(err, `purge queue "${name}"`);
    }
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
    if (typeof queue === 'string' && queue.startsWith(REPLY_PREFIX)) {
      return this.#publishReplies(queue, messages);
    }
    assertQueueName(queue);
    const target = `queue "${queue}"`;
    for (const m of messages) checkMessage(target, m);
    const ids: string[] = [];
    const out: { subject: string; body: Uint8Array | string; headers: MsgHdrs }[] = [];
    const now = Date.now();
    for (const m of messages) {
      const id = m.id ?? randomUUID();
      ids.push(id);
      const delayMs = m.delayMs ?? 0;
      if (delayMs > 0) {
        out.push({
          subject: delayedSubjectOf(queue),
          body: m.body,
          headers: encodeHeaders(id, nuid.next(), m.headers, {
            notBefore: now + delayMs,
            publishedAt: now,
          }),
        });
      } else {
        out.push({
          subject: subjectOf(queue),
          body: m.body,
          headers: encodeHeaders(id, nuid.next(), m.headers),
        });
      }
    }
    await this.#publishAll(queue, out);
    return ids;
  }

  async consume(
    queue: string,
    handler: DeliveryHandler,
    options: ConsumeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`consume from queue "${queue}"`);
    assertQueueName(queue);
    const prefetch = checkPrefetch(`queue "${queue}"`, options.prefetch ?? DEFAULT_PREFETCH);
    const policy = this.#policies.get(queue) ?? (await this.#loadPolicy(queue));
    if (policy === undefined) throw missingQueue(queue);
    this.#policies.set(queue, policy);
    const consumer: NatsConsumer = new NatsConsumer({
      tag: options.tag ?? `nats-${randomUUID()}`,
      queue,
      host: this.#host,
      handler,
      prefetch,
      policy,
      onClosed: () => this.#consumers.delete(consumer),
    });
    await consumer.start();
    this.#consumers.add(consumer);
    return consumer.toConsumer();
  }

  async publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#assertUsable(`publish to topic "${topic}"`);
    const subject = topicSubject(topic);
    for (const m of messages) checkMessage(`topic "${topic}"`, m);
    for (const m of messages) {
      const headers: Headers = { ...m.headers, [TOPIC_HEADER]: topic };
      this.#nc.publish(subject, m.body, {
        headers: encodeHeaders(m.id ?? randomUUID(), nuid.next(), headers),
      });
    }
    await this.#flush(`publish to topic "${topic}"`);
  }

  async subscribe(
    pattern: string,
    handler: DeliveryHandler,
    options: SubscribeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`subscribe to "${pattern}"`);
    checkTopicPattern(pattern);
    if (options.prefetch !== undefined)
      checkPrefetch(`subscription "${pattern}"`, options.prefetch);
    const sub: TopicSubscription = new TopicSubscription({
      tag: `nats-topic-${randomUUID()}`,
      nc: this.#nc,
      pattern,
      handler,
      reportError: (e) => this.emitError(e),
      onClosed: () => this.#subscriptions.delete(sub),
    });
    this.#subscriptions.add(sub);
    // The subscription is live once the server has seen it.
    await this.#flush(`subscribe to "${pattern}"`);
    return sub.toConsumer();
  }

  async stats(queue: string): Promise<QueueStats> {
    this.#assertUsable(`stats of queue "${queue}"`);
    assertQueueName(queue);
    const stream = streamOf(queue);
    const info = await this.#streamInfo(queue, `${subjectOf(queue)}.delayed`);
    if (info === undefined) throw missingQueue(queue);
    const policy = parseDescription(info.config.description)?.policy;
    try {
      const main = await this.#jsm.consumers.info(stream, MAIN_CONSUMER);
      const dlq = policy?.deadLetterQueue ?? deadLetterQueueOf(queue);
      const dead = await this.#streamInfo(dlq);
      return {
        queue,
        ready: main.num_pending,
        delayed: info.state.subjects?.[delayedSubjectOf(queue)] ?? 0,
        inFlight: main.num_ack_pending,
        deadLettered: dead?.state.messages ?? 0,
        consumers: Math.max(0, info.state.consumer_count - FIXED_CONSUMERS),
        paused: false,
      };
    } catch (err) {
      throw asBrokerError(err, `stats of queue "${queue}"`);
    }
  }

  async listQueues(): Promise<string[]> {
    this.#assertUsable('listQueues');
    const names: string[] = [];
    try {
      for await (const info of this.#jsm.streams.list()) {
        if (!info.config.name.startsWith(STREAM_PREFIX)) continue;
        const parsed = parseDescription(info.config.description);
        if (parsed !== undefined) names.push(parsed.queue);
      }
    } catch (err) {
      throw asBrokerError(err, 'list queues');
    }
    return names.sort();
  }

  /**
   * Request/reply without a reply queue: replies to this channel's inbox are core NATS messages
   * (see NatsReplyChannel).
   */
  async openReplyChannel(onReply: (reply: ReplyMessage) => void): Promise<ReplyChannel> {
    this.#assertUsable('open a reply channel');
    const channel: NatsReplyChannel = new NatsReplyChannel(
      this.#nc,
      (queue, messages) => this.publish(queue, messages),
      onReply,
      () => this.#replyChannels.delete(channel),
    );
    this.#replyChannels.add(channel);
    await this.#flush('open a reply channel');
    return channel;
  }

  /**
   * Cancels this handle's consumers, waits for handler calls in progress (their settles land),
   * gives back what is still held, deletes its temporary queues, then closes the connection.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    const consumers = [...this.#consumers];
    await Promise.all(consumers.map((c) => c.cancel()));
    for (const c of consumers) c.giveBackHeld();
    await Promise.all([...this.#subscriptions].map((s) => s.cancel()));
    await Promise.all([...this.#replyChannels].map((c) => c.close()));
    if (!this.#nc.isClosed()) {
      await Promise.allSettled(
        [...this.#temporary].map((name) => this.#jsm.streams.delete(streamOf(name))),
      );
      await this.#nc.flush().catch(() => undefined);
    }
    this.#state = 'closed';
    await this.#nc.close().catch(() => undefined);
    this.emitStatus('closed');
  }

  /** Turns the connection's status stream into 'reconnecting' / 'connected' events. */
  async #watchStatus(): Promise<void> {
    for await (const s of this.#nc.status()) {
      if (this.#state === 'closed') break;
      if (s.type === 'disconnect') {
        this.emitStatus('reconnecting');
      } else if (s.type === 'reconnect') {
        const signal = this.#reconnected;
        this.#reconnected = reconnectSignal();
        signal.fire();
        this.emitStatus('connected');
        for (const c of this.#consumers) c.resume();
      } else if (s.type === 'error') {
        this.emitError(new BrokerError(ErrorCode.BrokerUnavailable, redact(String(s.error))));
      }
    }
  }

  #agree(name: string, existing: StoredPolicy, options: QueueOptions): void {
    const mismatch = queueMismatch(name, existing, options);
    if (mismatch) throw mismatch;
    if (options.temporary === true && existing.owner !== this.#id) throw temporaryOfAnother(name);
    this.#policies.set(name, existing);
  }

  async #addConsumers(name: string, policy: StoredPolicy): Promise<void> {
    const stream = streamOf(name);
    try {
      await this.#jsm.consumers.add(stream, {
        durable_name: MAIN_CONSUMER,
        filter_subject: subjectOf(name),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(policy.leaseMs),
        max_deliver: -1,
        max_ack_pending: -1,
      });
      await this.#jsm.consumers.add(stream, {
        durable_name: DELAY_CONSUMER,
        filter_subject: delayedSubjectOf(name),
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(MOVER_ACK_WAIT_MS),
        max_deliver: -1,
        max_ack_pending: -1,
      });
    } catch (err) {
      throw asBrokerError(err, `declare queue "${name}"`);
    }
  }

  async #loadPolicy(name: string): Promise<StoredPolicy | undefined> {
    const info = await this.#streamInfo(name);
    if (info === undefined) return undefined;
    const parsed = parseDescription(info.config.description);
    if (parsed === undefined) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        `stream "${streamOf(name)}" of queue "${name}" was not made by qtune (no policy in its description)`,
      );
    }
    return parsed.policy;
  }

  async #streamInfo(queue: string, subjectsFilter?: string): Promise<StreamInfo | undefined> {
    try {
      return await this.#jsm.streams.info(
        streamOf(queue),
        subjectsFilter !== undefined ? { subjects_filter: subjectsFilter } : undefined,
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw asBrokerError(err, `look up queue "${queue}"`);
    }
  }

  /** Publishes to JetStream with a bounded window; each publish is retried with its id. */
  async #publishAll(
    queue: string,
    out: readonly { subject: string; body: Uint8Array | string; headers: MsgHdrs }[],
  ): Promise<void> {
    let next = 0;
    let failed: unknown;
    const worker = async (): Promise<void> => {
      while (next < out.length && failed === undefined) {
        const m = out[next++]!;
        try {
          await this.#publishOne(queue, m.subject, m.body, m.headers);
        } catch (err) {
          failed ??= err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PUBLISH_WINDOW, out.length) }, () => worker()));
    if (failed !== undefined) throw failed;
  }

  async #publishOne(
    queue: string,
    subject: string,
    body: Uint8Array | string,
    headers: MsgHdrs,
  ): Promise<void> {
    const giveUpAt = Date.now() + PUBLISH_GIVE_UP_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        // An ack asked for before a reconnect never comes (the server restarted): try again
        // at once rather than at the timeout; the de-duplication id makes that safe.
        const published = this.#js.publish(subject, body, { headers });
        published.catch(() => undefined);
        await Promise.race([published, this.#reconnected.promise]);
        return;
      } catch (err) {
        if (this.#state === 'closed') throw closedError(`publish to queue "${queue}"`);
        if (err instanceof JetStreamApiError)
          throw asBrokerError(err, `publish to queue "${queue}"`);
        // No responders: no stream has the subject (the queue is missing), or JetStream is not
        // serving it yet after a restart.
        if (isNoResponders(err) && this.#nc.isClosed() === false && attempt === 0) {
          if ((await this.#streamInfo(queue).catch(() => null)) === undefined) {
            throw missingQueue(queue);
          }
        }
        if (Date.now() > giveUpAt) {
          throw new BrokerError(
            ErrorCode.BrokerUnavailable,
            `publish to queue "${queue}": NATS did not confirm it within ${PUBLISH_GIVE_UP_MS} ms: ${redact((err as Error).message)}`,
            { cause: err },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
      }
    }
  }

  /** A reply to a reply channel's inbox: a core NATS message, flushed to the server. */
  async #publishReplies(address: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    assertName('reply address', address, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
    const ids: string[] = [];
    for (const m of messages) {
      checkMessage(`reply address "${address}"`, m);
      const id = m.id ?? randomUUID();
      ids.push(id);
      this.#nc.publish(address, m.body, { headers: encodeHeaders(id, nuid.next(), m.headers) });
    }
    await this.#flush(`reply to "${address}"`);
    return ids;
  }

  async #flush(what: string): Promise<void> {
    try {
      await this.#nc.flush();
    } catch (err) {
      throw asBrokerError(err, what);
    }
  }

  #makeHost(): ConsumerHost {
    // A copy's de-duplication id names the message it copies (stream and sequence) and the
    // delivery: a hand-over retried (or repeated after a crash) is stored once.
    const copyHeaders = (r: Received, kind: string, headers: Headers, info: CopyInfo): MsgHdrs =>
      encodeHeaders(
        r.id,
        `${kind}.${r.info.stream}.${r.info.streamSeq}.${r.info.deliveryCount}`,
        headers,
        info,
      );
    return {
      connection: () => this.#nc,
      copy: async (queue, where, r, headers, info) => {
        const subject = where === 'ready' ? subjectOf(queue) : delayedSubjectOf(queue);
        await this.#publishOne(queue, subject, r.msg.data, copyHeaders(r, where, headers, info));
      },
      deadLetter: async (queue, r, reason, deliveries) => {
        const policy = this.#policies.get(queue);
        const dlq = policy?.deadLetterQueue ?? deadLetterQueueOf(queue);
        if (!this.#policies.has(dlq) && (await this.#loadPolicy(dlq)) === undefined) {
          await this.declareQueue(dlq);
        }
        const headers: Headers = {
          ...r.decoded.headers,
          [DEAD_LETTER_REASON_HEADER]: reason,
          [DEAD_LETTER_QUEUE_HEADER]: queue,
          [DEAD_LETTER_DELIVERIES_HEADER]: deliveries,
        };
        // Dead-lettered twice (a crash before the ack, then by the next holder) within the
        // duplicate window, it is stored once.
        const h = encodeHeaders(r.id, `dead.${r.info.stream}.${r.info.streamSeq}`, headers);
        await this.#publishOne(dlq, subjectOf(dlq), r.msg.data, h);
      },
      publish: (queue, messages) => this.publish(queue, messages),
      addPresence: async (queue, id) => {
        let entry = this.#presence.get(id);
        if (entry === undefined) {
          const inbox = createInbox();
          entry = { queue, inbox, sub: this.#nc.subscribe(inbox, { callback: () => undefined }) };
          this.#presence.set(id, entry);
        }
        try {
          await this.#jsm.consumers.add(streamOf(queue), {
            name: id,
            deliver_subject: entry.inbox,
            filter_subject: presenceSubjectOf(queue, id),
            ack_policy: AckPolicy.Explicit,
            deliver_policy: DeliverPolicy.All,
            inactive_threshold: nanos(PRESENCE_THRESHOLD_MS),
          });
        } catch (err) {
          throw asBrokerError(err, `consume from queue "${queue}"`);
        }
      },
      removePresence: async (queue, id) => {
        const entry = this.#presence.get(id);
        this.#presence.delete(id);
        if (entry !== undefined && !entry.sub.isClosed()) entry.sub.unsubscribe();
        if (this.#nc.isClosed()) return;
        try {
          await this.#jsm.consumers.delete(streamOf(queue), id);
        } catch (err) {
          if (!isNotFound(err)) throw asBrokerError(err, `cancel consumer of queue "${queue}"`);
        }
      },
      reportError: (error) => this.emitError(error),
    };
  }

  #assertUsable(what: string): void {
    if (this.#state === 'closed') throw closedError(what);
  }

  #assertOpen(what: string): void {
    if (this.#state !== 'open') throw closedError(what);
  }
}

/** Splits a `nats://[user:pass@]host:port` URL into what the client needs. */
export function parseNatsUrl(url: string): { servers: string; user?: string; pass?: string } {
  const u = parseNetworkUrl(url, { what: 'broker URL', schemes: ['nats'], expected: 'nats://' });
  if (u.hostname === '') throw new InputError(`broker URL "${redact(url)}" names no host`);
  const servers = `${u.hostname}:${u.port === '' ? '4222' : u.port}`;
  if (u.username === '') return { servers };
  return {
    servers,
    user: decodeURIComponent(u.username),
    pass: decodeURIComponent(u.password),
  };
}

function resolvePolicy(name: string, o: QueueOptions): StoredPolicy {
  if (o.deadLetterQueue !== undefined) {
    assertName('dead-letter queue', o.deadLetterQueue, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
  }
  const temporary = o.temporary ?? false;
  const durable = temporary ? false : (o.durable ?? QUEUE_DEFAULTS.durable);
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
  if (!Number.isInteger(leaseMs) || leaseMs < 10) {
    throw new InputError(
      `queue "${name}": leaseMs must be an integer >= 10 (JetStream's AckWait), got ${String(leaseMs)}`,
    );
  }
  if (o.messageTtlMs !== undefined && !(Number.isInteger(o.messageTtlMs) && o.messageTtlMs > 0)) {
    throw new InputError(
      `queue "${name}": messageTtlMs must be a positive integer, got ${String(o.messageTtlMs)}`,
    );
  }
  return {
    durable,
    maxDeliveries,
    deadLetterQueue: deadLetterQueueOf(name, o),
    priorities,
    leaseMs,
    messageTtlMs: o.messageTtlMs,
    temporary,
  };
}

/** qtune's name check; `_INBOX.` names are reply addresses, never queues. */
function assertQueueName(name: string): void {
  assertName('queue', name, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
  if (name.startsWith(REPLY_PREFIX)) {
    throw new InputError(
      `queue name "${name}" starts with "${REPLY_PREFIX}", which NATS reserves for reply inboxes`,
    );
  }
}

function isNotFound(err: unknown): boolean {
  if (!(err instanceof JetStreamApiError)) return false;
  // 10059 stream not found, 10014 consumer not found, 10037 no message found.
  return err.code === 10059 || err.code === 10014 || err.code === 10037 || err.status === 404;
}

/**
 * No responders: nothing took the publish (no stream has the subject, or JetStream is not
 * serving it yet after a restart). The client reports it as JetStreamNotEnabled caused by a
 * RequestError whose isNoResponders() is true.
 */
function isNoResponders(err: unknown): boolean {
  for (let e = err as { isNoResponders?: () => boolean; cause?: unknown } | undefined; e;) {
    if (typeof e.isNoResponders === 'function' && e.isNoResponders()) return true;
    e = e.cause as typeof e;
  }
  return false;
}

/** Rejects its promise once fired (never resolves); no rejection goes unhandled. */
function reconnectSignal(): { promise: Promise<never>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<never>((_, reject) => {
    fire = () =>
      reject(new BrokerError(ErrorCode.BrokerUnavailable, 'reconnected before the ack came'));
  });
  promise.catch(() => undefined);
  return { promise, fire };
}

function missingQueue(queue: string): BrokerError {
  return new BrokerError(
    ErrorCode.BrokerState,
    `queue "${queue}" does not exist in NATS JetStream; declare it first`,
  );
}

function pauseUnavailable(what: string): BrokerError {
  return new BrokerError(
    ErrorCode.BrokerState,
    `${what}: NATS JetStream 2.9 cannot pause a consumer (consumer pause needs nats-server 2.11); stop the workers of the queue instead`,
  );
}

function closedError(what: string): BrokerError {
  return new BrokerError(ErrorCode.BrokerState, `${what}: the NATS broker handle is closed`);
}

function asBrokerError(err: unknown, what: string): QtuneError {
  if (err instanceof QtuneError) return err;
  const message = redact((err as Error)?.message ?? String(err));
  // The server answered about this queue (an API error): not unavailable.
  return new BrokerError(
    err instanceof JetStreamApiError ? ErrorCode.BrokerState : ErrorCode.BrokerUnavailable,
    `${what}: ${message}`,
    { cause: err },
  );
}
