export type * from './contract.js';
export {
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
  declareQueueOrKeep,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_DELIVERIES_HEADER,
} from './contract.js';
export { topicMatches, assertTopicPattern } from './topic.js';
export { openBroker, parseBrokerUrl, DEFAULT_EMBEDDED_PATH } from './open.js';
export { redact } from '../protocol/redact.js';
export type { BrokerTarget, OpenBrokerOptions } from './open.js';
export { BrokerEventSource } from './events.js';
export { MemoryBroker, MemoryBus, sharedMemoryBus } from './memory/index.js';
export { EmbeddedBroker } from './embedded/index.js';
export type { EmbeddedBrokerOptions } from './embedded/index.js';
export { AmqpBroker, parseAmqpUrl } from './amqp/index.js';
export type { AmqpBrokerOptions } from './amqp/index.js';
export { GatewayBroker } from './gateway/index.js';
export type { GatewayBrokerOptions } from './gateway/index.js';
