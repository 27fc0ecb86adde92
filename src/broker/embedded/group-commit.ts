import type Database from 'better-sqlite3';
import { BrokerError, ErrorCode, toError } from '../../protocol/errors.js';

/** One unit of work for a write transaction. */
export interface WriteOp<T = unknown> {
  /** Rows it writes, roughly; bounds the size of one transaction. */
  readonly weight: number;
  /** Runs inside the transaction. Must leave JavaScript state alone: it may be re-run. */
  exec(now: number): T;
  /** Called after the commit with what `exec` returned. */
  done(result: T): void;
  /** Called when the operation could not be committed. */
  fail(error: Error): void;
}

/** Most rows written by one transaction before the rest waits for the next one. */
const MAX_BATCH_WEIGHT = 20_000;
/** Retries of BEGIN IMMEDIATE after the busy timeout ran out, before giving up. */
const MAX_BUSY_RETRIES = 6;
/** First and longest sleep between attempts to take the write lock, in ms. */
const LOCK_WAIT_FIRST_MS = 0.02;
const LOCK_WAIT_MAX_MS = 0.5;
/** Backing store for Atomics.wait, the only sub-millisecond synchronous sleep in Node. */
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

/** Whether `err` is SQLite saying another connection holds the lock. */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'SQLITE_BUSY' || code === 'SQLITE_BUSY_SNAPSHOT' || code === 'SQLITE_LOCKED';
}

/**
 * Group commit: every write operation issued during one turn of the event loop (publishes, acks,
 * nacks, leases, heartbeats) runs in ONE `BEGIN IMMEDIATE` transaction, flushed from
 * `setImmediate`; each operation's promise settles after that commit. An operation that throws
 * rolls the batch back, and the batch is re-run one operation per transaction so the others
 * still commit.
 */
export class GroupCommit {
  readonly #db: Database.Database;
  readonly #begin: Database.Statement;
  readonly #commit: Database.Statement;
  readonly #rollback: Database.Statement;
  readonly #onError: (error: Error) => void;
  readonly #noBusyTimeout: Database.Statement;
  readonly #restoreBusyTimeout: Database.Statement;
  readonly #busyTimeoutMs: number;
  #pending: WriteOp[] = [];
  #scheduled = false;
  #busyRetries = 0;
  #closed = false;
  #idleWaiters: Array<() => void> = [];

  constructor(db: Database.Database, onError: (error: Error) => void, busyTimeoutMs = 5_000) {
    this.#db = db;
    this.#busyTimeoutMs = busyTimeoutMs;
    this.#noBusyTimeout = db.prepare('PRAGMA busy_timeout = 0');
    this.#restoreBusyTimeout = db.prepare(`PRAGMA busy_timeout = ${Math.floor(busyTimeoutMs)}`);
    this.#begin = db.prepare('BEGIN IMMEDIATE');
    this.#commit = db.prepare('COMMIT');
    this.#rollback = db.prepare('ROLLBACK');
    this.#onError = onError;
  }

  /** Queues an operation for the next transaction. */
  submit(op: WriteOp): void {
    if (this.#closed) {
      op.fail(
        new BrokerError(ErrorCode.BrokerState, `embedded broker "${this.#db.name}" is closed`),
      );
      return;
    }
    this.#pending.push(op);
    this.#schedule();
  }

  /** Runs `exec` in the next transaction; resolves with its result after the commit. */
  run<T>(weight: number, exec: (now: number) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.submit({ weight, exec, done: resolve, fail: reject });
    });
  }

  /** Resolves once nothing is pending. */
  idle(): Promise<void> {
    if (this.#pending.length === 0 && !this.#scheduled) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Refuses further operations; pending ones fail. */
  close(): void {
    this.#closed = true;
    const pending = this.#pending;
    this.#pending = [];
    const err = new BrokerError(
      ErrorCode.BrokerState,
      `embedded broker "${this.#db.name}" is closed`,
    );
    for (const op of pending) op.fail(err);
    this.#wakeIdle();
  }

  #schedule(delayMs = 0): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    if (delayMs > 0) setTimeout(() => this.#flush(), delayMs);
    else setImmediate(() => this.#flush());
  }

  #wakeIdle(): void {
    if (this.#pending.length > 0 || this.#scheduled) return;
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  #flush(): void {
    this.#scheduled = false;
    if (this.#closed || this.#pending.length === 0) {
      this.#wakeIdle();
      return;
    }
    let take = 0;
    let weight = 0;
    while (take < this.#pending.length && (take === 0 || weight < MAX_BATCH_WEIGHT)) {
      weight += this.#pending[take]!.weight;
      take++;
    }
    const batch = this.#pending.slice(0, take);

    try {
      this.#beginImmediate();
    } catch (err) {
      if (isBusy(err) && this.#busyRetries < MAX_BUSY_RETRIES) {
        this.#busyRetries++;
        this.#schedule(10 * this.#busyRetries);
        return;
      }
      this.#busyRetries = 0;
      this.#pending.splice(0, take);
      const error = this.#wrap(err, 'could not start a write transaction');
      for (const op of batch) op.fail(error);
      this.#afterFlush();
      return;
    }
    this.#busyRetries = 0;
    this.#pending.splice(0, take);

    const results: unknown[] = new Array(batch.length);
    try {
      const now = Date.now();
      for (let i = 0; i < batch.length; i++) results[i] = batch[i]!.exec(now);
      this.#commit.run();
    } catch (err) {
      this.#abort();
      if (batch.length === 1) {
        batch[0]!.fail(this.#wrap(err, 'write failed'));
      } else {
        // Isolate the failing operation: put the batch back to run one operation at a time.
        this.#runEach(batch);
      }
      this.#afterFlush();
      return;
    }
    for (let i = 0; i < batch.length; i++) this.#finish(batch[i]!, results[i]);
    this.#afterFlush();
  }

  /**
   * BEGIN IMMEDIATE, waiting for the write lock in steps of 20 µs up to 0.5 ms. SQLite's own busy
   * handler sleeps 1, 2, 5, 10... ms between attempts, which leaves the lock idle much of the time
   * when several processes take turns with transactions of about a millisecond.
   */
  #beginImmediate(): void {
    this.#noBusyTimeout.run();
    try {
      const deadline = performance.now() + this.#busyTimeoutMs;
      let wait = LOCK_WAIT_FIRST_MS;
      for (;;) {
        try {
          this.#begin.run();
          return;
        } catch (err) {
          if (!isBusy(err) || performance.now() >= deadline) throw err;
        }
        Atomics.wait(SLEEPER, 0, 0, wait);
        wait = Math.min(wait * 2, LOCK_WAIT_MAX_MS);
      }
    } finally {
      this.#restoreBusyTimeout.run();
    }
  }

  #runEach(batch: WriteOp[]): void {
    for (const op of batch) {
      let result: unknown;
      try {
        this.#begin.run();
        result = op.exec(Date.now());
        this.#commit.run();
      } catch (err) {
        this.#abort();
        op.fail(this.#wrap(err, 'write failed'));
        continue;
      }
      this.#finish(op, result);
    }
  }

  #finish(op: WriteOp, result: unknown): void {
    try {
      op.done(result);
    } catch (err) {
      this.#onError(toError(err));
    }
  }

  #abort(): void {
    try {
      if (this.#db.inTransaction) this.#rollback.run();
    } catch (err) {
      this.#onError(this.#wrap(err, 'rollback failed'));
    }
  }

  #afterFlush(): void {
    if (this.#pending.length > 0) this.#schedule();
    else this.#wakeIdle();
  }

  #wrap(err: unknown, what: string): Error {
    if (err instanceof BrokerError) return err;
    const e = toError(err);
    return new BrokerError(
      ErrorCode.BrokerUnavailable,
      `embedded broker "${this.#db.name}": ${what}: ${e.message}`,
      { cause: err },
    );
  }
}
