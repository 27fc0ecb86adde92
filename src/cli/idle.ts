import { setTimeout as sleep } from 'node:timers/promises';
import type { Broker } from '../broker/contract.js';

export interface IdleOptions {
  /** Time without deliveries before the queue may count as drained, in ms (default: 300). */
  quietMs?: number;
  signal?: AbortSignal;
  /** Also stop once this returns true after a quiet period (e.g. a listing limit reached). */
  enough?: () => boolean;
}

/**
 * Resolves once `queue` has nothing ready or delayed and no delivery has arrived for the quiet
 * period, or when the signal aborts.
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
    if (s.ready === 0 && s.delayed === 0 && Date.now() - lastActivity() >= quietMs) return;
  }
}
