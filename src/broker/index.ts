export type * from './contract.js';
export {
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
  declareQueueOrKeep,
  hasCapability,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_DELIVERIES_HEADER,
} from './contract.js';
export { envelopeMessage, envelopeRoutingOf } from './envelope-message.js';
export type { EnvelopeMessage, EnvelopeRouting } from './envelope-message.js';
export { replyAddressOf, replyChannelsOf } from './reply-channel.js';
export type {
  ReplyChannel,
  ReplyChannelDelivery,
  ReplyChannels,
  ReplyMessage,
} from './reply-channel.js';
export { topicMatches, assertTopicPattern } from './topic.js';
export { openBroker, parseBrokerUrl, DEFAULT_EMBEDDED_PATH } from './open.js';
export { redact } from '../protocol/redact.js';
export type { BrokerTarget, OpenBrokerOptions } from './open.js';
export { BrokerEventSource } from './events.js';
export { MemoryBroker, MemoryBus, sharedMemoryBus } from './memory/index.js';
export { EmbeddedBroker } from './embedded/index.js';
export type { EmbeddedBrokerOptions } from './embedded/index.js';
export { AmqpBroker, parseAmqpUrl } from './amqp/index.js';
export type { AmqpBrokerOptions, AmqpQueueOptions } from './amqp/index.js';
export { GatewayBroker } from './gateway/index.js';
export { NatsBroker, parseNatsUrl } from './nats/index.js';
export type { NatsBrokerOptions } from './nats/index.js';
export type { GatewayBrokerOptions, GatewayQueueOptions } from './gateway/index.js';
