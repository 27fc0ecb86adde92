import { Worker } from 'node:worker_threads';
import { builtModuleExists } from '../broker/built-module.js';
import { toError } from '../protocol/errors.js';
import type { Store } from '../store/contract.js';
import { decodeRows, type SinkMessage } from './rows.js';

/** What became of one batch: the invalid messages, and the write of the others. */
export interface WriteOutcome {
  /** Index into the batch of each message that is not a valid result, with the reason. */
  invalid: Array<{ index: number; reason: string }>;
  inserted: number;
  updated: number;
  /** Set when the store write failed: none of the valid results were stored. */
  error?: Error;
}

/** Decodes a batch of result messages and upserts their rows in one transaction. */
export interface BatchWriter {
  /** Gets ready to write (a thread starts and opens the store); rejects when it cannot. */
  start(): Promise<void>;
  write(messages: readonly SinkMessage[]): Promise<WriteOutcome>;
  close(): Promise<void>;
}

interface WriterSettings {
  store: Store;
  table: string;
  keyFields: readonly string[];
}

/** Decodes and writes on the calling thread. */
export class InProcessWriter implements BatchWriter {
  readonly #s: WriterSettings;

  constructor(settings: WriterSettings) {
    this.#s = settings;
  }

  async start(): Promise<void> {}

  async write(messages: readonly SinkMessage[]): Promise<WriteOutcome> {
    const { rows, invalid } = decodeRows(messages, this.#s.keyFields);
    if (rows.length === 0) return { invalid, inserted: 0, updated: 0 };
    try {
      return { invalid, ...(await this.#s.store.results.upsertResults(this.#s.table, rows)) };
    } catch (err) {
      return { invalid, inserted: 0, updated: 0, error: toError(err) };
    }
  }

  async close(): Promise<void> {}
}

/** A batch as it crosses to the writer thread: the bodies end to end in one transferred buffer. */
export interface ThreadRequest {
  seq: number;
  queue: string;
  ids: string[];
  /** End offset of each body in `bytes`. */
  ends: number[];
  bytes: ArrayBuffer;
}

export type ThreadReply = (
  | { seq: number; invalid: WriteOutcome['invalid']; inserted: number; updated: number }
  | { seq: number; invalid: WriteOutcome['invalid']; error: string }
) & {
  /** The request's buffer, handed back for the next batch. */
  bytes?: ArrayBuffer;
};

/** Buffers kept for reuse: a fresh one costs a page fault per 4 KiB on first write. */
const SPARE_BUFFERS = 4;

/** Posted by the thread once its store is open and the table exists. */
export const THREAD_READY = 'ready';

export interface ThreadInit {
  /** Where the thread opens its own handle on the store (`openStore(store)`). */
  store: string;
  table: string;
  keyFields: string[];
}

const THREAD_MODULE = new URL('./writer-thread.js', import.meta.url);

/**
 * Whether the writer thread's module is there to run: it is in a build, not when this file
 * runs from TypeScript sources.
 */
export function writerThreadAvailable(): boolean {
  return builtModuleExists(THREAD_MODULE);
}

interface Waiting {
  resolve: (outcome: WriteOutcome) => void;
}

/**
 * Decodes and writes on a worker thread with its own handle on the store, for a store whose
 * writes block the thread (SQLite), so that JSON parsing and the store's work run beside the
 * consuming and acking on the main thread.
 * Batches are written in the order they are handed in. A thread that dies fails its batches
 * (their results are given back for redelivery) and the next batch starts a new one.
 */
export class ThreadWriter implements BatchWriter {
  readonly #init: ThreadInit;
  #worker: Worker | undefined;
  #seq = 0;
  readonly #waiting = new Map<number, Waiting>();
  readonly #spare: ArrayBuffer[] = [];
  /** Settled once the current thread is ready to write, or has failed first. */
  #ready: Promise<void> | undefined;

  constructor(init: ThreadInit) {
    this.#init = init;
  }

  /**
   * Starts the thread now rather than at the first batch, so that its start (loading modules,
   * opening the store) runs beside the first lease instead of after it.
   */
  start(): Promise<void> {
    this.#thread();
    return this.#ready!;
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(THREAD_MODULE, { workerData: this.#init });
    // The sink's consumer keeps the process alive while it runs; a sink never stopped must not
    // hold the process open through its thread (unacked results just come back later).
    worker.unref();
    let ready!: () => void;
    let notReady!: (error: Error) => void;
    this.#ready = new Promise<void>((resolve, reject) => {
      ready = resolve;
      notReady = reject;
    });
    // Only start() waits on it; a thread that fails later is seen through its batches.
    this.#ready.catch(() => {});
    const failAll = (error: Error) => {
      notReady(error);
      if (this.#worker === worker) this.#worker = undefined;
      for (const [seq, w] of this.#waiting) {
        this.#waiting.delete(seq);
        w.resolve({ invalid: [], inserted: 0, updated: 0, error });
      }
    };
    worker.on('message', (reply: ThreadReply | typeof THREAD_READY) => {
      if (reply === THREAD_READY) {
        ready();
        return;
      }
      if (reply.bytes && this.#spare.length < SPARE_BUFFERS) this.#spare.push(reply.bytes);
      const w = this.#waiting.get(reply.seq);
      if (!w) return;
      this.#waiting.delete(reply.seq);
      if ('error' in reply)
        w.resolve({
          invalid: reply.invalid,
          inserted: 0,
          updated: 0,
          error: new Error(reply.error),
        });
      else w.resolve({ invalid: reply.invalid, inserted: reply.inserted, updated: reply.updated });
    });
    worker.on('error', (err) => failAll(toError(err)));
    worker.on('exit', (code) => failAll(new Error(`sink writer thread exited with code ${code}`)));
    this.#worker = worker;
    return worker;
  }

  write(messages: readonly SinkMessage[]): Promise<WriteOutcome> {
    let total = 0;
    for (const m of messages) total += m.body.length;
    // A buffer of its own (not a slice of Node's pool), so that it can be transferred: one the
    // thread handed back when one is large enough.
    const i = this.#spare.findIndex((b) => b.byteLength >= total);
    const bytes =
      i >= 0 ? Buffer.from(this.#spare.splice(i, 1)[0]!) : Buffer.allocUnsafeSlow(total);
    const ends: number[] = [];
    const ids: string[] = [];
    let at = 0;
    for (const m of messages) {
      at += m.body.copy(bytes, at);
      ends.push(at);
      ids.push(m.id);
    }
    const seq = ++this.#seq;
    const request: ThreadRequest = {
      seq,
      queue: messages[0]?.queue ?? '',
      ids,
      ends,
      bytes: bytes.buffer as ArrayBuffer,
    };
    return new Promise<WriteOutcome>((resolve) => {
      this.#waiting.set(seq, { resolve });
      this.#thread().postMessage(request, [request.bytes]);
    });
  }

  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    await worker?.terminate();
  }
}
