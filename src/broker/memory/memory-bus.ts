import { randomUUID } from 'node:crypto';
import type { Headers } from '../../protocol/envelope.js';
import { BrokerError, ErrorCode, InputError, toError } from '../../protocol/errors.js';
import type {
  Consumer,
  Delivery,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
} from '../contract.js';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  QUEUE_DEFAULTS,
  ackEach,
  deadLetterQueueOf,
} from '../contract.js';
import { topicMatches } from '../topic.js';

/** What the bus needs to know about the broker handle that owns a consumer or a queue. */
export interface Connection {
  /** True while the handle is open or closing: its deliveries may still be settled. */
  readonly isOpen: boolean;
  /** Reports a failure that has no caller to reject (a handler that threw). */
  reportError(error: Error): void;
  /** Publishes through the handle, with its checks (the queue must exist). */
  publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]>;
}

interface ResolvedQueueOptions {
  readonly durable: boolean;
  readonly maxDeliveries: number;
  readonly deadLetterQueue: string;
  readonly priorities: number;
  readonly leaseMs: number;
  readonly messageTtlMs: number | undefined;
  readonly temporary: boolean;
}

type MessageState = 'ready' | 'delayed' | 'leased' | 'gone';

interface StoredMessage {
  readonly id: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority: number;
  /** When the message entered this queue, for the TTL. */
  readonly enqueuedAt: number;
  /** Position within its priority level; a released message goes back to its old place. */
  seq: number;
  deliveries: number;
  lastError: string | undefined;
  state: MessageState;
  delayTimer: NodeJS.Timeout | undefined;
  ttlTimer: NodeJS.Timeout | undefined;
}

/** One delivery's claim on a message; settling a lease that is no longer live does nothing. */
interface Lease {
  readonly message: StoredMessage;
  readonly consumer: ConsumerCore;
  expiresAt: number;
  timer: NodeJS.Timeout | undefined;
  live: boolean;
}

function positiveInteger(queue: string, field: string, value: number | undefined, max = Infinity) {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new InputError(
      `queue "${queue}": ${field} must be an integer from 1 to ${max}, got ${String(value)}`,
    );
  }
}

function positiveNumber(queue: string, field: string, value: number | undefined) {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InputError(
      `queue "${queue}": ${field} must be a positive number, got ${String(value)}`,
    );
  }
}

function resolveOptions(name: string, options: QueueOptions): ResolvedQueueOptions {
  positiveInteger(name, 'maxDeliveries', options.maxDeliveries);
  positiveInteger(name, 'priorities', options.priorities, 255);
  positiveNumber(name, 'leaseMs', options.leaseMs);
  positiveNumber(name, 'messageTtlMs', options.messageTtlMs);
  return {
    durable: options.durable ?? QUEUE_DEFAULTS.durable,
    maxDeliveries: options.maxDeliveries ?? QUEUE_DEFAULTS.maxDeliveries,
    deadLetterQueue: deadLetterQueueOf(name, options),
    priorities: options.priorities ?? QUEUE_DEFAULTS.priorities,
    leaseMs: options.leaseMs ?? QUEUE_DEFAULTS.leaseMs,
    messageTtlMs: options.messageTtlMs,
    temporary: options.temporary ?? false,
  };
}

function timer(ms: number, fn: () => void): NodeJS.Timeout {
  // A memory broker must not keep a process alive on its own.
  return setTimeout(fn, Math.max(0, ms)).unref();
}

/** Messages of one priority level ordered by `seq`; removed entries are skipped lazily. */
class Level {
  #items: StoredMessage[] = [];
  #head = 0;

  insert(message: StoredMessage): void {
    const items = this.#items;
    const last = items[items.length - 1];
    if (items.length === this.#head || (last !== undefined && last.seq < message.seq)) {
      items.push(message);
      return;
    }
    let lo = this.#head;
    let hi = items.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (items[mid]!.seq < message.seq) lo = mid + 1;
      else hi = mid;
    }
    items.splice(lo, 0, message);
  }

  /** The first message still ready, removed from the level. */
  shift(): StoredMessage | undefined {
    const items = this.#items;
    while (this.#head < items.length) {
      const message = items[this.#head]!;
      items[this.#head] = undefined as unknown as StoredMessage;
      this.#head++;
      if (message.state === 'ready') {
        this.#compact();
        return message;
      }
    }
    this.#items = [];
    this.#head = 0;
    return undefined;
  }

  clear(): StoredMessage[] {
    const rest = this.#items.slice(this.#head).filter((m) => m.state === 'ready');
    this.#items = [];
    this.#head = 0;
    return rest;
  }

  #compact(): void {
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
  }
}

/**
 * A consumer's side of the deliveries: it holds at most `prefetch` live leases, and starts a
 * handler call for each lease it receives (calls run concurrently). Leases it has received but not
 * yet started are "pending"; cancelling hands those back.
 */
export class ConsumerCore {
  readonly tag: string;
  readonly queue: QueueCore;
  readonly connection: Connection;
  readonly #handler: DeliveryHandler;
  readonly #prefetch: number;
  readonly #held = new Set<Lease>();
  #pending: Lease[] = [];
  readonly #running = new Set<Promise<void>>();
  #active = true;
  #drainScheduled = false;
  #cancelled: Promise<void> | undefined;
  readonly #onCancelled: (() => void) | undefined;

  constructor(init: {
    tag: string;
    queue: QueueCore;
    connection: Connection;
    handler: DeliveryHandler;
    prefetch: number;
    onCancelled?: () => void;
  }) {
    this.tag = init.tag;
    this.queue = init.queue;
    this.connection = init.connection;
    this.#handler = init.handler;
    this.#prefetch = init.prefetch;
    this.#onCancelled = init.onCancelled;
  }

  get hasCapacity(): boolean {
    return this.#active && this.#held.size < this.#prefetch;
  }

  /** The public face handed to callers of consume/subscribe. */
  toConsumer(): Consumer {
    return { tag: this.tag, cancel: () => this.cancel(), ackAll: ackEach };
  }

  accept(lease: Lease): void {
    this.#held.add(lease);
    this.#pending.push(lease);
    if (!this.#drainScheduled) {
      this.#drainScheduled = true;
      queueMicrotask(() => this.#drain());
    }
  }

  /** Called by the queue when a lease ends, however it ended. */
  forget(lease: Lease): void {
    this.#held.delete(lease);
  }

  /** Stops deliveries, hands back pending leases and waits for handler calls in progress. */
  cancel(): Promise<void> {
    this.#cancelled ??= this.#cancel();
    return this.#cancelled;
  }

  /** A crash: stops at once without settling anything; pending leases will expire. */
  drop(): void {
    this.#active = false;
    this.#pending = [];
    this.queue.removeConsumer(this);
    this.#cancelled ??= Promise.resolve();
  }

  /** The queue was deleted: its leases are already dead. */
  detach(): void {
    this.#active = false;
    this.#pending = [];
  }

  async #cancel(): Promise<void> {
    this.#active = false;
    this.queue.removeConsumer(this);
    const pending = this.#pending;
    this.#pending = [];
    for (const lease of pending) this.queue.release(lease);
    await Promise.all(this.#running);
    this.#onCancelled?.();
  }

  #drain(): void {
    this.#drainScheduled = false;
    if (!this.#active) return;
    const pending = this.#pending;
    this.#pending = [];
    for (const lease of pending) {
      if (lease.live) this.#start(lease);
    }
  }

  #start(lease: Lease): void {
    const delivery = new MemoryDelivery(lease, this.queue);
    const call = (async () => {
      try {
        await this.#handler(delivery);
      } catch (thrown) {
        const error = toError(thrown);
        this.connection.reportError(
          new Error(
            `consumer "${this.tag}" on queue "${this.queue.name}": handler threw on message ` +
              `"${delivery.id}": ${error.message}`,
            { cause: error },
          ),
        );
        try {
          await delivery.nack({ error: error.message });
        } catch {
          // The handle closed meanwhile; the lease will expire.
        }
      }
    })();
    this.#running.add(call);
    void call.finally(() => this.#running.delete(call));
  }
}

class MemoryDelivery implements Delivery {
  readonly id: string;
  readonly queue: string;
  readonly body: Buffer;
  readonly headers: Headers;
  readonly priority: number;
  readonly deliveryCount: number;
  readonly #lease: Lease;
  readonly #queue: QueueCore;

  constructor(lease: Lease, queue: QueueCore) {
    const m = lease.message;
    this.id = m.id;
    this.queue = queue.name;
    this.body = Buffer.from(m.body);
    this.headers = { ...m.headers };
    this.priority = m.priority;
    this.deliveryCount = m.deliveries;
    this.#lease = lease;
    this.#queue = queue;
  }

  get leaseExpiresAt(): number {
    return this.#lease.expiresAt;
  }

  async ack(): Promise<void> {
    this.#assertOpen('ack');
    this.#queue.ack(this.#lease);
  }

  async ackWithPublish(queue: string, messages: readonly OutgoingMessage[]): Promise<void> {
    this.#assertOpen('ackWithPublish');
    await this.#lease.consumer.connection.publish(queue, messages);
    this.#queue.ack(this.#lease);
  }

  async nack(options?: { delayMs?: number; error?: string }): Promise<void> {
    this.#assertOpen('nack');
    this.#queue.nack(this.#lease, options?.delayMs ?? 0, options?.error);
  }

  async release(): Promise<void> {
    this.#assertOpen('release');
    this.#queue.release(this.#lease);
  }

  async deadLetter(reason: string): Promise<void> {
    this.#assertOpen('deadLetter');
    this.#queue.deadLetter(this.#lease, reason);
  }

  async extendLease(ms?: number): Promise<void> {
    this.#assertOpen('extendLease');
    this.#queue.extendLease(this.#lease, ms ?? this.#queue.options.leaseMs);
  }

  #assertOpen(operation: string): void {
    if (!this.#lease.consumer.connection.isOpen) {
      throw closedError(`${operation} of message "${this.id}" on queue "${this.queue}"`);
    }
  }
}

/** The error thrown when something is used through a closed handle. */
export function closedError(what: string): BrokerError {
  return new BrokerError(ErrorCode.BrokerState, `${what}: the memory broker handle is closed`);
}

/**
 * One queue: ready messages per priority level, delayed messages on timers, leased messages
 * on lease timers. A message moves ready → leased → (gone | ready | delayed | dead-lettered).
 */
export class QueueCore {
  readonly name: string;
  readonly options: ResolvedQueueOptions;
  /** The handle that declared a temporary queue. */
  readonly owner: Connection | undefined;
  readonly #bus: BusCore;
  readonly #levels: Level[];
  #readyCount = 0;
  readonly #delayed = new Set<StoredMessage>();
  readonly #leases = new Set<Lease>();
  #consumers: ConsumerCore[] = [];
  #nextConsumer = 0;
  #dispatchScheduled = false;
  #deleted = false;
  #paused = false;

  constructor(bus: BusCore, name: string, options: ResolvedQueueOptions, owner?: Connection) {
    this.#bus = bus;
    this.name = name;
    this.options = options;
    this.owner = owner;
    this.#levels = Array.from({ length: options.priorities }, () => new Level());
  }

  get deleted(): boolean {
    return this.#deleted;
  }

  /** Messages held in any state. */
  get size(): number {
    return this.#readyCount + this.#delayed.size + this.#leases.size;
  }

  publish(messages: readonly OutgoingMessage[]): string[] {
    const now = Date.now();
    const ids: string[] = [];
    for (const m of messages) {
      const id = m.id ?? randomUUID();
      const body = typeof m.body === 'string' ? Buffer.from(m.body, 'utf8') : Buffer.from(m.body);
      this.#enqueue(id, body, { ...m.headers }, m.priority ?? 0, m.delayMs ?? 0, now);
      ids.push(id);
    }
    return ids;
  }

  addConsumer(consumer: ConsumerCore): void {
    this.#consumers.push(consumer);
    this.#scheduleDispatch();
  }

  removeConsumer(consumer: ConsumerCore): void {
    this.#consumers = this.#consumers.filter((c) => c !== consumer);
  }

  stats(): QueueStats {
    const dead = this.#bus.queues.get(this.options.deadLetterQueue);
    return {
      queue: this.name,
      ready: this.#readyCount,
      delayed: this.#delayed.size,
      inFlight: this.#leases.size,
      deadLettered: dead === undefined || dead === this ? 0 : dead.size,
      consumers: this.#consumers.length,
      paused: this.#paused,
    };
  }

  /** Drops the ready and delayed messages; returns how many. Leased ones are left alone. */
  purge(): number {
    let purged = 0;
    for (const m of this.#delayed) {
      this.#discard(m);
      purged++;
    }
    this.#delayed.clear();
    for (const level of this.#levels) {
      for (const m of level.clear()) {
        this.#discard(m);
        purged++;
      }
    }
    this.#readyCount = 0;
    return purged;
  }

  /** Stops (true) or restarts (false) deliveries to consumers. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    if (!paused) this.#scheduleDispatch();
  }

  ack(lease: Lease): void {
    if (!this.#endLease(lease)) return;
    this.#discard(lease.message);
  }

  nack(lease: Lease, delayMs: number, error: string | undefined): void {
    if (!this.#endLease(lease)) return;
    const m = lease.message;
    if (error !== undefined) m.lastError = error;
    if (m.deliveries >= this.options.maxDeliveries) {
      this.#deadLetter(m, m.lastError ?? ErrorCode.MaxDeliveries);
    } else {
      this.#requeue(m, { keepPlace: false, delayMs });
    }
  }

  release(lease: Lease): void {
    if (!this.#endLease(lease)) return;
    const m = lease.message;
    m.deliveries = Math.max(0, m.deliveries - 1);
    this.#requeue(m, { keepPlace: true, delayMs: 0 });
  }

  deadLetter(lease: Lease, reason: string): void {
    if (!this.#endLease(lease)) return;
    this.#deadLetter(lease.message, reason);
  }

  extendLease(lease: Lease, ms: number): void {
    if (!lease.live) return;
    clearTimeout(lease.timer);
    lease.expiresAt = Date.now() + ms;
    lease.timer = timer(ms, () => this.#leaseExpired(lease));
  }

  /** Drops every message and consumer; called by the bus. */
  destroy(): void {
    this.#deleted = true;
    for (const lease of this.#leases) {
      lease.live = false;
      clearTimeout(lease.timer);
      lease.consumer.forget(lease);
      this.#discard(lease.message);
    }
    this.#leases.clear();
    for (const m of this.#delayed) this.#discard(m);
    this.#delayed.clear();
    for (const level of this.#levels) for (const m of level.clear()) this.#discard(m);
    this.#readyCount = 0;
    for (const c of this.#consumers) c.detach();
    this.#consumers = [];
  }

  #enqueue(
    id: string,
    body: Buffer,
    headers: Headers,
    priority: number,
    delayMs: number,
    now: number,
  ): void {
    const levels = this.options.priorities;
    const level = Math.min(
      levels - 1,
      Math.max(0, Math.floor(Number.isFinite(priority) ? priority : 0)),
    );
    const m: StoredMessage = {
      id,
      body,
      headers,
      priority: level,
      enqueuedAt: now,
      seq: 0,
      deliveries: 0,
      lastError: undefined,
      state: 'gone',
      delayTimer: undefined,
      ttlTimer: undefined,
    };
    const ttl = this.options.messageTtlMs;
    if (ttl !== undefined) m.ttlTimer = timer(ttl, () => this.#ttlElapsed(m));
    this.#requeue(m, { keepPlace: false, delayMs });
  }

  /** Puts a message back in the queue: ready (at its old place or the end) or delayed. */
  #requeue(m: StoredMessage, how: { keepPlace: boolean; delayMs: number }): void {
    if (this.#isExpired(m, Date.now())) {
      this.#deadLetter(m, ErrorCode.Expired);
      return;
    }
    if (how.delayMs > 0) {
      m.state = 'delayed';
      this.#delayed.add(m);
      m.delayTimer = timer(how.delayMs, () => {
        if (m.state !== 'delayed') return;
        this.#delayed.delete(m);
        m.delayTimer = undefined;
        this.#makeReady(m, false);
      });
      return;
    }
    this.#makeReady(m, how.keepPlace);
  }

  #makeReady(m: StoredMessage, keepPlace: boolean): void {
    if (!keepPlace) m.seq = this.#bus.nextSeq();
    m.state = 'ready';
    this.#levels[m.priority]!.insert(m);
    this.#readyCount++;
    this.#scheduleDispatch();
  }

  #isExpired(m: StoredMessage, now: number): boolean {
    const ttl = this.options.messageTtlMs;
    return ttl !== undefined && now - m.enqueuedAt >= ttl;
  }

  #ttlElapsed(m: StoredMessage): void {
    m.ttlTimer = undefined;
    if (m.state === 'ready') {
      m.state = 'gone';
      this.#readyCount--;
      this.#deadLetter(m, ErrorCode.Expired);
    } else if (m.state === 'delayed') {
      this.#delayed.delete(m);
      this.#deadLetter(m, ErrorCode.Expired);
    }
    // A leased message is checked when it comes back.
  }

  #discard(m: StoredMessage): void {
    m.state = 'gone';
    clearTimeout(m.delayTimer);
    clearTimeout(m.ttlTimer);
    m.delayTimer = undefined;
    m.ttlTimer = undefined;
  }

  #deadLetter(m: StoredMessage, reason: string): void {
    this.#discard(m);
    if (this.#deleted) return;
    const headers: Headers = {
      ...m.headers,
      [DEAD_LETTER_REASON_HEADER]: reason,
      [DEAD_LETTER_QUEUE_HEADER]: this.name,
      [DEAD_LETTER_DELIVERIES_HEADER]: m.deliveries,
    };
    const dlq = this.#bus.declare(
      this.options.deadLetterQueue,
      { durable: this.options.durable, temporary: this.options.temporary },
      this.owner,
    );
    dlq.#enqueue(m.id, m.body, headers, m.priority, 0, Date.now());
  }

  /** Ends a live lease; false when it had already ended (a stale or repeated settle). */
  #endLease(lease: Lease): boolean {
    if (!lease.live) return false;
    lease.live = false;
    clearTimeout(lease.timer);
    lease.timer = undefined;
    this.#leases.delete(lease);
    lease.consumer.forget(lease);
    this.#scheduleDispatch();
    return true;
  }

  #leaseExpired(lease: Lease): void {
    if (!this.#endLease(lease)) return;
    const m = lease.message;
    if (m.deliveries >= this.options.maxDeliveries) {
      this.#deadLetter(m, m.lastError ?? ErrorCode.MaxDeliveries);
    } else {
      this.#requeue(m, { keepPlace: true, delayMs: 0 });
    }
  }

  /** Deliveries are always pushed from a later macrotask, never inside publish or settle. */
  #scheduleDispatch(): void {
    if (this.#dispatchScheduled || this.#deleted) return;
    this.#dispatchScheduled = true;
    setImmediate(() => {
      this.#dispatchScheduled = false;
      this.#dispatch();
    });
  }

  #dispatch(): void {
    while (!this.#deleted && !this.#paused && this.#readyCount > 0) {
      const consumer = this.#pickConsumer();
      if (consumer === undefined) return;
      const m = this.#shiftReady();
      if (m === undefined) return;
      this.#readyCount--;
      const now = Date.now();
      if (this.#isExpired(m, now)) {
        this.#deadLetter(m, ErrorCode.Expired);
        continue;
      }
      m.state = 'leased';
      m.deliveries++;
      const leaseMs = this.options.leaseMs;
      const lease: Lease = {
        message: m,
        consumer,
        expiresAt: now + leaseMs,
        timer: undefined,
        live: true,
      };
      lease.timer = timer(leaseMs, () => this.#leaseExpired(lease));
      this.#leases.add(lease);
      consumer.accept(lease);
    }
  }

  /** Round robin over consumers with spare prefetch. */
  #pickConsumer(): ConsumerCore | undefined {
    const n = this.#consumers.length;
    for (let i = 0; i < n; i++) {
      const index = (this.#nextConsumer + i) % n;
      const c = this.#consumers[index]!;
      if (c.hasCapacity) {
        this.#nextConsumer = (index + 1) % n;
        return c;
      }
    }
    return undefined;
  }

  #shiftReady(): StoredMessage | undefined {
    for (let p = this.#levels.length - 1; p >= 0; p--) {
      const m = this.#levels[p]!.shift();
      if (m !== undefined) return m;
    }
    return undefined;
  }
}

/** The shared state of a bus: queues and topic bindings. */
export class BusCore {
  readonly queues = new Map<string, QueueCore>();
  /** Subscription queue name → topic pattern. */
  readonly bindings = new Map<string, string>();
  #seq = 0;

  nextSeq(): number {
    return ++this.#seq;
  }

  /** Returns the queue, creating it with `options` if missing (an existing policy is kept). */
  declare(name: string, options: QueueOptions, owner: Connection | undefined): QueueCore {
    const existing = this.queues.get(name);
    if (existing !== undefined) return existing;
    const resolved = resolveOptions(name, options);
    const queue = new QueueCore(this, name, resolved, resolved.temporary ? owner : undefined);
    this.queues.set(name, queue);
    return queue;
  }

  delete(name: string): void {
    const queue = this.queues.get(name);
    if (queue === undefined) return;
    this.queues.delete(name);
    this.bindings.delete(name);
    queue.destroy();
    // The dead-letter queue of a temporary queue was declared on its behalf: it goes too.
    const dead = this.queues.get(queue.options.deadLetterQueue);
    if (queue.owner !== undefined && dead?.owner === queue.owner) this.delete(dead.name);
  }

  bind(queue: string, pattern: string): void {
    this.bindings.set(queue, pattern);
  }

  /** Copies the messages to every subscription queue bound with a matching pattern. */
  publishTopic(topic: string, messages: readonly OutgoingMessage[]): void {
    // One id per message, whichever subscriptions receive it.
    const stamped = messages.map((m) => (m.id === undefined ? { ...m, id: randomUUID() } : m));
    for (const [name, pattern] of this.bindings) {
      if (!topicMatches(pattern, topic)) continue;
      this.queues.get(name)?.publish(stamped);
    }
  }
}

let coreOf: (bus: MemoryBus) => BusCore;

/**
 * The in-process state that memory broker handles share: queues, messages, consumers and topic
 * bindings. Several handles on one bus behave like several clients of one broker.
 */
export class MemoryBus {
  readonly #core = new BusCore();

  static {
    coreOf = (bus) => bus.#core;
  }
}

/** The shared state behind a bus (for the broker handle only). */
export function busCore(bus: MemoryBus): BusCore {
  return coreOf(bus);
}

const sharedBuses = new Map<string, MemoryBus>();

/** The process-wide bus called `name`, created on first use (used by `memory://NAME` URLs). */
export function sharedMemoryBus(name = 'default'): MemoryBus {
  let bus = sharedBuses.get(name);
  if (bus === undefined) {
    bus = new MemoryBus();
    sharedBuses.set(name, bus);
  }
  return bus;
}
