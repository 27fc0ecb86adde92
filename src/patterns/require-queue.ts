import type { Broker } from '../broker/contract.js';
import { closestName } from '../protocol/closest-name.js';
import { BrokerError, ErrorCode, NotFoundError } from '../protocol/errors.js';

/**
 * Throws NotFoundError naming `name` (with the closest existing queue as suggestion) unless
 * `name` or one of `related` (its result or dead-letter queue) exists; resolves with the names
 * among them that exist. Never creates a queue.
 */
export async function requireQueue(
  broker: Broker,
  name: string,
  related: readonly string[] = [],
): Promise<Set<string>> {
  const wanted = [name, ...related];
  const existing = new Set<string>();
  let all: string[] | undefined;
  if (broker.capabilities.listQueues) {
    try {
      all = await broker.listQueues();
    } catch (err) {
      // RabbitMQ without its management API cannot list; ask for each queue instead.
      if (!(err instanceof BrokerError && err.code === ErrorCode.BrokerState)) throw err;
    }
  }
  if (all) {
    for (const q of wanted) if (all.includes(q)) existing.add(q);
  } else {
    for (const q of wanted) if (await queueExists(broker, q)) existing.add(q);
  }
  if (existing.size === 0) {
    const candidates = (all ?? []).filter((q) => !q.startsWith('qtune.') && !q.startsWith('amq.'));
    throw new NotFoundError('queue', name, closestName(name, candidates));
  }
  return existing;
}

async function queueExists(broker: Broker, name: string): Promise<boolean> {
  try {
    await broker.stats(name);
    return true;
  } catch (err) {
    if (err instanceof BrokerError && / does not exist/.test(err.message)) return false;
    throw err;
  }
}

/**
 * {@link requireQueue} for followers: while neither `name` nor one of `related` exists, calls
 * `onMissing` once with the NotFoundError (which names the closest existing queue) and checks
 * again every `pollMs` (default 1000) until one appears or `signal` aborts (then it throws that
 * error).
 */
export async function waitForQueue(
  broker: Broker,
  name: string,
  related: readonly string[],
  options: { onMissing?: (err: NotFoundError) => void; signal?: AbortSignal; pollMs?: number },
): Promise<Set<string>> {
  let told = false;
  for (;;) {
    try {
      return await requireQueue(broker, name, related);
    } catch (err) {
      if (!(err instanceof NotFoundError) || options.signal?.aborted) throw err;
      if (!told) options.onMissing?.(err);
      told = true;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, options.pollMs ?? 1000);
      function done(): void {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', done);
        resolve();
      }
      options.signal?.addEventListener('abort', done, { once: true });
    });
  }
}
