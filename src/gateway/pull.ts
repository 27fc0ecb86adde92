import { randomUUID } from 'node:crypto';
import type {
  Broker,
  Consumer,
  Delivery,
  OutgoingMessage,
  QueueStats,
} from '../broker/contract.js';
import { ackEach } from '../broker/contract.js';
import { toError } from '../protocol/errors.js';
import { GatewayErrorCode, HttpError } from './errors.js';

/** Minimal logger the hub writes to (pino and fastify's logger fit). */
export interface HubLogger {
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface PullHubOptions {
  broker: Broker;
  /** Deliveries the gateway holds per queue, parked or leased (default: 256). */
  prefetch?: number;
  /** A queue nobody polled for this long stops its broker consumer, in ms (default: 10000). */
  idleMs?: number;
  logger: HubLogger;
}

/** What a lease request asks for. */
export interface LeaseAsk {
  max: number;
  waitMs: number;
  leaseMs?: number;
  /** The client consumer asking (default: one per token name). */
  consumer?: string;
}

/** One delivery leased to an HTTP client. */
export interface LeaseEntry {
  readonly id: string;
  readonly queue: string;
  readonly delivery: Delivery;
  /** Epoch ms when the client lease ends. */
  expiresAt: number;
  readonly client: string;
  readonly principal: string;
  /** Lease length the broker granted at delivery (about the queue's leaseMs), in ms. */
  readonly queueLeaseMs: number;
  timer: NodeJS.Timeout | undefined;
  /** Settles the broker handler's promise for this delivery. */
  readonly done: () => void;
}

/** A delivery held by the gateway, not leased to any client yet. */
interface Parked {
  delivery: Delivery;
  done: () => void;
  timer: NodeJS.Timeout;
  /** Lease length the broker granted, in ms. */
  leaseMs: number;
}

/** A lease request waiting for work (long poll). */
interface Waiter {
  ask: LeaseAsk;
  client: string;
  principal: string;
  resolve: (leases: LeaseEntry[]) => void;
  timer: NodeJS.Timeout | undefined;
  settled: boolean;
}

/** One broker consumer of a queue; `stopping` once it is being cancelled. */
interface Generation {
  consumer: Consumer | undefined;
  stopping: boolean;
}

interface ClientState {
  /** The token that polled first under this consumer name; only it (or admin) may cancel it. */
  principal: string;
  lastSeen: number;
  leases: number;
  waiting: number;
}

/** Pull state of one queue. */
class PullQueue {
  readonly name: string;
  generation: Generation | undefined;
  starting: Promise<Generation> | undefined;
  /** Broker consumers started and not yet fully cancelled. */
  liveConsumers = 0;
  /** Leases held by clients. */
  leases = 0;
  /** Highest priority first, then arrival order. */
  readonly parked: Parked[] = [];
  readonly waiters: Waiter[] = [];
  readonly clients = new Map<string, ClientState>();
  /** Client consumers that said they stopped: until when their polls are answered empty. */
  readonly cancelled = new Map<string, { until: number; principal: string }>();
  lastPollAt = Date.now();
  dispatchScheduled = false;

  constructor(name: string) {
    this.name = name;
  }

  client(id: string, now: number, principal: string): ClientState {
    let c = this.clients.get(id);
    if (!c) {
      c = { principal, lastSeen: now, leases: 0, waiting: 0 };
      this.clients.set(id, c);
    }
    c.lastSeen = now;
    return c;
  }

  liveClients(now: number): number {
    let n = 0;
    for (const c of this.clients.values()) {
      if (c.waiting > 0 || c.leases > 0 || now - c.lastSeen < CLIENT_LIVE_MS) n++;
    }
    return n;
  }
}

/** A client consumer counts as live this long after its last poll or settle, in ms. */
const CLIENT_LIVE_MS = 5_000;
/**
 * Longest a `waitMs: 0` poll that started the queue's broker consumer waits for its first
 * deliveries, when the broker has messages ready, in ms.
 */
const FIRST_DELIVERY_WAIT_MS = 1_000;
/** A cancelled client consumer's polls are answered empty for this long, in ms. */
const CANCELLED_MEMORY_MS = 60_000;
const SWEEP_EVERY_MS = 1_000;

/** Time the gateway keeps on the broker lease beyond the client's, so its nack lands first. */
function marginMs(leaseMs: number): number {
  return Math.min(2_000, Math.max(20, Math.floor(leaseMs / 10)));
}

/**
 * Pull-consume for HTTP clients. Per queue, one broker consumer (started by the first lease
 * request) parks its deliveries here; lease requests take them, or wait for them (long poll).
 * The broker handler's promise for a delivery settles only when a client settles its lease.
 *
 * A delivery's life: parked → leased → settled (ack, nack, release, dead-letter). A parked
 * delivery not leased within half its broker lease is released back to the broker; a leased one
 * whose client lease passes without ack or extend is nacked with `LEASE_EXPIRED`. A queue nobody
 * polled for `idleMs` stops its consumer and releases what it parked.
 */
export class PullHub {
  readonly #broker: Broker;
  readonly #prefetch: number;
  readonly #idleMs: number;
  readonly #logger: HubLogger;
  readonly #queues = new Map<string, PullQueue>();
  readonly #leases = new Map<string, LeaseEntry>();
  readonly #sweeper: NodeJS.Timeout;
  #closing: Promise<void> | undefined;

  constructor(options: PullHubOptions) {
    this.#broker = options.broker;
    this.#prefetch = options.prefetch ?? 256;
    this.#idleMs = options.idleMs ?? 10_000;
    this.#logger = options.logger;
    this.#sweeper = setInterval(() => this.#sweep(), SWEEP_EVERY_MS);
    this.#sweeper.unref();
  }

  /** Leases held by clients now. */
  get leaseCount(): number {
    return this.#leases.size;
  }

  /**
   * Leases up to `ask.max` deliveries of `queue`, waiting up to `ask.waitMs` for the first one.
   * `onAbort` registers a callback for a client that goes away while waiting.
   */
  async lease(
    queue: string,
    ask: LeaseAsk,
    principal: string,
    onAbort: (cb: () => void) => void,
  ): Promise<LeaseEntry[]> {
    this.#assertOpen();
    const pq = this.#queue(queue);
    const now = Date.now();
    pq.lastPollAt = now;
    const clientId = ask.consumer ?? `token:${principal}`;
    const cancelled = pq.cancelled.get(clientId);
    if (cancelled !== undefined && cancelled.until > now && cancelled.principal === principal) {
      return [];
    }
    const owner = pq.clients.get(clientId)?.principal;
    if (owner !== undefined && owner !== principal) throw otherToken(clientId, principal);
    const client = pq.client(clientId, now, principal);
    const fresh = await this.#ensureConsumer(pq);
    this.#assertOpen();
    if (pq.parked.length > 0) {
      const taken = pq.parked.splice(0, ask.max);
      return this.#grant(pq, taken, ask, clientId, principal);
    }
    let waitMs = ask.waitMs;
    if (waitMs <= 0) {
      // A consumer started by this poll has had no deliveries yet: when the broker has messages
      // ready, wait briefly for the first ones rather than answer empty.
      if (!fresh) return [];
      // In flight counts too: the new consumer may hold messages not handed to it yet.
      const ready = await this.#broker.stats(queue).then(
        (s) => s.ready + s.inFlight,
        () => 0,
      );
      if (pq.parked.length > 0) {
        const taken = pq.parked.splice(0, ask.max);
        return this.#grant(pq, taken, ask, clientId, principal);
      }
      if (ready === 0) return [];
      waitMs = FIRST_DELIVERY_WAIT_MS;
    }
    client.waiting++;
    return new Promise<LeaseEntry[]>((resolve) => {
      const waiter: Waiter = {
        ask,
        client: clientId,
        principal,
        settled: false,
        timer: undefined,
        resolve: (leases) => {
          if (waiter.settled) {
            // Granted after the client went away: hand them back.
            for (const l of leases) this.#releaseEntry(l, 'client went away');
            return;
          }
          waiter.settled = true;
          clearTimeout(waiter.timer);
          const c = pq.clients.get(clientId);
          if (c) {
            c.waiting--;
            c.lastSeen = Date.now();
          }
          resolve(leases);
        },
      };
      waiter.timer = setTimeout(() => this.#dropWaiter(pq, waiter), waitMs);
      pq.waiters.push(waiter);
      onAbort(() => this.#dropWaiter(pq, waiter));
    });
  }

  /** The lease `leaseId`, or an HttpError 410 when it is unknown (settled, expired, handed back). */
  get(leaseId: string): LeaseEntry {
    const entry = this.#leases.get(leaseId);
    if (!entry) {
      throw new HttpError(
        410,
        GatewayErrorCode.LeaseGone,
        `lease "${leaseId}" is gone: it was settled, expired or handed back`,
      );
    }
    return entry;
  }

  /** Acks a lease, publishing `publish.messages` to `publish.queue` first when given. */
  async ack(
    leaseId: string,
    publish?: { queue: string; messages: readonly OutgoingMessage[] },
  ): Promise<void> {
    const entry = this.#take(leaseId);
    try {
      if (publish) await entry.delivery.ackWithPublish(publish.queue, publish.messages);
      else await entry.delivery.ack();
    } finally {
      entry.done();
    }
  }

  /** The lease `leaseId` if the gateway holds it. */
  find(leaseId: string): LeaseEntry | undefined {
    return this.#leases.get(leaseId);
  }

  /**
   * Acks many leases, with one broker operation per queue where the broker can (see
   * Consumer.ackAll). Ids the gateway does not hold (settled, expired, handed back, or listed
   * twice) are skipped; resolves with them.
   */
  async ackMany(leaseIds: readonly string[]): Promise<string[]> {
    const gone: string[] = [];
    const byQueue = new Map<string, LeaseEntry[]>();
    for (const id of leaseIds) {
      const entry = this.#leases.get(id);
      if (!entry) {
        gone.push(id);
        continue;
      }
      this.#forget(entry);
      let entries = byQueue.get(entry.queue);
      if (!entries) byQueue.set(entry.queue, (entries = []));
      entries.push(entry);
    }
    await Promise.all(
      [...byQueue].map(async ([queue, entries]) => {
        const consumer = this.#queues.get(queue)?.generation?.consumer;
        const deliveries = entries.map((e) => e.delivery);
        try {
          await (consumer ? consumer.ackAll(deliveries) : ackEach(deliveries));
        } finally {
          for (const e of entries) e.done();
        }
      }),
    );
    return gone;
  }

  /** Nacks a lease: delivered again after `delayMs`, `error` recorded as its last error. */
  async nack(leaseId: string, options: { delayMs?: number; error?: string }): Promise<void> {
    const entry = this.#take(leaseId);
    try {
      await entry.delivery.nack(options);
    } finally {
      entry.done();
    }
  }

  /** Hands a lease back uncounted. */
  async release(leaseId: string): Promise<void> {
    const entry = this.#take(leaseId);
    try {
      await entry.delivery.release();
    } finally {
      entry.done();
    }
  }

  /** Dead-letters a lease with `reason`. */
  async deadLetter(leaseId: string, reason: string): Promise<void> {
    const entry = this.#take(leaseId);
    try {
      await entry.delivery.deadLetter(reason);
    } finally {
      entry.done();
    }
  }

  /**
   * Extends a lease to `ms` from now (default: the queue's lease); resolves with the new end. A
   * lease the broker took back meanwhile is gone (410).
   */
  async extend(leaseId: string, ms: number | undefined): Promise<number> {
    const entry = this.get(leaseId);
    const pq = this.#queues.get(entry.queue);
    pq?.client(entry.client, Date.now(), entry.principal);
    const length = ms ?? entry.queueLeaseMs;
    try {
      await entry.delivery.extendLease(length + marginMs(length));
    } catch (err) {
      if (this.#leases.get(leaseId) === entry) {
        this.#forget(entry);
        entry.done();
      }
      throw new HttpError(
        410,
        GatewayErrorCode.LeaseGone,
        `lease "${leaseId}" is gone: the broker took the message back (${toError(err).message})`,
        { cause: err },
      );
    }
    // Settled or expired while the broker extended it: the extension does not revive it.
    if (this.#leases.get(leaseId) !== entry) this.get(leaseId);
    entry.expiresAt = Date.now() + length;
    this.#arm(entry);
    return entry.expiresAt;
  }

  /** Hands back leases whose answer never reached the client. */
  releaseUndelivered(entries: readonly LeaseEntry[]): void {
    for (const e of entries) {
      if (this.#leases.get(e.id) === e) this.#releaseEntry(e, 'answer not delivered');
    }
  }

  /**
   * A client consumer stopped: its waiting polls are answered empty at once and later ones for a
   * while; it no longer counts in the queue's consumers. Leases it holds stay valid.
   */
  cancelClient(queue: string, consumer: string, principal: string, admin: boolean): void {
    const pq = this.#queues.get(queue);
    if (!pq) return;
    const owner = pq.clients.get(consumer)?.principal;
    if (owner !== undefined && owner !== principal && !admin) throw otherToken(consumer, principal);
    pq.cancelled.set(consumer, {
      until: Date.now() + CANCELLED_MEMORY_MS,
      principal: owner ?? principal,
    });
    pq.clients.delete(consumer);
    for (const w of [...pq.waiters]) {
      if (w.client === consumer) this.#dropWaiter(pq, w);
    }
  }

  /**
   * Purges the deliveries parked here for `queue` (ready as a client sees them, held from the
   * broker): each is acked, so it is gone as a purge on the broker would make it. Resolves how
   * many. Leases held by clients are not touched: they finish as in-flight messages do.
   */
  async purgeParked(queue: string): Promise<number> {
    const pq = this.#queues.get(queue);
    if (!pq) return 0;
    const taken = pq.parked.splice(0);
    await Promise.all(
      taken.map((p) => {
        clearTimeout(p.timer);
        return p.delivery
          .ack()
          .catch((err: unknown) => this.#warn(err, p.delivery, 'ack (purge)'))
          .finally(p.done);
      }),
    );
    return taken.length;
  }

  /**
   * `stats` as a client of the gateway sees it: deliveries parked here count as ready rather than
   * in flight, and consumers are the live client consumers instead of the gateway's own.
   */
  adjustStats(stats: QueueStats): QueueStats {
    const pq = this.#queues.get(stats.queue);
    if (!pq) return stats;
    const parked = pq.parked.length;
    return {
      ...stats,
      ready: stats.ready + parked,
      inFlight: Math.max(0, stats.inFlight - parked),
      consumers: Math.max(0, stats.consumers - pq.liveConsumers) + pq.liveClients(Date.now()),
    };
  }

  /** Answers every waiting poll with no leases (used before the HTTP server closes). */
  endPolls(): void {
    for (const pq of this.#queues.values()) {
      for (const w of [...pq.waiters]) this.#dropWaiter(pq, w);
    }
  }

  /**
   * Stops every broker consumer and releases every parked and leased delivery (a client's later
   * settle of such a lease gets 410). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    clearInterval(this.#sweeper);
    this.endPolls();
    const ops: Promise<unknown>[] = [];
    for (const entry of [...this.#leases.values()]) {
      ops.push(this.#releaseEntry(entry, 'gateway closing'));
    }
    for (const pq of this.#queues.values()) {
      if (pq.starting)
        ops.push(
          pq.starting.then(
            () => undefined,
            () => undefined,
          ),
        );
    }
    await Promise.allSettled(ops);
    const cancels: Promise<void>[] = [];
    for (const pq of this.#queues.values()) cancels.push(this.#stopConsumer(pq));
    await Promise.allSettled(cancels);
  }

  #assertOpen(): void {
    if (this.#closing) {
      throw new HttpError(503, GatewayErrorCode.ShuttingDown, 'the gateway is shutting down', {
        retryAfterS: 1,
      });
    }
  }

  #queue(name: string): PullQueue {
    let pq = this.#queues.get(name);
    if (!pq) {
      pq = new PullQueue(name);
      this.#queues.set(name, pq);
    }
    return pq;
  }

  /** Starts the queue's broker consumer unless it runs; resolves true when this call started it. */
  async #ensureConsumer(pq: PullQueue): Promise<boolean> {
    if (pq.generation && !pq.generation.stopping) return false;
    if (!pq.starting) {
      const generation: Generation = { consumer: undefined, stopping: false };
      pq.starting = this.#broker
        .consume(pq.name, (d) => this.#onDelivery(pq, generation, d), {
          prefetch: this.#prefetch,
          tag: `qtune-gateway-${randomUUID().slice(0, 8)}`,
        })
        .then((consumer) => {
          generation.consumer = consumer;
          pq.generation = generation;
          pq.liveConsumers++;
          return generation;
        })
        .finally(() => {
          pq.starting = undefined;
        });
    }
    await pq.starting;
    return true;
  }

  /** Broker handler: parks the delivery; the returned promise settles with the client's settle. */
  #onDelivery(pq: PullQueue, generation: Generation, delivery: Delivery): Promise<void> {
    if (generation.stopping || this.#closing) {
      return delivery.release().catch((err: unknown) => this.#warn(err, delivery, 'release'));
    }
    return new Promise<void>((done) => {
      const now = Date.now();
      const leaseMs = Math.max(1, delivery.leaseExpiresAt - now);
      const parked: Parked = {
        delivery,
        done,
        leaseMs,
        timer: setTimeout(() => this.#unpark(pq, parked), Math.floor(leaseMs / 2)),
      };
      parked.timer.unref();
      // Highest priority first, arrival order within a priority.
      let at = pq.parked.length;
      while (at > 0 && pq.parked[at - 1]!.delivery.priority < delivery.priority) at--;
      pq.parked.splice(at, 0, parked);
      this.#scheduleDispatch(pq);
    });
  }

  #scheduleDispatch(pq: PullQueue): void {
    if (pq.dispatchScheduled) return;
    pq.dispatchScheduled = true;
    // Deliveries of one broker batch arrive together: hand them out together.
    setImmediate(() => {
      pq.dispatchScheduled = false;
      while (pq.waiters.length > 0 && pq.parked.length > 0) {
        const waiter = pq.waiters.shift()!;
        clearTimeout(waiter.timer);
        const taken = pq.parked.splice(0, waiter.ask.max);
        void this.#grant(pq, taken, waiter.ask, waiter.client, waiter.principal).then((leases) =>
          waiter.resolve(leases),
        );
      }
    });
  }

  /**
   * A parked delivery nobody leased within half its lease goes back to the broker. With no poll
   * waiting, nobody here wants work now: the queue's consumer stops too, so that the broker does
   * not hand the same messages straight back, and other consumers can take them. The next lease
   * request starts a new one.
   */
  #unpark(pq: PullQueue, parked: Parked): void {
    const at = pq.parked.indexOf(parked);
    if (at < 0) return;
    if (pq.waiters.length === 0) {
      this.#logger.debug(
        { queue: pq.name },
        'parked deliveries not leased: stopping the queue consumer',
      );
      void this.#stopConsumer(pq);
      return;
    }
    pq.parked.splice(at, 1);
    parked.delivery
      .release()
      .catch((err: unknown) => this.#warn(err, parked.delivery, 'release'))
      .finally(parked.done);
  }

  async #grant(
    pq: PullQueue,
    taken: Parked[],
    ask: LeaseAsk,
    client: string,
    principal: string,
  ): Promise<LeaseEntry[]> {
    const entries = await Promise.all(
      taken.map(async (p): Promise<LeaseEntry | undefined> => {
        clearTimeout(p.timer);
        let expiresAt: number;
        if (ask.leaseMs !== undefined) {
          try {
            await p.delivery.extendLease(ask.leaseMs + marginMs(ask.leaseMs));
          } catch (err) {
            // The broker took it back already; it will be delivered again.
            this.#warn(err, p.delivery, 'extend on lease');
            p.done();
            return undefined;
          }
          expiresAt = Date.now() + ask.leaseMs;
        } else {
          expiresAt = p.delivery.leaseExpiresAt - marginMs(p.leaseMs);
        }
        const entry: LeaseEntry = {
          id: randomUUID(),
          queue: pq.name,
          delivery: p.delivery,
          expiresAt,
          client,
          principal,
          queueLeaseMs: p.leaseMs,
          timer: undefined,
          done: p.done,
        };
        this.#leases.set(entry.id, entry);
        this.#arm(entry);
        return entry;
      }),
    );
    const granted = entries.filter((e): e is LeaseEntry => e !== undefined);
    const c = pq.client(client, Date.now(), principal);
    c.leases += granted.length;
    pq.leases += granted.length;
    return granted;
  }

  #arm(entry: LeaseEntry): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.#expire(entry), Math.max(0, entry.expiresAt - Date.now()));
    entry.timer.unref();
  }

  /** A client lease passed without ack or extend: nack it so it is delivered again. */
  #expire(entry: LeaseEntry): void {
    if (this.#leases.get(entry.id) !== entry) return;
    this.#forget(entry);
    const error =
      `LEASE_EXPIRED: gateway client "${entry.principal}" (consumer "${entry.client}") did not ` +
      `settle lease ${entry.id} of message "${entry.delivery.id}" before its lease ended`;
    this.#logger.debug(
      { queue: entry.queue, messageId: entry.delivery.id, client: entry.client },
      'client lease expired; nacking',
    );
    entry.delivery
      .nack({ error })
      .catch((err: unknown) => this.#warn(err, entry.delivery, 'nack after lease expiry'))
      .finally(entry.done);
  }

  #releaseEntry(entry: LeaseEntry, why: string): Promise<void> {
    this.#forget(entry);
    return entry.delivery
      .release()
      .catch((err: unknown) => this.#warn(err, entry.delivery, `release (${why})`))
      .finally(entry.done);
  }

  /** Removes a lease for a settle; 410 when it is already gone. */
  #take(leaseId: string): LeaseEntry {
    const entry = this.get(leaseId);
    this.#forget(entry);
    return entry;
  }

  #forget(entry: LeaseEntry): void {
    this.#leases.delete(entry.id);
    clearTimeout(entry.timer);
    entry.timer = undefined;
    const pq = this.#queues.get(entry.queue);
    if (pq) pq.leases--;
    const c = pq?.clients.get(entry.client);
    if (c) {
      c.leases = Math.max(0, c.leases - 1);
      c.lastSeen = Date.now();
    }
  }

  #dropWaiter(pq: PullQueue, waiter: Waiter): void {
    const at = pq.waiters.indexOf(waiter);
    if (at >= 0) pq.waiters.splice(at, 1);
    waiter.resolve([]);
  }

  async #stopConsumer(pq: PullQueue): Promise<void> {
    const generation = pq.generation;
    pq.generation = undefined;
    for (const p of pq.parked.splice(0)) {
      clearTimeout(p.timer);
      void p.delivery
        .release()
        .catch((err: unknown) => this.#warn(err, p.delivery, 'release'))
        .finally(p.done);
    }
    if (!generation || generation.stopping) return;
    generation.stopping = true;
    try {
      await generation.consumer?.cancel();
    } catch (err) {
      this.#logger.warn(
        { queue: pq.name, err: toError(err).message },
        'cancelling a consumer failed',
      );
    } finally {
      pq.liveConsumers--;
    }
  }

  /** Stops the consumers of idle queues and forgets queues with nothing left. */
  #sweep(): void {
    const now = Date.now();
    for (const [name, pq] of this.#queues) {
      for (const [id, c] of pq.cancelled) if (c.until <= now) pq.cancelled.delete(id);
      for (const [id, c] of pq.clients) {
        if (c.waiting === 0 && c.leases === 0 && now - c.lastSeen > CANCELLED_MEMORY_MS) {
          pq.clients.delete(id);
        }
      }
      const idle = pq.waiters.length === 0 && now - pq.lastPollAt >= this.#idleMs;
      if (idle && pq.generation && !pq.generation.stopping) {
        this.#logger.debug({ queue: name }, 'no pollers: stopping the queue consumer');
        void this.#stopConsumer(pq);
      }
      if (
        idle &&
        !pq.generation &&
        !pq.starting &&
        pq.liveConsumers === 0 &&
        pq.parked.length === 0 &&
        pq.clients.size === 0 &&
        pq.cancelled.size === 0 &&
        pq.leases === 0
      ) {
        this.#queues.delete(name);
      }
    }
  }

  #warn(err: unknown, delivery: Delivery, what: string): void {
    this.#logger.warn(
      { queue: delivery.queue, messageId: delivery.id, err: toError(err).message },
      `${what} failed`,
    );
  }
}

/** 403 for a client consumer name that another token polls under. */
function otherToken(consumer: string, principal: string): HttpError {
  return new HttpError(
    403,
    GatewayErrorCode.Forbidden,
    `consumer "${consumer}" belongs to another token than "${principal}"`,
  );
}
