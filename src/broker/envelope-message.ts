import { encode } from '../protocol/codec.js';
import type { Envelope } from '../protocol/envelope.js';
import type { OutgoingMessage } from './contract.js';

/** The fields of an envelope that a transport may mirror into its own message properties. */
export type EnvelopeRouting = Pick<Envelope, 'type' | 'correlationId' | 'replyTo'>;

/**
 * A message whose body is an encoded envelope, with the envelope's routing fields beside it. To
 * every broker it is an ordinary {@link OutgoingMessage}; one that mirrors those fields into
 * transport properties (RabbitMQ: type, correlation-id, reply-to) takes them from here instead of
 * parsing the body again. `envelope` must agree with the body.
 */
export interface EnvelopeMessage extends OutgoingMessage {
  envelope: EnvelopeRouting;
}

/** The message carrying `env`: its id, its encoded body, and its routing fields. */
export function envelopeMessage(env: Envelope): EnvelopeMessage & { id: string } {
  return { id: env.id, body: encode(env), envelope: env };
}

/** The routing fields `message` carries beside its body, where it is an {@link EnvelopeMessage}. */
export function envelopeRoutingOf(message: OutgoingMessage): EnvelopeRouting | undefined {
  return (message as Partial<EnvelopeMessage>).envelope;
}
