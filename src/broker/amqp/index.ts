export { AmqpBroker, parseAmqpUrl } from './amqp-broker.js';
export type { AmqpBrokerOptions, AmqpQueueOptions } from './amqp-broker.js';
