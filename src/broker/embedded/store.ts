import type Database from 'better-sqlite3';
import type { Headers } from '../../protocol/envelope.js';
import { BrokerError, ErrorCode, toError } from '../../protocol/errors.js';
import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
  type QueueOptions,
} from '../contract.js';
import { topicMatches } from '../topic.js';
import {
  FIRST_HANDLE_NUMBER,
  INLINE_BODY_BYTES,
  LEASE_TOKEN_SPAN,
  MessageState,
} from './schema.js';

const EMPTY = Buffer.alloc(0);

/** A queue's policy as stored in the `queues` table. */
export interface QueuePolicy {
  readonly name: string;
  readonly maxDeliveries: number;
  readonly deadLetterQueue: string;
  readonly priorities: number;
  readonly leaseMs: number;
  readonly messageTtlMs: number | null;
  readonly durable: boolean;
  readonly owner: string | null;
}

/** A message ready to insert (validated and encoded before it reaches the write transaction). */
export interface PreparedMessage {
  readonly id: string;
  readonly body: Buffer;
  readonly priority: number;
  readonly delayMs: number;
  readonly headers: string | null;
}

/** A row leased to a consumer. */
export interface LeasedRow {
  seq: number;
  id: string;
  priority: number;
  deliveries: number;
  created_at: number;
  expires_at: number | null;
  headers: string | null;
  /** Null in the row when the body is stored apart; filled in before the row is returned. */
  body: Buffer;
}

export interface LeaseResult {
  rows: LeasedRow[];
  /** Epoch ms when the lease of every row ends. */
  leaseUntil: number;
  /** Next time something in the queue becomes due (a delayed message, a lease end), if any. */
  nextDueAt: number | null;
  /** Dead-letter queues that received messages during this operation. */
  deadLettered: string[];
  /** Whether due delayed messages and expired leases were swept in. */
  swept: boolean;
  /** Messages whose body could not be read (a damaged file): dead-lettered, not delivered. */
  unreadable: UnreadableMessage[];
}

export interface RawCounts {
  /** 1 when the queue is paused, 0 otherwise (also for a queue not declared). */
  paused: number;
  ready: number;
  delayed_due: number;
  delayed: number;
  leased_expired: number;
  leased: number;
  consumers: number;
}

interface QueueRow {
  name: string;
  max_deliveries: number;
  dead_letter_queue: string;
  priorities: number;
  lease_ms: number;
  message_ttl_ms: number | null;
  durable: number;
  owner: string | null;
}

interface SettleRow {
  queue: string;
  deliveries: number;
  headers: string | null;
}

interface DueRow extends SettleRow {
  seq: number;
}

export interface HandleRow {
  id: string;
  pid: number;
  host: string;
  heartbeat_at: number;
  /** Null for a handle registered by a version without handle numbers. */
  num: number | null;
  pid_ns: string | null;
}

/** Outcome of settling a delivery: `false` when the lease token no longer matches (stale). */
export interface SettleOutcome {
  applied: boolean;
  /** Queue that now holds the message for another delivery (nack, release). */
  requeued?: string;
  /** Dead-letter queue that received the message. */
  deadLettered?: string;
}

/** Reason recorded on a message whose body could not be read back from the file. */
export const BODY_UNREADABLE = 'BODY_UNREADABLE';

/** Where an error about a damaged broker file sends the reader. */
export const DOCTOR_HINT = 'check the file with "qtune doctor" (PRAGMA integrity_check)';

/** Whether `err` is SQLite saying the file is damaged. */
export function isCorrupt(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return (
    typeof code === 'string' && (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB')
  );
}

/** A message whose body was unreadable, dead-lettered by a lease. */
export interface UnreadableMessage {
  id: string;
  /** SQLite's error. */
  error: string;
}

const MAX_LEASE_ROUNDS = 8;
const TTL_SWEEP_BATCH = 1_000;

function policyFromRow(row: QueueRow): QueuePolicy {
  return {
    name: row.name,
    maxDeliveries: row.max_deliveries,
    deadLetterQueue: row.dead_letter_queue,
    priorities: row.priorities,
    leaseMs: row.lease_ms,
    messageTtlMs: row.message_ttl_ms,
    durable: row.durable !== 0,
    owner: row.owner,
  };
}

/** Clamps a requested priority into `[0, priorities - 1]`. */
export function clampPriority(priority: number, priorities: number): number {
  if (!Number.isFinite(priority) || priority <= 0) return 0;
  return Math.min(Math.floor(priority), priorities - 1);
}

/** The lease statement's columns, in RETURNING order. */
type LeasedColumns = [
  seq: number,
  id: string,
  priority: number,
  deliveries: number,
  created_at: number,
  expires_at: number | null,
  headers: string | null,
  body: Buffer | null,
];

function leasedRow(c: LeasedColumns): LeasedRow {
  return {
    seq: c[0],
    id: c[1],
    priority: c[2],
    deliveries: c[3],
    created_at: c[4],
    expires_at: c[5],
    headers: c[6],
    body: c[7] as Buffer,
  };
}

function byDeliveryOrder(a: LeasedRow, b: LeasedRow): number {
  return b.priority - a.priority || a.seq - b.seq;
}

/**
 * Synchronous SQL operations on one connection, with every statement prepared once. Methods that
 * write expect to run inside the caller's write transaction (see GroupCommit); they touch no
 * JavaScript state except the policy cache, so a rolled-back batch can be re-run.
 */
export class QueueStore {
  readonly #policies = new Map<string, QueuePolicy>();
  readonly #defaultLeaseMs: number;
  readonly #s;

  constructor(db: Database.Database, defaultLeaseMs: number) {
    this.#defaultLeaseMs = defaultLeaseMs;
    const p = <R = unknown>(sql: string) => db.prepare<unknown[], R>(sql);
    this.#s = {
      insertQueue: p(
        `INSERT OR IGNORE INTO queues (name, max_deliveries, dead_letter_queue, priorities, lease_ms,
           message_ttl_ms, durable, owner, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      selectQueue: p<QueueRow>(`SELECT * FROM queues WHERE name = ?`),
      listQueues: p<{ name: string }>(`SELECT name FROM queues ORDER BY name`),
      deleteQueueRow: p(`DELETE FROM queues WHERE name = ?`),
      deleteReady: p(`DELETE FROM messages WHERE queue = ? AND state = 0`),
      deleteDelayed: p(`DELETE FROM messages WHERE queue = ? AND state = 1`),
      deleteLeased: p(`DELETE FROM messages WHERE queue = ? AND state = 2`),
      deleteQueueBindings: p(`DELETE FROM bindings WHERE queue = ?`),
      ownedQueues: p<{ name: string }>(`SELECT name FROM queues WHERE owner = ?`),
      paused: p<number>(`SELECT paused FROM queues WHERE name = ?`).pluck(),
      setPaused: p(`UPDATE queues SET paused = ? WHERE name = ?`),

      insert: p(
        `INSERT INTO messages (queue, id, priority, state, due_at, created_at, expires_at, headers, body)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      promoteDelayed: p(
        `UPDATE messages SET state = 0, due_at = NULL WHERE queue = ? AND state = 1 AND due_at <= ?`,
      ),
      expireLeases: p(
        `UPDATE messages SET state = 0, due_at = NULL, lease_token = NULL, last_error = 'lease expired'
         WHERE queue = ? AND state = 2 AND due_at <= ? AND deliveries < ?`,
      ),
      expiredAtMax: p<DueRow>(
        `SELECT seq, queue, deliveries, headers FROM messages WHERE queue = ? AND state = 2 AND due_at <= ?`,
      ),
      // Rows as arrays (see leasedRow): better-sqlite3 builds an object per row key by key.
      lease: p<LeasedColumns>(
        `UPDATE messages SET state = 2, due_at = ?, lease_token = ?, deliveries = deliveries + 1
         WHERE seq IN (SELECT seq FROM messages WHERE queue = ? AND state = 0
                       ORDER BY priority DESC, seq LIMIT ?)
         RETURNING seq, id, priority, deliveries, created_at, expires_at, headers, body`,
      ).raw(),
      nextDelayed: p<{ t: number | null }>(
        `SELECT min(due_at) AS t FROM messages WHERE queue = ? AND state = 1`,
      ),
      nextLeaseEnd: p<{ t: number | null }>(
        `SELECT min(due_at) AS t FROM messages WHERE queue = ? AND state = 2`,
      ),
      probeReady: p(`SELECT 1 FROM messages WHERE queue = ? AND state = 0 LIMIT 1`),
      probeDelayed: p(
        `SELECT 1 FROM messages WHERE queue = ? AND state = 1 AND due_at <= ? LIMIT 1`,
      ),
      probeLeased: p(
        `SELECT 1 FROM messages WHERE queue = ? AND state = 2 AND due_at <= ? LIMIT 1`,
      ),

      ack: p(`DELETE FROM messages WHERE seq = ? AND lease_token = ?`),
      settleRow: p<SettleRow>(
        `SELECT queue, deliveries, headers FROM messages WHERE seq = ? AND lease_token = ?`,
      ),
      requeue: p(
        `UPDATE messages SET state = ?, due_at = ?, lease_token = NULL, last_error = ? WHERE seq = ?`,
      ),
      release: p(
        `UPDATE messages SET state = 0, due_at = NULL, lease_token = NULL,
           deliveries = max(deliveries - 1, 0) WHERE seq = ? AND lease_token = ?`,
      ),
      extend: p(`UPDATE messages SET due_at = ? WHERE seq = ? AND lease_token = ?`),
      copyToDeadLetter: p(
        `INSERT INTO messages (queue, id, priority, state, due_at, created_at, expires_at, last_error,
           headers, body)
         SELECT ?, id, min(priority, ?), 0, NULL, ?, ?, coalesce(?, last_error), ?, body
         FROM messages WHERE seq = ?`,
      ),
      deleteSeq: p(`DELETE FROM messages WHERE seq = ?`),
      quarantine: p(
        `UPDATE messages SET queue = ?, priority = min(priority, ?), state = 0, due_at = NULL,
           lease_token = NULL, created_at = ?, expires_at = ?, last_error = ?, headers = ?,
           body = X'' WHERE seq = ?`,
      ),
      insertBody: p(`INSERT INTO bodies (seq, body) VALUES (?, ?)`),
      selectBody: p<Buffer>(`SELECT body FROM bodies WHERE seq = ?`).pluck(),
      moveBody: p(`UPDATE bodies SET seq = ? WHERE seq = ?`),
      ttlExpired: p<DueRow>(
        `SELECT seq, queue, deliveries, headers FROM messages
         WHERE expires_at IS NOT NULL AND expires_at <= ? AND state != 2 LIMIT ${TTL_SWEEP_BATCH}`,
      ),
      probeTtl: p(
        `SELECT 1 FROM messages WHERE expires_at IS NOT NULL AND expires_at <= ? AND state != 2 LIMIT 1`,
      ),

      bindings: p<{ queue: string; pattern: string }>(`SELECT queue, pattern FROM bindings`),
      insertBinding: p(`INSERT OR IGNORE INTO bindings (queue, pattern, owner) VALUES (?, ?, ?)`),
      deleteOwnedBindings: p(`DELETE FROM bindings WHERE owner = ?`),

      counts: p<RawCounts>(
        `SELECT
           coalesce((SELECT paused FROM queues WHERE name = @q), 0) AS paused,
           (SELECT count(*) FROM messages WHERE queue = @q AND state = 0) AS ready,
           (SELECT count(*) FROM messages WHERE queue = @q AND state = 1 AND due_at <= @now) AS delayed_due,
           (SELECT count(*) FROM messages WHERE queue = @q AND state = 1) AS delayed,
           (SELECT count(*) FROM messages WHERE queue = @q AND state = 2 AND due_at <= @now) AS leased_expired,
           (SELECT count(*) FROM messages WHERE queue = @q AND state = 2) AS leased,
           (SELECT count(*) FROM consumers c JOIN handles h ON h.id = c.handle
              WHERE c.queue = @q AND c.handle != @self AND h.heartbeat_at >= @fresh) AS consumers`,
      ),
      countAll: p<{ n: number }>(
        `SELECT (SELECT count(*) FROM messages WHERE queue = @q AND state = 0)
              + (SELECT count(*) FROM messages WHERE queue = @q AND state = 1)
              + (SELECT count(*) FROM messages WHERE queue = @q AND state = 2) AS n`,
      ),

      insertHandle: p(
        `INSERT OR REPLACE INTO handles (id, pid, host, opened_at, heartbeat_at, num, pid_ns)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      ),
      nextHandleNumber: p<number>(
        `INSERT INTO counters (name, value) VALUES ('handle', ?)
         ON CONFLICT (name) DO UPDATE SET value = value + 1 RETURNING value`,
      ).pluck(),
      handleNumber: p<number | null>(`SELECT num FROM handles WHERE id = ?`).pluck(),
      // Leased rows are few (prefetch per consumer): scanning the leased index is cheap.
      leasesOf: p<DueRow>(
        `SELECT seq, queue, deliveries, headers FROM messages INDEXED BY messages_leased
         WHERE state = 2 AND lease_token >= ? AND lease_token < ?`,
      ),
      releaseDead: p(
        `UPDATE messages SET state = 0, due_at = NULL, lease_token = NULL, last_error = ?
         WHERE seq = ?`,
      ),
      heartbeat: p(`UPDATE handles SET heartbeat_at = ? WHERE id = ?`),
      otherHandles: p<HandleRow>(
        `SELECT id, pid, host, heartbeat_at, num, pid_ns FROM handles WHERE id != ?`,
      ),
      deleteHandle: p(`DELETE FROM handles WHERE id = ?`),
      handleBeat: p<{ heartbeat_at: number }>(`SELECT heartbeat_at FROM handles WHERE id = ?`),
      insertConsumer: p(`INSERT INTO consumers (handle, queue, tag) VALUES (?, ?, ?)`),
      deleteConsumer: p(`DELETE FROM consumers WHERE id = ?`),
      deleteHandleConsumers: p(`DELETE FROM consumers WHERE handle = ?`),
    };
  }

  // ---- queues ----------------------------------------------------------------------------------

  /** Declares `name` unless it exists; returns its stored policy (write). */
  ensureQueue(name: string, options: QueueOptions | undefined, owner: string | null, now: number) {
    const ttl = options?.messageTtlMs;
    const inserted = this.#s.insertQueue.run(
      name,
      options?.maxDeliveries ?? QUEUE_DEFAULTS.maxDeliveries,
      deadLetterQueueOf(name, options),
      options?.priorities ?? QUEUE_DEFAULTS.priorities,
      options?.leaseMs ?? this.#defaultLeaseMs,
      ttl === undefined ? null : ttl,
      (options?.durable ?? QUEUE_DEFAULTS.durable) ? 1 : 0,
      options?.temporary ? owner : null,
      now,
    ).changes;
    if (inserted === 0) {
      const cached = this.#policies.get(name);
      if (cached) return cached;
    } else {
      this.#policies.delete(name);
    }
    return this.policy(name);
  }

  /** The policy of `name` if this handle has already read it. */
  cachedPolicy(name: string): QueuePolicy | undefined {
    return this.#policies.get(name);
  }

  /** The policy of `name`, from the cache or the table; defaults for a queue not declared (read). */
  policy(name: string): QueuePolicy {
    const cached = this.#policies.get(name);
    if (cached) return cached;
    const row = this.#s.selectQueue.get(name);
    if (!row) {
      return {
        name,
        maxDeliveries: QUEUE_DEFAULTS.maxDeliveries,
        deadLetterQueue: deadLetterQueueOf(name),
        priorities: QUEUE_DEFAULTS.priorities,
        leaseMs: this.#defaultLeaseMs,
        messageTtlMs: null,
        durable: true,
        owner: null,
      };
    }
    const policy = policyFromRow(row);
    this.#policies.set(name, policy);
    return policy;
  }

  /** Whether a queue row exists (read, uncached). */
  queueExists(name: string): boolean {
    return this.#s.selectQueue.get(name) !== undefined;
  }

  listQueues(): string[] {
    return this.#s.listQueues.all().map((r) => r.name);
  }

  /** Deletes the queue, its messages and bindings (write). */
  deleteQueue(name: string): void {
    this.#s.deleteReady.run(name);
    this.#s.deleteDelayed.run(name);
    this.#s.deleteLeased.run(name);
    this.#s.deleteQueueBindings.run(name);
    this.#s.deleteQueueRow.run(name);
    this.#policies.delete(name);
  }

  /** Deletes a temporary queue and its dead-letter queue when that belongs to the same owner. */
  dropTemporaryQueue(name: string): void {
    const policy = this.policy(name);
    this.deleteQueue(name);
    if (policy.owner === null) return;
    const dlq = this.#s.selectQueue.get(policy.deadLetterQueue);
    if (dlq && dlq.owner === policy.owner) this.deleteQueue(dlq.name);
  }

  /** Whether `name` is paused (read, uncached: any process may pause or resume it). */
  paused(name: string): boolean {
    return this.#s.paused.get(name) === 1;
  }

  /** Pauses or resumes `name`; false when no such queue exists (write). */
  setPaused(name: string, paused: boolean): boolean {
    return this.#s.setPaused.run(paused ? 1 : 0, name).changes > 0;
  }

  /**
   * Deletes the ready and delayed messages of `name` after taking back its expired leases (which
   * count as ready), and returns how many it deleted; leases still running are left alone (write).
   */
  purge(policy: QueuePolicy, now: number, deadLettered: string[]): number {
    this.sweep(policy, now, deadLettered);
    return (
      this.#s.deleteReady.run(policy.name).changes + this.#s.deleteDelayed.run(policy.name).changes
    );
  }

  /** Drops the cached policy of `name` (after another handle may have changed it). */
  forget(name: string): void {
    this.#policies.delete(name);
  }

  // ---- publishing ------------------------------------------------------------------------------

  /** Inserts messages in order (write). */
  insert(policy: QueuePolicy, messages: readonly PreparedMessage[], now: number): void {
    const ins = this.#s.insert;
    const expiresAt = policy.messageTtlMs === null ? null : now + policy.messageTtlMs;
    for (const m of messages) {
      const delayed = m.delayMs > 0;
      const apart = m.body.length > INLINE_BODY_BYTES;
      const { lastInsertRowid } = ins.run(
        policy.name,
        m.id,
        clampPriority(m.priority, policy.priorities),
        delayed ? MessageState.Delayed : MessageState.Ready,
        delayed ? now + m.delayMs : null,
        now,
        expiresAt,
        m.headers,
        apart ? null : m.body,
      );
      if (apart) this.#s.insertBody.run(lastInsertRowid, m.body);
    }
  }

  /** Copies messages into the queue of every binding matching `topic`; returns those queues. */
  route(topic: string, messages: readonly PreparedMessage[], now: number): string[] {
    const targets = new Set<string>();
    for (const b of this.#s.bindings.all()) {
      if (topicMatches(b.pattern, topic)) targets.add(b.queue);
    }
    const routed: string[] = [];
    for (const queue of targets) {
      if (!this.#policies.has(queue) && !this.queueExists(queue)) continue; // stale binding
      this.insert(this.policy(queue), messages, now);
      routed.push(queue);
    }
    return routed;
  }

  bind(queue: string, pattern: string, owner: string | null): void {
    this.#s.insertBinding.run(queue, pattern, owner);
  }

  // ---- leasing ---------------------------------------------------------------------------------

  /**
   * Makes due delayed messages ready and takes back expired leases; a message whose expired
   * lease was its last allowed delivery is dead-lettered. Adds the dead-letter queues used to
   * `deadLettered`.
   */
  sweep(policy: QueuePolicy, now: number, deadLettered: string[]): void {
    this.#s.promoteDelayed.run(policy.name, now);
    this.#s.expireLeases.run(policy.name, now, policy.maxDeliveries);
    for (const row of this.#s.expiredAtMax.all(policy.name, now)) {
      const reason = `${ErrorCode.MaxDeliveries}: lease expired`;
      deadLettered.push(this.#moveToDeadLetter(row.seq, row, reason, 'lease expired', now));
    }
  }

  /**
   * Leases up to `n` ready messages, highest priority first then oldest, for `leaseMs` (write).
   * Sweeps first when `sweepFirst`, and anyway when the ready messages do not fill the request.
   * Messages past the queue's TTL are dead-lettered instead of delivered.
   */
  lease(
    policy: QueuePolicy,
    n: number,
    token: number,
    now: number,
    sweepFirst: boolean,
  ): LeaseResult {
    const deadLettered: string[] = [];
    const unreadable: UnreadableMessage[] = [];
    const leaseUntil = now + policy.leaseMs;
    if (this.paused(policy.name)) {
      return { rows: [], leaseUntil, nextDueAt: null, deadLettered, swept: false, unreadable };
    }
    let swept = sweepFirst;
    if (swept) this.sweep(policy, now, deadLettered);
    let rows: LeasedRow[] = [];
    for (let round = 0; round < MAX_LEASE_ROUNDS && rows.length < n; round++) {
      const want = n - rows.length;
      const got: LeasedRow[] = [];
      let leased: LeasedColumns[];
      try {
        leased = this.#s.lease.all(leaseUntil, token, policy.name, want);
      } catch (err) {
        if (!isCorrupt(err)) throw err;
        throw new BrokerError(
          ErrorCode.BrokerState,
          `queue "${policy.name}": cannot lease, the broker file is damaged (${toError(err).message}); ${DOCTOR_HINT}`,
          { cause: err },
        );
      }
      for (const columns of leased) {
        const row = leasedRow(columns);
        if (row.body === null) {
          try {
            row.body = this.#s.selectBody.get(row.seq) ?? EMPTY;
          } catch (err) {
            if (!isCorrupt(err)) throw err;
            // One damaged body must not block the messages behind it: dead-letter it, saying why.
            const error = toError(err).message;
            deadLettered.push(this.#quarantine(policy, row, error, now));
            unreadable.push({ id: row.id, error });
            continue;
          }
        }
        got.push(row);
      }
      if (policy.messageTtlMs === null) {
        rows = rows.length === 0 ? got : rows.concat(got);
      } else {
        for (const row of got) {
          if (row.expires_at !== null && row.expires_at <= now) {
            const meta = {
              queue: policy.name,
              deliveries: row.deliveries - 1,
              headers: row.headers,
            };
            deadLettered.push(this.#moveToDeadLetter(row.seq, meta, ErrorCode.Expired, null, now));
          } else {
            rows.push(row);
          }
        }
      }
      if (got.length < want) {
        if (swept) break;
        swept = true;
        this.sweep(policy, now, deadLettered);
      }
    }
    rows.sort(byDeliveryOrder);
    const nextDueAt = rows.length < n ? this.nextDue(policy.name) : null;
    return { rows, leaseUntil, nextDueAt, deadLettered, swept, unreadable };
  }

  /** Earliest `due_at` of a delayed or leased message of `queue` (read). */
  nextDue(queue: string): number | null {
    const a = this.#s.nextDelayed.get(queue)?.t ?? null;
    const b = this.#s.nextLeaseEnd.get(queue)?.t ?? null;
    if (a === null) return b;
    if (b === null) return a;
    return Math.min(a, b);
  }

  /** Whether `queue` has something a consumer could lease now (read, no lock). */
  probe(queue: string, now: number): boolean {
    return (
      (this.#s.probeReady.get(queue) !== undefined ||
        this.#s.probeDelayed.get(queue, now) !== undefined ||
        this.#s.probeLeased.get(queue, now) !== undefined) &&
      !this.paused(queue)
    );
  }

  // ---- settling --------------------------------------------------------------------------------

  ack(seq: number, token: number): boolean {
    return this.#s.ack.run(seq, token).changes > 0;
  }

  nack(seq: number, token: number, delayMs: number, error: string | null, now: number) {
    const row = this.#s.settleRow.get(seq, token);
    if (!row) return { applied: false } satisfies SettleOutcome;
    const policy = this.policy(row.queue);
    if (row.deliveries >= policy.maxDeliveries) {
      const reason = `${ErrorCode.MaxDeliveries}: ${error ?? 'nacked'}`;
      const dlq = this.#moveToDeadLetter(seq, row, reason, error, now);
      return { applied: true, deadLettered: dlq } satisfies SettleOutcome;
    }
    const delayed = delayMs > 0;
    this.#s.requeue.run(
      delayed ? MessageState.Delayed : MessageState.Ready,
      delayed ? now + delayMs : null,
      error,
      seq,
    );
    return { applied: true, requeued: row.queue } satisfies SettleOutcome;
  }

  release(seq: number, token: number): boolean {
    return this.#s.release.run(seq, token).changes > 0;
  }

  deadLetter(seq: number, token: number, reason: string, now: number): SettleOutcome {
    const row = this.#s.settleRow.get(seq, token);
    if (!row) return { applied: false };
    return { applied: true, deadLettered: this.#moveToDeadLetter(seq, row, reason, null, now) };
  }

  extend(seq: number, token: number, until: number): boolean {
    return this.#s.extend.run(until, seq, token).changes > 0;
  }

  /** Dead-letters messages older than their queue's TTL, a batch at a time (write). */
  expireTtl(now: number): string[] {
    const deadLettered: string[] = [];
    for (const row of this.#s.ttlExpired.all(now)) {
      deadLettered.push(this.#moveToDeadLetter(row.seq, row, ErrorCode.Expired, null, now));
    }
    return deadLettered;
  }

  /** Whether some message is past its queue's TTL (read). */
  probeTtl(now: number): boolean {
    return this.#s.probeTtl.get(now) !== undefined;
  }

  /** The dead-letter queue of `source` (declared if missing) and a dead letter's headers. */
  #deadLetterOf(source: QueuePolicy, row: SettleRow, reason: string, now: number) {
    // The dead-letter queue of a temporary queue is temporary too, with the same owner.
    const dlq = this.ensureQueue(
      source.deadLetterQueue,
      source.owner === null ? undefined : { temporary: true },
      source.owner,
      now,
    );
    let headers: Headers = {};
    if (row.headers !== null) {
      try {
        headers = JSON.parse(row.headers) as Headers;
      } catch {
        headers = {};
      }
    }
    headers[DEAD_LETTER_REASON_HEADER] = reason;
    headers[DEAD_LETTER_QUEUE_HEADER] = row.queue;
    headers[DEAD_LETTER_DELIVERIES_HEADER] = row.deliveries;
    return { dlq, headers };
  }

  /**
   * Moves a just-leased message whose body cannot be read into the dead-letter queue, in place
   * and with an empty body: copying the row would read the body again. The damaged body stays
   * in the file, unreferenced, for `qtune doctor` to find.
   */
  #quarantine(policy: QueuePolicy, row: LeasedRow, error: string, now: number): string {
    const reason = `${BODY_UNREADABLE}: the message body cannot be read (${error}); ${DOCTOR_HINT}`;
    const meta = { queue: policy.name, deliveries: row.deliveries, headers: row.headers };
    const { dlq, headers } = this.#deadLetterOf(policy, meta, reason, now);
    this.#s.quarantine.run(
      dlq.name,
      dlq.priorities - 1,
      now,
      dlq.messageTtlMs === null ? null : now + dlq.messageTtlMs,
      reason,
      JSON.stringify(headers),
      row.seq,
    );
    return dlq.name;
  }

  #moveToDeadLetter(
    seq: number,
    row: SettleRow,
    reason: string,
    lastError: string | null,
    now: number,
  ): string {
    const { dlq, headers } = this.#deadLetterOf(this.policy(row.queue), row, reason, now);
    const dl = this.#s.copyToDeadLetter.run(
      dlq.name,
      dlq.priorities - 1,
      now,
      dlq.messageTtlMs === null ? null : now + dlq.messageTtlMs,
      lastError,
      JSON.stringify(headers),
      seq,
    );
    // A body stored apart moves to the copy; deleting the original then finds none to drop.
    if (dl.changes > 0) this.#s.moveBody.run(dl.lastInsertRowid, seq);
    this.#s.deleteSeq.run(seq);
    return dlq.name;
  }

  // ---- statistics ------------------------------------------------------------------------------

  /** Raw counts of `queue`; `consumers` counts live consumers of handles other than `self`. */
  counts(queue: string, now: number, freshSince: number, self: string): RawCounts {
    return this.#s.counts.get({ q: queue, now, fresh: freshSince, self })!;
  }

  countAll(queue: string): number {
    return this.#s.countAll.get({ q: queue })!.n;
  }

  // ---- handles and consumers -------------------------------------------------------------------

  /**
   * Registers (or re-registers) a handle and returns its number: `num` when given, else a fresh
   * one that no handle had before (write).
   */
  registerHandle(
    id: string,
    pid: number,
    host: string,
    pidNs: string | null,
    now: number,
    num?: number,
  ): number {
    const n = num ?? this.#s.nextHandleNumber.get(FIRST_HANDLE_NUMBER)!;
    this.#s.insertHandle.run(id, pid, host, now, now, n, pidNs);
    return n;
  }

  /** Refreshes the handle's heartbeat; false when its row is gone (reaped by someone else). */
  heartbeat(id: string, now: number): boolean {
    return this.#s.heartbeat.run(now, id).changes > 0;
  }

  otherHandles(id: string): HandleRow[] {
    return this.#s.otherHandles.all(id);
  }

  /**
   * Deletes a handle with its temporary queues, bindings and consumer rows, and gives back the
   * leases it still holds as an expired lease would be (write): nobody can settle them any more.
   * With `seenHeartbeat`, only if the handle did not beat since (it was not dead after all).
   * Returns the queues that got messages back (or dead letters).
   */
  dropHandle(id: string, now: number, reason: string, seenHeartbeat?: number): string[] {
    if (seenHeartbeat !== undefined) {
      const beat = this.#s.handleBeat.get(id);
      if (beat !== undefined && beat.heartbeat_at > seenHeartbeat) return [];
    }
    const num = this.#s.handleNumber.get(id);
    const touched = num === undefined || num === null ? [] : this.releaseLeases(num, now, reason);
    const queues = this.#s.ownedQueues.all(id).map((r) => r.name);
    for (const q of queues) this.deleteQueue(q);
    this.#s.deleteOwnedBindings.run(id);
    this.#s.deleteHandleConsumers.run(id);
    this.#s.deleteHandle.run(id);
    return touched.filter((q) => !queues.includes(q));
  }

  /**
   * Makes the messages leased by handle number `num` ready again (at their old place), or
   * dead-letters those that had their last allowed delivery, recording `reason` (write).
   * Returns the queues that received them.
   */
  releaseLeases(num: number, now: number, reason: string): string[] {
    const touched = new Set<string>();
    const from = num * LEASE_TOKEN_SPAN;
    for (const row of this.#s.leasesOf.all(from, from + LEASE_TOKEN_SPAN)) {
      if (row.deliveries >= this.policy(row.queue).maxDeliveries) {
        const why = `${ErrorCode.MaxDeliveries}: ${reason}`;
        touched.add(this.#moveToDeadLetter(row.seq, row, why, reason, now));
      } else {
        this.#s.releaseDead.run(reason, row.seq);
        touched.add(row.queue);
      }
    }
    return [...touched];
  }

  addConsumer(handle: string, queue: string, tag: string): number {
    return Number(this.#s.insertConsumer.run(handle, queue, tag).lastInsertRowid);
  }

  removeConsumer(id: number): void {
    this.#s.deleteConsumer.run(id);
  }
}
