import type { Broker, Consumer, Delivery } from '../broker/contract.js';
import { decode, encode } from '../protocol/codec.js';
import {
  assertEnvelope,
  createEnvelope,
  MessageType,
  type Envelope,
  type Headers,
} from '../protocol/envelope.js';
import { toError } from '../protocol/errors.js';

/** Header carrying an event's topic. */
export const TOPIC_HEADER = 'x-qtune-topic';

export interface PublishEventOptions {
  headers?: Headers;
  /** Idempotency key of the event. */
  key?: string;
}

/** Publishes `payload` as an `event` envelope on `topic`; resolves once the broker has it. */
export async function publishEvent<P>(
  broker: Broker,
  topic: string,
  payload: P,
  options: PublishEventOptions = {},
): Promise<string> {
  const env = createEnvelope<P>({
    type: MessageType.Event,
    payload,
    headers: { ...options.headers, [TOPIC_HEADER]: topic },
    ...(options.key !== undefined && { key: options.key }),
  });
  assertEnvelope(env, `event on topic "${topic}"`);
  await broker.publishTopic(topic, [
    { id: env.id, body: encode(env), headers: { [TOPIC_HEADER]: topic } },
  ]);
  return env.id;
}

export interface SubscribeEventsOptions {
  /** Unsettled events held at once (default: 100). */
  prefetch?: number;
  /**
   * Called when an event cannot be decoded (it is dropped) or the handler threw (it is nacked
   * for another delivery). Default: ignore.
   */
  onError?: (error: Error, delivery: Delivery) => void;
}

/** Handles one event; `topic` is the topic it was published on. */
export type EventHandler<P = unknown> = (
  payload: P,
  topic: string,
  envelope: Envelope<P>,
) => void | Promise<void>;

/**
 * Subscribes to events whose topic matches `pattern` (AMQP rules: `*` one word, `#` zero or
 * more). Each event is acked after `handler` returns. A bare JSON body is taken as the payload.
 */
export async function subscribeEvents<P = unknown>(
  broker: Broker,
  pattern: string,
  handler: EventHandler<P>,
  options: SubscribeEventsOptions = {},
): Promise<Consumer> {
  return broker.subscribe(
    pattern,
    async (delivery) => {
      let env: Envelope<P>;
      try {
        env = decode(delivery.body, {
          source: `subscription "${pattern}"`,
          messageId: delivery.id,
        }) as Envelope<P>;
      } catch (err) {
        options.onError?.(toError(err), delivery);
        await delivery.ack();
        return;
      }
      const topic = topicOf(env, delivery);
      try {
        await handler(env.payload, topic, env);
      } catch (err) {
        options.onError?.(toError(err), delivery);
        await delivery.nack({ error: toError(err).message });
        return;
      }
      await delivery.ack();
    },
    { prefetch: options.prefetch ?? 100 },
  );
}

function topicOf(env: Envelope, delivery: Delivery): string {
  const fromEnvelope = env.headers?.[TOPIC_HEADER];
  if (typeof fromEnvelope === 'string') return fromEnvelope;
  const fromTransport = delivery.headers[TOPIC_HEADER];
  return typeof fromTransport === 'string' ? fromTransport : '';
}
