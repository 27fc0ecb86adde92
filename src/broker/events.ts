import { EventEmitter } from 'node:events';
import type { BrokerEvents, BrokerStatus } from './contract.js';

/**
 * The typed `on` / `off` of a broker handle, shared by implementations. An 'error' with no
 * listener is dropped rather than thrown: a handle never crashes its process by emitting.
 */
export abstract class BrokerEventSource {
  readonly #events = new EventEmitter();

  on<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.#events.on(event, listener);
    return this;
  }

  off<E extends keyof BrokerEvents>(event: E, listener: BrokerEvents[E]): this {
    this.#events.off(event, listener);
    return this;
  }

  protected emitStatus(status: BrokerStatus): void {
    this.#events.emit('status', status);
  }

  protected emitError(error: Error): void {
    if (this.#events.listenerCount('error') > 0) this.#events.emit('error', error);
  }
}
