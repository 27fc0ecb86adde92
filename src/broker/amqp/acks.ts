import type { Channel, ConsumeMessage } from 'amqplib';

/**
 * Settles the deliveries of one consumer channel, coalescing acks. Acks made in the same turn of
 * the event loop go out together after it: the longest run of settled deliveries from the oldest
 * one still unsettled becomes one `basic.ack` with `multiple`, the rest are acked one by one.
 * On a quorum queue every ack frame is a Raft command, so a burst of acks (a batch of result
 * confirms arriving at once) costs the broker one command instead of hundreds.
 *
 * A multiple ack covers every delivery tag up to its own, so it is sent only up to the first
 * delivery still held: a delivery a handler is still working on is never acked by another's.
 */
export class AckBatcher {
  readonly #channel: Channel;
  /** Delivery tag → message, for deliveries not yet settled on the wire (ascending tags). */
  readonly #open = new Map<number, { msg: ConsumeMessage; acked: boolean }>();
  readonly #acked: number[] = [];
  #scheduled = false;
  #closed = false;

  constructor(channel: Channel) {
    this.#channel = channel;
  }

  /** A delivery arrived on this channel. */
  track(msg: ConsumeMessage): void {
    this.#open.set(msg.fields.deliveryTag, { msg, acked: false });
  }

  /** Acks `msg` after this turn of the event loop (or at the next `flush`). */
  ack(msg: ConsumeMessage): void {
    const entry = this.#open.get(msg.fields.deliveryTag);
    if (!entry || entry.acked || this.#closed) return;
    entry.acked = true;
    this.#acked.push(msg.fields.deliveryTag);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Rejects `msg` at once, putting it back in its queue (`requeue`) or dropping it. */
  nack(msg: ConsumeMessage, requeue: boolean): void {
    const tag = msg.fields.deliveryTag;
    const entry = this.#open.get(tag);
    if (!entry || entry.acked || this.#closed) return;
    this.#open.delete(tag);
    try {
      this.#channel.nack(msg, false, requeue);
    } catch {
      this.close();
    }
  }

  /** Sends the acks waiting for the end of this turn. */
  flush(): void {
    this.#scheduled = false;
    if (this.#closed || this.#acked.length === 0) return;
    let upTo: ConsumeMessage | undefined;
    for (const [tag, entry] of this.#open) {
      if (!entry.acked) break;
      this.#open.delete(tag);
      upTo = entry.msg;
    }
    const singles: ConsumeMessage[] = [];
    for (const tag of this.#acked) {
      const entry = this.#open.get(tag);
      if (!entry) continue;
      this.#open.delete(tag);
      singles.push(entry.msg);
    }
    this.#acked.length = 0;
    try {
      if (upTo) this.#channel.ack(upTo, true);
      for (const msg of singles) this.#channel.ack(msg);
    } catch {
      // The channel closed under us: RabbitMQ requeues what it held, as for any lost channel.
      this.close();
    }
  }

  /** The channel is gone: RabbitMQ requeues what it held; nothing more is sent. */
  close(): void {
    this.#closed = true;
    this.#open.clear();
    this.#acked.length = 0;
  }
}
