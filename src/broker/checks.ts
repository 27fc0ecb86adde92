/** Argument checks shared by the broker implementations; each throws `InputError` naming the place. */
import { InputError, toError } from '../protocol/errors.js';
import type { OutgoingMessage } from './contract.js';
import { assertTopicPattern } from './topic.js';

/** Deliveries held per consumer when `consume` does not say. */
export const DEFAULT_PREFETCH = 10;
/** Deliveries held per subscription when `subscribe` does not say. */
export const DEFAULT_SUBSCRIBE_PREFETCH = 100;

/** A message's body is bytes or text, and its delay, if any, a number ≥ 0. */
export function checkMessage(where: string, m: OutgoingMessage): void {
  if (typeof m.body !== 'string' && !Buffer.isBuffer(m.body)) {
    throw new InputError(
      `${where}: message body must be a Buffer or a string, got ${typeof m.body}`,
    );
  }
  if (m.delayMs !== undefined && !(Number.isFinite(m.delayMs) && m.delayMs >= 0)) {
    throw new InputError(`${where}: delayMs must be a number >= 0, got ${String(m.delayMs)}`);
  }
}

/** `prefetch` when it is an integer from 1 to `max` (default: no upper bound). */
export function checkPrefetch(where: string, prefetch: number, max = Infinity): number {
  if (!Number.isInteger(prefetch) || prefetch < 1 || prefetch > max) {
    const what = Number.isFinite(max) ? `an integer 1..${max}` : 'a positive integer';
    throw new InputError(`${where}: prefetch must be ${what}, got ${String(prefetch)}`);
  }
  return prefetch;
}

/** A topic pattern with valid words (`*` and `#` standing alone). */
export function checkTopicPattern(pattern: string): void {
  try {
    assertTopicPattern(pattern);
  } catch (err) {
    throw new InputError(toError(err).message, { cause: err });
  }
}
