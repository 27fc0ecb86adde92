import type { Writable } from 'node:stream';
import type { Delivery } from '../broker/contract.js';

/** A batch of items waiting to be printed, and the deliveries they came from. */
interface Batch<T> {
  items: T[];
  deliveries: Delivery[];
  done: Promise<void>;
  resolve: () => void;
  reject: (error: unknown) => void;
}

export interface DeliveryPrinterOptions<T> {
  /** Where the text goes (e.g. process.stdout). */
  out: Writable;
  /** The text of a batch of items, each line ending in a newline. */
  render: (items: T[]) => string;
  /** Acks the deliveries of a printed batch (e.g. `consumer.ackAll`). */
  ack: (deliveries: Delivery[]) => Promise<void>;
}

/**
 * Prints what a consumer delivers and acks each delivery once its line is out of the process.
 * Deliveries that arrive in one turn of the event loop are rendered and written as one chunk,
 * and the next chunk is written only when the stream has flushed the previous one (its write
 * callback): a slow reader holds the deliveries in the broker's prefetch window instead of in
 * memory, and no 'drain' listener is ever added. The acks of one chunk run while the next is
 * written.
 */
export class DeliveryPrinter<T> {
  readonly #options: DeliveryPrinterOptions<T>;
  #next: Batch<T> | null = null;
  #writing = false;

  constructor(options: DeliveryPrinterOptions<T>) {
    this.#options = options;
  }

  /**
   * Queues `item` for printing; resolves once it is written and `delivery` acked, rejects when
   * either failed (the delivery is then still unsettled).
   */
  print(item: T, delivery: Delivery): Promise<void> {
    let batch = this.#next;
    if (batch === null) {
      let resolve!: () => void;
      let reject!: (error: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      batch = { items: [], deliveries: [], done, resolve, reject };
      this.#next = batch;
      if (!this.#writing) {
        this.#writing = true;
        setImmediate(() => void this.#writeLoop());
      }
    }
    batch.items.push(item);
    batch.deliveries.push(delivery);
    return batch.done;
  }

  /** Writes batches one after the other until none is waiting. */
  async #writeLoop(): Promise<void> {
    const { out, render, ack } = this.#options;
    while (this.#next !== null) {
      const batch = this.#next;
      this.#next = null;
      try {
        await writeChunk(out, render(batch.items));
      } catch (err) {
        batch.reject(err);
        continue;
      }
      ack(batch.deliveries).then(batch.resolve, batch.reject);
    }
    this.#writing = false;
  }
}

/** Writes `text` and resolves once the stream has flushed it. */
function writeChunk(out: Writable, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    out.write(text, (err) => (err ? reject(err) : resolve()));
  });
}
