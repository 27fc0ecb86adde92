import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import { createInbox } from '@nats-io/transport-node';

/** Pull requests wait this long on the server for messages, then end with a 408 status. */
const PULL_EXPIRES_MS = 10_000;
/** A request not answered this long after it expired is forgotten (the server restarted). */
const FORGET_AFTER_MS = 2_000;
/** Wait before pulling again after the consumer did not answer (JetStream not ready yet). */
const RETRY_MS = 250;

/**
 * Pull requests of one JetStream pull consumer, on one inbox subscription: it keeps as many
 * messages requested as `wanted()` says (the free prefetch slots), asking again once at least
 * `threshold` slots are free, so a consumer never holds more than its prefetch. JetStream serves
 * a consumer's waiting requests in order, so each delivery fills the oldest request.
 */
export class Pull {
  readonly #nc: NatsConnection;
  readonly #next: string;
  readonly #inbox = createInbox();
  readonly #sub: Subscription;
  readonly #wanted: () => number;
  readonly #threshold: number;
  readonly #onDelivery: (msg: Msg) => void;
  readonly #requests: { left: number; expiresAt: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: {
    nc: NatsConnection;
    stream: string;
    consumer: string;
    wanted: () => number;
    threshold: number;
    onDelivery: (msg: Msg) => void;
  }) {
    this.#nc = options.nc;
    this.#next = `$JS.API.CONSUMER.MSG.NEXT.${options.stream}.${options.consumer}`;
    this.#wanted = options.wanted;
    this.#threshold = Math.max(1, options.threshold);
    this.#onDelivery = options.onDelivery;
    this.#sub = this.#nc.subscribe(this.#inbox, { callback: (_err, msg) => this.#onMsg(msg) });
    this.#sweeper = setInterval(() => this.#sweep(), PULL_EXPIRES_MS / 2).unref();
  }

  /** Messages asked for and not delivered yet. */
  get outstanding(): number {
    let n = 0;
    for (const r of this.#requests) n += r.left;
    return n;
  }

  /** Asks for more messages when enough slots are free. */
  top(): void {
    if (this.#stopped || this.#retry !== undefined || this.#nc.isClosed()) return;
    const free = this.#wanted() - this.outstanding;
    if (free < this.#threshold) return;
    this.#requests.push({ left: free, expiresAt: Date.now() + PULL_EXPIRES_MS });
    const body = JSON.stringify({ batch: free, expires: PULL_EXPIRES_MS * 1_000_000 });
    this.#nc.publish(this.#next, body, { reply: this.#inbox });
  }

  /** Forgets every request (the server lost them in a restart) and asks again. */
  reset(): void {
    this.#requests.length = 0;
    this.top();
  }

  /**
   * Stops asking and unsubscribes: JetStream drops a waiting request whose inbox lost interest,
   * so nothing more is delivered once the server has seen the unsubscribe.
   */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#sweeper);
    clearTimeout(this.#retry);
    this.#requests.length = 0;
    if (!this.#nc.isClosed()) this.#sub.unsubscribe();
  }

  #onMsg(msg: Msg): void {
    if (this.#stopped) return;
    if (msg.reply !== undefined && msg.reply.startsWith('$JS.ACK.')) {
      const first = this.#requests[0];
      if (first !== undefined && --first.left <= 0) this.#requests.shift();
      this.#onDelivery(msg);
      return;
    }
    const code = msg.headers?.code ?? 0;
    if (code === 100) return; // idle heartbeat
    this.#requests.shift();
    // 408: the request expired; ask again. Anything else (404 consumer not found, 409 consumer
    // deleted or too many waiting requests, 503 JetStream not serving it yet after a restart)
    // is asked again after a pause, not in a tight loop.
    if (code === 408) {
      this.top();
      return;
    }
    this.#retry ??= setTimeout(() => {
      this.#retry = undefined;
      this.top();
    }, RETRY_MS).unref();
  }

  #sweep(): void {
    const now = Date.now();
    const before = this.#requests.length;
    for (let i = this.#requests.length - 1; i >= 0; i--) {
      if (this.#requests[i]!.expiresAt + FORGET_AFTER_MS < now) this.#requests.splice(i, 1);
    }
    if (this.#requests.length !== before) this.top();
  }
}
