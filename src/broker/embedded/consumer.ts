import type { Headers } from '../../protocol/envelope.js';
import { BrokerError, ErrorCode, toError } from '../../protocol/errors.js';
import type { Consumer, Delivery, DeliveryHandler, OutgoingMessage } from '../contract.js';
import { ackTogether } from '../contract.js';
import type { GroupCommit, WriteOp } from './group-commit.js';
import {
  DOCTOR_HINT,
  type LeaseResult,
  type LeasedRow,
  type QueueStore,
  type SettleOutcome,
} from './store.js';

/** What a consumer needs from the broker handle that owns it. */
export interface ConsumerHost {
  readonly store: QueueStore;
  readonly commit: GroupCommit;
  /** Something committed by this handle may have made `queue` deliverable. */
  localChange(queue: string): void;
  /** Reports an error through the handle's 'error' event. */
  reportError(error: Error): void;
  /** Removes the consumer's row and, for a subscription, its queue and binding. */
  unregister(consumer: EmbeddedConsumer): Promise<void>;
  /** A fresh lease token, in the range of this handle's number. */
  nextToken(): number;
  /** Validates messages for `queue`; returns the write that inserts them inside a transaction. */
  prepareInsert(queue: string, messages: readonly OutgoingMessage[]): (now: number) => void;
}

/** Retry delay after a failed lease transaction. */
const LEASE_RETRY_MS = 1_000;
/**
 * While the queue has ready messages, due delayed messages and expired leases are swept in at
 * most this often (in ms) per consumer: sweeping on every lease would add index seeks to every
 * transaction. When ready messages run short the sweep runs at once.
 */
const SWEEP_EVERY_MS = 100;
/** Longest a due-time timer is armed for; the safety poll covers the rest. */
const MAX_TIMER_MS = 60_000;
/**
 * Most messages one lease takes (the consumer leases again at once while there is more): a
 * large prefetch is filled in steps, so the first deliveries reach the handler without waiting
 * for the whole window, and acks and other work on the thread run between the steps.
 */
const MAX_LEASE_ROWS = 5000;

/** A WriteOp settling a promise with `map(result)`, which runs right after the commit. */
class PromiseOp<T, R> implements WriteOp<T> {
  readonly weight = 1;
  constructor(
    readonly exec: (now: number) => T,
    readonly map: (result: T) => R,
    readonly resolve: (value: R) => void,
    readonly reject: (error: Error) => void,
  ) {}
  done(result: T): void {
    let value: R;
    try {
      value = this.map(result);
    } catch (err) {
      this.reject(toError(err));
      return;
    }
    this.resolve(value);
  }
  fail(error: Error): void {
    this.reject(error);
  }
}

function submit<T, R>(
  commit: GroupCommit,
  exec: (now: number) => T,
  map: (result: T) => R,
): Promise<R> {
  return new Promise<R>((resolve, reject) => {
    commit.submit(new PromiseOp(exec, map, resolve, reject));
  });
}

const RESOLVED = Promise.resolve();

/**
 * One leased message. Settling is idempotent: a second settle of the same delivery, or a settle
 * after the lease was lost (it expired and the message went to someone else), is a no-op that
 * resolves normally. Only `extendLease` reports a lost lease, by rejecting with a BrokerError.
 */
export class EmbeddedDelivery implements Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly priority: number;
  readonly deliveryCount: number;
  readonly #seq: number;
  readonly #token: number;
  readonly #consumer: EmbeddedConsumer;
  readonly #rawHeaders: string | null;
  #headers: Headers | undefined;
  #leaseExpiresAt: number;
  #settled = false;

  constructor(consumer: EmbeddedConsumer, row: LeasedRow, token: number, leaseUntil: number) {
    this.#consumer = consumer;
    this.#seq = row.seq;
    this.#token = token;
    this.id = row.id;
    this.queue = consumer.queue;
    this.body = row.body;
    this.priority = row.priority;
    this.deliveryCount = row.deliveries;
    this.#rawHeaders = row.headers;
    this.#leaseExpiresAt = leaseUntil;
  }

  get headers(): Headers {
    if (this.#headers === undefined) {
      this.#headers = {};
      if (this.#rawHeaders !== null) {
        try {
          this.#headers = JSON.parse(this.#rawHeaders) as Headers;
        } catch {
          // Written by something other than qtune; expose no headers rather than fail.
        }
      }
    }
    return this.#headers;
  }

  get leaseExpiresAt(): number {
    return this.#leaseExpiresAt;
  }

  /** True once ack, nack, release or deadLetter was called. */
  get settled(): boolean {
    return this.#settled;
  }

  ack(): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    const { store, commit } = this.#consumer.host;
    const seq = this.#seq;
    const token = this.#token;
    return submit(commit, () => store.ack(seq, token), noop);
  }

  /**
   * Acks, in one write operation, the deliveries of consumers of `host` (see Consumer.ackAll):
   * one closure and one promise for all of them instead of one each. Anything else in the list
   * is acked on its own.
   */
  static ackAll(host: ConsumerHost, deliveries: readonly Delivery[]): Promise<void> {
    return ackTogether(
      deliveries,
      (d): d is EmbeddedDelivery => d instanceof EmbeddedDelivery && d.#consumer.host === host,
      (own) => {
        const seqs: number[] = [];
        const tokens: number[] = [];
        for (const d of own) {
          if (!d.#begin()) continue;
          seqs.push(d.#seq);
          tokens.push(d.#token);
        }
        if (seqs.length === 0) return RESOLVED;
        const { store, commit } = host;
        return new Promise<void>((resolve, reject) => {
          commit.submit({
            weight: seqs.length,
            exec: () => {
              for (let i = 0; i < seqs.length; i++) store.ack(seqs[i]!, tokens[i]!);
            },
            done: () => resolve(),
            fail: reject,
          });
        });
      },
    );
  }

  ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    const host = this.#consumer.host;
    let insert: (now: number) => void;
    try {
      insert = host.prepareInsert(queue, messages);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    // Publish and ack in one transaction: the result can never be lost after the ack.
    const ack = this.#begin();
    const seq = this.#seq;
    const token = this.#token;
    return submit(
      host.commit,
      (now) => {
        insert(now);
        if (ack) host.store.ack(seq, token);
      },
      () => host.localChange(queue),
    );
  }

  nack(options?: { delayMs?: number; error?: string }): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    const host = this.#consumer.host;
    const seq = this.#seq;
    const token = this.#token;
    const delayMs = Math.max(0, options?.delayMs ?? 0);
    const error = options?.error ?? null;
    return submit(
      host.commit,
      (now) => host.store.nack(seq, token, delayMs, error, now),
      (outcome: SettleOutcome) => notify(host, outcome),
    );
  }

  release(): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    const host = this.#consumer.host;
    const seq = this.#seq;
    const token = this.#token;
    const queue = this.queue;
    return submit(
      host.commit,
      () => host.store.release(seq, token),
      (applied: boolean) => {
        if (applied) host.localChange(queue);
      },
    );
  }

  deadLetter(reason: string): Promise<void> {
    if (!this.#begin()) return RESOLVED;
    const host = this.#consumer.host;
    const seq = this.#seq;
    const token = this.#token;
    return submit(
      host.commit,
      (now) => host.store.deadLetter(seq, token, reason, now),
      (outcome: SettleOutcome) => notify(host, outcome),
    );
  }

  extendLease(ms?: number): Promise<void> {
    if (this.#settled) {
      return Promise.reject(
        new BrokerError(
          ErrorCode.BrokerState,
          `message "${this.id}" on queue "${this.queue}": cannot extend the lease of a settled delivery`,
        ),
      );
    }
    const host = this.#consumer.host;
    const seq = this.#seq;
    const token = this.#token;
    const queue = this.queue;
    return submit(
      host.commit,
      (now) => {
        const until = now + (ms ?? host.store.policy(queue).leaseMs);
        return host.store.extend(seq, token, until) ? until : null;
      },
      (until: number | null) => {
        if (until === null) {
          throw new BrokerError(
            ErrorCode.BrokerState,
            `message "${this.id}" on queue "${this.queue}": lease lost (it expired and was taken back)`,
          );
        }
        this.#leaseExpiresAt = until;
      },
    );
  }

  /** Marks the delivery settled; false when it already was. */
  #begin(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.#consumer.settled();
    return true;
  }
}

function noop(): void {}

function notify(host: ConsumerHost, outcome: SettleOutcome): void {
  if (outcome.requeued !== undefined) host.localChange(outcome.requeued);
  if (outcome.deadLettered !== undefined) host.localChange(outcome.deadLettered);
}

interface LeaseOpResult extends LeaseResult {
  token: number;
  requested: number;
  /** The transaction's clock. */
  at: number;
}

/**
 * Pushes deliveries of one queue to a handler, holding at most `prefetch` unsettled at once.
 *
 * Fetch state machine. States: IDLE (the queue looked empty at the last lease; wait for a
 * signal), LEASING (a lease operation is queued or running; signals arriving meanwhile set
 * `#resignal`), FULL (`prefetch` deliveries unsettled and more may be waiting: the next settle
 * leases again), CANCELLED. Signals: a local commit touching the queue, another process's commit
 * whose probe finds work, the due-time timer (next delayed message or lease end), the safety poll.
 */
export class EmbeddedConsumer implements Consumer {
  readonly tag: string;
  readonly queue: string;
  readonly host: ConsumerHost;
  /** Row id in the `consumers` table, once registered. */
  rowId = -1;
  /** Pattern of the subscription this consumer serves, if it is one. */
  readonly subscription: string | null;
  readonly #handler: DeliveryHandler;
  readonly #prefetch: number;
  #unsettled = 0;
  #maybeMore = true;
  #leasing = false;
  #resignal = false;
  #cancelled = false;
  #cancelPromise: Promise<void> | null = null;
  #running = 0;
  #runningWaiters: Array<() => void> = [];
  #timer: NodeJS.Timeout | null = null;
  #timerAt = Infinity;
  #lastSweep = 0;
  readonly #leaseOp: WriteOp<LeaseOpResult | null>;

  constructor(
    host: ConsumerHost,
    queue: string,
    handler: DeliveryHandler,
    prefetch: number,
    tag: string,
    subscription: string | null,
  ) {
    this.host = host;
    this.queue = queue;
    this.#handler = handler;
    this.#prefetch = prefetch;
    this.tag = tag;
    this.subscription = subscription;
    this.#leaseOp = {
      weight: prefetch,
      exec: (now) => this.#execLease(now),
      done: (result) => this.#leased(result),
      fail: (error) => this.#leaseFailed(error),
    };
  }

  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Starts fetching. */
  start(): void {
    this.#kick();
  }

  /** Another process committed something; lease if the queue has work for us. */
  externalChange(now: number): void {
    if (this.#cancelled) return;
    if (this.#leasing) {
      this.#resignal = true;
      return;
    }
    if (this.#maybeMore) return; // already waiting for capacity
    if (this.#unsettled >= this.#prefetch) {
      this.#maybeMore = true;
      return;
    }
    if (this.host.store.probe(this.queue, now)) {
      this.#maybeMore = true;
      this.#kick();
    }
  }

  /** This handle committed something that may make the queue deliverable. */
  localChange(): void {
    if (this.#cancelled) return;
    if (this.#leasing) {
      this.#resignal = true;
      return;
    }
    this.#maybeMore = true;
    this.#kick();
  }

  /** A delivery of this consumer was settled: one slot is free. */
  settled(): void {
    this.#unsettled--;
    if (this.#maybeMore && !this.#leasing && !this.#cancelled) this.#kick();
  }

  ackAll(deliveries: readonly Delivery[]): Promise<void> {
    return EmbeddedDelivery.ackAll(this.host, deliveries);
  }

  cancel(): Promise<void> {
    if (this.#cancelPromise) return this.#cancelPromise;
    this.#cancelled = true;
    this.#clearTimer();
    this.#cancelPromise = (async () => {
      await this.#waitHandlers();
      await this.host.unregister(this);
    })();
    return this.#cancelPromise;
  }

  #kick(): void {
    if (this.#cancelled) return;
    if (this.#leasing) {
      this.#resignal = true;
      return;
    }
    if (this.#unsettled >= this.#prefetch) {
      this.#maybeMore = true;
      return;
    }
    this.#leasing = true;
    this.#resignal = false;
    this.host.commit.submit(this.#leaseOp);
  }

  #execLease(now: number): LeaseOpResult | null {
    if (this.#cancelled) return null;
    const n = Math.min(this.#prefetch - this.#unsettled, MAX_LEASE_ROWS);
    if (n <= 0) return null;
    const token = this.host.nextToken();
    const policy = this.host.store.policy(this.queue);
    const sweepFirst = now - this.#lastSweep >= SWEEP_EVERY_MS;
    const result = this.host.store.lease(policy, n, token, now, sweepFirst);
    return { ...result, token, requested: n, at: now };
  }

  #leased(result: LeaseOpResult | null): void {
    this.#leasing = false;
    if (result === null) {
      if (this.#resignal && !this.#cancelled) this.#kick();
      return;
    }
    for (const dlq of result.deadLettered) this.host.localChange(dlq);
    for (const bad of result.unreadable) {
      this.host.reportError(
        new BrokerError(
          ErrorCode.BrokerState,
          `queue "${this.queue}": message "${bad.id}" was dead-lettered, its body cannot be read (${bad.error}); ${DOCTOR_HINT}`,
        ),
      );
    }
    const { rows, token, leaseUntil } = result;
    if (result.swept) this.#lastSweep = result.at;
    if (this.#cancelled) {
      // Leased after cancel() began: hand them straight back, uncounted.
      for (const row of rows) {
        this.#unsettled++;
        void new EmbeddedDelivery(this, row, token, leaseUntil).release().catch(noop);
      }
      return;
    }
    this.#unsettled += rows.length;
    this.#maybeMore = rows.length >= result.requested || this.#resignal;
    this.#resignal = false;
    if (!this.#maybeMore && result.nextDueAt !== null) this.#armTimer(result.nextDueAt);
    for (const row of rows) this.#dispatch(new EmbeddedDelivery(this, row, token, leaseUntil));
    if (this.#maybeMore && this.#unsettled < this.#prefetch && !this.#leasing) this.#kick();
  }

  #leaseFailed(error: Error): void {
    this.#leasing = false;
    this.host.reportError(error);
    if (this.#cancelled) return;
    this.#maybeMore = true;
    this.#armTimer(Date.now() + LEASE_RETRY_MS);
  }

  #dispatch(delivery: EmbeddedDelivery): void {
    this.#running++;
    let result: void | Promise<void>;
    try {
      result = this.#handler(delivery);
    } catch (err) {
      this.#handlerFailed(delivery, err);
      this.#handlerDone();
      return;
    }
    if (result !== undefined && typeof (result as Promise<void>).then === 'function') {
      (result as Promise<void>).then(
        () => this.#handlerDone(),
        (err: unknown) => {
          this.#handlerFailed(delivery, err);
          this.#handlerDone();
        },
      );
    } else {
      this.#handlerDone();
    }
  }

  #handlerFailed(delivery: EmbeddedDelivery, thrown: unknown): void {
    const err = toError(thrown);
    this.host.reportError(
      new BrokerError(
        ErrorCode.HandlerFailed,
        `consumer "${this.tag}" on queue "${this.queue}": handler failed on message "${delivery.id}": ${err.message}`,
        { cause: thrown },
      ),
    );
    if (!delivery.settled) {
      delivery
        .nack({ error: err.message })
        .catch((e: unknown) => this.host.reportError(toError(e)));
    }
  }

  #handlerDone(): void {
    this.#running--;
    if (this.#running === 0 && this.#runningWaiters.length > 0) {
      const waiters = this.#runningWaiters;
      this.#runningWaiters = [];
      for (const w of waiters) w();
    }
  }

  #waitHandlers(): Promise<void> {
    if (this.#running === 0) return RESOLVED;
    return new Promise((resolve) => this.#runningWaiters.push(resolve));
  }

  #armTimer(at: number): void {
    if (this.#cancelled) return;
    const now = Date.now();
    at = Math.min(at, now + MAX_TIMER_MS);
    if (this.#timer !== null && this.#timerAt <= at) return;
    this.#clearTimer();
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#timerAt = Infinity;
        this.localChange();
      },
      Math.max(0, at - now) + 1,
    );
    this.#timer.unref();
  }

  #clearTimer(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#timerAt = Infinity;
  }
}
