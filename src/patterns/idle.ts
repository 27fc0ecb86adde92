import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker } from '../broker/contract.js';

export interface IdleOptions {
  /** Time without deliveries before the queue may count as drained, in ms (default: 300). */
  quietMs?: number;
  signal?: AbortSignal;
  /** Also stop once this returns true after a quiet period (e.g. a listing limit reached). */
  enough?: () => boolean;
  /**
   * Also wait until nothing is in flight: leases held by other consumers, or by a consumer that
   * died, come back when they expire (default: false).
   */
  inFlight?: boolean;
}

/**
 * Resolves once `queue` has nothing ready or delayed (nor in flight, with `inFlight`) and no
 * delivery has arrived for the quiet period, or when the signal aborts.
 */
export async function waitForIdle(
  broker: Broker,
  queue: string,
  lastActivity: () => number,
  options: IdleOptions = {},
): Promise<void> {
  const quietMs = options.quietMs ?? 300;
  while (!options.signal?.aborted) {
    await sleep(100);
    if (Date.now() - lastActivity() < quietMs) continue;
    if (options.enough?.()) return;
    const s = await broker.stats(queue);
    const waiting = s.ready + s.delayed + (options.inFlight ? s.inFlight : 0);
    if (waiting === 0 && Date.now() - lastActivity() >= quietMs) return;
  }
}
