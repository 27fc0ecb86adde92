/**
 * Admission control of the gateway: refuses work while the broker is not connected, and while
 * too many published messages wait for broker confirmation (503 with Retry-After either way).
 */
import type { Broker, BrokerStatus } from '../broker/contract.js';
import { GatewayErrorCode, HttpError } from './errors.js';

export class Admission {
  readonly #broker: Broker;
  readonly #maxPending: number;
  #pending = 0;
  #status: BrokerStatus = 'connected';
  readonly #onStatus = (s: BrokerStatus): void => {
    this.#status = s;
  };

  /** Follows `broker`'s status until {@link close}; `maxPending`: see maxPendingPublishes. */
  constructor(broker: Broker, maxPending: number) {
    this.#broker = broker;
    this.#maxPending = maxPending;
    broker.on('status', this.#onStatus);
  }

  /** The broker's last reported status. */
  get brokerStatus(): BrokerStatus {
    return this.#status;
  }

  /** Throws 503 unless the broker is connected. */
  brokerUp(): void {
    if (this.#status !== 'connected') {
      throw new HttpError(
        503,
        GatewayErrorCode.BrokerUnavailable,
        `the broker is ${this.#status}; retry shortly`,
        { retryAfterS: 1 },
      );
    }
  }

  /** Throws 503 while the limit of messages waiting for confirmation is reached. */
  checkRoom(): void {
    if (this.#pending >= this.#maxPending) throw this.#overloaded();
  }

  /**
   * Counts `n` messages as waiting for confirmation until the returned function is called;
   * 503 over the limit when `refuse`.
   */
  admit(n: number, refuse = true): () => void {
    if (refuse && this.#pending > 0 && this.#pending + n > this.#maxPending) {
      throw this.#overloaded();
    }
    this.#pending += n;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#pending -= n;
    };
  }

  /** Stops following the broker's status. */
  close(): void {
    this.#broker.off('status', this.#onStatus);
  }

  #overloaded(): HttpError {
    return new HttpError(
      503,
      GatewayErrorCode.Overloaded,
      `${this.#pending} messages are waiting for broker confirmation (limit ${this.#maxPending}); retry shortly`,
      { retryAfterS: 1 },
    );
  }
}
