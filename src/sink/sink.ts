import { EventEmitter } from 'node:events';
import { ackEach, type Broker, type Consumer, type Delivery } from '../broker/contract.js';
import { resultQueueOf } from '../patterns/work-queue.js';
import { ErrorCode, QtuneError, toError } from '../protocol/errors.js';
import { checkTableName } from '../store/results.js';
import type { Store } from '../store/contract.js';
import {
  InProcessWriter,
  ThreadWriter,
  writerThreadAvailable,
  type BatchWriter,
} from './writer.js';

export { rowOf } from './rows.js';

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
  /**
   * Rows per store transaction (default: 5000). Larger batches cost SQLite fewer page writes
   * per row when row ids are hashes.
   */
  batchSize?: number;
  /**
   * Longest wait for a batch to fill before it is written, in ms (default: 20). A batch is
   * written sooner once no result has arrived for IDLE_FLUSH_MS: the broker has handed over
   * what it had, and waiting longer would only delay the acks that let it send more.
   */
  flushMs?: number;
  /** How long a failed store write waits before its results are redelivered, in ms (default: 1000). */
  retryDelayMs?: number;
  /**
   * Batches written at once (default: 2 — with PostgreSQL one batch crosses the network while
   * the next one is sent, with the writer thread one batch is written while the last one's acks
   * commit; 1 for a store whose writes block, such as SQLite, written on the main thread).
   */
  writers?: number;
  /**
   * Decode results and write them on a worker thread, beside the consuming on the main thread,
   * when the store's writes block the thread (`store.results.writesBlock`: SQLite). Default:
   * true for such a store when the built thread module is present. Ignored for a store whose
   * writes already leave the thread (PostgreSQL).
   */
  thread?: boolean;
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
  /** A failed store write or settle; emitted only while a listener is attached. */
  error: [error: Error];
}

/** Rows per store transaction unless told otherwise. */
export const DEFAULT_BATCH_ROWS = 5000;

/** A batch that has not grown for this long (in ms) is written without waiting for flushMs. */
export const IDLE_FLUSH_MS = 2;

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
  readonly #o: Required<Omit<SinkOptions, 'resultQueue' | 'thread'>>;
  readonly #writer: BatchWriter;
  #pending: Delivery[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** When the first result of the pending batch arrived (epoch ms). */
  #batchStarted = 0;
  /** One promise chain per concurrent writer; batches go to them in turn. */
  #lanes: Promise<void>[];
  #nextLane = 0;
  #consumer: Consumer | undefined;
  /** Batches' worth of results held unsettled at once (the consumer's prefetch). */
  readonly #heldBatches: number;

  private constructor(options: SinkOptions) {
    super();
    this.table = checkTableName(options.table);
    this.source = options.resultQueue ?? resultQueueOf(options.queue);
    const keyFields = options.keyFields ?? [];
    const blocking = options.store.results.writesBlock;
    const threaded = blocking && (options.thread ?? writerThreadAvailable());
    if (threaded && !writerThreadAvailable())
      throw new QtuneError(
        ErrorCode.BadInput,
        'sink: the writer thread module is missing (run from a build, or pass thread: false)',
      );
    this.#writer = threaded
      ? new ThreadWriter({
          store: options.store.location,
          table: this.table,
          keyFields: [...keyFields],
        })
      : new InProcessWriter({ store: options.store, table: this.table, keyFields });
    this.#o = {
      broker: options.broker,
      store: options.store,
      queue: options.queue,
      table: options.table,
      keyFields,
      batchSize: Math.max(1, options.batchSize ?? DEFAULT_BATCH_ROWS),
      flushMs: options.flushMs ?? 20,
      retryDelayMs: options.retryDelayMs ?? 1000,
      writers: Math.max(1, options.writers ?? (blocking && !threaded ? 1 : 2)),
    };
    this.#lanes = Array.from({ length: this.#o.writers }, () => Promise.resolve());
    // A writer thread writes one batch at a time: room for the batch it writes and the next one
    // filling is enough, and every result held longer is one more survivor for the collector.
    // Otherwise room for a batch in each writer while the next one fills.
    this.#heldBatches = threaded ? 2 : this.#o.writers + 1;
  }

  /**
   * Creates the table when missing and starts consuming; resolves once the writer is ready too
   * (a writer thread starts beside the first lease). Rejects when either cannot start, with
   * every result left in the queue.
   */
  static async start(options: SinkOptions): Promise<Sink> {
    const sink = new Sink(options);
    await options.store.results.ensureResultTable(sink.table);
    const writerReady = sink.#writer.start();
    try {
      await options.broker.declareQueue(sink.source);
      sink.#consumer = await options.broker.consume(sink.source, (d) => sink.#onDelivery(d), {
        prefetch: sink.#o.batchSize * sink.#heldBatches,
        tag: `sink:${sink.table}`,
      });
      await writerReady;
    } catch (err) {
      await sink.#consumer?.cancel().catch(() => {});
      // Hand back what was delivered meanwhile; a batch already handed to the writer failed
      // with it, and its results were given back for redelivery.
      clearTimeout(sink.#timer);
      sink.#timer = undefined;
      const held = sink.#pending;
      sink.#pending = [];
      await Promise.all(held.map((d) => d.release().catch(() => {})));
      await Promise.all(sink.#lanes);
      await sink.#writer.close();
      throw err;
    }
    return sink;
  }

  /**
   * Queues a delivery for the next batch. It returns at once: the delivery stays unsettled (and
   * counts against the prefetch) until its batch is written, and stop() waits for the batches.
   */
  #onDelivery(delivery: Delivery): void {
    this.lastActivity = Date.now();
    this.#pending.push(delivery);
    if (this.#pending.length >= this.#o.batchSize) this.#flush();
    else if (this.#timer === undefined) {
      this.#batchStarted = this.lastActivity;
      this.#armFlush();
    }
  }

  /**
   * Checks the pending batch every IDLE_FLUSH_MS (one timer per batch, not per delivery):
   * written once it stopped growing, or once it waited flushMs.
   */
  #armFlush(): void {
    const wait = Math.min(IDLE_FLUSH_MS, this.#o.flushMs);
    this.#timer = setTimeout(() => {
      const now = Date.now();
      const idle = now - this.lastActivity >= IDLE_FLUSH_MS;
      if (idle || now - this.#batchStarted >= this.#o.flushMs) this.#flush();
      else this.#armFlush();
    }, wait);
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
    // A batch whose write throws stays unsettled: its results come back when their leases end.
    const previous = this.#lanes[lane]!;
    this.#lanes[lane] = previous
      .then(() => this.#write(batch))
      .catch((err: unknown) => this.#report(err));
  }

  /**
   * Emits 'error' when someone listens (with no listener, EventEmitter would throw, here inside
   * a batch's promise chain); stats.failedWrites counts failed writes either way.
   */
  #report(err: unknown): void {
    if (this.listenerCount('error') > 0) this.emit('error', toError(err));
  }

  async #write(batch: Delivery[]): Promise<void> {
    const started = Date.now();
    const report = (err: unknown): void => this.#report(err);
    const outcome = await this.#writer.write(batch);
    const settled: Array<Promise<void>> = [];
    const invalid = new Set<number>();
    for (const { index, reason } of outcome.invalid) {
      const delivery = batch[index]!;
      invalid.add(index);
      this.stats.invalid++;
      this.emit('invalid', { messageId: delivery.id, reason });
      settled.push(delivery.deadLetter(reason).catch(report));
    }
    const valid = invalid.size === 0 ? batch : batch.filter((_, i) => !invalid.has(i));
    if (outcome.error) {
      this.stats.failedWrites++;
      report(outcome.error);
      const error = `${ErrorCode.StoreUnavailable}: ${outcome.error.message}`;
      for (const d of valid)
        settled.push(d.nack({ delayMs: this.#o.retryDelayMs, error }).catch(report));
    } else if (valid.length > 0) {
      this.stats.batches++;
      this.stats.stored += valid.length;
      this.stats.inserted += outcome.inserted;
      this.stats.updated += outcome.updated;
      // The consumer is known once consume() has resolved; a batch written before that (a
      // broker that delivers during consume()) acks each result on its own.
      const acked = this.#consumer ? this.#consumer.ackAll(valid) : ackEach(valid);
      settled.push(acked.catch(report));
    }
    await Promise.all(settled);
    if (!outcome.error && valid.length > 0)
      this.emit('batch', {
        rows: valid.length,
        inserted: outcome.inserted,
        updated: outcome.updated,
        ms: Date.now() - started,
      });
  }

  /** Stops consuming, writes what is pending, and waits for the last batch. */
  async stop(): Promise<void> {
    // Handler calls only queue their delivery, so cancel() returns once consuming has stopped.
    await this.#consumer?.cancel();
    this.#flush();
    await Promise.all(this.#lanes);
    await this.#writer.close();
  }
}
