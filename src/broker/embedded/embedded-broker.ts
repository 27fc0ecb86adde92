/**
 * The embedded broker: a durable queue in one SQLite file (WAL) shared by the processes of one
 * machine. Design, in short (details in docs/brokers/embedded.md):
 *
 * - One connection per handle; every statement prepared once (store.ts).
 * - Group commit (group-commit.ts): writes issued in one event-loop turn share ONE
 *   `BEGIN IMMEDIATE` transaction; each promise resolves after that commit. Publish and ack are
 *   therefore durable when they resolve, at a cost of one transaction per turn, not per call.
 * - A message row is in exactly one of three partial indexes (ready by priority then seq,
 *   delayed by due time, leased by lease end). Leasing is one `UPDATE ... RETURNING`; expired
 *   leases and due delayed messages are found by index range, never by scanning.
 * - Leases carry a random token: settling with a stale token changes nothing (see
 *   EmbeddedDelivery for what each call does then).
 * - Wake-ups (wake.ts): inotify on the database directory + `PRAGMA data_version`, a due-time
 *   timer per consumer, and a slow safety poll. An idle consumer does no queries.
 * - Liveness: a `handles` row per handle with a heartbeat every second; consumers are counted
 *   while their handle's heartbeat is fresh; temporary queues and subscriptions of a dead handle
 *   (pid gone on this host, or heartbeat a minute old) are reaped by any other handle, which
 *   also gives back the dead handle's leases at once, as RabbitMQ requeues the deliveries of a
 *   dropped connection: each handle has a number, and its lease tokens lie in that number's range.
 * - Pausing a queue is a flag in its row, read by every lease transaction: consumers of every
 *   process stop taking from it at their next lease, and resume on the commit that clears it.
 */
import { randomUUID } from 'node:crypto';
import { BrokerEventSource } from '../events.js';
import { existsSync, mkdirSync, readlinkSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import Database from 'better-sqlite3';
import {
  BrokerError,
  ErrorCode,
  InputError,
  NotFoundError,
  toError,
} from '../../protocol/errors.js';
// qtune's name rules for the names a queue is made or written under (src/protocol/names.ts).
import {
  assertName as assertValidName,
  MAX_BROKER_QUEUE_NAME_BYTES,
} from '../../protocol/names.js';

const checkName = (kind: string, name: string) =>
  assertValidName(kind, name, { maxBytes: MAX_BROKER_QUEUE_NAME_BYTES });
import type {
  Broker,
  BrokerCapabilities,
  Consumer,
  ConsumeOptions,
  DeliveryHandler,
  OutgoingMessage,
  QueueOptions,
  QueueStats,
  SubscribeOptions,
} from '../contract.js';
import { QUEUE_DEFAULTS } from '../contract.js';
import { checkTopicPattern, queueMismatch, temporaryOfAnother } from '../checks.js';
import { Checkpointer } from './checkpointer.js';
import { EmbeddedConsumer, type ConsumerHost } from './consumer.js';
import { GroupCommit, isBusy } from './group-commit.js';
import { LEASE_TOKEN_SPAN, applyPragmas, migrate } from './schema.js';
import { QueueStore, type HandleRow, type PreparedMessage } from './store.js';
import { Waker } from './wake.js';

/** Options of {@link EmbeddedBroker.open}. */
export interface EmbeddedBrokerOptions {
  /** The SQLite file; its parent directory is created if missing. */
  path: string;
  /**
   * Create the file (and its directory) when missing. With false, a missing file rejects with
   * a NotFoundError ('broker file') and nothing is created: for commands that only read
   * (default: true).
   */
  create?: boolean;
  /** Lease of queues this handle declares without a `leaseMs` of their own (default: 30000). */
  leaseMs?: number;
  /** Safety poll period in ms, for wake-ups the file watcher missed (default: 1000). */
  pollMs?: number;
  /**
   * `normal` survives process crashes but may lose the last commits on power loss; `full` syncs
   * every commit to disk (default: 'normal').
   */
  synchronous?: 'normal' | 'full';
  /** How long a write waits for another process's transaction, in ms (default: 5000). */
  busyTimeoutMs?: number;
  /**
   * Checkpoint the WAL on a background thread instead of in commits (default: true where the
   * built thread module is present; see docs/brokers/embedded.md).
   */
  checkpointThread?: boolean;
}

/** Heartbeat period of a handle. */
const HEARTBEAT_MS = 1_000;
/** A consumer counts as live while its handle's heartbeat is younger than this. */
const CONSUMER_FRESH_MS = 4_000;
/**
 * A handle whose process is gone from this host is reaped at once when it ran in this pid
 * namespace, and otherwise once its heartbeat is this old (a guard against a same-named host in
 * another pid namespace, or a system without /proc, where the pid may mean nothing).
 */
const DEAD_PID_STALE_MS = 3 * HEARTBEAT_MS;
/** A handle whose heartbeat is older than this is dead even when its pid still exists. */
const HANDLE_STALE_MS = 60_000;

const CAPABILITIES: BrokerCapabilities = {
  durable: true,
  multiProcess: true,
  listQueues: true,
  topics: true,
  purge: true,
  pause: true,
};

/** Reason recorded on messages whose lease was given back because their handle died. */
const DEAD_HANDLE_REASON = "lease given back: the consumer's process died";
/** Reason recorded on messages still leased by a handle when it closed. */
const CLOSED_HANDLE_REASON = 'lease given back: the consumer closed without settling';

let ownPidNamespace: string | null | undefined;

/** This process's pid namespace (`pid:[4026531836]`), or null where /proc does not tell. */
function pidNamespace(): string | null {
  if (ownPidNamespace === undefined) {
    try {
      ownPidNamespace = readlinkSync('/proc/self/ns/pid');
    } catch {
      ownPidNamespace = null;
    }
  }
  return ownPidNamespace;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

function assertName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > 1024) {
    throw new InputError(`${what} name ${JSON.stringify(name)}: must be 1 to 1024 characters`);
  }
}

function assertPositiveInt(where: string, value: number | undefined, min = 1): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < min) {
    throw new InputError(`${where}: must be an integer >= ${min}, got ${String(value)}`);
  }
}

function prepare(queue: string, messages: readonly OutgoingMessage[]): PreparedMessage[] {
  if (!Array.isArray(messages)) {
    throw new InputError(`publish to "${queue}": messages must be an array`);
  }
  return messages.map((m, i) => {
    let body: Buffer;
    if (Buffer.isBuffer(m.body)) body = m.body;
    else if (typeof m.body === 'string') body = Buffer.from(m.body, 'utf8');
    else
      throw new InputError(`publish to "${queue}": message ${i} body must be a Buffer or string`);
    const headers =
      m.headers && Object.keys(m.headers).length > 0 ? JSON.stringify(m.headers) : null;
    return {
      id: m.id ?? randomUUID(),
      body,
      priority: m.priority ?? 0,
      delayMs: m.delayMs !== undefined && m.delayMs > 0 ? m.delayMs : 0,
      headers,
    };
  });
}

/**
 * qtune's default broker: durable queues in one SQLite file that several processes on this
 * machine share. Open with {@link EmbeddedBroker.open}.
 */
export class EmbeddedBroker extends BrokerEventSource implements Broker {
  readonly kind = 'embedded';
  readonly capabilities: BrokerCapabilities = CAPABILITIES;
  /** Absolute path of the database file. */
  readonly path: string;
  readonly #db: Database.Database;
  readonly #store: QueueStore;
  readonly #commit: GroupCommit;
  readonly #waker: Waker;
  readonly #id = randomUUID();
  readonly #host: ConsumerHost;
  readonly #consumers = new Map<string, Set<EmbeddedConsumer>>();
  readonly #heartbeat: NodeJS.Timeout;
  readonly #dataVersion: Database.Statement<[], number>;
  #checkpointer: Checkpointer | undefined;
  #consumerCount = 0;
  #subscriptions = 0;
  /** This handle's number (see LEASE_TOKEN_SPAN), set at registration. */
  #num = 0;
  #tokenSeq = 0;
  #closing = false;
  #closed = false;
  #closePromise: Promise<void> | null = null;

  /** Opens (creating if needed) the database at `options.path`. */
  static async open(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    assertName('database path', options?.path);
    assertPositiveInt('embedded broker option leaseMs', options.leaseMs);
    assertPositiveInt('embedded broker option pollMs', options.pollMs);
    const path = resolve(options.path);
    const create = options.create ?? true;
    if (!create && !existsSync(path)) throw new NotFoundError('broker file', path);
    const busyTimeoutMs = options.busyTimeoutMs ?? 5_000;
    let db: Database.Database | undefined;
    // Processes creating the same new file at once can get SQLITE_BUSY without waiting (SQLite
    // refuses to wait where waiting could deadlock, e.g. while switching to WAL): retry.
    const deadline = Date.now() + Math.max(busyTimeoutMs, 1_000);
    for (let attempt = 1; ; attempt++) {
      try {
        if (create) mkdirSync(dirname(path), { recursive: true });
        db = new Database(path, { timeout: busyTimeoutMs, fileMustExist: !create });
        applyPragmas(db, { synchronous: options.synchronous ?? 'normal', busyTimeoutMs });
        migrate(db);
        break;
      } catch (err) {
        db?.close();
        db = undefined;
        if (isBusy(err) && Date.now() < deadline) {
          await sleep(Math.min(10 * attempt, 100) * (0.5 + Math.random()));
          continue;
        }
        if (err instanceof BrokerError) throw err;
        if (!create && !existsSync(path)) throw new NotFoundError('broker file', path);
        throw new BrokerError(
          ErrorCode.BrokerUnavailable,
          `embedded broker "${path}": cannot open: ${toError(err).message}`,
          { cause: err },
        );
      }
    }
    const broker = new EmbeddedBroker(db, path, options);
    try {
      await broker.#start();
    } catch (err) {
      broker.#shutdown();
      throw new BrokerError(
        ErrorCode.BrokerUnavailable,
        `embedded broker "${path}": cannot register this handle: ${toError(err).message}`,
        { cause: err },
      );
    }
    return broker;
  }

  private constructor(db: Database.Database, path: string, options: EmbeddedBrokerOptions) {
    super();
    this.path = path;
    this.#db = db;
    this.#store = new QueueStore(db, options.leaseMs ?? QUEUE_DEFAULTS.leaseMs);
    this.#commit = new GroupCommit(
      db,
      (err) => this.#reportError(err),
      options.busyTimeoutMs ?? 5_000,
    );
    this.#dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    if (options.checkpointThread !== false) {
      this.#checkpointer = Checkpointer.start(db, path, options.synchronous ?? 'normal', (err) =>
        this.#reportError(err),
      );
    }
    this.#host = {
      store: this.#store,
      commit: this.#commit,
      localChange: (queue) => this.#localChange(queue),
      reportError: (err) => this.#reportError(err),
      unregister: (consumer) => this.#unregister(consumer),
      nextToken: () => {
        this.#tokenSeq = (this.#tokenSeq + 1) % LEASE_TOKEN_SPAN;
        return this.#num * LEASE_TOKEN_SPAN + this.#tokenSeq;
      },
      prepareInsert: (queue, messages) => {
        assertName('queue', queue);
        const prepared = prepare(queue, messages);
        return (now) => {
          // Per-delivery hot path: skip the declaring write when the policy is already known.
          const policy =
            this.#store.cachedPolicy(queue) ??
            this.#store.ensureQueue(queue, undefined, this.#id, now);
          this.#store.insert(policy, prepared, now);
        };
      },
    };
    this.#waker = new Waker({
      path,
      pollMs: options.pollMs ?? 1_000,
      dataVersion: () => this.#dataVersion.get()!,
      onExternalChange: () => this.#externalChange(),
      onTick: () => this.#tick(),
      onError: (err) => this.#reportError(err),
    });
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  async #start(): Promise<void> {
    const pid = process.pid;
    const host = hostname();
    const ns = pidNamespace();
    this.#num = await this.#commit.run(1, (now) =>
      this.#store.registerHandle(this.#id, pid, host, ns, now),
    );
    this.#waker.start();
    this.#waker.setReferenced(false);
    this.#reap();
    setImmediate(() => {
      if (!this.#closing) this.emitStatus('connected');
    });
  }

  async declareQueue(name: string, options?: QueueOptions): Promise<void> {
    assertName('queue', name);
    checkName('queue', name);
    this.#assertOpen();
    assertPositiveInt(`queue "${name}": maxDeliveries`, options?.maxDeliveries);
    assertPositiveInt(`queue "${name}": priorities`, options?.priorities);
    assertPositiveInt(`queue "${name}": leaseMs`, options?.leaseMs);
    assertPositiveInt(`queue "${name}": messageTtlMs`, options?.messageTtlMs);
    if (options?.deadLetterQueue !== undefined)
      checkName('dead-letter queue', options.deadLetterQueue);
    const policy = await this.#commit.run(1, (now) => {
      this.#store.forget(name);
      return this.#store.ensureQueue(name, options, this.#id, now);
    });
    // An existing queue keeps its policy: a declaration that disagrees with it is refused.
    const mismatch =
      queueMismatch(name, { ...policy, temporary: policy.owner !== null }, options) ??
      (options?.temporary === true && policy.owner !== this.#id
        ? temporaryOfAnother(name)
        : undefined);
    if (mismatch) throw mismatch;
  }

  async deleteQueue(name: string): Promise<void> {
    assertName('queue', name);
    this.#assertOpen();
    await this.#commit.run(1, () => this.#store.deleteQueue(name));
  }

  async purgeQueue(name: string): Promise<number> {
    assertName('queue', name);
    this.#assertOpen();
    const result = await this.#commit.run(1, (now) => {
      if (!this.#store.queueExists(name)) return null;
      const deadLettered: string[] = [];
      const purged = this.#store.purge(this.#store.policy(name), now, deadLettered);
      return { purged, deadLettered };
    });
    if (result === null) throw new NotFoundError('queue', name);
    for (const q of new Set(result.deadLettered)) this.#localChange(q);
    return result.purged;
  }

  async pauseQueue(name: string): Promise<void> {
    await this.#setPaused(name, true);
  }

  async resumeQueue(name: string): Promise<void> {
    await this.#setPaused(name, false);
    // Consumers in other processes wake on the commit; the ones of this handle are told.
    this.#localChange(name);
  }

  async #setPaused(name: string, paused: boolean): Promise<void> {
    assertName('queue', name);
    this.#assertOpen();
    const found = await this.#commit.run(1, () => this.#store.setPaused(name, paused));
    if (!found) throw new NotFoundError('queue', name);
  }

  async publish(queue: string, messages: readonly OutgoingMessage[]): Promise<string[]> {
    assertName('queue', queue);
    checkName('queue', queue);
    this.#assertOpen();
    const prepared = prepare(queue, messages);
    await this.#commit.run(prepared.length, (now) => {
      const policy = this.#store.ensureQueue(queue, undefined, this.#id, now);
      this.#store.insert(policy, prepared, now);
    });
    this.#localChange(queue);
    return prepared.map((m) => m.id);
  }

  /**
   * Copies each message into the queue of every subscription whose pattern matches `topic`, in
   * one transaction. With no matching subscription the messages are discarded (AMQP topic
   * exchange semantics).
   */
  async publishTopic(topic: string, messages: readonly OutgoingMessage[]): Promise<void> {
    assertName('topic', topic);
    this.#assertOpen();
    const prepared = prepare(`topic ${topic}`, messages);
    const routed = await this.#commit.run(prepared.length, (now) =>
      this.#store.route(topic, prepared, now),
    );
    for (const queue of routed) this.#localChange(queue);
  }

  async consume(
    queue: string,
    handler: DeliveryHandler,
    options?: ConsumeOptions,
  ): Promise<Consumer> {
    assertName('queue', queue);
    this.#assertOpen(true);
    if (typeof handler !== 'function') {
      throw new InputError(`consume "${queue}": handler must be a function`);
    }
    assertPositiveInt(`consume "${queue}": prefetch`, options?.prefetch);
    const tag = options?.tag ?? `ctag-${randomUUID()}`;
    const consumer = new EmbeddedConsumer(
      this.#host,
      queue,
      handler,
      options?.prefetch ?? 10,
      tag,
      null,
    );
    consumer.rowId = await this.#commit.run(1, (now) => {
      this.#store.ensureQueue(queue, undefined, this.#id, now);
      return this.#store.addConsumer(this.#id, queue, tag);
    });
    return this.#activate(consumer);
  }

  async subscribe(
    pattern: string,
    handler: DeliveryHandler,
    options?: SubscribeOptions,
  ): Promise<Consumer> {
    checkTopicPattern(pattern);
    this.#assertOpen(true);
    if (typeof handler !== 'function') {
      throw new InputError(`subscribe "${pattern}": handler must be a function`);
    }
    assertPositiveInt(`subscribe "${pattern}": prefetch`, options?.prefetch);
    const queue = `qtune.sub.${this.#id.slice(0, 8)}.${++this.#subscriptions}`;
    const tag = `sub-${randomUUID()}`;
    const consumer = new EmbeddedConsumer(
      this.#host,
      queue,
      handler,
      options?.prefetch ?? 100,
      tag,
      pattern,
    );
    consumer.rowId = await this.#commit.run(1, (now) => {
      this.#store.ensureQueue(queue, { temporary: true }, this.#id, now);
      this.#store.bind(queue, pattern, this.#id);
      return this.#store.addConsumer(this.#id, queue, tag);
    });
    return this.#activate(consumer);
  }

  async stats(queue: string): Promise<QueueStats> {
    assertName('queue', queue);
    this.#assertOpen();
    // Let this handle's pending writes commit first, and expire messages past their TTL.
    const policy = await this.#commit.run(0, (now) => {
      this.#store.forget(queue);
      const p = this.#store.policy(queue);
      if (p.messageTtlMs !== null && this.#store.probeTtl(now)) this.#store.expireTtl(now);
      return p;
    });
    this.#assertOpen();
    const now = Date.now();
    const c = this.#store.counts(queue, now, now - CONSUMER_FRESH_MS, this.#id);
    let local = 0;
    for (const consumer of this.#consumers.get(queue) ?? []) if (!consumer.cancelled) local++;
    return {
      queue,
      ready: c.ready + c.delayed_due + c.leased_expired,
      delayed: c.delayed - c.delayed_due,
      inFlight: c.leased - c.leased_expired,
      deadLettered: this.#store.countAll(policy.deadLetterQueue),
      consumers: c.consumers + local,
      paused: c.paused === 1,
    };
  }

  async listQueues(): Promise<string[]> {
    this.#assertOpen();
    await this.#commit.run(0, () => undefined);
    this.#assertOpen();
    return this.#store.listQueues();
  }

  /**
   * Cancels every consumer (releasing deliveries not yet handed out), waits for handler calls in
   * progress (their settles still work meanwhile), deletes this handle's temporary queues and
   * subscriptions, then closes the database. Idempotent.
   */
  close(): Promise<void> {
    if (this.#closePromise) return this.#closePromise;
    this.#closing = true;
    this.#closePromise = (async () => {
      const all = [...this.#consumers.values()].flatMap((set) => [...set]);
      await Promise.allSettled(all.map((c) => c.cancel()));
      try {
        await this.#commit.run(1, (now) =>
          this.#store.dropHandle(this.#id, now, CLOSED_HANDLE_REASON),
        );
      } catch (err) {
        this.#reportError(toError(err));
      }
      await this.#commit.idle();
      await this.#checkpointer?.stop();
      this.#shutdown();
      this.emitStatus('closed');
    })();
    return this.#closePromise;
  }

  // ---- internals -------------------------------------------------------------------------------

  /** Stops timers and the watcher and closes the database. */
  #shutdown(): void {
    this.#closing = true;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#waker.stop();
    this.#commit.close();
    void this.#checkpointer?.stop();
    try {
      this.#db.close();
    } catch (err) {
      this.#reportError(toError(err));
    }
  }

  #assertOpen(forNewConsumer = false): void {
    if (this.#closed || (forNewConsumer && this.#closing)) {
      throw new BrokerError(ErrorCode.BrokerState, `embedded broker "${this.path}" is closed`);
    }
  }

  #activate(consumer: EmbeddedConsumer): Consumer {
    if (this.#closing) {
      // close() began while the consumer was being registered.
      void consumer.cancel();
      throw new BrokerError(ErrorCode.BrokerState, `embedded broker "${this.path}" is closed`);
    }
    let set = this.#consumers.get(consumer.queue);
    if (!set) this.#consumers.set(consumer.queue, (set = new Set()));
    set.add(consumer);
    this.#consumerCount++;
    this.#waker.setReferenced(true);
    consumer.start();
    return consumer;
  }

  async #unregister(consumer: EmbeddedConsumer): Promise<void> {
    const set = this.#consumers.get(consumer.queue);
    if (set?.delete(consumer)) {
      this.#consumerCount--;
      if (set.size === 0) this.#consumers.delete(consumer.queue);
      if (this.#consumerCount === 0) this.#waker.setReferenced(false);
    }
    if (this.#closed) return;
    const rowId = consumer.rowId;
    const subscription = consumer.subscription !== null;
    try {
      await this.#commit.run(1, () => {
        this.#store.removeConsumer(rowId);
        if (subscription) this.#store.dropTemporaryQueue(consumer.queue);
      });
    } catch (err) {
      this.#reportError(toError(err));
    }
  }

  #localChange(queue: string): void {
    const set = this.#consumers.get(queue);
    if (set) for (const c of set) c.localChange();
  }

  #externalChange(): void {
    if (this.#consumerCount === 0) return;
    const now = Date.now();
    for (const set of this.#consumers.values()) for (const c of set) c.externalChange(now);
  }

  #tick(): void {
    if (this.#closed) return;
    this.#externalChange();
    const now = Date.now();
    try {
      if (this.#store.probeTtl(now)) {
        this.#commit.submit({
          weight: 1_000,
          exec: (t) => this.#store.expireTtl(t),
          done: (dlqs: string[]) => {
            for (const q of new Set(dlqs)) this.#localChange(q);
          },
          fail: (err) => this.#reportError(err),
        });
      }
    } catch (err) {
      this.#reportError(toError(err));
    }
  }

  #beat(): void {
    if (this.#closing) return;
    const pid = process.pid;
    const host = hostname();
    const num = this.#num;
    this.#commit.submit({
      weight: 1,
      exec: (now) => {
        // Re-register if another handle took us for dead (e.g. the event loop was blocked). Its
        // leases were given back then; settles of those deliveries are stale no-ops.
        if (!this.#store.heartbeat(this.#id, now)) {
          this.#store.registerHandle(this.#id, pid, host, pidNamespace(), now, num);
        }
      },
      done: () => undefined,
      fail: (err) => this.#reportError(err),
    });
    this.#reap();
  }

  /**
   * Drops handles whose process is gone from this host (at once when it ran in this pid
   * namespace, else once it missed a few heartbeats), or whose heartbeat is a minute old: a
   * blocked event loop must not cost a live process its temporary queues. Their leases go back
   * to their queues.
   */
  #reap(): void {
    let others: HandleRow[];
    try {
      others = this.#store.otherHandles(this.#id);
    } catch (err) {
      this.#reportError(toError(err));
      return;
    }
    const host = hostname();
    const ns = pidNamespace();
    const now = Date.now();
    const dead = others.filter((h) => {
      const age = now - h.heartbeat_at;
      if (age > HANDLE_STALE_MS) return true;
      if (h.host !== host || pidAlive(h.pid)) return false;
      return (ns !== null && h.pid_ns === ns) || age > DEAD_PID_STALE_MS;
    });
    if (dead.length === 0) return;
    this.#commit.submit({
      weight: dead.length,
      exec: (t) => {
        const touched: string[] = [];
        for (const h of dead) {
          touched.push(...this.#store.dropHandle(h.id, t, DEAD_HANDLE_REASON, h.heartbeat_at));
        }
        return touched;
      },
      done: (touched: string[]) => {
        for (const q of new Set(touched)) this.#localChange(q);
      },
      fail: (err) => this.#reportError(err),
    });
  }

  #reportError(error: Error): void {
    this.emitError(error);
  }
}
