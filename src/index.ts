/**
 * qtune's public API: the contracts (wire protocol, Broker, Store), `openBroker` / `openStore`,
 * the patterns, the worker runtime, the scheduler and automl. Importing it loads no adapter:
 * `openBroker` and `openStore` import the one their URL names when called.
 *
 * Each layer also has its own sub-path, which is where the adapters and the servers are:
 * `qtune/broker` (MemoryBroker, EmbeddedBroker, AmqpBroker, GatewayBroker), `qtune/store`
 * (SqliteStore), `qtune/gateway` (the HTTP gateway), `qtune/job` (batch jobs), `qtune/experiment`
 * (experiments), `qtune/sink` (result collection), and `qtune/protocol`, `qtune/patterns`, `qtune/worker`,
 * `qtune/automl`, `qtune/scheduler`.
 */
export * from './protocol/index.js';

export type * from './broker/contract.js';
export {
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
  declareQueueOrKeep,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_DELIVERIES_HEADER,
} from './broker/contract.js';
export { envelopeMessage, envelopeRoutingOf } from './broker/envelope-message.js';
export type { EnvelopeMessage, EnvelopeRouting } from './broker/envelope-message.js';
export { replyAddressOf, replyChannelsOf } from './broker/reply-channel.js';
export type {
  ReplyChannel,
  ReplyChannelDelivery,
  ReplyChannels,
  ReplyMessage,
} from './broker/reply-channel.js';
export { topicMatches, assertTopicPattern } from './broker/topic.js';
export { openBroker, parseBrokerUrl, DEFAULT_EMBEDDED_PATH } from './broker/open.js';
export type { BrokerTarget, OpenBrokerOptions } from './broker/open.js';
export { BrokerEventSource } from './broker/events.js';

export * from './store/contract.js';
export { openStore, parseStoreUrl } from './store/open.js';
export type { StoreTarget } from './store/open.js';
export * from './store/experiments.js';
export * from './store/jobs.js';
export * from './store/results.js';

export * from './patterns/index.js';
export * from './worker/index.js';
export * from './scheduler/index.js';
export * from './automl/index.js';
