import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { BrokerError, ErrorCode } from '../../protocol/errors.js';
import type { Link } from './link.js';

/** One message on its way to the broker, settled by the broker's confirm. */
export interface Outgoing {
  exchange: string;
  routingKey: string;
  content: Buffer;
  /**
   * Properties, with `mandatory` set where an unroutable message must be returned and rejected
   * (queues); topics leave it unset and drop such messages silently.
   */
  options: Options.Publish;
  /** Named in errors, e.g. `queue "jobs"`. */
  target: string;
}

/** A message written (or waiting to be written) and not yet confirmed. */
class Pending {
  /** Generation of the channel it was last written to (-1: not written yet). */
  sentOn = -1;
  returned = false;
  constructor(
    readonly out: Outgoing,
    readonly resolve: () => void,
    readonly reject: (error: Error) => void,
  ) {}
}

/**
 * Publishes over `channels` confirm channels of one connection. A call goes whole to the channel
 * with the fewest unconfirmed messages, so the messages of one call reach their queue in order;
 * calls in flight at the same time may interleave. On RabbitMQ each channel is a process of its
 * own: one channel caps a publisher at what that process handles, two carry about half as much
 * again on a quorum queue.
 */
export class Publisher {
  readonly #lanes: Lane[];
  #turn = 0;

  constructor(link: Link, window: number, channels = 1) {
    this.#lanes = Array.from({ length: Math.max(1, channels) }, () => new Lane(link, window));
  }

  /** Resolves when every message is confirmed; rejects on the first one refused or returned. */
  publish(messages: readonly Outgoing[]): Promise<void> {
    const lanes = this.#lanes;
    // Least loaded first; ties rotate so that idle channels share the calls.
    const start = this.#turn++ % lanes.length;
    let lane = lanes[start]!;
    for (let i = 1; i < lanes.length; i++) {
      const other = lanes[(start + i) % lanes.length]!;
      if (other.inFlight < lane.inFlight) lane = other;
    }
    return lane.publish(messages);
  }

  /** Rejects every message not yet confirmed (the handle is closing for good). */
  failAll(error: Error): void {
    for (const lane of this.#lanes) lane.failAll(error);
  }
}

/**
 * One confirm channel with at most `window` unconfirmed messages: a publish resolves when the
 * broker confirmed every message of it, waits while the window is full, and messages not
 * confirmed when the connection drops are written again after it recovers.
 */
class Lane {
  readonly #link: Link;
  readonly #window: number;
  readonly #pending = new Set<Pending>();
  /** Publish calls waiting for the window to drain to its low-water mark. */
  readonly #roomWaiters: (() => void)[] = [];
  readonly #lowWater: number;
  #channel: ConfirmChannel | undefined;
  #generation = 0;

  constructor(link: Link, window: number) {
    this.#link = link;
    this.#window = window;
    this.#lowWater = Math.floor((window * 3) / 4);
    link.onUp((conn) => this.#open(conn));
    link.onDown(() => {
      this.#channel = undefined;
      this.#generation++;
    });
  }

  /** Unconfirmed messages right now. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Resolves when every message is confirmed; rejects on the first one refused or returned. */
  publish(messages: readonly Outgoing[]): Promise<void> {
    if (messages.length === 1 && this.#pending.size < this.#window) {
      // One message with room for it (a worker's result): its confirm settles the call.
      return new Promise<void>((resolve, reject) => this.#write(messages[0]!, resolve, reject));
    }
    return this.#publishMany(messages);
  }

  #write(out: Outgoing, resolve: () => void, reject: (error: Error) => void): void {
    const p = new Pending(out, resolve, reject);
    this.#pending.add(p);
    if (this.#channel) this.#send(p, this.#channel, this.#generation);
  }

  async #publishMany(messages: readonly Outgoing[]): Promise<void> {
    if (messages.length === 0) return;
    // One promise for the whole call: settled by the last confirm, or by the first refusal.
    let left = messages.length;
    let failed = false;
    let resolveAll!: () => void;
    let rejectAll!: (error: Error) => void;
    const all = new Promise<void>((res, rej) => {
      resolveAll = res;
      rejectAll = rej;
    });
    all.catch(() => undefined); // awaited below, after the loop
    const resolve = () => {
      if (--left === 0 && !failed) resolveAll();
    };
    const reject = (error: Error) => {
      if (failed) return;
      failed = true;
      rejectAll(error);
    };
    // Writes as many as the window has room for, then waits for it to drain to its low-water
    // mark: one wake-up per few hundred confirms rather than one per message.
    let i = 0;
    while (i < messages.length) {
      if (this.#pending.size >= this.#window) {
        await new Promise<void>((wake) => this.#roomWaiters.push(wake));
        continue;
      }
      const end = Math.min(messages.length, i + this.#window - this.#pending.size);
      for (; i < end; i++) this.#write(messages[i]!, resolve, reject);
    }
    await all;
  }

  /** Rejects every message not yet confirmed (the handle is closing for good). */
  failAll(error: Error): void {
    for (const p of this.#pending) p.reject(error);
    this.#pending.clear();
    for (const w of this.#roomWaiters.splice(0)) w();
  }

  async #open(conn: ChannelModel): Promise<void> {
    const channel = await conn.createConfirmChannel();
    const generation = ++this.#generation;
    channel.on('error', () => undefined);
    channel.on(
      'return',
      (msg: { fields: { routingKey: string }; properties: { messageId?: unknown } }) => {
        for (const p of this.#pending) {
          if (
            p.sentOn === generation &&
            !p.returned &&
            p.out.routingKey === msg.fields.routingKey &&
            p.out.options.messageId === msg.properties.messageId
          ) {
            p.returned = true;
            return;
          }
        }
      },
    );
    channel.on('close', () => {
      if (this.#channel !== channel) return;
      this.#channel = undefined;
      this.#generation++;
      // A channel-level error on a live connection: open a new channel and resend.
      const live = this.#link.current();
      if (live) this.#open(live).catch(() => undefined);
    });
    this.#channel = channel;
    for (const p of this.#pending) if (p.sentOn !== generation) this.#send(p, channel, generation);
  }

  #send(p: Pending, channel: ConfirmChannel, generation: number): void {
    p.sentOn = generation;
    p.returned = false;
    const { exchange, routingKey, content, options, target } = p.out;
    try {
      channel.publish(exchange, routingKey, content, options, (err: unknown) => {
        if (p.sentOn !== generation || !this.#pending.has(p)) return;
        if (err) {
          // Lost with its channel: written again once a channel is back.
          if (err instanceof Error && err.message === 'channel closed') return;
          this.#settle(p);
          p.reject(
            new BrokerError(
              ErrorCode.BrokerUnavailable,
              `RabbitMQ refused a message for ${target} (basic.nack)`,
            ),
          );
          return;
        }
        this.#settle(p);
        if (p.returned) {
          p.reject(
            new BrokerError(
              ErrorCode.BrokerState,
              `message for ${target} is unroutable: ${target} does not exist; declare it first`,
            ),
          );
        } else {
          p.resolve();
        }
      });
    } catch {
      // The channel closed under us; the message stays pending and is written again.
      p.sentOn = -1;
    }
  }

  #settle(p: Pending): void {
    this.#pending.delete(p);
    if (this.#roomWaiters.length > 0 && this.#pending.size <= this.#lowWater) {
      // Every waiting call gets a turn; those that find the window full again wait again.
      for (const w of this.#roomWaiters.splice(0)) w();
    }
  }
}
