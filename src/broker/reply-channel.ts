/**
 * The reply-channel extension of the Broker contract: requests whose replies come straight back
 * to the requester, with no reply queue (RabbitMQ's direct reply-to). It is not part of
 * {@link Broker}: a broker that has it says so with `capabilities.replyChannel` and implements
 * {@link ReplyChannels}; requesters ask {@link replyChannelsOf} and use a temporary reply queue
 * where it answers undefined.
 */
import type { Broker, Delivery, OutgoingMessage } from './contract.js';

/** A reply that arrived on a {@link ReplyChannel}. */
export interface ReplyMessage {
  readonly id: string;
  readonly body: Buffer;
}

/**
 * Requests sent through it get their replies straight back to it, with no reply queue (see
 * {@link ReplyChannels.openReplyChannel}). Replies in flight when the connection drops are
 * lost: a request waiting for one times out.
 */
export interface ReplyChannel {
  /** The reply address to put in the requests' envelopes. */
  readonly replyTo: string;
  /** Publishes requests; resolves once the broker has them. */
  publish(queue: string, messages: readonly OutgoingMessage[]): Promise<void>;
  close(): Promise<void>;
}

/** What a broker with `capabilities.replyChannel` implements besides the Broker contract. */
export interface ReplyChannels {
  /** Opens a channel whose requests are answered straight back to `onReply`. */
  openReplyChannel(onReply: (reply: ReplyMessage) => void): Promise<ReplyChannel>;
}

/**
 * A delivery from a broker with reply channels. `replyTo` is where a reply to it goes when the
 * transport rewrote the sender's reply address (RabbitMQ's direct reply-to): it takes precedence
 * over the envelope's `replyTo`. Unset otherwise.
 */
export interface ReplyChannelDelivery extends Delivery {
  readonly replyTo?: string;
}

/**
 * `broker` as {@link ReplyChannels} where it declares the capability and has the method (a
 * wrapper that forwards another broker's capabilities but not the method does not count), else
 * undefined.
 */
export function replyChannelsOf(broker: Broker): ReplyChannels | undefined {
  if (broker.capabilities.replyChannel !== true) return undefined;
  const extended = broker as Broker & Partial<ReplyChannels>;
  return typeof extended.openReplyChannel === 'function'
    ? (extended as Broker & ReplyChannels)
    : undefined;
}

/**
 * Where the reply to `delivery` goes: the address its transport rewrote (see
 * {@link ReplyChannelDelivery}), else `requested`, the `replyTo` of the envelope it carries.
 */
export function replyAddressOf(
  delivery: Delivery,
  requested: string | undefined,
): string | undefined {
  return (delivery as ReplyChannelDelivery).replyTo ?? requested;
}
