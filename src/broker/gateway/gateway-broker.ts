import { randomUUID } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BrokerError,
  ErrorCode,
  InputError,
  NotFoundError,
  QtuneError,
  toError,
} from '../../protocol/errors.js';
import type { Headers } from '../../protocol/envelope.js';
import { parseNetworkUrl } from '../../protocol/target-url.js';
import type { WorkerReport } from '../../protocol/worker-report.js';
import { BrokerEventSource } from '../events.js';
import type {
  Broker,
  BrokerCapabilities,
  ConsumeOptions,
  Consumer,
  Delivery,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../contract.js';
import { ackTogether } from '../contract.js';
import { DEFAULT_PREFETCH, checkMessage, checkPrefetch } from '../checks.js';
import { HttpClient, parseAnswer } from './http.js';
import {
  MAX_ACK_LEASE_IDS,
  MAX_LEASES_PER_REQUEST,
  ackManyResponseSchema,
  extendResponseSchema,
  leaseResponseSchema,
  publishResponseSchema,
  queueListSchema,
  queueStatsSchema,
  purgeResponseSchema,
  tokenInfoSchema,
  type WireLease,
  type WireMessage,
} from '../../protocol/gateway-wire.js';

export interface GatewayBrokerOptions {
  /** Base URL of a `qtune serve` gateway: `http://host:port` or `https://...`. */
  url: string;
  /** Bearer token with role `worker`, `producer` or `admin` (default: none, for `--no-auth`). */
  token?: string;
  /** Long-poll of each lease request, in ms (default: 20000). */
  pollWaitMs?: number;
  /** Keep retrying a request that cannot reach the gateway this long, in ms (default: 60000). */
  retryTimeoutMs?: number;
}

/** Queue options of {@link GatewayBroker.declareQueue}: the contract's, plus what the gateway hands on. */
export interface GatewayQueueOptions extends QueueOptions {
  /**
   * RabbitMQ queue type, for a gateway in front of RabbitMQ (see AmqpQueueOptions); the
   * gateway's broker ignores it otherwise (default: the one that broker picks).
   */
  type?: 'quorum' | 'classic';
}

/** Messages per `POST /messages` request. */
const PUBLISH_CHUNK = 1_000;
/** How long cancel() waits for the poll in flight to come back before aborting it, in ms. */
const CANCEL_POLL_MS = 5_000;

type State = 'open' | 'closing' | 'closed';

/**
 * The Broker contract over qtune's HTTP gateway, for workers and producers that can reach the
 * gateway but not the broker. Publishing and queue calls map onto the `/v1` endpoints; consuming
 * is a long-poll loop per consumer holding at most `prefetch` leases, and each Delivery's
 * settles are lease calls. The gateway has no topic endpoints: `publishTopic` and `subscribe`
 * reject (capabilities carry `topics: false`).
 */
export class GatewayBroker extends BrokerEventSource implements Broker {
  readonly kind = 'gateway';
  #capabilities: BrokerCapabilities;
  readonly #http: HttpClient;
  readonly #pollWaitMs: number;
  readonly #consumers = new Set<PullConsumer>();
  readonly #temporary = new Set<string>();
  readonly #abort = new AbortController();
  #state: State = 'open';
  #down = false;
  #closing: Promise<void> | undefined;
  /** Whether the gateway takes `POST /v1/leases/ack` (false once it answered 404). */
  #batchAck = true;

  constructor(options: GatewayBrokerOptions) {
    super();
    const capabilities = {
      durable: true,
      multiProcess: true,
      listQueues: true,
      topics: false,
      purge: false,
      pause: false,
    };
    this.#capabilities = Object.freeze(capabilities);
    this.#pollWaitMs = options.pollWaitMs ?? 20_000;
    this.#http = new HttpClient({
      url: options.url,
      ...(options.token !== undefined && { token: options.token }),
      ...(options.retryTimeoutMs !== undefined && { retryTimeoutMs: options.retryTimeoutMs }),
      events: {
        down: () => {
          if (this.#down || this.#state === 'closed') return;
          this.#down = true;
          this.emitStatus('reconnecting');
        },
        up: () => {
          if (!this.#down || this.#state === 'closed') return;
          this.#down = false;
          this.emitStatus('connected');
        },
      },
    });
  }

  /**
   * Opens a handle and checks, once, that the gateway answers and accepts the token; rejects
   * with a BrokerError (BROKER_UNAVAILABLE) naming the URL otherwise.
   */
  static async open(options: GatewayBrokerOptions): Promise<GatewayBroker> {
    parseNetworkUrl(options.url, {
      what: 'gateway URL',
      schemes: ['http', 'https'],
      expected: 'http:// or https://',
    });
    const broker = new GatewayBroker(options);
    const res = await broker.#http.request('GET', '/v1/token', undefined, {
      retry: false,
      attemptTimeoutMs: 15_000,
    });
    const token = parseAnswer(tokenInfoSchema, res.body, `gateway ${broker.url}`);
    // Purge and pause go through the gateway's admin routes where its broker has them.
    if (token.broker !== undefined) {
      broker.#capabilities = Object.freeze({ ...broker.#capabilities, ...token.broker });
    }
    return broker;
  }

  /** What this handle can do; purge and pause are the gateway's broker's, once opened. */
  get capabilities(): BrokerCapabilities {
    return this.#capabilities;
  }

  /** The gateway's base URL. */
  get url(): string {
    return this.#http.base;
  }

  async declareQueue(name: string, options: GatewayQueueOptions = {}): Promise<void> {
    this.#assertUsable(`declareQueue "${name}"`);
    await this.#http.request('PUT', `/v1/queues/${enc(name)}`, options);
    if (options.temporary === true) this.#temporary.add(name);
  }

  /** Hands a worker's report to the gateway, which answers `qtune status` for it (WorkerReportSink). */
  async pushWorkerReport(report: WorkerReport): Promise<void> {
    this.#assertUsable('push a worker report');
    await this.#http.request('PUT', `/v1/workers/${enc(report.worker.id)}`, report, {
      retry: false,
    });
  }

  async deleteQueue(name: string): Promise<void> {
    this.#assertUsable(`deleteQueue "${name}"`);
    await this.#http.request('DELETE', `/v1/queues/${enc(name)}`);
    this.#temporary.delete(name);
  }

  /** Purges through `POST /v1/queues/:queue/purge` (an admin token). */
  async purgeQueue(name: string): Promise<number> {
    this.#assertUsable(`purgeQueue "${name}"`);
    if (!this.#capabilities.purge) throw managementUnavailable(`purgeQueue "${name}"`);
    const res = await queueCall(name, this.#http.request('POST', `/v1/queues/${enc(name)}/purge`));
    return parseAnswer(purgeResponseSchema, res.body, `purgeQueue "${name}"`).purged;
  }

  /** Pauses through `POST /v1/queues/:queue/pause` (an admin token). */
  async pauseQueue(name: string): Promise<void> {
    this.#assertUsable(`pauseQueue "${name}"`);
    if (!this.#capabilities.pause) throw managementUnavailable(`pauseQueue "${name}"`);
    await queueCall(name, this.#http.request('POST', `/v1/queues/${enc(name)}/pause`));
  }

  /** Resumes through `POST /v1/queues/:queue/resume` (an admin token). */
  async resumeQueue(name: string): Promise<void> {
    this.#assertUsable(`resumeQueue "${name}"`);
    if (!this.#capabilities.pause) throw managementUnavailable(`resumeQueue "${name}"`);
    await queueCall(name, this.#http.request('POST', `/v1/queues/${enc(name)}/resume`));
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    this.#assertUsable(`publish to queue "${queue}"`);
    const wire = toWire(`queue "${queue}"`, messages);
    const ids: string[] = [];
    for (let i = 0; i < wire.length; i += PUBLISH_CHUNK) {
      const chunk = wire.slice(i, i + PUBLISH_CHUNK);
      const res = await this.#http.request('POST', `/v1/queues/${enc(queue)}/messages`, {
        messages: chunk,
      });
      ids.push(...parseAnswer(publishResponseSchema, res.body, `publish to queue "${queue}"`).ids);
    }
    return ids;
  }

  async consume(
    queue: string,
    handler: DeliveryHandler,
    options: ConsumeOptions = {},
  ): Promise<Consumer> {
    this.#assertOpen(`consume from queue "${queue}"`);
    const prefetch = checkPrefetch(`queue "${queue}"`, options.prefetch ?? DEFAULT_PREFETCH);
    const tag = options.tag ?? `gateway-${randomUUID()}`;
    const consumer = new PullConsumer({
      broker: this,
      queue,
      handler,
      prefetch,
      tag,
      pollWaitMs: this.#pollWaitMs,
      onCancelled: () => this.#consumers.delete(consumer),
    });
    // A first poll that does not wait: a queue the gateway cannot consume rejects here.
    const first = await this.pollLeases(
      queue,
      consumer.pullId,
      Math.min(prefetch, MAX_LEASES_PER_REQUEST),
      0,
    );
    this.#consumers.add(consumer);
    consumer.start(first);
    return consumer.toConsumer();
  }

  async publishTopic(topic: string, _messages: readonly OutgoingMessage[]): Promise<void> {
    throw topicsUnavailable(`publishTopic "${topic}"`);
  }

  async subscribe(
    pattern: string,
    _handler: DeliveryHandler,
    _options?: SubscribeOptions,
  ): Promise<Consumer> {
    throw topicsUnavailable(`subscribe "${pattern}"`);
  }

  async stats(queue: string): Promise<QueueStats> {
    this.#assertUsable(`stats of queue "${queue}"`);
    const res = await this.#http.request('GET', `/v1/queues/${enc(queue)}`);
    return parseAnswer(queueStatsSchema, res.body, `stats of queue "${queue}"`);
  }

  async listQueues(): Promise<string[]> {
    this.#assertUsable('listQueues');
    const res = await this.#http.request('GET', '/v1/queues?stats=false');
    return parseAnswer(queueListSchema, res.body, 'listQueues')
      .queues.map((q) => q.queue)
      .sort();
  }

  /**
   * Cancels the consumers (their polls end, leases not yet handed to a handler go back, handler
   * calls in progress finish and their settles land), deletes the temporary queues this handle
   * declared, then closes. Leases left unsettled expire at the gateway and are delivered again.
   * Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    await Promise.allSettled([...this.#consumers].map((c) => c.cancel()));
    await Promise.allSettled(
      [...this.#temporary].map((q) =>
        this.#http.request('DELETE', `/v1/queues/${enc(q)}`, undefined, {
          retry: false,
          attemptTimeoutMs: 5_000,
        }),
      ),
    );
    this.#temporary.clear();
    this.#state = 'closed';
    this.#abort.abort(closedError('request'));
    this.emitStatus('closed');
  }

  // --- used by consumers and deliveries ---------------------------------------------------

  /** `POST /v1/queues/:queue/leases`; retries until the handle closes. */
  async pollLeases(
    queue: string,
    consumer: string,
    max: number,
    waitMs: number,
    signal?: AbortSignal,
  ): Promise<WireLease[]> {
    const signals = signal ? AbortSignal.any([signal, this.#abort.signal]) : this.#abort.signal;
    const res = await this.#http.request(
      'POST',
      `/v1/queues/${enc(queue)}/leases`,
      { max, waitMs, consumer },
      {
        retryTimeoutMs: waitMs === 0 ? undefined : Infinity,
        attemptTimeoutMs: waitMs + 30_000,
        signal: signals,
      },
    );
    return parseAnswer(leaseResponseSchema, res.body, `leases of queue "${queue}"`).leases;
  }

  /** Tells the gateway a client consumer stopped (its waiting poll ends at once). */
  async cancelPull(queue: string, consumer: string): Promise<void> {
    await this.#http.request(
      'DELETE',
      `/v1/queues/${enc(queue)}/consumers/${enc(consumer)}`,
      undefined,
      { retry: false, attemptTimeoutMs: CANCEL_POLL_MS },
    );
  }

  /** A lease call; resolves false when the lease is gone (410). */
  async leaseCall(leaseId: string, op: string, body?: unknown): Promise<unknown | false> {
    if (this.#state === 'closed') throw closedError(`${op} of lease "${leaseId}"`);
    const res = await this.#http.request('POST', `/v1/leases/${enc(leaseId)}/${op}`, body, {
      allow: [410],
    });
    return res.status === 410 ? false : (res.body ?? true);
  }

  /**
   * Acks leases with `POST /v1/leases/ack`, MAX_ACK_LEASE_IDS per request; leases already gone
   * are skipped. A gateway without that endpoint (404) gets one ack call per lease.
   */
  async ackLeases(leaseIds: readonly string[]): Promise<void> {
    for (let i = 0; i < leaseIds.length; i += MAX_ACK_LEASE_IDS) {
      const chunk = leaseIds.slice(i, i + MAX_ACK_LEASE_IDS);
      if (this.#state === 'closed') throw closedError(`ack of ${chunk.length} lease(s)`);
      if (this.#batchAck) {
        const res = await this.#http.request(
          'POST',
          '/v1/leases/ack',
          { leaseIds: chunk },
          { allow: [404] },
        );
        if (res.status !== 404) {
          parseAnswer(ackManyResponseSchema, res.body, 'ack of leases');
          continue;
        }
        this.#batchAck = false;
      }
      await Promise.all(chunk.map((id) => this.leaseCall(id, 'ack')));
    }
  }

  /** Reports an error with no caller to reject (a handler that threw, a failed poll). */
  reportError(error: Error): void {
    this.emitError(error);
  }

  get isClosed(): boolean {
    return this.#state === 'closed';
  }

  #assertUsable(operation: string): void {
    if (this.#state === 'closed') throw closedError(operation);
  }

  #assertOpen(operation: string): void {
    if (this.#state !== 'open') throw closedError(operation);
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

/**
 * A gateway call about queue `name`: the gateway's 404 becomes the NotFoundError a broker
 * itself throws, with the gateway's suggestion of the closest name.
 */
async function queueCall<T>(name: string, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof QtuneError && err.code === ErrorCode.NotFound) {
      const suggestion = /did you mean "([^"]+)"\?/u.exec(err.message)?.[1];
      throw new NotFoundError('queue', name, suggestion, { cause: err });
    }
    throw err;
  }
}

function closedError(what: string): BrokerError {
  return new BrokerError(ErrorCode.BrokerState, `${what}: the gateway broker handle is closed`);
}

function managementUnavailable(what: string): BrokerError {
  return new BrokerError(
    ErrorCode.BrokerState,
    `${what}: the broker behind this gateway cannot do it (or the gateway is older than this client)`,
  );
}

function topicsUnavailable(what: string): BrokerError {
  return new BrokerError(
    ErrorCode.BrokerState,
    `${what}: topics are not available through the HTTP gateway; connect to the broker itself for publish/subscribe`,
  );
}

/** Messages as the gateway takes them: UTF-8 bodies and an id fixed before the first attempt. */
function toWire(where: string, messages: readonly OutgoingMessage[]): WireMessage[] {
  return messages.map((m) => {
    checkMessage(where, m);
    let body: string;
    if (typeof m.body === 'string') body = m.body;
    else {
      if (!isUtf8(m.body)) {
        throw new InputError(
          `${where}: the gateway carries UTF-8 text bodies only; this body is binary`,
        );
      }
      body = m.body.toString('utf8');
    }
    // A retry after a lost answer publishes the same id again, never a new message.
    const w: WireMessage = { id: m.id ?? randomUUID(), body };
    if (m.headers !== undefined) w.headers = m.headers;
    if (m.priority !== undefined) w.priority = m.priority;
    if (m.delayMs !== undefined) w.delayMs = Math.round(m.delayMs);
    return w;
  });
}

/**
 * One consumer's long-poll loop. States: POLLING (a lease request in flight), FULL (`prefetch`
 * leases held: wait for a settle), CANCELLED (no more polls; leases that still arrive are
 * released).
 */
class PullConsumer {
  readonly tag: string;
  /** Identity of this consumer at the gateway (unique per consume call). */
  readonly pullId: string;
  readonly #broker: GatewayBroker;
  readonly #queue: string;
  readonly #handler: DeliveryHandler;
  readonly #prefetch: number;
  readonly #pollWaitMs: number;
  readonly #onCancelled: () => void;
  readonly #running = new Set<Promise<void>>();
  readonly #pollAbort = new AbortController();
  #held = 0;
  #cancelled = false;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  #cancelling: Promise<void> | undefined;

  constructor(options: {
    broker: GatewayBroker;
    queue: string;
    handler: DeliveryHandler;
    prefetch: number;
    tag: string;
    pollWaitMs: number;
    onCancelled: () => void;
  }) {
    this.#broker = options.broker;
    this.#queue = options.queue;
    this.#handler = options.handler;
    this.#prefetch = options.prefetch;
    this.tag = options.tag;
    this.pullId = `${options.tag}#${randomUUID().slice(0, 8)}`;
    this.#pollWaitMs = options.pollWaitMs;
    this.#onCancelled = options.onCancelled;
  }

  start(first: WireLease[]): void {
    this.#loop = this.#run(first);
  }

  toConsumer(): Consumer {
    return {
      tag: this.tag,
      cancel: () => this.cancel(),
      ackAll: (deliveries) => GatewayDelivery.ackAll(this.#broker, deliveries),
    };
  }

  cancel(): Promise<void> {
    this.#cancelling ??= this.#cancel();
    return this.#cancelling;
  }

  /** A delivery was settled, or its lease ran out: one slot is free. */
  freeSlot(): void {
    this.#held--;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #run(first: WireLease[]): Promise<void> {
    // Let consume() resolve before the first handler call.
    await Promise.resolve();
    this.#dispatchAll(first);
    while (!this.#cancelled) {
      const room = this.#prefetch - this.#held;
      if (room <= 0) {
        await new Promise<void>((resolve) => (this.#wake = resolve));
        continue;
      }
      let leases: WireLease[];
      try {
        leases = await this.#broker.pollLeases(
          this.#queue,
          this.pullId,
          Math.min(room, MAX_LEASES_PER_REQUEST),
          this.#pollWaitMs,
          this.#pollAbort.signal,
        );
      } catch (err) {
        if (this.#cancelled || this.#broker.isClosed) break;
        this.#broker.reportError(
          new BrokerError(
            ErrorCode.BrokerUnavailable,
            `consumer "${this.tag}" on queue "${this.#queue}": lease request failed: ${toError(err).message}`,
            { cause: err },
          ),
        );
        await sleep(1_000, undefined, { signal: this.#pollAbort.signal }).catch(() => undefined);
        continue;
      }
      this.#dispatchAll(leases);
    }
  }

  #dispatchAll(leases: WireLease[]): void {
    for (const l of leases) {
      const delivery = new GatewayDelivery(this.#broker, this, this.#queue, l);
      this.#held++;
      if (this.#cancelled) {
        // Arrived after cancel(): hand it back uncounted.
        void delivery.release().catch((err: unknown) => this.#broker.reportError(toError(err)));
        continue;
      }
      this.#dispatch(delivery);
    }
  }

  #dispatch(delivery: GatewayDelivery): void {
    let result: void | Promise<void>;
    try {
      result = this.#handler(delivery);
    } catch (err) {
      this.#handlerFailed(delivery, err);
      return;
    }
    if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
      const run: Promise<void> = (result as Promise<void>).then(
        () => undefined,
        (err: unknown) => this.#handlerFailed(delivery, err),
      );
      this.#running.add(run);
      void run.finally(() => this.#running.delete(run));
    }
  }

  #handlerFailed(delivery: GatewayDelivery, thrown: unknown): void {
    const err = toError(thrown);
    this.#broker.reportError(
      new BrokerError(
        ErrorCode.HandlerFailed,
        `consumer "${this.tag}" on queue "${this.#queue}": handler failed on message "${delivery.id}": ${err.message}`,
        { cause: thrown },
      ),
    );
    if (!delivery.settled) {
      delivery
        .nack({ error: err.message })
        .catch((e: unknown) => this.#broker.reportError(toError(e)));
    }
  }

  async #cancel(): Promise<void> {
    this.#cancelled = true;
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
    // The gateway answers our waiting poll at once; if it cannot be told, abort the poll.
    await this.#broker.cancelPull(this.#queue, this.pullId).catch(() => undefined);
    const timer = setTimeout(() => this.#pollAbort.abort(), CANCEL_POLL_MS);
    await this.#loop?.catch(() => undefined);
    clearTimeout(timer);
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    this.#onCancelled();
  }
}

const RESOLVED = Promise.resolve();

/** A lease held through the gateway. Settles after the lease is gone are no-ops. */
class GatewayDelivery implements Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority: number;
  readonly deliveryCount: number;
  readonly #leaseId: string;
  readonly #broker: GatewayBroker;
  readonly #consumer: PullConsumer;
  #leaseExpiresAt: number;
  #settled = false;
  #slotHeld = true;
  #slotTimer: NodeJS.Timeout | undefined;

  constructor(broker: GatewayBroker, consumer: PullConsumer, queue: string, lease: WireLease) {
    this.#broker = broker;
    this.#consumer = consumer;
    this.queue = queue;
    this.id = lease.messageId;
    this.body = Buffer.from(lease.body, 'utf8');
    this.headers = lease.headers;
    this.priority = lease.priority;
    this.deliveryCount = lease.deliveryCount;
    this.#leaseId = lease.leaseId;
    this.#leaseExpiresAt = lease.leaseExpiresAt;
    this.#armSlotTimer();
  }

  get leaseExpiresAt(): number {
    return this.#leaseExpiresAt;
  }

  get settled(): boolean {
    return this.#settled;
  }

  ack(): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    return this.#call('ack');
  }

  async ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    const wire = toWire(`queue "${queue}"`, messages);
    if (!this.#begin()) {
      await this.#broker.publish(queue, messages);
      return;
    }
    const done = await this.#broker.leaseCall(this.#leaseId, 'ack', {
      publish: { queue, messages: wire },
    });
    // The lease was lost meanwhile: the messages are still published, the ack is a no-op.
    if (done === false) await this.#broker.publish(queue, wire.map(fromWire));
  }

  nack(options: { delayMs?: number; error?: string } = {}): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    const body: { delayMs?: number; error?: string } = {};
    if (options.delayMs !== undefined) body.delayMs = Math.max(0, Math.round(options.delayMs));
    if (options.error !== undefined) body.error = options.error.slice(0, 65_536);
    return this.#call('nack', body);
  }

  release(): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    return this.#call('release');
  }

  deadLetter(reason: string): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    return this.#call('dead-letter', { reason: reason.slice(0, 65_536) || 'dead-lettered' });
  }

  async extendLease(ms?: number): Promise<void> {
    if (this.#settled) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        `message "${this.id}" on queue "${this.queue}": cannot extend the lease of a settled delivery`,
      );
    }
    const res = await this.#broker.leaseCall(
      this.#leaseId,
      'extend',
      ms !== undefined ? { ms: Math.max(1, Math.round(ms)) } : {},
    );
    if (res === false) {
      throw new BrokerError(
        ErrorCode.BrokerState,
        `message "${this.id}" on queue "${this.queue}": lease lost (it expired and was taken back)`,
      );
    }
    this.#leaseExpiresAt = parseAnswer(
      extendResponseSchema,
      res,
      `extend of message "${this.id}"`,
    ).leaseExpiresAt;
    this.#armSlotTimer();
  }

  /**
   * Acks the deliveries of `broker` in as few requests as it can (see GatewayBroker.ackLeases);
   * anything else in the list is acked on its own.
   */
  static ackAll(broker: GatewayBroker, deliveries: readonly Delivery[]): Promise<void> {
    return ackTogether(
      deliveries,
      (d): d is GatewayDelivery => d instanceof GatewayDelivery && d.#broker === broker,
      (own) => {
        const leaseIds: string[] = [];
        for (const d of own) if (d.#begin()) leaseIds.push(d.#leaseId);
        return leaseIds.length === 0 ? RESOLVED : broker.ackLeases(leaseIds);
      },
    );
  }

  async #call(op: string, body?: unknown): Promise<void> {
    await this.#broker.leaseCall(this.#leaseId, op, body);
  }

  /** Marks the delivery settled and frees its slot; false when it already was settled. */
  #begin(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#freeSlot();
    return true;
  }

  #freeSlot(): void {
    clearTimeout(this.#slotTimer);
    if (!this.#slotHeld) return;
    this.#slotHeld = false;
    this.#consumer.freeSlot();
  }

  /** Past the lease, the gateway gives the message to someone else: stop counting it. */
  #armSlotTimer(): void {
    clearTimeout(this.#slotTimer);
    if (!this.#slotHeld) return;
    this.#slotTimer = setTimeout(
      () => this.#freeSlot(),
      Math.max(0, this.#leaseExpiresAt - Date.now()) + 1_000,
    );
    this.#slotTimer.unref();
  }
}

function fromWire(w: WireMessage): OutgoingMessage {
  const m: OutgoingMessage = { id: w.id!, body: w.body };
  if (w.headers !== undefined) m.headers = w.headers;
  if (w.priority !== undefined) m.priority = w.priority;
  if (w.delayMs !== undefined) m.delayMs = w.delayMs;
  return m;
}
