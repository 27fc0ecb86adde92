import {
  DEAD_LETTER_DELIVERIES_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  deadLetterQueueOf,
  type Broker,
  type Delivery,
} from '../broker/contract.js';
import { decode } from '../protocol/codec.js';
import type { Headers } from '../protocol/envelope.js';
import { waitForIdle } from './idle.js';

/** A dead letter as `qtune dlq` shows it. */
export interface DeadLetterView {
  id: string;
  queue: string;
  reason: string;
  deliveries: number | null;
  body: string;
}

/** What a dead letter says about itself: where it came from, why, after how many deliveries. */
export function deadLetterView(d: Delivery, queue: string): DeadLetterView {
  const deliveries = d.headers[DEAD_LETTER_DELIVERIES_HEADER];
  return {
    id: d.id,
    queue: String(d.headers[DEAD_LETTER_QUEUE_HEADER] ?? queue),
    reason: String(d.headers[DEAD_LETTER_REASON_HEADER] ?? 'unknown'),
    deliveries: deliveries === undefined || deliveries === null ? null : Number(deliveries),
    body: d.body.toString('utf8'),
  };
}

function withoutDeadHeaders(headers: Headers): Headers {
  const out: Headers = {};
  for (const [k, v] of Object.entries(headers)) {
    if (
      k !== DEAD_LETTER_REASON_HEADER &&
      k !== DEAD_LETTER_QUEUE_HEADER &&
      k !== DEAD_LETTER_DELIVERIES_HEADER
    ) {
      out[k] = v;
    }
  }
  return out;
}

export interface RequeueOptions {
  /** Called after each dead letter is back in its queue. */
  onRequeued?: (id: string, queue: string) => void;
  /**
   * Decides per dead letter whether to requeue it (default: all); a dead letter it refuses is
   * left where it is.
   */
  filter?: (d: Delivery) => boolean;
}

/**
 * Publishes the dead letters of `queue` back to the queues they came from, as fresh messages
 * with the same id, body and priority, and removes them from the dead-letter queue. Only what
 * was dead when it started is requeued: a poison message that fails again at once is not
 * requeued in a loop. Returns how many were requeued and the idempotency keys of those that
 * carried one.
 */
export async function requeueDeadLetters(
  broker: Broker,
  queue: string,
  options: RequeueOptions = {},
): Promise<{ requeued: number; keys: string[] }> {
  const dead = deadLetterQueueOf(queue);
  await broker.declareQueue(dead);
  const initial = (await broker.stats(dead)).ready;
  const seen = new Set<string>();
  const keys: string[] = [];
  const kept: Delivery[] = [];
  let requeued = 0;
  let lastActivity = Date.now();
  const consumer = await broker.consume(
    dead,
    async (d) => {
      lastActivity = Date.now();
      if (requeued >= initial || seen.has(d.id) || options.filter?.(d) === false) {
        kept.push(d);
        return;
      }
      seen.add(d.id);
      const target = String(d.headers[DEAD_LETTER_QUEUE_HEADER] ?? queue);
      await broker.publish(target, [
        { id: d.id, body: d.body, priority: d.priority, headers: withoutDeadHeaders(d.headers) },
      ]);
      await d.ack();
      requeued++;
      try {
        const key = decode(d.body, { source: `queue "${dead}"`, messageId: d.id }).key;
        if (key !== undefined) keys.push(key);
      } catch {
        // Not an envelope: requeued all the same, it just has no key.
      }
      options.onRequeued?.(d.id, target);
    },
    { prefetch: 200 },
  );
  try {
    await waitForIdle(broker, dead, () => lastActivity, {
      enough: () => requeued + kept.length >= initial,
    });
  } finally {
    await consumer.cancel();
    await Promise.all(kept.map((d) => d.release()));
  }
  return { requeued, keys };
}
