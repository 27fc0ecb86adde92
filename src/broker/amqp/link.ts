import type { ChannelModel, Options } from 'amqplib';
import { connect } from 'amqplib';
import { BrokerError, ErrorCode } from '../../protocol/errors.js';
import { batchSocketWrites } from './write-batching.js';

/** Reconnect backoff: exponential from `initialMs` to `maxMs`, each delay spread by ±`jitter`. */
export interface Backoff {
  initialMs: number;
  maxMs: number;
  jitter: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 100, maxMs: 2000, jitter: 0.3 };

/** Delay before reconnect attempt `attempt` (1-based). */
export function backoffDelay(b: Backoff, attempt: number, random = Math.random): number {
  const base = Math.min(b.maxMs, b.initialMs * 2 ** (attempt - 1));
  return Math.max(0, Math.round(base * (1 + b.jitter * (2 * random() - 1))));
}

type UpListener = (conn: ChannelModel) => Promise<void>;
type DownListener = (error: Error | undefined) => void;

/**
 * One AMQP connection that reconnects by itself with backoff and jitter after it drops, and
 * runs its `up` listeners (redeclare, resubscribe, resend) after every (re)connect.
 */
export class Link {
  readonly #url: string | Options.Connect;
  readonly #socketOptions: Record<string, unknown>;
  readonly #backoff: Backoff;
  readonly #up: UpListener[] = [];
  readonly #down: DownListener[] = [];
  #conn: ChannelModel | undefined;
  #waiters: { resolve: (c: ChannelModel) => void; reject: (e: Error) => void }[] = [];
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;

  constructor(
    url: string | Options.Connect,
    socketOptions: Record<string, unknown>,
    backoff: Backoff = DEFAULT_BACKOFF,
  ) {
    this.#url = url;
    this.#socketOptions = socketOptions;
    this.#backoff = backoff;
  }

  get connected(): boolean {
    return this.#conn !== undefined;
  }

  onUp(listener: UpListener): void {
    this.#up.push(listener);
  }

  onDown(listener: DownListener): void {
    this.#down.push(listener);
  }

  /** First connection; rejects when the broker cannot be reached (no retry). */
  async open(): Promise<void> {
    const conn = await connect(this.#url, this.#socketOptions);
    await this.#attach(conn);
  }

  /** The live connection, waiting for a reconnect if it is down; rejects once closed. */
  connection(): Promise<ChannelModel> {
    if (this.#closed) return Promise.reject(closedLink());
    if (this.#conn) return Promise.resolve(this.#conn);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** The live connection or undefined, without waiting. */
  current(): ChannelModel | undefined {
    return this.#conn;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    for (const w of this.#waiters.splice(0)) w.reject(closedLink());
    const conn = this.#conn;
    this.#conn = undefined;
    if (conn) await conn.close().catch(() => undefined);
  }

  async #attach(conn: ChannelModel): Promise<void> {
    batchSocketWrites(conn);
    conn.on('error', () => undefined); // 'close' follows and drives the reconnect
    conn.on('close', (err?: Error) => {
      if (this.#conn !== conn) return;
      this.#conn = undefined;
      for (const l of this.#down) l(err);
      if (!this.#closed) this.#schedule();
    });
    this.#conn = conn;
    this.#attempt = 0;
    try {
      for (const l of this.#up) await l(conn);
    } catch (err) {
      // The connection broke during recovery: its 'close' schedules the next attempt.
      if (this.#conn === conn) {
        await conn.close().catch(() => undefined);
      }
      throw err;
    }
    if (this.#conn !== conn) return;
    for (const w of this.#waiters.splice(0)) w.resolve(conn);
  }

  #schedule(): void {
    this.#attempt++;
    const delay = backoffDelay(this.#backoff, this.#attempt);
    this.#timer = setTimeout(() => {
      if (this.#closed) return;
      connect(this.#url, this.#socketOptions).then(
        async (conn) => {
          if (this.#closed) {
            await conn.close().catch(() => undefined);
            return;
          }
          // A failed recovery closes the connection, whose 'close' schedules the next try.
          await this.#attach(conn).catch(() => undefined);
        },
        () => {
          if (!this.#closed) this.#schedule();
        },
      );
    }, delay);
  }
}

function closedLink(): BrokerError {
  return new BrokerError(ErrorCode.BrokerState, 'the AMQP broker handle is closed');
}
