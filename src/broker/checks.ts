/** Argument checks shared by the broker implementations; each throws `InputError` naming the place. */
import { ErrorCode, InputError, QtuneError, toError } from '../protocol/errors.js';
import { printable } from '../protocol/names.js';
import type { OutgoingMessage, QueueOptions } from './contract.js';
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

/** The properties an existing queue has, as a later declaration is compared against them. */
export interface DeclaredQueue {
  durable: boolean;
  maxDeliveries: number;
  deadLetterQueue: string;
  priorities: number;
  leaseMs: number;
  messageTtlMs: number | null | undefined;
  temporary: boolean;
}

const COMPARED = [
  'durable',
  'maxDeliveries',
  'deadLetterQueue',
  'priorities',
  'leaseMs',
  'messageTtlMs',
  'temporary',
] as const;

/**
 * The QUEUE_MISMATCH error for declaring the existing queue `name` with `options` that differ
 * from what it has, or undefined when they agree. An option left out matches whatever the queue
 * has, so a consumer's plain `declareQueue(name)` of an existing queue always agrees.
 */
export function queueMismatch(
  name: string,
  existing: DeclaredQueue,
  options: QueueOptions | undefined,
): QtuneError | undefined {
  if (options === undefined) return undefined;
  for (const field of COMPARED) {
    const declared = options[field];
    if (declared === undefined) continue;
    const has = existing[field] ?? undefined;
    if (declared !== has) {
      return new QtuneError(
        ErrorCode.QueueMismatch,
        `queue "${printable(name)}" exists with ${field} ${show(has)}; declared with ${show(declared)}`,
      );
    }
  }
  return undefined;
}

/** The QUEUE_MISMATCH error for declaring as temporary a temporary queue of another handle. */
export function temporaryOfAnother(name: string): QtuneError {
  return new QtuneError(
    ErrorCode.QueueMismatch,
    `queue "${printable(name)}" is a temporary queue of another connection; declared as temporary here`,
  );
}

function show(value: unknown): string {
  if (value === undefined || value === null) return 'none';
  return typeof value === 'string' ? `"${printable(value)}"` : String(value);
}
