import { EventEmitter } from 'node:events';
import type { Broker, Consumer, Delivery } from '../broker/contract.js';
import { decodeResult, resultQueueOf } from '../patterns/work-queue.js';
import { DecodeError, ErrorCode, toError } from '../protocol/errors.js';
import { keyOf } from '../protocol/key.js';
import type { TaskResult } from '../protocol/result.js';
import type { ResultRow } from '../store/results.js';
import { checkTableName } from '../store/results.js';
import type { Store } from '../store/contract.js';

export interface SinkOptions {
  broker: Broker;
  store: Store;
  /** Task queue whose results to store; the sink reads `resultQueueOf(queue)`. */
  queue: string;
  /** Result queue to read instead (default: `<queue>.results`). */
  resultQueue?: string;
  /** Result table (see checkTableName). */
  table: string;
  /**
   * Fields of each result's value whose values make the row id (default: none — the task's
   * idempotency key, else its task id).
   */
  keyFields?: readonly string[];
  /** Rows per store transaction (default: 1000). */
  batchSize?: number;
  /** Longest wait for a batch to fill before it is written, in ms (default: 20). */
  flushMs?: number;
  /** How long a failed store write waits before its results are redelivered, in ms (default: 1000). */
  retryDelayMs?: number;
  /**
   * Batches written at once (default: 1 for SQLite, whose writes are synchronous; 2 for
   * PostgreSQL, so that one batch crosses the network while the next one is sent).
   */
  writers?: number;
}

/** Counters of a running sink. */
export interface SinkStats {
  /** Results written to the table (each redelivery counts again). */
  stored: number;
  /** Rows that were new. */
  inserted: number;
  /** Rows that were already there (a redelivered or re-run result). */
  updated: number;
  /** Messages dead-lettered because they were not valid results. */
  invalid: number;
  batches: number;
  /** Store writes that failed; their results were given back for redelivery. */
  failedWrites: number;
}

export interface SinkEvents {
  batch: [info: { rows: number; inserted: number; updated: number; ms: number }];
  invalid: [info: { messageId: string; reason: string }];
  error: [error: Error];
}

interface Pending {
  row: ResultRow;
  delivery: Delivery;
  done: () => void;
}

/** The table row of a result, keyed by `keyFields` of its value, else its key, else its task id. */
export function rowOf(result: TaskResult, keyFields: readonly string[] = []): ResultRow {
  let id: string;
  if (keyFields.length > 0) {
    if (!result.ok) {
      // A failed result has no value to take key fields from: only its key can name the row.
      if (result.key === undefined)
        throw new DecodeError(
          ErrorCode.InvalidEnvelope,
          `failed result of task ${result.taskId} has no idempotency key, so key fields ${JSON.stringify(keyFields)} cannot name its row`,
        );
      id = result.key;
    } else {
      try {
        id = keyOf(result.value, keyFields);
      } catch {
        throw new DecodeError(
          ErrorCode.InvalidEnvelope,
          `result of task ${result.taskId}: its value lacks one of the key fields ${JSON.stringify(keyFields)}`,
        );
      }
    }
  } else {
    id = result.key ?? result.taskId;
  }
  const row: ResultRow = {
    id,
    taskId: result.taskId,
    ok: result.ok,
    host: result.worker.host,
    pid: result.worker.pid,
    workerId: result.worker.id,
    attempt: result.attempt,
    durationMs: result.durationMs,
    startedAt: result.startedAt,
    finishedAt: result.finishedAt,
  };
  if (result.key !== undefined) row.key = result.key;
  if (result.value !== undefined) row.value = result.value;
  if (result.error) {
    row.errorCode = result.error.code;
    row.errorMessage = result.error.message;
  }
  const gpus = result.worker.gpus;
  if (gpus && gpus.length > 0)
    row.gpu = gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join('; ');
  const price = (result.worker as { pricePerHour?: unknown }).pricePerHour;
  if (typeof price === 'number' && Number.isFinite(price)) row.pricePerHour = price;
  return row;
}

/**
 * Drains a queue's results into a result table in batches: each batch is one upsert keyed by
 * a deterministic row id, and its results are acked only after the commit, so a crash at any
 * point loses nothing and a redelivered result updates its row instead of adding one. A message
 * that is not a valid result is dead-lettered with its reason.
 */
export class Sink extends EventEmitter<SinkEvents> {
  readonly table: string;
  readonly source: string;
  readonly stats: SinkStats = {
    stored: 0,
    inserted: 0,
    updated: 0,
    invalid: 0,
    batches: 0,
    failedWrites: 0,
  };
  /** Epoch ms of the last delivery. */
  lastActivity = Date.now();
  readonly #o: Required<Omit<SinkOptions, 'resultQueue'>>;
  #pending: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** One promise chain per concurrent writer; batches go to them in turn. */
  #lanes: Promise<void>[];
  #nextLane = 0;
  #consumer: Consumer | undefined;

  private constructor(options: SinkOptions) {
    super();
    this.table = checkTableName(options.table);
    this.source = options.resultQueue ?? resultQueueOf(options.queue);
    this.#o = {
      broker: options.broker,
      store: options.store,
      queue: options.queue,
      table: options.table,
      keyFields: options.keyFields ?? [],
      batchSize: Math.max(1, options.batchSize ?? 1000),
      flushMs: options.flushMs ?? 20,
      retryDelayMs: options.retryDelayMs ?? 1000,
      writers: Math.max(1, options.writers ?? (options.store.kind === 'sqlite' ? 1 : 2)),
    };
    this.#lanes = Array.from({ length: this.#o.writers }, () => Promise.resolve());
  }

  /** Creates the table when missing and starts consuming. */
  static async start(options: SinkOptions): Promise<Sink> {
    const sink = new Sink(options);
    await options.store.ensureResultTable(sink.table);
    await options.broker.declareQueue(sink.source);
    sink.#consumer = await options.broker.consume(sink.source, (d) => sink.#onDelivery(d), {
      // Room for one batch being written while the next one fills.
      prefetch: sink.#o.batchSize * 2,
      tag: `sink:${sink.table}`,
    });
    return sink;
  }

  #onDelivery(delivery: Delivery): Promise<void> {
    this.lastActivity = Date.now();
    let row: ResultRow;
    try {
      row = rowOf(decodeResult(delivery).result, this.#o.keyFields);
    } catch (err) {
      const e = toError(err);
      const reason = e instanceof DecodeError ? `${e.code}: ${e.message}` : e.message;
      this.stats.invalid++;
      this.emit('invalid', { messageId: delivery.id, reason });
      return delivery.deadLetter(reason);
    }
    return new Promise<void>((done) => {
      this.#pending.push({ row, delivery, done });
      if (this.#pending.length >= this.#o.batchSize) this.#flush();
      else this.#timer ??= setTimeout(() => this.#flush(), this.#o.flushMs);
    });
  }

  /** Hands the pending results to the next writer; each writer writes its batches in order. */
  #flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const batch = this.#pending;
    this.#pending = [];
    const lane = this.#nextLane;
    this.#nextLane = (lane + 1) % this.#lanes.length;
    this.#lanes[lane] = this.#lanes[lane]!.then(() => this.#write(batch));
  }

  async #write(batch: Pending[]): Promise<void> {
    const started = Date.now();
    try {
      const r = await this.#o.store.upsertResults(
        this.table,
        batch.map((p) => p.row),
      );
      this.stats.batches++;
      this.stats.stored += batch.length;
      this.stats.inserted += r.inserted;
      this.stats.updated += r.updated;
      await Promise.all(
        batch.map((p) =>
          p.delivery.ack().catch((err: unknown) => this.emit('error', toError(err))),
        ),
      );
      this.emit('batch', { rows: batch.length, ...r, ms: Date.now() - started });
    } catch (err) {
      this.stats.failedWrites++;
      this.emit('error', toError(err));
      const error = `STORE_UNAVAILABLE: ${toError(err).message}`;
      await Promise.all(
        batch.map((p) =>
          p.delivery
            .nack({ delayMs: this.#o.retryDelayMs, error })
            .catch((e: unknown) => this.emit('error', toError(e))),
        ),
      );
    } finally {
      for (const p of batch) p.done();
    }
  }

  /** Stops consuming, writes what is pending, and waits for the last batch. */
  async stop(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    // cancel() waits for handler calls in progress, which wait for their batch: flush first.
    const cancelled = consumer?.cancel();
    this.#flush();
    await cancelled;
    this.#flush();
    await Promise.all(this.#lanes);
  }
}
