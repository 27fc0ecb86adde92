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

interface Pending extends Outgoing {
  /** Generation of the channel it was last written to (-1: not written yet). */
  sentOn: number;
  returned: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Publishes over one confirm channel with at most `window` unconfirmed messages: a publish
 * resolves when the broker confirmed every message of it, waits while the window is full, and
 * messages not confirmed when the connection drops are written again after it recovers.
 */
export class Publisher {
  readonly #link: Link;
  readonly #window: number;
  readonly #pending = new Set<Pending>();
  readonly #slotWaiters: (() => void)[] = [];
  #channel: ConfirmChannel | undefined;
  #generation = 0;

  constructor(link: Link, window: number) {
    this.#link = link;
    this.#window = window;
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
  async publish(messages: readonly Outgoing[]): Promise<void> {
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
    for (const m of messages) {
      if (this.#pending.size >= this.#window) await this.#slot();
      const p: Pending = { ...m, sentOn: -1, returned: false, resolve, reject };
      this.#pending.add(p);
      if (this.#channel) this.#send(p, this.#channel, this.#generation);
    }
    await all;
  }

  /** Rejects every message not yet confirmed (the handle is closing for good). */
  failAll(error: Error): void {
    for (const p of this.#pending) p.reject(error);
    this.#pending.clear();
    for (const w of this.#slotWaiters.splice(0)) w();
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
            p.routingKey === msg.fields.routingKey &&
            p.options.messageId === msg.properties.messageId
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
    try {
      channel.publish(p.exchange, p.routingKey, p.content, p.options, (err: unknown) => {
        if (p.sentOn !== generation || !this.#pending.has(p)) return;
        if (err) {
          // Lost with its channel: written again once a channel is back.
          if (err instanceof Error && err.message === 'channel closed') return;
          this.#settle(p);
          p.reject(
            new BrokerError(
              ErrorCode.BrokerUnavailable,
              `RabbitMQ refused a message for ${p.target} (basic.nack)`,
            ),
          );
          return;
        }
        this.#settle(p);
        if (p.returned) {
          p.reject(
            new BrokerError(
              ErrorCode.BrokerState,
              `message for ${p.target} is unroutable: ${p.target} does not exist; declare it first`,
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
    this.#slotWaiters.shift()?.();
  }

  async #slot(): Promise<void> {
    while (this.#pending.size >= this.#window) {
      await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    }
  }
}
