export type * from './contract.js';
export {
  QUEUE_DEFAULTS,
  deadLetterQueueOf,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_DELIVERIES_HEADER,
} from './contract.js';
export { topicMatches, assertTopicPattern } from './topic.js';
export { openBroker, parseBrokerUrl, redact, DEFAULT_EMBEDDED_PATH } from './open.js';
export type { BrokerTarget } from './open.js';
